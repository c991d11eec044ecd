//! Directories: parents resolved inside the destination (`openat2(RESOLVE_IN_ROOT)`, through
//! symlinks only once no job is pending), created when the archive lacks them, cached by
//! path; directory entries created or updated; and the fix-ups deferred to the end (modes an
//! unprivileged extraction had to widen, directory times).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use berth_sys::in_root::{self, Resolve};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{Extractor, DIR_CACHE_MAX};
use crate::error::{Error, Result};
use crate::extract::names::split;
use crate::extract::tar::Entry;
use crate::extract::write::{io_err, times, Dir, Target};

/// Opens the destination directory.
pub(in crate::extract) fn open_root(dest: &Path) -> Result<OwnedFd> {
    rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(dest, "open the destination directory", e))
}

/// Destination paths resolve inside the destination, on its own mount.
const RESOLVE: Resolve = Resolve::InRootSameMount;

impl Extractor {
    /// Applies a final fix-up (`op`) to the directory `key` of the destination (the root when
    /// empty); a directory a later entry replaced or removed is skipped.
    pub(super) fn fix_up_dir(
        &self,
        key: &[u8],
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>) -> rustix::io::Result<()>,
    ) -> Result<()> {
        let opened;
        let fd = if key.is_empty() {
            self.root.fd.as_fd()
        } else {
            match self.open_existing_dir(key) {
                Some(fd) => {
                    opened = fd;
                    opened.as_fd()
                }
                None => return Ok(()),
            }
        };
        f(fd).map_err(|e| Error::EntryIo {
            entry: String::from_utf8_lossy(key).into_owned(),
            op,
            source: e.into(),
        })
    }

    /// Opens a directory of the destination for the final fix-ups; `None` if a later entry
    /// replaced or removed it.
    fn open_existing_dir(&self, key: &[u8]) -> Option<OwnedFd> {
        in_root::open_relative(
            self.root.fd.as_fd(),
            key,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            RESOLVE,
        )
        .ok()
    }

    /// The open directory `key` of the destination, resolved inside it (symlinks included,
    /// clamped to the destination). Missing directories are created when `create`. With
    /// workers, a path through a symlink is only resolved once every worker is idle.
    pub(super) fn dir(&mut self, key: &[u8], create: bool, e: &Entry) -> Result<Arc<Dir>> {
        if key.is_empty() {
            return Ok(Arc::clone(&self.root));
        }
        if let Some(d) = self.dirs.get(key) {
            return Ok(Arc::clone(d));
        }
        let mut created = false;
        // With workers, first resolve without symlinks to learn whether the path is plain.
        let mut plain = self.pool.is_some();
        let fd = loop {
            let resolve = if plain {
                Resolve::InRootStrict
            } else {
                RESOLVE
            };
            match in_root::open_relative(
                self.root.fd.as_fd(),
                key,
                OFlags::RDONLY | OFlags::DIRECTORY,
                resolve,
            ) {
                Ok(fd) => break fd,
                Err(Errno::LOOP) if plain => {
                    self.barrier();
                    plain = false;
                }
                Err(Errno::NOENT) if create && !created => {
                    let (pkey, name) = split(key);
                    let parent = self.dir(pkey, true, e)?;
                    match rfs::mkdirat(&parent.fd, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            let fd = rfs::openat(
                                &parent.fd,
                                name,
                                OFlags::RDONLY
                                    | OFlags::DIRECTORY
                                    | OFlags::NOFOLLOW
                                    | OFlags::CLOEXEC,
                                Mode::empty(),
                            )
                            .map_err(io_err(e, "open a created parent directory"))?;
                            self.ctx.implicit_dir_owner(e, &fd, parent.setgid)?;
                        }
                        Err(Errno::EXIST) => {}
                        Err(errno) => return Err(io_err(e, "create a parent directory")(errno)),
                    }
                    created = true;
                }
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(Errno::NOENT) if !create => {
                    return Err(Error::Entry {
                        entry: e.display_name(),
                        reason: format!(
                            "directory {:?} does not exist",
                            String::from_utf8_lossy(key)
                        ),
                    })
                }
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {
                    return Err(Error::Entry {
                        entry: e.display_name(),
                        reason: format!(
                            "parent {:?} is not a directory inside the destination",
                            String::from_utf8_lossy(key)
                        ),
                    })
                }
                Err(Errno::XDEV) => {
                    return Err(Error::Entry {
                        entry: e.display_name(),
                        reason: format!(
                            "parent {:?} crosses a mount",
                            String::from_utf8_lossy(key)
                        ),
                    })
                }
                Err(errno) => return Err(io_err(e, "open the parent directory")(errno)),
            }
        };
        let d = Arc::new(Dir::open(fd, plain).map_err(io_err(e, "fstat a parent directory"))?);
        self.cache(key.to_vec(), Arc::clone(&d));
        Ok(d)
    }

    fn cache(&mut self, key: Vec<u8>, d: Arc<Dir>) {
        if self.dirs.len() >= DIR_CACHE_MAX {
            self.dirs.clear();
        }
        self.dirs.insert(key, d);
    }

    /// Forgets every cached directory (after something was removed or replaced, any cached
    /// path may now resolve elsewhere).
    pub(super) fn invalidate(&mut self) {
        self.dirs.clear();
    }

    /// Removes whatever is at `name` (a directory with all its contents).
    pub(super) fn remove(&mut self, e: &Entry, dir: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        self.invalidate();
        let r = self.ctx.remove(e, dir, name);
        self.ctx.removed = false;
        r
    }

    /// The mode a directory gets while the layer is extracted: without privileges, one we
    /// could not write into gets u+rwx until [`Self::finish`] sets its real mode.
    pub(super) fn dir_mode_now(&mut self, e: &Entry, key: &[u8]) -> u32 {
        if self.ctx.euid != 0 && e.mode & 0o700 != 0o700 {
            self.deferred_modes.push((key.to_vec(), e.mode));
            e.mode | 0o700
        } else {
            e.mode
        }
    }

    pub(super) fn mkdir(&mut self, e: &Entry, key: &[u8], parent: &Dir, name: &[u8]) -> Result<()> {
        let mode_now = self.dir_mode_now(e, key);
        let mode = Mode::from_raw_mode(mode_now & 0o777);
        let mut existing = false;
        match rfs::mkdirat(&parent.fd, name, mode) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_err(e, "stat an existing entry"))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    existing = true;
                } else {
                    self.remove(e, parent.fd.as_fd(), name)?;
                    rfs::mkdirat(&parent.fd, name, mode).map_err(io_err(e, "mkdir"))?;
                }
            }
            Err(errno) => return Err(io_err(e, "mkdir")(errno)),
        }
        let fd = rfs::openat(
            &parent.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(e, "open the new directory"))?;
        self.ctx
            .metadata_mode(e, Target::Fd(fd.as_fd()), existing, parent.setgid, mode_now)?;
        self.dir_times.push((key.to_vec(), times(e)));
        self.ctx.stats.dirs += 1;
        let mut dir = Dir::open(fd, parent.plain).map_err(io_err(e, "fstat a new directory"))?;
        dir.setgid = e.mode & 0o2000 != 0;
        self.cache(key.to_vec(), Arc::new(dir));
        Ok(())
    }
}
