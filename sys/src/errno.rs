//! Turning raw syscall results into [`std::io::Error`]s, and wording those errors as runc does.
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

/// An OS error as runc words it: the C library's text, lower-case, without "(os error N)".
pub fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
        None => String::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_words_errors_as_runc_does() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe(&e), "no such file or directory");
        assert_eq!(describe(&io::Error::other("")), "");
    }
}
