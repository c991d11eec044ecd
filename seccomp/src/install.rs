//! Loading a compiled program with seccomp(2).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libc::sock_filter;

use crate::Error;

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)` on the calling thread.
///
/// Async-signal-safe: no allocation, no locks, no logging, so it may run in a
/// freshly forked child of a multi-threaded process.
pub(crate) fn load(program: &[sock_filter], flags: u32) -> Result<Option<OwnedFd>, Error> {
    if !cfg!(target_arch = "x86_64") {
        return Err(Error::UnsupportedHost);
    }
    let prog = libc::sock_fprog {
        // `Filter::compile` guarantees at most BPF_MAXINSNS (4096) instructions.
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `program.len()` valid instructions that outlive the
    // call; the kernel only reads them (copying the program) and never writes
    // through the pointer despite its `*mut` type.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &raw const prog,
        )
    };
    if ret < 0 {
        return Err(Error::Install {
            flags,
            source: std::io::Error::last_os_error(),
        });
    }
    if u64::from(flags) & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = RawFd::try_from(ret).expect("file descriptors fit in an int");
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful seccomp(2)
        // returns a new listener fd that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        // TSYNC without TSYNC_ESRCH reports the thread that could not be synced.
        return Err(Error::TsyncFailed { tid: ret });
    }
    Ok(None)
}
