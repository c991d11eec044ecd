//! `pull`: the manifest by tag or digest (OCI and Docker types negotiated), the platform's
//! manifest picked from an index (here, as the store picks it), and only what the store
//! lacks fetched: layers whose ChainID is extracted are not downloaded at all, the others are
//! downloaded several at once and extracted while they arrive, each verified by digest, size
//! and DiffID before anything of it is kept.
//!
//! The registry is bounded by the client's [`Limits`] (see [`crate::limits`]): the manifest
//! (an index's too) is resolved here first, so that its layer count and every blob's
//! declared size are checked before any blob is requested; each blob's declared size is then
//! checked against the free space of the store's `tmp/` when it is requested, and its
//! download never hands the store more than that size.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_image::image::{self, media, Document};
use berth_image::store::{BlobSource, ImageRecord, ImportOptions, Store};
use berth_image::{Digest, Platform};

use crate::client::{read_document, Body, Client, Expect, StatsSnapshot, Within};
use crate::error::{Error, Raised, Result};
use crate::limits::{Limits, MAX_DOCUMENT};
use crate::progress::{Event, Progress};
use crate::reference::Reference;

/// Largest manifest or index accepted (as the store: 4 MiB).
pub const MAX_MANIFEST: u64 = MAX_DOCUMENT;

/// The manifest types a pull accepts, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Pull options.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from an index (default: the host's).
    pub platform: Platform,
    /// Layers downloaded (and extracted) at once.
    pub parallel: usize,
    /// The platform was asked for (`--platform`): an image of one platform must be of that
    /// one. Otherwise a single-platform image is pulled whatever its platform, as docker
    /// does.
    pub require_platform: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            parallel: 3,
            require_platform: false,
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

/// `GET /v2/<repo>/manifests/<tag|digest>` with content negotiation, verified; at most
/// [`MAX_MANIFEST`] bytes, all of them within [`Limits::request_timeout`].
pub fn fetch_manifest(client: &Client, repository: &str, target: &str) -> Result<FetchedManifest> {
    let path = format!("/v2/{repository}/manifests/{target}");
    let what = if target.starts_with("sha256:") {
        format!("manifest {repository}@{target}")
    } else {
        format!("manifest {repository}:{target}")
    };
    let scopes = [format!("repository:{repository}:pull")];
    let within = Within {
        deadline: Some(client.document_deadline()),
        retry_until: None,
    };
    let resp = client.send_with(
        "GET",
        &path,
        &scopes,
        &[("Accept", ACCEPT)],
        &Body::Empty,
        within,
    )?;
    let media_type = resp
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let header_digest = resp.header("docker-content-digest").map(str::to_string);
    let declared = resp
        .header("content-length")
        .and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|l| l > MAX_MANIFEST) {
        return Err(Error::DocumentTooLarge {
            what,
            limit: MAX_MANIFEST,
        });
    }
    let bytes = read_document(resp, &what, || client.timeout(&what))?;
    client
        .stats()
        .bytes_received
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
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

/// The image a pull resolved to: what the store will ask for, known before it asks.
#[derive(Debug, Default)]
struct Plan {
    /// Manifests fetched while resolving an index, by digest (the store gets them from here).
    manifests: HashMap<Digest, Vec<u8>>,
    /// What each blob of the image's manifest (config and layers) is expected to be.
    blobs: HashMap<String, Expect>,
}

/// Counts the layers of a manifest without keeping them (an index has none).
#[derive(serde::Deserialize)]
struct LayerCount {
    #[serde(default)]
    layers: Option<Vec<serde::de::IgnoredAny>>,
}

