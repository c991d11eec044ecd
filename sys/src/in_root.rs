//! Path resolution confined to a root directory: every lookup is `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, so `..` and absolute or relative symlinks inside the root can never
//! lead outside it, and `/proc/<pid>/fd`-style magic links are refused. [`Resolve`] names the
//! stricter variants berth uses.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, ResolveFlags};
use rustix::io::Errno;

pub use rustix::fs::OFlags;

/// How a path is resolved inside the root. Every variant is `RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS`; the others add refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// Symlinks are followed (inside the root) and mounts are crossed: a container's rootfs
    /// as its processes will see it.
    InRoot,
    /// [`Resolve::InRoot`] that also refuses to cross a mount (`RESOLVE_NO_XDEV`): stays on
    /// the root's filesystem, e.g. an image's unpacked layers.
    InRootSameMount,
    /// [`Resolve::InRoot`] that also refuses any symlink (`RESOLVE_NO_SYMLINKS`, `ELOOP`).
    InRootNoSymlinks,
    /// No symlink and no mount crossing (`RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`): for files
    /// of a verified filesystem, such as `/proc/sys`, where a decoy must not take a write.
    InRootStrict,
}

impl Resolve {
    /// The `RESOLVE_*` flags of this variant.
    pub fn flags(self) -> ResolveFlags {
        let base = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        match self {
            Resolve::InRoot => base,
            Resolve::InRootSameMount => base | ResolveFlags::NO_XDEV,
            Resolve::InRootNoSymlinks => base | ResolveFlags::NO_SYMLINKS,
            Resolve::InRootStrict => base | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
        }
    }
}

/// Opens `path` (absolute or relative, interpreted inside `root`) with `flags | O_CLOEXEC`,
/// resolved as `resolve` says. `EAGAIN` (a concurrent rename) and `EINTR` are retried.
pub fn open(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    resolve: Resolve,
) -> io::Result<OwnedFd> {
    open_relative(root, relative(path).as_path(), flags, resolve).map_err(io::Error::from)
}

/// [`open`] for a path already relative to `root` (bytes, `&str` or `&Path`: nothing is
/// allocated), returning the kernel's errno, for hot paths such as the layer extractor's
/// directory lookups. `EAGAIN` (a concurrent rename) and `EINTR` are retried.
pub fn open_relative<P: rustix::path::Arg + Copy>(
    root: BorrowedFd<'_>,
    path: P,
    flags: OFlags,
    resolve: Resolve,
) -> rustix::io::Result<OwnedFd> {
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve.flags(),
        ) {
            Err(Errno::AGAIN | Errno::INTR) => {}
            other => return other,
        }
    }
}

/// An `O_PATH` descriptor for `path` inside `root` ([`Resolve::InRoot`]).
pub fn open_path(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    open(root, path, OFlags::PATH, Resolve::InRoot)
}

/// Whether resolving `path` inside `root` meets a symlink (on any existing component).
pub fn has_symlink(root: BorrowedFd<'_>, path: &Path) -> io::Result<bool> {
    match open(root, path, OFlags::PATH, Resolve::InRootNoSymlinks) {
        Ok(_) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `path` with its root and `.` components removed, for use relative to a root fd.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| {
            !matches!(
                c,
                Component::RootDir | Component::CurDir | Component::Prefix(_)
            )
        })
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// What to create at the end of a path when it is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// A directory (mode 0755).
    Dir,
    /// An empty regular file (mode 0644), e.g. a bind-mount target for a file.
    File,
}

/// Opens `path` inside `root` as `O_PATH`, creating missing directories (and the leaf) on the way.
///
/// Every intermediate lookup is confined to `root`; a dangling symlink on the way is followed
/// (inside the root) and its target created, as runc does for e.g.
/// `/etc/resolv.conf -> ../run/resolv.conf`.
pub fn ensure(root: BorrowedFd<'_>, path: &Path, leaf: Leaf) -> io::Result<OwnedFd> {
    ensure_within(root, path, leaf, 0)
}

/// Symlinks followed while creating one path (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

