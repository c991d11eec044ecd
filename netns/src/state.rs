//! State files: JSON written atomically (temp file + rename), and exclusive file locks.

use std::fs;
use std::io;
use std::path::Path;

use berth_sys::fs::Durability;
use berth_sys::lock;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{io_err, Error, Result};

/// Reads a JSON file; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::State {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            op: "reading",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a JSON file atomically (readers never see a half-written file). Durable: these
/// files always fsynced their data before the rename (leases and port reservations must not
/// come back torn); the directory fsync after it completes that. Mode 0666 less the umask, as
/// before.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let mut bytes = serde_json::to_vec_pretty(value).expect("state serializes");
    bytes.push(b'\n');
    berth_sys::fs::write_atomic(path, &bytes, 0o666, Durability::Durable)
        .map_err(io_err("writing", path))
}

/// Removes a file; a missing one is fine.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            op: "removing",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Every `*.json` record in `dir`, in name order; a file removed meanwhile is skipped.
pub(crate) fn read_all_json<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for stem in json_stems(dir)? {
        if let Some(record) = read_json(&dir.join(format!("{stem}.json")))? {
            out.push(record);
        }
    }
    Ok(out)
}

/// The names (file stems) of the `*.json` files in a directory, sorted.
fn json_stems(dir: &Path) -> Result<Vec<String>> {
    let Some(entries) = berth_sys::fs::read_dir_if_exists(dir).map_err(io_err("listing", dir))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        let name = entry.file_name();
        if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
            out.push(stem.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// An exclusive `flock` held until dropped. Locks taken through separate opens exclude each
/// other across processes and across threads of one process alike.
pub(crate) struct Lock {
    _lock: lock::Lock,
}

impl Lock {
    /// Takes the lock on `path` (created if missing), waiting for other holders.
    pub(crate) fn exclusive(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let held = lock::Lock::create(path, 0o666, lock::Kind::Exclusive, lock::Wait::Block)
            .map_err(io_err("locking", path))?;
        Ok(Self { _lock: held })
    }
}
