//! Name resolution on user-defined networks, as docker's embedded DNS gives it: every running
//! container on such a network finds the others by name (and short ID) in its `/etc/hosts`,
//! rewritten in place (the file is bind-mounted: its inode must stay) whenever a container
//! on the network starts or stops. The default `bridge` network has no name resolution, as
//! with docker.

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

/// The lines naming `members` (`IP NAME SHORT-ID`).
pub fn entries(network: &str, members: &[&ContainerRecord]) -> String {
    let mut out = format!("# berthd: containers on network {network}\n");
    for m in members {
        if let Some(ip) = &m.network.ip {
            let _ = writeln!(out, "{ip}\t{}\t{}", m.name, &m.id[..12]);
        }
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

/// Refreshes the hosts files of the running containers on `network`, and of `starting` (a
/// container about to start on it, which counts as running: its process must find the others
/// from its first instruction).
pub fn refresh(d: &Daemon, network: &str, starting: Option<&str>) {
    if matches!(network, "bridge" | "host" | "none" | "") {
        return;
    }
    let records: Vec<ContainerRecord> = d.containers().iter().map(|c| c.snapshot()).collect();
    let members: Vec<&ContainerRecord> = records
        .iter()
        .filter(|r| {
            r.network.mode == network
                && (r.state.status.is_live() || starting == Some(r.id.as_str()))
        })
        .collect();
    let names = entries(network, &members);
    for m in &members {
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
