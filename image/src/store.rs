//! A content-addressed image store.
//!
//! Layout under the root (default `/var/lib/berth`):
//!
//! ```text
//! blobs/sha256/<hex>     manifests, configs and layer blobs, verified while streaming
//! layers/<chain-hex>/    one extracted layer per ChainID: diff/ (an overlayfs lower layer)
//!                        and layer.json; present only once complete (renamed into place)
//! l/<short>              short symlinks to layers/<chain-hex>/diff, for mount strings
//! state.json             images (name -> manifest, config, layers) and holds (bundles)
//! tmp/                   in-progress imports, named after the importing pid
//! ```
//!
//! Every write is a temporary file or directory renamed into place after an fsync (a layer:
//! one `syncfs` after extraction), so a crash or `kill -9` mid-import leaves at most garbage
//! in `tmp/` (removed when a later [`Store::open`] finds its pid gone), never a half blob or
//! layer. Blobs are verified against their digest while they are copied in; a layer's DiffID
//! is verified while it is extracted. Layers are shared by every image whose chain contains
//! them, and independent layers of one image are extracted in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oci_spec::image::ImageManifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::extract::{self, Compression, ExtractOptions, ImageBudget, Limits, Mode};
use crate::image::{self, media, Digest, Document, Platform};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// Largest manifest, index or config accepted (4 MiB).
const MAX_DOCUMENT: u64 = 4 << 20;

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// ChainID of the image's layers up to and including this one (the cache key).
    pub chain_id: String,
    /// DiffID: digest of the uncompressed tar stream.
    pub diff_id: String,
    /// Digest of the blob as stored (compressed or not).
    pub blob: String,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Its name (`name:tag`).
    pub name: String,
    /// Digest of the manifest.
    pub manifest: String,
    /// Digest of the config.
    pub config: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The platform it was selected for.
    pub platform: String,
}

/// What a bundle (or anything else) keeps alive while it uses an image's layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The image the holder was made from.
    pub image: String,
    /// Blobs kept.
    pub blobs: Vec<String>,
    /// Layers (ChainIDs) kept.
    pub chains: Vec<String>,
    /// The process that took the hold (to tell a hold whose maker was killed before it
    /// finished from one still being made); absent in stores written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    /// Its pid.
    pub pid: i32,
    /// Its start time (clock ticks since boot, from `/proc/<pid>/stat`).
    pub start: u64,
}

impl Creator {
    /// The calling process.
    pub fn current() -> Option<Creator> {
        let pid = std::process::id() as i32;
        let (start, _) = berth_runtime::proc_info::start_time(pid)?;
        Some(Creator { pid, start })
    }

    /// Whether that very process still runs (not a zombie, not a reused pid).
    pub fn is_alive(&self) -> bool {
        berth_runtime::proc_info::start_time(self.pid)
            .is_some_and(|(start, zombie)| start == self.start && !zombie)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    images: BTreeMap<String, ImageRecord>,
    holds: BTreeMap<String, Hold>,
}

/// Import options.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The platform to select from an index (default: the host's).
    pub platform: Platform,
    /// The name to give the image (required when the source names none; selects one image
    /// when the source has several).
    pub name: Option<String>,
    /// How many layers to extract at once.
    pub parallel: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            platform: Platform::host(),
            name: None,
            parallel: 2,
        }
    }
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Blobs removed.
    pub blobs: usize,
    /// Extracted layers removed.
    pub layers: usize,
    /// Leftovers of interrupted imports removed.
    pub temporaries: usize,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Extraction runs unprivileged (devices skipped, ownership best effort).
    rootless: bool,
    /// Bounds on what layers may make extraction do.
    limits: Limits,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_at<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'p {
    move |e| Error::io(path, op, e)
}

/// An advisory lock on a file in the store, released on drop.
struct Lock(#[allow(dead_code)] File);

fn lock(path: &Path, exclusive: bool) -> Result<Lock> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path, "open lock"))?;
    let op = if exclusive {
        rustix::fs::FlockOperation::LockExclusive
    } else {
        rustix::fs::FlockOperation::LockShared
    };
    loop {
        match rustix::fs::flock(f.as_fd(), op) {
            Ok(()) => return Ok(Lock(f)),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io(path, "flock", e)),
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir, "fsync directory"))
}

/// Writes `data` to `path` atomically and durably (temp, fsync, rename, fsync dir).
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp, "create"))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_at(&tmp, "write"))?;
    fs::rename(&tmp, path).map_err(io_at(path, "rename into place"))?;
    fsync_dir(dir)
}

/// Normalises an image name: a missing tag becomes `:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('\0') {
        return Err(Error::invalid(
            format!("image name {name:?}"),
            "empty or contains whitespace",
        ));
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}:latest"))
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Where an import reads blobs from: a layout directory, an archive, or a registry (the
/// `berth-registry` crate implements it for pulls through [`Store::import_from`]).
///
/// Everything a source returns is verified by the store against the digest it was asked for
/// (and the size its descriptor declares) while it is copied in; a source need not check.
pub trait BlobSource: Sync {
    /// Opens the blob for `digest` (a config or layer).
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;

    /// Opens the manifest or index for `digest` (registries serve them apart from blobs).
    fn open_manifest(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        self.open(digest)
    }
}

/// An OCI image layout directory.
struct LayoutSource {
    dir: PathBuf,
}

impl BlobSource for LayoutSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let p = self.dir.join("blobs/sha256").join(digest.hex());
        Ok(Box::new(File::open(&p).map_err(io_at(&p, "open blob"))?))
    }
}

