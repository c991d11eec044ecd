//! Layers: each extracted once per ChainID into `tmp/`, verified against its DiffID and
//! renamed into `layers/<chain>` (the completion marker), then shared by every image whose
//! chain contains it. Independent layers are extracted in parallel, and a layer fetched from a
//! source is extracted while it arrives.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use super::blobs::{finish_blob, BlobSource, BlobTee};
use super::layout::{create_new, fsync_dir, io_at, remove_any, write_atomic};
use super::records::{ImageRecord, LayerRecord};
use super::Store;
use crate::error::{Error, Result};
use crate::extract::{self, ExtractOptions, ImageBudget, Mode};
use crate::image::Digest;

impl Store {
    /// Extracts every missing layer of a chain, up to `parallel` at once.
    pub(super) fn ensure_layers(
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
    pub(super) fn ensure_layers_with(
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
    pub(super) fn extract_layer(
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
    pub(super) fn stream_layer(
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
                let mut tee = BlobTee {
                    file: create_new(&tmp_blob)?,
                    inner: src.open(&blob)?,
                    path: &tmp_blob,
                    hasher: Sha256::new(),
                    total: 0,
                    size: l.size,
                };
                let stats = {
                    let mut buffered = io::BufReader::with_capacity(1 << 20, &mut tee);
                    let head = io::BufRead::fill_buf(&mut buffered)
                        .map_err(|e| Error::io(what.as_str(), "read", e))?;
                    let found = extract::layer_compression(head, Some(&l.media_type), &what)?;
                    let reader = extract::decompress(buffered, found)
                        .map_err(|e| Error::io(what.as_str(), "open decompressor", e))?;
                    extract::extract_layer(reader, diff, opts)?
                };
                // The extractor stops at the end of the tar stream: the rest of the blob
                // (padding, trailing gzip members) is part of its digest.
                io::copy(&mut tee, &mut io::sink())
                    .map_err(|e| Error::io(what.as_str(), "read", e))?;
                let BlobTee {
                    hasher,
                    total,
                    file,
                    ..
                } = tee;
                finish_blob(
                    hasher,
                    total,
                    Some(l.size),
                    Some(&blob),
                    &what,
                    &file,
                    &tmp_blob,
                )?;
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
    pub(super) fn extract_layer_with(
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
            self.install_layer(&tmp, &chain, &info)
        })();
        if res.is_err() {
            let _ = remove_any(&tmp);
        }
        res
    }

    /// Writes `info` as `layer.json` into `tmp` (a complete layer: its `diff/` made durable),
    /// renames `tmp` into `layers/<chain>` (the completion marker) and links `l/<short>` to
    /// it. If another process completed the same layer first, theirs is kept and `tmp`
    /// removed.
    pub(super) fn install_layer(
        &self,
        tmp: &Path,
        chain: &Digest,
        info: &serde_json::Value,
    ) -> Result<()> {
        write_atomic(&tmp.join("layer.json"), info.to_string().as_bytes())?;
        fsync_dir(tmp)?;
        let dest = self.root.join("layers").join(chain.hex());
        match fs::rename(tmp, &dest) {
            Ok(()) => {}
            // Another import completed it first: theirs is as good as ours.
            Err(e) if dest.is_dir() => {
                tracing::debug!("layer {chain} completed concurrently: {e}");
                remove_any(tmp)?;
            }
            Err(e) => return Err(Error::io(dest, "rename the layer into place", e)),
        }
        fsync_dir(&self.root.join("layers"))?;
        let link = self.short_layer_path(chain);
        let target = Path::new("../layers").join(chain.hex()).join("diff");
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(link, "symlink", e)),
        }
        Ok(())
    }

    /// Imports a single layer blob already in the store (used by tests and by callers that
    /// fetched blobs themselves): extracts it as the layer `chain_id` if missing.
    pub fn ensure_layer(&self, layer: &LayerRecord, parent: Option<&str>) -> Result<PathBuf> {
        self.extract_layer(layer, parent, None)?;
        Ok(self.layer_path(&Digest::parse(&layer.chain_id)?))
    }

    /// Whether an image's layers are all extracted (and re-extracts missing ones from their
    /// blobs).
    pub fn ensure_image_layers(&self, image: &ImageRecord) -> Result<()> {
        let _gc = self.gc_lock(false)?;
        self.ensure_layers(&image.layers, 2, &self.image_budget(&image.name))
    }
}
