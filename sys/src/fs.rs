//! The one atomic file write: readers see the old content or the new, never a mix or a
//! truncated file. A temporary file with a unique name is written in the target's directory
//! and renamed over the target; on any error the temporary file is removed. Also the listing
//! of a directory that may not exist yet (a state directory, a cgroup removed meanwhile).

use std::fs::{File, OpenOptions, ReadDir};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What survives a crash (power loss, kernel panic) after [`write_atomic`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The file's data is fsynced before the rename and the directory after it: once
    /// [`write_atomic`] returns, the new content survives a crash. For data meant to outlive
    /// one: stores, configuration, network leases.
    Durable,
    /// No fsync: the rename is atomic for readers, but after a crash the file may hold the old
    /// content (or, on some filesystems, be empty). For state on tmpfs (`/run`), which a crash
    /// loses anyway, and caches whose readers validate entries: the hot path of
    /// `create`/`start` gains no fsync.
    Volatile,
}

/// `read_dir(dir)`, with a directory that does not exist read as `None`.
pub fn read_dir_if_exists(dir: &Path) -> io::Result<Option<ReadDir>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Per-process counter making temporary names unique across threads.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Temporary names tried before giving up (a name is taken only by a leftover of a crashed
/// process that had the same pid).
const TMP_ATTEMPTS: u32 = 100;

/// Replaces `path` with `data` atomically. The file is created with `mode` (subject to the
/// umask; an existing target's mode is not kept) and `O_CLOEXEC`; `durability` says whether
/// it is fsynced. The parent directory must exist.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temp(path, dir, mode)?;
    let written = file
        .write_all(data)
        .and_then(|()| match durability {
            Durability::Durable => file.sync_all(),
            Durability::Volatile => Ok(()),
        })
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    match durability {
        Durability::Durable => File::open(dir)?.sync_all(),
        Durability::Volatile => Ok(()),
    }
}

/// A new file `.<name>.tmp-<pid>-<n>` beside `path`, created exclusively (an existing file or
/// symlink of that name is never opened).
fn create_temp(path: &Path, dir: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let pid = std::process::id();
    let mut attempt = 0;
    loop {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{pid}-{n}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < TMP_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::scratch;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_and_leaves_no_temporaries() {
        let (tmp, p) = scratch("state.json");
        for (i, d) in [Durability::Volatile, Durability::Durable]
            .into_iter()
            .enumerate()
        {
            let text = format!("v{i}");
            write_atomic(&p, text.as_bytes(), 0o600, d).unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        }
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn leftover_temporaries_are_skipped() {
        let (tmp, p) = scratch("f");
        let next = TMP_COUNTER.load(Ordering::Relaxed);
        // A crashed writer of the same pid left the next few names behind (as symlinks, which
        // must not be followed).
        for n in next..next + 3 {
            let leftover = tmp
                .path()
                .join(format!(".f.tmp-{}-{n}", std::process::id()));
            std::os::unix::fs::symlink("/nonexistent", leftover).unwrap();
        }
        write_atomic(&p, b"x", 0o644, Durability::Volatile).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
    }

    #[test]
    fn errors_clean_up() {
        // The target is a non-empty directory: the rename fails, the temporary goes.
        let (tmp, p) = scratch("d");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("x"), b"").unwrap();
        assert!(write_atomic(&p, b"x", 0o600, Durability::Durable).is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        let missing = tmp.path().join("no/such/dir/f");
        assert!(write_atomic(&missing, b"x", 0o600, Durability::Volatile).is_err());
        assert!(read_dir_if_exists(&tmp.path().join("no"))
            .unwrap()
            .is_none());
        assert!(read_dir_if_exists(&p).unwrap().is_some());
        let e = read_dir_if_exists(&p.join("x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
    }

    #[test]
    fn concurrent_writers_never_tear() {
        let (_tmp, p) = scratch("f");
        write_atomic(&p, &[b'a'; 4096], 0o600, Durability::Volatile).unwrap();
        std::thread::scope(|s| {
            for c in [b'b', b'c', b'd'] {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(p, &[c; 4096], 0o600, Durability::Volatile).unwrap();
                    }
                });
            }
            for _ in 0..200 {
                let b = std::fs::read(&p).unwrap();
                assert_eq!(b.len(), 4096);
                assert!(b.iter().all(|x| *x == b[0]));
            }
        });
    }
}
