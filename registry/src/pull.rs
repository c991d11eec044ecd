//! `pull`: the manifest by tag or digest (OCI and Docker types negotiated), the platform's
//! manifest picked from an index by the store, and only what the store lacks fetched:
//! layers whose ChainID is extracted are not downloaded at all, the others are downloaded
//! several at once and extracted while they arrive, each verified by digest, size and DiffID
//! before anything of it is kept.

use std::io::{Cursor, Read};
use std::sync::Arc;

use berth_image::image::media;
use berth_image::store::{BlobSource, ImageRecord, ImportOptions, Store};
use berth_image::{Digest, Platform};

use crate::client::{Body, Client, StatsSnapshot};
use crate::error::{Error, Result};
use crate::progress::{Event, Progress};
use crate::reference::Reference;

/// Largest manifest or index accepted (as the store: 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// The manifest types a pull accepts, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Pull options.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from an index (default: the host's).
    pub platform: Platform,
    /// Layers downloaded (and extracted) at once.
    pub parallel: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            parallel: 3,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image as recorded in the store (its name is [`Reference::familiar`]).
    pub record: ImageRecord,
    /// The digest the reference resolved to (an index's, for a multi-platform image).
    pub digest: Digest,
    /// What moved over the network.
    pub stats: StatsSnapshot,
}

/// A manifest fetched by tag or digest, verified.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Its digest (computed; checked against the pinned digest or `Docker-Content-Digest`).
    pub digest: Digest,
    /// Its media type (the response's Content-Type).
    pub media_type: String,
    /// The document.
    pub bytes: Vec<u8>,
}

/// `GET /v2/<repo>/manifests/<tag|digest>` with content negotiation, verified.
pub fn fetch_manifest(client: &Client, repository: &str, target: &str) -> Result<FetchedManifest> {
    let path = format!("/v2/{repository}/manifests/{target}");
    let scopes = [format!("repository:{repository}:pull")];
    let resp = client.send("GET", &path, &scopes, &[("Accept", ACCEPT)], &Body::Empty)?;
    let media_type = resp
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let header_digest = resp.header("docker-content-digest").map(str::to_string);
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Transport {
            method: "GET".into(),
            url: path.clone(),
            reason: e.to_string(),
        })?;
    client
        .stats()
        .bytes_received
        .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(Error::protocol(path, "manifest larger than 4 MiB"));
    }
    let digest = Digest::of(&bytes);
    let expected = if target.starts_with("sha256:") {
        Some(target.to_string())
    } else {
        header_digest.filter(|d| d.starts_with("sha256:"))
    };
    if let Some(e) = expected {
        if e != digest.as_str() {
            return Err(Error::DigestMismatch {
                what: format!("manifest {repository}:{target}"),
                expected: e,
                actual: digest.to_string(),
            });
        }
    }
    if !matches!(
        media_type.as_str(),
        media::OCI_MANIFEST | media::OCI_INDEX | media::DOCKER_MANIFEST | media::DOCKER_LIST
    ) {
        // The store tells the document's kind from its own mediaType (or fields); a
        // registry's missing or generic Content-Type is only logged.
        tracing::debug!("{path}: Content-Type {media_type:?}");
    }
    Ok(FetchedManifest {
        digest,
        media_type,
        bytes,
    })
}

/// The store's view of a registry repository.
struct Source {
    client: Client,
    repository: String,
    top: FetchedManifest,
    progress: Arc<dyn Progress>,
}

impl BlobSource for Source {
    fn open(&self, digest: &Digest) -> berth_image::Result<Box<dyn Read + Send>> {
        let progress = Arc::clone(&self.progress);
        let d = digest.to_string();
        let reader = self
            .client
            .blob_reader(
                &self.repository,
                digest.as_str(),
                Some(Box::new(move |n| {
                    progress.event(&Event::Bytes {
                        digest: &d,
                        bytes: n,
                    });
                })),
            )
            .map_err(Error::into_store)?;
        self.progress.event(&Event::Fetching {
            digest: digest.as_str(),
            size: reader.len(),
        });
        Ok(Box::new(Finished {
            inner: reader,
            digest: digest.to_string(),
            progress: Arc::clone(&self.progress),
            done: false,
        }))
    }

    fn open_manifest(&self, digest: &Digest) -> berth_image::Result<Box<dyn Read + Send>> {
        if *digest == self.top.digest {
            return Ok(Box::new(Cursor::new(self.top.bytes.clone())));
        }
        let m = fetch_manifest(&self.client, &self.repository, digest.as_str())
            .map_err(Error::into_store)?;
        Ok(Box::new(Cursor::new(m.bytes)))
    }
}

/// Reports [`Event::Done`] at the end of a blob, and turns the registry errors of a
/// download into `io::Error`s the store keeps whole.
struct Finished {
    inner: crate::client::BlobReader,
    digest: String,
    progress: Arc<dyn Progress>,
    done: bool,
}

impl Read for Finished {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            self.progress.event(&Event::Done {
                digest: &self.digest,
            });
        }
        Ok(n)
    }
}

/// Pulls `reference` into `store` as [`Reference::familiar`] (`busybox:latest`,
/// `localhost:5000/app:v1`, `app@sha256:...`).
pub fn pull(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<PullReport> {
    let before = client.stats().snapshot();
    let top = fetch_manifest(client, &reference.repository, reference.target())?;
    progress.event(&Event::Resolved {
        reference: &reference.familiar(),
        digest: top.digest.as_str(),
    });
    let digest = top.digest.clone();
    let size = top.bytes.len() as u64;
    let src = Source {
        client: client.clone(),
        repository: reference.repository.clone(),
        top,
        progress,
    };
    let import = ImportOptions {
        platform: opts.platform.clone(),
        name: None,
        parallel: opts.parallel.clamp(1, 8),
    };
    let record = store
        .import_from(&src, &reference.familiar(), &digest, Some(size), &import)
        .map_err(Error::from_store)?;
    let after = client.stats().snapshot();
    Ok(PullReport {
        record,
        digest,
        stats: StatsSnapshot {
            requests: after.requests - before.requests,
            bytes_received: after.bytes_received - before.bytes_received,
            bytes_sent: after.bytes_sent - before.bytes_sent,
            blobs_fetched: after.blobs_fetched - before.blobs_fetched,
            resumes: after.resumes - before.resumes,
        },
    })
}
