//! Connection hijack, as attach and exec use it: with `Upgrade: tcp` the response is
//! `101 UPGRADED` and the connection becomes a raw two-way stream; without it (old clients)
//! the output is the response body and there is no input.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::oneshot;

use super::body::{streamed, Resp};

/// A hijacked connection: what the client sends, and where its output goes.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// The stream a handler reads input from and writes output to.
pub type Hijacked = Box<dyn Duplex>;

/// The content type of a raw (tty) or multiplexed stream.
pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// Takes over the connection of `req`: the response to return, and the stream, which
/// arrives once the response has gone out (an upgrade) or at once (a streamed body).
pub fn hijack(req: &mut Request<Incoming>, tty: bool) -> (Resp, oneshot::Receiver<Hijacked>) {
    let (tx, rx) = oneshot::channel::<Hijacked>();
    if wants_upgrade(req) {
        let on = hyper::upgrade::on(req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => {
                    let _ = tx.send(Box::new(TokioIo::new(up)));
                }
                Err(e) => tracing::debug!("upgrade: {e}"),
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, HeaderValue::from_static("Upgrade"))
            .header(UPGRADE, HeaderValue::from_static("tcp"))
            .header(CONTENT_TYPE, content_type(tty))
            .body(super::body::empty())
            .expect("a valid response");
        return (resp, rx);
    }
    let (resp, body) = streamed(StatusCode::OK, content_type(tty));
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match theirs.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if body.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let _ = tx.send(Box::new(ours));
    (resp, rx)
}