/// Resolves `top` (an index: to `platform`'s manifest, fetched or read from the store) and
/// checks the image's manifest against `limits`: its layer count and every blob's declared
/// size. Nothing but manifests is requested.
fn resolve(
    client: &Client,
    store: &Store,
    reference: &Reference,
    top: &FetchedManifest,
    platform: &Platform,
) -> Result<Plan> {
    let limits = client.limits();
    let mut plan = Plan::default();
    let mut digest = top.digest.clone();
    for depth in 0..=4 {
        let bytes = if depth == 0 {
            &top.bytes
        } else {
            plan.manifests.get(&digest).map_or(&top.bytes, |b| b)
        };
        let what = format!("manifest {digest}");
        if let Ok(LayerCount { layers: Some(l) }) = serde_json::from_slice(bytes) {
            if l.len() > limits.max_layers {
                return Err(Error::TooManyLayers {
                    reference: reference.familiar(),
                    digest: digest.to_string(),
                    layers: l.len(),
                    limit: limits.max_layers,
                });
            }
        }
        match image::parse_document(bytes, &what)? {
            Document::Manifest(m) => {
                let cfg = m.config();
                if cfg.size() > MAX_DOCUMENT {
                    return Err(Error::DocumentTooLarge {
                        what: format!("config {}", cfg.digest()),
                        limit: MAX_DOCUMENT,
                    });
                }
                plan.blobs.insert(
                    cfg.digest().to_string(),
                    Expect {
                        size: Some(cfg.size()),
                        document: true,
                    },
                );
                for l in m.layers() {
                    check_blob_size(limits, l.digest().as_ref(), l.size())?;
                    plan.blobs.insert(
                        l.digest().to_string(),
                        Expect {
                            size: Some(l.size()),
                            document: false,
                        },
                    );
                }
                return Ok(plan);
            }
            Document::Index(idx) => {
                let d = image::select_manifest(&idx, platform, &what)?;
                let child = Digest::parse(d.digest().as_ref())?;
                if d.size() > MAX_DOCUMENT {
                    return Err(Error::DocumentTooLarge {
                        what: format!("manifest {child}"),
                        limit: MAX_DOCUMENT,
                    });
                }
                let bytes = if store.has_blob(&child) {
                    store.read_blob_document(&child)?
                } else {
                    fetch_manifest(client, &reference.repository, child.as_str())?.bytes
                };
                plan.manifests.insert(child.clone(), bytes);
                digest = child;
            }
        }
    }
    Err(Error::protocol(
        format!("manifest {}", top.digest),
        "indexes nested too deeply",
    ))
}

/// Checks that the single-platform image `top` names is for `wanted`: its config's `os`,
/// `architecture` and (when both name one) `variant`. Only the config is fetched.
fn check_platform(
    client: &Client,
    reference: &Reference,
    top: &FetchedManifest,
    wanted: &Platform,
) -> Result<()> {
    let what = format!("manifest {}", top.digest);
    let Document::Manifest(m) = image::parse_document(&top.bytes, &what)? else {
        return Ok(());
    };
    let cfg = m.config();
    let expect = Expect {
        size: Some(cfg.size()),
        document: true,
    };
    let mut bytes = Vec::new();
    client
        .blob_reader(&reference.repository, cfg.digest().as_ref(), expect, None)?
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::protocol(format!("config {}", cfg.digest()), e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct ConfigPlatform {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let theirs: ConfigPlatform = serde_json::from_slice(&bytes)
        .map_err(|e| Error::protocol(format!("config {}", cfg.digest()), e.to_string()))?;
    let variant_ok = match (&wanted.variant, &theirs.variant) {
        (Some(w), Some(t)) => w == t,
        _ => true,
    };
    if theirs.os == wanted.os && theirs.architecture == wanted.architecture && variant_ok {
        return Ok(());
    }
    let available = Platform {
        os: theirs.os,
        architecture: theirs.architecture,
        variant: theirs.variant,
    };
    Err(Error::WrongPlatform {
        reference: reference.familiar(),
        wanted: wanted.to_string(),
        available: available.to_string(),
    })
}

/// A blob's declared size against [`Limits::max_blob_size`].
fn check_blob_size(limits: &Limits, digest: &str, size: u64) -> Result<()> {
    if size > limits.max_blob_size {
        return Err(Error::BlobTooLarge {
            digest: digest.to_string(),
            size,
            limit: limits.max_blob_size,
        });
    }
    Ok(())
}

/// Declared bytes of downloads in flight, released when the download is dropped.
struct Reservation {
    in_flight: Arc<AtomicU64>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(self.size, Ordering::Relaxed);
    }
}

/// The store's view of a registry repository.
struct Source {
    client: Client,
    repository: String,
    top: FetchedManifest,
    plan: Plan,
    /// The store's `tmp/`, where downloads are written.
    tmp: PathBuf,
    in_flight: Arc<AtomicU64>,
    progress: Arc<dyn Progress>,
    /// The registry errors given to the store as `io::Error`s.
    raised: Raised,
}

impl Source {
    /// Reserves `size` bytes in `tmp/`: refused when they, the downloads in flight and the
    /// reserve exceed the free space.
    fn reserve(&self, digest: &Digest, size: u64) -> Result<Reservation> {
        let st = rustix::fs::statvfs(&self.tmp)
            .map_err(|e| Error::io(&self.tmp, "statvfs", std::io::Error::from(e)))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize.max(1));
        let in_flight = self.in_flight.fetch_add(size, Ordering::Relaxed);
        let reservation = Reservation {
            in_flight: Arc::clone(&self.in_flight),
            size,
        };
        let reserve = self.client.limits().disk_reserve;
        if size.saturating_add(in_flight).saturating_add(reserve) > free {
            return Err(Error::NoSpace {
                digest: digest.to_string(),
                size,
                in_flight,
                reserve,
                free,
                dir: self.tmp.clone(),
            });
        }
        Ok(reservation)
    }

    fn open_blob(&self, digest: &Digest) -> Result<Finished> {
        let expect = self
            .plan
            .blobs
            .get(digest.as_str())
            .copied()
            .ok_or_else(|| {
                Error::protocol(
                    format!("blob {digest}"),
                    "not named by the manifest being pulled",
                )
            })?;
        let size = expect.size.unwrap_or(0);
        if !expect.document {
            check_blob_size(self.client.limits(), digest.as_str(), size)?;
        }
        let reservation = self.reserve(digest, size)?;
        let progress = Arc::clone(&self.progress);
        let d = digest.to_string();
        let reader = self.client.blob_reader(
            &self.repository,
            digest.as_str(),
            expect,
            Some(Box::new(move |n| {
                progress.event(&Event::Bytes {
                    digest: &d,
                    bytes: n,
                });
            })),
        )?;
        self.progress.event(&Event::Fetching {
            digest: digest.as_str(),
            size: reader.len(),
        });
        Ok(Finished {
            inner: reader,
            digest: digest.to_string(),
            progress: Arc::clone(&self.progress),
            done: false,
            raised: self.raised.clone(),
            _reservation: reservation,
        })
    }
}

