//! What pulls and pushes report as they go; the command line renders it as bars or lines.

/// One step of a pull or push. Digests are `sha256:<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The reference resolved to this manifest (or index) digest.
    Resolved {
        /// The reference.
        reference: &'a str,
        /// The digest of what it names.
        digest: &'a str,
    },
    /// A blob download started.
    Fetching {
        /// The blob.
        digest: &'a str,
        /// Its size, when known.
        size: Option<u64>,
    },
    /// A blob transfer (either way) moved `bytes` more bytes.
    Bytes {
        /// The blob.
        digest: &'a str,
        /// Bytes moved since the last event.
        bytes: u64,
    },
    /// A blob download or upload finished.
    Done {
        /// The blob.
        digest: &'a str,
    },
    /// A blob the registry already has (push).
    Exists {
        /// The blob.
        digest: &'a str,
    },
    /// A blob mounted from another repository of the registry (push).
    Mounted {
        /// The blob.
        digest: &'a str,
        /// The repository it came from.
        from: &'a str,
    },
    /// A blob upload started (push).
    Uploading {
        /// The blob.
        digest: &'a str,
        /// Its size.
        size: u64,
    },
}

/// Receives [`Event`]s, from several download threads at once.
pub trait Progress: Send + Sync {
    /// Called for every event.
    fn event(&self, event: &Event<'_>);
}

/// Reports nothing (`--quiet`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: &Event<'_>) {}
}
