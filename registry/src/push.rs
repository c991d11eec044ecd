//! `push`: every blob of a stored image the registry lacks is sent (checked with `HEAD`
//! first, mounted from another repository of the same registry when the store knows one
//! that holds it), monolithically or in chunks, then the manifest.
//!
//! Every step's status is checked against the one the distribution spec gives for success
//! (`202 Accepted` for `POST` and `PATCH` of an upload, `201 Created` for the `PUT` that
//! completes it and for the manifest): a redirect that ureq turned into a `GET`, or one it
//! did not follow, is an error, not a blob the registry is assumed to have.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use berth_image::image::media;
use berth_image::store::Store;
use berth_image::Digest;

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

/// The answer's `Location`, resolved against the URL that answered (it may be relative).
/// Whether it may carry credentials, or be plain HTTP, is [`Client`]'s to decide when it is
/// used.
fn location(resp: &ureq::Response, what: &str) -> Result<url::Url> {
    let loc = resp
        .header("location")
        .ok_or_else(|| Error::protocol(what, "no Location header in the answer"))?;
    let base = url::Url::parse(resp.get_url())
        .map_err(|e| Error::protocol(what, format!("the answer's URL: {e}")))?;
    base.join(loc)
        .map_err(|e| Error::protocol(what, format!("Location {loc:?}: {e}")))
}

/// `url` with the `digest` query parameter added to what it has.
fn with_digest(url: &url::Url, digest: &str) -> String {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("digest", digest);
    url.into()
}

/// The status a step of a push must answer with: `201 Created` or `202 Accepted`.
fn expect_status(resp: ureq::Response, want: &[u16], step: &str) -> Result<ureq::Response> {
    let status = resp.status();
    if want.contains(&status) {
        return Ok(resp);
    }
    let names: Vec<String> = want
        .iter()
        .map(|w| match w {
            201 => "201 Created".to_string(),
            202 => "202 Accepted".to_string(),
            other => other.to_string(),
        })
        .collect();
    let mut reason = format!(
        "HTTP {status} {} instead of {}",
        resp.status_text(),
        names.join(" or ")
    );
    if (300..400).contains(&status) {
        if let Some(l) = resp.header("location") {
            let _ = write!(reason, " (a redirect to {l}, which a push does not follow)");
        }
    }
    Err(Error::protocol(step, reason))
}

/// The digest the registry computed for what it stored (`Docker-Content-Digest`), when it
/// says, must be `expected`.
fn check_digest(resp: &ureq::Response, expected: &str, what: impl Fn() -> String) -> Result<()> {
    match resp.header("docker-content-digest") {
        Some(got) if got != expected => Err(Error::DigestMismatch {
            what: what(),
            expected: expected.to_string(),
            actual: got.to_string(),
        }),
        _ => Ok(()),
    }
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
        Ok(resp) if resp.status() == 200 => Ok(true),
        Ok(resp) => Err(Error::protocol(
            format!("HEAD blob {digest} in {repository}"),
            format!("HTTP {} instead of 200 OK or 404", resp.status()),
        )),
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
            let resp = expect_status(
                self.client
                    .send("POST", &path, &scopes, &[], &Body::Empty)?,
                &[201, 202],
                &format!("POST mount of blob {d} from {from} into {repo}"),
            )?;
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
                let resp = expect_status(
                    self.client
                        .send("POST", &start, &self.scopes, &[], &Body::Empty)?,
                    &[202],
                    &format!("POST upload of blob {d} to {repo}"),
                )?;
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
                expect_status(
                    self.client.send(
                        "PUT",
                        &with_digest(&loc, d),
                        &self.scopes,
                        &[octet],
                        &Body::Reader {
                            open: &open,
                            len: size,
                        },
                    )?,
                    &[201],
                    &format!("PUT (monolithic upload) of blob {d} to {repo}"),
                )?
            }
            Some(c) => {
                let mut offset = 0;
                while offset < size {
                    let len = c.min(size - offset);
                    let open = open_range(offset);
                    let range = format!("{offset}-{}", offset + len - 1);
                    let resp = expect_status(
                        self.client.send(
                            "PATCH",
                            loc.as_str(),
                            &self.scopes,
                            &[octet, ("Content-Range", &range)],
                            &Body::Reader { open: &open, len },
                        )?,
                        &[202],
                        &format!("PATCH of bytes {range} of blob {d} to {repo}"),
                    )?;
                    loc = location(&resp, loc.as_str())?;
                    offset += len;
                    self.progress.event(&Event::Bytes {
                        digest: d,
                        bytes: len,
                    });
                }
                expect_status(
                    self.client.send(
                        "PUT",
                        &with_digest(&loc, d),
                        &self.scopes,
                        &[],
                        &Body::Empty,
                    )?,
                    &[201],
                    &format!("PUT (closing the chunked upload) of blob {d} to {repo}"),
                )?
            }
        };
        if chunk.is_none() {
            self.progress.event(&Event::Bytes {
                digest: d,
                bytes: size,
            });
        }
        check_digest(&resp, d, || format!("blob pushed to {repo}"))?;
        self.progress.event(&Event::Done { digest: d });
        Ok(Outcome::Uploaded)
    }
}

