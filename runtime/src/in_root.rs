//! Path resolution confined to a root directory: every lookup is `openat2(RESOLVE_IN_ROOT)`,
//! so `..` and absolute or relative symlinks inside the rootfs can never lead outside it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Opens `path` (absolute or relative, interpreted inside `root`) with `flags` | `O_CLOEXEC`.
pub fn open(root: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    open_resolving(root, path, flags, 0)
}

/// [`open`] that also refuses any symlink and any mount crossing on the way (for files of a
/// verified filesystem, such as /proc/sys).
pub fn open_strict(root: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    open_resolving(
        root,
        path,
        flags,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV,
    )
}

/// Whether resolving `path` inside `root` meets a symlink (on any existing component).
pub fn has_symlink(root: BorrowedFd<'_>, path: &Path) -> io::Result<bool> {
    match open_resolving(root, path, libc::O_PATH, libc::RESOLVE_NO_SYMLINKS) {
        Ok(_) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

fn open_resolving(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    extra_resolve: u64,
) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: open_how is plain old data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | extra_resolve;
    loop {
        // SAFETY: `c` is a valid NUL-terminated string, `how` a valid open_how whose size we pass.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EAGAIN) && err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// An `O_PATH` descriptor for `path` inside `root`.
pub fn open_path(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    open(root, path, libc::O_PATH)
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
/// Every intermediate lookup is confined to `root`; a dangling symlink on the way is an error
/// rather than something to create through.
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
            // SAFETY: valid dirfd and NUL-terminated name; the returned fd is closed at once.
            let fd = unsafe {
                libc::openat(
                    parent.as_raw_fd(),
                    cname.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                // SAFETY: fd was just returned by openat and is owned by nobody else.
                unsafe { libc::close(fd) };
                0
            } else {
                -1
            }
        } else {
            // SAFETY: valid dirfd and NUL-terminated name.
            unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o755) }
        };
        if created != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        match open_path(root, &prefix) {
            Ok(fd) => parent = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // A dangling symlink: create its target, resolved inside the root (as runc
                // does for e.g. /etc/resolv.conf -> ../run/resolv.conf).
                if links >= MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), cname.as_c_str())
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{} vanished while being created", prefix.display()),
                        )
                    })?;
                let base = prefix.parent().unwrap_or(Path::new("")).to_path_buf();
                let mut next = base.join(Path::new(&target));
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
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_cannot_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let root_dir = tmp.path().join("root");
        std::fs::create_dir_all(root_dir.join("inner")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
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
}
