//! `--console-socket`: the runtime (the container's init, or the exec'd process) connects to
//! `DIR/console.sock` and sends the pty master as SCM_RIGHTS, with the slave's path as
//! payload, as runc does.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// Receives the pty master on the console socket.
pub struct Console {
    listener: UnixListener,
    conn: Option<UnixStream>,
}

impl Console {
    /// Waits on `listener` (non-blocking).
    pub fn new(listener: UnixListener) -> Console {
        Console {
            listener,
            conn: None,
        }
    }

    /// The descriptor to poll for readability: the listener until a connection arrives,
    /// then the connection.
    pub fn poll_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match &self.conn {
            Some(c) => c.as_fd(),
            None => self.listener.as_fd(),
        }
    }

    /// Makes what progress is possible without blocking: accepts a connection, receives the
    /// master. `Some(master)` once it has arrived.
    pub fn progress(&mut self) -> io::Result<Option<OwnedFd>> {
        if self.conn.is_none() {
            match self.listener.accept() {
                Ok((c, _)) => self.conn = Some(c),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        match recv_fd(conn) {
            Ok(Some(fd)) => Ok(Some(fd)),
            Ok(None) => {
                // Closed without sending: wait for another connection.
                self.conn = None;
                Ok(None)
            }
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// One `recvmsg`: the first descriptor received (others are closed), `None` when the peer
/// closed without sending one.
fn recv_fd(conn: &UnixStream) -> Result<Option<OwnedFd>, Errno> {
    let mut payload = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut first = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS installed `fd` in this process just now; nobody else
                // owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if first.is_none() {
                    first = Some(owned);
                }
            }
        }
    }
    if first.is_none() && msg.bytes > 0 {
        // A message without a descriptor: not the runtime's; treat as nothing yet.
        return Err(Errno::EAGAIN);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::io::IoSlice;

    #[test]
    fn receives_a_descriptor_as_runc_sends_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let mut console = Console::new(crate::sockets::listen(&path).unwrap());
        assert!(console.progress().unwrap().is_none());
        let client = UnixStream::connect(&path).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let fds = [file.as_raw_fd()];
        sendmsg::<()>(
            client.as_raw_fd(),
            &[IoSlice::new(b"/dev/pts/7")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let got = console.progress().unwrap().expect("the descriptor");
        let meta = std::fs::metadata(format!("/proc/self/fd/{}", got.as_raw_fd())).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::rdev(&meta),
            std::os::unix::fs::MetadataExt::rdev(&std::fs::metadata("/dev/null").unwrap())
        );
    }
}
