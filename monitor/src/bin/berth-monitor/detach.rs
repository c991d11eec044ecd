//! Leaving the spawner behind: only stdio survive from what berthd passed, the process forks
//! (the child berthd spawned exits at once), starts a session, becomes a child subreaper and
//! takes its signals through a signalfd.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Closes every descriptor above 2 (nothing of berthd's may reach the container, nor stay
/// open in the monitor for the container's life), and opens `/dev/null` on any of 0, 1, 2
/// that is closed, so no pipe made later lands there. Must run before anything else opens a
/// descriptor.
pub fn close_inherited_fds() -> io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    // The directory's own descriptor is in the list, already closed: EBADF, ignored.
    for fd in fds {
        // SAFETY: nothing in this process owns a descriptor above 2 yet (this runs first in
        // main, before any File or socket exists), so closing them breaks no owner.
        unsafe { libc::close(fd) };
    }
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries flags of an integer descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            let null = File::options().read(true).write(true).open("/dev/null")?;
            if null.as_raw_fd() == fd {
                // The lowest free number is the one that was missing: keep it open.
                let _ = null.into_raw_fd();
            } else {
                nix::unistd::dup2(null.as_raw_fd(), fd)?;
            }
        }
    }
    Ok(())
}

/// Forks; the parent (the process berthd spawned) exits 0 at once, the child starts a new
/// session, becomes a child subreaper (the container's process, forked by the runtime, is
/// reparented to it when the runtime exits) and changes to `/`.
pub fn detach() -> io::Result<()> {
    // SAFETY: the monitor is single-threaded (it starts no threads), so the child may run
    // any code after the fork.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: _exit ends the intermediate process at once, running no destructors:
            // nothing of the monitor's state belongs to it.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => {}
    }
    nix::unistd::setsid()?;
    nix::sys::prctl::set_child_subreaper(true)?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// Blocks SIGCHLD, SIGINT, SIGHUP and SIGTERM and returns a non-blocking signalfd that reads
/// them; ignores SIGPIPE (a closed client is a write error, not a death). Children start with
/// an empty mask and default dispositions (std's `Command` resets both).
pub fn signals() -> io::Result<SignalFd> {
    // SAFETY: SIG_IGN installs no handler code; the process is single-threaded.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }?;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGTERM,
    ] {
        mask.add(s);
    }
    mask.thread_block()?;
    Ok(SignalFd::with_flags(
        &mask,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}

/// Reads every pending signal; true if SIGCHLD was among them. SIGTERM, SIGINT and SIGHUP are
/// noted on stderr and otherwise ignored: stopping the container is berthd's business, and
/// the monitor exits once the container has.
pub fn read_signals(fd: &SignalFd) -> bool {
    let mut child = false;
    while let Ok(Some(info)) = fd.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => child = true,
            Ok(s) => eprintln!("berth-monitor: ignoring {s}"),
            Err(_) => {}
        }
    }
    child
}

/// Points stdout at `/dev/null` once the ready line is written: berthd's pipe is closed (it
/// sees EOF) and fd 1 cannot be reused by a later pipe or socket.
pub fn null_over_stdout() -> io::Result<()> {
    let null = File::options().write(true).open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 1)?;
    Ok(())
}
