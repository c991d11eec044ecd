//! Running berth from a read-only view of its binary, so that nothing a container can open
//! through a berth process is the writable host binary (CVE-2019-5736 with CAP_SYS_PTRACE).
//!
//! The init and `exec`'s child are forks of berth: until they exec, `/proc/<pid>/exe` is
//! berth's binary. Non-dumpable stops a container's processes from opening it, but not one
//! holding CAP_SYS_PTRACE in the host's user namespace (a privileged container without a user
//! namespace): it can keep that descriptor and write the binary once berth has exited.
//!
//! So `create`, `run` and `exec` first re-execute berth from a read-only overlayfs whose only
//! layers are the binary's own directory (twice: overlayfs needs two lower layers when it has
//! no upper one). The overlay is made with `fsopen`/`fsmount`, read-only from the start, and
//! never attached anywhere: berth opens its binary through the detached mount, closes the
//! mount, and executes the descriptor. No copy is made and nothing is left on the host: the
//! mount lives exactly as long as a process runs from it. Opening the binary for writing
//! through `/proc/<pid>/exe` gives `EROFS` (an overlay without an upper layer cannot copy up).
//! Where overlayfs cannot be used (the binary was replaced while running, or its directory is
//! already two overlays deep) berth falls back to a sealed memfd copy, as runc did: slower (a
//! full copy per call) but just as safe, and it leaves nothing behind either.
//!
//! Not needed (and skipped) when the binary is already on a read-only mount, for callers that
//! are not root (their containers always have a user namespace, where non-dumpable is enough:
//! the container holds no capability over the host's user namespace), and for a `create` or
//! `run` whose container has a new pid namespace ([`bundle_needs_no_copy`]). There the init
//! is the namespace's first process: until it execs, the only processes that can name it are
//! the host's (in the host's pid namespace, where holding CAP_SYS_PTRACE already means
//! owning the host) and processes that join the namespace. berth lets none join before the
//! container starts, and `start` returns only once the init has exec'd: `exec` into such a
//! container is refused until then, and so is a `create` that joins its pid namespace (the
//! state records the init as exposed: `ContainerState::init_exposed`). This saves the
//! re-exec on the hot path of every plain container, which is most of them.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::error::{Context, Error, Result};

/// Set in the environment of the re-executed berth, so that it knows it must already run
/// from a read-only view (and never re-executes again).
const MARKER: &str = "BERTH_SEALED_EXE";

/// Re-executes the calling berth from a read-only view of its binary, unless it already runs
/// from one or is not root. Returns when berth may go on; on success of the re-exec it never
/// returns.
pub fn reexec_sealed(args: &[OsString]) -> Result<()> {
    let exe = open_self_exe()?;
    let marker = std::env::var_os(MARKER);
    if is_sealed(&exe)? {
        if marker.is_some() {
            // SAFETY: berth is single-threaded this early; nothing reads the environment
            // concurrently.
            unsafe { std::env::remove_var(MARKER) };
        }
        return Ok(());
    }
    if marker.is_some() {
        return Err(Error::Init(format!(
            "{MARKER} is set but berth does not run from a read-only view of its binary (remove {MARKER} from the environment)"
        )));
    }
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let sealed = match read_only_overlay_view(&exe) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!("overlayfs view of berth's binary: {e}; copying it to a sealed memfd");
            sealed_memfd_copy(&exe)?
        }
    };
    exec_fd(&sealed, args)
}

/// Whether the bundle's container leaves berth's processes out of reach without the copy: it
/// has a new pid namespace, so no process of another container can see its init before it
/// starts (see the module doc). Anything unreadable or unusual answers no, so the copy is
/// used.
pub fn bundle_needs_no_copy(bundle: &Path) -> bool {
    /// The part of config.json this looks at (the rest is skipped, not built).
    #[derive(serde::Deserialize)]
    struct Config {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        namespaces: Option<Vec<Namespace>>,
    }
    #[derive(serde::Deserialize)]
    struct Namespace {
        #[serde(rename = "type")]
        kind: String,
        path: Option<std::path::PathBuf>,
    }
    let Ok(bytes) = std::fs::read(bundle.join("config.json")) else {
        return false;
    };
    let Ok(config) = serde_json::from_slice::<Config>(&bytes) else {
        return false;
    };
    config
        .linux
        .and_then(|l| l.namespaces)
        .is_some_and(|list| list.iter().any(|n| n.kind == "pid" && n.path.is_none()))
}

/// Whether this process runs from a read-only view of its binary (or one nothing can write).
pub fn running_sealed() -> bool {
    open_self_exe().is_ok_and(|exe| is_sealed(&exe).unwrap_or(false))
}

/// Whether the descriptor's file cannot be written through any path: it lies on a read-only
/// mount, or it is a memfd sealed against writes.
pub fn is_sealed(fd: &impl AsFd) -> Result<bool> {
    let st = rustix::fs::fstatvfs(fd).ctx(|| "statvfs of berth's binary".to_string())?;
    if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Ok(true);
    }
    Ok(rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(SealFlags::WRITE)))
}