/// Blobs already in the store.
struct NoSource;

impl BlobSource for NoSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Err(Error::invalid(
            format!("blob {digest}"),
            "not in the store and no source to import it from",
        ))
    }
}

/// A layer blob on its way in: what the extractor reads is hashed and written to a temporary
/// blob file, and more bytes than the descriptor declares is an error.
struct BlobTee<'a> {
    inner: Box<dyn Read + Send>,
    file: File,
    path: &'a Path,
    hasher: Sha256,
    total: u64,
    size: u64,
}

impl Read for BlobTee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        if self.total > self.size {
            return Err(io::Error::other(format!(
                "larger than its declared size {}",
                self.size
            )));
        }
        self.hasher.update(&buf[..n]);
        self.file.write_all(&buf[..n]).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: write: {e}", self.path.display()))
        })?;
        Ok(n)
    }
}

impl Store {
    /// Opens (creating if needed) a store at `root`, and removes leftovers of imports whose
    /// process is gone.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in ["", "blobs", "blobs/sha256", "layers", "l", "tmp"] {
            let p = root.join(d);
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(p, "create store directory", e)),
            }
        }
        let store = Store {
            root,
            rootless: !rustix::process::geteuid().is_root(),
            limits: Limits::from_env()?,
        };
        store.clean_tmp()?;
        Ok(store)
    }

    /// Opens the store at [`DEFAULT_ROOT`].
    pub fn open_default() -> Result<Store> {
        Store::open(DEFAULT_ROOT)
    }

    /// Extract layers as an unprivileged user would (devices skipped, ownership best effort).
    /// Defaults to whether the process runs as root.
    pub fn set_rootless(&mut self, rootless: bool) {
        self.rootless = rootless;
    }

    /// Bounds on layer extraction (per layer and per image, metadata, free space): from
    /// [`Limits::from_env`] when the store is opened.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The bounds on layer extraction.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh budget for extracting the layers of the image `name`
    /// ([`Limits::max_image_bytes`]).
    pub fn image_budget(&self, name: &str) -> Arc<ImageBudget> {
        Arc::new(ImageBudget::new(name, self.limits.max_image_bytes))
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Directory of an extracted layer (an overlayfs lower layer), by ChainID.
    pub fn layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex()).join("diff")
    }

    /// A short path (`<root>/l/<12 hex>`) that resolves to [`Store::layer_path`], for
    /// overlay mount strings.
    pub fn short_layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("l").join(&chain_id.hex()[..12])
    }

    /// Whether a layer is extracted and complete.
    pub fn has_layer(&self, chain_id: &Digest) -> bool {
        self.layer_path(chain_id).is_dir()
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{}-{}-{what}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn clean_tmp(&self) -> Result<usize> {
        let tmp = self.root.join("tmp");
        let mut removed = 0;
        for ent in fs::read_dir(&tmp).map_err(io_at(&tmp, "read"))? {
            let ent = ent.map_err(io_at(&tmp, "read"))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(pid_alive) {
                continue;
            }
            remove_any(&ent.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    fn state_lock(&self) -> Result<Lock> {
        lock(&self.root.join("state.lock"), true)
    }

    fn gc_lock(&self, exclusive: bool) -> Result<Lock> {
        lock(&self.root.join("gc.lock"), exclusive)
    }

    fn load_state(&self) -> Result<State> {
        let p = self.root.join("state.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Json {
                what: p.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io(p, "read", e)),
        }
    }

    fn save_state(&self, state: &State) -> Result<()> {
        let data = serde_json::to_vec_pretty(state).map_err(|source| Error::Json {
            what: "state.json".into(),
            source,
        })?;
        write_atomic(&self.root.join("state.json"), &data)
    }

    /// Copies a blob into the store, hashing while streaming; the digest must match
    /// `expected` (and the size `size`, when given). Returns the digest. An existing blob is
    /// kept (it was verified when written).
    fn put_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
        what: &str,
    ) -> Result<Digest> {
        if let Some(d) = expected {
            if self.blob_path(d).exists() {
                return Ok(d.clone());
            }
        }
        let tmp = self.tmp_path("blob");
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_at(&tmp, "create"))?;
        let res = (|| {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(what, "read", e)),
                };
                total += n as u64;
                if size.is_some_and(|s| total > s) {
                    return Err(Error::invalid(
                        what,
                        format!("larger than its declared size {}", size.unwrap_or(0)),
                    ));
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_at(&tmp, "write"))?;
            }
            if let Some(s) = size {
                if total != s {
                    return Err(Error::invalid(
                        what,
                        format!("{total} bytes, but its descriptor says {s}"),
                    ));
                }
            }
            let actual = Digest::parse(&extract::hex_digest(hasher))?;
            if let Some(d) = expected {
                if *d != actual {
                    return Err(Error::DigestMismatch {
                        what: what.to_string(),
                        expected: d.to_string(),
                        actual: actual.to_string(),
                    });
                }
            }
            f.sync_all().map_err(io_at(&tmp, "fsync"))?;
            Ok(actual)
        })();
        drop(f);
        match res {
            Ok(d) => {
                let dest = self.blob_path(&d);
                fs::rename(&tmp, &dest).map_err(io_at(&dest, "rename into place"))?;
                fsync_dir(&self.root.join("blobs/sha256"))?;
                Ok(d)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Reads a small document blob from the store, re-verifying its digest.
    fn read_document(&self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let f = File::open(&p).map_err(io_at(&p, "open"))?;
        let mut data = Vec::new();
        f.take(MAX_DOCUMENT + 1)
            .read_to_end(&mut data)
            .map_err(io_at(&p, "read"))?;
        if data.len() as u64 > MAX_DOCUMENT {
            return Err(Error::invalid(what, "document larger than 4 MiB"));
        }
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what: what.into(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// Imports a document blob from `src` and returns its bytes.
    fn fetch_document(
        &self,
        src: &dyn BlobSource,
        digest: &Digest,
        size: Option<u64>,
        what: &str,
        manifest: bool,
    ) -> Result<Vec<u8>> {
        if size.is_some_and(|s| s > MAX_DOCUMENT) {
            return Err(Error::invalid(what, "document larger than 4 MiB"));
        }
        if !self.blob_path(digest).exists() {
            let mut r = if manifest {
                src.open_manifest(digest)?
            } else {
                src.open(digest)?
            };
            self.put_blob(&mut r, Some(digest), size, what)?;
        }
        self.read_document(digest, what)
    }

    /// Resolves a manifest or index descriptor to an image manifest for the platform.
    fn resolve_manifest(
        &self,
        src: &dyn BlobSource,
        digest: &Digest,
        size: Option<u64>,
        platform: &Platform,
        depth: usize,
    ) -> Result<(Digest, ImageManifest)> {
        let what = format!("manifest {digest}");
        if depth > 4 {
            return Err(Error::invalid(what, "indexes nested too deeply"));
        }
        let bytes = self.fetch_document(src, digest, size, &what, true)?;
        match image::parse_document(&bytes, &what)? {
            Document::Manifest(m) => Ok((digest.clone(), *m)),
            Document::Index(idx) => {
                let d = image::select_manifest(&idx, platform, &what)?;
                let child = Digest::parse(d.digest().as_ref())?;
                self.resolve_manifest(src, &child, Some(d.size()), platform, depth + 1)
            }
        }
    }

    /// Imports one image from a manifest (or index) descriptor: blobs copied and verified,
    /// layers extracted, and the name recorded.
    fn import_image(
        &self,
        src: &dyn BlobSource,
        name: &str,
        digest: &Digest,
        size: Option<u64>,
        opts: &ImportOptions,
        pipelined: bool,
    ) -> Result<ImageRecord> {
        let _gc = self.gc_lock(false)?;
        let (manifest_digest, manifest) =
            self.resolve_manifest(src, digest, size, &opts.platform, 0)?;
        let cfg_desc = manifest.config();
        let cfg_digest = Digest::parse(cfg_desc.digest().as_ref())?;
        let cfg_what = format!("config {cfg_digest}");
        let cfg_bytes =
            self.fetch_document(src, &cfg_digest, Some(cfg_desc.size()), &cfg_what, false)?;
        let config = image::parse_config(&cfg_bytes, &cfg_what)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::invalid(
                format!("manifest {manifest_digest}"),
                format!(
                    "{} layers but the config lists {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        let mut parent: Option<Digest> = None;
        for (l, diff) in manifest.layers().iter().zip(diff_ids) {
            let diff_id = Digest::parse(diff)?;
            let chain = Digest::chain(parent.as_ref(), &diff_id);
            layers.push(LayerRecord {
                chain_id: chain.to_string(),
                diff_id: diff_id.to_string(),
                blob: l.digest().to_string(),
                media_type: l.media_type().to_string(),
                size: l.size(),
            });
            parent = Some(chain);
        }
        let budget = self.image_budget(name);
        if pipelined {
            // Each missing layer is fetched and extracted in one pass, several at once.
            self.ensure_layers_with(&layers, opts.parallel, &|l, parent| {
                let blob = Digest::parse(&l.blob)?;
                if self.blob_path(&blob).exists() {
                    self.extract_layer(l, parent, Some(&budget))
                } else {
                    self.stream_layer(src, l, parent, Some(&budget))
                }
            })?;
        }
        // Blobs of layers not yet extracted, then the extractions, in parallel.
        for l in layers.iter().filter(|_| !pipelined) {
            let chain = Digest::parse(&l.chain_id)?;
            let blob = Digest::parse(&l.blob)?;
            if !self.has_layer(&chain) && !self.blob_path(&blob).exists() {
                let mut r = src.open(&blob)?;
                self.put_blob(
                    &mut r,
                    Some(&blob),
                    Some(l.size),
                    &format!("layer blob {blob}"),
                )?;
            }
        }
        self.ensure_layers(&layers, opts.parallel, &budget)?;
        let record = ImageRecord {
            name: name.to_string(),
            manifest: manifest_digest.to_string(),
            config: cfg_digest.to_string(),
            layers,
            platform: format!("{}/{}", config.os(), config.architecture()),
        };
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        state.images.insert(name.to_string(), record.clone());
        self.save_state(&state)?;
        Ok(record)
    }

    /// Extracts every missing layer of a chain, up to `parallel` at once.
    fn ensure_layers(
        &self,
        layers: &[LayerRecord],
        parallel: usize,
        budget: &Arc<ImageBudget>,
    ) -> Result<()> {
        self.ensure_layers_with(layers, parallel, &|l, parent| {
            self.extract_layer(l, parent, Some(budget))
        })
    }

    /// Runs `make(layer, parent ChainID)` for every layer of a chain not yet extracted, up to
    /// `parallel` at once; the first error wins and stops the others from starting more.
    fn ensure_layers_with(
        &self,
        layers: &[LayerRecord],
        parallel: usize,
        make: &(dyn Fn(&LayerRecord, Option<&str>) -> Result<()> + Sync),
    ) -> Result<()> {
        let missing: Vec<(usize, &LayerRecord)> = layers
            .iter()
            .enumerate()
            .filter(|(_, l)| Digest::parse(&l.chain_id).map_or(true, |c| !self.has_layer(&c)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..parallel.clamp(1, missing.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((idx, l)) = missing.get(i) else {
                        break;
                    };
                    if first_err.lock().map_or(true, |e| e.is_some()) {
                        break;
                    }
                    let parent = idx.checked_sub(1).map(|p| layers[p].chain_id.as_str());
                    if let Err(e) = make(l, parent) {
                        if let Ok(mut slot) = first_err.lock() {
                            slot.get_or_insert(e);
                        }
                        break;
                    }
                });
            }
        });
        match first_err.into_inner() {
            Ok(Some(e)) => Err(e),
            Ok(None) => Ok(()),
            Err(_) => Err(Error::invalid("layer extraction", "a worker panicked")),
        }
    }

    /// Extracts one layer blob into `tmp/`, verifies its DiffID, then renames it into
    /// `layers/<chain>` (the completion marker).
    fn extract_layer(
        &self,
        l: &LayerRecord,
        parent: Option<&str>,
        budget: Option<&Arc<ImageBudget>>,
    ) -> Result<()> {
        let blob = Digest::parse(&l.blob)?;
        let path = self.blob_path(&blob);
        self.extract_layer_with(
            l,
            parent,
            budget,
            &mut |diff, opts| {
                let reader = extract::open_layer(&path, Some(&l.media_type))?;
                extract::extract_layer(reader, diff, opts)
            },
            &mut || Ok(()),
        )
    }

    /// Fetches a layer blob from `src` and extracts it while it arrives: the compressed bytes
    /// are hashed and written to a temporary blob as the extractor reads them. The blob is
    /// renamed into place only once its digest, size and the layer's DiffID all match, and
    /// the layer after it; on any mismatch neither is kept.
    fn stream_layer(
        &self,
        src: &dyn BlobSource,
        l: &LayerRecord,
        parent: Option<&str>,
        budget: Option<&Arc<ImageBudget>>,
    ) -> Result<()> {
        let blob = Digest::parse(&l.blob)?;
        let tmp_blob = self.tmp_path("blob");
        let what = format!("layer blob {blob}");
        let res = self.extract_layer_with(
            l,
            parent,
            budget,
            &mut |diff, opts| {
                let file = OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&tmp_blob)
                    .map_err(io_at(&tmp_blob, "create"))?;
                let mut tee = BlobTee {
                    inner: src.open(&blob)?,
                    file,
                    path: &tmp_blob,
                    hasher: Sha256::new(),
                    total: 0,
                    size: l.size,
                };
                let stats = {
                    let mut buffered = io::BufReader::with_capacity(1 << 20, &mut tee);
                    let head = io::BufRead::fill_buf(&mut buffered)
                        .map_err(|e| Error::io(what.as_str(), "read", e))?;
                    let found = Compression::sniff(head);
                    let declared = Compression::from_media_type(&l.media_type).ok_or_else(|| {
                        Error::invalid(&what, format!("{:?} is not a layer media type", l.media_type))
                    })?;
                    if declared != found && declared != Compression::None && found != Compression::None {
                        return Err(Error::invalid(
                            &what,
                            format!("media type {:?} declares {declared:?} but the content is {found:?}", l.media_type),
                        ));
                    }
                    let reader = extract::decompress(buffered, found)
                        .map_err(|e| Error::io(what.as_str(), "open decompressor", e))?;
                    extract::extract_layer(reader, diff, opts)?
                };
                // The extractor stops at the end of the tar stream: the rest of the blob
                // (padding, trailing gzip members) is part of its digest.
                io::copy(&mut tee, &mut io::sink()).map_err(|e| Error::io(what.as_str(), "read", e))?;
                if tee.total != l.size {
                    return Err(Error::invalid(
                        &what,
                        format!("{} bytes, but its descriptor says {}", tee.total, l.size),
                    ));
                }
                let actual = Digest::parse(&extract::hex_digest(tee.hasher.clone()))?;
                if actual != blob {
                    return Err(Error::DigestMismatch {
                        what: what.clone(),
                        expected: blob.to_string(),
                        actual: actual.to_string(),
                    });
                }
                tee.file.sync_all().map_err(io_at(&tmp_blob, "fsync"))?;
                Ok(stats)
            },
            &mut || {
                let dest = self.blob_path(&blob);
                fs::rename(&tmp_blob, &dest).map_err(io_at(&dest, "rename into place"))?;
                fsync_dir(&self.root.join("blobs/sha256"))
            },
        );
        if res.is_err() {
            let _ = fs::remove_file(&tmp_blob);
        }
        res
    }

    /// Extracts one layer into `tmp/` with `run`, verifies its DiffID, calls `commit`, then
    /// renames the layer into `layers/<chain>` (the completion marker).
    fn extract_layer_with(
        &self,
        l: &LayerRecord,
        parent: Option<&str>,
        budget: Option<&Arc<ImageBudget>>,
        run: &mut dyn FnMut(&Path, &ExtractOptions) -> Result<extract::ExtractStats>,
        commit: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let chain = Digest::parse(&l.chain_id)?;
        if self.has_layer(&chain) {
            return Ok(());
        }
        let blob = Digest::parse(&l.blob)?;
        let tmp = self.tmp_path("layer");
        let diff = tmp.join("diff");
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&diff)
            .map_err(io_at(&diff, "create"))?;
        fs::set_permissions(&diff, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_at(&diff, "chmod"))?;
        let res = (|| {
            let opts = ExtractOptions {
                mode: Mode::Overlay,
                rootless: self.rootless,
                confine: true,
                sync: true,
                limits: self.limits,
                budget: budget.cloned(),
                ..ExtractOptions::default()
            };
            let stats = run(&diff, &opts).map_err(|e| e.within(&format!("layer {}", l.blob)))?;
            if stats.diff_id != l.diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("layer {blob} (uncompressed)"),
                    expected: l.diff_id.clone(),
                    actual: stats.diff_id,
                });
            }
            commit()?;
            let info = serde_json::json!({
                "chainId": l.chain_id,
                "diffId": l.diff_id,
                "parent": parent,
                "blob": l.blob,
                "entries": stats.entries,
                "size": stats.bytes,
            });
            write_atomic(&tmp.join("layer.json"), info.to_string().as_bytes())?;
            fsync_dir(&tmp)?;
            let dest = self.root.join("layers").join(chain.hex());
            match fs::rename(&tmp, &dest) {
                Ok(()) => {}
                // Another import completed it first: theirs is as good as ours.
                Err(e) if dest.is_dir() => {
                    tracing::debug!("layer {chain} completed concurrently: {e}");
                    remove_any(&tmp)?;
                }
                Err(e) => return Err(Error::io(dest, "rename the layer into place", e)),
            }
            fsync_dir(&self.root.join("layers"))?;
            let link = self.short_layer_path(&chain);
            let target = Path::new("../layers").join(chain.hex()).join("diff");
            match std::os::unix::fs::symlink(&target, &link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(link, "symlink", e)),
            }
            Ok(())
        })();
        if res.is_err() {
            let _ = remove_any(&tmp);
        }
        res
    }

    /// Imports the images of an OCI image layout directory (image-layout.md). Each
    /// `index.json` entry is named by its `io.containerd.image.name` or
    /// `org.opencontainers.image.ref.name` annotation (a bare tag is prefixed with the layout
    /// directory's name) unless `opts.name` is given.
    pub fn import_oci_layout(&self, dir: &Path, opts: &ImportOptions) -> Result<Vec<ImageRecord>> {
        let layout = dir.join("oci-layout");
        let text = fs::read(&layout).map_err(io_at(&layout, "read"))?;
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|source| Error::Json {
            what: layout.display().to_string(),
            source,
        })?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(ver) if ver.starts_with("1.") => {}
            other => {
                return Err(Error::invalid(
                    format!("{}: imageLayoutVersion", layout.display()),
                    format!("unsupported version {other:?}"),
                ))
            }
        }
        let index_path = dir.join("index.json");
        let meta = fs::metadata(&index_path).map_err(io_at(&index_path, "stat"))?;
        if meta.len() > MAX_DOCUMENT {
            return Err(Error::invalid(
                index_path.display().to_string(),
                "larger than 4 MiB",
            ));
        }
        let bytes = fs::read(&index_path).map_err(io_at(&index_path, "read"))?;
        let index = image::parse_index(&bytes, &index_path.display().to_string())?;
        let src = LayoutSource {
            dir: dir.to_path_buf(),
        };
        let mut entries = Vec::new();
        for d in index.manifests() {
            let ann = d.annotations().as_ref();
            let full = ann.and_then(|a| a.get("io.containerd.image.name")).cloned();
            let tag = ann
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .cloned();
            entries.push((d, full, tag));
        }
        let chosen: Vec<(&oci_spec::image::Descriptor, String)> = match &opts.name {
            Some(name) if entries.len() == 1 => vec![(entries[0].0, normalize_name(name)?)],
            Some(name) => {
                let want = normalize_name(name)?;
                let hit: Vec<_> = entries
                    .iter()
                    .filter(|(_, full, tag)| {
                        full.as_deref() == Some(name)
                            || full.as_deref() == Some(want.as_str())
                            || tag.as_deref() == Some(name)
                    })
                    .map(|(d, _, _)| (*d, want.clone()))
                    .collect();
                if hit.is_empty() {
                    return Err(Error::ImageNotFound(format!("{name} in {}", dir.display())));
                }
                hit
            }
            None => {
                let base = dir
                    .file_name()
                    .map_or_else(|| "image".to_string(), |n| n.to_string_lossy().into_owned());
                let mut v = Vec::new();
                for (d, full, tag) in &entries {
                    let name = match (full, tag) {
                        (Some(f), _) => f.clone(),
                        (None, Some(t)) if t.contains(':') || t.contains('/') => t.clone(),
                        (None, Some(t)) => format!("{base}:{t}"),
                        (None, None) => {
                            return Err(Error::invalid(
                                index_path.display().to_string(),
                                format!(
                                    "manifest {} has no name annotation; give a name",
                                    d.digest()
                                ),
                            ))
                        }
                    };
                    v.push((*d, normalize_name(&name)?));
                }
                v
            }
        };
        let mut out = Vec::new();
        for (d, name) in chosen {
            let digest = Digest::parse(d.digest().as_ref())?;
            out.push(self.import_image(&src, &name, &digest, Some(d.size()), opts, false)?);
        }
        Ok(out)
    }

    /// Unpacks an archive's regular files and directories into a temporary directory
    /// (safely: the layer extractor, rootless, confined).
    fn unpack_archive(&self, archive: &Path) -> Result<PathBuf> {
        let tmp = self.tmp_path("archive");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io_at(&tmp, "create"))?;
        let res = (|| {
            let reader = extract::open_layer(archive, None)?;
            // The archive holds a whole image: its stream may be as large as one.
            let limits = Limits {
                max_layer_bytes: self.limits.max_image_bytes,
                ..self.limits
            };
            let opts = ExtractOptions {
                mode: Mode::Flatten,
                rootless: true,
                confine: true,
                limits,
                ..ExtractOptions::default()
            };
            extract::extract_layer(reader, &tmp, &opts)
                .map_err(|e| e.within(&format!("archive {}", archive.display())))?;
            Ok(())
        })();
        match res {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = remove_any(&tmp);
                Err(e)
            }
        }
    }

    /// Imports whatever `path` holds: an OCI image layout directory, an unpacked
    /// docker-archive directory, an OCI archive or a docker-archive (a tar, compressed or
    /// not). A `manifest.json` (docker) wins over `oci-layout`, since `docker save` since 25.0
    /// writes both and only the former carries the image names.
    pub fn import_path(&self, path: &Path, opts: &ImportOptions) -> Result<Vec<ImageRecord>> {
        let md = fs::metadata(path).map_err(io_at(path, "stat"))?;
        if md.is_dir() {
            if path.join("manifest.json").is_file() {
                return self.import_docker_dir(path, opts);
            }
            if path.join("oci-layout").is_file() {
                return self.import_oci_layout(path, opts);
            }
            return Err(Error::invalid(
                path.display().to_string(),
                "neither an OCI image layout (no oci-layout) nor a docker-archive directory (no manifest.json)",
            ));
        }
        self.with_unpacked(path, |tmp| {
            if tmp.join("manifest.json").is_file() {
                self.import_docker_dir(tmp, opts)
            } else if tmp.join("oci-layout").is_file() {
                self.import_oci_layout(tmp, opts)
            } else {
                Err(Error::invalid(
                    path.display().to_string(),
                    "an archive with neither oci-layout nor manifest.json at its top",
                ))
            }
        })
    }

    /// Imports an OCI archive: a tar of an OCI image layout.
    pub fn import_oci_archive(
        &self,
        archive: &Path,
        opts: &ImportOptions,
    ) -> Result<Vec<ImageRecord>> {
        self.with_unpacked(archive, |dir| self.import_oci_layout(dir, opts))
    }

    /// Imports a docker-archive (`docker save` output: `manifest.json` listing each image's
    /// config, `RepoTags` and layer files, old or OCI-layout style).
    pub fn import_docker_archive(
        &self,
        archive: &Path,
        opts: &ImportOptions,
    ) -> Result<Vec<ImageRecord>> {
        self.with_unpacked(archive, |dir| self.import_docker_dir(dir, opts))
    }

    /// Runs `f` on `archive` unpacked into a temporary directory, removed afterwards.
    fn with_unpacked<T>(&self, archive: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let tmp = self.unpack_archive(archive)?;
        let res = f(&tmp);
        let _ = remove_any(&tmp);
        res
    }

    fn import_docker_dir(&self, dir: &Path, opts: &ImportOptions) -> Result<Vec<ImageRecord>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let mpath = dir.join("manifest.json");
        let bytes = fs::read(&mpath).map_err(io_at(&mpath, "read"))?;
        let entries: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "docker-archive manifest.json".into(),
            source,
        })?;
        // Paths inside the archive must stay inside it.
        let inside = |p: &str, field: &str| -> Result<PathBuf> {
            let rel = Path::new(p);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(Error::invalid(
                    format!("manifest.json: {field}"),
                    format!("path {p:?} leaves the archive"),
                ));
            }
            let full = dir.join(rel);
            let meta = fs::symlink_metadata(&full).map_err(io_at(&full, "stat"))?;
            if !meta.is_file() {
                return Err(Error::invalid(
                    format!("manifest.json: {field}"),
                    format!("{p:?} is not a regular file"),
                ));
            }
            Ok(full)
        };
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let names: Vec<String> = match (&opts.name, &e.repo_tags) {
                (Some(n), _) => vec![normalize_name(n)?],
                (None, Some(tags)) if !tags.is_empty() => tags
                    .iter()
                    .map(|t| normalize_name(t))
                    .collect::<Result<_>>()?,
                _ => {
                    return Err(Error::invalid(
                        format!("manifest.json[{i}]"),
                        "the image has no RepoTags; give a name",
                    ))
                }
            };
            let cfg_path = inside(&e.config, &format!("[{i}].Config"))?;
            let cfg_bytes = fs::read(&cfg_path).map_err(io_at(&cfg_path, "read"))?;
            if cfg_bytes.len() as u64 > MAX_DOCUMENT {
                return Err(Error::invalid(
                    cfg_path.display().to_string(),
                    "larger than 4 MiB",
                ));
            }
            let cfg_digest =
                self.put_blob(&mut &cfg_bytes[..], None, None, "docker-archive config")?;
            let mut layer_descs = Vec::new();
            for (j, l) in e.layers.iter().enumerate() {
                let p = inside(l, &format!("[{i}].Layers[{j}]"))?;
                let mut f = File::open(&p).map_err(io_at(&p, "open"))?;
                let mut head = [0u8; 4];
                let n = f.read(&mut head).map_err(io_at(&p, "read"))?;
                let media_type = match Compression::sniff(&head[..n]) {
                    Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
                    Compression::Gzip => media::DOCKER_LAYER_GZIP,
                    Compression::Zstd => media::OCI_LAYER_ZSTD,
                };
                let mut f = File::open(&p).map_err(io_at(&p, "open"))?;
                let size = f.metadata().map_err(io_at(&p, "stat"))?.len();
                let digest = self.put_blob(
                    &mut f,
                    None,
                    Some(size),
                    &format!("docker-archive layer {l}"),
                )?;
                layer_descs.push(serde_json::json!({
                    "mediaType": media_type, "size": size, "digest": digest.as_str(),
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media::DOCKER_MANIFEST,
                "config": {
                    "mediaType": media::DOCKER_CONFIG,
                    "size": cfg_bytes.len(),
                    "digest": cfg_digest.as_str(),
                },
                "layers": layer_descs,
            });
            let mbytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
                what: "generated manifest".into(),
                source,
            })?;
            let mdigest = self.put_blob(&mut &mbytes[..], None, None, "generated manifest")?;
            for name in names {
                out.push(self.import_image(
                    &NoSource,
                    &name,
                    &mdigest,
                    Some(mbytes.len() as u64),
                    opts,
                    false,
                )?);
            }
        }
        Ok(out)
    }

    /// Every image, by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.load_state()?.images.into_values().collect())
    }

    /// One image by name (a missing tag means `:latest`).
    pub fn image(&self, name: &str) -> Result<ImageRecord> {
        let n = normalize_name(name)?;
        self.load_state()?
            .images
            .remove(&n)
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))
    }

    /// The parsed config of an image.
    pub fn image_config(&self, image: &ImageRecord) -> Result<image::ImageConfig> {
        let d = Digest::parse(&image.config)?;
        let what = format!("config {d} of {}", image.name);
        image::parse_config(&self.read_document(&d, &what)?, &what)
    }

    /// Removes an image's name, then everything no image or hold uses any more (`rmi`).
    pub fn remove_image(&self, name: &str) -> Result<PruneStats> {
        let n = normalize_name(name)?;
        {
            let _l = self.state_lock()?;
            let mut state = self.load_state()?;
            if state.images.remove(&n).is_none() {
                return Err(Error::ImageNotFound(name.to_string()));
            }
            self.save_state(&state)?;
        }
        self.prune()
    }

    /// Keeps an image's blobs and layers alive for `holder` (a container id) until
    /// [`Store::release`], even if the image is removed meanwhile.
    pub fn hold(&self, holder: &str, image: &str) -> Result<ImageRecord> {
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        let n = normalize_name(image)?;
        let rec = state
            .images
            .get(&n)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(image.to_string()))?;
        if state.holds.contains_key(holder) {
            // Two bundles of one holder would share (and one would release) a single hold.
            return Err(Error::invalid(
                format!("holder {holder:?}"),
                "already holds an image (a bundle of that name exists or is being made)",
            ));
        }
        let mut blobs = vec![rec.manifest.clone(), rec.config.clone()];
        blobs.extend(rec.layers.iter().map(|l| l.blob.clone()));
        state.holds.insert(
            holder.to_string(),
            Hold {
                image: n,
                blobs,
                chains: rec.layers.iter().map(|l| l.chain_id.clone()).collect(),
                creator: Creator::current(),
            },
        );
        self.save_state(&state)?;
        Ok(rec)
    }

    /// Every hold, by holder.
    pub fn holds(&self) -> Result<BTreeMap<String, Hold>> {
        let _l = self.state_lock()?;
        Ok(self.load_state()?.holds)
    }

    /// Drops `holder`'s hold (a no-op if it has none).
    pub fn release(&self, holder: &str) -> Result<()> {
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        if state.holds.remove(holder).is_some() {
            self.save_state(&state)?;
        }
        Ok(())
    }

    /// Removes blobs and layers that no image or hold references, and leftovers of dead
    /// imports (`image prune`). Waits for imports in progress.
    pub fn prune(&self) -> Result<PruneStats> {
        let _gc = self.gc_lock(true)?;
        let state = {
            let _l = self.state_lock()?;
            self.load_state()?
        };
        let mut blobs: BTreeSet<String> = BTreeSet::new();
        let mut chains: BTreeSet<String> = BTreeSet::new();
        for img in state.images.values() {
            blobs.insert(img.manifest.clone());
            blobs.insert(img.config.clone());
            for l in &img.layers {
                blobs.insert(l.blob.clone());
                chains.insert(l.chain_id.clone());
            }
        }
        for h in state.holds.values() {
            blobs.extend(h.blobs.iter().cloned());
            chains.extend(h.chains.iter().cloned());
        }
        let hexes = |set: &BTreeSet<String>| -> BTreeSet<String> {
            set.iter()
                .filter_map(|d| d.strip_prefix("sha256:").map(String::from))
                .collect()
        };
        let (keep_blobs, keep_layers) = (hexes(&blobs), hexes(&chains));
        let mut stats = PruneStats::default();
        let bdir = self.root.join("blobs/sha256");
        for ent in fs::read_dir(&bdir).map_err(io_at(&bdir, "read"))? {
            let ent = ent.map_err(io_at(&bdir, "read"))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                fs::remove_file(ent.path()).map_err(io_at(&ent.path(), "remove"))?;
                stats.blobs += 1;
            }
        }
        let ldir = self.root.join("layers");
        for ent in fs::read_dir(&ldir).map_err(io_at(&ldir, "read"))? {
            let ent = ent.map_err(io_at(&ldir, "read"))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if !keep_layers.contains(&name) {
                // Renamed out first: a crash mid-removal never leaves a half layer in layers/.
                let doomed = self.tmp_path("doomed");
                fs::rename(ent.path(), &doomed).map_err(io_at(&ent.path(), "rename"))?;
                remove_any(&doomed)?;
                stats.layers += 1;
            }
        }
        let sdir = self.root.join("l");
        for ent in fs::read_dir(&sdir).map_err(io_at(&sdir, "read"))? {
            let ent = ent.map_err(io_at(&sdir, "read"))?;
            if !ent.path().exists() {
                let _ = fs::remove_file(ent.path());
            }
        }
        stats.temporaries = self.clean_tmp()?;
        Ok(stats)
    }

    /// Imports a single layer blob already in the store (used by tests and by callers that
    /// fetched blobs themselves): extracts it as the layer `chain_id` if missing.
    pub fn ensure_layer(&self, layer: &LayerRecord, parent: Option<&str>) -> Result<PathBuf> {
        self.extract_layer(layer, parent, None)?;
        Ok(self.layer_path(&Digest::parse(&layer.chain_id)?))
    }

    /// Copies a blob into the store from a reader, verifying `expected` when given.
    pub fn put_blob_from(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        self.put_blob(reader, expected, None, "blob")
    }

    /// Imports an image from `src` (a registry, for `berth pull`): the manifest or index
    /// `digest` (the platform's manifest picked from an index), its config and every layer
    /// whose ChainID is not extracted yet. Layers are fetched concurrently (`opts.parallel`
    /// at once), each extracted while it arrives and verified by blob digest, size and
    /// DiffID; a mismatch stores nothing of that layer and fails the import, which records
    /// no image. The image is recorded as `name` (normalised: `:latest` when untagged).
    pub fn import_from(
        &self,
        src: &dyn BlobSource,
        name: &str,
        digest: &Digest,
        size: Option<u64>,
        opts: &ImportOptions,
    ) -> Result<ImageRecord> {
        let name = normalize_name(name)?;
        self.import_image(src, &name, digest, size, opts, true)
    }

    /// Whether a blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob of the store for reading (it was verified when written).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(io_at(&p, "open blob"))
    }

    /// Reads a manifest, index or config blob (at most 4 MiB), re-verifying its digest.
    pub fn read_blob_document(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.read_document(digest, &format!("blob {digest}"))
    }

    /// Records the image `src` under the name `dst` as well (`berth tag`); an image already
    /// named `dst` is replaced (its content goes at the next prune if nothing uses it).
    pub fn tag_image(&self, src: &str, dst: &str) -> Result<ImageRecord> {
        let src_name = normalize_name(src)?;
        let dst_name = normalize_name(dst)?;
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        let mut rec = state
            .images
            .get(&src_name)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(src.to_string()))?;
        rec.name.clone_from(&dst_name);
        state.images.insert(dst_name, rec.clone());
        self.save_state(&state)?;
        Ok(rec)
    }

    /// Whether an image's layers are all extracted (and re-extracts missing ones from their
    /// blobs).
    pub fn ensure_image_layers(&self, image: &ImageRecord) -> Result<()> {
        let _gc = self.gc_lock(false)?;
        self.ensure_layers(&image.layers, 2, &self.image_budget(&image.name))
    }
}

/// Removes a file, symlink or directory tree without following symlinks.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(path.display().to_string(), "no file name"))?;
    let dir = File::open(parent).map_err(io_at(parent, "open"))?;
    extract::remove_all_at(dir.as_fd(), std::os::unix::ffi::OsStrExt::as_bytes(name))
        .map_err(|e| Error::io(path, "remove", e))
}
