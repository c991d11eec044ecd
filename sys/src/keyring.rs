//! Kernel keyrings (`keyctl`, which rustix lacks).

use std::ffi::CStr;
use std::io;

/// `KEYCTL_JOIN_SESSION_KEYRING`.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`: gives the caller a new session keyring named
/// `name` (or joins the existing one of that name). Returns the keyring's serial.
pub fn join_session_keyring(name: &CStr) -> io::Result<i32> {
    // SAFETY: keyctl with a live NUL-terminated name; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    crate::errno::check(rc).map(|serial| serial as i32)
}
