//! `COPY` and `ADD` into a step's mounted root filesystem, with docker's rules: a directory
//! source copies its contents, a destination ending in `/` (or an existing directory) takes
//! files under their own names, several sources need a directory destination; files are
//! owned by root (or `--chown`) from the context, kept as they are from another stage or
//! image; modes and times are kept; `ADD` unpacks local tar archives.
//!
//! Both sides are reached through descriptors: the source through its root
//! (`RESOLVE_IN_ROOT`, nested symlinks copied as symlinks, never followed), the destination
//! through the root filesystem's descriptor, so a symlink in the image (`/app -> /etc`)
//! resolves inside the image, never on the host.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_sys::in_root::{self, Leaf, OFlags, Resolve};
use rustix::fs::{AtFlags, FileType, Mode, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::context::{entries, Ignore};
use crate::error::{Error, Result};

/// Who owns what is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// As in the source (`COPY --from` without `--chown`).
    Keep,
    /// This uid and gid (root by default from the context, or `--chown`).
    Set(u32, u32),
}

/// Where and how files are copied.
#[derive(Debug)]
pub struct Target<'a> {
    /// The root filesystem (a directory descriptor).
    pub root: BorrowedFd<'a>,
    /// Ownership of copied files.
    pub owner: Owner,
    /// `--chmod`: the mode of copied files and directories.
    pub chmod: Option<u32>,
    /// `ADD`: unpack local tar archives.
    pub unpack: bool,
    /// The step, for errors.
    pub step: &'a str,
}

/// Copies `sources` (paths in `src`, whose host path is `src_path` for messages) to `dest`
/// (absolute in the root filesystem; a trailing `/` means a directory).
pub fn copy(
    src: BorrowedFd<'_>,
    src_path: &Path,
    sources: &[PathBuf],
    ignore: &Ignore,
    dest: &str,
    t: &Target<'_>,
) -> Result<()> {
    let dir_form = dest.ends_with('/');
    if sources.len() > 1 && !dir_form {
        return Err(Error::Source {
            step: t.step.into(),
            path: dest.into(),
            message: "when using COPY with more than one source file, the destination must be a directory and end with a /".into(),
        });
    }
    let dest_path = PathBuf::from(dest);
    for rel in sources {
        let fd = in_root::open(src, rel, OFlags::PATH, Resolve::InRoot)
            .map_err(|e| Error::io(src_path.join(rel), "open", e))?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Error::io(src_path.join(rel), "stat", e.into()))?;
        let what = src_path.join(rel);
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let (dir, created) = ensure_dir(t, &dest_path)?;
            if created {
                set_owner_mode(t, dir.as_fd(), None, &st, &dest_path)?;
            }
            let sdir = in_root::open(
                src,
                rel,
                OFlags::DIRECTORY | OFlags::RDONLY,
                Resolve::InRoot,
            )
            .map_err(|e| Error::io(&what, "open", e))?;
            copy_tree(sdir.as_fd(), &what, rel, ignore, dir.as_fd(), &dest_path, t)?;
            continue;
        }
        let into_dir = dir_form || is_dir(t.root, &dest_path);
        if t.unpack && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
            let proc = in_root::proc_fd_path(fd.as_fd());
            let proc = Path::new(std::ffi::OsStr::from_bytes(proc.as_bytes()));
            if let Some(stream) = crate::archive::open_tar(proc)? {
                let (dir, _) = ensure_dir(t, &dest_path)?;
                unpack(&what, stream, dir.as_fd())?;
                continue;
            }
        }
        let (parent, name) = if into_dir {
            let name = rel
                .file_name()
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            (dest_path.clone(), name)
        } else {
            let parent = dest_path.parent().unwrap_or(Path::new("/")).to_path_buf();
            let name = dest_path
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| Error::Source {
                    step: t.step.into(),
                    path: dest.into(),
                    message: "the destination has no file name".into(),
                })?;
            (parent, name)
        };
        let (pdir, _) = ensure_dir(t, &parent)?;
        copy_entry(
            fd.as_fd(),
            &st,
            &what,
            pdir.as_fd(),
            &parent.join(&name),
            &name,
            t,
        )?;
    }
    Ok(())
}