impl BlobSource for Source {
    fn open(&self, digest: &Digest) -> berth_image::Result<Box<dyn Read + Send>> {
        match self.open_blob(digest) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) => Err(self.raised.store(e)),
        }
    }

    fn open_manifest(&self, digest: &Digest) -> berth_image::Result<Box<dyn Read + Send>> {
        if *digest == self.top.digest {
            return Ok(Box::new(Cursor::new(self.top.bytes.clone())));
        }
        if let Some(b) = self.plan.manifests.get(digest) {
            return Ok(Box::new(Cursor::new(b.clone())));
        }
        let m = fetch_manifest(&self.client, &self.repository, digest.as_str())
            .map_err(|e| self.raised.store(e))?;
        Ok(Box::new(Cursor::new(m.bytes)))
    }
}

/// Reports [`Event::Done`] at the end of a blob, and records the registry error that ends a
/// download in [`Source::raised`], giving the store its `io::Error`.
struct Finished {
    inner: crate::client::BlobReader,
    digest: String,
    progress: Arc<dyn Progress>,
    done: bool,
    raised: Raised,
    /// Released when the download ends.
    _reservation: Reservation,
}

impl Read for Finished {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read_blob(buf).map_err(|e| self.raised.io(e))?;
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
/// `localhost:5000/app:v1`, `app@sha256:...`), within the client's [`Limits`].
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
    let plan = resolve(client, store, reference, &top, &opts.platform)?;
    if opts.require_platform && plan.manifests.is_empty() {
        check_platform(client, reference, &top, &opts.platform)?;
    }
    let digest = top.digest.clone();
    let size = top.bytes.len() as u64;
    let src = Source {
        client: client.clone(),
        repository: reference.repository.clone(),
        top,
        plan,
        tmp: store.root().join("tmp"),
        in_flight: Arc::new(AtomicU64::new(0)),
        progress,
        raised: Raised::default(),
    };
    let import = ImportOptions {
        platform: opts.platform.clone(),
        name: None,
        parallel: opts.parallel.clamp(1, 8),
    };
    let record = store
        .import_from(&src, &reference.familiar(), &digest, Some(size), &import)
        .map_err(|e| src.raised.error_of(e))?;
    Ok(PullReport {
        record,
        digest,
        stats: client.stats().snapshot().since(&before),
    })
}
