//! The create-time channel between berth and the container's init: a `SOCK_SEQPACKET`
//! socket pair carrying one small tagged message per packet.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// Largest message accepted (error texts; state documents never cross this channel).
const MAX_MSG: usize = 64 * 1024;
/// Most descriptors one message carries (the idmapped mounts' trees).
const MAX_FDS: usize = 64;

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
        self.send_with_fds(msg, &[])
    }

    /// Sends one message with descriptors attached (SCM_RIGHTS).
    pub fn send_with_fds(&self, msg: &Msg, fds: &[RawFd]) -> io::Result<()> {
        let buf = encode(msg);
        if buf.len() > MAX_MSG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message too large",
            ));
        }
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(&buf)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the other end closed.
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        Ok(self.recv_with_fds()?.0)
    }

    /// Receives one message and any descriptors sent with it.
    pub fn recv_with_fds(&self) -> io::Result<(Option<Msg>, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; MAX_MSG];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (n, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
                Ok(m) => {
                    let mut fds = Vec::new();
                    for c in m.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel installed these descriptors for us alone.
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                    break (m.bytes, fds);
                }
            }
        };
        if n == 0 {
            return Ok((None, fds));
        }
        Ok((Some(decode(&buf[..n])?), fds))
    }
}

fn encode(msg: &Msg) -> Vec<u8> {
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
    buf
}

fn decode(buf: &[u8]) -> io::Result<Msg> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sync message");
    let body = &buf[1..];
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    let int =
        |b: &[u8]| -> io::Result<i32> { Ok(i32::from_le_bytes(b.try_into().map_err(|_| bad())?)) };
    Ok(match buf[0] {
        b'G' => Msg::Go,
        b'U' => Msg::NeedIdMaps,
        b'P' => Msg::InitPid(int(body)?),
        b'M' => Msg::MountsDone,
        b'C' => Msg::Continue(int(body)?),
        b'R' => Msg::Ready,
        b'E' => Msg::Error(text(body)?),
        b'X' if body.len() >= 4 => Msg::ExecError(int(&body[..4])?, text(&body[4..])?),
        _ => return Err(bad()),
    })
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
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        a.send_with_fds(&Msg::Go, &[file.as_raw_fd()]).unwrap();
        let (m, fds) = b.recv_with_fds().unwrap();
        assert_eq!(m, Some(Msg::Go));
        assert_eq!(fds.len(), 1);
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
