//! A step's root filesystem: an overlay whose lower layers are the parent image's (shared
//! from the store, never written) and whose upper directory, in the store's scratch space,
//! collects what the step changes and becomes its layer. An image with no layers (`FROM
//! scratch`) gets the upper directory itself, with nothing mounted.
//!
//! The scratch directory is the step's bundle too (`upper/`, `work/`, `rootfs/`, and for a
//! `RUN` the `config.json`, network files and the engine's reclaim marker), so a killed
//! build's step is found and undone from that one directory (`Engine::reclaim_steps`).
//!
//! Dropping a [`StepRoot`] unmounts it and removes its scratch directory: a failed step
//! leaves no mount and no files behind.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_image::bundle::{mount_overlay, Overlay};
use berth_image::store::{LayerRecord, Store};
use berth_image::Digest;
use rustix::fs::{Mode, OFlags};
use rustix::mount::UnmountFlags;

use crate::error::{Error, Result};

/// A mounted step root.
#[derive(Debug)]
pub struct StepRoot {
    scratch: PathBuf,
    upper: PathBuf,
    rootfs: PathBuf,
    mounted: bool,
}

impl StepRoot {
    /// Mounts an overlay of `layers` (bottom first) with a fresh upper directory at
    /// `<scratch>/rootfs`.
    pub fn mount(store: &Store, layers: &[LayerRecord]) -> Result<StepRoot> {
        let scratch = store.scratch_dir("build")?;
        let upper = scratch.join("upper");
        let work = scratch.join("work");
        let rootfs = scratch.join("rootfs");
        let mut root = StepRoot {
            scratch,
            upper: upper.clone(),
            rootfs: rootfs.clone(),
            mounted: false,
        };
        for d in [&upper, &work] {
            fs::create_dir(d).map_err(|e| Error::io(d, "create", e))?;
        }
        fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::io(&upper, "chmod", e))?;
        if layers.is_empty() {
            std::os::unix::fs::symlink(&upper, &rootfs)
                .map_err(|e| Error::io(&rootfs, "link", e))?;
            return Ok(root);
        }
        fs::create_dir(&rootfs).map_err(|e| Error::io(&rootfs, "create", e))?;
        let lowers: Vec<PathBuf> = layers
            .iter()
            .map(|l| Digest::parse(&l.chain_id).map(|c| store.layer_path(&c)))
            .collect::<std::result::Result<_, _>>()?;
        mount_overlay(
            &Overlay {
                lowers: &lowers,
                upper: &upper,
                work: &work,
                userxattr: false,
                inert: false,
            },
            &rootfs,
        )?;
        root.mounted = true;
        Ok(root)
    }

    /// The bundle directory (`rootfs` inside it): the scratch directory itself.
    pub fn bundle(&self) -> &Path {
        &self.scratch
    }

    /// The root filesystem's path.
    pub fn path(&self) -> &Path {
        &self.rootfs
    }

    /// The root filesystem as a directory descriptor.
    pub fn open(&self) -> Result<OwnedFd> {
        rustix::fs::open(
            &self.rootfs,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(&self.rootfs, "open", e.into()))
    }

    fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            rustix::mount::unmount(&self.rootfs, UnmountFlags::empty())
                .or_else(|_| rustix::mount::unmount(&self.rootfs, UnmountFlags::DETACH))
                .map_err(|e| Error::io(&self.rootfs, "unmount", e.into()))?;
            self.mounted = false;
        }
        Ok(())
    }

    /// Unmounts and commits the upper directory as a layer over `parent` (a ChainID).
    pub fn commit(mut self, store: &Store, parent: Option<&Digest>) -> Result<LayerRecord> {
        self.unmount()?;
        berth_sys::failpoint::hit("build:unmounted");
        Ok(store.commit_layer(
            &self.upper,
            parent,
            berth_image::store::LayerCompression::Gzip,
        )?)
    }
}

impl Drop for StepRoot {
    fn drop(&mut self) {
        let _ = self.unmount();
        if !self.mounted {
            let _ = fs::remove_dir_all(&self.scratch);
        }
    }
}
