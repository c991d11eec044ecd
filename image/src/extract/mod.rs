//! Layer extraction (image-spec `layer.md`): a tar stream, plain or compressed, applied to a
//! directory as an overlayfs layer or onto a flattened root filesystem.
//!
//! Every path is resolved inside the destination through directory file descriptors:
//! parents with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, the final
//! component with `*at` calls that never follow it, so neither `..`, absolute names, symlinks
//! (from this layer, a lower layer or an earlier entry) nor hardlinks can reach outside the
//! destination. The writing thread additionally confines itself with Landlock
//! ([`ExtractOptions::confine`]).
//!
//! The calling thread reads and decompresses the stream and computes its DiffID while a second
//! thread parses the tar, resolves directories and hands files, symlinks and links to worker
//! threads (one per CPU, at most [`MAX_WORKERS`]; none on tmpfs) that create them in
//! parallel: on a disk filesystem the kernel's work to create inodes and directory entries
//! dominates. Jobs are
//! spread by parent directory, and every dependency between entries (a name used twice, a
//! hardlink to a queued file, whiteouts, symlinks in a path, directory metadata) is kept in
//! archive order. File data is never copied between the threads: jobs hold slices of the
//! stream's 1 MiB buffers. Open directory fds are cached, and there is no per-file fsync (one
//! `syncfs` at the end when [`ExtractOptions::sync`]).

mod apply;
mod limits;
mod names;
mod pool;
pub(crate) mod tar;
#[cfg(test)]
mod tests;
mod write;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use limits::StreamGuard;
pub use limits::{parse_size, ImageBudget, Limits};

/// How a layer is laid down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// An overlayfs lower layer in an empty directory: a whiteout `.wh.NAME` becomes a 0/0
    /// character device, the opaque marker `.wh..wh..opq` becomes `trusted.overlay.opaque=y`
    /// (`user.overlay.opaque` when rootless, for a `userxattr` mount).
    #[default]
    Overlay,
    /// Applied onto a root filesystem that holds the lower layers: whiteouts delete what they
    /// name, an opaque marker deletes what lower layers put in its directory (never what this
    /// layer adds, even when the marker comes after it).
    Flatten,
}

/// One contiguous range of a user or group id mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container (as stored in the layer).
    pub container: u32,
    /// The host id it maps to.
    pub host: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// A uid/gid mapping (as in a user namespace): layer ids are shifted to host ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    /// Uid ranges.
    pub uids: Vec<IdRange>,
    /// Gid ranges.
    pub gids: Vec<IdRange>,
}

fn map_id(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.container)?;
        (off < r.size).then(|| r.host.checked_add(off)).flatten()
    })
}

impl IdMap {
    /// The host uid for a container uid, if mapped.
    pub fn map_uid(&self, uid: u32) -> Option<u32> {
        map_id(&self.uids, uid)
    }

    /// The host gid for a container gid, if mapped.
    pub fn map_gid(&self, gid: u32) -> Option<u32> {
        map_id(&self.gids, gid)
    }
}

/// Options of [`extract_layer`].
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Overlay layer or flattened root filesystem.
    pub mode: Mode,
    /// Shift ownership by this mapping (layer ids are container ids); an unmapped id is an
    /// error naming the entry.
    pub id_map: Option<IdMap>,
    /// Unprivileged extraction: device nodes are skipped with a notice, and ownership or
    /// privileged xattrs that cannot be set are skipped with a notice instead of failing.
    pub rootless: bool,
    /// Confine the writing thread with Landlock to writes beneath the destination.
    pub confine: bool,
    /// `syncfs` the destination's filesystem once at the end (no per-file fsync).
    pub sync: bool,
    /// Size, count and free-space limits ([`Limits::default`]; the store uses
    /// [`Limits::from_env`]).
    pub limits: Limits,
    /// The budget of the image this layer belongs to ([`Limits::max_image_bytes`]), shared
    /// by the extractions of its layers; none: only the layer's own limits apply.
    pub budget: Option<Arc<ImageBudget>>,
}

