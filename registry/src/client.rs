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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{parse_challenges, Credentials, TokenResponse};
use crate::error::{Error, RegistryError, RegistryErrors, Result};
use crate::limits::{Limits, MAX_DOCUMENT};
use crate::reference::{registry_url, url_is_loopback};
use url::Url;

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

#[derive(Debug, Default)]
struct AuthState {
    /// The registry asked for Basic auth.
    basic: bool,
    /// The registry's Bearer realm and service.
    bearer: Option<(String, Option<String>)>,
    /// Tokens by scope set.
    tokens: HashMap<String, String>,
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

fn tls_config(extra_ca: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut add_pem = |path: &std::path::Path, required: bool| -> Result<()> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if !required => {
                tracing::debug!("{}: {e}", path.display());
                return Ok(());
            }
            Err(e) => return Err(Error::io(path, "open CA file", e)),
        };
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut BufReader::new(f)) {
            let cert = cert.map_err(|e| Error::io(path, "parse CA file", e))?;
            if roots.add(cert).is_ok() {
                n += 1;
            }
        }
        if required && n == 0 {
            return Err(Error::io(
                path,
                "parse CA file",
                io::Error::other("no PEM certificate in it"),
            ));
        }
        Ok(())
    };
    for system in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        add_pem(std::path::Path::new(system), false)?;
    }
    if let Some(p) = extra_ca {
        add_pem(p, true)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::protocol("TLS configuration", e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Reads at most 64 KiB of an error response and parses the spec's error body.
fn registry_error(method: &str, url: &str, status: u16, resp: ureq::Response) -> Error {
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

/// Whether a read failed because its socket timeout expired (ureq reports `TimedOut`, or
/// the socket's `WouldBlock`).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Reads a document answer (manifest, token): at most [`MAX_DOCUMENT`] bytes, one more is an
/// [`Error::DocumentTooLarge`]; a read that times out (the request's deadline) is
/// `timeout()`.
pub(crate) fn read_document(
    resp: ureq::Response,
    what: &str,
    timeout: impl Fn() -> Error,
) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    match resp
        .into_reader()
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut body)
    {
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Err(timeout()),
        Err(e) => {
            return Err(Error::Transport {
                method: "GET".into(),
                url: what.to_string(),
                reason: e.to_string(),
            })
        }
    }
    if body.len() as u64 > MAX_DOCUMENT {
        return Err(Error::DocumentTooLarge {
            what: what.to_string(),
            limit: MAX_DOCUMENT,
        });
    }
    Ok(body)
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

fn with_hint(e: Error, hint: &str) -> Error {
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

/// Whether two URLs have the same origin: scheme, host and port (default ports included).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// Whether `url` (a response's final URL, as ureq reports it) is of `base`'s origin.
fn from_origin(url: &str, base: &Url) -> bool {
    Url::parse(url).is_ok_and(|u| same_origin(&u, base))
}

/// The URL `path_or_url` (an API path, or an absolute, scheme-relative or relative
/// `Location`) names, resolved against the registry's `base`. HTTP(S) only, and no HTTPS
/// registry's request goes over plain HTTP unless `insecure`.
pub(crate) fn resolve_target(base: &Url, path_or_url: &str, insecure: bool) -> Result<Url> {
    let url = base
        .join(path_or_url)
        .map_err(|e| Error::protocol(format!("URL {path_or_url:?}"), e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if base.scheme() == "http" || insecure => {}
        "http" => {
            let registry = base.host_str().unwrap_or_default();
            return Err(Error::protocol(
                format!("URL {url}"),
                format!(
                    "the registry {registry} is HTTPS and this URL is plain HTTP \
                     (use --insecure to allow it)"
                ),
            ));
        }
        other => {
            return Err(Error::protocol(
                format!("URL {url}"),
                format!("unsupported scheme {other:?}"),
            ))
        }
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(Error::protocol(
            format!("URL {path_or_url:?}"),
            "no host, or user info in the URL",
        ));
    }
    Ok(url)
}

/// Whether a token endpoint (a Bearer challenge's `realm`) may receive the credentials of
/// the registry at `registry` (its base URL): an `http(s)` URL without user info; plain HTTP
/// or a loopback host only when the registry itself is on loopback, or with `insecure`.
/// Gives the parsed realm, or why it is refused.
pub(crate) fn token_realm(realm: &str, registry: &Url, insecure: bool) -> Result<Url, String> {
    let url = Url::parse(realm).map_err(|e| format!("the token endpoint {realm:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "the token endpoint {realm:?} is not an http(s) URL with a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the token endpoint {realm:?} carries user info in its URL"
        ));
    }
    let local_registry = url_is_loopback(registry);
    if url.scheme() == "http" && !local_registry && !insecure {
        return Err(format!(
            "the token endpoint {url} is plain HTTP; use --insecure to allow it"
        ));
    }
    if url_is_loopback(&url) && !local_registry && !insecure {
        return Err(format!(
            "the token endpoint {url} is on this machine while the registry is not; \
             use --insecure to allow it"
        ));
    }
    Ok(url)
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
            .redirects(5)
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

    /// `https://host` or, for a loopback or `--insecure` registry that does not speak TLS,
    /// `http://host`: found by the first request (`GET /v2/`), which also learns how the
    /// registry wants to be authenticated.
    pub fn base(&self) -> Result<String> {
        Ok(self.base_url()?.as_str().trim_end_matches('/').to_string())
    }

    /// [`Client::base`] as a URL (`https://host/`).
    fn base_url(&self) -> Result<Url> {
        if let Some(b) = self.0.base.lock().expect("lock").clone() {
            return Ok(b);
        }
        // Parsed from the host again rather than given another scheme: `host:80` stays on
        // port 80 over TLS.
        let https = Url::parse(&format!("https://{}/", self.0.host))
            .map_err(|e| Error::protocol(&self.0.host, e.to_string()))?;
        let chosen = match self.ping(&https) {
            Ok(()) => https,
            Err(e) => {
                let http_ok = self.0.opts.insecure || url_is_loopback(&self.0.host_url);
                let reason = match &e {
                    Error::Transport { reason, .. } => reason.clone(),
                    Error::Timeout { .. } => e.to_string(),
                    _ => return Err(e),
                };
                if !http_ok {
                    return Err(Error::Insecure {
                        registry: self.0.host.clone(),
                        reason,
                    });
                }
                let http = Url::parse(&format!("http://{}/", self.0.host))
                    .map_err(|e| Error::protocol(&self.0.host, e.to_string()))?;
                tracing::debug!("{https}: {reason}; trying plain HTTP");
                self.ping(&http)?;
                http
            }
        };
        *self.0.base.lock().expect("lock") = Some(chosen.clone());
        Ok(chosen)
    }

    /// `GET /v2/`: any HTTP answer means the scheme works; a 401 tells the auth scheme (when
    /// it came from the registry, not from where a redirect led).
    fn ping(&self, base: &Url) -> Result<()> {
        let url = format!("{base}v2/");
        self.0.stats.requests.fetch_add(1, Ordering::Relaxed);
        let deadline = self.document_deadline();
        let res = self
            .0
            .agent
            .get(&url)
            .timeout(self.0.limits.request_timeout)
            .call();
        match res {
            Err(ureq::Error::Status(401, resp)) => {
                if from_origin(resp.get_url(), base) {
                    self.learn_challenge(resp.header("www-authenticate").unwrap_or(""));
                } else {
                    tracing::debug!("ignoring the challenge of {}", resp.get_url());
                }
                Ok(())
            }
            Ok(_) | Err(ureq::Error::Status(_, _)) => Ok(()),
            Err(ureq::Error::Transport(_)) if Instant::now() >= deadline => {
                Err(self.timeout(format!("GET {url}")))
            }
            Err(ureq::Error::Transport(t)) => Err(Error::Transport {
                method: "GET".into(),
                url,
                reason: t.to_string(),
            }),
        }
    }

    /// Records what a 401's `WWW-Authenticate` asks for; returns whether it was understood.
    fn learn_challenge(&self, header: &str) -> bool {
        let mut auth = self.0.auth.lock().expect("lock");
        let mut understood = false;
        for c in parse_challenges(header) {
            match c.scheme.as_str() {
                "bearer" => {
                    if let Some(realm) = c.params.get("realm") {
                        auth.bearer = Some((realm.clone(), c.params.get("service").cloned()));
                        understood = true;
                    }
                }
                "basic" => {
                    auth.basic = true;
                    understood = true;
                }
                _ => {}
            }
        }
        understood
    }

    /// The URL of an API path (`/v2/...`) or of a `Location` (absolute or relative), with
    /// whether it is of the registry's origin (and so may carry its credentials).
    fn target(&self, path_or_url: &str) -> Result<(Url, bool)> {
        let base = self.base_url()?;
        let url = resolve_target(&base, path_or_url, self.0.opts.insecure)?;
        let ours = same_origin(&url, &base);
        Ok((url, ours))
    }

    /// The Authorization header for a request needing `scopes`, fetching a token if the
    /// registry uses Bearer auth and none is cached for them (by `deadline` when given, and
    /// within [`Limits::request_timeout`] anyway).
    fn authorization(
        &self,
        scopes: &[String],
        deadline: Option<Instant>,
    ) -> Result<Option<String>> {
        let (basic, bearer, cached) = {
            let auth = self.0.auth.lock().expect("lock");
            (
                auth.basic,
                auth.bearer.clone(),
                auth.tokens.get(&scopes.join(" ")).cloned(),
            )
        };
        if let Some(t) = cached {
            return Ok(Some(format!("Bearer {t}")));
        }
        if let Some((realm, service)) = bearer {
            let own = self.document_deadline();
            let deadline = deadline.map_or(own, |d| d.min(own));
            let token = self.fetch_token(&realm, service.as_deref(), scopes, deadline)?;
            self.0
                .auth
                .lock()
                .expect("lock")
                .tokens
                .insert(scopes.join(" "), token.clone());
            return Ok(Some(format!("Bearer {token}")));
        }
        if basic {
            if let Some(c) = &self.0.opts.credentials {
                return Ok(Some(c.basic_header()));
            }
        }
        Ok(None)
    }

    /// `GET realm?service=...&scope=...` with the credentials, if any, as Basic auth; the
    /// answer (at most [`MAX_DOCUMENT`]) must be complete by `deadline`.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        deadline: Instant,
    ) -> Result<String> {
        let base = self.base_url()?;
        let mut url =
            token_realm(realm, &base, self.0.opts.insecure).map_err(|reason| Error::Auth {
                registry: self.0.host.clone(),
                reason,
            })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let what = format!("token from {realm}");
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.timeout(&what))?;
        let mut req = self.0.agent.get(url.as_str()).timeout(remaining);
        if let Some(c) = &self.0.opts.credentials {
            req = req.set("Authorization", &c.basic_header());
        }
        self.0.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => {
                let e = registry_error("GET", realm, code, resp);
                return Err(if code == 401 || code == 403 {
                    with_hint(
                        e,
                        if self.0.opts.credentials.is_some() {
                            "the token endpoint refused the credentials (berth login again?)"
                        } else {
                            "no credentials for this registry (berth login REGISTRY)"
                        },
                    )
                } else {
                    e
                });
            }
            Err(ureq::Error::Transport(_)) if Instant::now() >= deadline => {
                return Err(self.timeout(what));
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Error::Transport {
                    method: "GET".into(),
                    url: realm.to_string(),
                    reason: t.to_string(),
                })
            }
        };
        let body = read_document(resp, &what, || self.timeout(&what))?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::protocol(format!("token from {realm}"), e.to_string()))?;
        tracing::debug!(
            "token for {scopes:?} from {realm}, expires in {:?}s",
            t.expires_in
        );
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::protocol(format!("token from {realm}"), "no token in the answer"))
    }

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
        let url = url.to_string();
        let retryable = method != "PATCH";
        let mut attempt = 0u32;
        let mut answered_challenge = false;
        let what = || format!("{method} {url}");
        loop {
            let mut req = self.0.agent.request(method, &url);
            if let Some(d) = within.deadline {
                let remaining = d
                    .checked_duration_since(Instant::now())
                    .filter(|r| !r.is_zero())
                    .ok_or_else(|| self.timeout(what()))?;
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
                Ok(resp) => return Ok(resp),
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
                    return Err(self.timeout(what()));
                }
                Err(ureq::Error::Transport(t)) => {
                    if !retryable || attempt >= self.0.opts.retries {
                        return Err(Error::Transport {
                            method: method.into(),
                            url,
                            reason: t.to_string(),
                        });
                    }
                    tracing::debug!("{method} {url}: {t}; retrying");
                    None
                }
            };
            let wait = retry_after.unwrap_or(self.0.opts.backoff * 2u32.pow(attempt.min(6)));
            let next = Instant::now() + wait;
            if within.deadline.is_some_and(|d| next >= d) {
                return Err(self.timeout(what()));
            }
            if within.retry_until.is_some_and(|d| next >= d) {
                return Err(self.timeout(what()));
            }
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    fn unauthorized(
        &self,
        method: &str,
        url: &str,
        resp: ureq::Response,
        had_credentials: bool,
    ) -> Error {
        let e = registry_error(method, url, 401, resp);
        with_hint(
            e,
            &if had_credentials || self.0.opts.credentials.is_some() {
                format!("the credentials for {} were refused", self.0.host)
            } else {
                format!(
                    "no credentials for {} (berth login {})",
                    self.0.host, self.0.host
                )
            },
        )
    }

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
/// reads it through [`BlobReader::read_blob`], to keep them).
impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_blob(buf).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, Request, Server};

    /// `alice:secret`.
    const BASIC: &str = "Basic YWxpY2U6c2VjcmV0";

    fn opts(insecure: bool) -> ClientOptions {
        ClientOptions {
            insecure,
            ca_file: None,
            credentials: Some(Credentials {
                username: "alice".into(),
                password: "secret".into(),
            }),
            retries: 0,
            backoff: Duration::from_millis(1),
            limits: Some(Limits::default()),
        }
    }

    /// A registry on 127.0.0.1 that wants Basic `alice:secret`, then answers with `f`.
    fn basic_registry(f: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        Server::start("127.0.0.1", 0, move |r| {
            if r.header("authorization") == Some(BASIC) {
                f(r)
            } else {
                Reply::new(
                    "401 Unauthorized",
                    &[("WWW-Authenticate", "Basic realm=\"berth-test\"")],
                )
            }
        })
    }

    fn created(_: &Request) -> Reply {
        Reply::new("201 Created", &[])
    }

    /// Finding: a `Location` naming another host (or port, or written `HTTP://`, or
    /// scheme-relative) received the registry's credentials.
    #[test]
    fn credentials_go_only_to_the_registry_origin() {
        let registry = basic_registry(created);
        // The same port on another loopback address: another host to the client.
        let other_host = Server::start("127.0.0.2", registry.addr.port(), created);
        let other_port = Server::start("127.0.0.1", 0, created);
        let client = Client::new(&registry.host(), opts(false)).unwrap();
        let scopes = ["repository:app:push".to_string()];
        for target in [
            format!("http://{}/upload/1", other_host.host()),
            format!("HTTP://{}/upload/2", other_host.host()),
            format!("//{}/upload/3", other_host.host()),
            format!("http://{}/upload/4", other_port.host()),
            format!("http://localhost:{}/upload/5", other_port.addr.port()),
        ] {
            let resp = client
                .send("PUT", &target, &scopes, &[], &Body::Empty)
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            assert_eq!(resp.status(), 201, "{target}");
        }
        // The registry's own URLs, relative or absolute, do carry them.
        for target in [
            "/v2/app/blobs/uploads/x?digest=sha256%3A00".to_string(),
            format!("http://{}/v2/app/blobs/uploads/y", registry.host()),
            format!("HTTP://{}/v2/app/blobs/uploads/z", registry.host()),
        ] {
            let resp = client
                .send("PUT", &target, &scopes, &[], &Body::Empty)
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            assert_eq!(resp.status(), 201, "{target}");
        }
        let elsewhere: Vec<Request> = other_host
            .requests()
            .into_iter()
            .chain(other_port.requests())
            .collect();
        assert_eq!(elsewhere.len(), 5, "{elsewhere:?}");
        for r in &elsewhere {
            assert_eq!(r.header("authorization"), None, "{} {}", r.method, r.path);
        }
        let at_registry: Vec<_> = registry
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect();
        assert_eq!(at_registry.len(), 3);
        assert!(at_registry
            .iter()
            .all(|r| r.header("authorization") == Some(BASIC)));
    }

    /// Finding: a `Location` could move an HTTPS registry's requests to plain HTTP.
    #[test]
    fn locations_are_resolved_and_never_downgrade_https() {
        let client = Client::new("registry.example", opts(false)).unwrap();
        *client.0.base.lock().unwrap() = Some(Url::parse("https://registry.example/").unwrap());
        for bad in [
            "http://registry.example/v2/app/blobs/uploads/1",
            "HTTP://registry.example/v2/app/blobs/uploads/1",
            "http://cdn.example/upload",
            "ftp://registry.example/x",
            "https://user:pw@registry.example/x",
        ] {
            assert!(client.target(bad).is_err(), "{bad} accepted");
        }
        let e = client.target("http://cdn.example/upload").unwrap_err();
        assert!(e.to_string().contains("--insecure"), "{e}");
        let ok = |t: &str| {
            let (u, ours) = client.target(t).unwrap();
            (u.to_string(), ours)
        };
        assert_eq!(
            ok("/v2/app/blobs/uploads/1?_state=a"),
            (
                "https://registry.example/v2/app/blobs/uploads/1?_state=a".into(),
                true
            )
        );
        assert!(ok("https://REGISTRY.example:443/v2/x").1);
        assert!(!ok("https://registry.example:8443/v2/x").1);
        assert!(!ok("https://cdn.example/x").1);
        assert_eq!(
            ok("//cdn.example/x"),
            ("https://cdn.example/x".into(), false)
        );
        // --insecure lets the request go, still without the credentials.
        let insecure = Client::new("registry.example", opts(true)).unwrap();
        *insecure.0.base.lock().unwrap() = Some(Url::parse("https://registry.example/").unwrap());
        assert!(!insecure.target("http://registry.example/v2/x").unwrap().1);
        // A host that is not exactly host[:port] is no registry.
        assert!(Client::new("localhost:x@evil.example", opts(false)).is_err());
        assert!(Client::new("localhost/evil", opts(false)).is_err());
    }

    /// Finding: `HTTP://...` skipped the plain-HTTP check, `http://localhost:x@evil/` was
    /// read as loopback, and loopback realms were accepted for remote registries.
    #[test]
    fn token_realm_policy() {
        let remote = Url::parse("https://registry.example/").unwrap();
        let local = Url::parse("http://127.0.0.1:5000/").unwrap();
        for bad in [
            "HTTP://evil.example/token",
            "http://evil.example/token",
            "http://localhost:x@evil.example/",
            "http://localhost/token",
            "http://127.0.0.1:5001/token",
            "http://[::1]/token",
            "https://127.0.0.1/token",
            "https://localhost:8443/token",
            "https://u:p@auth.example/token",
            "ftp://auth.example/token",
            "/token",
            "auth.example/token",
        ] {
            assert!(
                token_realm(bad, &remote, false).is_err(),
                "{bad} accepted for a remote registry"
            );
        }
        assert!(token_realm("https://auth.example/token", &remote, false).is_ok());
        assert_eq!(
            token_realm("HTTPS://Auth.Example/token?a=b", &remote, false)
                .unwrap()
                .as_str(),
            "https://auth.example/token?a=b"
        );
        assert!(token_realm("HTTP://evil.example/token", &remote, true).is_ok());
        // A loopback registry may use a plain-HTTP token endpoint.
        for ok in [
            "http://127.0.0.1:5001/token",
            "HTTP://localhost/token",
            "http://auth.example/token",
            "https://auth.example/token",
        ] {
            assert!(token_realm(ok, &local, false).is_ok(), "{ok} refused");
        }
        assert!(token_realm("http://localhost:x@evil.example/", &local, false).is_err());
    }

    /// Finding: a 401 from where a blob redirect led (a CDN) set the Bearer realm, and the
    /// credentials went to it.
    #[test]
    fn challenges_of_other_hosts_are_not_learned() {
        let token = Server::start("127.0.0.2", 0, |_| {
            Reply::with_body(
                "200 OK",
                &[("Content-Type", "application/json")],
                br#"{"token":"stolen"}"#.to_vec(),
            )
        });
        let realm = format!("Bearer realm=\"http://{}/token\"", token.host());
        let cdn = Server::start("127.0.0.2", 0, move |_| {
            Reply::new("401 Unauthorized", &[("WWW-Authenticate", &realm)])
        });
        let cdn_url = format!("http://{}/blob", cdn.host());
        let registry = basic_registry(move |r| {
            if r.path.contains("/blobs/") {
                Reply::new("307 Temporary Redirect", &[("Location", &cdn_url)])
            } else {
                Reply::new("200 OK", &[])
            }
        });
        let client = Client::new(&registry.host(), opts(false)).unwrap();
        let digest = format!("sha256:{}", "0".repeat(64));
        let Err(e) = client.blob_reader("app", &digest, Expect::default(), None) else {
            panic!("the CDN's 401 was not an error");
        };
        assert!(e.to_string().contains("not from the registry"), "{e}");
        assert!(token.requests().is_empty(), "{:?}", token.requests());
        assert!(client.0.auth.lock().unwrap().bearer.is_none());
        let at_cdn = cdn.requests();
        assert_eq!(at_cdn.len(), 1);
        assert_eq!(at_cdn[0].header("authorization"), None);

        // Nor from a redirect of the first `GET /v2/`.
        let v2 = format!("http://{}/v2/", cdn.host());
        let registry = Server::start("127.0.0.1", 0, move |_| {
            Reply::new("302 Found", &[("Location", &v2)])
        });
        let client = Client::new(&registry.host(), opts(false)).unwrap();
        client.base().unwrap();
        let auth = client.0.auth.lock().unwrap();
        assert!(auth.bearer.is_none() && !auth.basic);
        drop(auth);
        assert!(token.requests().is_empty());
    }
}