fn is_dir(root: BorrowedFd<'_>, p: &Path) -> bool {
    in_root::open(root, p, OFlags::DIRECTORY | OFlags::PATH, Resolve::InRoot).is_ok()
}

/// Opens (creating, mode 0755) a directory of the root filesystem: its descriptor and
/// whether it was created.
fn ensure_dir(t: &Target<'_>, p: &Path) -> Result<(OwnedFd, bool)> {
    let existed = is_dir(t.root, p);
    // The directories about to be created, deepest first: they go to `--chown`'s owner, as
    // docker's MkdirAllAndChownNew gives them.
    let mut missing = Vec::new();
    let mut cur = p.to_path_buf();
    while !is_dir(t.root, &cur) {
        missing.push(cur.clone());
        if !cur.pop() {
            break;
        }
    }
    in_root::ensure(t.root, p, Leaf::Dir).map_err(|e| Error::io(p, "create", e))?;
    if let Owner::Set(uid, gid) = t.owner {
        for d in missing.iter().rev() {
            let fd = in_root::open(
                t.root,
                d,
                OFlags::DIRECTORY | OFlags::RDONLY,
                Resolve::InRoot,
            )
            .map_err(|e| Error::io(d, "open", e))?;
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| Error::io(d, "chown", e.into()))?;
        }
    }
    let fd = in_root::open(
        t.root,
        p,
        OFlags::DIRECTORY | OFlags::RDONLY,
        Resolve::InRoot,
    )
    .map_err(|e| Error::io(p, "open", e))?;
    Ok((fd, !existed))
}

fn reopen(fd: BorrowedFd<'_>, what: &Path) -> Result<File> {
    let p = in_root::proc_fd_path(fd);
    rustix::fs::open(
        p.as_c_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| Error::io(what, "open", e.into()))
}

/// Copies the contents of directory `sdir` into `ddir`.
fn copy_tree(
    sdir: BorrowedFd<'_>,
    spath: &Path,
    rel: &Path,
    ignore: &Ignore,
    ddir: BorrowedFd<'_>,
    dpath: &Path,
    t: &Target<'_>,
) -> Result<()> {
    for (name, _) in entries(sdir, spath)? {
        if ignore.excludes(&crate::context::child(rel, &name)) {
            continue;
        }
        let fd = rustix::fs::openat(
            sdir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(spath.join(&name), "open", e.into()))?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Error::io(spath.join(&name), "stat", e.into()))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            match rustix::fs::mkdirat(ddir, &name, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let dst = rustix::fs::statat(ddir, &name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| Error::io(dpath.join(&name), "stat", e.into()))?;
                    if FileType::from_raw_mode(dst.st_mode) != FileType::Directory {
                        rustix::fs::unlinkat(ddir, &name, AtFlags::empty())
                            .and_then(|()| {
                                rustix::fs::mkdirat(ddir, &name, Mode::from_raw_mode(0o755))
                            })
                            .map_err(|e| Error::io(dpath.join(&name), "replace", e.into()))?;
                    }
                }
                Err(e) => return Err(Error::io(dpath.join(&name), "create", e.into())),
            }
            let open = |d, p: &Path| {
                rustix::fs::openat(
                    d,
                    &name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io(p.join(&name), "open", e.into()))
            };
            let (s, d) = (open(sdir, spath)?, open(ddir, dpath)?);
            copy_tree(
                s.as_fd(),
                &spath.join(&name),
                &crate::context::child(rel, &name),
                ignore,
                d.as_fd(),
                &dpath.join(&name),
                t,
            )?;
            set_owner_mode(t, d.as_fd(), None, &st, &dpath.join(&name))?;
        } else {
            copy_entry(
                fd.as_fd(),
                &st,
                &spath.join(&name),
                ddir,
                &dpath.join(&name),
                &name,
                t,
            )?;
        }
    }
    Ok(())
}

