//! `process.terminal`: a pty made inside the container's devpts, its master sent to the
//! `--console-socket` with SCM_RIGHTS, its slave bound to `/dev/console` and used as stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Context, Error, Result};

/// Connects to the engine's console socket (in the parent, before cloning).
pub fn connect_console_socket(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).ctx(|| format!("--console-socket: connecting to {}", path.display()))
}

/// Opens a new pty in the container (after pivot), sends the master, binds the slave on
/// `/dev/console` and returns it.
pub fn setup_pty(socket: &UnixStream, uid: u32, gid: u32) -> Result<OwnedFd> {
    let (slave, path) = open_pty(socket, uid, gid)?;
    bind_console(&path)?;
    Ok(slave)
}

/// Opens a new pty in the current mount namespace's `/dev/ptmx`, sends the master to `socket`,
/// returns the slave and its path (for `exec`, which has no console to bind).
pub fn open_pty(socket: &UnixStream, uid: u32, gid: u32) -> Result<(OwnedFd, std::ffi::CString)> {
    // SAFETY: open with a static path; the result is checked.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "opening /dev/ptmx".to_string());
    }
    // SAFETY: master is a new fd owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: master is a valid pty master fd.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "unlockpt".to_string());
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: buffer and its length are passed together.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "ptsname".to_string());
    }
    // SAFETY: ptsname_r NUL-terminated the buffer.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_owned();
    // SAFETY: valid C string path.
    let slave = unsafe {
        libc::open(
            slave_path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("opening {}", slave_path.to_string_lossy()));
    }
    // SAFETY: new fd owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // SAFETY: valid fd; integer ids.
    unsafe { libc::fchown(slave.as_raw_fd(), uid, gid) };
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let payload = slave_path.to_bytes();
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(payload)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Error::Init(format!("--console-socket: sending the pty master: {e}")))?;
    Ok((slave, slave_path))
}

fn bind_console(slave: &std::ffi::CStr) -> Result<()> {
    let root = std::fs::File::open("/").ctx(|| "opening /".to_string())?;
    let target = crate::in_root::ensure(
        std::os::fd::AsFd::as_fd(&root),
        Path::new("/dev/console"),
        crate::in_root::Leaf::File,
    )
    .ctx(|| "creating /dev/console".to_string())?;
    nix::mount::mount(
        Some(slave),
        crate::in_root::proc_fd_path(&target).as_c_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| "bind-mounting the pty on /dev/console".to_string())
}

/// Makes `slave` the standard input, output and error of the calling process.
pub fn dup_onto_stdio(slave: &OwnedFd) -> Result<()> {
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target)
            .ctx(|| "dup2 of the pty onto stdio".to_string())?;
    }
    Ok(())
}

/// Makes `slave` the controlling terminal and stdio of the calling process (a session leader).
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    dup_onto_stdio(slave)?;
    // SAFETY: ioctl TIOCSCTTY on a valid tty fd with an integer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "TIOCSCTTY".to_string());
    }
    Ok(())
}
