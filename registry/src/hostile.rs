//! Hostile registries (issue 14, item 6): a fake registry that misbehaves in one way per
//! test, pulled from with small limits and short timeouts set through [`ClientOptions`] (no
//! environment variable), so that the module runs in a few seconds.
//!
//! Every attack must fail with its own typed [`Error`] naming the digest or reference and
//! the limit, within a time budget the test asserts, having read or written no more than the
//! limit allows, and leave nothing behind: no temporary file in the store's `tmp/`, no layer,
//! no layer blob, no image and no hold.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_image::image::media;
use berth_image::{Digest, Platform, Store};

use crate::client::Client;
use crate::error::Error;
use crate::limits::{Limits, MAX_DOCUMENT};
use crate::progress::{Event, Progress};
use crate::pull::{self, PullOptions};
use crate::test_server::{options, pause, Reply, Request, Server};
use crate::Reference;

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TIB: u64 = 1 << 40;

/// Limits small and short enough for each attack to fail in about a second.
fn limits() -> Limits {
    Limits {
        max_blob_size: 64 << 30,
        max_layers: 128,
        disk_reserve: 0,
        idle_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        min_rate: 64 << 10,
        rate_grace: Duration::from_millis(300),
    }
}

/// An image's documents.
struct Image {
    config: Vec<u8>,
    config_digest: Digest,
    manifest: Vec<u8>,
}

/// A manifest of `layers` (digest, declared size) whose config lists `diff_ids` DiffIDs.
fn image(layers: &[(String, u64)], diff_ids: usize) -> Image {
    let diff: Vec<String> = (0..diff_ids)
        .map(|i| Digest::of(format!("diff {i}").as_bytes()).to_string())
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": Platform::host().architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff},
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let mut manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":["#,
        media::OCI_MANIFEST,
        config.len()
    );
    for (i, (digest, size)) in layers.iter().enumerate() {
        if i > 0 {
            manifest.push(',');
        }
        let _ = write!(
            manifest,
            r#"{{"mediaType":"{LAYER_TYPE}","digest":"{digest}","size":{size}}}"#
        );
    }
    manifest.push_str("]}");
    Image {
        config,
        config_digest,
        manifest: manifest.into_bytes(),
    }
}

/// `n` layers of distinct digests, 1 KiB each.
fn many_layers(n: usize) -> Vec<(String, u64)> {
    (0..n).map(|i| (format!("sha256:{i:064x}"), 1024)).collect()
}

/// A layer's digest (its content is never right: every test fails before the digest).
fn layer_digest() -> String {
    Digest::of(b"a layer").to_string()
}

/// A registry serving `app:v1` with `manifest`, `img`'s config as a blob, and `blob` for
/// every other blob (and the manifests of other digests, for indexes).
fn registry(
    img: &Image,
    manifest: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    blob: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> Server {
    let config = img.config.clone();
    let config_path = format!("/v2/app/blobs/{}", img.config_digest);
    Server::start("127.0.0.1", 0, move |r| {
        if r.path.starts_with("/v2/app/manifests/") {
            manifest(r)
        } else if r.path == config_path {
            Reply::with_body("200 OK", &[], config.clone())
        } else if r.path.starts_with("/v2/app/blobs/") {
            blob(r)
        } else {
            Reply::new("200 OK", &[])
        }
    })
}

/// A registry serving `app:v1`, an image of one layer declared `size` bytes whose blob
/// `blob` answers: the layer's digest, the image and the server.
fn one_layer(
    size: u64,
    blob: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> (String, Image, Server) {
    let layer = layer_digest();
    let img = image(&[(layer.clone(), size)], 1);
    let server = registry(&img, honest_manifest(&img), blob);
    (layer, img, server)
}

/// [`one_layer`] declared 1 MiB, whose blob is answered with that `Content-Length` and a body
/// a writer from `body` streams.
fn one_streamed_layer<W>(body: impl Fn() -> W + Send + Sync + 'static) -> (String, Image, Server)
where
    W: FnOnce(&mut TcpStream, &AtomicBool) + Send + 'static,
{
    const SIZE: u64 = 1 << 20;
    one_layer(SIZE, move |_| {
        Reply::streaming("200 OK", &[("Content-Length", &SIZE.to_string())], body())
    })
}

/// Serves `img`'s manifest as it is.
fn honest_manifest(img: &Image) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let m = img.manifest.clone();
    move |_| {
        Reply::with_body(
            "200 OK",
            &[("Content-Type", media::OCI_MANIFEST)],
            m.clone(),
        )
    }
}

/// A blob handler for blobs no test should reach.
fn no_blob(_: &Request) -> Reply {
    Reply::new("404 Not Found", &[])
}

/// Writes zeros until the client hangs up.
fn endless(conn: &mut TcpStream, stop: &AtomicBool) {
    let buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::SeqCst) && conn.write_all(&buf).is_ok() {}
}

/// Writes `prefix`, then `chunk` zero bytes every `every` until the client hangs up.
fn trickle(
    prefix: Vec<u8>,
    chunk: usize,
    every: Duration,
) -> impl FnOnce(&mut TcpStream, &AtomicBool) + Send + 'static {
    move |conn, stop| {
        let _ = conn.set_nodelay(true);
        if conn.write_all(&prefix).is_err() {
            return;
        }
        let buf = vec![b'x'; chunk];
        while pause(every, stop) && conn.write_all(&buf).is_ok() {}
    }
}

