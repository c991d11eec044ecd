//! A tiny HTTP/1.1 server for the unit tests: one request per connection, answered by a
//! closure, every request recorded. It listens on a given loopback address (127.0.0.2 is
//! another host to the client than 127.0.0.1) and hangs up on a TLS ClientHello, as a plain
//! HTTP server would fail it, so that the client falls back to HTTP.
//!
//! A reply may also be streamed by a thread of its own ([`Reply::streaming`], [`Reply::raw`]),
//! for misbehaving registries: endless or trickled bodies, stalls, trickled headers. The
//! server goes on accepting meanwhile; the thread stops when a write fails (the client hung
//! up) or when the server is dropped.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::client::ClientOptions;
use crate::{Credentials, Limits};

/// A request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes a streamed answer to the connection; the flag is set when the server is dropped
/// (a writer that waits should give up then).
pub(crate) type Writer = Box<dyn FnOnce(&mut TcpStream, &AtomicBool) + Send>;

/// A streamed answer.
pub(crate) enum Stream {
    /// The body, after the status line and the headers (no automatic Content-Length).
    Body(Writer),
    /// Everything, status line and headers included.
    Raw(Writer),
}

/// An answer: status line, headers, body.
pub(crate) struct Reply {
    pub status: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Streamed instead of `body` when set.
    pub stream: Option<Stream>,
}

impl Reply {
    /// An answer with an empty body.
    pub fn new(status: &'static str, headers: &[(&'static str, &str)]) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (*k, (*v).to_string()))
                .collect(),
            body: Vec::new(),
            stream: None,
        }
    }

    /// An answer with a body in memory.
    pub fn with_body(
        status: &'static str,
        headers: &[(&'static str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        Reply {
            body,
            ..Reply::new(status, headers)
        }
    }

    /// An answer whose body `writer` streams after the status line and `headers` (which
    /// should say how the body ends: a Content-Length, or none and the connection closes).
    pub fn streaming(
        status: &'static str,
        headers: &[(&'static str, &str)],
        writer: impl FnOnce(&mut TcpStream, &AtomicBool) + Send + 'static,
    ) -> Reply {
        Reply {
            stream: Some(Stream::Body(Box::new(writer))),
            ..Reply::new(status, headers)
        }
    }

    /// An answer `writer` writes whole, status line included.
    pub fn raw(writer: impl FnOnce(&mut TcpStream, &AtomicBool) + Send + 'static) -> Reply {
        Reply {
            stream: Some(Stream::Raw(Box::new(writer))),
            ..Reply::new("200 OK", &[])
        }
    }
}

/// Sleeps `d` in small steps; false when `stop` was set meanwhile.
pub(crate) fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10).min(d));
    }
    !stop.load(Ordering::SeqCst)
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server; stopped when dropped.
pub(crate) struct Server {
    pub addr: SocketAddr,
    /// Every request received, in order.
    pub log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Reads one request: the request line, the headers up to the blank line and a body of
/// `Content-Length` bytes (fewer if the client hangs up). `None` for a TLS ClientHello or a
/// connection that ends or stalls before the headers do.
fn read_request(s: &mut TcpStream) -> Option<Request> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(s);
    if r.fill_buf().ok()?.first() == Some(&0x16) {
        return None;
    }
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut first = line.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        match line.trim_end().split_once(':') {
            Some((k, v)) => headers.push((k.trim().to_string(), v.trim().to_string())),
            None if line.trim_end().is_empty() => break,
            None => {}
        }
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let len = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    r.take(len).read_to_end(&mut req.body).ok()?;
    Some(req)
}

impl Server {
    /// A server on `ip:port` (port 0: any free one).
    pub fn start(
        ip: &str,
        port: u16,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind((ip, port)).expect("bind the test server");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (st, lg) = (Arc::clone(&stop), Arc::clone(&log));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                let reply = handler(&req);
                lg.lock().unwrap().push(req);
                let mut out = format!("HTTP/1.1 {}\r\n", reply.status);
                if reply.stream.is_none() {
                    let _ = write!(out, "Content-Length: {}\r\n", reply.body.len());
                }
                out.push_str("Connection: close\r\n");
                for (k, v) in &reply.headers {
                    let _ = write!(out, "{k}: {v}\r\n");
                }
                out.push_str("\r\n");
                match reply.stream {
                    None => {
                        let _ = conn.write_all(out.as_bytes());
                        let _ = conn.write_all(&reply.body);
                    }
                    Some(stream) => {
                        let st = Arc::clone(&st);
                        std::thread::spawn(move || match stream {
                            Stream::Body(w) => {
                                if conn.write_all(out.as_bytes()).is_ok() {
                                    w(&mut conn, &st);
                                }
                            }
                            Stream::Raw(w) => w(&mut conn, &st),
                        });
                    }
                }
            }
        });
        Server {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// `ip:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `alice:secret`, as a Basic Authorization header.
pub(crate) const BASIC: &str = "Basic YWxpY2U6c2VjcmV0";

/// The answer of a registry that wants Basic auth to a request without it.
pub(crate) fn basic_challenge() -> Reply {
    Reply::new(
        "401 Unauthorized",
        &[("WWW-Authenticate", "Basic realm=\"berth-test\"")],
    )
}

/// Client options for the tests: `limits`, no retry (a 1 ms backoff), no CA file, no
/// credentials.
pub(crate) fn options(limits: Limits) -> ClientOptions {
    ClientOptions {
        insecure: false,
        ca_file: None,
        credentials: None,
        retries: 0,
        backoff: Duration::from_millis(1),
        limits: Some(limits),
    }
}

/// [`options`] with the default limits and the credentials `alice:secret`.
pub(crate) fn alice(insecure: bool) -> ClientOptions {
    ClientOptions {
        insecure,
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "secret".into(),
        }),
        ..options(Limits::default())
    }
}