/// Copies one non-directory entry (file, symlink, fifo) to `name` in `ddir`, replacing what
/// is there (a directory stays and is an error).
fn copy_entry(
    fd: BorrowedFd<'_>,
    st: &Stat,
    what: &Path,
    ddir: BorrowedFd<'_>,
    dpath: &Path,
    name: &Path,
    t: &Target<'_>,
) -> Result<()> {
    match rustix::fs::statat(ddir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(d) if FileType::from_raw_mode(d.st_mode) == FileType::Directory => {
            return Err(Error::Source {
                step: t.step.into(),
                path: dpath.display().to_string(),
                message: "cannot replace a directory with a file".into(),
            })
        }
        Ok(_) => rustix::fs::unlinkat(ddir, name, AtFlags::empty())
            .map_err(|e| Error::io(dpath, "replace", e.into()))?,
        Err(_) => {}
    }
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let mut src = reopen(fd, what)?;
            let out = rustix::fs::openat(
                ddir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| Error::io(dpath, "create", e.into()))?;
            let mut dst = File::from(out);
            std::io::copy(&mut src, &mut dst).map_err(|e| Error::io(dpath, "write", e))?;
            set_owner_mode(t, dst.as_fd(), None, st, dpath)
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(fd, "", Vec::new())
                .map_err(|e| Error::io(what, "readlink", e.into()))?;
            rustix::fs::symlinkat(target.as_c_str(), ddir, name)
                .map_err(|e| Error::io(dpath, "create", e.into()))?;
            set_owner_mode(t, ddir, Some(name), st, dpath)
        }
        FileType::Fifo => {
            rustix::fs::mknodat(
                ddir,
                name,
                FileType::Fifo,
                Mode::from_raw_mode(st.st_mode & 0o7777),
                0,
            )
            .map_err(|e| Error::io(dpath, "create", e.into()))?;
            set_owner_mode(t, ddir, Some(name), st, dpath)
        }
        // Sockets and devices of a context are not copied (as docker).
        _ => Ok(()),
    }
}

/// Sets owner, mode and times of `fd` (or of `name` in directory `fd`, not followed).
fn set_owner_mode(
    t: &Target<'_>,
    fd: BorrowedFd<'_>,
    name: Option<&Path>,
    st: &Stat,
    what: &Path,
) -> Result<()> {
    let (uid, gid) = match t.owner {
        Owner::Keep => (st.st_uid, st.st_gid),
        Owner::Set(u, g) => (u, g),
    };
    let ids = (
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    );
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec.try_into().unwrap_or(0),
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec.try_into().unwrap_or(0),
        },
    };
    let is_link = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
    let mode = t.chmod.unwrap_or(st.st_mode & 0o7777);
    let r = match name {
        Some(n) => rustix::fs::chownat(fd, n, ids.0, ids.1, AtFlags::SYMLINK_NOFOLLOW)
            .and_then(|()| {
                if is_link {
                    Ok(())
                } else {
                    rustix::fs::chmodat(fd, n, Mode::from_raw_mode(mode), AtFlags::empty())
                }
            })
            .and_then(|()| rustix::fs::utimensat(fd, n, &times, AtFlags::SYMLINK_NOFOLLOW)),
        None => rustix::fs::fchown(fd, ids.0, ids.1)
            .and_then(|()| rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)))
            .and_then(|()| rustix::fs::futimens(fd, &times)),
    };
    r.map_err(|e| Error::io(what, "set owner, mode and times of", e.into()))
}

/// Unpacks an archive's tar stream (`ADD`) into directory `dir` with the layer extractor
/// (flattened, every entry confined beneath `dir`).
fn unpack(
    archive: &Path,
    stream: Box<dyn std::io::Read + Send>,
    dir: BorrowedFd<'_>,
) -> Result<()> {
    let dest = in_root::proc_fd_path(dir);
    let dest = Path::new(std::ffi::OsStr::from_bytes(dest.as_bytes()));
    let rootless = !rustix::process::geteuid().is_root();
    crate::archive::unpack(stream, dest, rootless).map_err(|e| Error::Source {
        step: "ADD".into(),
        path: archive.display().to_string(),
        message: e.to_string(),
    })
}
