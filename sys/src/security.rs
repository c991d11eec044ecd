//! Privilege restriction of the calling thread: capability sets (`capset`, through rustix) and
//! seccomp filters (`seccomp(SECCOMP_SET_MODE_FILTER)`, which rustix lacks).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use rustix::thread::{CapabilitySet, CapabilitySets};

/// `capset` of the calling thread's three sets at once (bit `n` is capability `n`), so no
/// ordering constraint between them can fail half-way.
pub fn set_capabilities(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    Ok(rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(effective),
            permitted: CapabilitySet::from_bits_retain(permitted),
            inheritable: CapabilitySet::from_bits_retain(inheritable),
        },
    )?)
}

/// What a successful [`install_seccomp_filter`] returned.
#[derive(Debug)]
pub enum Installed {
    /// The filter is in place.
    Done,
    /// The filter is in place; `SECCOMP_FILTER_FLAG_NEW_LISTENER` gave this notify listener.
    Listener(OwnedFd),
    /// `SECCOMP_FILTER_FLAG_TSYNC` (without `TSYNC_ESRCH`) could not sync this thread: no
    /// filter was installed.
    TsyncFailed(i32),
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, {program})` on the calling thread.
///
/// Async-signal-safe: no allocation, no locks, so it may run in a freshly forked child of a
/// multi-threaded process.
pub fn install_seccomp_filter(program: &[libc::sock_filter], flags: u32) -> io::Result<Installed> {
    let Ok(len) = u16::try_from(program.len()) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `program.len()` valid instructions that outlive the call; the
    // kernel only reads them (copying the program) and never writes through the pointer
    // despite its `*mut` type.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &raw const prog,
        )
    };
    let ret = crate::errno::check(ret)?;
    if u64::from(flags) & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful seccomp(2) returns a new
        // listener descriptor that nothing else owns.
        return Ok(Installed::Listener(unsafe {
            OwnedFd::from_raw_fd(ret as i32)
        }));
    }
    if ret > 0 {
        return Ok(Installed::TsyncFailed(ret as i32));
    }
    Ok(Installed::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_filter_in_a_child_thread() {
        // Allow everything; installed on a throwaway thread with no_new_privs.
        let allow = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }];
        std::thread::spawn(move || {
            rustix::thread::set_no_new_privs(true).unwrap();
            assert!(matches!(
                install_seccomp_filter(&allow, 0).unwrap(),
                Installed::Done
            ));
            let e = install_seccomp_filter(&[], 0).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn capabilities_unchanged() {
        let now = rustix::thread::capabilities(None).unwrap();
        std::thread::spawn(move || {
            set_capabilities(
                now.effective.bits(),
                now.permitted.bits(),
                now.inheritable.bits(),
            )
            .unwrap();
        })
        .join()
        .unwrap();
    }
}
