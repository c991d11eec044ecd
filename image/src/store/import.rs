//! Imports: an image from a [`BlobSource`] (a registry, for `berth pull`) or from whatever a
//! path holds (an OCI layout, a docker-archive, either as a tar), resolved to the platform's
//! manifest, with its blobs copied, its layers extracted and its name recorded last.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageManifest;

use super::blobs::BlobSource;
use super::layout::{io_at, remove_any};
use super::records::{normalize_name, ImageRecord, LayerRecord};
use super::Store;
use crate::error::{Error, Result};
use crate::extract::{self, ExtractOptions, Limits, Mode};
use crate::image::{self, Digest, Document, Platform};

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

impl Store {
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
    pub(super) fn with_unpacked<T>(
        &self,
        archive: &Path,
        f: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let tmp = self.unpack_archive(archive)?;
        let res = f(&tmp);
        let _ = remove_any(&tmp);
        res
    }

    /// Unpacks an archive's regular files and directories into a temporary directory
    /// (safely: the layer extractor, rootless, confined).
    pub(super) fn unpack_archive(&self, archive: &Path) -> Result<PathBuf> {
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

    /// Resolves a manifest or index descriptor to an image manifest for the platform.
    pub(super) fn resolve_manifest(
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
    pub(super) fn import_image(
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
        state.insert_named(name, record.clone());
        self.save_state(&state)?;
        Ok(record)
    }
}
