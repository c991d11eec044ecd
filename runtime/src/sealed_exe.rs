//! Running berth from a read-only copy, so that nothing a container can open through a berth
//! process is the writable host binary (CVE-2019-5736 with CAP_SYS_PTRACE).
//!
//! The init and `exec`'s child are forks of berth: until they exec, `/proc/<pid>/exe` is
//! berth's binary. Non-dumpable stops a container's processes from opening it, but not one
//! holding CAP_SYS_PTRACE in the host's user namespace (a privileged container without a user
//! namespace): it can keep that descriptor and write the binary once berth has exited.
//!
//! So `create`, `run` and `exec` first re-execute berth from a copy on a read-only mount of its
//! own: a tmpfs made with `fsopen`/`fsmount`, filled, turned read-only with `mount_setattr`
//! while still detached, and only then attached under `/run/berth/exe/<key>`. No writable path
//! to that copy ever exists, so a descriptor to it (or a reopen through `/proc/self/fd`) can
//! only give `EROFS`. The copy is made once per binary (the key is the binary's device, inode,
//! size and modification time; older copies are detached when a new one is made) and costs one
//! `execve` per call afterwards. runc and crun pay a full copy of their binary on every call,
//! or a new mount namespace and an exec.
//!
//! Not needed (and skipped) when the binary is already on a read-only mount, for callers that
//! are not root (their containers always have a user namespace, where non-dumpable is enough:
//! the container holds no capability over the host's user namespace), and for a `create` or
//! `run` whose container has new user and pid namespaces ([`bundle_needs_no_copy`]).

use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

/// Where the read-only copies are attached.
pub const DIR: &str = "/run/berth/exe";
/// Set in the environment of the re-executed berth: the key of the copy it runs from.
const MARKER: &str = "BERTH_SEALED_EXE";

/// Re-executes the calling berth from its read-only copy (making the copy first if needed),
/// unless it already runs from a read-only mount or is not root. Returns when berth may go
/// on; on success of the re-exec it never returns.
pub fn reexec_sealed(args: &[OsString]) -> Result<()> {
    let exe = open_self_exe()?;
    let marker = std::env::var_os(MARKER);
    if on_read_only_mount(&exe)? {
        if marker.is_some() {
            // SAFETY: berth is single-threaded this early; nothing reads the environment
            // concurrently.
            unsafe { std::env::remove_var(MARKER) };
        }
        return Ok(());
    }
    if marker.is_some() {
        return Err(Error::Init(format!(
            "{MARKER} is set but berth does not run from a read-only copy (remove {MARKER} from the environment)"
        )));
    }
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let st = nix::sys::stat::fstat(exe.as_raw_fd()).ctx(|| "fstat /proc/self/exe".to_string())?;
    let key = format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}",
        st.st_dev, st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec
    );
    let copy = ensure_copy(&exe, &key, st.st_size as u64)?;
    exec(&copy, &key, args)
}

/// Whether the bundle's container leaves berth's processes out of reach without the copy: it
/// has a new user namespace (its processes hold no capability over the host's, so the
/// non-dumpable init is enough) and a new pid namespace (no process of another container can
/// see its init). Anything unreadable or unusual answers no, so the copy is used.
pub fn bundle_needs_no_copy(bundle: &Path) -> bool {
    let Ok(bytes) = std::fs::read(bundle.join("config.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let Some(list) = v.pointer("/linux/namespaces").and_then(|n| n.as_array()) else {
        return false;
    };
    let new = |kind: &str| {
        list.iter()
            .any(|n| n["type"] == kind && n.get("path").is_none_or(serde_json::Value::is_null))
    };
    new("user") && new("pid")
}

fn open_self_exe() -> Result<OwnedFd> {
    let f = std::fs::File::open("/proc/self/exe").ctx(|| "opening /proc/self/exe".to_string())?;
    Ok(f.into())
}

fn on_read_only_mount(fd: &OwnedFd) -> Result<bool> {
    let st = nix::sys::statvfs::fstatvfs(fd).ctx(|| "statvfs of berth's binary".to_string())?;
    Ok(st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// The path of the read-only copy for `key`, made if missing.
fn ensure_copy(exe: &OwnedFd, key: &str, size: u64) -> Result<PathBuf> {
    let dir = Path::new(DIR);
    let path = dir.join(key).join("berth");
    if is_sealed_copy(&path, size) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).ctx(|| format!("creating {DIR}"))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .ctx(|| format!("opening {DIR}/.lock"))?;
    // Held until `lock` is dropped: one berth makes the copy, the others wait and use it.
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .ctx(|| format!("locking {DIR}/.lock"))?;
    if is_sealed_copy(&path, size) {
        return Ok(path);
    }
    detach_stale(dir, key);
    let target = dir.join(key);
    std::fs::create_dir_all(&target).ctx(|| format!("creating {}", target.display()))?;
    let mnt = filled_read_only_tmpfs(exe, size)?;
    move_mount(&mnt, &target)?;
    if !is_sealed_copy(&path, size) {
        return Err(Error::Init(format!(
            "{} is not the read-only copy berth just made",
            path.display()
        )));
    }
    Ok(path)
}

/// Whether `path` is a regular file of `size` bytes on a read-only mount.
fn is_sealed_copy(path: &Path, size: u64) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let fd: OwnedFd = f.into();
    nix::sys::stat::fstat(fd.as_raw_fd())
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size as u64 == size)
        && on_read_only_mount(&fd).unwrap_or(false)
}

