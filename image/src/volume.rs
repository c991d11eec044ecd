//! Volumes seeded from the image: a fresh volume directory receives a copy of what the image
//! holds at the volume's path (as docker and podman do), so `VOLUME /data` over content the
//! image put in `/data` does not hide it.
//!
//! The source is read inside the root filesystem only: the path is resolved with
//! `openat2(RESOLVE_IN_ROOT)` and every entry below it is opened relative to its parent's fd
//! with `O_NOFOLLOW`, so a hostile image's symlinks cannot make berth copy host files. Regular
//! files, directories and symlinks are copied with mode, owner and mtime; device nodes, FIFOs
//! and sockets are skipped.
//!
//! Files are copied region by region (`SEEK_DATA`/`SEEK_HOLE`), so holes stay holes: an
//! image's 100 GiB sparse file costs what its data costs. What seeding copies is bounded
//! ([`SeedBudget`]: data bytes and entries over all the volumes of a bundle); past the bound
//! seeding stops with an [`Error::Limit`] naming the volume and the file, and the volume is
//! emptied again.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::extract::Limits;

/// Directory depth past which seeding stops with an error (a hostile image could nest deeply).
const MAX_DEPTH: usize = 512;

/// What seeding may still copy: data bytes ([`Limits::max_volume_bytes`]) and entries
/// ([`Limits::max_entries`]), shared by the volumes of one bundle.
#[derive(Debug, Clone)]
pub struct SeedBudget {
    bytes: u64,
    entries: u64,
    limits: Limits,
}

impl SeedBudget {
    /// A budget of the given limits.
    pub fn new(limits: &Limits) -> SeedBudget {
        SeedBudget {
            bytes: 0,
            entries: 0,
            limits: *limits,
        }
    }

    /// Data bytes copied so far (holes not counted).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn entry(&mut self, volume: &str, at: &Path) -> Result<()> {
        self.entries += 1;
        let max = self.limits.max_entries;
        check(
            self.entries,
            max,
            "BERTH_MAX_ENTRIES",
            "entries",
            volume,
            at,
        )
    }

    fn data(&mut self, n: u64, volume: &str, at: &Path) -> Result<()> {
        self.bytes = self.bytes.saturating_add(n);
        let max = self.limits.max_volume_bytes;
        check(
            self.bytes,
            max,
            "BERTH_MAX_VOLUME_BYTES",
            "bytes of data",
            volume,
            at,
        )
    }
}

/// An [`Error::Limit`] naming the volume and the file once `used` passes `max` `what`.
fn check(
    used: u64,
    max: u64,
    limit: &'static str,
    what: &str,
    volume: &str,
    at: &Path,
) -> Result<()> {
    if used <= max {
        return Ok(());
    }
    Err(Error::Limit {
        what: format!("volume {volume}: {}", at.display()),
        detail: format!("seeding copies more than {max} {what} from the image"),
        limit,
        max,
    })
}

/// Copies the image's content at `path` (absolute, inside `rootfs`) into the empty directory
/// `dest` (a non-empty `dest` is left alone), which also takes the source directory's mode,
/// owner and mtime. A path the image does not have, or that is not a directory there, seeds
/// nothing. Past `budget`, the error names the file and `dest` is left empty.
pub fn seed(rootfs: &Path, path: &str, dest: &Path, budget: &mut SeedBudget) -> Result<()> {
    // Only a fresh volume is seeded (as docker does): existing data is never overwritten.
    if std::fs::read_dir(dest)
        .map_err(|e| Error::io(dest, "read directory", e))?
        .next()
        .is_some()
    {
        return Ok(());
    }
    let what = |op: &'static str| move |e: Errno| Error::io(Path::new(path), op, e);
    let root = rustix::fs::open(
        rootfs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(rootfs, "open", e))?;
    let rel = path.trim_start_matches('/');
    let src = if rel.is_empty() {
        root
    } else {
        match berth_sys::in_root::open_relative(
            root.as_fd(),
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY,
            berth_sys::in_root::Resolve::InRootSameMount,
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(what("open in the image")(e)),
        }
    };
    let dst = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| Error::io(dest, "open", e))?;
    let mut seeding = Seeding {
        volume: path,
        budget,
    };
    if let Err(e) = seeding.copy_dir(&src, &dst, dest, 0) {
        empty_dir(&dst);
        return Err(e);
    }
    let st = rustix::fs::fstat(&src).map_err(what("stat"))?;
    apply_meta(&dst, None, &st, dest)
}

/// Removes everything in `dir` (best effort: a failed seeding leaves an empty volume).
fn empty_dir(dir: &OwnedFd) {
    let Ok(entries) = Dir::read_from(dir) else {
        return;
    };
    let names: Vec<Vec<u8>> = entries
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for n in names {
        let _ = crate::extract::remove_all_at(dir.as_fd(), &n);
    }
}

/// One volume being seeded.
struct Seeding<'a> {
    /// The volume's path in the image, for errors.
    volume: &'a str,
    budget: &'a mut SeedBudget,
}

