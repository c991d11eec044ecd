//! Persistent container state under `--root/<id>/`: one JSON file written atomically, and a
//! lock on the directory that serialises operations on one container.

use std::collections::HashMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use berth_sys::fs::Durability;
use berth_sys::lock::{self, Lock};
use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::proc_info;

/// File holding the state inside a container's directory.
const STATE_FILE: &str = "state.json";

/// Lifecycle status as the runtime spec names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is in progress.
    Creating,
    /// The init waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// The process is frozen (cgroup freezer).
    Paused,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What berth remembers about a container between invocations.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// Spec version of the bundle's config.
    pub oci_version: String,
    /// Container ID.
    pub id: String,
    /// Status as last recorded (see [`ContainerState::status`] for the live value).
    pub status: Status,
    /// Host pid of the container's init, 0 before it exists.
    pub pid: i32,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Owner (empty: the runtime's user).
    #[serde(default)]
    pub owner: String,
    /// Annotations from the config.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Start time of the init in clock ticks since boot: guards against pid reuse.
    #[serde(default)]
    pub init_start_time: u64,
    /// Whether the init has its own pid namespace (then killing it ends the container).
    #[serde(default)]
    pub own_pid_ns: bool,
    /// Whether the init, until it execs, runs from berth's writable binary and holds
    /// capabilities over the host's user namespace: it was created without the read-only
    /// view because its new pid namespace hides it (see `sealed_exe`), so no process may
    /// join that namespace before `start` (exec is refused until then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_exposed: bool,
    /// The container's cgroups (absent when they could not be managed, e.g. rootless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<berth_cgroups::Cgroup>,
    /// Hooks still to run later (poststart, poststop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
}

/// The spec's state document (runtime.md "State"), with runc's extra fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecState<'a> {
    /// Spec version.
    pub oci_version: &'a str,
    /// Container ID.
    pub id: &'a str,
    /// Live status.
    pub status: Status,
    /// Host pid (0 when stopped).
    pub pid: i32,
    /// Bundle path.
    pub bundle: &'a Path,
    /// Rootfs path (runc extension).
    pub rootfs: &'a Path,
    /// Creation time (runc extension).
    pub created: &'a str,
    /// Owner (runc extension).
    pub owner: &'a str,
    /// Annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

impl ContainerState {
    /// The live status: a recorded created/running container whose init is gone is stopped.
    pub fn status(&self) -> Status {
        match self.status {
            Status::Creating | Status::Stopped => self.status,
            _ if !self.init_alive() => Status::Stopped,
            s => s,
        }
    }

    /// Whether the recorded init still exists and is the same process (not a reused pid).
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && proc_info::start_time(self.pid).is_some_and(|(t, zombie)| {
                !zombie && (self.init_start_time == 0 || t == self.init_start_time)
            })
    }

    /// The state document for `berth state` and for hooks.
    pub fn spec_state(&self) -> SpecState<'_> {
        self.spec_state_as(self.status())
    }

    /// The state document with a given status (for hooks, which see the status of their stage).
    pub fn spec_state_as(&self, status: Status) -> SpecState<'_> {
        SpecState {
            oci_version: &self.oci_version,
            id: &self.id,
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: &self.annotations,
        }
    }

    /// The state document as JSON.
    pub fn spec_state_json(&self) -> String {
        serde_json::to_string(&self.spec_state()).expect("state serialises")
    }

    /// [`ContainerState::spec_state_as`] as JSON.
    pub fn spec_state_json_as(&self, status: Status) -> String {
        serde_json::to_string(&self.spec_state_as(status)).expect("state serialises")
    }
}

/// Checks an ID the way runc does: non-empty, no path separators, a conservative alphabet.
pub fn validate_id(id: &str) -> Result<()> {
    // A leading '.' is reserved for berth's own entries under the root (caches).
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.into()))
    }
}

/// The directory of all containers (`--root`).
#[derive(Clone, Debug)]
pub struct StateRoot {
    dir: PathBuf,
}

