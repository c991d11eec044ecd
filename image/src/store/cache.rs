//! The build cache: images (a config and layers, with a manifest, name "") by a key only
//! builders interpret (say, a digest of the parent image and the step), kept in `state.json`
//! beside the images. [`Store::prune`] keeps what they use; [`Store::prune_build_cache`]
//! drops them all.

use super::gc::PruneStats;
use super::records::{ImageRecord, LayerRecord};
use super::Store;
use crate::error::Result;
use crate::image::Digest;

impl Store {
    /// The cache entry `key`, if there is one and all it uses is still in the store (its
    /// manifest, config and layer blobs, and its extracted layers); `None` otherwise.
    pub fn cache_get(&self, key: &str) -> Result<Option<ImageRecord>> {
        let Some(rec) = self.load_state()?.build_cache.remove(key) else {
            return Ok(None);
        };
        let blob = |d: &str| Digest::parse(d).is_ok_and(|d| self.has_blob(&d));
        let complete = blob(&rec.manifest)
            && blob(&rec.config)
            && rec.layers.iter().all(|l| {
                blob(&l.blob) && Digest::parse(&l.chain_id).is_ok_and(|c| self.has_layer(&c))
            });
        Ok(complete.then_some(rec))
    }

    /// Records `config` (a serialized image config) and `layers` as the cache entry `key`
    /// (replacing one so keyed): writes the config and an OCI manifest as
    /// [`Store::record_image`] does, with the same checks. Returns the entry (name "").
    pub fn cache_put(
        &self,
        key: &str,
        config: &[u8],
        layers: &[LayerRecord],
    ) -> Result<ImageRecord> {
        let _gc = self.gc_lock(false)?;
        let rec = self.write_image(config, layers)?;
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        state.build_cache.insert(key.to_string(), rec.clone());
        self.save_state(&state)?;
        Ok(rec)
    }

    /// Drops every build cache entry, then prunes what nothing else uses
    /// (`builder prune`). Waits for builds in progress.
    pub fn prune_build_cache(&self) -> Result<PruneStats> {
        self.change_then_prune(|state| {
            let any = !state.build_cache.is_empty();
            state.build_cache.clear();
            Ok(any)
        })
    }
}
