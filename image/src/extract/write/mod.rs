//! Writing one entry into an open directory of the destination: the work that the
//! coordinator ([`super::apply`]) and the worker threads ([`super::pool`]) share.
//!
//! A [`Job`] is an entry with its resolved parent directory and what to create there; a
//! [`Ctx`] applies it with the extraction's options, identity and counters (one per thread).
//! The kinds of entries live in their own modules: regular files and their data
//! (`files`), symlinks and hardlinks (`links`), device nodes and FIFOs (`nodes`); ownership,
//! modes and xattrs (`meta`) are set the same way for all of them. Nothing here depends on
//! how jobs are scheduled.

mod files;
mod links;
mod meta;
mod nodes;

use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::tar::{Entry, Time};
use super::{Chunk, ExtractOptions, ExtractStats};
use crate::error::{Error, Result};
pub(super) use files::{copy_data, read_data};

const MAX_NOTICES: usize = 64;

/// An open directory of the destination.
pub(super) struct Dir {
    pub(super) fd: OwnedFd,
    /// New entries inherit its group (and directories its setgid bit).
    pub(super) setgid: bool,
    /// Its inode number: jobs are spread over the workers by directory.
    pub(super) ino: u64,
    /// Reached from the destination without passing through a symlink, so its path names it
    /// and no other path does.
    pub(super) plain: bool,
    /// The worker its jobs go to, once chosen (set and read by the coordinator only).
    pub(super) worker: OnceLock<usize>,
}

impl Dir {
    pub(super) fn open(fd: OwnedFd, plain: bool) -> rustix::io::Result<Dir> {
        let st = rfs::fstat(&fd)?;
        Ok(Dir {
            fd,
            setgid: st.st_mode & 0o2000 != 0,
            ino: st.st_ino,
            plain,
            worker: OnceLock::new(),
        })
    }
}

/// Where to apply metadata: an open fd, or a name in a directory (symlinks, devices, FIFOs).
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

/// One entry to apply (by a worker, or by the coordinator): its member, its resolved parent
/// and what to create there.
pub(super) struct Job {
    /// Position of the entry in the archive (1-based), to report the first failure.
    pub(super) index: u64,
    pub(super) entry: Entry,
    pub(super) parent: Arc<Dir>,
    /// The final name: this range of `entry.path`.
    pub(super) name: Range<usize>,
    pub(super) op: Op,
}

impl Job {
    /// Bytes of metadata the job keeps in memory while queued (name, link, xattrs, sparse
    /// map): the queues are bounded by it too.
    pub(super) fn held_bytes(&self) -> usize {
        let e = &self.entry;
        e.path.len()
            + e.link.len()
            + e.xattrs
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + e.sparse.as_ref().map_or(0, |m| m.len() * 16)
            + std::mem::size_of::<Job>()
    }
}

/// A file's data: slices of the stream's shared buffers (no copy), or a copy.
pub(super) enum Data {
    Empty,
    One(Arc<Chunk>, Range<usize>),
    Many(Vec<(Arc<Chunk>, Range<usize>)>),
    Owned(Vec<u8>),
}

pub(super) enum Op {
    /// A regular file with its (non-sparse) data.
    File(Data),
    Symlink,
    /// A character or block device or a FIFO.
    Node,
    /// A hardlink to `name` in `dir`.
    Hardlink {
        dir: Arc<Dir>,
        name: Vec<u8>,
    },
}

/// Per-thread state to apply entries: the options, the extracting identity and counters. The
/// coordinator has one and every worker its own.
pub(super) struct Ctx {
    pub(super) opts: Arc<ExtractOptions>,
    pub(super) stats: ExtractStats,
    pub(super) euid: u32,
    pub(super) egid: u32,
    pub(super) umask: u32,
    /// Cleared (with a notice) when a rootless extraction may not chown.
    pub(super) chown: bool,
    /// Something was removed: the coordinator forgets its cached directories.
    pub(super) removed: bool,
}

fn current_umask() -> u32 {
    // Reading the umask through /proc avoids umask(2)'s set-and-restore race between threads.
    if let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") {
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("Umask:") {
                if let Ok(m) = u32::from_str_radix(v.trim(), 8) {
                    return m;
                }
            }
        }
    }
    0o777 // unknown: always chmod
}

