//! Applies parsed tar members to a destination directory, resolving every path inside it
//! through directory file descriptors.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::Timespec;
use rustix::fs::{
    self as rfs, AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timestamps, XattrFlags,
};
use rustix::io::Errno;

use super::tar::{Entry, Kind, Source, TarReader, Time};
use super::{ExtractOptions, ExtractStats, Mode as LayerMode};
use crate::error::{Error, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const MAX_NOTICES: usize = 64;
const DIR_CACHE_MAX: usize = 256;
const PATH_MAX: usize = 4095;
const NAME_MAX: usize = 255;

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
struct Dir {
    fd: OwnedFd,
    /// New entries inherit its group (and directories its setgid bit).
    setgid: bool,
}

/// Where to apply metadata: an open fd, or a name in a directory (symlinks, devices, FIFOs).
#[derive(Clone, Copy)]
enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

/// The writer: one per layer.
pub(super) struct Extractor<'o> {
    root: Rc<Dir>,
    opts: &'o ExtractOptions,
    /// Open parent directories by normalised path.
    dirs: HashMap<Vec<u8>, Rc<Dir>>,
    /// Flatten mode: every path this layer put in the tree (its entries and their parents),
    /// so whiteouts and opaque markers only remove what lower layers provided.
    in_layer: HashSet<Vec<u8>>,
    last_parent: Vec<u8>,
    /// Directory times, applied after everything is written.
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    /// Final modes of directories kept writable during an unprivileged extraction.
    deferred_modes: Vec<(Vec<u8>, u32)>,
    stats: ExtractStats,
    euid: u32,
    egid: u32,
    umask: u32,
    /// Cleared (with a notice) when a rootless extraction may not chown.
    chown: bool,
    total_size: u64,
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

impl<'o> Extractor<'o> {
    pub(super) fn new(root: OwnedFd, opts: &'o ExtractOptions) -> Result<Self> {
        let st = rfs::fstat(&root).map_err(|e| Error::io("<destination>", "fstat", e))?;
        Ok(Extractor {
            root: Rc::new(Dir {
                fd: root,
                setgid: st.st_mode & 0o2000 != 0,
            }),
            opts,
            dirs: HashMap::new(),
            in_layer: HashSet::new(),
            last_parent: vec![0],
            dir_times: Vec::new(),
            deferred_modes: Vec::new(),
            stats: ExtractStats::default(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: current_umask(),
            chown: true,
            total_size: 0,
        })
    }

    /// Records a notice (logged, and kept in the stats up to a bound).
    pub(super) fn notice(&mut self, msg: String) {
        tracing::warn!("{msg}");
        if self.stats.notices.len() < MAX_NOTICES {
            self.stats.notices.push(msg);
        }
    }

    fn flatten(&self) -> bool {
        self.opts.mode == LayerMode::Flatten
    }

    /// Applies every member of the archive.
    pub(super) fn run<S: Source>(&mut self, tar: &mut TarReader<S>) -> Result<()> {
        while let Some(entry) = tar.next_entry()? {
            self.stats.entries += 1;
            if self.stats.entries > self.opts.limits.max_entries {
                return Err(Error::Entry {
                    entry: entry.display_name(),
                    reason: format!(
                        "the layer has more than {} entries",
                        self.opts.limits.max_entries
                    ),
                });
            }
            self.entry(&entry, tar)?;
        }
        Ok(())
    }

    /// Fixes directory times, syncs, and returns the stats (or the run's error).
    pub(super) fn finish(&mut self, res: Result<()>) -> Result<ExtractStats> {
        res?;
        let modes = std::mem::take(&mut self.deferred_modes);
        for (key, mode) in modes.iter().rev() {
            let fd = if key.is_empty() {
                None
            } else {
                match self.open_existing_dir(key) {
                    Some(fd) => Some(fd),
                    None => continue,
                }
            };
            let fd = fd.as_ref().unwrap_or(&self.root.fd);
            rfs::fchmod(fd, Mode::from_raw_mode(*mode)).map_err(|e| Error::EntryIo {
                entry: String::from_utf8_lossy(key).into_owned(),
                op: "chmod",
                source: e.into(),
            })?;
        }
        let times = std::mem::take(&mut self.dir_times);
        for (key, t) in times.iter().rev() {
            let fd = if key.is_empty() {
                None
            } else {
                match self.open_existing_dir(key) {
                    Some(fd) => Some(fd),
                    None => continue,
                }
            };
            let r = match &fd {
                Some(fd) => rfs::futimens(fd, t),
                None => rfs::futimens(&self.root.fd, t),
            };
            r.map_err(|e| Error::EntryIo {
                entry: String::from_utf8_lossy(key).into_owned(),
                op: "set directory times",
                source: e.into(),
            })?;
        }
        if self.opts.sync {
            rfs::syncfs(&self.root.fd).map_err(|e| Error::io("<destination>", "syncfs", e))?;
        }
        self.dirs.clear();
        Ok(std::mem::take(&mut self.stats))
    }

    /// Opens a directory of the destination for the final fix-ups; `None` if a later entry
    /// replaced or removed it.
    fn open_existing_dir(&self, key: &[u8]) -> Option<OwnedFd> {
        rfs::openat2(
            &self.root.fd,
            key,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        )
        .ok()
    }

    fn entry<S: Source>(&mut self, e: &Entry, tar: &mut TarReader<S>) -> Result<()> {
        let name_err = |reason: &str| Error::Entry {
            entry: e.display_name(),
            reason: reason.to_string(),
        };
        let key = normalize(&e.path).map_err(name_err)?;
        if e.kind == Kind::Regular {
            if e.real_size > self.opts.limits.max_file_size {
                return Err(name_err(&format!(
                    "file size {} exceeds the limit of {} bytes",
                    e.real_size, self.opts.limits.max_file_size
                )));
            }
            self.total_size = self.total_size.saturating_add(e.real_size);
            if self.total_size > self.opts.limits.max_total_size {
                return Err(name_err(&format!(
                    "the layer's files exceed {} bytes in total",
                    self.opts.limits.max_total_size
                )));
            }
        }
        if key.is_empty() {
            // The root itself ("./"): only a directory may describe it.
            if e.kind == Kind::Dir {
                let root = Rc::clone(&self.root);
                let mode_now = self.dir_mode_now(e, b"");
                self.metadata_mode(e, Target::Fd(root.fd.as_fd()), true, false, mode_now)?;
                self.dir_times.push((Vec::new(), times(e)));
                self.stats.dirs += 1;
                return Ok(());
            }
            return Err(name_err("only a directory may replace the root"));
        }
        let (parent_key, name) = split(&key);
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(e, parent_key, name, target);
        }
        let parent = self.dir(parent_key, true, e)?;
        if self.flatten() {
            self.mark_in_layer(parent_key, &key);
        }
        match e.kind {
            Kind::Dir => self.mkdir(e, &key, &parent, name),
            Kind::Regular => self.file(e, &parent, name, tar),
            Kind::Symlink => self.symlink(e, &parent, name),
            Kind::Hardlink => self.hardlink(e, &parent, name),
            Kind::Char | Kind::Block | Kind::Fifo => self.node(e, &parent, name),
        }
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

    fn io_err<'e>(e: &'e Entry, op: &'static str) -> impl Fn(Errno) -> Error + 'e {
        move |errno| Error::EntryIo {
            entry: e.display_name(),
            op,
            source: errno.into(),
        }
    }

    /// The open directory `key` of the destination, resolved inside it (symlinks included,
    /// clamped to the destination). Missing directories are created when `create`.
    fn dir(&mut self, key: &[u8], create: bool, e: &Entry) -> Result<Rc<Dir>> {
        if key.is_empty() {
            return Ok(Rc::clone(&self.root));
        }
        if let Some(d) = self.dirs.get(key) {
            return Ok(Rc::clone(d));
        }
        let mut created = false;
        let fd = loop {
            match rfs::openat2(
                &self.root.fd,
                key,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            ) {
                Ok(fd) => break fd,
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
                            .map_err(Self::io_err(e, "open a created parent directory"))?;
                            self.implicit_dir_owner(e, &fd, parent.setgid)?;
                        }
                        Err(Errno::EXIST) => {}
                        Err(errno) => {
                            return Err(Self::io_err(e, "create a parent directory")(errno))
                        }
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
                Err(errno) => return Err(Self::io_err(e, "open the parent directory")(errno)),
            }
        };
        let st = rfs::fstat(&fd).map_err(Self::io_err(e, "fstat a parent directory"))?;
        let d = Rc::new(Dir {
            fd,
            setgid: st.st_mode & 0o2000 != 0,
        });
        self.cache(key.to_vec(), Rc::clone(&d));
        Ok(d)
    }

    fn cache(&mut self, key: Vec<u8>, d: Rc<Dir>) {
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

    /// A parent directory created because the archive lacks its entry: root-owned 0755.
    fn implicit_dir_owner(&mut self, e: &Entry, fd: &OwnedFd, parent_setgid: bool) -> Result<()> {
        let (uid, gid) = self.map_owner(e, 0, 0)?;
        if self.chown && (uid != self.euid || gid != self.egid || parent_setgid) {
            self.chown_target(e, Target::Fd(fd.as_fd()), uid, gid)?;
        }
        if self.umask & 0o755 != 0 || parent_setgid {
            rfs::fchmod(fd, Mode::from_raw_mode(0o755))
                .map_err(Self::io_err(e, "chmod a created parent directory"))?;
        }
        Ok(())
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
            Err(errno) => Err(Self::io_err(e, "chown")(errno)),
        }
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
    /// could not write into gets its real mode at the end).
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
            r.map_err(Self::io_err(e, "chmod"))?;
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
                Err(errno) => return Err(Self::io_err(e, "set an xattr")(errno)),
            }
        }
        Ok(())
    }

    /// Removes whatever is at `name` (a directory with all its contents).
    fn remove(&mut self, e: &Entry, dir: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        self.invalidate();
        remove_all(dir, name).map_err(Self::io_err(e, "remove an existing entry"))
    }

    /// The mode a directory gets while the layer is extracted: without privileges, one we
    /// could not write into gets u+rwx until [`Self::finish`] sets its real mode.
    fn dir_mode_now(&mut self, e: &Entry, key: &[u8]) -> u32 {
        if self.euid != 0 && e.mode & 0o700 != 0o700 {
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
                    .map_err(Self::io_err(e, "stat an existing entry"))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    existing = true;
                } else {
                    self.remove(e, parent.fd.as_fd(), name)?;
                    rfs::mkdirat(&parent.fd, name, mode).map_err(Self::io_err(e, "mkdir"))?;
                }
            }
            Err(errno) => return Err(Self::io_err(e, "mkdir")(errno)),
        }
        let fd = rfs::openat(
            &parent.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(Self::io_err(e, "open the new directory"))?;
        self.metadata_mode(e, Target::Fd(fd.as_fd()), existing, parent.setgid, mode_now)?;
        self.dir_times.push((key.to_vec(), times(e)));
        self.stats.dirs += 1;
        self.cache(
            key.to_vec(),
            Rc::new(Dir {
                fd,
                setgid: e.mode & 0o2000 != 0,
            }),
        );
        Ok(())
    }

    fn file<S: Source>(
        &mut self,
        e: &Entry,
        parent: &Dir,
        name: &[u8],
        tar: &mut TarReader<S>,
    ) -> Result<()> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(e.mode & 0o777);
        let fd = match rfs::openat(&parent.fd, name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.remove(e, parent.fd.as_fd(), name)?;
                rfs::openat(&parent.fd, name, flags, mode).map_err(Self::io_err(e, "create"))?
            }
            Err(errno) => return Err(Self::io_err(e, "create")(errno)),
        };
        match &e.sparse {
            None => copy_data(tar, &fd, None, e)?,
            Some(map) => {
                for &(off, len) in map {
                    copy_data(tar, &fd, Some((off, len)), e)?;
                }
                rfs::ftruncate(&fd, e.real_size).map_err(Self::io_err(e, "truncate"))?;
            }
        }
        self.stats.data_bytes += e.real_size;
        self.metadata(e, Target::Fd(fd.as_fd()), false, parent.setgid)?;
        rfs::futimens(&fd, &times(e)).map_err(Self::io_err(e, "set times"))?;
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
                    .map_err(Self::io_err(e, "symlink"))?;
            }
            Err(errno) => return Err(Self::io_err(e, "symlink")(errno)),
        }
        self.metadata(e, Target::At(parent.fd.as_fd(), name), false, parent.setgid)?;
        rfs::utimensat(&parent.fd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(Self::io_err(e, "set times"))?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, e: &Entry, parent: &Dir, name: &[u8]) -> Result<()> {
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
        let (tkey, tname) = split(&target);
        let tdir = self.dir(tkey, false, e)?;
        let link = |tdir: &Dir| rfs::linkat(&tdir.fd, tname, &parent.fd, name, AtFlags::empty());
        match link(&tdir) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let a = rfs::statat(&tdir.fd, tname, AtFlags::SYMLINK_NOFOLLOW);
                let b = rfs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW);
                let same = matches!((&a, &b), (Ok(a), Ok(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev);
                if !same {
                    self.remove(e, parent.fd.as_fd(), name)?;
                    let tdir = self.dir(tkey, false, e)?;
                    link(&tdir).map_err(Self::io_err(e, "hardlink"))?;
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
            Err(errno) => return Err(Self::io_err(e, "hardlink")(errno)),
        }
        // The link entry's own header applies to the shared inode (owner, mode, xattrs,
        // mtime), as containerd and podman apply it: the last entry naming an inode wins.
        let st = rfs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(Self::io_err(e, "stat"))?;
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
            .map_err(Self::io_err(e, "set times"))?;
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
                rfs::mknodat(&parent.fd, name, ft, mode, dev).map_err(Self::io_err(e, "mknod"))?;
            }
            Err(errno) => return Err(Self::io_err(e, "mknod")(errno)),
        }
        self.metadata(e, Target::At(parent.fd.as_fd(), name), false, parent.setgid)?;
        rfs::utimensat(&parent.fd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(Self::io_err(e, "set times"))?;
        if ft == FileType::Fifo {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        Ok(())
    }

    fn whiteout(&mut self, e: &Entry, parent_key: &[u8], name: &[u8], target: &[u8]) -> Result<()> {
        let flatten = self.flatten();
        if name == OPAQUE_MARKER {
            self.stats.opaques += 1;
            if flatten {
                // Like containerd, the marker's directory exists afterwards, as it does in the
                // overlay view.
                let dir = self.dir(parent_key, true, e)?;
                self.mark_dir_in_layer(parent_key);
                let key = parent_key.to_vec();
                return self.opaque(e, &dir, &key);
            }
            let dir = self.dir(parent_key, true, e)?;
            let xattr = if self.opts.rootless {
                "user.overlay.opaque"
            } else {
                "trusted.overlay.opaque"
            };
            return rfs::fsetxattr(&dir.fd, xattr, b"y", XattrFlags::empty())
                .map_err(Self::io_err(e, "set the opaque xattr"));
        }
        if name.starts_with(b".wh..wh.") {
            self.stats.skipped += 1;
            self.notice(format!("{}: aufs metadata entry skipped", e.display_name()));
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(Error::Entry {
                entry: e.display_name(),
                reason: "whiteout without a name".into(),
            });
        }
        self.stats.whiteouts += 1;
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
            Err(errno) => return Err(Self::io_err(e, "create the whiteout device")(errno)),
        }
        let (uid, gid) = self.map_owner(e, e.uid, e.gid)?;
        if self.chown && (uid != self.euid || gid != self.egid || dir.setgid) {
            self.chown_target(e, Target::At(dir.fd.as_fd(), target), uid, gid)?;
        }
        Ok(())
    }

    /// Flatten mode: removes from `dir` (path `key`) everything lower layers put there,
    /// keeping (and recursing into) what this layer added.
    fn opaque(&mut self, e: &Entry, dir: &Dir, key: &[u8]) -> Result<()> {
        let mut children = Vec::new();
        let rd = rfs::Dir::read_from(&dir.fd).map_err(Self::io_err(e, "read a directory"))?;
        for ent in rd {
            let ent = ent.map_err(Self::io_err(e, "read a directory"))?;
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
                    .map_err(Self::io_err(e, "open a directory"))?;
                    let sub = Dir {
                        fd: sub,
                        setgid: false,
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
}
