//! Filters installed for real, in forked children (the tests run as root).
//!
//! Between `fork` and `_exit` the child only makes raw syscalls: everything it
//! needs is prepared before forking.

// These tests probe the installed filters with chosen syscall numbers and arguments (an
// unknown number, a null clone3, capset in a forked child): raw calls are the point here, not
// kernel plumbing that belongs in berth-sys.
#![allow(clippy::disallowed_methods)]

mod common;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use berth_seccomp::Filter;
use common::profile;

#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

fn wait(pid: libc::pid_t) -> Exit {
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    }
}

/// Runs `child` in a forked process; its return value is the exit code.
fn in_child(child: impl FnOnce() -> i32) -> Exit {
    // SAFETY: the child only runs `child` (raw syscalls, no allocation) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = child();
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    wait(pid)
}

/// Runs `probe` in a forked child once `f` is installed there (after `PR_SET_NO_NEW_PRIVS`:
/// exit 10 when that fails, 11 when the install fails or hands back a listener); the probe's
/// return value is the exit code.
fn under_filter(f: &Filter, probe: impl FnOnce() -> i32) -> Exit {
    in_child(|| {
        if !no_new_privs() {
            return 10;
        }
        if !matches!(f.install(), Ok(None)) {
            return 11;
        }
        probe()
    })
}

/// Whether a raw syscall's return value `r` is a failure with `expected` as errno.
fn failed_with(r: libc::c_long, expected: i32) -> bool {
    r == -1 && errno() == expected
}

fn no_new_privs() -> bool {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A syscall without arguments; returns -errno on failure.
fn sys0(nr: libc::c_long) -> i64 {
    // SAFETY: the syscalls used here take no pointer arguments.
    let r = unsafe { libc::syscall(nr) };
    if r == -1 {
        -i64::from(errno())
    } else {
        r
    }
}

/// Installs `json` (a profile that allows everything but answers getppid with `errno`) in a
/// child, where getppid must fail with that errno and getpid still work.
fn assert_getppid_fails_with(json: &str, errno: i64) {
    let f = Filter::compile(&profile(json)).unwrap();
    let exit = under_filter(&f, || {
        if sys0(libc::SYS_getppid) != -errno {
            return 12;
        }
        if sys0(libc::SYS_getpid) <= 0 {
            return 13;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0), "{json}");
}

#[test]
fn errno_rule_applies_after_install() {
    assert_getppid_fails_with(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}"#,
        42,
    );
}

#[test]
fn docker_profile_in_a_child() {
    let profile = common::engine_profile("docker").unwrap();
    let f = Filter::compile(&profile).unwrap();
    let exit = under_filter(&f, || {
        // SAFETY: unshare with a flags integer.
        let r = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
        if !failed_with(r.into(), libc::EPERM) {
            return 12; // root could do this without the filter
        }
        // SAFETY: clone3 with a null args pointer fails before touching memory.
        let r = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
        if !failed_with(r, libc::ENOSYS) {
            return 13;
        }
        // SAFETY: keyctl(KEYCTL_GET_KEYRING_ID, ...) with integer arguments.
        let r = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) };
        if !failed_with(r, libc::EPERM) {
            return 14;
        }
        // fchmodat2 is newer than the profile: ENOSYS, so libc can fall back.
        // SAFETY: the null path is never read, the filter answers first.
        let r = unsafe { libc::syscall(452, libc::AT_FDCWD, 0usize, 0, 0) };
        if !failed_with(r, libc::ENOSYS) {
            return 15;
        }
        if sys0(libc::SYS_getpid) <= 0 {
            return 16;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn flags_tsync_and_log_are_accepted() {
    assert_getppid_fails_with(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"], "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3}]}"#,
        3,
    );
}

#[test]
fn x32_syscall_is_killed_when_x32_not_listed() {
    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}"#,
    ))
    .unwrap();
    let exit = under_filter(&f, || {
        sys0(0x4000_0000 | libc::SYS_getpid);
        20
    });
    assert_eq!(exit, Exit::Signal(libc::SIGSYS));
}

/// getpid through the i386 `int 0x80` entry.
fn int80_getpid() -> i64 {
    let ret: i64;
    // SAFETY: i386 getpid (20) takes no arguments; int 0x80 preserves all registers
    // except rax, and r8-r11 are declared clobbered to be safe.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack)
        );
    }
    ret
}

fn int80_works() -> bool {
    // IA32 emulation may be disabled (ia32_emulation=0): then int 0x80 faults.
    in_child(|| i32::from(int80_getpid() <= 0)) == Exit::Code(0)
}