/// Writes `prefix`, then nothing for `stall` (or until the server is dropped).
fn stall(prefix: Vec<u8>, stall: Duration) -> impl FnOnce(&mut TcpStream, &AtomicBool) + Send {
    move |conn, stop| {
        if conn.write_all(&prefix).is_ok() {
            pause(stall, stop);
        }
    }
}

/// Counts the blob bytes a pull hands to the store.
#[derive(Default)]
struct Handed(AtomicU64);

impl Progress for Handed {
    fn event(&self, event: &Event<'_>) {
        if let Event::Bytes { bytes, .. } = event {
            self.0.fetch_add(*bytes, Ordering::Relaxed);
        }
    }
}

/// A pull's outcome and what it left.
struct Pulled {
    result: crate::Result<pull::PullReport>,
    elapsed: Duration,
    /// Blob bytes handed to the store.
    handed: Arc<Handed>,
    store: Store,
    dir: tempfile::TempDir,
}

impl Pulled {
    /// The error, the time it took, the store and its directory (removed when dropped).
    fn err(self) -> (Error, Duration, Store, tempfile::TempDir) {
        match self.result {
            Ok(r) => panic!("the pull succeeded: {}", r.record.name),
            Err(e) => {
                eprintln!("failed in {:?}: {e}", self.elapsed);
                (e, self.elapsed, self.store, self.dir)
            }
        }
    }
}

/// Pulls `app:v1` from `server` into a new store with `limits`.
fn pull_from(server: &Server, limits: Limits) -> Pulled {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let client = Client::new(&server.host(), options(limits)).unwrap();
    let r = Reference::parse(&format!("{}/app:v1", server.host())).unwrap();
    let start = Instant::now();
    let handed = Arc::new(Handed::default());
    let progress: Arc<dyn Progress> = handed.clone();
    let result = pull::pull(&client, &store, &r, &PullOptions::default(), progress);
    Pulled {
        result,
        elapsed: start.elapsed(),
        handed,
        store,
        dir,
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

impl Image {
    /// The manifest's and the config's digests.
    fn documents(&self) -> Vec<Digest> {
        vec![Digest::of(&self.manifest), self.config_digest.clone()]
    }
}

/// Nothing of the failed pull is left: no temporary file, layer, layer blob, image or hold
/// (verified documents, `docs`, may stay).
fn assert_clean(store: &Store, docs: &[Digest]) {
    let root = store.root();
    assert_eq!(entries(&root.join("tmp")), Vec::<String>::new(), "tmp/");
    assert_eq!(
        entries(&root.join("layers")),
        Vec::<String>::new(),
        "layers/"
    );
    let blobs: Vec<String> = entries(&root.join("blobs/sha256"))
        .into_iter()
        .filter(|b| !docs.iter().any(|d| d.hex() == b))
        .collect();
    assert_eq!(blobs, Vec::<String>::new(), "blobs/sha256");
    assert!(store.images().unwrap().is_empty());
    assert!(store.holds().unwrap().is_empty());
}

/// Asserts that the error `$e` matches the pattern (and guard) that follows, showing the
/// error when it does not.
macro_rules! assert_error {
    ($e:expr, $($pattern:tt)+) => {
        assert!(matches!(&$e, $($pattern)+), "{}", $e)
    };
}

/// Asserts that a failed pull took less than the time budget (3 s) and left nothing behind
/// but the documents `docs` ([`assert_clean`]).
fn assert_quick_and_clean(elapsed: Duration, store: &Store, docs: &[Digest]) {
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_clean(store, docs);
}

/// Blob requests the server received.
fn blob_requests(server: &Server) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .map(|r| r.path)
        .collect()
}

/// Free bytes (for unprivileged users) of the filesystem of `path`.
fn free_bytes(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).unwrap();
    st.f_bavail.saturating_mul(st.f_frsize.max(1))
}

