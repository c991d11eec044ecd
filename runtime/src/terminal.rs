//! `process.terminal`: a pty made inside the container's devpts, its master sent to the
//! `--console-socket` with SCM_RIGHTS, its slave bound to `/dev/console` and used as stdio.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use berth_sys::in_root;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::{Context, Error, Result};

/// Connects to the engine's console socket (in the parent, before cloning).
pub fn connect_console_socket(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).ctx(|| format!("--console-socket: connecting to {}", path.display()))
}

/// Opens a new pty in the container (after pivot), sends the master, binds the slave on
/// `/dev/console` and returns it.
pub fn setup_pty(
    socket: &UnixStream,
    uid: u32,
    gid: u32,
    size: Option<(u16, u16)>,
) -> Result<OwnedFd> {
    let (slave, _) = open_pty(socket, uid, gid, size)?;
    bind_console(&slave)?;
    Ok(slave)
}

/// Opens a new pty through the current root's `/dev/ptmx` (resolved inside the root), checks
/// that the master is the ptmx of a devpts, opens the slave from the master itself
/// (`TIOCGPTPEER`: no path a racer could redirect), sends the master to `socket`, and returns
/// the slave and its name. With `size` (rows, columns; the process's `consoleSize`), the
/// window has that size before the master leaves (the process never sees 0x0).
pub fn open_pty(
    socket: &UnixStream,
    uid: u32,
    gid: u32,
    size: Option<(u16, u16)>,
) -> Result<(OwnedFd, std::ffi::CString)> {
    let root = std::fs::File::open("/").ctx(|| "opening /".to_string())?;
    let master = in_root::open(
        std::os::fd::AsFd::as_fd(&root),
        Path::new("/dev/ptmx"),
        in_root::OFlags::RDWR | in_root::OFlags::NOCTTY,
        in_root::Resolve::InRoot,
    )
    .ctx(|| "opening /dev/ptmx".to_string())?;
    check_devpts(&master, "/dev/ptmx")?;
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
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: TIOCGPTPEER on a valid pty master with open flags; returns a new fd or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| "opening the pty's slave (TIOCGPTPEER)".to_string());
    }
    // SAFETY: new fd owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    check_devpts(&slave, &slave_path.to_string_lossy())?;
    // SAFETY: valid fd; integer ids.
    unsafe { libc::fchown(slave.as_raw_fd(), uid, gid) };
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on a valid pty fd with a pointer to a live winsize.
        if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| "setting the terminal's size (process.consoleSize)".to_string());
        }
    }
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

/// The console socket's other end: the pty master [`open_pty`] sends on `conn` (the first
/// descriptor of one message; any others are closed), or `None` when the peer sent none.
pub fn receive_console(conn: &UnixStream) -> std::io::Result<Option<OwnedFd>> {
    // The slave's path comes with the master; it is not needed here.
    let mut name = [0u8; 128];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = c {
            // SAFETY: SCM_RIGHTS installed these descriptors in this process; nothing else
            // owns them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok(fds.into_iter().next())
}

/// Checks that `fd` is a character device on a devpts filesystem (a pty, or ptmx).
fn check_devpts(fd: &OwnedFd, what: &str) -> Result<()> {
    let fs = nix::sys::statfs::fstatfs(fd).map_err(|e| Error::Io {
        context: format!("statfs {what}"),
        err: e.into(),
    })?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::Io {
        context: format!("fstat {what}"),
        err: e.into(),
    })?;
    if fs.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC
        || st.st_mode & libc::S_IFMT != libc::S_IFCHR
    {
        return Err(Error::Init(format!(
            "{what} is not a pty of a devpts filesystem (a symlink or bind may have redirected it)"
        )));
    }
    Ok(())
}

/// Binds the pty on `/dev/console` from its descriptor (CVE-2025-52565: never by path).
fn bind_console(slave: &OwnedFd) -> Result<()> {
    let root = std::fs::File::open("/").ctx(|| "opening /".to_string())?;
    let target = in_root::ensure(
        std::os::fd::AsFd::as_fd(&root),
        Path::new("/dev/console"),
        in_root::Leaf::File,
    )
    .ctx(|| "creating /dev/console".to_string())?;
    nix::mount::mount(
        Some(in_root::proc_fd_path(slave).as_c_str()),
        in_root::proc_fd_path(&target).as_c_str(),
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
