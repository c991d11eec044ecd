//! Turning raw syscall results into [`std::io::Error`]s.
//!
//! rustix's `Errno` already converts with `From`; these helpers cover the calls issued through
//! `libc::syscall`, which report failure as `-1` plus `errno`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `Ok(rc)` for a non-negative syscall return value, else the thread's `errno` as an error.
pub fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// [`check`] for a call that returns a new descriptor.
///
/// # Safety
///
/// A non-negative `rc` must be a descriptor the kernel has just returned to the caller and
/// that nothing else owns.
pub(crate) unsafe fn owned_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(rc)?;
    // SAFETY: by this function's contract, `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
