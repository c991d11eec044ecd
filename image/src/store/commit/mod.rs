//! Committing a directory as a layer (`docker build`, `docker commit`): an overlayfs upper
//! dir (after the overlay was unmounted), or any directory in overlay layer format, written
//! as an OCI layer blob and moved into the store as the layer's extracted form.
//!
//! One pass over the tree: the walking thread (`walk`) writes the tar stream (`header`) and
//! hashes it (the DiffID) in 1 MiB chunks that a second thread compresses, hashes (the blob
//! digest) and writes to a temporary blob, so reading files and compressing overlap on two
//! CPUs. gzip runs at level 1 (flate2's `fast`, zlib-rs): several times faster than the
//! default level 6 for a blob typically 10–20% larger, the trade `docker build` users want
//! since a build commits every step; zstd runs at its default level 3, which is both faster
//! and smaller than gzip level 1.
//!
//! The directory then becomes the layer's `diff/` by a rename (it must be on the store's
//! filesystem: make it in [`Store::scratch_dir`]), after one `syncfs`, and with overlayfs's
//! bookkeeping xattrs removed; like an extracted layer, it appears under `layers/<chain>`
//! only once complete.

mod header;
mod walk;
mod xattrs;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use sha2::{Digest as _, Sha256};

use super::layout::{create_new, fsync_dir, io_at, lock, remove_any, Lock};
use super::records::LayerRecord;
use super::Store;
use crate::error::{Error, Result};
use crate::extract;
use crate::image::{media, Digest};

/// How [`Store::commit_layer`] compresses a layer's blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// gzip at level 1 (`application/vnd.oci.image.layer.v1.tar+gzip`).
    #[default]
    Gzip,
    /// zstd at level 3 (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
    /// A plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
}

impl LayerCompression {
    /// The blob's OCI media type.
    pub fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip => media::OCI_LAYER_GZIP,
            LayerCompression::Zstd => media::OCI_LAYER_ZSTD,
            LayerCompression::None => media::OCI_LAYER,
        }
    }
}

/// Keeps [`Store::prune`] from running while held (a shared `gc.lock`), as an import holds
/// it: a builder takes one for the whole build, so neither the parent image's layers it
/// mounts nor the layers and blobs it committed but has not recorded yet can be removed.
/// Do not call [`Store::prune`] (or anything that prunes) while holding it: that waits for
/// every guard, this one included.
#[derive(Debug)]
#[must_use = "the guard protects the build only while it is held"]
pub struct BuildGuard {
    _lock: Lock,
}

const CHUNK: usize = 1 << 20;

/// The uncompressed stream: hashed (the DiffID) and handed in [`CHUNK`]s to the
/// compressing thread; buffers come back for reuse.
struct Pipe {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
    back: Receiver<Vec<u8>>,
    hasher: Sha256,
    total: u64,
}

impl Pipe {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.hasher.update(&self.buf);
        self.total += self.buf.len() as u64;
        let mut next = self
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        self.tx
            .send(full)
            .map_err(|_| io::Error::other("the compressing thread stopped"))
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The blob as written: hashed and counted.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    total: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.total += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Sink = Hashing<BufWriter<File>>;

/// The compressing thread: chunks from `rx` compressed into `file`. Returns the blob's
/// hasher and size, and the file.
fn compress(
    rx: &Receiver<Vec<u8>>,
    back: &Sender<Vec<u8>>,
    file: File,
    compression: LayerCompression,
) -> io::Result<(Sha256, u64, File)> {
    let sink = Hashing {
        inner: BufWriter::with_capacity(CHUNK, file),
        hasher: Sha256::new(),
        total: 0,
    };
    let sink: Sink = match compression {
        LayerCompression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
            for chunk in rx {
                enc.write_all(&chunk)?;
                let _ = back.send(chunk);
            }
            enc.finish()?
        }
        LayerCompression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(sink, 3)?;
            for chunk in rx {
                enc.write_all(&chunk)?;
                let _ = back.send(chunk);
            }
            enc.finish()?
        }
        LayerCompression::None => {
            let mut sink = sink;
            for chunk in rx {
                sink.write_all(&chunk)?;
                let _ = back.send(chunk);
            }
            sink
        }
    };
    let file = sink
        .inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    Ok((sink.hasher, sink.total, file))
}

