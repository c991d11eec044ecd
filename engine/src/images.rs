//! Images as the engine uses them: found by name or ID prefix, made into bundles for the
//! caller (`unpack`), and pruned together with what killed runs and unpacks left.

use std::path::PathBuf;

use berth_image::store::{ImageRecord, PruneStats, Store};
use berth_image::{bundle, Bundle};
use berth_runtime::oci::Spec;

use crate::error::{Error, Result};
use crate::spec::{self, ProcessOverrides};
use crate::Engine;

/// An image's ID: the hex of its config digest, as `docker images` shows it.
pub fn image_id(r: &ImageRecord) -> &str {
    r.config.strip_prefix("sha256:").unwrap_or(&r.config)
}

/// Finds an image by name (`name[:tag]`) or by a prefix (at least 4 hex digits) of its ID.
pub fn find_image(store: &Store, name: &str) -> Result<ImageRecord> {
    match store.image(name) {
        Ok(r) => return Ok(r),
        Err(berth_image::Error::ImageNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut hits: Vec<ImageRecord> = store
            .images()?
            .into_iter()
            .filter(|r| image_id(r).starts_with(hex))
            .collect();
        match hits.len() {
            1 => return Ok(hits.remove(0)),
            0 => {}
            count => {
                return Err(Error::AmbiguousImage {
                    prefix: name.to_string(),
                    count,
                })
            }
        }
    }
    Err(Error::ImageNotFound {
        name: name.to_string(),
        store: store.root().to_path_buf(),
    })
}

/// What `unpack` is asked for.
#[derive(Debug, Clone, Default)]
pub struct UnpackRequest {
    /// Image name or ID prefix.
    pub image: String,
    /// The bundle directory to create (must not hold a config.json).
    pub dir: PathBuf,
    /// Changes to the image's process.
    pub process: ProcessOverrides,
    /// A flattened copy of the layers instead of an overlay mount.
    pub flat: bool,
    /// The rootfs is only for looking at files: mounted nosuid,nodev.
    pub inspect: bool,
}

/// A bundle made by [`Engine::unpack`].
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The image's name.
    pub image: String,
    /// The bundle.
    pub bundle: Bundle<Spec>,
}

/// What [`Engine::prune_images`] removed.
#[derive(Debug, Clone)]
pub struct ImagePrune {
    /// Blobs, layers and leftovers of interrupted imports.
    pub stats: PruneStats,
    /// Holders of bundles of killed runs or unpacks reclaimed.
    pub reclaimed: Vec<String>,
}

impl Engine {
    /// Makes a bundle of an image for the caller (`unpack`): its rootfs and a config.json
    /// from `berth spec`'s template with the image config and the overrides applied. It is
    /// the caller's: deleting a container run from it leaves it; `bundle rm` removes it.
    pub fn unpack(&self, req: &UnpackRequest) -> Result<Unpacked> {
        let store = self.open_store()?;
        let r = find_image(&store, &req.image)?;
        let template = spec::template(false, None)?;
        // Absolute, so `bundle rm` finds the hold whatever the caller's directory then.
        let dir = std::path::absolute(&req.dir).unwrap_or_else(|_| req.dir.clone());
        let opts = berth_image::BundleOptions {
            inspect: req.inspect,
            ..req.process.bundle_options(req.flat)
        };
        let bundle = bundle::create_bundle_with(&store, &r.name, &dir, template, &opts, |_| {
            Ok::<(), berth_image::Error>(())
        })
        .map_err(|source| Error::UnpackInto {
            image: r.name.clone(),
            dir: req.dir.clone(),
            source: Box::new(source),
        })?;
        Ok(Unpacked {
            image: r.name,
            bundle,
        })
    }

    /// Removes blobs and layers no image or container uses, leftovers of dead imports, and
    /// what killed runs and unpacks left (`image prune`).
    pub fn prune_images(&self) -> Result<ImagePrune> {
        let store = self.open_store()?;
        let reclaimed = self.reclaim_holds(&store)?;
        let stats = store.prune()?;
        Ok(ImagePrune { stats, reclaimed })
    }
}
