//! The files a container on a network needs: `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`.
//! Built as strings, or written into a directory for the caller to bind-mount.
//!
//! Nameservers: a loopback nameserver of the host (systemd-resolved's `127.0.0.53`, a local
//! dnsmasq) is unreachable from the container's own namespace, so loopback entries are dropped
//! and every other line (non-loopback nameservers, `search`, `options`) is kept. When the host
//! names only loopback servers, the upstream list of systemd-resolved
//! (`/run/systemd/resolve/resolv.conf`) is used if [`host_resolv_conf`] finds one. berth never
//! substitutes public resolvers: with nothing usable left the file has no nameserver and says
//! why in a comment, and the caller may pass explicit servers (`--dns`).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};

/// The host's resolver configuration as a container should start from: `/etc/resolv.conf`, or
/// systemd-resolved's upstream list when the former names only loopback nameservers.
pub fn host_resolv_conf() -> String {
    let etc = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if nameservers(&etc).any(|ip| !ip.is_loopback()) {
        return etc;
    }
    match fs::read_to_string("/run/systemd/resolve/resolv.conf") {
        Ok(upstream) if nameservers(&upstream).any(|ip| !ip.is_loopback()) => upstream,
        _ => etc,
    }
}

fn nameservers(conf: &str) -> impl Iterator<Item = IpAddr> + '_ {
    conf.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.split('%').next()?.parse().ok())?
    })
}

/// A container's `resolv.conf` from the host's: loopback nameservers dropped, every other line
/// kept. A non-empty `dns` replaces the host's nameservers.
pub fn resolv_conf(host: &str, dns: &[IpAddr]) -> String {
    let mut out = String::new();
    let mut dropped = Vec::new();
    let mut kept = 0;
    for line in host.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("nameserver") {
            let ip = trimmed
                .split_whitespace()
                .nth(1)
                .and_then(|w| w.split('%').next()?.parse::<IpAddr>().ok());
            match ip {
                _ if !dns.is_empty() => continue,
                Some(ip) if ip.is_loopback() => {
                    dropped.push(ip.to_string());
                    continue;
                }
                _ => kept += 1,
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    for ip in dns {
        let _ = writeln!(out, "nameserver {ip}");
    }
    if dns.is_empty() && kept == 0 {
        let why = if dropped.is_empty() {
            "the host names no nameserver".to_owned()
        } else {
            format!("the host's nameservers ({}) are loopback addresses, unreachable from the container", dropped.join(", "))
        };
        let _ = writeln!(out, "# berth: no nameserver: {why}");
    }
    out
}

/// A container's `/etc/hosts`: loopback names, and `ip hostname` when it has an address.
pub fn hosts(hostname: &str, ip: Option<Ipv4Addr>) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        let short = hostname.split('.').next().unwrap_or(hostname);
        let names = if short == hostname {
            hostname.to_owned()
        } else {
            format!("{hostname} {short}")
        };
        let _ = match ip {
            Some(ip) => writeln!(out, "{ip}\t{names}"),
            None => writeln!(out, "127.0.1.1\t{names}"),
        };
    }
    out
}

/// A container's `/etc/hostname`.
pub fn hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// The three files written by [`write_files`], for the caller to bind-mount over the
/// container's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFiles {
    /// Mount on `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// Mount on `/etc/hosts`.
    pub hosts: PathBuf,
    /// Mount on `/etc/hostname`.
    pub hostname: PathBuf,
}

/// Writes `resolv.conf`, `hosts` and `hostname` into `dir` (created if missing, mode 0644
/// files) and returns their paths.
pub fn write_files(
    dir: &Path,
    name: &str,
    ip: Option<Ipv4Addr>,
    resolv: &str,
) -> Result<ContainerFiles> {
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let files = ContainerFiles {
        resolv_conf: dir.join("resolv.conf"),
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
    };
    let write = |path: &Path, text: String| -> io::Result<()> { fs::write(path, text) };
    write(&files.resolv_conf, resolv.to_owned()).map_err(io_err("writing", &files.resolv_conf))?;
    write(&files.hosts, hosts(name, ip)).map_err(io_err("writing", &files.hosts))?;
    write(&files.hostname, hostname(name)).map_err(io_err("writing", &files.hostname))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_keeps_the_rest() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\nsearch example.org\noptions edns0\n";
        let out = resolv_conf(host, &[]);
        assert_eq!(
            out,
            "# generated\nnameserver 10.255.255.53\nsearch example.org\noptions edns0\n"
        );
    }

    #[test]
    fn resolv_conf_only_loopback_says_why() {
        let out = resolv_conf("nameserver 127.0.0.53\nsearch lan\n", &[]);
        assert!(!out.contains("nameserver 127"));
        assert!(out.contains("search lan"));
        assert!(out
            .contains("# berth: no nameserver: the host's nameservers (127.0.0.53) are loopback"));
    }

    #[test]
    fn resolv_conf_explicit_dns_replaces() {
        let out = resolv_conf(
            "nameserver 192.0.2.53\nsearch lan\n",
            &["198.51.100.1".parse().unwrap()],
        );
        assert_eq!(out, "search lan\nnameserver 198.51.100.1\n");
    }

    #[test]
    fn hosts_and_hostname() {
        let h = hosts("web.example", Some(Ipv4Addr::new(10, 88, 0, 2)));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.2\tweb.example web\n"));
        assert!(hosts("box", None).ends_with("127.0.1.1\tbox\n"));
        assert_eq!(hostname("box"), "box\n");
    }

    #[test]
    fn writes_the_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = write_files(
            dir.path(),
            "box",
            Some(Ipv4Addr::new(10, 0, 0, 2)),
            "nameserver 192.0.2.1\n",
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&f.hostname).unwrap(), "box\n");
        assert!(fs::read_to_string(&f.hosts)
            .unwrap()
            .contains("10.0.0.2\tbox"));
        assert_eq!(
            fs::read_to_string(&f.resolv_conf).unwrap(),
            "nameserver 192.0.2.1\n"
        );
    }
}
