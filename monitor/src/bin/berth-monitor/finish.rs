//! The end: the exit record, written atomically (temporary file, fsync, rename) before any
//! client sees EOF, so a client that saw EOF finds it.

use std::path::Path;
use std::time::SystemTime;

use berth_monitor::EXIT_FILE;
use berth_sys::fs::{write_atomic, Durability};

use crate::reaper::Status;

/// Writes `DIR/exit.json` for a process that ended with `status`.
pub fn write_exit_record(
    dir: &Path,
    status: Status,
    started: SystemTime,
    finished: SystemTime,
) -> std::io::Result<()> {
    let record = status.record(started, finished);
    write_atomic(
        &dir.join(EXIT_FILE),
        record.to_json().as_bytes(),
        0o644,
        Durability::Durable,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_monitor::ExitRecord;

    #[test]
    fn record_round_trips_through_the_library() {
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::now();
        write_exit_record(dir.path(), Status::Killed(9), t, t).unwrap();
        let r = ExitRecord::read(dir.path()).unwrap().unwrap();
        assert_eq!((r.exit_code, r.signal), (137, Some(9)));
        write_exit_record(dir.path(), Status::Exited(3), t, t).unwrap();
        let r = ExitRecord::read(dir.path()).unwrap().unwrap();
        assert_eq!((r.exit_code, r.signal), (3, None));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
