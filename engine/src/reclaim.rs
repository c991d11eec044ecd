//! Reclaiming what a killed image run, `unpack` or `delete` left behind: a store hold, an
//! overlay mount, a bundle directory, a network attachment.
//!
//! Every hold records the process that took it. A hold is an orphan when that process is
//! gone and what the hold was for never came to be or is gone: for `container:<id>` (an
//! image run's bundle), no state of container `<id>`; for a bundle directory (`unpack`), no
//! `config.json` in it. Orphans are undone as `delete` or `bundle rm` would have: network
//! detached, overlay unmounted, bundle removed, hold released (last).
//!
//! Build steps hold no image: a killed builder's step is found by the marker in its scratch
//! directory ([`Engine::reclaim_steps`], in `step`), which [`Engine::reclaim_holds`] runs too.

use std::path::Path;

use berth_image::{bundle, Hold, Store};

use crate::error::{Error, Result};
use crate::names;
use crate::record::RunRecord;
use crate::Engine;

/// Whether the hold's maker still runs (a run or `unpack` in progress).
fn being_made(hold: &Hold) -> bool {
    hold.creator.is_some_and(|c| c.is_alive())
}

impl Engine {
    /// Whether container `id` is live or being made: it has state, or a run that holds its
    /// image still runs (its network is attached before its state exists).
    pub fn container_in_use(&self, id: &str) -> bool {
        if self.root().read(id).is_ok() {
            return true;
        }
        let Ok(store) = Store::open(self.store_root()) else {
            return false;
        };
        store
            .holds()
            .ok()
            .and_then(|h| h.get(&names::holder(id)).cloned())
            .is_some_and(|h| being_made(&h))
            || step_being_run(&store, id)
    }

    /// Undoes what a killed run of container `id` (or a killed `delete` of it) left when no
    /// state of it exists: its bundle (and the network its record lists), its mount and its
    /// hold. Returns whether anything was found. A run still in progress is left alone.
    pub fn reclaim_container(&self, id: &str) -> Result<bool> {
        let store_root = self.store_root();
        if berth_runtime::state::validate_id(id).is_err()
            || self.root().read(id).is_ok()
            || !store_root.join("state.json").exists()
        {
            return Ok(false);
        }
        let store = self.open_store()?;
        let holder = names::holder(id);
        let hold = store.holds()?.remove(&holder);
        if hold.as_ref().is_some_and(being_made) {
            return Ok(false);
        }
        let dir = names::bundle_dir(store_root, id);
        if hold.is_none() && !dir.exists() {
            return Ok(false);
        }
        undo_container(&store, &dir, id)?;
        Ok(true)
    }

    /// Reclaims the steps of killed builds ([`Engine::reclaim_steps`]) and every orphaned
    /// hold of the store (for `image prune`). Returns the step containers and holders
    /// reclaimed.
    pub fn reclaim_holds(&self, store: &Store) -> Result<Vec<String>> {
        let mut done = self.reclaim_steps(store)?;
        for (holder, hold) in store.holds()? {
            if being_made(&hold) {
                continue;
            }
            if let Some(id) = names::holder_container(&holder) {
                if berth_runtime::state::validate_id(id).is_ok() && self.root().read(id).is_err() {
                    undo_container(store, &names::bundle_dir(self.store_root(), id), id)?;
                    done.push(holder);
                }
            } else if holder.starts_with('/') {
                let dir = Path::new(&holder);
                if !dir.join("config.json").exists() {
                    undo_unpack(store, dir, &holder)?;
                    done.push(holder);
                }
            }
        }
        Ok(done)
    }
}

/// Whether `id` is the container of a build step whose builder still runs (its network is
/// attached before its state exists): a live scratch directory's marker names it.
fn step_being_run(store: &Store, id: &str) -> bool {
    let dead = store.dead_scratch().unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(store.root().join("tmp")) else {
        return false;
    };
    entries.flatten().any(|e| {
        !dead.contains(&e.path())
            && std::fs::read_to_string(e.path().join(berth_image::store::RECLAIM_MARKER))
                .is_ok_and(|m| m.contains(&format!("\"{id}\"")))
    })
}

/// Undoes a killed `unpack` into `dir` (absolute): its partial bundle (the entries `unpack`
/// makes, never the directory's other contents) and its hold. Returns whether `dir` had an
/// orphaned hold.
pub fn reclaim_unpack(store: &Store, dir: &Path) -> Result<bool> {
    let holder = dir.display().to_string();
    let Some(hold) = store.holds()?.remove(&holder) else {
        return Ok(false);
    };
    if being_made(&hold) || dir.join("config.json").exists() {
        return Ok(false);
    }
    undo_unpack(store, dir, &holder)?;
    Ok(true)
}

fn undo_container(store: &Store, dir: &Path, id: &str) -> Result<()> {
    if RunRecord::path(dir).exists() {
        // Detaches the network it lists, then removes the bundle and releases the hold.
        crate::teardown::remove_run_bundle(dir, id)
    } else {
        bundle::remove_bundle(store, dir, Some(&names::holder(id))).map_err(|source| {
            Error::RemoveBundle {
                what: "removing bundle",
                dir: dir.to_path_buf(),
                source: Box::new(source),
            }
        })
    }
}

fn undo_unpack(store: &Store, dir: &Path, holder: &str) -> Result<()> {
    bundle::discard_unfinished(store, dir, holder).map_err(|source| Error::RemoveBundle {
        what: "removing the unfinished bundle",
        dir: dir.to_path_buf(),
        source: Box::new(source),
    })
}