impl Seeding<'_> {
    fn copy_dir(&mut self, src: &OwnedFd, dst: &OwnedFd, at: &Path, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                at.display().to_string(),
                format!("volume content nests deeper than {MAX_DEPTH} directories"),
            ));
        }
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |e: Errno| Error::io(p, op, e)
        };
        let dir = Dir::read_from(src).map_err(io("read directory", at))?;
        for entry in dir {
            let entry = entry.map_err(io("read directory", at))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let path = at.join(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()),
            );
            let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io("stat", &path))?;
            self.budget.entry(self.volume, &path)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                        .map_err(io("create directory", &path))?;
                    let flags =
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
                    let s = rustix::fs::openat(src, name, flags, Mode::empty())
                        .map_err(io("open", &path))?;
                    let d = rustix::fs::openat(dst, name, flags, Mode::empty())
                        .map_err(io("open", &path))?;
                    self.copy_dir(&s, &d, &path, depth + 1)?;
                    apply_meta(&d, None, &st, &path)?;
                }
                FileType::RegularFile => {
                    let s = rustix::fs::openat(
                        src,
                        name,
                        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(io("open", &path))?;
                    let d = rustix::fs::openat(
                        dst,
                        name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::CLOEXEC
                            | OFlags::NOFOLLOW,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(io("create", &path))?;
                    self.copy_file(&s, &d, &path)?;
                    apply_meta(&d, None, &st, &path)?;
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(src, name, Vec::new())
                        .map_err(io("read link", &path))?;
                    rustix::fs::symlinkat(target.as_c_str(), dst, name)
                        .map_err(io("create symlink", &path))?;
                    apply_meta(dst, Some(name), &st, &path)?;
                }
                // Devices, FIFOs and sockets are not data a volume needs.
                _ => {}
            }
        }
        Ok(())
    }

    /// Copies a regular file's data regions (`SEEK_DATA`/`SEEK_HOLE`), each charged to the
    /// budget before it is copied, and leaves its holes as holes.
    fn copy_file(&mut self, src: &OwnedFd, dst: &OwnedFd, path: &Path) -> Result<()> {
        let io = |op: &'static str| move |e: Errno| Error::io(path, op, e);
        let len = rustix::fs::fstat(src).map_err(io("stat"))?.st_size;
        let len = u64::try_from(len).unwrap_or(0);
        let mut off = 0u64;
        while off < len {
            let start = match rustix::fs::seek(src, SeekFrom::Data(off)) {
                Ok(p) => p,
                Err(Errno::NXIO) => break, // only a hole is left
                // No SEEK_DATA here: all of it is data.
                Err(Errno::INVAL | Errno::OPNOTSUPP) => off,
                Err(e) => return Err(io("seek data")(e)),
            };
            if start >= len {
                break;
            }
            let end = match rustix::fs::seek(src, SeekFrom::Hole(start)) {
                Ok(p) => p.min(len),
                Err(Errno::INVAL | Errno::OPNOTSUPP) => len,
                Err(e) => return Err(io("seek hole")(e)),
            };
            self.budget.data(end - start, self.volume, path)?;
            copy_range(src, dst, start, end).map_err(io("copy"))?;
            off = end;
        }
        // The size, with any hole at the end.
        rustix::fs::ftruncate(dst, len).map_err(io("truncate"))
    }
}

/// Copies bytes `start..end` of `src` to the same offsets of `dst`: `copy_file_range`
/// (in-kernel, reflinks where the filesystem can), else through a buffer (another
/// filesystem, as from an overlay root to the bundle's disk on older kernels).
fn copy_range(src: &OwnedFd, dst: &OwnedFd, start: u64, end: u64) -> rustix::io::Result<()> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from(end - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break, // the file shrank
            Ok(_) | Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return copy_buffered(src, dst, off_in, end);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn copy_buffered(src: &OwnedFd, dst: &OwnedFd, mut off: u64, end: u64) -> rustix::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while off < end {
        let want = usize::try_from(end - off)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match rustix::io::pread(src, &mut buf[..want], off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        };
        let mut done = 0;
        while done < n {
            match rustix::io::pwrite(dst, &buf[done..n], off + done as u64) {
                Ok(k) => done += k,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        off += n as u64;
    }
    Ok(())
}

/// Owner, mode (not for symlinks) and times of `st`, on the fd itself or, with `name`, on the
/// symlink `name` in the directory `fd`. Ownership is best effort without privileges.
fn apply_meta(fd: &OwnedFd, name: Option<&CStr>, st: &Stat, path: &Path) -> Result<()> {
    let uid = Some(Uid::from_raw(st.st_uid));
    let gid = Some(Gid::from_raw(st.st_gid));
    let owned = match name {
        Some(n) => rustix::fs::chownat(fd, n, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        None => rustix::fs::fchown(fd, uid, gid),
    };
    match owned {
        Ok(()) => {}
        Err(Errno::PERM) if !rustix::process::geteuid().is_root() => {}
        Err(e) => return Err(Error::io(path, "chown", e)),
    }
    if name.is_none() {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|e| Error::io(path, "chmod", e))?;
    }
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    };
    match name {
        Some(n) => rustix::fs::utimensat(fd.as_fd(), n, &t, AtFlags::SYMLINK_NOFOLLOW),
        None => rustix::fs::futimens(fd, &t),
    }
    .map_err(|e| Error::io(path, "set times", e))
}
