//! Control clients on `DIR/control.sock`: request lines in, reply lines out (see
//! [`berth_monitor::control`]). Lines are bounded; a client sending a longer one gets an
//! error and is closed.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};

use berth_monitor::control::MAX_LINE;
use berth_monitor::{ControlRequest, ControlResponse};

use crate::fdio::{self, Got, OutQueue};

/// The most clients at once.
const MAX_CLIENTS: usize = 16;

/// The most reply bytes queued for a client that does not read them.
const MAX_REPLIES: usize = 64 * 1024;

/// One control connection.
pub struct Client {
    /// The connection (non-blocking).
    pub sock: UnixStream,
    line: Vec<u8>,
    out: OutQueue,
    /// No more requests are read (EOF, or an overlong line): closed once replies are out.
    pub closing: bool,
    /// To be dropped.
    pub dead: bool,
}

/// A request read from a client, or why it is not one.
pub type Parsed = Result<ControlRequest, String>;

impl Client {
    /// Whether replies wait for this client.
    pub fn wants_write(&self) -> bool {
        !self.dead && !self.out.is_empty()
    }

    /// Whether to poll for requests.
    pub fn wants_read(&self) -> bool {
        !self.dead && !self.closing
    }

    /// Reads what arrived; returns the complete request lines, parsed.
    pub fn read_requests(&mut self) -> Vec<Parsed> {
        let mut requests = Vec::new();
        let mut buf = [0u8; MAX_LINE];
        loop {
            match fdio::read(&mut self.sock, &mut buf) {
                Ok(Got::Data(n)) => {
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            requests
                                .push(ControlRequest::parse(&self.line).map_err(|e| e.to_string()));
                            self.line.clear();
                        } else if self.line.len() + 1 >= MAX_LINE {
                            requests.push(Err(format!("request longer than {MAX_LINE} bytes")));
                            self.closing = true;
                            return requests;
                        } else {
                            self.line.push(b);
                        }
                    }
                }
                Ok(Got::Nothing) => return requests,
                Ok(Got::Eof) => {
                    self.closing = true;
                    return requests;
                }
                Err(_) => {
                    self.dead = true;
                    return requests;
                }
            }
        }
    }

    /// Queues a reply and writes what goes.
    pub fn reply(&mut self, r: &ControlResponse) {
        if self.out.len() > MAX_REPLIES {
            self.dead = true;
            return;
        }
        self.out.push(r.to_line().as_bytes());
        self.flush();
    }

    /// Writes queued replies; a closing client with nothing left to send is done.
    pub fn flush(&mut self) {
        if self.dead {
            return;
        }
        if self.out.flush(&mut self.sock).is_err() || (self.closing && self.out.is_empty()) {
            self.dead = true;
        }
    }
}

/// The control socket and its clients.
pub struct Control {
    /// The listening socket (non-blocking).
    pub listener: UnixListener,
    /// Connected clients.
    pub clients: Vec<Client>,
}

impl Control {
    /// Serves `listener`.
    pub fn new(listener: UnixListener) -> Control {
        Control {
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
                        continue;
                    }
                    self.clients.push(Client {
                        sock,
                        line: Vec::new(),
                        out: OutQueue::default(),
                        closing: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Drops the dead clients.
    pub fn prune(&mut self) {
        self.clients.retain(|c| !c.dead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn lines_are_parsed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let mut control = Control::new(crate::sockets::listen(&path).unwrap());
        let mut client = UnixStream::connect(&path).unwrap();
        control.accept_all();
        client
            .write_all(b"{\"close_stdin\":true}\nnope\n{\"resize\":{\"height\":1,")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let c = &mut control.clients[0];
        let got = c.read_requests();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Ok(ControlRequest::CloseStdin));
        assert!(got[1].is_err());
        client.write_all(b"\"width\":2}}\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            c.read_requests(),
            [Ok(ControlRequest::Resize {
                height: 1,
                width: 2
            })]
        );
        client.write_all(&vec![b' '; MAX_LINE + 10]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let got = c.read_requests();
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().contains("longer than"));
        assert!(c.closing);
        c.reply(&ControlResponse::error(got[0].as_ref().unwrap_err()));
        assert!(c.dead, "closed once its reply is out");
        let mut line = String::new();
        BufReader::new(&client).read_line(&mut line).unwrap();
        assert!(line.starts_with("{\"error\":\"request longer than"));
    }
}