/// What [`extract_layer`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// `sha256:<hex>` of the whole uncompressed stream: the layer's DiffID.
    pub diff_id: String,
    /// Length of the uncompressed stream.
    pub bytes: u64,
    /// Archive members (extension headers not counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Character and block devices created.
    pub devices: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// Whiteouts applied (`.wh.NAME`).
    pub whiteouts: u64,
    /// Opaque markers applied.
    pub opaques: u64,
    /// Entries or attributes skipped (devices when rootless, ...), each with a notice.
    pub skipped: u64,
    /// File data written (real sizes).
    pub data_bytes: u64,
    /// Human-readable notices (at most 64 kept; all are also logged with `tracing`).
    pub notices: Vec<String>,
}

/// A layer's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// The compression a layer media type declares (OCI and Docker layer types), or `None` if
    /// `media_type` is not a layer type.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        let base = media_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Recognises the compression from a stream's first bytes.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps a buffered reader in the decompressor for `compression`.
pub fn decompress<'a, R: BufRead + Send + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// Opens a layer blob for reading its uncompressed tar stream. The compression is taken from
/// the magic bytes (gzip, zstd, else plain); `media_type`, when given, must be a layer type,
/// and a compressed type whose content is compressed differently is an error.
pub fn open_layer(path: &Path, media_type: Option<&str>) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf().map_err(|e| Error::io(path, "read", e))?;
    let found = layer_compression(head, media_type, &path.display().to_string())?;
    decompress(reader, found).map_err(|e| Error::io(path, "open decompressor", e))
}

/// The compression of the layer `what` whose stream starts with `head`: the one its magic
/// bytes show (gzip, zstd, else plain). `media_type`, when given, must be a layer type, and
/// a compressed type whose content is compressed differently is an error.
pub(crate) fn layer_compression(
    head: &[u8],
    media_type: Option<&str>,
    what: &str,
) -> Result<Compression> {
    let found = Compression::sniff(head);
    let Some(mt) = media_type else {
        return Ok(found);
    };
    let declared = Compression::from_media_type(mt)
        .ok_or_else(|| Error::invalid(what, format!("{mt:?} is not a layer media type")))?;
    if declared != found && declared != Compression::None && found != Compression::None {
        return Err(Error::invalid(
            what,
            format!("media type {mt:?} declares {declared:?} but the content is {found:?}"),
        ));
    }
    Ok(found)
}

/// Removes `name` in `dir` (recursively, never following symlinks); missing is fine.
pub(crate) fn remove_all_at(dir: std::os::fd::BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    write::remove_all(dir, name).map_err(io::Error::from)
}

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;
/// The most worker threads one extraction uses.
pub const MAX_WORKERS: usize = 4;

/// Worker threads for [`extract_layer`] into `root`: one per available CPU (at most
/// [`MAX_WORKERS`]); none on a single CPU, or on a filesystem in memory (tmpfs, ramfs), where
/// creating files is cheap and decompressing bounds the time, so more threads only add work.
/// `BERTH_EXTRACT_WORKERS` overrides it (0 writes on the parsing thread).
fn default_workers(root: &std::os::fd::OwnedFd) -> usize {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    if let Some(n) = std::env::var_os("BERTH_EXTRACT_WORKERS")
        .and_then(|v| v.to_str().and_then(|v| v.parse::<usize>().ok()))
    {
        return n.min(MAX_WORKERS);
    }
    if let Ok(st) = rustix::fs::fstatfs(root) {
        #[allow(clippy::useless_conversion)] // f_type's width differs between targets
        let kind = u64::try_from(st.f_type).unwrap_or(0);
        if kind == TMPFS_MAGIC || kind == RAMFS_MAGIC {
            return 0;
        }
    }
    match std::thread::available_parallelism().map_or(1, std::num::NonZero::get) {
        0 | 1 => 0,
        n => n.min(MAX_WORKERS),
    }
}

