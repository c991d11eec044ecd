//! `POST /containers/{id}/attach`: the hijacked connection joined to the container's
//! monitor — at once if it runs, else when it starts (so `docker run` attaches before the
//! start and misses nothing). Also the pump between a client and a monitor, which exec uses.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::http::body::Resp;
use crate::http::hijack::{hijack, Hijacked};
use crate::http::{ApiError, ApiResult, Ctx};
use crate::state::lifecycle::PendingAttach;
use crate::state::{monitor, Container, Daemon};

/// Which streams a client takes.
#[derive(Debug, Clone, Copy)]
pub struct Streams {
    /// Its input goes to the process's stdin.
    pub stdin: bool,
    /// It gets stdout.
    pub stdout: bool,
    /// It gets stderr.
    pub stderr: bool,
}

/// Joins a client to a monitor's attach socket until the process's output ends: frames
/// from the monitor go out as they are (multiplexed) or unframed (`tty`), filtered by
/// `streams`; the client's input goes in, and its end closes the monitor's input side.
/// The client's connection is closed only once `ended` completes (for exec: its exit code
/// recorded, which the client inspects as soon as its stream ends).
pub async fn pump(
    client: Hijacked,
    sock: UnixStream,
    tty: bool,
    streams: Streams,
    ended: impl std::future::Future<Output = ()>,
) {
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = sock.into_split();
    let output = async {
        let mut header = [0u8; 8];
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if sr.read_exact(&mut header).await.is_err() {
                break;
            }
            let stream = header[0];
            let mut left =
                u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let wanted = tty || (stream == 1 && streams.stdout) || (stream == 2 && streams.stderr);
            if wanted && !tty && cw.write_all(&header).await.is_err() {
                break;
            }
            while left > 0 {
                let n = left.min(buf.len());
                if sr.read_exact(&mut buf[..n]).await.is_err() {
                    return;
                }
                if wanted && cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        }
        let _ = cw.flush().await;
        ended.await;
        let _ = cw.shutdown().await;
    };
    let input = async {
        if streams.stdin {
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
            let _ = sw.shutdown().await;
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = output => {}
        () = input => {}
    }
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=`.
pub fn attach(
    d: &Arc<Daemon>,
    ctx: &Ctx,
    c: Arc<Container>,
    mut req: Request<Incoming>,
) -> ApiResult<Resp> {
    let r = c.snapshot();
    if ctx.query.flag("logs", false) && !ctx.query.flag("stream", false) {
        return Err(ApiError::not_implemented(
            "attach with logs only (use /logs)",
        ));
    }
    let streams = Streams {
        stdin: ctx.query.flag("stdin", false) && r.config.open_stdin.unwrap_or(false),
        stdout: ctx.query.flag("stdout", false),
        stderr: ctx.query.flag("stderr", false),
    };
    let tty = r.tty();
    // Where the monitor is, or a promise of it.
    let direct = {
        let mut hub = c.attach.lock().expect("attach lock");
        match &hub.dir {
            Some(dir) => Ok(dir.clone()),
            None => {
                let (tx, rx) = oneshot::channel();
                hub.waiting.push(PendingAttach { dir: tx });
                Err(rx)
            }
        }
    };
    drop(c);
    let _ = d;
    let (resp, io) = hijack(&mut req, tty);
    tokio::spawn(async move {
        let Ok(client) = io.await else { return };
        let (sock, ack) = match direct {
            Ok(dir) => match monitor::connect_attach(&dir).await {
                Ok(s) => (s, None),
                Err(e) => {
                    tracing::debug!("attach: {e}");
                    return;
                }
            },
            Err(rx) => {
                let Ok((dir, ack)) = rx.await else { return };
                match monitor::connect_attach(&dir).await {
                    Ok(s) => (s, Some(ack)),
                    Err(e) => {
                        tracing::debug!("attach: {e}");
                        return;
                    }
                }
            }
        };
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        pump(client, sock, tty, streams, std::future::ready(())).await;
    });
    Ok(resp)
}
