//! Name resolution on user-defined networks, as docker's embedded DNS gives it: every running
//! container on such a network finds the others on it by name, short ID and network aliases in
//! its `/etc/hosts`, rewritten in place (the file is bind-mounted: its inode must stay)
//! whenever a container on the network starts, or is connected to it or disconnected from it.
//! A container on several networks gets the names of each. The default `bridge` network has no
//! name resolution, as with docker.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::record::ContainerRecord;
use super::Daemon;

/// The hosts file as the network made it, kept beside the live one.
const BASE_SUFFIX: &str = "base";

fn hosts_path(d: &Daemon, id: &str) -> PathBuf {
    d.config.container_dir(id).join("bundle/net/hosts")
}

/// Whether containers on `network` resolve each other by name.
fn resolves(network: &str) -> bool {
    !matches!(network, "bridge" | "host" | "none" | "")
}

/// The lines naming the members of `network` (`IP NAME SHORT-ID ALIASES...`).
pub fn entries(network: &str, members: &[&ContainerRecord]) -> String {
    let mut out = format!("# berthd: containers on network {network}\n");
    for m in members {
        let Some((_, Some(ip), aliases)) = m.network.endpoints().find(|(n, _, _)| *n == network)
        else {
            continue;
        };
        let _ = write!(out, "{ip}\t{}\t{}", m.name, &m.id[..12]);
        for a in aliases {
            let _ = write!(out, "\t{a}");
        }
        out.push('\n');
    }
    out
}

/// Rewrites `path` in place with `content` (same inode).
fn rewrite_in_place(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(content)
}

/// Refreshes the hosts files of the running containers on any of `networks` (docker's names),
/// and of `also` (a container about to start, or just connected or disconnected, which counts
/// as running: its process must find the others from its first instruction). Each gets the
/// names of every network it is on.
pub fn refresh(d: &Daemon, networks: &[String], also: Option<&str>) {
    if !networks.iter().any(|n| resolves(n)) {
        return;
    }
    let records: Vec<ContainerRecord> = d.containers().iter().map(|c| c.snapshot()).collect();
    let counts = |r: &ContainerRecord| r.state.status.is_live() || also == Some(r.id.as_str());
    let members = |network: &str| -> Vec<&ContainerRecord> {
        records
            .iter()
            .filter(|r| counts(r) && r.network.is_on(network))
            .collect()
    };
    for m in records.iter().filter(|r| {
        also == Some(r.id.as_str())
            || (counts(r) && networks.iter().any(|n| resolves(n) && r.network.is_on(n)))
    }) {
        let mut names = String::new();
        for (network, _, _) in m.network.endpoints().filter(|(n, _, _)| resolves(n)) {
            names += &entries(network, &members(network));
        }
        let hosts = hosts_path(d, &m.id);
        let base_path = hosts.with_extension(BASE_SUFFIX);
        let base = match std::fs::read(&base_path) {
            Ok(b) => b,
            Err(_) => {
                let Ok(b) = std::fs::read(&hosts) else {
                    continue;
                };
                let _ = std::fs::write(&base_path, &b);
                b
            }
        };
        let mut content = base;
        content.extend_from_slice(names.as_bytes());
        if let Err(e) = rewrite_in_place(&hosts, &content) {
            tracing::warn!("{}: {e}", hosts.display());
        }
    }
}