#[test]
fn i386_syscalls_follow_the_x86_table() {
    if !int80_works() {
        eprintln!("skipping: IA32 emulation is disabled on this kernel");
        return;
    }
    // Not listed: killed.
    let f = Filter::compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)).unwrap();
    let exit = under_filter(&f, || {
        int80_getpid();
        20
    });
    assert_eq!(exit, Exit::Signal(libc::SIGSYS));

    // Listed: i386 getpid (20, not x86_64's 39) gets its rule.
    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77}]}"#,
    ))
    .unwrap();
    let exit = under_filter(&f, || {
        if int80_getpid() != -77 {
            return 12;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0));
}

/// A structure that a seccomp user-notification ioctl reads or fills.
trait NotifIoctl {
    /// That ioctl, and its name for failures.
    const REQUEST: (libc::Ioctl, &'static str);
}

impl NotifIoctl for libc::seccomp_notif {
    const REQUEST: (libc::Ioctl, &'static str) = (libc::SECCOMP_IOCTL_NOTIF_RECV, "NOTIF_RECV");
}

impl NotifIoctl for libc::seccomp_notif_resp {
    const REQUEST: (libc::Ioctl, &'static str) = (libc::SECCOMP_IOCTL_NOTIF_SEND, "NOTIF_SEND");
}

/// The user-notification ioctl for `arg` on `listener` (receiving into a `seccomp_notif`,
/// sending a `seccomp_notif_resp`), asserting that it succeeds.
fn notif_ioctl<T: NotifIoctl>(listener: &OwnedFd, arg: &mut T) {
    let (request, name) = T::REQUEST;
    // SAFETY: `arg` is live and exclusively ours for the call, and it is the structure that
    // `request` reads or fills (NotifIoctl pairs them).
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), request, std::ptr::from_mut(arg)) };
    assert_eq!(r, 0, "{name}: {}", std::io::Error::last_os_error());
}

#[test]
fn notify_round_trip() {
    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    ))
    .unwrap();
    assert!(f.needs_notify());

    let mut pipe = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    let r = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0);
    // SAFETY: both fds were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };

    // SAFETY: the child only makes raw syscalls and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = (|| {
            if !no_new_privs() {
                return 10;
            }
            let Ok(Some(listener)) = f.install() else {
                return 11;
            };
            let fd = listener.as_raw_fd();
            // SAFETY: writing 4 bytes from a live local.
            let n = unsafe { libc::write(wr.as_raw_fd(), (&raw const fd).cast(), 4) };
            if n != 4 {
                return 12;
            }
            // Blocks until the parent answers through the listener.
            if sys0(libc::SYS_getppid) != 4242 {
                return 13;
            }
            0
        })();
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(code) };
    }
    drop(wr);

    let kill_child = || {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait(pid)
    };
    let mut child_fd: i32 = -1;
    // SAFETY: reading 4 bytes into a live local.
    let n = unsafe { libc::read(rd.as_raw_fd(), (&raw mut child_fd).cast(), 4) };
    assert_eq!(n, 4, "child did not send its listener fd: {:?}", wait(pid));
    let pidfd = berth_sys::process::pidfd_open(pid).expect("pidfd_open");
    let listener = berth_sys::process::pidfd_getfd(pidfd.as_fd(), child_fd).expect("pidfd_getfd");

    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one valid pollfd.
    let ready = unsafe { libc::poll(&raw mut pfd, 1, 10_000) };
    assert!(ready == 1, "no notification within 10s: {:?}", kill_child());
    // SAFETY: seccomp_notif is plain data; zeroed is the required initial state.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    notif_ioctl(&listener, &mut req);
    assert_eq!(i64::from(req.data.nr), libc::SYS_getppid);
    assert_eq!(req.pid, pid as u32);
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 4242,
        error: 0,
        flags: 0,
    };
    notif_ioctl(&listener, &mut resp);
    assert_eq!(wait(pid), Exit::Code(0));
}

#[test]
fn install_error_is_reported() {
    // Without NO_NEW_PRIVS and without CAP_SYS_ADMIN, seccomp(2) fails with EACCES.
    let f = Filter::compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)).unwrap();
    let exit = in_child(|| {
        // Drop CAP_SYS_ADMIN from the effective set (capset v3, pid 0 = self).
        let mut hdr = [0x2008_0522u32, 0];
        let mut data = [0u32; 6];
        // SAFETY: capget/capset with properly sized header and data arrays.
        unsafe {
            if libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr()) != 0 {
                return 10;
            }
            data[0] &= !(1 << 21); // CAP_SYS_ADMIN
            if libc::syscall(libc::SYS_capset, hdr.as_mut_ptr(), data.as_ptr()) != 0 {
                return 11;
            }
        }
        match f.install() {
            Err(berth_seccomp::Error::Install { source, .. })
                if source.raw_os_error() == Some(libc::EACCES) =>
            {
                0
            }
            _ => 12,
        }
    });
    assert_eq!(exit, Exit::Code(0));
}