/// How many copies of other binaries are kept (two berth builds used side by side, as in
/// an upgrade, must not make each other's copy over and over).
const KEEP_OTHERS: usize = 3;

/// Detaches the oldest copies of other binaries beyond [`KEEP_OTHERS`] (running processes
/// keep theirs alive).
fn detach_stale(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            name.as_bytes() != keep.as_bytes() && !name.as_bytes().starts_with(b".")
        })
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    others.sort_by_key(|o| std::cmp::Reverse(o.0));
    for (_, p) in others.into_iter().skip(KEEP_OTHERS) {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&p);
    }
}

fn sys_fd(rc: libc::c_long, what: &str) -> Result<OwnedFd> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| what.to_string());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn fsconfig_string(fs: &OwnedFd, key: &CStr, value: &CStr) -> Result<()> {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    // SAFETY: fsconfig with a valid fs context fd and NUL-terminated key and value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("fsconfig tmpfs {}", key.to_string_lossy()));
    }
    Ok(())
}

/// A detached tmpfs holding a copy of `exe`, already read-only.
fn filled_read_only_tmpfs(exe: &OwnedFd, size: u64) -> Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    // SAFETY: fsopen with a static NUL-terminated name.
    let fs = sys_fd(
        unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen tmpfs",
    )?;
    let limit = CString::new(format!("{}", size + (1 << 20))).expect("digits");
    fsconfig_string(&fs, c"size", &limit)?;
    fsconfig_string(&fs, c"mode", c"0755")?;
    // SAFETY: fsconfig command with no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "creating the tmpfs".to_string());
    }
    // SAFETY: fsmount of a created context, with attribute flags.
    let mnt = sys_fd(
        unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                fs.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            )
        },
        "fsmount tmpfs",
    )?;
    {
        // SAFETY: openat relative to the new mount's root with a static name.
        let out = sys_fd(
            unsafe {
                libc::openat(
                    mnt.as_raw_fd(),
                    c"berth".as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o555,
                )
            }
            .into(),
            "creating the copy",
        )?;
        copy_all(exe, &out, size)?;
    }
    let attr = [MOUNT_ATTR_RDONLY, 0, 0, 0];
    // SAFETY: mount_setattr on the detached mount (empty path), attr is a mount_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| "making the copy's mount read-only".to_string());
    }
    Ok(mnt)
}

fn copy_all(from: &OwnedFd, to: &OwnedFd, size: u64) -> Result<()> {
    let mut off: libc::loff_t = 0;
    while (off as u64) < size {
        // SAFETY: sendfile between two valid descriptors with an offset we own.
        let n = unsafe {
            libc::sendfile(
                to.as_raw_fd(),
                from.as_raw_fd(),
                &raw mut off,
                (size - off as u64) as usize,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "copying berth".to_string());
        }
        if n == 0 {
            return Err(Error::Init(
                "berth's binary shrank while being copied".into(),
            ));
        }
    }
    Ok(())
}

fn move_mount(mnt: &OwnedFd, target: &Path) -> Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let t = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| Error::Init("mount target contains NUL".into()))?;
    // SAFETY: move_mount of a detached mount fd (empty path) onto a NUL-terminated path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("attaching the read-only copy at {}", target.display()));
    }
    Ok(())
}

fn exec(path: &Path, key: &str, args: &[OsString]) -> Result<()> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Init("path contains NUL".into()))?;
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
    envp.push(CString::new(format!("{MARKER}={key}")).expect("no NUL"));
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NUL-terminated path and NULL-terminated argv/envp arrays of valid C strings,
    // alive across the call; execve only returns on failure.
    unsafe { libc::execve(cpath.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    Err(std::io::Error::last_os_error()).ctx(|| format!("executing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_binary_is_not_on_a_read_only_mount_in_tests() {
        // Sanity of the probe itself: the test binary lives in target/, a writable mount.
        let exe = open_self_exe().unwrap();
        assert!(!on_read_only_mount(&exe).unwrap());
    }
}
