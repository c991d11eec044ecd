//! Blob downloads: response headers within the request timeout (on a thread of their
//! own), then reads bounded by the idle timeout and the minimum average rate (a document
//! such as a config: all of it within the request timeout), never more than the
//! descriptor's size, and a dropped connection resumed with `Range`.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use super::document::is_timeout;
use super::request::{Body, Within};
use super::Client;
use crate::error::{Error, Result};
#[cfg(doc)]
use crate::limits::Limits;

impl Client {
    /// Opens a blob for streaming; a dropped connection is resumed with `Range` (up to the
    /// retry count). `on_bytes` is told of every chunk received.
    ///
    /// With `expect.size`, a `Content-Length` other than it is an [`Error::ContentLength`]
    /// and no more than it is ever returned (a byte more is an [`Error::BlobOverrun`]). A
    /// document (`expect.document`, a config) must arrive whole within
    /// [`Limits::request_timeout`]; a layer's response headers must, then its reads are
    /// bounded by [`Limits::idle_timeout`] and its average rate by [`Limits::min_rate`].
    pub(crate) fn blob_reader(
        &self,
        repository: &str,
        digest: &str,
        expect: Expect,
        on_bytes: Option<Box<dyn Fn(u64) + Send>>,
    ) -> Result<BlobReader> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let scopes = vec![format!("repository:{repository}:pull")];
        let deadline = expect.document.then(|| self.document_deadline());
        let mut reader = BlobReader {
            client: self.clone(),
            digest: digest.to_string(),
            path,
            scopes,
            offset: 0,
            len: None,
            declared: expect.size,
            deadline,
            started: Instant::now(),
            inner: None,
            resumes: 0,
            on_bytes,
        };
        let resp = reader.request(&[])?;
        self.0.stats.blobs_fetched.fetch_add(1, Ordering::Relaxed);
        reader.len = resp.header("content-length").and_then(|l| l.parse().ok());
        reader.check_length(reader.len)?;
        reader.started = Instant::now();
        reader.inner = Some(resp.into_reader());
        Ok(reader)
    }

    /// `GET` whose response headers must arrive within [`Limits::request_timeout`], while
    /// the body's reads are bounded only by [`Limits::idle_timeout`] (ureq's deadlines
    /// cover the body too): the request runs on a thread of its own, abandoned when the
    /// headers are late (it stops at its next read that times out, or at the end of its
    /// current attempt).
    fn get_headers_within(
        &self,
        path: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        what: &str,
    ) -> Result<ureq::Response> {
        let bound = self.0.limits.request_timeout;
        let within = Within {
            deadline: None,
            retry_until: Some(Instant::now() + bound),
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let (client, path, scopes) = (self.clone(), path.to_string(), scopes.to_vec());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        std::thread::Builder::new()
            .name("berth-registry-get".into())
            .spawn(move || {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let res = client.send_with("GET", &path, &scopes, &h, &Body::Empty, within);
                // The receiver is gone when the answer came too late: dropping it closes
                // the connection.
                let _ = tx.send(res);
            })
            .map_err(|e| Error::Transport {
                method: "GET".into(),
                url: what.to_string(),
                reason: format!("starting the request's thread: {e}"),
            })?;
        match rx.recv_timeout(bound) {
            Ok(res) => res,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(self.timeout(what)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Transport {
                method: "GET".into(),
                url: what.to_string(),
                reason: "the request's thread ended without an answer".into(),
            }),
        }
    }
}

/// What a blob download expects, from the descriptor that names the blob.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expect {
    /// The descriptor's size.
    pub size: Option<u64>,
    /// A small document (a config): the whole download within [`Limits::request_timeout`].
    pub document: bool,
}

/// A blob download that survives dropped connections: after a read error it asks again for
/// `bytes=<offset>-` and goes on where it stopped (verification is the caller's, over the
/// whole stream). It never returns more than the declared size, and fails (without resuming)
/// when the registry stalls past the idle timeout, when a document's deadline passes, or when
/// a layer's average rate falls below the minimum (see [`crate::limits`]).
pub struct BlobReader {
    client: Client,
    digest: String,
    path: String,
    scopes: Vec<String>,
    offset: u64,
    /// The first response's `Content-Length`.
    len: Option<u64>,
    /// The descriptor's size.
    declared: Option<u64>,
    /// A document's deadline (`None`: a layer, bounded by idle timeout and rate).
    deadline: Option<Instant>,
    /// When the first response's headers arrived.
    started: Instant,
    inner: Option<Box<dyn Read + Send + Sync>>,
    resumes: u32,
    on_bytes: Option<Box<dyn Fn(u64) + Send>>,
}

impl BlobReader {
    /// The blob's length: its descriptor's size, or as the first response declared it.
    pub fn len(&self) -> Option<u64> {
        self.declared.or(self.len)
    }

