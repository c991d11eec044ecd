//! Applies parsed tar members to a destination directory, resolving every path inside it
//! through directory file descriptors.
//!
//! The [`Extractor`] runs on one thread (the coordinator): it parses, resolves parent
//! directories, creates directories and tracks what the layer has put where. Regular files,
//! symlinks, device nodes, FIFOs and hardlinks become [`Job`]s that worker threads
//! ([`super::pool`]) apply in parallel, all jobs of one parent directory on the same worker in
//! archive order. Whenever an entry depends on what a queued job does, the coordinator waits:
//!
//! - an entry whose name this layer already used (replaced later, a directory entry after its
//!   contents that changes what new files inherit), whose parent path passes through a symlink
//!   or a non-directory of this layer, a whiteout or an opaque marker, or the root: every
//!   worker is drained first and the entry is applied on the coordinator, exactly as a serial
//!   extraction would;
//! - a hardlink to an inode a different worker created or last linked (a hardlink sets the
//!   shared inode's metadata): that worker is drained up to that job (on the same worker the
//!   hardlink is simply queued after it).
//!
//! Directory times and deferred modes are set at the end, after every worker has finished.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustix::fs::Timespec;
use rustix::fs::{
    self as rfs, AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timestamps, XattrFlags,
};
use rustix::io::Errno;

