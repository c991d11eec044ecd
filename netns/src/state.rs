//! State files: JSON written atomically (temp file + rename), and exclusive file locks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
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

/// Writes a JSON file atomically (readers never see a half-written file).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut bytes = serde_json::to_vec_pretty(value).expect("state serializes");
    bytes.push(b'\n');
    let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_data())
        .map_err(io_err("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("renaming into place", path))
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

/// The names (file stems) of the `*.json` files in a directory, sorted.
pub(crate) fn json_stems(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                op: "listing",
                path: dir.to_owned(),
                source,
            })
        }
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
    _flock: Flock<File>,
}

impl Lock {
    /// Takes the lock on `path` (created if missing), waiting for other holders.
    pub(crate) fn exclusive(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("opening lock", path))?;
        let flock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
            op: "locking",
            path: path.to_owned(),
            source: io::Error::from_raw_os_error(e as i32),
        })?;
        Ok(Self { _flock: flock })
    }
}
