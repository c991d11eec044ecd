//! Requests to the registry: bodies (in memory, or read again from a file on a retry),
//! authentication attached only for the registry's origin, one 401 challenge answered,
//! retries with backoff for transport errors, 429 and 5xx, the time bounds of a request,
//! and the spec's error bodies.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::origin::{from_origin, redirect, same_origin, too_many_redirects, MAX_REDIRECTS};
use super::Client;
use crate::error::{Error, RegistryError, RegistryErrors, Result};

/// A request body.
pub(crate) enum Body<'a> {
    /// No body.
    Empty,
    /// A body in memory.
    Bytes(&'a [u8]),
    /// A body read from a reader `open` makes (again on a retry), of `len` bytes.
    Reader {
        open: &'a dyn Fn() -> io::Result<Box<dyn Read + Send>>,
        len: u64,
    },
}

/// `application/x-www-form-urlencoded`-style escaping of a query value.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Reads at most 64 KiB of an error response and parses the spec's error body.
pub(super) fn registry_error(method: &str, url: &str, status: u16, resp: ureq::Response) -> Error {
    let mut body = Vec::new();
    let _ = resp.into_reader().take(64 << 10).read_to_end(&mut body);
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<RegistryError>,
    }
    let errors = serde_json::from_slice::<Body>(&body)
        .map(|b| b.errors)
        .unwrap_or_default();
    Error::Registry {
        method: method.to_string(),
        url: url.to_string(),
        status,
        errors: RegistryErrors(errors),
        hint: String::new(),
    }
}

/// Time bounds of one [`Client::send_with`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Within {
    /// The whole request, retries, response headers and body included, must be done by
    /// then (a document); past it is an [`Error::Timeout`].
    pub deadline: Option<Instant>,
    /// No attempt starts after then (the attempts themselves are not bounded: a blob
    /// request, whose headers the caller bounds).
    pub retry_until: Option<Instant>,
}

pub(super) fn with_hint(e: Error, hint: &str) -> Error {
    match e {
        Error::Registry {
            method,
            url,
            status,
            errors,
            ..
        } => Error::Registry {
            method,
            url,
            status,
            errors,
            hint: format!("; {hint}"),
        },
        other => other,
    }
}