pub(super) fn io_err<'e>(e: &'e Entry, op: &'static str) -> impl Fn(Errno) -> Error + 'e {
    move |errno| Error::EntryIo {
        entry: e.display_name(),
        op,
        source: errno.into(),
    }
}

/// An [`Error::Limit`] about the entry `e`.
pub(super) fn limit_err(e: &Entry, detail: String, limit: &'static str, max: u64) -> Error {
    Error::Limit {
        what: format!("entry {:?}", e.display_name()),
        detail,
        limit,
        max,
    }
}

/// Adds a worker's counters and notices to the coordinator's.
pub(super) fn merge(into: &mut ExtractStats, from: ExtractStats) {
    into.entries += from.entries;
    into.files += from.files;
    into.dirs += from.dirs;
    into.symlinks += from.symlinks;
    into.hardlinks += from.hardlinks;
    into.devices += from.devices;
    into.fifos += from.fifos;
    into.whiteouts += from.whiteouts;
    into.opaques += from.opaques;
    into.skipped += from.skipped;
    into.data_bytes += from.data_bytes;
    for n in from.notices {
        if into.notices.len() < MAX_NOTICES {
            into.notices.push(n);
        }
    }
}

fn ts(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.sec,
        tv_nsec: i64::from(t.nsec),
    }
}

pub(super) fn times(e: &Entry) -> Timestamps {
    // containerd's rule: atime is the later of atime and mtime.
    let atime = match e.atime {
        Some(a) if (a.sec, a.nsec) > (e.mtime.sec, e.mtime.nsec) => a,
        _ => e.mtime,
    };
    Timestamps {
        last_access: ts(atime),
        last_modification: ts(e.mtime),
    }
}

impl Ctx {
    pub(in crate::extract) fn new(opts: &ExtractOptions) -> Ctx {
        Ctx {
            opts: Arc::new(opts.clone()),
            stats: ExtractStats::default(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: current_umask(),
            chown: true,
            removed: false,
        }
    }

    /// A context for a worker thread: the same options and identity, its own counters.
    pub(super) fn for_worker(&self) -> Ctx {
        Ctx {
            opts: Arc::clone(&self.opts),
            stats: ExtractStats::default(),
            euid: self.euid,
            egid: self.egid,
            umask: self.umask,
            chown: self.chown,
            removed: false,
        }
    }

    /// The counters and notices gathered.
    pub(super) fn into_stats(self) -> ExtractStats {
        self.stats
    }

    /// Records a notice (logged, and kept in the stats up to a bound).
    pub(in crate::extract) fn notice(&mut self, msg: String) {
        tracing::warn!("{msg}");
        if self.stats.notices.len() < MAX_NOTICES {
            self.stats.notices.push(msg);
        }
    }

    /// Applies one job.
    pub(super) fn apply(&mut self, job: Job) -> Result<()> {
        let Job {
            entry: e,
            parent,
            name,
            op,
            ..
        } = job;
        let name = &e.path[name];
        match op {
            Op::File(data) => self.file(&e, &parent, name, data),
            Op::Symlink => self.symlink(&e, &parent, name),
            Op::Node => self.node(&e, &parent, name),
            Op::Hardlink { dir, name: tname } => self.hardlink(&e, &dir, &tname, &parent, name),
        }
    }

    /// Removes whatever is at `name` (a directory with all its contents).
    pub(in crate::extract) fn remove(
        &mut self,
        e: &Entry,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<()> {
        self.removed = true;
        remove_all(dir, name).map_err(io_err(e, "remove an existing entry"))
    }
}

/// Removes `name` in `dir`, recursively if it is a directory; a missing name is fine. Never
/// follows symlinks.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let sub = match rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    loop {
        // Re-read after each batch: removing while iterating getdents is unreliable.
        let mut names = Vec::new();
        for ent in rfs::Dir::read_from(&sub)? {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
            if names.len() >= 4096 {
                break;
            }
        }
        if names.is_empty() {
            break;
        }
        for n in names {
            remove_all(sub.as_fd(), &n)?;
        }
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}
