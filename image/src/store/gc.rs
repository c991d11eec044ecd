//! Garbage collection: `rmi` (remove a name, then prune) and `prune` (remove blobs and
//! layers no image, untagged image, build cache entry or hold references, and leftovers of
//! dead imports), under `gc.lock`.

use std::collections::BTreeSet;
use std::fs;

use super::layout::{io_at, lock, remove_any, Lock};
use super::records::{as_config_digest, State};
use super::Store;
use crate::error::{Error, Result};
use crate::image::Digest;

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

    /// Removes an image's name (as given, or normalised), then everything no image or hold
    /// uses any more (`rmi NAME`). An untagged image is removed by its full ID (`sha256:<hex>`
    /// of its config, or the hex alone).
    pub fn remove_image(&self, name: &str) -> Result<PruneStats> {
        let id = as_config_digest(name);
        self.change_then_prune(|state| {
            if let Some(d) = &id {
                if state.untagged.remove(d.as_str()).is_some() {
                    return Ok(true);
                }
                return Err(Error::ImageNotFound(name.to_string()));
            }
            let key = state
                .name_key(name)
                .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
            state.images.remove(&key);
            Ok(true)
        })
    }

    /// Removes the image whose ID (config digest) is `id` (`rmi ID`): every name it has and
    /// its untagged record, then everything no image or hold uses any more. An image with
    /// more than one name is refused unless `force`, as docker refuses it. Returns the names
    /// removed.
    pub fn remove_image_id(&self, id: &Digest, force: bool) -> Result<(Vec<String>, PruneStats)> {
        let mut names = Vec::new();
        let stats = self.change_then_prune(|state| {
            names = state
                .images
                .iter()
                .filter(|(_, r)| r.config == id.as_str())
                .map(|(k, _)| k.clone())
                .collect();
            if names.len() > 1 && !force {
                return Err(Error::MultipleNames {
                    id: id.hex()[..12].to_string(),
                    names: names.clone(),
                });
            }
            let untagged = state.untagged.remove(id.as_str()).is_some();
            if names.is_empty() && !untagged {
                return Err(Error::ImageNotFound(id.to_string()));
            }
            for n in &names {
                state.images.remove(n);
            }
            Ok(true)
        })?;
        Ok((names, stats))
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
