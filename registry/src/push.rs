//! `push`: every blob of a stored image the registry lacks is sent (checked with `HEAD`
//! first, mounted from another repository of the same registry when the store knows one
//! that holds it), monolithically or in chunks, then the manifest.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use berth_overlay::image::media;
use berth_overlay::store::Store;
use berth_overlay::Digest;

use crate::client::{escape, Body, Client, StatsSnapshot};
use crate::error::{Error, Result};
use crate::progress::{Event, Progress};
use crate::reference::Reference;

/// Push options.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Upload blobs larger than this in `PATCH` chunks of this size (default: every blob in
    /// one `PUT`).
    pub chunk_size: Option<u64>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The manifest's digest (what `name@digest` now names).
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub existing: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// What moved over the network.
    pub stats: StatsSnapshot,
}

fn location(resp: &ureq::Response, what: &str) -> Result<String> {
    resp.header("location")
        .map(str::to_string)
        .ok_or_else(|| Error::protocol(what, "no Location header in the answer"))
}

fn with_query(url: &str, query: &str) -> String {
    format!("{url}{}{query}", if url.contains('?') { '&' } else { '?' })
}

/// Whether the repository has the blob (`HEAD`).
pub fn blob_exists(client: &Client, repository: &str, digest: &str) -> Result<bool> {
    let scopes = [format!("repository:{repository}:pull,push")];
    match client.send(
        "HEAD",
        &format!("/v2/{repository}/blobs/{digest}"),
        &scopes,
        &[],
        &Body::Empty,
    ) {
        Ok(_) => Ok(true),
        Err(Error::Registry { status: 404, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Repositories of the same registry that the store's images say hold `digest`.
fn mount_sources(store: &Store, target: &Reference, digest: &str) -> Vec<String> {
    let mut out = Vec::new();
    for rec in store.images().unwrap_or_default() {
        let has = rec.config == digest || rec.layers.iter().any(|l| l.blob == digest);
        if !has {
            continue;
        }
        if let Ok(r) = Reference::parse(&rec.name) {
            if r.registry == target.registry
                && r.repository != target.repository
                && !out.contains(&r.repository)
            {
                out.push(r.repository);
            }
        }
    }
    out
}

struct Uploader<'a> {
    client: &'a Client,
    store: &'a Store,
    target: &'a Reference,
    opts: &'a PushOptions,
    progress: &'a dyn Progress,
    scopes: Vec<String>,
}

enum Outcome {
    Existed,
    Mounted,
    Uploaded,
}

impl Uploader<'_> {
    fn push_blob(&self, digest: &Digest, size: u64) -> Result<Outcome> {
        let repo = &self.target.repository;
        let d = digest.as_str();
        if blob_exists(self.client, repo, d)? {
            self.progress.event(&Event::Exists { digest: d });
            return Ok(Outcome::Existed);
        }
        let mut session = None;
        // One mount attempt: a 202 already opened an upload session.
        if let Some(from) = mount_sources(self.store, self.target, d).into_iter().next() {
            let scopes = [
                format!("repository:{repo}:pull,push"),
                format!("repository:{from}:pull"),
            ];
            let path = format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from={}",
                escape(d),
                escape(&from)
            );
            let resp = self
                .client
                .send("POST", &path, &scopes, &[], &Body::Empty)?;
            if resp.status() == 201 {
                self.progress.event(&Event::Mounted {
                    digest: d,
                    from: &from,
                });
                return Ok(Outcome::Mounted);
            }
            // 202: no mount, but an upload session to use.
            session = Some(location(&resp, &path)?);
        }
        let start = format!("/v2/{repo}/blobs/uploads/");
        let mut loc = match session {
            Some(l) => l,
            None => {
                let resp = self
                    .client
                    .send("POST", &start, &self.scopes, &[], &Body::Empty)?;
                location(&resp, &start)?
            }
        };
        self.progress.event(&Event::Uploading { digest: d, size });
        let path = self.store.blob_path(digest);
        let open_range = |offset: u64| {
            let path = path.clone();
            move || -> std::io::Result<Box<dyn Read + Send>> {
                let mut f = std::fs::File::open(&path)?;
                f.seek(SeekFrom::Start(offset))?;
                Ok(Box::new(f))
            }
        };
        let octet = ("Content-Type", "application/octet-stream");
        let chunk = self.opts.chunk_size.filter(|c| *c > 0 && size > *c);
        let resp = match chunk {
            None => {
                let open = open_range(0);
                self.client.send(
                    "PUT",
                    &with_query(&loc, &format!("digest={}", escape(d))),
                    &self.scopes,
                    &[octet],
                    &Body::Reader {
                        open: &open,
                        len: size,
                    },
                )?
            }
            Some(c) => {
                let mut offset = 0;
                while offset < size {
                    let len = c.min(size - offset);
                    let open = open_range(offset);
                    let range = format!("{offset}-{}", offset + len - 1);
                    let resp = self.client.send(
                        "PATCH",
                        &loc,
                        &self.scopes,
                        &[octet, ("Content-Range", &range)],
                        &Body::Reader { open: &open, len },
                    )?;
                    loc = location(&resp, &loc)?;
                    offset += len;
                    self.progress.event(&Event::Bytes {
                        digest: d,
                        bytes: len,
                    });
                }
                self.client.send(
                    "PUT",
                    &with_query(&loc, &format!("digest={}", escape(d))),
                    &self.scopes,
                    &[],
                    &Body::Empty,
                )?
            }
        };
        if chunk.is_none() {
            self.progress.event(&Event::Bytes {
                digest: d,
                bytes: size,
            });
        }
        if let Some(got) = resp.header("docker-content-digest") {
            if got != d {
                return Err(Error::DigestMismatch {
                    what: format!("blob pushed to {repo}"),
                    expected: d.to_string(),
                    actual: got.to_string(),
                });
            }
        }
        self.progress.event(&Event::Done { digest: d });
        Ok(Outcome::Uploaded)
    }
}

/// Pushes the stored image `local` (a name or the reference's own familiar name) to
/// `target` (its tag, or its digest, which must then be the manifest's).
pub fn push(
    client: &Client,
    store: &Store,
    local: &str,
    target: &Reference,
    opts: &PushOptions,
    progress: &Arc<dyn Progress>,
) -> Result<PushReport> {
    let before = client.stats().snapshot();
    let rec = store.image(local)?;
    let manifest_digest = Digest::parse(&rec.manifest)?;
    let manifest = store.read_blob_document(&manifest_digest)?;
    let doc: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| Error::protocol(format!("manifest {manifest_digest}"), e.to_string()))?;
    let media_type = match doc.get("mediaType").and_then(|m| m.as_str()) {
        Some(m) => m.to_string(),
        None if doc["config"]["mediaType"] == media::DOCKER_CONFIG => media::DOCKER_MANIFEST.into(),
        None => media::OCI_MANIFEST.into(),
    };
    if let Some(d) = &target.digest {
        if *d != rec.manifest {
            return Err(Error::protocol(
                target.to_string(),
                format!("the image's manifest is {}, not {d}", rec.manifest),
            ));
        }
    }
    let config = Digest::parse(&rec.config)?;
    let config_size = store
        .open_blob(&config)?
        .metadata()
        .map_err(|e| Error::io(store.blob_path(&config), "stat", e))?
        .len();
    let mut blobs = vec![(config, config_size)];
    for l in &rec.layers {
        let d = Digest::parse(&l.blob)?;
        if !store.has_blob(&d) {
            return Err(Error::protocol(
                format!("image {}", rec.name),
                format!("layer blob {d} is not in the store (only its extracted layer is); pull or import the image again"),
            ));
        }
        if !blobs.iter().any(|(b, _)| *b == d) {
            blobs.push((d, l.size));
        }
    }
    let up = Uploader {
        client,
        store,
        target,
        opts,
        progress: progress.as_ref(),
        scopes: vec![format!("repository:{}:pull,push", target.repository)],
    };
    let (mut uploaded, mut existing, mut mounted) = (0, 0, 0);
    for (d, size) in &blobs {
        match up.push_blob(d, *size)? {
            Outcome::Existed => existing += 1,
            Outcome::Mounted => mounted += 1,
            Outcome::Uploaded => uploaded += 1,
        }
    }
    let path = format!("/v2/{}/manifests/{}", target.repository, target.target());
    let resp = client.send(
        "PUT",
        &path,
        &up.scopes,
        &[("Content-Type", &media_type)],
        &Body::Bytes(&manifest),
    )?;
    if let Some(got) = resp.header("docker-content-digest") {
        if got != rec.manifest {
            return Err(Error::DigestMismatch {
                what: format!("manifest pushed to {path}"),
                expected: rec.manifest.clone(),
                actual: got.to_string(),
            });
        }
    }
    progress.event(&Event::Resolved {
        reference: &target.familiar(),
        digest: &rec.manifest,
    });
    let after = client.stats().snapshot();
    Ok(PushReport {
        digest: manifest_digest,
        uploaded,
        existing,
        mounted,
        stats: StatsSnapshot {
            requests: after.requests - before.requests,
            bytes_received: after.bytes_received - before.bytes_received,
            bytes_sent: after.bytes_sent - before.bytes_sent,
            blobs_fetched: after.blobs_fetched - before.blobs_fetched,
            resumes: after.resumes - before.resumes,
        },
    })
}
