//! The crate's error type: every variant names the layer entry, file, image or field at fault.

use std::io;
use std::path::PathBuf;

/// Errors from layer extraction, the image store and bundle generation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer entry that is refused (escapes the root, is malformed or exceeds a limit).
    #[error("layer entry {entry:?}: {reason}")]
    Entry {
        /// The entry's name as found in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A filesystem operation failed while applying a layer entry.
    #[error("layer entry {entry:?}: {op}: {source}")]
    EntryIo {
        /// The entry's name as found in the archive.
        entry: String,
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tar stream itself is malformed.
    #[error("tar stream at byte {offset}: {reason}")]
    Tar {
        /// Offset of the offending header in the uncompressed stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading or decompressing the layer stream failed.
    #[error("reading the layer stream: {0}")]
    Read(#[source] io::Error),
    /// A filesystem operation on a named path failed.
    #[error(transparent)]
    Io(PathIoError),
    /// Content did not match the digest it was referenced by.
    #[error("{what}: digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// The blob, layer or file that was checked.
        what: String,
        /// The digest it was referenced by.
        expected: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// A document or argument that is structurally invalid (bad digest, missing field, unknown
    /// media type, ...).
    #[error("{what}: {reason}")]
    Invalid {
        /// The document, field or argument at fault.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document that does not parse.
    #[error("{what}: {source}")]
    Json {
        /// The document (path or blob digest) and its kind.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// No image by that name exists in the store.
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    /// An image name that is not a valid reference (`BAD:Name`, `../x`).
    #[error("image name: {0}")]
    Reference(#[from] crate::reference::ReferenceError),
    /// An image removed by ID while it has several names, without force (as docker refuses
    /// `rmi ID` then).
    #[error("unable to delete {id} (must be forced): image is referenced in multiple repositories ({})", names.join(", "))]
    MultipleNames {
        /// The image's short ID (12 hex digits).
        id: String,
        /// Its names.
        names: Vec<String>,
    },
    /// A bound on what a layer, image or volume may make berth do was reached (a
    /// decompression bomb, a flood of entries or metadata, a filling disk); see
    /// [`crate::extract::Limits`]. Nothing of the layer or volume is kept.
    #[error("{what}: {detail} (limit {limit}={max})")]
    Limit {
        /// The layer, entry, image or path at fault.
        what: String,
        /// What went over the limit.
        detail: String,
        /// The limit: the environment variable that sets it.
        limit: &'static str,
        /// Its value.
        max: u64,
    },
    /// Landlock self-confinement could not be set up.
    #[error("confining the extractor: {0}")]
    Confine(#[source] std::io::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A filesystem operation on a named path that failed, shown as `path: op: error`: the `Io`
/// variant of this crate's [`Error`] and of berth-registry's.
#[derive(Debug, thiserror::Error)]
#[error("{}: {op}: {source}", path.display())]
pub struct PathIoError {
    /// The path involved.
    pub path: PathBuf,
    /// The operation that failed.
    pub op: &'static str,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl PathIoError {
    /// `op` on `path` failed with `source`.
    pub fn new(path: impl Into<PathBuf>, op: &'static str, source: impl Into<io::Error>) -> Self {
        PathIoError {
            path: path.into(),
            op,
            source: source.into(),
        }
    }
}

impl Error {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Io(PathIoError::new(path, op, source))
    }

    /// An [`Error::Limit`] about a layer's stream, entry or offset, named within `context`
    /// (the layer's digest, the archive's path): other errors are returned unchanged.
    pub(crate) fn within(self, context: &str) -> Self {
        match self {
            Error::Limit {
                what,
                detail,
                limit,
                max,
            } => Error::Limit {
                what: if what == "layer" {
                    context.to_string()
                } else {
                    format!("{context}: {what}")
                },
                detail,
                limit,
                max,
            },
            e => e,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
