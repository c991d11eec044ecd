//! Persistent network namespaces: a bind mount of a thread's `/proc/thread-self/ns/net` on a
//! file, created on a dedicated thread so the caller's own namespace is never changed, and
//! entered on dedicated threads as well.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// `NSFS_MAGIC` from linux/magic.h: the filesystem type of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn ns_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Namespace { path, op, source }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Creates a new network namespace and pins it on `path` (a new empty file is bind-mounted
/// over). The namespace holds only a loopback interface, down.
pub fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(ns_err(path, "creating its directory"))?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(ns_err(path, "creating the mount point"))?;
    let target = path.to_owned();
    let result = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(errno)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(errno)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
    if let Err(source) = result {
        let _ = fs::remove_file(path);
        return Err(Error::Namespace {
            path: path.to_owned(),
            op: "creating",
            source,
        });
    }
    Ok(())
}

/// Whether `path` is a pinned namespace (an nsfs mount), as opposed to a plain or missing file.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Unpins and removes a namespace file: lazy unmount, then unlink. A missing or unmounted file
/// is fine. Returns whether anything was there.
pub fn remove(path: &Path) -> Result<bool> {
    let mut found = false;
    // A bind mount may be stacked more than once after a crash: unmount until nothing is left.
    for _ in 0..8 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => found = true,
            Err(Errno::EINVAL | Errno::ENOENT) => break,
            Err(e) => {
                return Err(Error::Namespace {
                    path: path.to_owned(),
                    op: "unmounting",
                    source: errno(e),
                })
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => found = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Namespace {
                path: path.to_owned(),
                op: "removing",
                source,
            })
        }
    }
    Ok(found)
}

/// Opens a namespace file (for `IFLA_NET_NS_FD` or `setns`).
pub(crate) fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(ns_err(path, "opening"))
}

/// Runs `f` on a dedicated thread that has joined the network namespace at `path`; the calling
/// thread's namespace is untouched. Netlink sockets opened inside `f` speak for that namespace.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    let ns = open(path)?;
    let path: PathBuf = path.to_owned();
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::Namespace {
                path: path.clone(),
                op: "entering",
                source: errno(e),
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Namespace {
                path: path.clone(),
                op: "running inside",
                source: io::Error::other("thread panicked"),
            })
        })
    })
}
