//! Ownership (shifted by the id mapping, best effort when rootless), modes (skipped when the
//! umask already gave the wanted one) and xattrs (overlayfs ones from the layer refused) of
//! the entries written.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Mode, XattrFlags};
use rustix::io::Errno;

use super::{io_err, Ctx, Target};
use crate::error::{Error, Result};
use crate::extract::tar::{Entry, Kind};

impl Ctx {
    pub(in crate::extract) fn map_owner(
        &self,
        e: &Entry,
        uid: u64,
        gid: u64,
    ) -> Result<(u32, u32)> {
        let err = |what: &str, id: u64| Error::Entry {
            entry: e.display_name(),
            reason: format!("{what} {id} is not mapped"),
        };
        let uid32 = u32::try_from(uid).map_err(|_| err("uid", uid))?;
        let gid32 = u32::try_from(gid).map_err(|_| err("gid", gid))?;
        match &self.opts.id_map {
            Some(m) => Ok((
                m.map_uid(uid32).ok_or_else(|| err("uid", uid))?,
                m.map_gid(gid32).ok_or_else(|| err("gid", gid))?,
            )),
            None => Ok((uid32, gid32)),
        }
    }

    /// Gives the entry at `t` the owner `uid:gid` (already mapped): when `always`, or when it
    /// differs from the extracting user's (a new entry is already theirs), unless a rootless
    /// extraction found it may not chown.
    pub(in crate::extract) fn set_owner(
        &mut self,
        e: &Entry,
        t: Target<'_>,
        (uid, gid): (u32, u32),
        always: bool,
    ) -> Result<()> {
        if self.chown && (always || uid != self.euid || gid != self.egid) {
            self.chown_target(e, t, uid, gid)?;
        }
        Ok(())
    }

    fn chown_target(&mut self, e: &Entry, target: Target<'_>, uid: u32, gid: u32) -> Result<()> {
        let owner = Some(rustix::fs::Uid::from_raw(uid));
        let group = Some(rustix::fs::Gid::from_raw(gid));
        let res = match target {
            Target::Fd(fd) => rfs::fchown(fd, owner, group),
            Target::At(dir, name) => {
                rfs::chownat(dir, name, owner, group, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        match res {
            Ok(()) => Ok(()),
            Err(Errno::PERM | Errno::INVAL) if self.opts.rootless => {
                self.chown = false;
                self.notice(format!(
                    "{}: cannot set ownership {uid}:{gid} without privileges; files keep the \
                     extracting user's ownership",
                    e.display_name()
                ));
                Ok(())
            }
            Err(errno) => Err(io_err(e, "chown")(errno)),
        }
    }

    /// A parent directory created because the archive lacks its entry: root-owned 0755.
    pub(in crate::extract) fn implicit_dir_owner(
        &mut self,
        e: &Entry,
        fd: &OwnedFd,
        parent_setgid: bool,
    ) -> Result<()> {
        let (uid, gid) = self.map_owner(e, 0, 0)?;
        self.set_owner(e, Target::Fd(fd.as_fd()), (uid, gid), parent_setgid)?;
        if self.umask & 0o755 != 0 || parent_setgid {
            rfs::fchmod(fd, Mode::from_raw_mode(0o755))
                .map_err(io_err(e, "chmod a created parent directory"))?;
        }
        Ok(())
    }

    /// Ownership, mode and xattrs, in that order (chown clears setuid bits and
    /// security.capability).
    pub(super) fn metadata(
        &mut self,
        e: &Entry,
        t: Target<'_>,
        existing: bool,
        parent_setgid: bool,
    ) -> Result<()> {
        self.metadata_mode(e, t, existing, parent_setgid, e.mode)
    }

    /// [`Self::metadata`] with the mode to set now (a directory an unprivileged extraction
    /// could not write into gets its real mode at the end). A new entry owned by the
    /// extracting user, and a mode the umask left as wanted, cost no system call.
    pub(in crate::extract) fn metadata_mode(
        &mut self,
        e: &Entry,
        t: Target<'_>,
        existing: bool,
        parent_setgid: bool,
        mode_now: u32,
    ) -> Result<()> {
        let (uid, gid) = self.map_owner(e, e.uid, e.gid)?;
        self.set_owner(e, t, (uid, gid), existing || parent_setgid)?;
        let is_dir = e.kind == Kind::Dir;
        let need_chmod = existing
            || mode_now & 0o7000 != 0
            || mode_now & self.umask & 0o777 != 0
            || (is_dir && parent_setgid);
        if need_chmod {
            let mode = Mode::from_raw_mode(mode_now);
            let r = match t {
                Target::Fd(fd) => rfs::fchmod(fd, mode),
                // fchmodat cannot skip symlinks, but devices and FIFOs were just created by us
                // and symlink permissions do not exist.
                Target::At(dir, name) => {
                    if e.kind == Kind::Symlink {
                        Ok(())
                    } else {
                        rfs::chmodat(dir, name, mode, AtFlags::empty())
                    }
                }
            };
            r.map_err(io_err(e, "chmod"))?;
        }
        self.xattrs(e, t)
    }

    fn xattrs(&mut self, e: &Entry, t: Target<'_>) -> Result<()> {
        for (name, value) in &e.xattrs {
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                self.stats.skipped += 1;
                self.notice(format!(
                    "{}: overlayfs xattr {} from the layer ignored",
                    e.display_name(),
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            if name.contains(&0) {
                return Err(Error::Entry {
                    entry: e.display_name(),
                    reason: "xattr name contains a NUL byte".into(),
                });
            }
            let r = match t {
                Target::Fd(fd) => rfs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()),
                Target::At(dir, leaf) => {
                    // No fd for a symlink or device: go through the parent's fd in /proc,
                    // which lsetxattr resolves without following the final component.
                    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                    p.extend_from_slice(leaf);
                    rfs::lsetxattr(p.as_slice(), name.as_slice(), value, XattrFlags::empty())
                }
            };
            match r {
                Ok(()) => {}
                Err(Errno::NOTSUP) => {
                    self.stats.skipped += 1;
                    self.notice(format!(
                        "{}: xattr {} not supported by the destination filesystem",
                        e.display_name(),
                        String::from_utf8_lossy(name)
                    ));
                }
                Err(Errno::PERM | Errno::ACCESS) if self.opts.rootless => {
                    self.stats.skipped += 1;
                    self.notice(format!(
                        "{}: xattr {} needs privileges; skipped",
                        e.display_name(),
                        String::from_utf8_lossy(name)
                    ));
                }
                Err(errno) => return Err(io_err(e, "set an xattr")(errno)),
            }
        }
        Ok(())
    }
}
