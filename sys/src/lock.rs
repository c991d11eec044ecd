//! The one advisory lock: `flock(2)` on a file or directory, held until the [`Lock`] is
//! dropped. Locks taken through separate opens exclude each other across processes and
//! across threads of one process alike; a child that inherits the descriptor shares the lock
//! (close it there, see [`Lock::as_raw_fd`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::FlockOperation;
use rustix::io::Errno;

/// Who else may hold the lock at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Other shared holders (readers).
    Shared,
    /// Nobody else.
    Exclusive,
}

/// What to do while someone else holds a conflicting lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Wait for it (interruptions by signals are retried).
    Block,
    /// Fail at once with [`io::ErrorKind::WouldBlock`].
    Try,
}

/// A held `flock`; released when dropped (the descriptor is closed).
#[derive(Debug)]
pub struct Lock {
    fd: OwnedFd,
}

impl Lock {
    /// Locks the open file or directory `fd`.
    pub fn on(fd: OwnedFd, kind: Kind, wait: Wait) -> io::Result<Self> {
        let op = match (kind, wait) {
            (Kind::Shared, Wait::Block) => FlockOperation::LockShared,
            (Kind::Exclusive, Wait::Block) => FlockOperation::LockExclusive,
            (Kind::Shared, Wait::Try) => FlockOperation::NonBlockingLockShared,
            (Kind::Exclusive, Wait::Try) => FlockOperation::NonBlockingLockExclusive,
        };
        loop {
            match rustix::fs::flock(&fd, op) {
                Ok(()) => return Ok(Lock { fd }),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Locks an existing file or directory at `path` (opened read-only); `NotFound` if it is
    /// missing.
    pub fn existing(path: &Path, kind: Kind, wait: Wait) -> io::Result<Self> {
        Self::on(File::open(path)?.into(), kind, wait)
    }

    /// Locks the file at `path`, creating it (empty, with `mode` subject to the umask) if it is
    /// missing. The parent directory must exist.
    pub fn create(path: &Path, mode: u32, kind: Kind, wait: Wait) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .open(path)?;
        Self::on(file.into(), kind, wait)
    }
}

impl AsFd for Lock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Lock {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::scratch;

    #[test]
    fn exclusive_and_shared() {
        let (tmp, path) = scratch("lock");
        let first = Lock::create(&path, 0o600, Kind::Shared, Wait::Block).unwrap();
        let second = Lock::existing(&path, Kind::Shared, Wait::Try).unwrap();
        let err = Lock::existing(&path, Kind::Exclusive, Wait::Try).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop((first, second));
        let excl = Lock::existing(&path, Kind::Exclusive, Wait::Try).unwrap();
        assert!(Lock::existing(&path, Kind::Shared, Wait::Try).is_err());
        drop(excl);
        // Directories lock too; a missing path is NotFound.
        let d = Lock::existing(tmp.path(), Kind::Exclusive, Wait::Block).unwrap();
        assert!(d.as_raw_fd() >= 0);
        let e = Lock::existing(&tmp.path().join("nope"), Kind::Shared, Wait::Block).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn blocking_waits_for_the_holder() {
        let (_tmp, p) = scratch("lock");
        let held = Lock::create(&p, 0o600, Kind::Exclusive, Wait::Block).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            let _l = Lock::existing(&p2, Kind::Exclusive, Wait::Block).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        t.join().unwrap();
    }
}
