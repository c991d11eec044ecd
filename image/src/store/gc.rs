//! Garbage collection: `rmi` (remove a name, then prune) and `prune` (remove blobs and
//! layers no image, untagged image, build cache entry or hold references, and leftovers of
//! dead imports), under `gc.lock`.

use std::collections::BTreeSet;
use std::fs;

use super::layout::{io_at, lock, remove_any, Lock};
use super::records::{as_config_digest, normalize_name, State};
use super::Store;
use crate::error::{Error, Result};

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

impl Store {
    pub(super) fn gc_lock(&self, exclusive: bool) -> Result<Lock> {
        lock(&self.root.join("gc.lock"), exclusive)
    }

    /// Removes an image's name, then everything no image or hold uses any more (`rmi`).
    /// An untagged image is removed by its full ID (`sha256:<hex>` of its config, or the hex
    /// alone) when no image has that name.
    pub fn remove_image(&self, name: &str) -> Result<PruneStats> {
        let n = normalize_name(name)?;
        self.change_then_prune(|state| {
            if state.images.remove(&n).is_none() {
                let id = as_config_digest(name);
                if id.is_none_or(|d| state.untagged.remove(d.as_str()).is_none()) {
                    return Err(Error::ImageNotFound(name.to_string()));
                }
            }
            Ok(true)
        })
    }

    /// Applies `change` to the state under `state.lock` (saved if it returns `true`), then
    /// prunes.
    pub(super) fn change_then_prune(
        &self,
        change: impl FnOnce(&mut State) -> Result<bool>,
    ) -> Result<PruneStats> {
        {
            let _l = self.state_lock()?;
            let mut state = self.load_state()?;
            if change(&mut state)? {
                self.save_state(&state)?;
            }
        }
        self.prune()
    }

    /// Removes blobs and layers that no image (named, untagged or in the build cache) or hold
    /// references, and leftovers of dead imports (`image prune`). Waits for imports and
    /// builds in progress ([`Store::build_guard`]).
    pub fn prune(&self) -> Result<PruneStats> {
        let _gc = self.gc_lock(true)?;
        let state = {
            let _l = self.state_lock()?;
            self.load_state()?
        };
        let mut blobs: BTreeSet<String> = BTreeSet::new();
        let mut chains: BTreeSet<String> = BTreeSet::new();
        let images = state.images.values();
        for img in images
            .chain(state.untagged.values())
            .chain(state.build_cache.values())
        {
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
}
