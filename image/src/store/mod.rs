//! A content-addressed image store.
//!
//! Layout under the root (default `/var/lib/berth`):
//!
//! ```text
//! blobs/sha256/<hex>     manifests, configs and layer blobs, verified while streaming
//! layers/<chain-hex>/    one extracted layer per ChainID: diff/ (an overlayfs lower layer)
//!                        and layer.json; present only once complete (renamed into place)
//! l/<short>              short symlinks to layers/<chain-hex>/diff, for mount strings
//! state.json             images (name -> manifest, config, layers), untagged images and
//!                        the build cache (config digest / key -> the same), holds (bundles)
//! tmp/                   in-progress imports and builds, named after the process's pid
//!                        (a build step's scratch directory holds a `reclaim.json` while its
//!                        container and network exist: see [`RECLAIM_MARKER`])
//! ```
//!
//! Every write is a temporary file or directory renamed into place after an fsync (a layer:
//! one `syncfs` after extraction), so a crash or `kill -9` mid-import leaves at most garbage
//! in `tmp/` (removed when a later [`Store::open`] finds its pid gone, mounts beneath it
//! detached first), never a half blob or layer. Blobs are verified against their digest while they are copied in; a layer's DiffID
//! is verified while it is extracted. Layers are shared by every image whose chain contains
//! them, and independent layers of one image are extracted in parallel.
//!
//! The store's jobs, one module each (all of them `impl Store` blocks):
//!
//! - `layout`: where things live under the root, temporaries, locks and durable writes;
//! - `blobs`: blobs copied in and verified while streaming, documents read back;
//! - `records`: image records, names and tags in `state.json`;
//! - `holds`: what bundles keep alive while they use an image;
//! - `layers`: layers extracted once per ChainID (and shared), streamed while they arrive;
//! - `built`, `cache`: built images recorded (named or untagged) and the build cache;
//! - `commit`: a directory (an overlay upper dir) committed as a layer, for builds;
//! - `import`: importing an image from a source (a registry, a path, an archive);
//! - `oci`, `docker`: OCI image layouts and docker-archives;
//! - `gc`: `rmi` and `prune`.

mod blobs;
#[cfg(test)]
mod build_tests;
mod built;
mod cache;
mod commit;
mod docker;
mod gc;
mod holds;
mod import;
mod layers;
mod layout;
#[cfg(test)]
mod names_tests;
mod oci;
mod records;

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::extract::{ImageBudget, Limits};

pub use blobs::BlobSource;
pub use commit::{BuildGuard, LayerCompression};
pub use gc::PruneStats;
pub use holds::{Creator, Hold};
pub use import::ImportOptions;
pub(crate) use layout::remove_any;
pub use layout::RECLAIM_MARKER;
pub use records::{normalize_name, ImageRecord, LayerRecord};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// The store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Extraction runs unprivileged (devices skipped, ownership best effort).
    rootless: bool,
    /// Bounds on what layers may make extraction do.
    limits: Limits,
}

impl Store {
    /// Opens (creating if needed) a store at `root`, and removes leftovers of imports whose
    /// process is gone. The root's missing parents are made too (a fresh account has no
    /// `~/.local/share` yet), like the store's own directories readable by their owner only
    /// (0700).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| Error::io(&root, "create store directory", e))?;
        for d in ["blobs", "blobs/sha256", "layers", "l", "tmp"] {
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
}
