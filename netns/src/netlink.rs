//! A synchronous rtnetlink socket: one request at a time, answered by an ACK or a dump.
//!
//! The socket speaks for the network namespace of the thread that opened it, so code that
//! configures a container's namespace opens its socket on a thread that has `setns`'d into it
//! (see [`crate::namespace::run_in`]).

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, Result};

/// An open rtnetlink socket bound to the caller thread's network namespace.
pub(crate) struct Handle {
    socket: Socket,
    seq: u32,
}

impl Handle {
    /// Opens a socket in the current thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended ACKs make the kernel's complaints more specific; not fatal if refused.
        let _ = socket.set_ext_ack(true);
        Ok(Self { socket, seq: 0 })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let sent = self.socket.send(&buf, 0)?;
        if sent != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(self.seq)
    }

    /// Receives the messages answering request `seq`, calling `each` on every inner message,
    /// until the ACK (for requests) or `NLMSG_DONE` (for dumps).
    fn receive(&mut self, seq: u32, mut each: impl FnMut(RouteNetlinkMessage)) -> io::Result<()> {
        loop {
            let (buf, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < buf.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "netlink message of length 0",
                    ));
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
            }
        }
    }

    /// Sends a request that changes something and waits for the kernel's ACK.
    /// `extra_flags` adds `NLM_F_CREATE`, `NLM_F_EXCL` and the like.
    pub(crate) fn request(&mut self, msg: RouteNetlinkMessage, extra_flags: u16) -> io::Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | extra_flags)?;
        self.receive(seq, |_| {})
    }

    /// Sends a request that creates something (`NLM_F_CREATE | NLM_F_EXCL`) and waits for the
    /// kernel's ACK; an object that exists already is fine (EEXIST is success).
    pub(crate) fn create_or_keep(&mut self, msg: RouteNetlinkMessage) -> io::Result<()> {
        match self.request(msg, NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if is_exists(&e) => Ok(()),
            r => r,
        }
    }

    /// Sends a dump request and collects every answer.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.receive(seq, |m| out.push(m))?;
        Ok(out)
    }
}

/// [`Handle::open`], failing with the crate's error.
pub(crate) fn open() -> Result<Handle> {
    Handle::open().map_err(|source| Error::Netlink {
        op: "opening a socket",
        source,
    })
}

/// Whether an error means "no such device/object" (what idempotent deletes tolerate).
pub(crate) fn is_not_found(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
    )
}

/// Whether an error means the object exists already.
pub(crate) fn is_exists(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EEXIST)
}
