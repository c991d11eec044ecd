//! The containers the engine ran (`berth container ls|inspect|stop|rm`): every bundle under
//! `<store>/bundles` whose run record is that container's ([`RunRecord::belongs_to`]), with
//! what the runtime's state says of it. Containers made by other means (a runc-style
//! `create` of a bundle, berthd's) are not the engine's runs and are not listed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_runtime::state::{ContainerState, Status};

use crate::error::{Error, Result};
use crate::record::RunRecord;
use crate::{names, Engine};

/// A container the engine ran.
#[derive(Debug, Clone)]
pub struct RunContainer {
    /// Its name (the runtime's container ID).
    pub id: String,
    /// What the run made for it.
    pub record: RunRecord,
    /// Its bundle directory.
    pub bundle: PathBuf,
    /// Its process's arguments (the bundle's `config.json`), empty when unreadable.
    pub command: Vec<String>,
    /// The runtime's state; `None` when it has none (a run killed before its container was
    /// created, or after it was deleted: `delete -f` removes what is left).
    pub state: Option<ContainerState>,
}

impl RunContainer {
    /// The live status (`None`: no runtime state).
    pub fn status(&self) -> Option<Status> {
        self.state.as_ref().map(ContainerState::status)
    }

    /// Whether its process runs (or is frozen).
    pub fn is_running(&self) -> bool {
        matches!(self.status(), Some(Status::Running | Status::Paused))
    }
}

/// A span as docker prints it in `ps` (`Up 5 minutes`, `3 hours ago`): `Less than a
/// second`, `1 second`, `5 seconds`, `About a minute`, `3 minutes`, `About an hour`,
/// `2 hours`, `4 days`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// How often [`Engine::stop`] looks whether the container has exited.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long a SIGKILLed container may take to be gone before `stop` gives up (as berthd).
const KILL_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// Every container the engine ran that still has its bundle, by name.
    pub fn containers(&self) -> Result<Vec<RunContainer>> {
        let dir = self.store_root().join("bundles");
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading", &dir, e)),
        };
        let mut out = Vec::new();
        for ent in entries {
            let ent = ent.map_err(|e| Error::io("reading", &dir, e))?;
            let Some(id) = ent.file_name().to_str().map(String::from) else {
                continue;
            };
            if let Some(c) = self.run_container(&id)? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The container `id` if the engine ran it (its bundle holds its run record).
    pub fn run_container(&self, id: &str) -> Result<Option<RunContainer>> {
        if names::validate(id).is_err() {
            return Ok(None);
        }
        let bundle = names::bundle_dir(self.store_root(), id);
        let Some(record) = RunRecord::read(&bundle)? else {
            return Ok(None);
        };
        if !record.belongs_to(&bundle, id) {
            return Ok(None);
        }
        let command = std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|c| serde_json::from_value(c["process"]["args"].clone()).ok())
            .unwrap_or_default();
        Ok(Some(RunContainer {
            id: id.to_string(),
            state: self.root().read(id).ok(),
            record,
            bundle,
            command,
        }))
    }

    /// Stops container `id` as `docker stop` does: SIGTERM, then SIGKILL if it still runs
    /// after `grace`, and returns once it has stopped. A container that is not running is
    /// left as it is; an unknown name is an error.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let status = self.root().read(id)?.status();
        if !matches!(status, Status::Running | Status::Paused) {
            return Ok(());
        }
        if status == Status::Paused {
            berth_runtime::resume(self.root(), id)?;
        }
        self.signal(id, nix::libc::SIGTERM)?;
        if self.wait_stopped(id, grace) {
            return Ok(());
        }
        self.signal(id, nix::libc::SIGKILL)?;
        if self.wait_stopped(id, KILL_GRACE) {
            return Ok(());
        }
        Err(Error::StillRunning(id.to_string()))
    }

    /// Sends `signal` to the init of `id`; one that has just exited is no error.
    fn signal(&self, id: &str, signal: i32) -> Result<()> {
        match berth_runtime::kill(self.root(), id, signal, false) {
            Ok(()) | Err(berth_runtime::Error::NotRunning) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `id` stopped (or lost its state) within `limit`.
    fn wait_stopped(&self, id: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let live = self
                .root()
                .read(id)
                .is_ok_and(|s| matches!(s.status(), Status::Running | Status::Paused));
            if !live {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(STOP_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_docker_words_them() {
        for (secs, want) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3600, "About an hour"),
            (7200, "2 hours"),
            (172_799, "47 hours"),
            (172_800, "2 days"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs} s");
        }
    }
}