/// A container's state directory, locked for the lifetime of this value.
#[derive(Debug)]
pub struct LockedDir {
    path: PathBuf,
    lock: Lock,
}

impl StateRoot {
    /// The default state root: `/run/berth` for root; `$XDG_RUNTIME_DIR/berth` for other
    /// users (as runc does).
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !nix::unistd::geteuid().is_root() => PathBuf::from(dir).join("berth"),
            _ => PathBuf::from("/run/berth"),
        }
    }

    /// Uses `dir` as the state root; nothing is created until needed.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateRoot { dir: dir.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The cache of compiled seccomp filters, kept under the state root.
    pub fn seccomp_cache(&self) -> berth_seccomp::cache::Cache {
        berth_seccomp::cache::Cache::new(self.dir.join(".seccomp-cache"))
    }

    /// Directory of one container.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Creates a new container directory and locks it; fails if the ID is taken.
    pub fn create_dir(&self, id: &str) -> Result<LockedDir> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .ctx(|| format!("creating state root {}", self.dir.display()))?;
        let path = self.container_dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.into()))
            }
            Err(e) => return Err(e).ctx(|| format!("creating {}", path.display())),
        }
        let lock = lock_dir(&path)?;
        Ok(LockedDir { path, lock })
    }

    /// Locks an existing container directory.
    pub fn open_dir(&self, id: &str) -> Result<LockedDir> {
        validate_id(id)?;
        let path = self.container_dir(id);
        let lock = match lock_dir(&path) {
            Ok(l) => l,
            Err(Error::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(e),
        };
        // A concurrent delete may have emptied the directory before we got the lock.
        if !path.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.into()));
        }
        Ok(LockedDir { path, lock })
    }

    /// IDs of every container under the root, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("reading {}", self.dir.display())),
        };
        let mut ids: Vec<String> = entries
            .filter_map(std::result::Result::ok)
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Reads a container's state without taking its lock (for `list` and `state`).
    pub fn read(&self, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        read_state(&self.container_dir(id)).map_err(|e| match e {
            Error::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(id.into())
            }
            e => e,
        })
    }
}

fn lock_dir(path: &Path) -> Result<Lock> {
    Lock::existing(path, lock::Kind::Exclusive, lock::Wait::Block)
        .ctx(|| format!("locking {}", path.display()))
}

fn read_state(dir: &Path) -> Result<ContainerState> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::State(format!("{}: {e}", path.display())))
}

impl LockedDir {
    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor holding the lock (a cloned init must close its copy, or it would keep the
    /// container locked).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self.lock.as_raw_fd()
    }

    /// Reads the state file.
    pub fn read(&self) -> Result<ContainerState> {
        read_state(&self.path)
    }

    /// Replaces the state file atomically (write to a temporary name, then rename).
    pub fn write(&self, state: &ContainerState) -> Result<()> {
        let json = serde_json::to_vec(state).expect("state serialises");
        write_atomic(&self.path.join(STATE_FILE), &json)
    }

    /// Removes the directory and everything in it; consumes the lock.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.path).ctx(|| format!("removing {}", self.path.display()))
    }
}

/// Writes `data` to `path` atomically (mode 0600). Volatile, as it always was: state and pid
/// files live on tmpfs (`/run`), and create/start must not wait for an fsync.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    berth_sys::fs::write_atomic(path, data, 0o600, Durability::Volatile)
        .ctx(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "x.y_z+1", "5e4c43a45304"] {
            validate_id(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "a\0b",
            ".seccomp-cache",
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_twice_and_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("r"));
        let d = root.create_dir("c1").unwrap();
        drop(d);
        assert!(matches!(root.create_dir("c1"), Err(Error::Exists(_))));
        // The directory exists but holds no state file yet: not a container.
        assert!(matches!(root.open_dir("c1"), Err(Error::NotFound(_))));
        assert!(matches!(root.open_dir("nope"), Err(Error::NotFound(_))));
        assert!(matches!(root.read("nope"), Err(Error::NotFound(_))));
    }
}
