//! Processes: `clone3` with fork semantics (optionally straight into a cgroup), pidfds,
//! `execveat` of a descriptor, `close_range` and `personality`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags};

/// The kernel's `struct clone_args` (version 2, with the cgroup field).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Flags that would make the child share memory, a thread group or signal handlers with the
/// caller, or that need arguments [`fork_into`] does not pass: not fork semantics.
const NOT_FORK: u64 = (libc::CLONE_VM
    | libc::CLONE_THREAD
    | libc::CLONE_SIGHAND
    | libc::CLONE_VFORK
    | libc::CLONE_SETTLS
    | libc::CLONE_PIDFD
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// `clone3` with fork semantics (no shared memory) and `SIGCHLD` as exit signal: `flags`
/// (`CLONE_NEW*` namespaces, ...) apply to the child; with `cgroup` (a cgroup v2 directory
/// descriptor) the child starts in that cgroup (`CLONE_INTO_CGROUP`). Returns the child's pid
/// in the parent and 0 in the child. Flags that are not fork semantics (`CLONE_VM`,
/// `CLONE_THREAD`, ...) are refused with `EINVAL`.
///
/// # Safety
///
/// As for `fork(2)`: in a multi-threaded caller the child may only call async-signal-safe
/// functions until it execs or exits (berth's create path is single-threaded).
pub unsafe fn fork_into(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<i32> {
    if flags & NOT_FORK != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let args = CloneArgs {
        flags: flags | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: a valid, sized clone_args without CLONE_VM behaves like fork (the child gets a
    // copy of the address space); the caller upholds fork's contract for the child.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    crate::errno::check(pid).map(|p| p as i32)
}

/// `pidfd_open(pid, 0)`: a descriptor that refers to process `pid` (not to whatever later
/// reuses the number). `EINVAL` for a pid that is not positive.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid =
        Pid::from_raw(pid.max(0)).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// `pidfd_send_signal(pidfd, signal, NULL, 0)`. Any signal number goes through, 0 (a check)
/// and real-time signals included, which rustix's `Signal` cannot carry.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a live pidfd, an integer signal, no siginfo, no flags: no memory is involved.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    crate::errno::check(rc).map(drop)
}

/// `pidfd_getfd(pidfd, target_fd, 0)`: a duplicate of descriptor `target_fd` of the process
/// `pidfd` refers to (needs ptrace access to it).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_getfd(
        pidfd,
        target_fd,
        rustix::process::PidfdGetfdFlags::empty(),
    )?)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: executes the file `fd` refers to. Returns
/// only on failure, with the error.
///
/// Does not allocate, so it may run in a child of a multi-threaded process.
///
/// # Safety
///
/// `argv` and `envp` must each end with a null pointer, and every other element must point to
/// a NUL-terminated string that stays alive for the call.
pub unsafe fn execveat_fd(
    fd: BorrowedFd<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    if argv.last().is_none_or(|p| !p.is_null()) || envp.last().is_none_or(|p| !p.is_null()) {
        return io::Error::from_raw_os_error(libc::EINVAL);
    }
    // SAFETY: both arrays are null-terminated (checked) arrays of live C strings (the caller's
    // contract); the path is an empty C string with AT_EMPTY_PATH.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// `close_range(first, u32::MAX, CLOSE_RANGE_CLOEXEC)`: marks every descriptor from `first`
/// up close-on-exec. Fails (`EINVAL`, `ENOSYS`) on kernels before 5.11.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with integer arguments; CLOSE_RANGE_CLOEXEC only sets flags, it
    // closes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    crate::errno::check(rc).map(drop)
}

/// `personality(persona)`: sets the execution domain (e.g. `PER_LINUX32`) of the caller.
pub fn set_personality(persona: u64) -> io::Result<()> {
    // SAFETY: personality takes an integer and touches no memory.
    if unsafe { libc::personality(persona as libc::c_ulong) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn pidfds() {
        let me = pidfd_open(std::process::id() as i32).unwrap();
        pidfd_send_signal(me.as_fd(), 0).unwrap();
        for bad in [0, -1] {
            assert_eq!(
                pidfd_open(bad).unwrap_err().raw_os_error(),
                Some(libc::EINVAL)
            );
        }
        let e = pidfd_send_signal(me.as_fd(), 1000).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let dup = pidfd_getfd(me.as_fd(), me.as_raw_fd());
        // Needs ptrace access to ourselves: allowed unless a sandbox forbids it.
        if let Ok(dup) = dup {
            assert_ne!(dup.as_raw_fd(), me.as_raw_fd());
        }
    }

    #[test]
    fn fork_into_runs_a_child() {
        // SAFETY: the child only calls _exit (async-signal-safe).
        let pid = unsafe { fork_into(0, None) }.unwrap();
        if pid == 0 {
            // SAFETY: _exit ends the child without running the test harness's destructors.
            unsafe { libc::_exit(7) };
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a live status pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
        assert_eq!(libc::WEXITSTATUS(status), 7);
        // SAFETY: refused before any clone happens.
        let e = unsafe { fork_into(libc::CLONE_VM as u64, None) }.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn execveat_refuses_unterminated_arrays() {
        let f = std::fs::File::open("/bin/true").unwrap();
        let argv = [c"true".as_ptr()];
        let envp = [std::ptr::null()];
        // SAFETY: the arrays hold live C strings; the missing terminator is refused first.
        let e = unsafe { execveat_fd(f.as_fd(), &argv, &envp) };
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn cloexec_and_personality() {
        // Everything from a high number up: nothing the harness uses.
        let _ = cloexec_from(100_000);
        // 0xffff_ffff queries the current persona without changing it.
        set_personality(0xffff_ffff).unwrap();
    }
}
