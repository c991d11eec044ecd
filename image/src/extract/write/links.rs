//! Symlinks (never followed) and hardlinks (to a name inside the destination; the link
//! entry's header applies to the shared inode).

use std::os::fd::AsFd;

use rustix::fs::{self as rfs, AtFlags, FileType};
use rustix::io::Errno;

use super::{io_err, times, Ctx, Dir, Target};
use crate::error::{Error, Result};
use crate::extract::names::PATH_MAX;
use crate::extract::tar::Entry;

impl Ctx {
    pub(super) fn symlink(&mut self, e: &Entry, parent: &Dir, name: &[u8]) -> Result<()> {
        if e.link.is_empty() || e.link.contains(&0) || e.link.len() > PATH_MAX {
            return Err(Error::Entry {
                entry: e.display_name(),
                reason: "bad symlink target".into(),
            });
        }
        match rfs::symlinkat(e.link.as_slice(), &parent.fd, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.remove(e, parent.fd.as_fd(), name)?;
                rfs::symlinkat(e.link.as_slice(), &parent.fd, name)
                    .map_err(io_err(e, "symlink"))?;
            }
            Err(errno) => return Err(io_err(e, "symlink")(errno)),
        }
        self.metadata(e, Target::At(parent.fd.as_fd(), name), false, parent.setgid)?;
        rfs::utimensat(&parent.fd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(e, "set times"))?;
        self.stats.symlinks += 1;
        Ok(())
    }

    /// Links `name` in `parent` to `tname` in `tdir` (never following `tname`), then applies
    /// the link entry's header to the shared inode.
    pub(super) fn hardlink(
        &mut self,
        e: &Entry,
        tdir: &Dir,
        tname: &[u8],
        parent: &Dir,
        name: &[u8],
    ) -> Result<()> {
        let link = || rfs::linkat(&tdir.fd, tname, &parent.fd, name, AtFlags::empty());
        match link() {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let a = rfs::statat(&tdir.fd, tname, AtFlags::SYMLINK_NOFOLLOW);
                let b = rfs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW);
                let same = matches!((&a, &b), (Ok(a), Ok(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev);
                if !same {
                    self.remove(e, parent.fd.as_fd(), name)?;
                    link().map_err(io_err(e, "hardlink"))?;
                } else if b.is_ok_and(|b| FileType::from_raw_mode(b.st_mode) == FileType::Directory)
                {
                    // A directory "linked" to itself: no link, and its header must not
                    // become the directory's mode (as linkat refuses any other).
                    return Err(Error::Entry {
                        entry: e.display_name(),
                        reason: "a hardlink to a directory".into(),
                    });
                }
            }
            Err(Errno::NOENT) => {
                return Err(Error::Entry {
                    entry: e.display_name(),
                    reason: format!(
                        "hardlink target {:?} does not exist in the destination",
                        String::from_utf8_lossy(&e.link)
                    ),
                })
            }
            Err(errno) => return Err(io_err(e, "hardlink")(errno)),
        }
        // The link entry's own header applies to the shared inode (owner, mode, xattrs,
        // mtime), as containerd and podman apply it: the last entry naming an inode wins.
        let st =
            rfs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err(e, "stat"))?;
        let t = Target::At(parent.fd.as_fd(), name);
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            // A hardlinked symlink: ownership only (no mode, no user xattrs on symlinks).
            let owner = self.map_owner(e, e.uid, e.gid)?;
            self.set_owner(e, t, owner, true)?;
        } else {
            self.metadata(e, t, true, parent.setgid)?;
        }
        rfs::utimensat(&parent.fd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(e, "set times"))?;
        self.stats.hardlinks += 1;
        Ok(())
    }
}
