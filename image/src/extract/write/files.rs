//! Regular files: created (replacing what is there), their data written from slices of the
//! stream's shared buffers (a queued job) or straight from the stream (sparse and large
//! files, on the coordinator), then their metadata and times.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;

use super::{io_err, times, Ctx, Data, Dir, Target};
use crate::error::{Error, Result};
use crate::extract::tar::{Entry, Source, TarReader};

impl Ctx {
    /// Creates a regular file with its (non-sparse) data, as queued in a job.
    pub(super) fn file(&mut self, e: &Entry, parent: &Dir, name: &[u8], data: Data) -> Result<()> {
        let fd = self.create_file(e, parent, name)?;
        match &data {
            Data::Empty => {}
            Data::One(buf, r) => write_all(&fd, &buf.bytes()[r.clone()], None, e)?,
            Data::Many(segs) => {
                for (buf, r) in segs {
                    write_all(&fd, &buf.bytes()[r.clone()], None, e)?;
                }
            }
            Data::Owned(v) => write_all(&fd, v, None, e)?,
        }
        // The stream buffer goes back to the reader as soon as possible.
        drop(data);
        self.stats.data_bytes += e.real_size;
        self.finish_file(e, parent, &fd)
    }

    /// Creates the regular file `name` in `parent`, replacing what is there.
    pub(in crate::extract) fn create_file(
        &mut self,
        e: &Entry,
        parent: &Dir,
        name: &[u8],
    ) -> Result<OwnedFd> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(e.mode & 0o777);
        match rfs::openat(&parent.fd, name, flags, mode) {
            Ok(fd) => Ok(fd),
            Err(Errno::EXIST) => {
                self.remove(e, parent.fd.as_fd(), name)?;
                rfs::openat(&parent.fd, name, flags, mode).map_err(io_err(e, "create"))
            }
            Err(errno) => Err(io_err(e, "create")(errno)),
        }
    }

    /// Metadata and times of a written file.
    pub(in crate::extract) fn finish_file(
        &mut self,
        e: &Entry,
        parent: &Dir,
        fd: &OwnedFd,
    ) -> Result<()> {
        self.metadata(e, Target::Fd(fd.as_fd()), false, parent.setgid)?;
        rfs::futimens(fd, &times(e)).map_err(io_err(e, "set times"))?;
        self.stats.files += 1;
        Ok(())
    }
}

/// Takes the current member's whole data (a small file: see `apply::JOB_FILE_MAX`): as
/// slices of the source's shared buffers when it has them, else as a copy.
pub(in crate::extract) fn read_data<S: Source>(tar: &mut TarReader<S>) -> Result<Data> {
    let mut data = Data::Empty;
    while tar.remaining() > 0 {
        let chunk = tar.data()?;
        let (addr, n) = (chunk.as_ptr() as usize, chunk.len());
        let seg = tar.shared().map(|buf| {
            let start = addr - buf.bytes().as_ptr() as usize;
            (Arc::clone(buf), start..start + n)
        });
        data = match (data, seg) {
            (Data::Empty, Some((buf, r))) => Data::One(buf, r),
            (Data::One(b0, r0), Some(seg)) => Data::Many(vec![(b0, r0), seg]),
            (Data::Many(mut segs), Some(seg)) => {
                segs.push(seg);
                Data::Many(segs)
            }
            (Data::Owned(mut v), None) => {
                v.extend_from_slice(tar.data()?);
                Data::Owned(v)
            }
            (Data::Empty, None) => Data::Owned(tar.data()?.to_vec()),
            // A source either shares all its buffers or none.
            (_, _) => unreachable!("a source that shares only some buffers"),
        };
        tar.consume_data(n);
    }
    Ok(data)
}

/// Writes all of `data` to `fd`: at `off` when given (a sparse segment), else at the file
/// offset.
fn write_all(fd: &OwnedFd, mut data: &[u8], mut off: Option<u64>, e: &Entry) -> Result<()> {
    while !data.is_empty() {
        let r = match off {
            Some(o) => rustix::io::pwrite(fd, data, o),
            None => rustix::io::write(fd, data),
        };
        match r {
            Ok(0) => {
                return Err(Error::EntryIo {
                    entry: e.display_name(),
                    op: "write",
                    source: io::ErrorKind::WriteZero.into(),
                })
            }
            Ok(k) => {
                data = &data[k..];
                if let Some(o) = off.as_mut() {
                    *o += k as u64;
                }
            }
            Err(Errno::INTR) => {}
            Err(errno) => return Err(io_err(e, "write")(errno)),
        }
    }
    Ok(())
}

/// Writes the member's data (or one sparse segment of it) to `fd`.
pub(in crate::extract) fn copy_data<S: Source>(
    tar: &mut TarReader<S>,
    fd: &OwnedFd,
    segment: Option<(u64, u64)>,
    e: &Entry,
) -> Result<()> {
    let (mut off, mut left) = match segment {
        Some((o, n)) => (Some(o), n),
        None => (None, tar.remaining()),
    };
    while left > 0 {
        let chunk = tar.data()?;
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        write_all(fd, &chunk[..n], off, e)?;
        tar.consume_data(n);
        left -= n as u64;
        if let Some(o) = off.as_mut() {
            *o += n as u64;
        }
    }
    Ok(())
}
