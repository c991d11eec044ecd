//! Loading a compiled program with seccomp(2) (through [`berth_sys::security`]).

use std::os::fd::OwnedFd;

use berth_sys::security::Installed;
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
    match berth_sys::security::install_seccomp_filter(program, flags) {
        Ok(Installed::Done) => Ok(None),
        Ok(Installed::Listener(fd)) => Ok(Some(fd)),
        // TSYNC without TSYNC_ESRCH reports the thread that could not be synced.
        Ok(Installed::TsyncFailed(tid)) => Err(Error::TsyncFailed { tid: tid.into() }),
        Err(source) => Err(Error::Install { flags, source }),
    }
}
