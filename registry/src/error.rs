//! The crate's error type. Registry errors keep the codes and messages of the distribution
//! spec's error body (`MANIFEST_UNKNOWN`, `UNAUTHORIZED`, ...).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_image::error::PathIoError;

use crate::limits::{
    exact_size, human_duration, human_size, VAR_DISK_RESERVE, VAR_IDLE_TIMEOUT, VAR_MAX_BLOB_SIZE,
    VAR_MAX_LAYERS, VAR_MIN_RATE, VAR_TIMEOUT,
};

/// ureq's description of a failed connection without the URL it starts with (an
/// [`Error::Transport`] names the URL already).
pub(crate) fn transport_reason(t: &ureq::Transport) -> String {
    let text = t.to_string();
    t.url()
        .and_then(|u| text.strip_prefix(&format!("{u}: ")))
        .map_or_else(|| text.clone(), String::from)
}

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RegistryError {
    /// The code, e.g. `MANIFEST_UNKNOWN`.
    pub code: String,
    /// The human-readable message (may be empty).
    #[serde(default)]
    pub message: String,
}

/// The codes and messages of a failed response, `CODE: message; CODE: message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryErrors(pub Vec<RegistryError>);

impl fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&e.code)?;
            if !e.message.is_empty() {
                write!(f, ": {}", e.message)?;
            }
        }
        Ok(())
    }
}