fn open_self_exe() -> Result<OwnedFd> {
    let f = std::fs::File::open("/proc/self/exe").ctx(|| "opening /proc/self/exe".to_string())?;
    Ok(f.into())
}

/// Berth's binary opened through a detached, read-only overlayfs of its own directory.
fn read_only_overlay_view(exe: &OwnedFd) -> Result<OwnedFd> {
    let path = std::fs::read_link("/proc/self/exe").ctx(|| "reading /proc/self/exe")?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Init(format!("{} has no directory", path.display())));
    };
    let fs =
        rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).ctx(|| "fsopen overlay")?;
    rustix::mount::fsconfig_set_string(&fs, "lowerdir+", dir)
        .ctx(|| format!("overlay lowerdir+ {}", dir.display()))?;
    // overlayfs without an upper layer wants two lower ones; the second is an empty tmpfs
    // attached nowhere.
    let empty = empty_tmpfs()?;
    rustix::mount::fsconfig_set_fd(&fs, "lowerdir+", &empty)
        .ctx(|| "overlay lowerdir+ (an empty tmpfs)")?;
    rustix::mount::fsconfig_create(&fs).ctx(|| "creating the overlay")?;
    let mnt = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .ctx(|| "fsmount overlay")?;
    let view = rustix::fs::openat(
        &mnt,
        name,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .ctx(|| format!("opening {} through the overlay", name.to_string_lossy()))?;
    let (a, b) = (fstat(exe)?, fstat(&view)?);
    if a.st_size != b.st_size || a.st_mtime != b.st_mtime || a.st_mtime_nsec != b.st_mtime_nsec {
        return Err(Error::Init(format!(
            "{} is not the binary berth runs from (replaced while running?)",
            path.display()
        )));
    }
    if !is_sealed(&view)? {
        return Err(Error::Init("the overlay view is not read-only".into()));
    }
    Ok(view)
}

/// An empty, read-only tmpfs mount attached nowhere.
fn empty_tmpfs() -> Result<OwnedFd> {
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).ctx(|| "fsopen tmpfs")?;
    rustix::mount::fsconfig_set_string(&fs, "size", "4k").ctx(|| "tmpfs size")?;
    rustix::mount::fsconfig_create(&fs).ctx(|| "creating an empty tmpfs")?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY,
    )
    .ctx(|| "fsmount tmpfs")
}

/// A copy of berth's binary in a memfd sealed against any change.
fn sealed_memfd_copy(exe: &OwnedFd) -> Result<OwnedFd> {
    let size = fstat(exe)?.st_size as u64;
    let memfd = rustix::fs::memfd_create(
        "berth",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::EXEC,
    )
    .or_else(|_| rustix::fs::memfd_create("berth", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING))
    .ctx(|| "memfd_create")?;
    let mut off = 0u64;
    while off < size {
        let left = (size - off) as usize;
        let n = rustix::fs::sendfile(&memfd, exe, Some(&mut off), left)
            .ctx(|| "copying berth's binary")?;
        if n == 0 {
            return Err(Error::Init(
                "berth's binary shrank while being copied".into(),
            ));
        }
    }
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )
    .ctx(|| "sealing the copy of berth's binary")?;
    Ok(memfd)
}

fn fstat(fd: &impl AsFd) -> Result<nix::sys::stat::FileStat> {
    nix::sys::stat::fstat(fd.as_fd().as_raw_fd()).ctx(|| "fstat of berth's binary")
}

fn exec_fd(fd: &OwnedFd, args: &[OsString]) -> Result<()> {
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Init("an argument contains NUL".into()))?;
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != MARKER)
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    envp.push(CString::new(format!("{MARKER}=1")).expect("no NUL"));
    let err = nix::unistd::execveat(
        Some(fd.as_raw_fd()),
        c"",
        &argv,
        &envp,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(std::io::Error::from(err)).ctx(|| "executing berth's read-only view")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_binary_is_not_sealed_in_tests() {
        // Sanity of the probe itself: the test binary lives in target/, a writable mount.
        let exe = open_self_exe().unwrap();
        assert!(!is_sealed(&exe).unwrap());
    }

    #[test]
    fn a_sealed_memfd_copy_cannot_be_written() {
        let exe = open_self_exe().unwrap();
        let copy = sealed_memfd_copy(&exe).unwrap();
        assert!(is_sealed(&copy).unwrap());
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        if let Ok(mut f) = reopened {
            use std::io::Write;
            assert!(f.write_all(b"x").is_err());
        }
    }

    #[test]
    fn the_overlay_view_is_read_only_and_leaves_no_mount() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let exe = open_self_exe().unwrap();
        let view = read_only_overlay_view(&exe).unwrap();
        assert!(is_sealed(&view).unwrap());
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", view.as_raw_fd()))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        drop(view);
        let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(before.lines().count(), after.lines().count());
    }
}
