//! Whiteouts and opaque markers: as overlayfs expects them (a 0/0 character device, the
//! opaque xattr) in an overlay layer, or applied (what they name removed) when flattening,
//! where they only ever remove what lower layers provided.

use std::os::fd::AsFd;
use std::sync::OnceLock;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::Extractor;
use crate::error::{Error, Result};
use crate::extract::names::{join, split};
use crate::extract::tar::Entry;
use crate::extract::write::{io_err, Dir, Target};

pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";

const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

impl Extractor {
    pub(super) fn whiteout(
        &mut self,
        e: &Entry,
        parent_key: &[u8],
        name: &[u8],
        target: &[u8],
    ) -> Result<()> {
        let flatten = self.flatten();
        if name == OPAQUE_MARKER {
            self.ctx.stats.opaques += 1;
            if flatten {
                // Like containerd, the marker's directory exists afterwards, as it does in the
                // overlay view.
                let dir = self.dir(parent_key, true, e)?;
                self.mark_dir_in_layer(parent_key);
                let key = parent_key.to_vec();
                return self.opaque(e, &dir, &key);
            }
            let dir = self.dir(parent_key, true, e)?;
            let xattr = if self.ctx.opts.rootless {
                "user.overlay.opaque"
            } else {
                "trusted.overlay.opaque"
            };
            return rfs::fsetxattr(&dir.fd, xattr, b"y", XattrFlags::empty())
                .map_err(io_err(e, "set the opaque xattr"));
        }
        if name.starts_with(b".wh..wh.") {
            self.ctx.stats.skipped += 1;
            self.notice(format!("{}: aufs metadata entry skipped", e.display_name()));
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(Error::Entry {
                entry: e.display_name(),
                reason: "whiteout without a name".into(),
            });
        }
        self.ctx.stats.whiteouts += 1;
        if flatten {
            let key = join(parent_key, target);
            if self.in_layer.contains(&key) {
                // Whiteouts only hide lower layers, never this layer's own entries.
                return Ok(());
            }
            let dir = self.dir(parent_key, true, e)?;
            self.mark_dir_in_layer(parent_key);
            return self.remove(e, dir.fd.as_fd(), target);
        }
        let dir = self.dir(parent_key, true, e)?;
        match rfs::mknodat(&dir.fd, target, FileType::CharacterDevice, Mode::empty(), 0) {
            Ok(()) => {}
            // The same name in this layer wins over the whiteout.
            Err(Errno::EXIST) => return Ok(()),
            Err(errno) => return Err(io_err(e, "create the whiteout device")(errno)),
        }
        let owner = self.ctx.map_owner(e, e.uid, e.gid)?;
        let t = Target::At(dir.fd.as_fd(), target);
        self.ctx.set_owner(e, t, owner, dir.setgid)?;
        Ok(())
    }

    /// Flatten mode: removes from `dir` (path `key`) everything lower layers put there,
    /// keeping (and recursing into) what this layer added.
    fn opaque(&mut self, e: &Entry, dir: &Dir, key: &[u8]) -> Result<()> {
        let mut children = Vec::new();
        let rd = rfs::Dir::read_from(&dir.fd).map_err(io_err(e, "read a directory"))?;
        for ent in rd {
            let ent = ent.map_err(io_err(e, "read a directory"))?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            children.push((n.to_vec(), ent.file_type()));
        }
        for (child, ft) in children {
            let ckey = join(key, &child);
            if self.in_layer.contains(&ckey) {
                let is_dir = match ft {
                    FileType::Directory => true,
                    FileType::Unknown => {
                        rfs::statat(&dir.fd, child.as_slice(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(
                            |st| FileType::from_raw_mode(st.st_mode) == FileType::Directory,
                        )
                    }
                    _ => false,
                };
                if is_dir {
                    let sub = rfs::openat(
                        &dir.fd,
                        child.as_slice(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(io_err(e, "open a directory"))?;
                    let sub = Dir {
                        fd: sub,
                        setgid: false,
                        ino: 0,
                        plain: false,
                        worker: OnceLock::new(),
                    };
                    self.opaque(e, &sub, &ckey)?;
                }
            } else {
                self.remove(e, dir.fd.as_fd(), &child)?;
            }
        }
        Ok(())
    }

    /// Records `key` and its parents as present in this layer.
    pub(super) fn mark_in_layer(&mut self, parent_key: &[u8], key: &[u8]) {
        if parent_key != self.last_parent.as_slice() {
            self.mark_dir_in_layer(parent_key);
            self.last_parent.clear();
            self.last_parent.extend_from_slice(parent_key);
        }
        self.in_layer.insert(key.to_vec());
    }

    /// Records the directory `key` and its parents as present in this layer.
    fn mark_dir_in_layer(&mut self, key: &[u8]) {
        let mut p = key;
        while !p.is_empty() && self.in_layer.insert(p.to_vec()) {
            p = split(p).0;
        }
    }
}
