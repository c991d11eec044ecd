//! Character and block devices (skipped with a notice when rootless) and FIFOs.

use std::os::fd::AsFd;

use rustix::fs::{self as rfs, AtFlags, Dev, FileType, Mode};
use rustix::io::Errno;

use super::{io_err, times, Ctx, Dir, Target};
use crate::error::Result;
use crate::extract::tar::{Entry, Kind};

impl Ctx {
    pub(super) fn node(&mut self, e: &Entry, parent: &Dir, name: &[u8]) -> Result<()> {
        let (ft, dev): (FileType, Dev) = match e.kind {
            Kind::Char => (
                FileType::CharacterDevice,
                rfs::makedev(e.dev_major, e.dev_minor),
            ),
            Kind::Block => (
                FileType::BlockDevice,
                rfs::makedev(e.dev_major, e.dev_minor),
            ),
            _ => (FileType::Fifo, 0),
        };
        if ft != FileType::Fifo && self.opts.rootless {
            self.stats.skipped += 1;
            self.notice(format!(
                "{}: device node {}:{} skipped (rootless)",
                e.display_name(),
                e.dev_major,
                e.dev_minor
            ));
            return Ok(());
        }
        let mode = Mode::from_raw_mode(e.mode & 0o777);
        match rfs::mknodat(&parent.fd, name, ft, mode, dev) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.remove(e, parent.fd.as_fd(), name)?;
                rfs::mknodat(&parent.fd, name, ft, mode, dev).map_err(io_err(e, "mknod"))?;
            }
            Err(errno) => return Err(io_err(e, "mknod")(errno)),
        }
        self.metadata(e, Target::At(parent.fd.as_fd(), name), false, parent.setgid)?;
        rfs::utimensat(&parent.fd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(e, "set times"))?;
        if ft == FileType::Fifo {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        Ok(())
    }
}