/// Errors of references, credentials, the registry protocol and the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference that does not parse.
    #[error("invalid reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: {}{hint}", if errors.0.is_empty() { format!("HTTP {status}") } else { errors.to_string() })]
    Registry {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error body's codes and messages (empty when it had none).
        errors: RegistryErrors,
        /// What the user can do about it (empty or starting with "; ").
        hint: String,
    },
    /// The connection failed (after the retries).
    #[error("{method} {url}: {reason}")]
    Transport {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// ureq's description of the failure.
        reason: String,
    },
    /// Authentication failed or is impossible (no credentials, a bad token endpoint).
    #[error("authenticating to {registry}: {reason}")]
    Auth {
        /// The registry.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// Plain HTTP was needed but is not allowed for this registry.
    #[error("{registry}: the registry does not speak HTTPS ({reason}); plain HTTP is only used for loopback registries or with --insecure")]
    Insecure {
        /// The registry.
        registry: String,
        /// The HTTPS failure.
        reason: String,
    },
    /// Content did not match the digest it was asked for.
    #[error("{what}: digest mismatch: expected {expected}, received {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest it was asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A single-platform image that is not for the platform asked for.
    #[error("{reference}: no manifest for platform {wanted} (available: {available})")]
    WrongPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The image's own platform.
        available: String,
    },
    /// A response or document that makes no sense (no Location, a manifest too large...).
    #[error("{what}: {reason}")]
    Protocol {
        /// The response or document.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file operation (docker config, CA file).
    #[error(transparent)]
    Io(PathIoError),
    /// A limit variable (`BERTH_PULL_*`, `BERTH_REGISTRY_*`) whose value does not parse.
    #[error("{variable}={value:?}: {reason}")]
    Config {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What a value must be.
        reason: String,
    },
    /// A manifest, index, config or token answer larger than
    /// [`MAX_DOCUMENT`](crate::limits::MAX_DOCUMENT) (declared so or sent so); no more than
    /// the limit and a byte was read.
    #[error("{what}: larger than {}, the limit for manifests, configs and tokens", human_size(*.limit))]
    DocumentTooLarge {
        /// The document (`manifest app:v1`, `config sha256:...`, `token from URL`).
        what: String,
        /// The limit, [`MAX_DOCUMENT`](crate::limits::MAX_DOCUMENT).
        limit: u64,
    },
    /// A blob whose descriptor declares more than
    /// [`Limits::max_blob_size`](crate::Limits::max_blob_size); it was not requested.
    #[error("blob {digest}: its descriptor declares {}, more than the limit of {} (set {VAR_MAX_BLOB_SIZE} to change it)", exact_size(*.size), human_size(*.limit))]
    BlobTooLarge {
        /// The blob.
        digest: String,
        /// Its declared size.
        size: u64,
        /// [`Limits::max_blob_size`](crate::Limits::max_blob_size).
        limit: u64,
    },
    /// A manifest listing more layers than [`Limits::max_layers`](crate::Limits::max_layers);
    /// no blob was requested.
    #[error("{reference}: manifest {digest} lists {layers} layers, more than the limit of {limit} (set {VAR_MAX_LAYERS} to change it); nothing was downloaded")]
    TooManyLayers {
        /// The reference pulled.
        reference: String,
        /// The manifest.
        digest: String,
        /// How many layers it lists.
        layers: usize,
        /// [`Limits::max_layers`](crate::Limits::max_layers).
        limit: usize,
    },
    /// Too little free space for a blob of its declared size; it was not requested.
    #[error("blob {digest}: not enough free space: {} for it, {} for the downloads in flight and a reserve of {} exceed the {} free in {} (set {VAR_DISK_RESERVE} to change the reserve)", exact_size(*.size), human_size(*.in_flight), human_size(*.reserve), human_size(*.free), .dir.display())]
    NoSpace {
        /// The blob.
        digest: String,
        /// Its declared size.
        size: u64,
        /// Declared sizes of the other downloads running.
        in_flight: u64,
        /// [`Limits::disk_reserve`](crate::Limits::disk_reserve).
        reserve: u64,
        /// Free bytes (for unprivileged users) of the filesystem.
        free: u64,
        /// The store's `tmp/`.
        dir: PathBuf,
    },
    /// A blob response whose `Content-Length` is not the size its descriptor declares;
    /// nothing of it was written.
    #[error("blob {digest}: size mismatch: the registry's Content-Length {content_length} disagrees with the descriptor's size {declared}")]
    ContentLength {
        /// The blob.
        digest: String,
        /// The descriptor's size.
        declared: u64,
        /// The response's (for a resumed download: what should remain).
        content_length: u64,
    },
    /// A blob stream longer than its descriptor declares; no byte past the declared size
    /// was handed on.
    #[error("blob {digest}: size mismatch: the registry sent more than the {declared} bytes its descriptor declares")]
    BlobOverrun {
        /// The blob.
        digest: String,
        /// The descriptor's size.
        declared: u64,
    },
    /// A request not answered in full within
    /// [`Limits::request_timeout`](crate::Limits::request_timeout) (a document), or whose
    /// response headers did not arrive in that time (a blob).
    #[error("{what}: not answered in full within {} (set {VAR_TIMEOUT} to change it)", human_duration(*.limit))]
    Timeout {
        /// The request (`manifest app:v1`, `GET /v2/...`).
        what: String,
        /// [`Limits::request_timeout`](crate::Limits::request_timeout).
        limit: Duration,
    },
    /// A download that received nothing for
    /// [`Limits::idle_timeout`](crate::Limits::idle_timeout).
    #[error("{what}: nothing received for {} at byte {offset} (set {VAR_IDLE_TIMEOUT} to change it)", human_duration(*.limit))]
    Idle {
        /// The download (`blob sha256:...`).
        what: String,
        /// Bytes received before it stalled.
        offset: u64,
        /// [`Limits::idle_timeout`](crate::Limits::idle_timeout).
        limit: Duration,
    },
    /// A blob download whose average rate fell below
    /// [`Limits::min_rate`](crate::Limits::min_rate).
    #[error("{what}: {received} bytes in {}, below the minimum average rate of {}/s (set {VAR_MIN_RATE} to change it)", human_duration(*.elapsed), human_size(*.min_rate))]
    TooSlow {
        /// The download (`blob sha256:...`).
        what: String,
        /// Bytes received so far.
        received: u64,
        /// Time since the download started.
        elapsed: Duration,
        /// [`Limits::min_rate`](crate::Limits::min_rate), bytes per second.
        min_rate: u64,
    },
    /// The image store failed (or refused content: digest or DiffID mismatch).
    #[error(transparent)]
    Store(berth_image::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The first registry error code, if the registry sent one (`UNAUTHORIZED` also for a
    /// 401 without a body).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Registry { errors, status, .. } => {
                errors.0.first().map(|e| e.code.as_str()).or(match status {
                    401 => Some("UNAUTHORIZED"),
                    403 => Some("DENIED"),
                    _ => None,
                })
            }
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Error {
        Error::Io(PathIoError::new(path, op, source))
    }

    pub(crate) fn protocol(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Protocol {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl From<berth_image::reference::ReferenceError> for Error {
    fn from(e: berth_image::reference::ReferenceError) -> Error {
        Error::Reference {
            reference: e.reference,
            reason: e.reason,
        }
    }
}

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Error {
        Error::Store(e)
    }
}

/// The registry errors raised inside a store call, kept by the registry: the store's blob
/// sources speak `io::Error`, so a source that fails records its [`Error`] here and gives
/// the store a plain `io::Error` with the same message; when the store call fails,
/// [`Raised::error_of`] gives back the recorded error the store's error carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Raised(Arc<Mutex<Vec<Error>>>);

impl Raised {
    /// Records `e`; gives the `io::Error` the store gets in its place (its message, kind
    /// `Other`).
    pub(crate) fn io(&self, e: Error) -> io::Error {
        let io = io::Error::other(e.to_string());
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(e);
        io
    }

    /// Records `e`; gives the store error a blob source returns in its place.
    pub(crate) fn store(&self, e: Error) -> berth_image::Error {
        berth_image::Error::Read(self.io(e))
    }

    /// The error of a failed store call: the registry error recorded here that caused it
    /// (the one whose message the store error or one of its sources has), else
    /// [`Error::Store`].
    pub(crate) fn error_of(&self, e: berth_image::Error) -> Error {
        let mut raised = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let found = std::iter::successors(Some(&e as &dyn std::error::Error), |s| s.source())
            .find_map(|s| {
                let text = s.to_string();
                raised.iter().position(|r| r.to_string() == text)
            });
        match found {
            Some(i) => raised.swap_remove(i),
            None => Error::Store(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry error given to the store comes back typed, whichever store error carries
    /// it; a store error of its own stays one.
    #[test]
    fn raised_errors_come_back_from_the_store() {
        let raised = Raised::default();
        let idle = || Error::Idle {
            what: "blob sha256:00".into(),
            offset: 1000,
            limit: Duration::from_secs(30),
        };
        let other = raised.store(Error::protocol("manifest app:v1", "bad"));
        let io = raised.io(idle());
        assert_eq!(io.to_string(), idle().to_string());
        let store = berth_image::Error::Io(PathIoError::new("/store/tmp/x", "read", io));
        assert!(matches!(
            raised.error_of(store),
            Error::Idle { offset: 1000, .. }
        ));
        assert!(matches!(raised.error_of(other), Error::Protocol { .. }));
        let own = berth_image::Error::Read(io::Error::other("disk on fire"));
        assert!(matches!(raised.error_of(own), Error::Store(_)));
    }

    #[test]
    fn a_transport_reason_does_not_repeat_the_url() {
        let agent = ureq::AgentBuilder::new().build();
        let Err(ureq::Error::Transport(t)) = agent.get("http://127.0.0.1:1/v2/").call() else {
            panic!("port 1 answered");
        };
        let reason = transport_reason(&t);
        assert!(!reason.contains("127.0.0.1:1"), "{reason}");
        assert!(reason.contains("Connection Failed"), "{reason}");
    }
}