/// What writing a layer's blob produced.
struct Written {
    diff_id: Digest,
    blob: Digest,
    size: u64,
    bytes: u64,
    entries: u64,
}

impl Store {
    /// Creates (mode 0700) and returns a fresh directory under the store's `tmp/`, named
    /// after the calling process like the store's own temporaries, so it is removed by a
    /// later [`Store::open`] or [`Store::prune`] once this process is gone. It is on the same
    /// filesystem as `layers/`: a builder makes an overlay's upper and work dirs in it, and
    /// [`Store::commit_layer`] renames the upper dir into place. `what` (a short word, no
    /// `/`) ends its name.
    pub fn scratch_dir(&self, what: &str) -> Result<PathBuf> {
        if what.is_empty() || what.contains(['/', '\0']) {
            return Err(Error::invalid(
                format!("scratch directory name {what:?}"),
                "empty or contains '/' or NUL",
            ));
        }
        let p = self.tmp_path(what);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(io_at(&p, "create"))?;
        Ok(p)
    }

    /// Takes a [`BuildGuard`]: no prune runs until it is dropped.
    pub fn build_guard(&self) -> Result<BuildGuard> {
        Ok(BuildGuard {
            _lock: lock(&self.root.join("gc.lock"), false)?,
        })
    }

    /// Commits `upper` as a layer on top of the chain `parent` (a ChainID; `None` for a
    /// base layer): writes its OCI tar stream, compressed as `compression`, as a blob of the
    /// store, then makes `upper` the extracted layer `layers/<chain>/diff`, where `chain` is
    /// `Digest::chain(parent, diff_id)`. If that layer exists already, `upper` is removed
    /// instead. Either way `upper` is gone when this returns `Ok`; on an error it is left
    /// where it was (possibly without overlayfs bookkeeping xattrs).
    ///
    /// `upper` is an overlayfs upper dir whose overlay is unmounted, or any directory in
    /// overlay layer format (whiteouts as 0/0 character devices, opaque directories by the
    /// `trusted.overlay.opaque=y` xattr, `user.overlay.opaque` for a rootless store), on the
    /// store's filesystem. An empty `upper` is an empty layer: a tar of just its two end
    /// blocks, as docker writes it (DiffID
    /// `sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef`).
    ///
    /// Holds a shared `gc.lock` while it runs; between this and recording the image
    /// ([`Store::record_image`], [`Store::cache_put`]) the caller should hold a
    /// [`BuildGuard`].
    pub fn commit_layer(
        &self,
        upper: &Path,
        parent: Option<&Digest>,
        compression: LayerCompression,
    ) -> Result<LayerRecord> {
        let _gc = lock(&self.root.join("gc.lock"), false)?;
        let md = fs::symlink_metadata(upper).map_err(io_at(upper, "stat"))?;
        if !md.is_dir() {
            return Err(Error::invalid(
                upper.display().to_string(),
                "not a directory",
            ));
        }
        let tmp_blob = self.tmp_path("blob");
        let file = create_new(&tmp_blob)?;
        let written = match self.write_blob(upper, file, &tmp_blob, compression) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tmp_blob);
                return Err(e);
            }
        };
        berth_sys::failpoint::hit("commit:written");
        let dest = self.blob_path(&written.blob);
        fs::rename(&tmp_blob, &dest).map_err(io_at(&dest, "rename into place"))?;
        fsync_dir(&self.root.join("blobs/sha256"))?;
        let chain = Digest::chain(parent, &written.diff_id);
        if self.has_layer(&chain) {
            remove_any(upper)?;
        } else {
            self.move_layer(upper, &chain, parent, &written)?;
        }
        Ok(LayerRecord {
            chain_id: chain.to_string(),
            diff_id: written.diff_id.to_string(),
            blob: written.blob.to_string(),
            media_type: compression.media_type().to_string(),
            size: written.size,
        })
    }

    /// Writes the blob of `upper` to `file` (at `path`), durably.
    fn write_blob(
        &self,
        upper: &Path,
        file: File,
        path: &Path,
        compression: LayerCompression,
    ) -> Result<Written> {
        let prefix: &'static [u8] = if self.rootless {
            b"user.overlay."
        } else {
            b"trusted.overlay."
        };
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (back_tx, back_rx) = mpsc::channel();
        std::thread::scope(|s| {
            let compressor = std::thread::Builder::new()
                .name("berth-commit".into())
                .spawn_scoped(s, move || compress(&rx, &back_tx, file, compression))
                .map_err(|e| Error::io(path, "spawn the compressing thread", e))?;
            let pipe = Pipe {
                buf: Vec::with_capacity(CHUNK),
                tx,
                back: back_rx,
                hasher: Sha256::new(),
                total: 0,
            };
            // The pipe (and so the channel) is dropped on every path out of the walk, which
            // ends the compressing thread.
            let walked =
                walk::Walk::new(upper, pipe, prefix)
                    .run()
                    .and_then(|(mut pipe, counts)| {
                        pipe.flush()
                            .map_err(|e| Error::io(path, "write the layer blob", e))?;
                        Ok((pipe.hasher, pipe.total, counts))
                    });
            let compressed = compressor
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the compressing thread panicked")))
                .map_err(|e| Error::io(path, "write the layer blob", e));
            // A compressor that failed is why the walk could not write; a walk that failed
            // stopped the compressor early.
            let ((diff_hasher, bytes, counts), (blob_hasher, size, file)) =
                match (walked, compressed) {
                    (_, Err(e)) | (Err(e), Ok(_)) => return Err(e),
                    (Ok(w), Ok(c)) => (w, c),
                };
            file.sync_all().map_err(io_at(path, "fsync"))?;
            Ok(Written {
                diff_id: Digest::parse(&extract::hex_digest(diff_hasher))?,
                blob: Digest::parse(&extract::hex_digest(blob_hasher))?,
                size,
                bytes,
                entries: counts.entries,
            })
        })
    }

    /// Makes `upper` the layer `chain`: durable (one `syncfs`), renamed to `diff/` of a
    /// temporary layer directory, which is installed as an extracted layer is. On an error
    /// `upper` is moved back.
    fn move_layer(
        &self,
        upper: &Path,
        chain: &Digest,
        parent: Option<&Digest>,
        w: &Written,
    ) -> Result<()> {
        let dir = File::open(upper).map_err(io_at(upper, "open"))?;
        rustix::fs::syncfs(&dir).map_err(|e| Error::io(upper, "syncfs", e))?;
        drop(dir);
        let tmp = self.tmp_path("layer");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io_at(&tmp, "create"))?;
        let diff = tmp.join("diff");
        if let Err(e) = fs::rename(upper, &diff) {
            let _ = fs::remove_dir(&tmp);
            let hint = if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
                "move into the store (make it in Store::scratch_dir: same filesystem)"
            } else {
                "move into the store"
            };
            return Err(Error::io(
                upper,
                "rename",
                io::Error::new(e.kind(), format!("{hint}: {e}")),
            ));
        }
        let res = (|| {
            fs::set_permissions(&diff, fs::Permissions::from_mode(0o755))
                .map_err(io_at(&diff, "chmod"))?;
            let info = serde_json::json!({
                "chainId": chain.to_string(),
                "diffId": w.diff_id.to_string(),
                "parent": parent.map(Digest::to_string),
                "blob": w.blob.to_string(),
                "entries": w.entries,
                "size": w.bytes,
            });
            self.install_layer(&tmp, chain, &info)
        })();
        if res.is_err() {
            let _ = fs::rename(&diff, upper);
            if tmp.exists() {
                let _ = remove_any(&tmp);
            }
        }
        res
    }
}

#[cfg(test)]
mod tests;
