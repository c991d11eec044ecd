//! A container as berthd keeps it on disk (`container.json`, written atomically and durably):
//! the client's config and host config as it sent them, and what berthd made and saw.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

/// The record's file in a container's directory.
pub const RECORD_FILE: &str = "container.json";

/// A container's state, as docker names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Waiting to be started again by its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Its process has exited.
    Exited,
    /// Could not be stopped or removed cleanly.
    Dead,
}

impl Status {
    /// The name docker uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether a process of it is alive (running or paused).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// What happened to the container's process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// The state.
    pub status: Status,
    /// The init's host pid while it runs (0 otherwise).
    pub pid: i32,
    /// Its monitor's pid while it runs (0 otherwise).
    pub monitor_pid: i32,
    /// The last exit code.
    pub exit_code: i64,
    /// The last start (RFC 3339), or docker's zero time.
    pub started_at: String,
    /// The last exit (RFC 3339), or docker's zero time.
    pub finished_at: String,
    /// Why the last start failed, if it did.
    pub error: String,
    /// Stopped by `stop`/`kill` (the restart policy does not apply, except `always`).
    pub stopped_by_user: bool,
}

/// The container's network, as made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetRecord {
    /// `bridge`, `none`, `host` or a network's name.
    pub mode: String,
    /// The network state directory it is attached in (to detach at removal).
    pub state: Option<PathBuf>,
    /// Its address.
    pub ip: Option<String>,
    /// Networks connected after creation (`docker network connect`), in the order connected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connected: Vec<Endpoint>,
}

/// A network connected after the container was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The network, by docker's name (`bridge` for berth's default network).
    pub network: String,
    /// The container's address on it.
    pub ip: String,
    /// Further names the other containers on it find this one by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl NetRecord {
    /// Every network of the container, by docker's name, with its address and aliases: the
    /// one it was created on first, then those connected later.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, Option<&str>, &[String])> {
        std::iter::once((self.mode.as_str(), self.ip.as_deref(), &[][..])).chain(
            self.connected.iter().map(|e| {
                (
                    e.network.as_str(),
                    Some(e.ip.as_str()),
                    e.aliases.as_slice(),
                )
            }),
        )
    }

    /// Whether the container is on network `name` (docker's name).
    pub fn is_on(&self, name: &str) -> bool {
        self.endpoints().any(|(n, _, _)| n == name)
    }

    /// The names (docker's) of every network of the container.
    pub fn names(&self) -> Vec<String> {
        self.endpoints().map(|(n, _, _)| n.to_string()).collect()
    }
}

/// A container, as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits; also the runtime's ID.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The image as the client named it.
    pub image: String,
    /// The image's ID (`sha256:` of its config).
    pub image_id: String,
    /// The config as the client sent it, with the image's defaults filled in.
    pub config: ContainerConfig,
    /// The host config as the client sent it.
    pub host_config: HostConfig,
    /// Its network.
    pub network: NetRecord,
    /// Its process's state.
    pub state: RunState,
    /// Starts by its restart policy.
    pub restart_count: i64,
    /// The store hold on its image's layers.
    pub holder: String,
    /// The process's arguments as they run (the image's entrypoint and command applied).
    #[serde(default)]
    pub path: Vec<String>,
}

impl ContainerRecord {
    /// Reads `dir/container.json`.
    pub fn load(dir: &Path) -> std::io::Result<ContainerRecord> {
        let bytes = std::fs::read(dir.join(RECORD_FILE))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Writes `dir/container.json` atomically and durably.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        berth_sys::fs::write_atomic(
            &dir.join(RECORD_FILE),
            &bytes,
            0o600,
            berth_sys::fs::Durability::Durable,
        )
    }

    /// Whether the container has a terminal.
    pub fn tty(&self) -> bool {
        self.config.tty.unwrap_or(false)
    }
}

/// `bytes` as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, x| {
            use std::fmt::Write as _;
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// A new container ID: 64 random hex digits (never all digits, as docker ensures, so that a
/// prefix is never mistaken for a number).
pub fn new_id() -> String {
    loop {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b).expect("the kernel's random numbers");
        let id = hex(&b);
        if !id[..12].bytes().all(|c| c.is_ascii_digit()) {
            return id;
        }
    }
}

/// Checks a container name as docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 255 bytes.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = name.len() >= 2
        && name.len() <= 255
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ))
    }
}

/// A generated name, as docker makes them: `adjective_noun`.
pub fn generate_name() -> String {
    const LEFT: [&str; 16] = [
        "brave", "calm", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "quiet", "sharp", "tender", "vivid", "wise",
    ];
    const RIGHT: [&str; 16] = [
        "albatross",
        "badger",
        "cormorant",
        "dolphin",
        "egret",
        "falcon",
        "gannet",
        "heron",
        "ibis",
        "jackdaw",
        "kestrel",
        "lapwing",
        "merlin",
        "osprey",
        "petrel",
        "tern",
    ];
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).expect("the kernel's random numbers");
    format!(
        "{}_{}_{}",
        LEFT[usize::from(b[0]) % LEFT.len()],
        RIGHT[usize::from(b[1]) % RIGHT.len()],
        u16::from_le_bytes([b[2], b[3]]) % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(validate_name("web-1.a_b").is_ok());
        for bad in ["", "a", "-x", "a/b", "../x", "a b", "ä1"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&generate_name()).is_ok());
    }
}
