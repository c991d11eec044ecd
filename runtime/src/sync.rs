//! The create-time channel between berth and the container's init: a `SOCK_SEQPACKET`
//! socket pair carrying one small tagged message per packet.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// Largest message accepted (state documents with annotations fit easily).
const MAX_MSG: usize = 256 * 1024;

/// Messages exchanged while a container is being created.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Parent → init: id maps and cgroups are in place; carry on.
    Go,
    /// Init → parent: a new user namespace exists; write its id maps (unshare path only).
    NeedIdMaps,
    /// Init → parent: its pid as seen from the parent, when the init is a grandchild.
    InitPid(i32),
    /// Init → parent: mounts are done; run `prestart` and `createRuntime` hooks.
    MountsDone,
    /// Parent → init: hooks ran; the init's host pid, for the state documents it hands to the
    /// `createContainer` / `startContainer` hooks and the seccomp agent. (The documents
    /// themselves may exceed a datagram: annotations can be large.)
    Continue(i32),
    /// Init → parent: setup is complete; the init waits for `start`.
    Ready,
    /// Init → parent: setup failed.
    Error(String),
    /// Init → parent: the program cannot be executed, with its exit code (127 / 126).
    ExecError(i32, String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// Creates a connected pair of channel ends (both close-on-exec).
pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    /// Wraps an existing socket.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Channel(fd)
    }

    /// Sends one message.
    pub fn send(&self, msg: &Msg) -> io::Result<()> {
        let mut buf = Vec::with_capacity(16);
        match msg {
            Msg::Go => buf.push(b'G'),
            Msg::NeedIdMaps => buf.push(b'U'),
            Msg::InitPid(pid) => {
                buf.push(b'P');
                buf.extend_from_slice(&pid.to_le_bytes());
            }
            Msg::MountsDone => buf.push(b'M'),
            Msg::Continue(pid) => {
                buf.push(b'C');
                buf.extend_from_slice(&pid.to_le_bytes());
            }
            Msg::Ready => buf.push(b'R'),
            Msg::Error(e) => {
                buf.push(b'E');
                buf.extend_from_slice(e.as_bytes());
            }
            Msg::ExecError(code, e) => {
                buf.push(b'X');
                buf.extend_from_slice(&code.to_le_bytes());
                buf.extend_from_slice(e.as_bytes());
            }
        }
        if buf.len() > MAX_MSG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message too large",
            ));
        }
        nix::sys::socket::send(
            self.0.as_raw_fd(),
            &buf,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        )?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the other end closed.
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = vec![0u8; MAX_MSG];
        let n = loop {
            match nix::sys::socket::recv(
                self.0.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            ) {
                Err(nix::errno::Errno::EINTR) => {}
                r => break r?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sync message");
        let body = &buf[1..n];
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
        Ok(Some(match buf[0] {
            b'G' => Msg::Go,
            b'U' => Msg::NeedIdMaps,
            b'P' => Msg::InitPid(i32::from_le_bytes(body.try_into().map_err(|_| bad())?)),
            b'M' => Msg::MountsDone,
            b'C' => Msg::Continue(i32::from_le_bytes(body.try_into().map_err(|_| bad())?)),
            b'R' => Msg::Ready,
            b'E' => Msg::Error(text(body)?),
            b'X' if body.len() >= 4 => Msg::ExecError(
                i32::from_le_bytes(body[..4].try_into().map_err(|_| bad())?),
                text(&body[4..])?,
            ),
            _ => return Err(bad()),
        }))
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_message() {
        let (a, b) = pair().unwrap();
        let msgs = [
            Msg::Go,
            Msg::NeedIdMaps,
            Msg::InitPid(4242),
            Msg::MountsDone,
            Msg::Continue(77),
            Msg::Ready,
            Msg::Error("boom: no such file".into()),
            Msg::ExecError(127, "exec: \"x\": not found".into()),
        ];
        for m in &msgs {
            a.send(m).unwrap();
            assert_eq!(&b.recv().unwrap().unwrap(), m);
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
