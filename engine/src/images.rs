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

/// Finds an image by name (`name[:tag]`), by full ID, or by a prefix (at least 4 hex digits)
/// of its ID, among named and untagged (built without a name) images. Records with the same
/// ID are one image, not an ambiguous prefix (one image under two names, or named and
/// untagged): the first name in name order wins. An untagged image comes back with `name`
/// set to its ID (`sha256:<hex>`), which the store takes wherever it takes a name (holds and
/// bundles, `tag`, `rmi`).
pub fn find_image(store: &Store, name: &str) -> Result<ImageRecord> {
    match store.image(name) {
        Ok(r) => return Ok(by_id_if_untagged(r)),
        Err(berth_image::Error::ImageNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut hits = store.all_images()?;
        hits.retain(|r| image_id(r).starts_with(hex));
        let mut ids: Vec<&str> = hits.iter().map(image_id).collect();
        ids.sort_unstable();
        ids.dedup();
        match ids.len() {
            0 => {}
            1 => return Ok(by_id_if_untagged(hits.swap_remove(0))),
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

/// An untagged record (name "") named by its ID, so the store finds it again by that name.
pub fn by_id_if_untagged(mut r: ImageRecord) -> ImageRecord {
    if r.name.is_empty() {
        r.name.clone_from(&r.config);
    }
    r
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(n: u32) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": [format!("N={n}")]},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap()
    }

    /// Two configs whose IDs share their first 4 hex digits.
    fn colliding_configs() -> (Vec<u8>, Vec<u8>) {
        let mut seen = std::collections::HashMap::new();
        (0..)
            .find_map(|n| {
                let c = config(n);
                let p = berth_image::Digest::of(&c).hex()[..4].to_string();
                seen.insert(p, c.clone()).map(|other| (other, c))
            })
            .unwrap()
    }

    #[test]
    fn finds_untagged_images_and_one_image_under_two_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = colliding_configs();
        let named = store.record_image(Some("one"), &a, &[]).unwrap();
        store.tag_image("one", "two").unwrap();
        let untagged = store.record_image(None, &b, &[]).unwrap();
        assert_eq!(untagged.name, "");
        let id = image_id(&named).to_string();
        let id2 = image_id(&untagged).to_string();

        // One image with two names: not ambiguous.
        let r = find_image(&store, &id[..12]).unwrap();
        assert_eq!(
            (r.name.as_str(), r.config.as_str()),
            ("one:latest", named.config.as_str())
        );
        // The untagged image, by prefix and by full ID: named by its ID.
        let r = find_image(&store, &id2[..12]).unwrap();
        assert_eq!(r.name, untagged.config);
        assert_eq!(
            find_image(&store, &untagged.config).unwrap().name,
            untagged.config
        );
        // Two images (three records) share the first 4 digits.
        let e = find_image(&store, &id[..4]).unwrap_err();
        assert!(matches!(e, Error::AmbiguousImage { count: 2, .. }), "{e}");
        // The untagged image's ID names it for the store (holds, tags, rmi).
        store.hold("c1", &r.name).unwrap();
        store.release("c1").unwrap();
        store.tag_image(&r.name, "three").unwrap();
        assert!(store.untagged_images().unwrap().is_empty(), "named now");
        assert_eq!(find_image(&store, &id2[..12]).unwrap().name, "three:latest");
    }
}