/// The issue's first attack: a layer declared 1 TiB (and served endlessly) is refused
/// before it is requested: above the blob size limit, and, with the limit raised, above the
/// free space.
#[test]
fn a_tebibyte_blob_is_refused_before_it_is_requested() {
    let (layer, img, server) = one_layer(TIB, |_| {
        Reply::streaming("200 OK", &[("Content-Length", &TIB.to_string())], endless)
    });
    let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
    let text = e.to_string();
    assert_error!(e, Error::BlobTooLarge { digest, size, limit }
        if *digest == layer && *size == TIB && *limit == 64 << 30);
    assert!(
        text.contains("1 TiB")
            && text.contains("64 GiB")
            && text.contains("BERTH_PULL_MAX_BLOB_SIZE"),
        "{text}"
    );
    assert!(
        blob_requests(&server).is_empty(),
        "{:?}",
        blob_requests(&server)
    );
    assert_quick_and_clean(elapsed, &store, &[]);

    // With the size limit out of the way, the free space refuses it.
    let pulled = pull_from(
        &server,
        Limits {
            max_blob_size: u64::MAX,
            ..limits()
        },
    );
    let tmp = pulled.store.root().join("tmp");
    if free_bytes(&tmp) >= TIB {
        eprintln!(
            "{} has a TiB free: the free-space case is not checked",
            tmp.display()
        );
        return;
    }
    let (e, elapsed, store, _dir) = pulled.err();
    let text = e.to_string();
    assert_error!(e, Error::NoSpace { digest, size, .. } if *digest == layer && *size == TIB);
    assert!(text.contains("BERTH_PULL_DISK_RESERVE"), "{text}");
    let asked = blob_requests(&server);
    assert!(!asked.iter().any(|p| p.ends_with(&layer)), "{asked:?}");
    assert_quick_and_clean(elapsed, &store, &img.documents());
}

/// A layer whose body never ends is cut one byte past its declared size: no more than the
/// declared size reaches the store, and its temporary blob is removed.
#[test]
fn an_endless_blob_is_cut_at_its_declared_size() {
    let size = 256 << 10;
    // No Content-Length: the body ends when the connection does (never).
    let (layer, img, server) = one_layer(size, |_| Reply::streaming("200 OK", &[], endless));
    let pulled = pull_from(&server, limits());
    let handed = Arc::clone(&pulled.handed);
    let (e, elapsed, store, _dir) = pulled.err();
    let text = e.to_string();
    assert_error!(e, Error::BlobOverrun { digest, declared }
        if *digest == layer && *declared == size);
    // The config, then at most the layer's declared size.
    let handed = handed.0.load(Ordering::Relaxed);
    assert!(handed <= img.config.len() as u64 + size, "{handed}");
    assert!(
        text.contains("size mismatch") && text.contains(&layer),
        "{text}"
    );
    assert_quick_and_clean(elapsed, &store, &img.documents());
}

