//! Non-blocking reads and writes on pipes, ptys and sockets, with the three outcomes the
//! poll loop cares about.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The size of one read of container output (and so the largest attach frame).
pub const READ_SIZE: usize = berth_monitor::frame::MAX_PAYLOAD;

/// What a non-blocking read gave.
pub enum Got {
    /// `n` bytes.
    Data(usize),
    /// Nothing now.
    Nothing,
    /// End of file: a closed pipe or socket, or a pty whose other side is closed (`EIO`).
    Eof,
}

/// Sets `O_NONBLOCK` on `fd`'s open file description (the monitor's end only: the pipes'
/// other ends are separate descriptions and stay blocking for the container).
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_fd().as_raw_fd();
    let flags = OFlag::from_bits_retain(fcntl(raw, FcntlArg::F_GETFL)?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// One read; errors other than `EAGAIN`/`EINTR`/`EIO` are returned.
pub fn read(r: &mut impl Read, buf: &mut [u8]) -> io::Result<Got> {
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(Got::Eof),
            Ok(n) => return Ok(Got::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Nothing),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(Got::Eof),
            Err(e) => return Err(e),
        }
    }
}

/// Writes as much of `data` as goes without blocking; returns how much went.
pub fn write(w: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match w.write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A byte queue written out from the front: what a slow peer has not taken yet.
#[derive(Default)]
pub struct OutQueue {
    buf: Vec<u8>,
    sent: usize,
}

impl OutQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds bytes at the back.
    pub fn push(&mut self, data: &[u8]) {
        if self.sent > 0 && self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Writes what goes without blocking; returns how many bytes went.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let n = write(w, &self.buf[self.sent..])?;
        self.sent += n;
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        } else if self.sent > 64 * 1024 && self.sent > self.buf.len() / 2 {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer taking at most `n` bytes, then `WouldBlock`.
    struct Slow(Vec<u8>, usize);

    impl Write for Slow {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.1 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = data.len().min(self.1).min(3);
            self.1 -= n;
            self.0.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn queue_keeps_order_across_partial_writes() {
        let mut q = OutQueue::default();
        q.push(b"hello ");
        q.push(b"world");
        let mut w = Slow(Vec::new(), 4);
        q.flush(&mut w).unwrap();
        assert_eq!(q.len(), 7);
        q.push(b"!");
        w.1 = 100;
        q.flush(&mut w).unwrap();
        assert!(q.is_empty());
        assert_eq!(w.0, b"hello world!");
    }
}
