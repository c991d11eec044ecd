//! The new mount API where berth needs more than mount(2): attributes set on a mount tree
//! (`mount_setattr`, which rustix lacks), detached copies of a tree (`open_tree`) and attaching
//! them (`move_mount`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::mount::{MoveMountFlags, OpenTreeFlags};

/// `MOUNT_ATTR_RDONLY`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_NOSUID`.
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `MOUNT_ATTR_NODEV`.
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `MOUNT_ATTR_NOEXEC`.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// `MOUNT_ATTR__ATIME`: the mask of the atime modes (an enum, not bits).
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x0000_0070;
/// `MOUNT_ATTR_RELATIME`.
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
/// `MOUNT_ATTR_NOATIME`.
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
/// `MOUNT_ATTR_STRICTATIME`.
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
/// `MOUNT_ATTR_NODIRATIME`.
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
/// `MOUNT_ATTR_IDMAP`: the mount shows ids through [`MountAttr::userns`]'s mappings.
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `MOUNT_ATTR_NOSYMFOLLOW`.
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// What `mount_setattr` changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MountAttr<'a> {
    /// `MOUNT_ATTR_*` to set.
    pub set: u64,
    /// `MOUNT_ATTR_*` to clear.
    pub clear: u64,
    /// Propagation type (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`); 0 leaves it.
    pub propagation: u64,
    /// The user namespace whose mappings [`MOUNT_ATTR_IDMAP`] applies.
    pub userns: Option<BorrowedFd<'a>>,
}

/// The kernel's `struct mount_attr` (version 0, 32 bytes).
#[repr(C)]
struct RawMountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Whether a call applies to the whole tree under a mount or to that mount alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// The mount only.
    Single,
    /// The mount and every mount below it (`AT_RECURSIVE`).
    Recursive,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], attr)`: changes the attributes of
/// the mount `fd` refers to (an `O_PATH` descriptor or a detached tree).
pub fn mount_setattr(fd: BorrowedFd<'_>, tree: Tree, attr: &MountAttr<'_>) -> io::Result<()> {
    let raw = RawMountAttr {
        attr_set: attr.set,
        attr_clr: attr.clear,
        propagation: attr.propagation,
        userns_fd: attr.userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let flags = libc::AT_EMPTY_PATH
        | match tree {
            Tree::Single => 0,
            Tree::Recursive => libc::AT_RECURSIVE,
        };
    // SAFETY: `fd` is a live descriptor, the path an empty C string, and `raw` a live
    // `struct mount_attr` whose size is passed; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw const raw,
            std::mem::size_of::<RawMountAttr>(),
        )
    };
    crate::errno::check(rc).map(drop)
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC [| AT_RECURSIVE])`: a
/// detached copy of the mount (or mount tree) at `path`, to change and attach elsewhere.
pub fn clone_tree(path: &Path, tree: Tree) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if tree == Tree::Recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(rustix::mount::open_tree(rustix::fs::CWD, path, flags)?)
}

/// `move_mount(from, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`: attaches
/// the (detached) tree `from` on `to` (an `O_PATH` descriptor of the mount point).
pub fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::mount::move_mount(
        from,
        c"",
        to,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::scratch;
    use std::os::fd::AsFd;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn layout_is_the_kernels() {
        assert_eq!(std::mem::size_of::<RawMountAttr>(), 32);
    }

    #[test]
    fn setattr_on_a_detached_tree() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let (tmp, file) = scratch("f");
        std::fs::write(file, b"x").unwrap();
        let tree = match clone_tree(tmp.path(), Tree::Single) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipped: open_tree: {e}");
                return;
            }
        };
        let ro = MountAttr {
            set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
            ..MountAttr::default()
        };
        mount_setattr(tree.as_fd(), Tree::Recursive, &ro).unwrap();
        // An invalid attribute bit is refused with the kernel's errno.
        let bad = MountAttr {
            set: 1 << 40,
            ..MountAttr::default()
        };
        let e = mount_setattr(tree.as_fd(), Tree::Single, &bad).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    }
}
