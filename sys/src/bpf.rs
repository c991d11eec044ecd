//! The `bpf(2)` system call. Building the attribute unions is the caller's business (they
//! differ per command and carry pointers); this is the one place that issues the call.

use std::io;
use std::os::fd::OwnedFd;

/// `bpf(cmd, attr, size_of::<T>())`; returns the call's non-negative result.
///
/// # Safety
///
/// `T` must be a `repr(C)` prefix of `union bpf_attr` as `cmd` reads and writes it, and every
/// pointer inside `attr` must point to memory valid for what the kernel does with it (reading
/// an instruction buffer, writing a log or an id array) for the duration of the call.
pub unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i32> {
    // SAFETY: attr is a live, exclusively borrowed T of the passed size; the validity of the
    // pointers inside it is the caller's contract.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    crate::errno::check(rc).map(|r| r as i32)
}

/// [`bpf`] for a command that returns a new descriptor (`BPF_PROG_LOAD`,
/// `BPF_PROG_GET_FD_BY_ID`, ...).
///
/// # Safety
///
/// As for [`bpf`]; in addition `cmd` must be a command whose result is a new descriptor.
pub unsafe fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: the caller upholds bpf's contract.
    let rc = unsafe { bpf(cmd, attr) }?;
    // SAFETY: cmd returns a new descriptor (the caller's contract) that nothing else owns.
    unsafe { crate::errno::owned_fd(libc::c_long::from(rc)) }
}
