//! The exit record, `DIR/exit.json`: how the container's init (or the exec'd process) ended.
//!
//! ```text
//! {"exit_code":137,"signal":9,"started_at":"2026-12-06T21:00:00.123456789Z","finished_at":"2026-12-06T21:05:00.000000001Z"}
//! ```
//!
//! The monitor writes it atomically (temporary file, fsync, rename) after the process has
//! exited, its output was drained and (create mode) the runtime's state deleted; attach
//! clients see EOF only after that, so a client that saw EOF finds the record.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a process ended, and when it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal when a signal killed it (as a shell reports it).
    pub exit_code: i32,
    /// The signal that killed it, `null` when it exited.
    pub signal: Option<i32>,
    /// When the monitor saw the process created (create mode: when `berth create` returned;
    /// the container ran from berthd's `berth start` on).
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: SystemTime,
    /// When the monitor reaped it.
    #[serde(with = "crate::time::rfc3339")]
    pub finished_at: SystemTime,
}

impl ExitRecord {
    /// A record for a process that exited with `code`.
    pub fn exited(code: i32, started_at: SystemTime, finished_at: SystemTime) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            signal: None,
            started_at,
            finished_at,
        }
    }

    /// A record for a process killed by `signal` (exit code 128 + signal).
    pub fn killed(signal: i32, started_at: SystemTime, finished_at: SystemTime) -> ExitRecord {
        ExitRecord {
            exit_code: 128 + signal,
            signal: Some(signal),
            started_at,
            finished_at,
        }
    }

    /// The record as JSON, with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).expect("an exit record always serializes");
        s.push('\n');
        s
    }

    /// Parses a record.
    pub fn parse(data: &[u8]) -> Result<ExitRecord> {
        serde_json::from_slice(data).map_err(|e| Error::malformed("exit record", &e))
    }

    /// Reads `dir`'s [`crate::EXIT_FILE`]: `None` while there is none (the process runs, or
    /// the monitor died before it could write one).
    pub fn read(dir: &Path) -> Result<Option<ExitRecord>> {
        let path = dir.join(crate::EXIT_FILE);
        match std::fs::read(&path) {
            Ok(data) => ExitRecord::parse(&data).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn json_shape() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::new(1_000_000_000, 5);
        let t1 = t0 + Duration::from_secs(1);
        let r = ExitRecord::killed(9, t0, t1);
        assert_eq!(r.exit_code, 137);
        let json = r.to_json();
        assert_eq!(
            json,
            "{\"exit_code\":137,\"signal\":9,\"started_at\":\"2001-09-09T01:46:40.000000005Z\",\"finished_at\":\"2001-09-09T01:46:41.000000005Z\"}\n"
        );
        assert_eq!(ExitRecord::parse(json.as_bytes()).unwrap(), r);
        let e = ExitRecord::exited(3, t0, t1);
        assert!(e.to_json().contains("\"exit_code\":3,\"signal\":null"));
        assert!(ExitRecord::parse(b"{\"exit_code\":1}").is_err());
    }

    #[test]
    fn read_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::read(dir.path()).unwrap(), None);
        let r = ExitRecord::exited(0, SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH);
        std::fs::write(dir.path().join(crate::EXIT_FILE), r.to_json()).unwrap();
        assert_eq!(ExitRecord::read(dir.path()).unwrap(), Some(r));
        std::fs::write(dir.path().join(crate::EXIT_FILE), "{").unwrap();
        assert!(ExitRecord::read(dir.path()).is_err());
    }
}