use super::pool::Pool;
use super::tar::{Entry, Kind, Source, TarReader, Time};
use super::{Chunk, ExtractOptions, ExtractStats, Mode as LayerMode};
use crate::error::{Error, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const MAX_NOTICES: usize = 64;
const DIR_CACHE_MAX: usize = 256;
const PATH_MAX: usize = 4095;
const NAME_MAX: usize = 255;
/// Files larger than this are written by the coordinator straight from the stream instead of
/// being queued (their data would pin too many stream buffers).
const JOB_FILE_MAX: u64 = 1 << 20;
/// `Seen::Other::worker` of an entry applied on the coordinator.
const INLINE: usize = usize::MAX;

/// Opens the destination directory.
pub(super) fn open_root(dest: &Path) -> Result<OwnedFd> {
    rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(dest, "open the destination directory", e))
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

/// Normalises a member name to `a/b/c`: a leading `/` and `.` components are dropped; `..`,
/// NUL bytes and over-long names are refused.
pub(crate) fn normalize(path: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    if path.contains(&0) {
        return Err("name contains a NUL byte");
    }
    let mut out = Vec::with_capacity(path.len());
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("name contains a '..' component"),
            c => {
                if c.len() > NAME_MAX {
                    return Err("a name component is longer than 255 bytes");
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    if out.len() > PATH_MAX {
        return Err("name is longer than PATH_MAX");
    }
    Ok(out)
}

/// Where the last component of the normalised name lies in the member's name as stored
/// (trailing slashes and `.` components skipped).
fn last_component(path: &[u8]) -> Range<usize> {
    let mut end = path.len();
    loop {
        while end > 0 && path[end - 1] == b'/' {
            end -= 1;
        }
        let start = path[..end]
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |i| i + 1);
        if start > 0 && &path[start..end] == b"." {
            end = start;
            continue;
        }
        return start..end;
    }
}

/// Splits `a/b/c` into (`a/b`, `c`).
fn split(key: &[u8]) -> (&[u8], &[u8]) {
    match key.iter().rposition(|&b| b == b'/') {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => (&b""[..], key),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(dir.len() + 1 + name.len());
    v.extend_from_slice(dir);
    if !dir.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

fn ts(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.sec,
        tv_nsec: i64::from(t.nsec),
    }
}

fn times(e: &Entry) -> Timestamps {
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

/// An open directory of the destination.
pub(super) struct Dir {
    fd: OwnedFd,
    /// New entries inherit its group (and directories its setgid bit).
    setgid: bool,
    /// Its inode number: jobs are spread over the workers by directory.
    ino: u64,
    /// Reached from the destination without passing through a symlink, so its path names it
    /// and no other path does.
    plain: bool,
    /// The worker its jobs go to, once chosen (set and read by the coordinator only).
    worker: OnceLock<usize>,
}

impl Dir {
    fn open(fd: OwnedFd, plain: bool) -> rustix::io::Result<Dir> {
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
enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

/// One entry to apply (by a worker, or by the coordinator): its member, its resolved parent
/// and what to create there.
pub(super) struct Job {
    /// Position of the entry in the archive (1-based), to report the first failure.
    pub(super) index: u64,
    entry: Entry,
    parent: Arc<Dir>,
    /// The final name: this range of `entry.path`.
    name: Range<usize>,
    op: Op,
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
enum Data {
    Empty,
    One(Arc<Chunk>, Range<usize>),
    Many(Vec<(Arc<Chunk>, Range<usize>)>),
    Owned(Vec<u8>),
}

enum Op {
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
    opts: Arc<ExtractOptions>,
    stats: ExtractStats,
    euid: u32,
    egid: u32,
    umask: u32,
    /// Cleared (with a notice) when a rootless extraction may not chown.
    chown: bool,
    /// Something was removed: the coordinator forgets its cached directories.
    removed: bool,
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

fn io_err<'e>(e: &'e Entry, op: &'static str) -> impl Fn(Errno) -> Error + 'e {
    move |errno| Error::EntryIo {
        entry: e.display_name(),
        op,
        source: errno.into(),
    }
}

/// An [`Error::Limit`] about the entry `e`.
fn limit_err(e: &Entry, detail: String, limit: &'static str, max: u64) -> Error {
    Error::Limit {
        what: format!("entry {:?}", e.display_name()),
        detail,
        limit,
        max,
    }
}

/// Adds a worker's counters and notices to the coordinator's.
fn merge(into: &mut ExtractStats, from: ExtractStats) {
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

impl Ctx {
    fn new(opts: &ExtractOptions) -> Ctx {
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
    fn notice(&mut self, msg: String) {
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
            Op::File(data) => {
                let fd = self.create_file(&e, &parent, name)?;
                match &data {
                    Data::Empty => {}
                    Data::One(buf, r) => write_all(&fd, &buf.bytes()[r.clone()], &e)?,
                    Data::Many(segs) => {
                        for (buf, r) in segs {
                            write_all(&fd, &buf.bytes()[r.clone()], &e)?;
                        }
                    }
                    Data::Owned(v) => write_all(&fd, v, &e)?,
                }
                // The stream buffer goes back to the reader as soon as possible.
                drop(data);
                self.stats.data_bytes += e.real_size;
                self.finish_file(&e, &parent, &fd)
            }
            Op::Symlink => self.symlink(&e, &parent, name),
            Op::Node => self.node(&e, &parent, name),
            Op::Hardlink { dir, name: tname } => self.hardlink(&e, &dir, &tname, &parent, name),
        }
    }

    fn map_owner(&self, e: &Entry, uid: u64, gid: u64) -> Result<(u32, u32)> {
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
    fn implicit_dir_owner(&mut self, e: &Entry, fd: &OwnedFd, parent_setgid: bool) -> Result<()> {
        let (uid, gid) = self.map_owner(e, 0, 0)?;
        if self.chown && (uid != self.euid || gid != self.egid || parent_setgid) {
            self.chown_target(e, Target::Fd(fd.as_fd()), uid, gid)?;
        }
        if self.umask & 0o755 != 0 || parent_setgid {
            rfs::fchmod(fd, Mode::from_raw_mode(0o755))
                .map_err(io_err(e, "chmod a created parent directory"))?;
        }
        Ok(())
    }

    /// Ownership, mode and xattrs, in that order (chown clears setuid bits and
    /// security.capability).
    fn metadata(
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
    fn metadata_mode(
        &mut self,
        e: &Entry,
        t: Target<'_>,
        existing: bool,
        parent_setgid: bool,
        mode_now: u32,
    ) -> Result<()> {
        let (uid, gid) = self.map_owner(e, e.uid, e.gid)?;
        if self.chown && (existing || uid != self.euid || gid != self.egid || parent_setgid) {
            self.chown_target(e, t, uid, gid)?;
        }
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

    /// Removes whatever is at `name` (a directory with all its contents).
    fn remove(&mut self, e: &Entry, dir: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        self.removed = true;
        remove_all(dir, name).map_err(io_err(e, "remove an existing entry"))
    }

    /// Creates the regular file `name` in `parent`, replacing what is there.
    fn create_file(&mut self, e: &Entry, parent: &Dir, name: &[u8]) -> Result<OwnedFd> {
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
    fn finish_file(&mut self, e: &Entry, parent: &Dir, fd: &OwnedFd) -> Result<()> {
        self.metadata(e, Target::Fd(fd.as_fd()), false, parent.setgid)?;
        rfs::futimens(fd, &times(e)).map_err(io_err(e, "set times"))?;
        self.stats.files += 1;
        Ok(())
    }

    fn symlink(&mut self, e: &Entry, parent: &Dir, name: &[u8]) -> Result<()> {
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
    fn hardlink(
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
            let (uid, gid) = self.map_owner(e, e.uid, e.gid)?;
            if self.chown {
                self.chown_target(e, t, uid, gid)?;
            }
        } else {
            self.metadata(e, t, true, parent.setgid)?;
        }
        rfs::utimensat(&parent.fd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(e, "set times"))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn node(&mut self, e: &Entry, parent: &Dir, name: &[u8]) -> Result<()> {
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

/// What this layer did with a name (parallel extraction only).
#[derive(Clone, Copy)]
enum Seen {
    /// A directory: an entry, or a parent of one.
    Dir,
    /// Anything else, created by job `seq` of `worker` ([`INLINE`] when the coordinator did
    /// it).
    Other { worker: usize, seq: u64 },
    /// A name of an inode that hardlinks share: `Extractor::links[i]` is the last job that
    /// linked it (and so set its metadata).
    Linked(usize),
}

/// A hasher for keys that already are keyed 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The coordinator: one per layer.
pub(super) struct Extractor {
    ctx: Ctx,
    root: Arc<Dir>,
    /// Open parent directories by normalised path.
    dirs: HashMap<Vec<u8>, Arc<Dir>>,
    /// Flatten mode: every path this layer put in the tree (its entries and their parents),
    /// so whiteouts and opaque markers only remove what lower layers provided.
    in_layer: HashSet<Vec<u8>>,
    last_parent: Vec<u8>,
    /// Directory times, applied after everything is written.
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    /// Final modes of directories kept writable during an unprivileged extraction.
    deferred_modes: Vec<(Vec<u8>, u32)>,
    total_size: u64,
    /// The workers, when extracting in parallel.
    pool: Option<Pool>,
    /// With workers: what this layer did with each name it used (entries, their parents and
    /// hardlink targets), by a keyed hash of the name, to find the entries that depend on
    /// queued jobs. Two names with the same 64-bit hash would only be ordered as one.
    seen: HashMap<u64, Seen, BuildHasherDefault<PreHashed>>,
    /// The key of `seen`'s hash.
    seen_key: RandomState,
    /// The last parent whose path was checked and recorded in `seen`.
    checked_parent: Option<Vec<u8>>,
    /// For each inode that hardlinks share, the worker and job of the last hardlink to it.
    links: Vec<(usize, u64)>,
    /// The worker of each directory (by inode) that had jobs.
    workers_of_dirs: HashMap<u64, usize>,
    /// Index (1-based) of the entry being applied.
    index: u64,
}

impl Extractor {
    /// An extractor writing beneath `root`, with `workers` worker threads (none: everything on
    /// the calling thread). Workers are started on the calling thread, so they share its
    /// Landlock confinement.
    pub(super) fn new(root: OwnedFd, opts: &ExtractOptions, workers: usize) -> Result<Self> {
        let root = Dir::open(root, true).map_err(|e| Error::io("<destination>", "fstat", e))?;
        let ctx = Ctx::new(opts);
        let pool = if workers > 0 {
            Some(Pool::start(workers, &ctx)?)
        } else {
            None
        };
        Ok(Extractor {
            ctx,
            root: Arc::new(root),
            dirs: HashMap::new(),
            in_layer: HashSet::new(),
            last_parent: vec![0],
            dir_times: Vec::new(),
            deferred_modes: Vec::new(),
            total_size: 0,
            pool,
            seen: HashMap::default(),
            seen_key: RandomState::new(),
            checked_parent: None,
            links: Vec::new(),
            workers_of_dirs: HashMap::new(),
            index: 0,
        })
    }

    /// Records a notice (logged, and kept in the stats up to a bound).
    pub(super) fn notice(&mut self, msg: String) {
        self.ctx.notice(msg);
    }

    fn flatten(&self) -> bool {
        self.ctx.opts.mode == LayerMode::Flatten
    }

    /// Applies every member of the archive (stopping early when a worker failed: its error is
    /// reported by [`Self::finish`]).
    pub(super) fn run<S: Source>(&mut self, tar: &mut TarReader<S>) -> Result<()> {
        loop {
            if self.pool.as_ref().and_then(Pool::failed).is_some() {
                return Ok(());
            }
            self.index += 1;
            let Some(entry) = tar.next_entry()? else {
                return Ok(());
            };
            self.ctx.stats.entries += 1;
            let limits = &self.ctx.opts.limits;
            if self.ctx.stats.entries > limits.max_entries {
                return Err(limit_err(
                    &entry,
                    format!("the layer has more than {} entries", limits.max_entries),
                    "BERTH_MAX_ENTRIES",
                    limits.max_entries,
                ));
            }
            self.entry(entry, tar)?;
        }
    }

    /// Waits for the workers, fixes directory times, syncs, and returns the stats, or the
    /// error of the first entry (in archive order) that failed.
    pub(super) fn finish(&mut self, res: Result<()>) -> Result<ExtractStats> {
        let mut first = res.err().map(|e| (self.index, e));
        if let Some(pool) = self.pool.take() {
            for (stats, err) in pool.join() {
                merge(&mut self.ctx.stats, stats);
                if let Some((i, e)) = err {
                    if first.as_ref().is_none_or(|(j, _)| i < *j) {
                        first = Some((i, e));
                    }
                }
            }
        }
        if let Some((_, e)) = first {
            return Err(e);
        }
        let modes = std::mem::take(&mut self.deferred_modes);
        for (key, mode) in modes.iter().rev() {
            self.fix_up_dir(key, "chmod", |fd| {
                rfs::fchmod(fd, Mode::from_raw_mode(*mode))
            })?;
        }
        let times = std::mem::take(&mut self.dir_times);
        for (key, t) in times.iter().rev() {
            self.fix_up_dir(key, "set directory times", |fd| rfs::futimens(fd, t))?;
        }
        if self.ctx.opts.sync {
            rfs::syncfs(&self.root.fd).map_err(|e| Error::io("<destination>", "syncfs", e))?;
        }
        self.dirs.clear();
        Ok(std::mem::take(&mut self.ctx.stats))
    }

    /// Applies a final fix-up (`op`) to the directory `key` of the destination (the root when
    /// empty); a directory a later entry replaced or removed is skipped.
    fn fix_up_dir(
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
        loop {
            match rfs::openat2(
                &self.root.fd,
                key,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            ) {
                Ok(fd) => return Some(fd),
                // A rename or mount anywhere raced with the lookup: not a missing directory.
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(_) => return None,
            }
        }
    }

    /// Waits until every queued job is applied; cached directories are forgotten (a job may
    /// have replaced a directory of a lower layer).
    fn barrier(&mut self) {
        if let Some(pool) = &self.pool {
            pool.barrier();
            self.invalidate();
            self.checked_parent = None;
        }
    }

    /// The worker for jobs in `dir`: the one its inode was first given to, the least busy
    /// one then (a directory's jobs stay on one worker: creating entries in one directory
    /// from two threads only contends for its lock).
    fn worker_for(&mut self, dir: &Dir) -> usize {
        if let Some(&w) = dir.worker.get() {
            return w;
        }
        let pool = self.pool.as_ref().expect("parallel extraction");
        let w = *self
            .workers_of_dirs
            .entry(dir.ino)
            .or_insert_with(|| pool.least_busy());
        let _ = dir.worker.set(w);
        w
    }

    fn seen(&self, key: &[u8]) -> Option<Seen> {
        self.seen.get(&self.seen_key.hash_one(key)).copied()
    }

    fn set_seen(&mut self, key: &[u8], s: Seen) {
        let h = self.seen_key.hash_one(key);
        self.seen.insert(h, s);
    }

    /// Whether `key` or one of its parents is a non-directory this layer created (a queued
    /// job may not have created it yet).
    fn prefix_hazard(&self, key: &[u8]) -> bool {
        let mut p = key;
        while !p.is_empty() {
            if matches!(self.seen(p), Some(Seen::Other { .. } | Seen::Linked(_))) {
                return true;
            }
            p = split(p).0;
        }
        false
    }

    /// Records `key` and its parents as directories of this layer.
    fn mark_seen_dirs(&mut self, key: &[u8]) {
        let mut p = key;
        while !p.is_empty() {
            let h = self.seen_key.hash_one(p);
            if self.seen.contains_key(&h) {
                break;
            }
            self.seen.insert(h, Seen::Dir);
            p = split(p).0;
        }
    }

    fn entry<S: Source>(&mut self, e: Entry, tar: &mut TarReader<S>) -> Result<()> {
        let name_err = |reason: &str| Error::Entry {
            entry: e.display_name(),
            reason: reason.to_string(),
        };
        let key = normalize(&e.path).map_err(name_err)?;
        if e.kind == Kind::Regular {
            let limits = &self.ctx.opts.limits;
            if e.real_size > limits.max_file_size {
                return Err(limit_err(
                    &e,
                    format!(
                        "file size {} exceeds {} bytes",
                        e.real_size, limits.max_file_size
                    ),
                    "BERTH_MAX_FILE_SIZE",
                    limits.max_file_size,
                ));
            }
            self.total_size = self.total_size.saturating_add(e.real_size);
            if self.total_size > limits.max_total_size {
                return Err(limit_err(
                    &e,
                    format!(
                        "the layer's files exceed {} bytes in total",
                        limits.max_total_size
                    ),
                    "BERTH_MAX_TOTAL_SIZE",
                    limits.max_total_size,
                ));
            }
        }
        if key.is_empty() {
            // The root itself ("./"): only a directory may describe it.
            if e.kind == Kind::Dir {
                self.barrier();
                let root = Arc::clone(&self.root);
                let mode_now = self.dir_mode_now(&e, b"");
                self.ctx
                    .metadata_mode(&e, Target::Fd(root.fd.as_fd()), true, false, mode_now)?;
                self.dir_times.push((Vec::new(), times(&e)));
                self.ctx.stats.dirs += 1;
                return Ok(());
            }
            return Err(name_err("only a directory may replace the root"));
        }
        let (parent_key, name) = split(&key);
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            self.barrier();
            return self.whiteout(&e, parent_key, name, target);
        }
        let parallel = self.pool.is_some();
        if parallel && self.checked_parent.as_deref() != Some(parent_key) {
            if self.prefix_hazard(parent_key) {
                self.barrier();
            }
            self.mark_seen_dirs(parent_key);
            self.checked_parent = Some(parent_key.to_vec());
        }
        let parent = self.dir(parent_key, true, &e)?;
        if self.flatten() {
            self.mark_in_layer(parent_key, &key);
        }
        if !parallel {
            return self.apply_here(e, &key, &parent, tar);
        }
        let hazard = !parent.plain
            || match (e.kind, self.seen(&key)) {
                (_, None) => false,
                // A directory entry after its contents only changes what new entries inherit
                // through a setgid bit or default ACLs.
                (Kind::Dir, Some(Seen::Dir)) => e.mode & 0o2000 != 0 || !e.xattrs.is_empty(),
                _ => true,
            };
        if hazard {
            self.barrier();
            let kind = e.kind;
            self.apply_here(e, &key, &parent, tar)?;
            let seen = if kind == Kind::Dir {
                Seen::Dir
            } else {
                Seen::Other {
                    worker: INLINE,
                    seq: 0,
                }
            };
            self.set_seen(&key, seen);
            return Ok(());
        }
        match e.kind {
            Kind::Dir => {
                self.mkdir(&e, &key, &parent, name)?;
                self.set_seen(&key, Seen::Dir);
                Ok(())
            }
            Kind::Regular if e.sparse.is_some() || e.real_size > JOB_FILE_MAX => {
                self.file_here(&e, &parent, name, tar)?;
                let seen = Seen::Other {
                    worker: INLINE,
                    seq: 0,
                };
                self.set_seen(&key, seen);
                Ok(())
            }
            Kind::Regular => {
                let data = read_data(tar)?;
                self.push(e, &key, parent, Op::File(data));
                Ok(())
            }
            Kind::Symlink => {
                self.push(e, &key, parent, Op::Symlink);
                Ok(())
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                self.push(e, &key, parent, Op::Node);
                Ok(())
            }
            Kind::Hardlink => self.hardlink_job(e, &key, parent),
        }
    }

    /// Queues a job for the worker of `parent` and records `key` as created by it; returns
    /// the worker and the job's sequence number there.
    fn push(&mut self, e: Entry, key: &[u8], parent: Arc<Dir>, op: Op) -> (usize, u64) {
        let w = self.worker_for(&parent);
        let pool = self.pool.as_ref().expect("parallel extraction");
        let name = last_component(&e.path);
        debug_assert_eq!(&e.path[name.clone()], split(key).1);
        let job = Job {
            index: self.index,
            entry: e,
            parent,
            name,
            op,
        };
        let seq = pool.push(w, job);
        self.set_seen(key, Seen::Other { worker: w, seq });
        (w, seq)
    }

    /// A hardlink with workers: queued after the last job on its target's inode when the same
    /// worker ran it, else once that worker has.
    fn hardlink_job(&mut self, e: Entry, key: &[u8], parent: Arc<Dir>) -> Result<()> {
        let target = hardlink_target(&e)?;
        let (tkey, tname) = split(&target);
        if self.prefix_hazard(tkey) {
            self.barrier();
        }
        let tdir = self.dir(tkey, false, &e)?;
        if !tdir.plain {
            // Another path may name the target: nothing may be pending.
            self.barrier();
            let job = Job {
                index: self.index,
                name: last_component(&e.path),
                entry: e,
                parent,
                op: Op::Hardlink {
                    dir: tdir,
                    name: tname.to_vec(),
                },
            };
            self.apply_job_here(job)?;
            let seen = Seen::Other {
                worker: INLINE,
                seq: 0,
            };
            self.set_seen(key, seen);
            return Ok(());
        }
        // The job that last touched the target's inode: its creation, or the last hardlink
        // to it (a hardlink sets the shared inode's metadata).
        let (last, group) = match self.seen(&target) {
            Some(Seen::Other { worker, seq }) => (Some((worker, seq)), None),
            Some(Seen::Linked(g)) => (Some(self.links[g]), Some(g)),
            _ => (None, None),
        };
        let w = self.worker_for(&parent);
        let pool = self.pool.as_ref().expect("parallel extraction");
        if let Some((worker, seq)) = last {
            if worker != INLINE && worker != w {
                pool.wait(worker, seq);
            }
        }
        let op = Op::Hardlink {
            dir: tdir,
            name: tname.to_vec(),
        };
        let job = self.push(e, key, parent, op);
        let g = group.unwrap_or_else(|| {
            self.links.push(job);
            self.links.len() - 1
        });
        self.links[g] = job;
        self.set_seen(key, Seen::Linked(g));
        if !matches!(self.seen(&target), Some(Seen::Dir)) {
            self.set_seen(&target, Seen::Linked(g));
        }
        Ok(())
    }

    /// Applies an entry on this thread (a serial extraction, or an entry that had to wait for
    /// every worker).
    fn apply_here<S: Source>(
        &mut self,
        e: Entry,
        key: &[u8],
        parent: &Arc<Dir>,
        tar: &mut TarReader<S>,
    ) -> Result<()> {
        let name = split(key).1;
        let op = match e.kind {
            Kind::Dir => return self.mkdir(&e, key, parent, name),
            Kind::Regular => return self.file_here(&e, parent, name, tar),
            Kind::Symlink => Op::Symlink,
            Kind::Char | Kind::Block | Kind::Fifo => Op::Node,
            Kind::Hardlink => {
                let target = hardlink_target(&e)?;
                let (tkey, tname) = split(&target);
                let tdir = self.dir(tkey, false, &e)?;
                Op::Hardlink {
                    dir: tdir,
                    name: tname.to_vec(),
                }
            }
        };
        self.apply_job_here(Job {
            index: self.index,
            name: last_component(&e.path),
            entry: e,
            parent: Arc::clone(parent),
            op,
        })
    }

    fn apply_job_here(&mut self, job: Job) -> Result<()> {
        let r = self.ctx.apply(job);
        if std::mem::take(&mut self.ctx.removed) {
            self.invalidate();
        }
        r
    }

    /// Writes a regular file straight from the stream.
    fn file_here<S: Source>(
        &mut self,
        e: &Entry,
        parent: &Dir,
        name: &[u8],
        tar: &mut TarReader<S>,
    ) -> Result<()> {
        let fd = self.ctx.create_file(e, parent, name);
        if std::mem::take(&mut self.ctx.removed) {
            self.invalidate();
        }
        let fd = fd?;
        match &e.sparse {
            None => copy_data(tar, &fd, None, e)?,
            Some(map) => {
                for &(off, len) in map {
                    copy_data(tar, &fd, Some((off, len)), e)?;
                }
                rfs::ftruncate(&fd, e.real_size).map_err(io_err(e, "truncate"))?;
            }
        }
        self.ctx.stats.data_bytes += e.real_size;
        self.ctx.finish_file(e, parent, &fd)
    }

    /// Records `key` and its parents as present in this layer.
    fn mark_in_layer(&mut self, parent_key: &[u8], key: &[u8]) {
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

    /// The open directory `key` of the destination, resolved inside it (symlinks included,
    /// clamped to the destination). Missing directories are created when `create`. With
    /// workers, a path through a symlink is only resolved once every worker is idle.
    fn dir(&mut self, key: &[u8], create: bool, e: &Entry) -> Result<Arc<Dir>> {
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
                resolve_flags() | ResolveFlags::NO_SYMLINKS
            } else {
                resolve_flags()
            };
            match rfs::openat2(
                &self.root.fd,
                key,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
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
    fn invalidate(&mut self) {
        self.dirs.clear();
    }

    /// Removes whatever is at `name` (a directory with all its contents).
    fn remove(&mut self, e: &Entry, dir: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        self.invalidate();
        let r = self.ctx.remove(e, dir, name);
        self.ctx.removed = false;
        r
    }

    /// The mode a directory gets while the layer is extracted: without privileges, one we
    /// could not write into gets u+rwx until [`Self::finish`] sets its real mode.
    fn dir_mode_now(&mut self, e: &Entry, key: &[u8]) -> u32 {
        if self.ctx.euid != 0 && e.mode & 0o700 != 0o700 {
            self.deferred_modes.push((key.to_vec(), e.mode));
            e.mode | 0o700
        } else {
            e.mode
        }
    }

    fn mkdir(&mut self, e: &Entry, key: &[u8], parent: &Dir, name: &[u8]) -> Result<()> {
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

    fn whiteout(&mut self, e: &Entry, parent_key: &[u8], name: &[u8], target: &[u8]) -> Result<()> {
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
        let (uid, gid) = self.ctx.map_owner(e, e.uid, e.gid)?;
        if self.ctx.chown && (uid != self.ctx.euid || gid != self.ctx.egid || dir.setgid) {
            self.ctx
                .chown_target(e, Target::At(dir.fd.as_fd(), target), uid, gid)?;
        }
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
}

/// The normalised target of a hardlink entry.
fn hardlink_target(e: &Entry) -> Result<Vec<u8>> {
    let target = normalize(&e.link).map_err(|r| Error::Entry {
        entry: e.display_name(),
        reason: format!(
            "hardlink target {:?}: {r}",
            String::from_utf8_lossy(&e.link)
        ),
    })?;
    if target.is_empty() {
        return Err(Error::Entry {
            entry: e.display_name(),
            reason: "hardlink to the root".into(),
        });
    }
    Ok(target)
}

/// Takes the current member's whole data (at most [`JOB_FILE_MAX`] bytes): as slices of the
/// source's shared buffers when it has them, else as a copy.
fn read_data<S: Source>(tar: &mut TarReader<S>) -> Result<Data> {
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

/// Writes all of `data` to `fd`.
fn write_all(fd: &OwnedFd, mut data: &[u8], e: &Entry) -> Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => {
                return Err(Error::EntryIo {
                    entry: e.display_name(),
                    op: "write",
                    source: io::ErrorKind::WriteZero.into(),
                })
            }
            Ok(k) => data = &data[k..],
            Err(Errno::INTR) => {}
            Err(errno) => return Err(io_err(e, "write")(errno)),
        }
    }
    Ok(())
}

/// Writes the member's data (or one sparse segment of it) to `fd`.
fn copy_data<S: Source>(
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
        let mut done = 0;
        while done < n {
            let r = match off {
                Some(o) => rustix::io::pwrite(fd, &chunk[done..n], o + done as u64),
                None => rustix::io::write(fd, &chunk[done..n]),
            };
            match r {
                Ok(0) => {
                    return Err(Error::EntryIo {
                        entry: e.display_name(),
                        op: "write",
                        source: io::ErrorKind::WriteZero.into(),
                    })
                }
                Ok(k) => done += k,
                Err(Errno::INTR) => {}
                Err(errno) => {
                    return Err(Error::EntryIo {
                        entry: e.display_name(),
                        op: "write",
                        source: errno.into(),
                    })
                }
            }
        }
        tar.consume_data(n);
        left -= n as u64;
        if let Some(o) = off.as_mut() {
            *o += n as u64;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_names() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"/abs/x").unwrap(), b"abs/x");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"a\0b").is_err());
        assert!(normalize(&[b'a'; 256]).is_err());
    }

    #[test]
    fn split_keys() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn last_component_matches_the_normalised_name() {
        for p in [
            &b"a/b/c"[..],
            b"./a/b/./",
            b"/abs//x/",
            b"x",
            b"x/.",
            b"./x/./.",
            b"a/b/.//./",
            b".wh.x",
            b"...",
            b"a/..b",
        ] {
            let key = normalize(p).unwrap();
            assert_eq!(&p[last_component(p)], split(&key).1, "{p:?}");
        }
    }
}
