//! Taking containers of images down: `delete` (the runtime's, with the image bundle and the
//! network undone before the state goes), the removal of a run's bundle by its record, and
//! `bundle rm` of any bundle the engine made.

use std::path::Path;

use berth_image::bundle;

use crate::error::{render, Error, Result};
use crate::network;
use crate::record::RunRecord;
use crate::roots::open_store;
use crate::Engine;

impl Engine {
    /// Deletes container `id` as the runtime does; an image run's bundle and network go
    /// before its state, so a `delete` killed midway can be run again and still finds them.
    /// With `force`, a container without state that a killed run (or `delete`) left is
    /// reclaimed too.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let existed = self.root().read(id).is_ok();
        berth_runtime::delete_with(self.root(), id, force, |s| {
            berth_runtime::failpoint::hit("delete:stopped");
            remove_run_bundle(&s.bundle, id).map_err(|e| render(&e))
        })?;
        if force && !existed {
            self.reclaim_container(id)?;
        }
        Ok(())
    }

    /// `bundle rm`: removes a bundle the engine made, as what made it would have: an image
    /// run's whose container is gone (refused while it exists or is being made), an
    /// `unpack` that was killed, or a finished `unpack` (unmounted, removed, its hold
    /// released).
    pub fn remove_bundle_dir(&self, dir: &Path) -> Result<()> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        // A bundle of an image run whose container is gone, or whose run was killed.
        if dir.parent() == Some(&self.store_root().join("bundles")) {
            if let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                if self.container_in_use(id) {
                    return Err(Error::BundleInUse {
                        dir: dir.clone(),
                        id: id.to_string(),
                    });
                }
                if self.reclaim_container(id)? {
                    return Ok(());
                }
            }
        }
        let store = self.open_store()?;
        if crate::reclaim::reclaim_unpack(&store, &dir)? {
            return Ok(());
        }
        if !dir.join("config.json").exists() && !dir.join("rootfs").exists() {
            return Err(Error::NotABundle { dir });
        }
        // A leftover of an image run (its container already gone): undone as delete would.
        if let Ok(Some(record)) = RunRecord::read(&dir) {
            return remove_run_bundle(&dir, &record.id);
        }
        bundle::remove_bundle(&store, &dir, None).map_err(|source| Error::RemoveBundle {
            what: "removing bundle",
            dir,
            source: Box::new(source),
        })
    }
}

/// After `delete` of container `id`: removes the bundle an image run made for it (network
/// detached, overlay unmounted, upper and work removed, layers released). Only a record that
/// names this container, in `<store>/bundles/<id>`, counts: bundles without one are the
/// caller's and stay. Every step runs even if an earlier one fails; the first error is
/// returned.
pub fn remove_run_bundle(bundle_dir: &Path, id: &str) -> Result<()> {
    let Some(record) = RunRecord::read(bundle_dir)? else {
        return Ok(());
    };
    if !record.belongs_to(bundle_dir, id) {
        // A copied or forged record: not this container's bundle to remove.
        tracing::warn!(
            "{}: names another container or place; the bundle is left alone",
            RunRecord::path(bundle_dir).display()
        );
        return Ok(());
    }
    let mut first: Option<Error> = None;
    if let Some(net) = &record.net {
        if let Err(e) = network::detach(net, id) {
            first.get_or_insert(e);
        }
    }
    if record.store.is_dir() {
        let res = open_store(&record.store).and_then(|s| {
            bundle::remove_bundle(&s, bundle_dir, Some(&record.holder)).map_err(|source| {
                Error::RemoveBundle {
                    what: "removing bundle",
                    dir: bundle_dir.to_path_buf(),
                    source: Box::new(source),
                }
            })
        });
        if let Err(e) = res {
            first.get_or_insert(e);
        }
    } else {
        // The store is gone: nothing to release, but the mount and directory still go.
        let _ = nix::mount::umount2(&bundle_dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        if let Err(e) = std::fs::remove_dir_all(bundle_dir) {
            first.get_or_insert(Error::io("removing", bundle_dir, e));
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    #[test]
    fn a_record_of_another_place_or_container_removes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        let forged = tmp.path().join("forged");
        std::fs::create_dir_all(&forged).unwrap();
        RunRecord::new("live", &store, &names::holder("live"), "busybox", None)
            .write(&forged)
            .unwrap();
        std::fs::write(forged.join("config.json"), "{}").unwrap();
        remove_run_bundle(&forged, "live").unwrap();
        remove_run_bundle(&forged, "other").unwrap();
        assert!(forged.join("config.json").exists());
    }

    #[test]
    fn a_malformed_record_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(RunRecord::path(tmp.path()), "{").unwrap();
        let e = remove_run_bundle(tmp.path(), "x").unwrap_err();
        assert!(e.to_string().contains(crate::record::FILE), "{e}");
    }
}
