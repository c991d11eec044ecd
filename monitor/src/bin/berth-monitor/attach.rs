//! Attach clients on `DIR/attach.sock`: each receives the container's output from the moment
//! it connects, framed as docker's multiplexed stream, and may send input.
//!
//! Flow control, per client:
//! - a client that reads, but slower than the container writes, holds the container back
//!   (the monitor stops reading its output while more than [`HIGH_WATER`] bytes wait for
//!   that client), as docker's attach does: a reading client loses nothing;
//! - a client that has taken nothing for [`STALL`] holds nothing back any more, and is
//!   dropped once [`CLIENT_BUFFER_MAX`] bytes wait for it: a client that does not read
//!   never blocks the container (beyond [`STALL`], once) or the other clients.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use berth_monitor::frame::encode_frames;
use berth_monitor::Stream;

use crate::fdio::{self, Got, OutQueue};

/// The most output buffered for one client.
pub const CLIENT_BUFFER_MAX: usize = 1024 * 1024;

/// Output waiting for a client above which the container's output is not read while that
/// client makes progress.
pub const HIGH_WATER: usize = 256 * 1024;

/// How long a client may take nothing before it no longer holds the container back.
pub const STALL: Duration = Duration::from_millis(500);

/// The most clients at once; more are accepted and closed at once.
const MAX_CLIENTS: usize = 128;

/// One attach connection.
pub struct Client {
    /// The connection (non-blocking).
    pub sock: UnixStream,
    out: OutQueue,
    /// When the client last took output (or its queue was last empty).
    progress: Instant,
    /// The client has not shut down its write half.
    pub input_open: bool,
    /// To be dropped (write error, overflow, hang-up).
    pub dead: bool,
}

impl Client {
    /// Whether output waits for this client.
    pub fn wants_write(&self) -> bool {
        !self.dead && !self.out.is_empty()
    }

    /// Writes what goes without blocking; a failure kills the client.
    pub fn flush(&mut self) {
        if self.dead {
            return;
        }
        match self.out.flush(&mut self.sock) {
            Ok(n) if n > 0 => self.progress = Instant::now(),
            Ok(_) => {}
            Err(e) => {
                if e.kind() != io::ErrorKind::BrokenPipe
                    && e.kind() != io::ErrorKind::ConnectionReset
                {
                    eprintln!("berth-monitor: attach client: {e}");
                }
                self.dead = true;
            }
        }
    }

    /// Queues frames (dropping the client when its queue would pass [`CLIENT_BUFFER_MAX`])
    /// and writes what goes.
    fn queue(&mut self, frames: &[u8]) {
        if self.out.len() + frames.len() > CLIENT_BUFFER_MAX {
            eprintln!(
                "berth-monitor: attach client not reading: dropped with {} bytes waiting",
                self.out.len()
            );
            self.dead = true;
            return;
        }
        if self.out.is_empty() {
            self.progress = Instant::now();
        }
        self.out.push(frames);
        self.flush();
    }

    /// While this client holds the container back: until when, at most.
    fn holds_back(&self, now: Instant) -> Option<Instant> {
        let until = self.progress + STALL;
        (!self.dead && self.out.len() > HIGH_WATER && now < until).then_some(until)
    }

    /// Reads input; `None` when nothing came. EOF (the write half shut) clears
    /// [`Client::input_open`].
    pub fn read_input(&mut self, buf: &mut [u8]) -> Option<usize> {
        match fdio::read(&mut self.sock, buf) {
            Ok(Got::Data(n)) => Some(n),
            Ok(Got::Nothing) => None,
            Ok(Got::Eof) => {
                self.input_open = false;
                None
            }
            Err(_) => {
                self.dead = true;
                None
            }
        }
    }
}

/// The attach socket and its clients.
pub struct Attach {
    /// The listening socket (non-blocking).
    pub listener: UnixListener,
    /// Connected clients (the dead are removed by [`Attach::prune`]).
    pub clients: Vec<Client>,
}

