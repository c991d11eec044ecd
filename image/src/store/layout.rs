//! Where things live under the store's root (blobs, layers, short links, temporaries), and
//! the primitives every write of the store goes through: advisory locks, atomic and durable
//! writes (temp, fsync, rename, fsync the directory), and removal without following symlinks.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Store;
use crate::error::{Error, Result};
use crate::extract;
use crate::image::Digest;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(super) fn io_at<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'p {
    move |e| Error::io(path, op, e)
}

/// An advisory lock on a file in the store, released on drop.
pub(super) type Lock = berth_sys::lock::Lock;

/// Takes the lock file `path` (created 0600 if missing), waiting for it.
pub(super) fn lock(path: &Path, exclusive: bool) -> Result<Lock> {
    use berth_sys::lock::{Kind, Wait};
    let kind = if exclusive {
        Kind::Exclusive
    } else {
        Kind::Shared
    };
    Lock::create(path, 0o600, kind, Wait::Block).map_err(io_at(path, "lock"))
}

pub(super) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir, "fsync directory"))
}

/// Creates the file `path` (which must not exist yet) for writing, readable by its owner only.
pub(super) fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path, "create"))
}

/// Writes `data` to `path` atomically and durably (temp, fsync, rename, fsync dir), readable
/// by its owner only.
pub(super) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    berth_sys::fs::write_atomic(path, data, 0o600, berth_sys::fs::Durability::Durable)
        .map_err(io_at(path, "write atomically"))
}

/// A scratch directory holding this file is left alone by [`Store::open`] even once its
/// process is gone: what the file names must be undone first (a build step's container and
/// network, by the engine), and whoever undoes it removes the directory with
/// [`Store::remove_scratch`].
pub const RECLAIM_MARKER: &str = "reclaim.json";

/// Detaches (`MNT_DETACH`, never following a final symlink) every mount at or beneath
/// `dir`, deepest first, as this process's mount table lists them; fails if one is left.
pub(super) fn detach_mounts_beneath(dir: &Path) -> Result<()> {
    // The directory's own name is never followed: were it a symlink, the mounts it leads
    // to are not its.
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let real = fs::canonicalize(parent)
        .map_err(io_at(parent, "resolve"))?
        .join(name);
    let beneath = || -> Result<Vec<PathBuf>> {
        let table = berth_sys::mountinfo::read_self()
            .map_err(io_at(Path::new("/proc/self/mountinfo"), "read"))?;
        let mut points: Vec<PathBuf> = table
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&real))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        points.dedup();
        Ok(points)
    };
    let points = beneath()?;
    if points.is_empty() {
        return Ok(());
    }
    for p in &points {
        // EINVAL: already gone with a detached parent.
        let _ = rustix::mount::unmount(
            p,
            rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
        );
    }
    match beneath()?.first() {
        None => Ok(()),
        Some(left) => Err(Error::io(
            left,
            "unmount",
            io::Error::other("still mounted: the directory is not removed"),
        )),
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes a file, symlink or directory tree without following symlinks.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(path.display().to_string(), "no file name"))?;
    let dir = File::open(parent).map_err(io_at(parent, "open"))?;
    extract::remove_all_at(dir.as_fd(), std::os::unix::ffi::OsStrExt::as_bytes(name))
        .map_err(|e| Error::io(path, "remove", e))
}

impl Store {
    /// Path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Directory of an extracted layer (an overlayfs lower layer), by ChainID.
    pub fn layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex()).join("diff")
    }

    /// A short path (`<root>/l/<12 hex>`) that resolves to [`Store::layer_path`], for
    /// overlay mount strings.
    pub fn short_layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("l").join(&chain_id.hex()[..12])
    }

    /// Whether a layer is extracted and complete.
    pub fn has_layer(&self, chain_id: &Digest) -> bool {
        self.layer_path(chain_id).is_dir()
    }

    pub(super) fn tmp_path(&self, what: &str) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{}-{}-{what}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Removes the temporaries of processes that are gone (see [`Store::dead_scratch`]),
    /// except those holding a [`RECLAIM_MARKER`], which wait for their owner's reclaim.
    /// Returns how many it removed.
    pub(super) fn clean_tmp(&self) -> Result<usize> {
        let mut removed = 0;
        for dir in self.dead_scratch()? {
            if dir.join(RECLAIM_MARKER).exists() {
                continue;
            }
            if self.remove_scratch(&dir)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The entries of the store's `tmp/` whose process (the pid that starts their name) is
    /// gone: what a killed import, pull or build left. Reading the directory is all it costs.
    pub fn dead_scratch(&self) -> Result<Vec<PathBuf>> {
        let tmp = self.root.join("tmp");
        let mut dead = Vec::new();
        for ent in fs::read_dir(&tmp).map_err(io_at(&tmp, "read"))? {
            let ent = ent.map_err(io_at(&tmp, "read"))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if !pid.is_some_and(pid_alive) {
                dead.push(ent.path());
            }
        }
        Ok(dead)
    }

    /// Removes `dir`, an entry of the store's `tmp/` (a scratch directory or temporary):
    /// claimed first by a rename to a temporary of this process (of two callers, one
    /// removes it; a crash of this one leaves it to the next), then every mount beneath it
    /// detached, deepest first, and only then removed: nothing is ever deleted through a
    /// mount (a killed build's overlay, whose lower layers are the store's). Returns false
    /// when another caller claimed it first.
    pub fn remove_scratch(&self, dir: &Path) -> Result<bool> {
        let tmp = self.root.join("tmp");
        if dir.parent() != Some(tmp.as_path()) {
            return Err(Error::invalid(
                dir.display().to_string(),
                "not an entry of the store's tmp/",
            ));
        }
        let claimed = self.tmp_path("reclaim");
        match fs::rename(dir, &claimed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            // The entry itself is a mount point: detached where it is, then claimed.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                detach_mounts_beneath(dir)?;
                fs::rename(dir, &claimed).map_err(io_at(dir, "rename"))?;
            }
            Err(e) => return Err(Error::io(dir, "rename", e)),
        }
        detach_mounts_beneath(&claimed)?;
        remove_any(&claimed)?;
        Ok(true)
    }
}