fn ensure_within(
    root: BorrowedFd<'_>,
    path: &Path,
    leaf: Leaf,
    links: usize,
) -> io::Result<OwnedFd> {
    match open_path(root, path) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        Err(_) => {}
    }
    let rel = relative(path);
    let mut prefix = PathBuf::new();
    let mut parent = open_path(root, Path::new("."))?;
    let count = rel.components().count();
    for (i, comp) in rel.components().enumerate() {
        let name = match comp {
            Component::Normal(n) => n,
            // `..` is resolved by openat2 against the current prefix (clamped at root).
            Component::ParentDir => {
                prefix.push("..");
                parent = open_path(root, &prefix)?;
                continue;
            }
            _ => continue,
        };
        prefix.push(name);
        match open_path(root, &prefix) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            Err(_) => {}
        }
        let cname = CString::new(name.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        let is_last = i + 1 == count;
        let created = if is_last && leaf == Leaf::File {
            // The descriptor is dropped (closed) at once: only the file is wanted.
            rustix::fs::openat(
                &parent,
                cname.as_c_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&parent, cname.as_c_str(), Mode::from_raw_mode(0o755))
        };
        match created {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        match open_path(root, &prefix) {
            Ok(fd) => parent = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // A dangling symlink: create its target, resolved inside the root.
                if links >= MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = rustix::fs::readlinkat(&parent, cname.as_c_str(), Vec::new())
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{} vanished while being created", prefix.display()),
                        )
                    })?;
                let base = prefix.parent().unwrap_or(Path::new("")).to_path_buf();
                let mut next = base.join(Path::new(std::ffi::OsStr::from_bytes(target.as_bytes())));
                for rest in rel.components().skip(i + 1) {
                    next.push(rest);
                }
                return ensure_within(root, &next, leaf, links + 1);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(parent)
}

/// The `/proc/self/fd/N` path through which mount(2) and friends reach a resolved descriptor.
pub fn proc_fd_path(fd: impl AsFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).expect("no NUL")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::scratch_dirs;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_cannot_escape() {
        let (_tmp, [root_dir, outside]) = scratch_dirs(["root", "outside"]);
        std::fs::create_dir(root_dir.join("inner")).unwrap();
        symlink("/inner", root_dir.join("abs")).unwrap();
        symlink("../../inner", root_dir.join("rel")).unwrap();
        symlink(&outside, root_dir.join("host")).unwrap();
        let root = std::fs::File::open(&root_dir).unwrap();

        ensure(root.as_fd(), Path::new("/abs/x/y"), Leaf::Dir).unwrap();
        ensure(root.as_fd(), Path::new("rel/z"), Leaf::File).unwrap();
        ensure(root.as_fd(), Path::new("/../../../w"), Leaf::Dir).unwrap();
        // A symlink to a host path is followed inside the root: created under root, not host.
        ensure(root.as_fd(), Path::new("/host/evil"), Leaf::Dir).unwrap();
        assert!(root_dir
            .join(outside.strip_prefix("/").unwrap())
            .join("evil")
            .is_dir());
        symlink("../dangling/file", root_dir.join("inner/link")).unwrap();
        ensure(root.as_fd(), Path::new("/inner/link"), Leaf::File).unwrap();
        assert!(root_dir.join("dangling/file").is_file());
        symlink("loop", root_dir.join("loop")).unwrap();
        let e = ensure(root.as_fd(), Path::new("/loop/x"), Leaf::Dir).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "wrote outside"
        );
        assert!(root_dir.join("inner/x/y").is_dir());
        assert!(root_dir.join("inner/z").is_file());
        assert!(root_dir.join("w").is_dir());
    }

    #[test]
    fn existing_paths_open_directly() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        let root = std::fs::File::open(tmp.path()).unwrap();
        ensure(root.as_fd(), Path::new("/a/b"), Leaf::Dir).unwrap();
        ensure(root.as_fd(), Path::new("/"), Leaf::Dir).unwrap();
    }

    #[test]
    fn resolve_variants() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::fs::write(tmp.path().join("d/f"), b"x").unwrap();
        symlink("d", tmp.path().join("link")).unwrap();
        symlink("/proc/self/exe", tmp.path().join("magic")).unwrap();
        let root = std::fs::File::open(tmp.path()).unwrap();
        let root = root.as_fd();
        let f = Path::new("/link/f");
        open(root, f, OFlags::RDONLY, Resolve::InRoot).unwrap();
        open(root, f, OFlags::RDONLY, Resolve::InRootSameMount).unwrap();
        for strict in [Resolve::InRootNoSymlinks, Resolve::InRootStrict] {
            let e = open(root, f, OFlags::RDONLY, strict).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{strict:?}");
        }
        open(
            root,
            Path::new("d/f"),
            OFlags::RDONLY,
            Resolve::InRootStrict,
        )
        .unwrap();
        assert!(has_symlink(root, f).unwrap());
        assert!(!has_symlink(root, Path::new("/d/f")).unwrap());
        assert!(!has_symlink(root, Path::new("/d/missing")).unwrap());
        // /proc/self/exe resolved inside the root is a dangling path, never the magic link.
        assert!(open(root, Path::new("magic"), OFlags::RDONLY, Resolve::InRoot).is_err());
        // A mount crossing: /proc under /.
        let slash = std::fs::File::open("/").unwrap();
        let slash = slash.as_fd();
        open(
            slash,
            Path::new("/proc/self"),
            OFlags::PATH,
            Resolve::InRoot,
        )
        .unwrap();
        let e = open(
            slash,
            Path::new("/proc/self"),
            OFlags::PATH,
            Resolve::InRootSameMount,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
    }
}