impl Attach {
    /// Serves `listener`.
    pub fn new(listener: UnixListener) -> Attach {
        Attach {
            listener,
            clients: Vec::new(),
        }
    }

    /// Accepts every pending connection.
    pub fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || sock.set_nonblocking(true).is_err() {
                        eprintln!("berth-monitor: attach: too many clients, refusing one");
                        continue;
                    }
                    self.clients.push(Client {
                        sock,
                        out: OutQueue::default(),
                        progress: Instant::now(),
                        input_open: true,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("berth-monitor: attach: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Queues `data` of `stream` for every client and writes what goes; a client whose
    /// queue would pass [`CLIENT_BUFFER_MAX`] is dropped.
    pub fn broadcast(&mut self, stream: Stream, data: &[u8]) {
        if self.clients.is_empty() || data.is_empty() {
            return;
        }
        let mut frames = Vec::new();
        encode_frames(stream, data, &mut frames);
        for c in self.clients.iter_mut().filter(|c| !c.dead) {
            c.queue(&frames);
        }
    }

    /// Whether the container's output should wait for a slow client now, and until when at
    /// most (see the module's flow control).
    pub fn holds_back(&self, now: Instant) -> Option<Instant> {
        self.clients.iter().filter_map(|c| c.holds_back(now)).min()
    }

    /// Drops the dead clients (closing their connections).
    pub fn prune(&mut self) {
        self.clients.retain(|c| !c.dead);
    }

    /// Whether any client has output waiting.
    pub fn pending(&self) -> bool {
        self.clients.iter().any(Client::wants_write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_client_that_does_not_read_is_dropped_others_get_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let mut attach = Attach::new(crate::sockets::listen(&path).unwrap());
        let _stuck = UnixStream::connect(&path).unwrap();
        let mut reader = UnixStream::connect(&path).unwrap();
        attach.accept_all();
        assert_eq!(attach.clients.len(), 2);
        let chunk = vec![b'x'; 32 * 1024];
        let mut got = Vec::new();
        let mut buf = vec![0; 256 * 1024];
        reader.set_nonblocking(true).unwrap();
        for _ in 0..100 {
            attach.broadcast(Stream::Stderr, &chunk);
            for c in &mut attach.clients {
                c.flush();
            }
            while let Ok(n) = reader.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        attach.prune();
        assert_eq!(attach.clients.len(), 1, "the stuck client is dropped");
        loop {
            for c in &mut attach.clients {
                c.flush();
            }
            let mut read_any = false;
            while let Ok(n) = reader.read(&mut buf) {
                read_any = true;
                got.extend_from_slice(&buf[..n]);
            }
            if !read_any && !attach.pending() {
                break;
            }
        }
        assert_eq!(got.len(), 100 * (chunk.len() + 8));
        assert_eq!(&got[..8], &[2, 0, 0, 0, 0, 0, 0x80, 0]);
    }

    #[test]
    fn a_slow_client_holds_output_back_until_it_stalls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let mut attach = Attach::new(crate::sockets::listen(&path).unwrap());
        let _stuck = UnixStream::connect(&path).unwrap();
        attach.accept_all();
        let chunk = vec![b'x'; 32 * 1024];
        let mut sent = 0;
        while attach.holds_back(Instant::now()).is_none() {
            attach.broadcast(Stream::Stdout, &chunk);
            sent += 1;
            assert!(sent < 64, "never held back");
        }
        assert!(!attach.clients[0].dead);
        std::thread::sleep(STALL + Duration::from_millis(50));
        assert!(
            attach.holds_back(Instant::now()).is_none(),
            "a stalled client holds back"
        );
        while !attach.clients[0].dead {
            attach.broadcast(Stream::Stdout, &chunk);
            sent += 1;
            assert!(sent < 128, "never dropped");
        }
    }
}