/// Most stream buffers alive at once (read ahead, being parsed, or holding the data of queued
/// file jobs): bounds the memory of one extraction to about this many MiB.
const MAX_CHUNKS: usize = 64;

/// A buffer of the uncompressed stream, shared by the parsing thread and the jobs whose file
/// data lies in it; it goes back to the reading thread for reuse when the last one drops it.
pub(crate) struct Chunk {
    data: Vec<u8>,
    back: Sender<Vec<u8>>,
}

impl Chunk {
    /// The buffer's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // The reader may be gone (extraction over): then the buffer is simply freed.
        let _ = self.back.send(std::mem::take(&mut self.data));
    }
}

/// A [`tar::Source`] fed by the reading thread through a channel of shared buffers.
struct ChannelSource {
    rx: Receiver<Arc<Chunk>>,
    cur: Option<Arc<Chunk>>,
    pos: usize,
}

impl tar::Source for ChannelSource {
    fn fill(&mut self) -> io::Result<&[u8]> {
        let len = self.cur.as_ref().map_or(0, |c| c.data.len());
        if self.pos >= len {
            self.cur = self.rx.recv().ok();
            self.pos = 0;
        }
        Ok(self.cur.as_ref().map_or(&[][..], |c| &c.data[self.pos..]))
    }

    fn consume(&mut self, n: usize) {
        let len = self.cur.as_ref().map_or(0, |c| c.data.len());
        self.pos = (self.pos + n).min(len);
    }

    fn shared(&self) -> Option<&Arc<Chunk>> {
        self.cur.as_ref()
    }
}