/// `PUT` of the manifest (`201 Created`, and the digest the registry computed, when it says,
/// must be `digest`).
fn put_manifest(
    client: &Client,
    target: &Reference,
    scopes: &[String],
    media_type: &str,
    manifest: &[u8],
    digest: &str,
) -> Result<()> {
    let path = format!("/v2/{}/manifests/{}", target.repository, target.target());
    let resp = expect_status(
        client.send(
            "PUT",
            &path,
            scopes,
            &[("Content-Type", media_type)],
            &Body::Bytes(manifest),
        )?,
        &[201],
        &format!("PUT of manifest {digest} to {path}"),
    )?;
    check_digest(&resp, digest, || format!("manifest pushed to {path}"))
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
    put_manifest(
        client,
        target,
        &up.scopes,
        &media_type,
        &manifest,
        &rec.manifest,
    )?;
    progress.event(&Event::Resolved {
        reference: &target.familiar(),
        digest: &rec.manifest,
    });
    Ok(PushReport {
        digest: manifest_digest,
        uploaded,
        existing,
        mounted,
        stats: client.stats().snapshot().since(&before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::test_server::{alice, basic_challenge, Reply, Request, Server, BASIC};

    /// What the fake registry answers to each step of an upload.
    #[derive(Clone, Copy)]
    struct Answers {
        head: &'static str,
        post: &'static str,
        patch: &'static str,
        put: &'static str,
        manifest: &'static str,
    }

    const SPEC: Answers = Answers {
        head: "404 Not Found",
        post: "202 Accepted",
        patch: "202 Accepted",
        put: "201 Created",
        manifest: "201 Created",
    };

    impl Answers {
        /// These answers, but `status` for `step` (a field's name).
        fn but(mut self, step: &str, status: &'static str) -> Answers {
            *match step {
                "head" => &mut self.head,
                "post" => &mut self.post,
                "patch" => &mut self.patch,
                "put" => &mut self.put,
                "manifest" => &mut self.manifest,
                other => panic!("no step {other}"),
            } = status;
            self
        }
    }

    /// A registry on 127.0.0.1 wanting Basic `alice:secret`, without any blob, answering
    /// the upload steps as `a` says; `upload` is where its `Location`s send the upload.
    fn registry(a: Answers, upload: Option<String>) -> Server {
        Server::start("127.0.0.1", 0, move |r: &Request| {
            // Where the redirects of a PUT lead (ureq drops the credentials there).
            if r.path == "/v2/app/blobs/elsewhere" {
                return Reply::new("200 OK", &[]);
            }
            if r.header("authorization") != Some(BASIC) {
                return basic_challenge();
            }
            let loc = upload
                .clone()
                .unwrap_or_else(|| "/v2/app/blobs/uploads/u1?_state=s".into());
            match (r.method.as_str(), r.path.as_str()) {
                ("HEAD", p) if p.contains("/blobs/sha256:") => Reply::new(a.head, &[]),
                ("POST", "/v2/app/blobs/uploads/") => Reply::new(a.post, &[("Location", &loc)]),
                ("PATCH", _) => Reply::new(a.patch, &[("Location", &loc)]),
                ("PUT", p) if p.contains("/blobs/uploads/") => {
                    Reply::new(a.put, &[("Location", "/v2/app/blobs/elsewhere")])
                }
                ("PUT", p) if p.contains("/manifests/") => Reply::new(a.manifest, &[]),
                _ => Reply::new("200 OK", &[]),
            }
        })
    }

    fn client(host: &str) -> Client {
        Client::new(host, alice(false)).unwrap()
    }

    /// Pushes a 10-byte blob to `host`'s `app` (in chunks of `chunk` bytes when given).
    fn push_one(host: &str, chunk: Option<u64>) -> Result<Outcome> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let digest = store.put_blob_from(&mut &b"0123456789"[..], None).unwrap();
        let client = client(host);
        let target = Reference::parse(&format!("{host}/app:v1")).unwrap();
        let up = Uploader {
            client: &client,
            store: &store,
            target: &target,
            opts: &PushOptions { chunk_size: chunk },
            progress: &Silent,
            scopes: vec!["repository:app:pull,push".into()],
        };
        up.push_blob(&digest, 10)
    }

    fn push_err(a: Answers, chunk: Option<u64>) -> String {
        let reg = registry(a, None);
        match push_one(&reg.host(), chunk) {
            Ok(_) => panic!("the push succeeded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn uploads_follow_the_spec_statuses() {
        let reg = registry(SPEC, None);
        assert!(matches!(push_one(&reg.host(), None), Ok(Outcome::Uploaded)));
        assert!(matches!(
            push_one(&reg.host(), Some(4)),
            Ok(Outcome::Uploaded)
        ));
        let patches = reg
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .count();
        assert_eq!(patches, 3);
    }

    /// Finding: push never checked status codes: a 200 (or an unfollowed 307, or a 301
    /// that ureq turned into a GET) counted as a blob stored.
    #[test]
    fn unexpected_statuses_fail_the_push() {
        let cases: [(&str, &str, Option<u64>, &[&str]); 7] = [
            ("put", "200 OK", None, &["PUT", "HTTP 200", "201"]),
            ("put", "307 Temporary Redirect", None, &["PUT", "HTTP 307"]),
            // A 301 on PUT is not followed (ureq once turned it into a GET, whose 200 was not
            // a stored blob either).
            ("put", "301 Moved Permanently", None, &["PUT", "HTTP 301"]),
            // An unfollowed redirect is not "the registry has the blob".
            (
                "head",
                "307 Temporary Redirect",
                None,
                &["HEAD", "HTTP 307"],
            ),
            ("post", "200 OK", None, &["POST", "202 Accepted"]),
            ("patch", "204 No Content", Some(4), &["PATCH", "HTTP 204"]),
            (
                "put",
                "202 Accepted",
                Some(4),
                &["closing the chunked upload", "HTTP 202"],
            ),
        ];
        for (step, status, chunk, wanted) in cases {
            let e = push_err(SPEC.but(step, status), chunk);
            assert!(wanted.iter().all(|w| e.contains(w)), "{wanted:?}: {e}");
        }

        for (status, ok) in [("200 OK", false), ("201 Created", true)] {
            let reg = registry(SPEC.but("manifest", status), None);
            let client = client(&reg.host());
            let target = Reference::parse(&format!("{}/app:v1", reg.host())).unwrap();
            let r = put_manifest(
                &client,
                &target,
                &["repository:app:pull,push".into()],
                media::OCI_MANIFEST,
                b"{}",
                "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            );
            assert_eq!(r.is_ok(), ok, "{status}: {r:?}");
            if let Err(e) = r {
                let e = e.to_string();
                assert!(e.contains("manifest") && e.contains("HTTP 200"), "{e}");
            }
        }
    }

    /// Finding: the upload `Location` of another host received the registry's credentials.
    #[test]
    fn an_upload_elsewhere_gets_no_credentials() {
        let elsewhere = Server::start("127.0.0.2", 0, |_| Reply::new("201 Created", &[]));
        let reg = registry(
            SPEC,
            Some(format!("http://{}/upload/u1?_state=s", elsewhere.host())),
        );
        assert!(matches!(push_one(&reg.host(), None), Ok(Outcome::Uploaded)));
        let got = elsewhere.requests();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].method, "PUT");
        assert!(got[0]
            .path
            .starts_with("/upload/u1?_state=s&digest=sha256%3A"));
        assert_eq!(got[0].body, b"0123456789");
        assert_eq!(got[0].header("authorization"), None);
        // The registry itself was asked with them.
        assert!(reg
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.header("authorization") == Some(BASIC)));
    }
}