/// Counts what a request body sends.
struct Counted<'a, R> {
    inner: R,
    counter: &'a AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Client {
    /// Sends a request with authentication, retrying transport errors, 429 and 5xx with
    /// backoff (PATCH is never retried: the upload's offset would be unknown) and answering
    /// one 401 challenge. Answers of 400 and more are [`Error::Registry`]; what else the
    /// status must be is the caller's to check.
    ///
    /// The Authorization header goes only to URLs of the registry's origin, and a 401 is
    /// answered only when it came from there (not from another host a `Location` or a
    /// redirect led to).
    pub(crate) fn send(
        &self,
        method: &str,
        path_or_url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> Result<ureq::Response> {
        self.send_with(
            method,
            path_or_url,
            scopes,
            headers,
            body,
            Within::default(),
        )
    }

    /// [`Client::send`] within the time bounds `within`.
    pub(crate) fn send_with(
        &self,
        method: &str,
        path_or_url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        body: &Body<'_>,
        within: Within,
    ) -> Result<ureq::Response> {
        let base = self.base_url()?;
        let (url, ours) = self.target(path_or_url)?;
        if !ours {
            tracing::debug!("{method} {url}: not the registry's origin, no credentials");
        }
        let (mut url, mut ours) = (url.to_string(), ours);
        let mut hops = 0;
        let retryable = method != "PATCH";
        let mut attempt = 0u32;
        let mut answered_challenge = false;
        let what = |url: &str| format!("{method} {url}");
        loop {
            let mut req = self.0.agent.request(method, &url);
            if let Some(d) = within.deadline {
                let remaining = d
                    .checked_duration_since(Instant::now())
                    .filter(|r| !r.is_zero())
                    .ok_or_else(|| self.timeout(what(&url)))?;
                req = req.timeout(remaining);
            }
            for (k, v) in headers {
                req = req.set(k, v);
            }
            let authorization = if ours {
                self.authorization(scopes, within.deadline)?
            } else {
                None
            };
            if let Some(a) = &authorization {
                req = req.set("Authorization", a);
            }
            self.0.stats.requests.fetch_add(1, Ordering::Relaxed);
            let res = match body {
                Body::Empty if matches!(method, "GET" | "HEAD" | "DELETE") => req.call(),
                Body::Empty => req.set("Content-Length", "0").send_bytes(&[]),
                Body::Bytes(b) => {
                    self.0
                        .stats
                        .bytes_sent
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                    req.send_bytes(b)
                }
                Body::Reader { open, len } => {
                    let r = open().map_err(|e| Error::Transport {
                        method: method.into(),
                        url: url.clone(),
                        reason: format!("opening the body: {e}"),
                    })?;
                    let counted = Counted {
                        inner: r.take(*len),
                        counter: &self.0.stats.bytes_sent,
                    };
                    req.set("Content-Length", &len.to_string()).send(counted)
                }
            };
            let retry_after = match res {
                Ok(resp) => match redirect(method, &url, &resp, self.0.opts.insecure) {
                    Some(_) if hops >= MAX_REDIRECTS => {
                        return Err(too_many_redirects(method, &url))
                    }
                    Some(next) => {
                        // Credentials only while the redirect stays at the registry's origin.
                        let next = next?;
                        ours = same_origin(&next, &base);
                        url = next.to_string();
                        hops += 1;
                        continue;
                    }
                    None => return Ok(resp),
                },
                Err(ureq::Error::Status(401, resp))
                    if !answered_challenge && ours && from_origin(resp.get_url(), &base) =>
                {
                    answered_challenge = true;
                    let header = resp.header("www-authenticate").unwrap_or("").to_string();
                    let had_basic = authorization
                        .as_deref()
                        .is_some_and(|a| a.starts_with("Basic"));
                    if self.learn_challenge(&header) {
                        let mut auth = self.0.auth.lock().expect("lock");
                        // A cached token may have expired: fetch a new one.
                        auth.tokens.remove(&scopes.join(" "));
                        let pointless = auth.bearer.is_none()
                            && (had_basic || self.0.opts.credentials.is_none());
                        drop(auth);
                        if !pointless {
                            continue;
                        }
                    }
                    return Err(self.unauthorized(method, &url, resp, had_basic));
                }
                Err(ureq::Error::Status(401, resp))
                    if !(ours && from_origin(resp.get_url(), &base)) =>
                {
                    let from = resp.get_url().to_string();
                    let e = registry_error(method, &url, 401, resp);
                    return Err(with_hint(
                        e,
                        &format!(
                            "the 401 came from {from}, not from the registry {}: \
                             its credentials are not sent there",
                            self.0.host
                        ),
                    ));
                }
                Err(ureq::Error::Status(401, resp)) => {
                    let had = authorization.is_some();
                    return Err(self.unauthorized(method, &url, resp, had));
                }
                Err(ureq::Error::Status(code, resp))
                    if (code == 429 || code >= 500)
                        && retryable
                        && attempt < self.0.opts.retries =>
                {
                    resp.header("retry-after")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(10)))
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(registry_error(method, &url, code, resp));
                }
                Err(ureq::Error::Transport(_))
                    if within.deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    return Err(self.timeout(what(&url)));
                }
                Err(ureq::Error::Transport(t)) => {
                    if !retryable || attempt >= self.0.opts.retries {
                        return Err(Error::Transport {
                            method: method.into(),
                            url,
                            reason: crate::error::transport_reason(&t),
                        });
                    }
                    tracing::debug!("{method} {url}: {t}; retrying");
                    None
                }
            };
            let wait = retry_after.unwrap_or(self.0.opts.backoff * 2u32.pow(attempt.min(6)));
            let next = Instant::now() + wait;
            if within.deadline.is_some_and(|d| next >= d) {
                return Err(self.timeout(what(&url)));
            }
            if within.retry_until.is_some_and(|d| next >= d) {
                return Err(self.timeout(what(&url)));
            }
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}