/// A `Content-Length` that is not the descriptor's size is refused before a byte is written,
/// a larger one and a smaller one.
#[test]
fn a_content_length_other_than_the_descriptor_is_refused() {
    for sent in [2000usize, 10] {
        let (layer, img, server) = one_layer(1000, move |_| {
            Reply::with_body("200 OK", &[], vec![0; sent])
        });
        let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
        let text = e.to_string();
        assert_error!(e, Error::ContentLength { digest, declared, content_length }
            if *digest == layer && *declared == 1000 && *content_length == sent as u64);
        assert!(text.contains("size mismatch"), "{text}");
        assert_quick_and_clean(elapsed, &store, &img.documents());
    }
}

/// A manifest that never ends is cut at 4 MiB (and one declared larger is not read).
#[test]
fn an_endless_manifest_is_cut_at_four_mebibytes() {
    let img = image(&[], 0);
    let server = registry(
        &img,
        |_| Reply::streaming("200 OK", &[("Content-Type", media::OCI_MANIFEST)], endless),
        no_blob,
    );
    let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
    let text = e.to_string();
    assert_error!(e, Error::DocumentTooLarge { what, limit }
        if what == "manifest app:v1" && *limit == MAX_DOCUMENT);
    assert!(text.contains("4 MiB"), "{text}");
    assert!(blob_requests(&server).is_empty());
    assert_quick_and_clean(elapsed, &store, &[]);

    let server = registry(
        &img,
        |_| Reply::streaming("200 OK", &[("Content-Length", &TIB.to_string())], endless),
        no_blob,
    );
    let (e, elapsed, _, _dir) = pull_from(&server, limits()).err();
    assert!(matches!(e, Error::DocumentTooLarge { .. }), "{e}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

/// A manifest trickled a byte at a time (each byte well within the idle timeout) fails at
/// the request deadline.
#[test]
fn a_trickled_manifest_hits_the_deadline() {
    let img = image(&[], 0);
    let server = registry(
        &img,
        |_| {
            Reply::streaming(
                "200 OK",
                &[("Content-Length", "1000")],
                trickle(b"{".to_vec(), 1, Duration::from_millis(100)),
            )
        },
        no_blob,
    );
    let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
    let text = e.to_string();
    assert_error!(e, Error::Timeout { what, limit }
        if what == "manifest app:v1" && *limit == Duration::from_secs(1));
    assert!(text.contains("BERTH_REGISTRY_TIMEOUT"), "{text}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert_quick_and_clean(elapsed, &store, &[]);
}

/// A blob whose response headers are trickled fails at the request deadline, although each
/// byte comes within the idle timeout.
#[test]
fn trickled_blob_headers_hit_the_deadline() {
    let (layer, img, server) = one_layer(1000, |_| {
        Reply::raw(trickle(
            b"HTTP/1.1 200 OK\r\nX-Slow: ".to_vec(),
            1,
            Duration::from_millis(100),
        ))
    });
    let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
    assert_error!(e, Error::Timeout { what, .. } if *what == format!("blob {layer}"));
    assert_quick_and_clean(elapsed, &store, &img.documents());
}

/// A blob that stops sending mid-way fails at the idle timeout, naming where it stopped.
#[test]
fn a_stalled_blob_hits_the_idle_timeout() {
    let (layer, img, server) = one_streamed_layer(|| stall(vec![0; 1000], Duration::from_secs(30)));
    let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
    let text = e.to_string();
    assert_error!(e, Error::Idle { what, offset, limit }
        if *what == format!("blob {layer}") && *offset == 1000
            && *limit == Duration::from_millis(500));
    assert!(text.contains("BERTH_REGISTRY_IDLE_TIMEOUT"), "{text}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert_quick_and_clean(elapsed, &store, &img.documents());
}

/// A blob trickled below the minimum rate (each chunk within the idle timeout) fails once
/// the grace period has passed.
#[test]
fn a_trickled_blob_below_the_minimum_rate_fails() {
    // About 10 KiB/s, a sixth of the minimum.
    let (layer, img, server) =
        one_streamed_layer(|| trickle(vec![0; 512], 512, Duration::from_millis(50)));
    let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
    let text = e.to_string();
    assert_error!(e, Error::TooSlow { what, received, min_rate, elapsed }
        if *what == format!("blob {layer}") && *received < 64 << 10 && *min_rate == 64 << 10
            && *elapsed > Duration::from_millis(300));
    assert!(text.contains("BERTH_REGISTRY_MIN_RATE"), "{text}");
    assert_quick_and_clean(elapsed, &store, &img.documents());
}

/// The issue's third attack: 20,000 layers (and 129, one past the limit, also behind an
/// index) are refused from the manifest, before any blob (the config included) is
/// requested; 128 pass the check.
#[test]
fn too_many_layers_are_refused_before_any_blob_is_requested() {
    for n in [20_000, 129] {
        let img = image(&many_layers(n), n);
        let server = registry(&img, honest_manifest(&img), no_blob);
        let (e, elapsed, store, _dir) = pull_from(&server, limits()).err();
        let text = e.to_string();
        assert_error!(e, Error::TooManyLayers { layers, limit, digest, .. }
            if *layers == n && *limit == 128
                && *digest == Digest::of(&img.manifest).to_string());
        assert!(
            text.contains(&format!("{n} layers"))
                && text.contains("128")
                && text.contains("BERTH_PULL_MAX_LAYERS"),
            "{text}"
        );
        assert_eq!(blob_requests(&server), Vec::<String>::new());
        assert_quick_and_clean(elapsed, &store, &[]);
    }

    // Behind an index: the platform's manifest is checked before any blob too.
    let img = image(&many_layers(129), 129);
    let child = Digest::of(&img.manifest);
    let p = Platform::host();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{
            "mediaType": media::OCI_MANIFEST,
            "digest": child.to_string(),
            "size": img.manifest.len(),
            "platform": {"os": p.os, "architecture": p.architecture, "variant": p.variant},
        }],
    }))
    .unwrap();
    let manifest = img.manifest.clone();
    let child_path = format!("/v2/app/manifests/{child}");
    let server = registry(
        &img,
        move |r| {
            let (body, kind) = if r.path == child_path {
                (manifest.clone(), media::OCI_MANIFEST)
            } else {
                (index.clone(), media::OCI_INDEX)
            };
            Reply::with_body("200 OK", &[("Content-Type", kind)], body)
        },
        no_blob,
    );
    let (e, _, store, _dir) = pull_from(&server, limits()).err();
    assert_error!(e, Error::TooManyLayers { layers: 129, digest, .. }
        if *digest == child.to_string());
    assert_eq!(blob_requests(&server), Vec::<String>::new());
    assert_clean(&store, &[]);

    // 128 layers pass: the config is fetched (and, listing no DiffID, fails the import).
    let img = image(&many_layers(128), 0);
    let server = registry(&img, honest_manifest(&img), no_blob);
    let (e, _, store, _dir) = pull_from(&server, limits()).err();
    assert!(!matches!(e, Error::TooManyLayers { .. }), "{e}");
    assert!(e.to_string().contains("diff_ids"), "{e}");
    assert_eq!(
        blob_requests(&server),
        vec![format!("/v2/app/blobs/{}", img.config_digest)]
    );
    assert_clean(&store, &img.documents());
}

/// A blob that would leave less than the reserve free is not requested.
#[test]
fn insufficient_free_space_is_refused() {
    let (_, img, server) = one_layer(1000, |_| Reply::with_body("200 OK", &[], vec![0; 1000]));
    let dir = tempfile::tempdir().unwrap();
    let reserve = free_bytes(dir.path()) + (1 << 30);
    let (e, elapsed, store, _dir) = pull_from(
        &server,
        Limits {
            disk_reserve: reserve,
            ..limits()
        },
    )
    .err();
    let text = e.to_string();
    // The config is the first blob asked for.
    assert_error!(e, Error::NoSpace { digest, size, reserve: r, .. }
        if *digest == img.config_digest.to_string() && *size == img.config.len() as u64
            && *r == reserve);
    assert!(
        text.contains("BERTH_PULL_DISK_RESERVE") && text.contains("free"),
        "{text}"
    );
    assert_eq!(blob_requests(&server), Vec::<String>::new());
    assert_quick_and_clean(elapsed, &store, &img.documents());
}
