//! HTTP for the distribution API: HTTPS through rustls (the system's CA bundle and the
//! webpki roots, plus an extra CA file), plain HTTP only for loopback registries or with
//! `--insecure`, authentication (anonymous, Basic, Bearer tokens per scope), retries with
//! backoff, redirects followed for blobs (never carrying the Authorization header to another
//! host), and blob downloads that resume with `Range` after a dropped connection.
//!
//! Credentials only go to the registry itself: the Authorization header is attached only to
//! URLs of the registry's origin (scheme, host and port), whatever a `Location` names; a
//! `Location` may not turn an HTTPS registry's traffic into plain HTTP without `--insecure`;
//! challenges are learned only from responses that came from the registry; and a plain-HTTP
//! (or loopback) token endpoint is accepted only for a loopback registry or with `--insecure`.
//!
//! - `connect`: the TLS configuration and how the registry is reached (HTTPS, or plain
//!   HTTP when allowed), learned by the first request.
//! - `origin`: which URLs a request may go to and which may carry the credentials.
//! - `authorize`: challenges, Basic auth, Bearer tokens per scope.
//! - `request`: requests with retries, backoff, deadlines and the registry's error bodies.
//! - `document`: document answers (manifests, tokens), bounded in size and time.
//! - `blob`: blob downloads, resumed with `Range`, bounded by the idle timeout and the
//!   minimum rate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::Credentials;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::reference::registry_url;
use authorize::AuthState;
use connect::tls_config;
use url::Url;

mod authorize;
mod blob;
mod connect;
mod document;
mod origin;
mod request;
#[cfg(test)]
mod tests;

pub use blob::BlobReader;
pub(crate) use blob::Expect;
pub(crate) use document::read_document;
pub(crate) use request::{escape, Body, Within};

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP to a registry that is not on loopback (and fall back to it when
    /// HTTPS fails).
    pub insecure: bool,
    /// An extra CA bundle (PEM) to trust, e.g. a test registry's self-signed certificate
    /// (default: `$BERTH_REGISTRY_CA`).
    pub ca_file: Option<PathBuf>,
    /// Credentials for Basic auth or the token endpoint (default: none, anonymous).
    pub credentials: Option<Credentials>,
    /// Retries of a failed request (transport errors, 429 and 5xx) and resumptions of one
    /// blob download.
    pub retries: u32,
    /// The first backoff; doubled each retry.
    pub backoff: Duration,
    /// Sizes, counts and timeouts a registry may not exceed (default `None`: the defaults
    /// with the `BERTH_PULL_*` and `BERTH_REGISTRY_*` environment variables, see
    /// [`crate::limits`]).
    pub limits: Option<Limits>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            ca_file: std::env::var_os("BERTH_REGISTRY_CA").map(PathBuf::from),
            credentials: None,
            retries: 4,
            backoff: Duration::from_millis(200),
            limits: None,
        }
    }
}

/// Counters of what moved over the network (for progress and tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP requests sent (retries and token requests included).
    pub requests: AtomicU64,
    /// Manifest and blob bytes received.
    pub bytes_received: AtomicU64,
    /// Blob and manifest bytes sent.
    pub bytes_sent: AtomicU64,
    /// Blob downloads started.
    pub blobs_fetched: AtomicU64,
    /// Downloads resumed with `Range` after a dropped connection.
    pub resumes: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::requests`].
    pub requests: u64,
    /// See [`Stats::bytes_received`].
    pub bytes_received: u64,
    /// See [`Stats::bytes_sent`].
    pub bytes_sent: u64,
    /// See [`Stats::blobs_fetched`].
    pub blobs_fetched: u64,
    /// See [`Stats::resumes`].
    pub resumes: u64,
}

impl Stats {
    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            blobs_fetched: self.blobs_fetched.load(Ordering::Relaxed),
            resumes: self.resumes.load(Ordering::Relaxed),
        }
    }
}

impl StatsSnapshot {
    /// What moved between `before` and this snapshot (of the same [`Stats`]).
    #[must_use]
    pub fn since(&self, before: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests - before.requests,
            bytes_received: self.bytes_received - before.bytes_received,
            bytes_sent: self.bytes_sent - before.bytes_sent,
            blobs_fetched: self.blobs_fetched - before.blobs_fetched,
            resumes: self.resumes - before.resumes,
        }
    }
}

struct Inner {
    agent: ureq::Agent,
    host: String,
    /// `http://host/`, for telling whether the host is loopback.
    host_url: Url,
    opts: ClientOptions,
    limits: Limits,
    base: Mutex<Option<Url>>,
    auth: Mutex<AuthState>,
    stats: Stats,
}

/// A client of one registry (`host[:port]`); cheap to clone, shared by download threads.
#[derive(Clone)]
pub struct Client(Arc<Inner>);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.0.host)
            .field(
                "base",
                &self
                    .0
                    .base
                    .lock()
                    .ok()
                    .and_then(|b| b.as_ref().map(Url::to_string)),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the registry at `host` (`host[:port]`, as [`crate::Reference::api_host`]
    /// gives it). Nothing is sent until the first request.
    pub fn new(host: &str, opts: ClientOptions) -> Result<Client> {
        let host_url = registry_url(host).ok_or_else(|| Error::Reference {
            reference: host.to_string(),
            reason: "not a registry host[:port]".into(),
        })?;
        let limits = match opts.limits {
            Some(l) => l,
            None => Limits::from_env()?,
        };
        let tls = tls_config(opts.ca_file.as_ref())?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(tls)
            .timeout_connect(Duration::from_secs(15).min(limits.request_timeout))
            .timeout_read(limits.idle_timeout)
            .timeout_write(limits.idle_timeout)
            // Followed by `send_with` and `fetch_token` (see `origin::redirect`), not by ureq.
            .redirects(0)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client(Arc::new(Inner {
            agent,
            host: host.to_string(),
            host_url,
            opts,
            limits,
            base: Mutex::new(None),
            auth: Mutex::new(AuthState::default()),
            stats: Stats::default(),
        })))
    }

    /// The registry's `host[:port]`.
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// What moved so far.
    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

    /// The limits this client enforces (and pulls through it).
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// A deadline [`Limits::request_timeout`] from now.
    pub(crate) fn document_deadline(&self) -> Instant {
        Instant::now() + self.0.limits.request_timeout
    }

    /// The [`Error::Timeout`] of `what`.
    pub(crate) fn timeout(&self, what: impl Into<String>) -> Error {
        Error::Timeout {
            what: what.into(),
            limit: self.0.limits.request_timeout,
        }
    }
}
