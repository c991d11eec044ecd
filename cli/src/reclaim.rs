//! Reclaiming what a killed `run IMAGE`, `unpack` or `delete` left behind: a store hold, an
//! overlay mount, a bundle directory, a network attachment.
//!
//! Every hold records the process that took it. A hold is an orphan when that process is
//! gone and what the hold was for never came to be or is gone: for `container:<id>` (a
//! `run IMAGE` bundle), no state of container `<id>`; for a bundle directory (`unpack`), no
//! `config.json` in it. Orphans are undone as `delete` or `bundle rm` would have: network
//! detached, overlay unmounted, bundle removed, hold released (last).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use berth_image::{bundle, Hold, Store};
use berth_runtime::StateRoot;

/// The holder name of container `id`'s image bundle.
pub fn container_holder(id: &str) -> String {
    format!("container:{id}")
}

/// Where `run IMAGE` makes container `id`'s bundle.
pub fn run_bundle_dir(store_root: &Path, id: &str) -> PathBuf {
    store_root.join("bundles").join(id)
}

/// Whether the hold's maker still runs (a `run` or `unpack` in progress).
fn being_made(hold: &Hold) -> bool {
    hold.creator.is_some_and(|c| c.is_alive())
}

/// Whether container `id` is live or being made: it has state, or a `run` that holds its image
/// still runs (its network is attached before its state exists).
pub fn container_in_use(root: &StateRoot, store_root: &Path, id: &str) -> bool {
    if root.read(id).is_ok() {
        return true;
    }
    let Ok(store) = Store::open(store_root) else {
        return false;
    };
    store
        .holds()
        .ok()
        .and_then(|h| h.get(&container_holder(id)).cloned())
        .is_some_and(|h| being_made(&h))
}

/// Undoes what a killed `run IMAGE --name id` (or a killed `delete` of it) left when no state
/// of container `id` exists: its bundle (and the network it lists), its mount and its hold.
/// Returns whether anything was found. A `run` still in progress is left alone.
pub fn orphaned_container(root: &StateRoot, store_root: &Path, id: &str) -> Result<bool> {
    if berth_runtime::state::validate_id(id).is_err()
        || root.read(id).is_ok()
        || !store_root.join("state.json").exists()
    {
        return Ok(false);
    }
    let store =
        Store::open(store_root).with_context(|| format!("image store {}", store_root.display()))?;
    let holder = container_holder(id);
    let hold = store.holds()?.remove(&holder);
    if hold.as_ref().is_some_and(being_made) {
        return Ok(false);
    }
    let dir = run_bundle_dir(store_root, id);
    if hold.is_none() && !dir.exists() {
        return Ok(false);
    }
    undo_container(&store, &dir, id)?;
    Ok(true)
}

fn undo_container(store: &Store, dir: &Path, id: &str) -> Result<()> {
    if dir.join(crate::images::RUN_MARKER).exists() {
        // Detaches the network it lists, then removes the bundle and releases the hold.
        crate::images::remove_run_bundle(dir, id)
    } else {
        bundle::remove_bundle(store, dir, Some(&container_holder(id)))
            .with_context(|| format!("removing bundle {}", dir.display()))
    }
}

/// Undoes a killed `unpack` into `dir` (absolute): its partial bundle (the entries `unpack`
/// makes, never the directory's other contents) and its hold. Returns whether `dir` had an
/// orphaned hold.
pub fn orphaned_unpack(store: &Store, dir: &Path) -> Result<bool> {
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

fn undo_unpack(store: &Store, dir: &Path, holder: &str) -> Result<()> {
    bundle::discard_unfinished(store, dir, holder)
        .with_context(|| format!("removing the unfinished bundle {}", dir.display()))
}

/// Reclaims every orphaned hold of the store (for `image prune`). Returns the holders
/// reclaimed.
pub fn orphaned_holds(root: &StateRoot, store_root: &Path, store: &Store) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for (holder, hold) in store.holds()? {
        if being_made(&hold) {
            continue;
        }
        if let Some(id) = holder.strip_prefix("container:") {
            if berth_runtime::state::validate_id(id).is_ok() && root.read(id).is_err() {
                undo_container(store, &run_bundle_dir(store_root, id), id)?;
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