    /// Whether the blob is declared empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    fn what(&self) -> String {
        format!("blob {}", self.digest)
    }

    /// Sends the `GET` (with `headers`, a `Range` for a resumption) within the bounds of
    /// the download.
    fn request(&self, headers: &[(&str, &str)]) -> Result<ureq::Response> {
        if self.deadline.is_some() {
            self.client.send_with(
                "GET",
                &self.path,
                &self.scopes,
                headers,
                &Body::Empty,
                Within {
                    deadline: self.deadline,
                    retry_until: None,
                },
            )
        } else {
            self.client
                .get_headers_within(&self.path, &self.scopes, headers, &self.what())
        }
    }

    /// A `Content-Length` (of what remains from `offset`) must be what the descriptor
    /// leaves.
    fn check_length(&self, content_length: Option<u64>) -> Result<()> {
        match (self.declared, content_length) {
            (Some(declared), Some(cl)) if cl != declared.saturating_sub(self.offset) => {
                Err(Error::ContentLength {
                    digest: self.digest.clone(),
                    declared,
                    content_length: cl,
                })
            }
            _ => Ok(()),
        }
    }

    /// The error of a read that timed out: the document's deadline, or the idle timeout.
    fn timed_out(&self) -> Error {
        let limits = self.client.limits();
        if self.deadline.is_some() {
            self.client.timeout(self.what())
        } else {
            Error::Idle {
                what: self.what(),
                offset: self.offset,
                limit: limits.idle_timeout,
            }
        }
    }

    /// A layer's average rate since it started, once the grace period has passed, must be
    /// at least [`Limits::min_rate`].
    fn check_rate(&self) -> Result<()> {
        let limits = self.client.limits();
        let elapsed = self.started.elapsed();
        if self.deadline.is_some() || limits.min_rate == 0 || elapsed <= limits.rate_grace {
            return Ok(());
        }
        if u128::from(self.offset) * 1000 < u128::from(limits.min_rate) * elapsed.as_millis() {
            return Err(Error::TooSlow {
                what: self.what(),
                received: self.offset,
                elapsed,
                min_rate: limits.min_rate,
            });
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<()> {
        let range = format!("bytes={}-", self.offset);
        let resp = self.request(&[("Range", &range)])?;
        if resp.status() != 206 {
            return Err(Error::protocol(
                format!("GET {} with Range {range}", self.path),
                format!(
                    "status {} instead of 206: the registry cannot resume",
                    resp.status()
                ),
            ));
        }
        self.check_length(resp.header("content-length").and_then(|l| l.parse().ok()))?;
        self.client.0.stats.resumes.fetch_add(1, Ordering::Relaxed);
        self.inner = Some(resp.into_reader());
        Ok(())
    }

    /// Reads what comes next of the blob into `buf` (0 at its end), resuming a dropped
    /// connection; fails with the registry error that ends the download.
    pub(crate) fn read_blob(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.inner.is_none() {
                self.reopen()?;
            }
            // At most one byte past the declared size is read, and none is returned.
            let room = self.declared.map_or(buf.len(), |d| {
                usize::try_from((d - self.offset.min(d)).saturating_add(1))
                    .map_or(buf.len(), |r| r.min(buf.len()))
            });
            let r = self
                .inner
                .as_mut()
                .expect("just opened")
                .read(&mut buf[..room]);
            match r {
                Ok(n) => {
                    if n == 0 && self.len().is_some_and(|l| self.offset < l) {
                        // A clean EOF before the declared length: resume too.
                        self.inner = None;
                    } else {
                        if let Some(declared) = self.declared {
                            if self.offset + n as u64 > declared {
                                self.inner = None;
                                return Err(Error::BlobOverrun {
                                    digest: self.digest.clone(),
                                    declared,
                                });
                            }
                        }
                        self.offset += n as u64;
                        self.client
                            .0
                            .stats
                            .bytes_received
                            .fetch_add(n as u64, Ordering::Relaxed);
                        if let Some(f) = &self.on_bytes {
                            f(n as u64);
                        }
                        self.check_rate()?;
                        return Ok(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    self.inner = None;
                    return Err(self.timed_out());
                }
                Err(e) => {
                    tracing::debug!("{} at byte {}: {e}", self.path, self.offset);
                    self.inner = None;
                }
            }
            self.check_rate()?;
            if self.resumes >= self.client.0.opts.retries.max(1) {
                return Err(Error::Transport {
                    method: "GET".into(),
                    url: self.path.clone(),
                    reason: format!(
                        "connection dropped at byte {} after {} resumptions",
                        self.offset, self.resumes
                    ),
                });
            }
            std::thread::sleep(self.client.0.opts.backoff * 2u32.pow(self.resumes.min(6)));
            self.resumes += 1;
        }
    }
}

/// The download as a reader: its errors are `io::Error`s wrapping the registry's (a pull
/// reads it through `read_blob`, to keep them).
impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_blob(buf).map_err(io::Error::other)
    }
}
