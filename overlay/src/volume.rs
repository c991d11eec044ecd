//! Volumes seeded from the image: a fresh volume directory receives a copy of what the image
//! holds at the volume's path (as docker and podman do), so `VOLUME /data` over content the
//! image put in `/data` does not hide it.
//!
//! The source is read inside the root filesystem only: the path is resolved with
//! `openat2(RESOLVE_IN_ROOT)` and every entry below it is opened relative to its parent's fd
//! with `O_NOFOLLOW`, so a hostile image's symlinks cannot make berth copy host files. Regular
//! files, directories and symlinks are copied with mode, owner and mtime; device nodes, FIFOs
//! and sockets are skipped.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Directory depth past which seeding stops with an error (a hostile image could nest deeply).
const MAX_DEPTH: usize = 512;

/// Copies the image's content at `path` (absolute, inside `rootfs`) into the empty directory
/// `dest` (a non-empty `dest` is left alone), which also takes the source directory's mode, owner and mtime. A path the image
/// does not have, or that is not a directory there, seeds nothing.
pub fn seed(rootfs: &Path, path: &str, dest: &Path) -> Result<()> {
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
        match rustix::fs::openat2(
            &root,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
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
    copy_dir(&src, &dst, dest, 0)?;
    let st = rustix::fs::fstat(&src).map_err(what("stat"))?;
    apply_meta(&dst, None, &st, dest)
}

fn copy_dir(src: &OwnedFd, dst: &OwnedFd, at: &Path, depth: usize) -> Result<()> {
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
        let path =
            at.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()));
        let st =
            rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io("stat", &path))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                    .map_err(io("create directory", &path))?;
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
                let s = rustix::fs::openat(src, name, flags, Mode::empty())
                    .map_err(io("open", &path))?;
                let d = rustix::fs::openat(dst, name, flags, Mode::empty())
                    .map_err(io("open", &path))?;
                copy_dir(&s, &d, &path, depth + 1)?;
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
                let (mut s, mut d) = (File::from(s), File::from(d));
                std::io::copy(&mut s, &mut d).map_err(|e| Error::io(&path, "copy", e))?;
                apply_meta(&OwnedFd::from(d), None, &st, &path)?;
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