impl ChannelSource {
    /// Receives (and drops) whatever the reader still sends, so it reads to the end of the
    /// stream and the DiffID covers all of it.
    fn drain(mut self) {
        self.cur = None;
        while self.rx.recv().is_ok() {}
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `sha256:<hex>` of a finished hasher.
pub(crate) fn hex_digest(hasher: Sha256) -> String {
    let out = hasher.finalize();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in out {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Extracts the uncompressed tar stream `reader` into the existing directory `dest`.
///
/// The calling thread reads the stream (and so runs the decompressor of [`open_layer`]) and
/// computes the DiffID; a scoped thread parses, confined with Landlock when `opts.confine`,
/// and starts the worker threads that write (which inherit the confinement). Nothing is ever
/// created outside `dest`. Errors name the entry; when several entries fail, the first in the
/// archive is reported.
pub fn extract_layer(
    reader: impl Read,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractStats> {
    extract(reader, dest, opts, None)
}

/// [`extract_layer`] with `workers` worker threads writing (at most [`MAX_WORKERS`]; 0 writes
/// on the parsing thread).
pub fn extract_layer_with_workers(
    reader: impl Read,
    dest: &Path,
    opts: &ExtractOptions,
    workers: usize,
) -> Result<ExtractStats> {
    extract(reader, dest, opts, Some(workers))
}

/// [`extract_layer`] with `workers` threads, or the default for `dest` when `None`.
fn extract(
    mut reader: impl Read,
    dest: &Path,
    opts: &ExtractOptions,
    workers: Option<usize>,
) -> Result<ExtractStats> {
    let root = apply::open_root(dest)?;
    let workers = workers.map_or_else(|| default_workers(&root), |n| n.min(MAX_WORKERS));
    let mut guard = StreamGuard::new(opts, root.try_clone().ok());
    let (tx, rx): (SyncSender<Arc<Chunk>>, Receiver<Arc<Chunk>>) = mpsc::sync_channel(DEPTH);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new()
            .name("berth-extract".into())
            .stack_size(16 << 20)
            .spawn_scoped(s, move || -> Result<ExtractStats> {
                let mut notices = Vec::new();
                if opts.confine {
                    match berth_sys::landlock::writes_beneath(dest).map_err(Error::Confine)? {
                        berth_sys::landlock::Confinement::Full => {}
                        berth_sys::landlock::Confinement::Partial(m) => notices.push(m),
                        berth_sys::landlock::Confinement::Unavailable => notices
                            .push("Landlock is unavailable: extraction is not confined".into()),
                    }
                }
                let src = ChannelSource {
                    rx,
                    cur: None,
                    pos: 0,
                };
                let mut ex = apply::Extractor::new(root, opts, workers)?;
                for n in notices {
                    ex.notice(n);
                }
                let mut tar = tar::TarReader::new(src, &opts.limits);
                let res = ex.run(&mut tar);
                let stats = ex.finish(res)?;
                tar.into_source().drain();
                Ok(stats)
            })
            .map_err(|e| Error::io(dest, "spawn the extraction thread", e))?;

        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut read_err = None;
        let mut limit_err = None;
        let mut live = 0;
        loop {
            let mut buf = match back_rx.try_recv() {
                Ok(buf) => buf,
                Err(_) if live < MAX_CHUNKS => {
                    live += 1;
                    Vec::new()
                }
                // Every buffer is in use: the workers free theirs as they write, and the
                // writer's side drops its own when it stops.
                Err(_) => back_rx.recv().unwrap_or_default(),
            };
            buf.resize(CHUNK, 0);
            let n = match read_full(&mut reader, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    read_err = Some(e);
                    break;
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = guard.charge(n) {
                // The writer sees the stream end early; this error is what counts.
                limit_err = Some(e);
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
            buf.truncate(n);
            let chunk = Arc::new(Chunk {
                data: buf,
                back: back_tx.clone(),
            });
            if tx.send(chunk).is_err() {
                break; // the writer failed; its error is what counts
            }
            if n < CHUNK {
                break;
            }
        }
        drop(tx);
        let res = writer.join().unwrap_or_else(|_| {
            Err(Error::invalid(
                dest.display().to_string(),
                "extraction thread panicked",
            ))
        });
        if let Some(e) = limit_err {
            return Err(e);
        }
        if let Some(e) = read_err {
            return Err(Error::Read(e));
        }
        let mut stats = res?;
        stats.bytes = total;
        stats.diff_id = hex_digest(hasher);
        Ok(stats)
    })
}

/// Extracts a plain tar stream on the calling thread, without Landlock (which cannot be undone
/// on a thread): for small inputs and fuzzing. The DiffID covers the bytes read.
pub fn extract_layer_single_thread(
    reader: impl Read,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractStats> {
    struct Hashing<R> {
        inner: R,
        hasher: Sha256,
        total: u64,
        guard: StreamGuard,
        limit: Option<Error>,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            if let Err(e) = self.guard.charge(n) {
                self.limit = Some(e);
                return Err(io::Error::other("limit reached"));
            }
            self.hasher.update(&buf[..n]);
            self.total += n as u64;
            Ok(n)
        }
    }
    let root = apply::open_root(dest)?;
    let guard = StreamGuard::new(opts, root.try_clone().ok());
    let src = tar::ReadSource::new(
        Hashing {
            inner: reader,
            hasher: Sha256::new(),
            total: 0,
            guard,
            limit: None,
        },
        256 << 10,
    );
    let mut ex = apply::Extractor::new(root, opts, 0)?;
    let mut tar = tar::TarReader::new(src, &opts.limits);
    let res = ex.run(&mut tar);
    let finished = ex.finish(res);
    let mut src = tar.into_source();
    let mut drained = Ok(());
    while finished.is_ok() && drained.is_ok() {
        match tar::Source::fill(&mut src) {
            Ok([]) => break,
            Ok(b) => {
                let n = b.len();
                tar::Source::consume(&mut src, n);
            }
            Err(e) => drained = Err(Error::Read(e)),
        }
    }
    let h = src.into_inner();
    if let Some(e) = h.limit {
        return Err(e);
    }
    drained?;
    let mut stats = finished?;
    stats.bytes = h.total;
    stats.diff_id = hex_digest(h.hasher);
    Ok(stats)
}
