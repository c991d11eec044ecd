//! The extended attributes of a committed entry: which go into the layer's tar, which are
//! overlayfs's own bookkeeping (read for whiteouts and opaque directories, removed from the
//! layer directory unless a lower layer needs them), all read without following symlinks.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::fs as rfs;
use rustix::io::Errno;

/// An entry whose xattrs are read: through its own fd (files, directories) or by name in
/// its parent directory's fd (symlinks, devices, FIFOs: through `/proc/self/fd`, which the
/// `l*xattr` calls resolve without following the final component).
#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    p
}

/// Calls `f` with a growing buffer until what it reads fits (`ERANGE` means it grew).
fn sized(mut f: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    }
}

impl Node<'_> {
    /// The names of its xattrs (none where the filesystem has no xattr support).
    fn names(self) -> io::Result<Vec<Vec<u8>>> {
        let list = match self {
            Node::Fd(fd) => sized(|b| rfs::flistxattr(fd, b)),
            Node::At(dir, name) => {
                let p = proc_path(dir, name);
                sized(|b| rfs::llistxattr(p.as_slice(), b))
            }
        };
        match list {
            Ok(list) => Ok(list
                .split(|&b| b == 0)
                .filter(|n| !n.is_empty())
                .map(<[u8]>::to_vec)
                .collect()),
            Err(e) if e.raw_os_error() == Some(Errno::NOTSUP.raw_os_error()) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// One xattr's value; `None` if it went missing.
    fn get(self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let r = match self {
            Node::Fd(fd) => sized(|b| rfs::fgetxattr(fd, key, b)),
            Node::At(dir, name) => {
                let p = proc_path(dir, name);
                sized(|b| rfs::lgetxattr(p.as_slice(), key, b))
            }
        };
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.raw_os_error() == Some(Errno::NODATA.raw_os_error()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(self, key: &[u8]) -> io::Result<()> {
        let r = match self {
            Node::Fd(fd) => rfs::fremovexattr(fd, key),
            Node::At(dir, name) => rfs::lremovexattr(proc_path(dir, name).as_slice(), key),
        };
        match r {
            Ok(()) | Err(Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The overlayfs xattr namespace the store's mounts use: `trusted.overlay.` as root,
/// `user.overlay.` for rootless (`userxattr`) mounts. Only that namespace's markers mean
/// anything: a container may set `user.overlay.opaque` on its files under a root mount.
#[derive(Clone, Copy)]
pub(super) struct Overlay {
    pub(super) prefix: &'static [u8],
}

/// What an entry's xattrs say.
#[derive(Default)]
pub(super) struct Xattrs {
    /// The ones the layer's tar carries, sorted by name.
    pub(super) keep: Vec<(Vec<u8>, Vec<u8>)>,
    /// `<ns>.overlay.opaque` is `y`.
    pub(super) opaque: bool,
    /// `<ns>.overlay.whiteout` is set (the kernel's xattr whiteout: a zero-size file).
    pub(super) whiteout: bool,
}

/// Whether the tar carries the xattr `name`: `security.capability` and `user.*`, never an
/// overlayfs one.
fn carried(name: &[u8]) -> bool {
    name == b"security.capability"
        || (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
}

impl Overlay {
    /// Reads the xattrs of `node` and removes overlayfs bookkeeping (`origin`, `impure`,
    /// `nlink`, `upper`, `uuid`, and any overlay xattr of the other namespace) from it; the
    /// markers a lower layer needs (`opaque`, `whiteout`, `whiteouts`) stay. A redirect or
    /// metacopy xattr is an error (`Err` with the xattr's name): such an upper dir is not
    /// self-contained.
    pub(super) fn read(self, node: Node<'_>) -> io::Result<Result<Xattrs, String>> {
        let mut names = node.names()?;
        names.sort();
        let mut out = Xattrs::default();
        for name in names {
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                match name.strip_prefix(self.prefix) {
                    Some(b"opaque") => out.opaque = node.get(&name)?.as_deref() == Some(b"y"),
                    Some(b"whiteout") => out.whiteout = true,
                    Some(b"whiteouts") => {}
                    Some(b"redirect" | b"metacopy") => {
                        return Ok(Err(String::from_utf8_lossy(&name).into_owned()))
                    }
                    _ => node.remove(&name)?,
                }
            } else if carried(&name) {
                if let Some(v) = node.get(&name)? {
                    out.keep.push((name, v));
                }
            }
        }
        Ok(Ok(out))
    }
}
