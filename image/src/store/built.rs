//! Built images: a config and committed layers ([`Store::commit_layer`]) recorded as an
//! image, with an OCI manifest written for it, under a name or untagged ("dangling", by
//! config digest, as `docker build` without `-t` leaves them), and the untagged ones listed,
//! removed and pruned.

use serde::Serialize;

use super::gc::PruneStats;
use super::records::{normalize_name, ImageRecord, LayerRecord};
use super::Store;
use crate::error::{Error, Result};
use crate::image::{self, media, Digest};

/// An OCI descriptor as a manifest lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
}

/// An OCI image manifest, its fields in the spec's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

impl Store {
    /// Writes the blobs of an image made of `config` (a serialized image config) and
    /// `layers`: the config and an OCI manifest. The config must parse and list the layers'
    /// DiffIDs in order, each layer's ChainID must follow from its parent's, and every layer's
    /// blob and extracted directory must be in the store. Returns the record, named "".
    /// The caller holds a shared `gc.lock`.
    pub(super) fn write_image(&self, config: &[u8], layers: &[LayerRecord]) -> Result<ImageRecord> {
        let cfg_digest = Digest::of(config);
        let what = format!("config {cfg_digest}");
        let parsed = image::parse_config(config, &what)?;
        let diff_ids = parsed.rootfs().diff_ids();
        if diff_ids.len() != layers.len()
            || diff_ids.iter().zip(layers).any(|(d, l)| *d != l.diff_id)
        {
            return Err(Error::invalid(
                what,
                format!(
                    "rootfs.diff_ids ({} of them) are not the DiffIDs of the {} layers given",
                    diff_ids.len(),
                    layers.len()
                ),
            ));
        }
        let mut parent: Option<Digest> = None;
        for l in layers {
            let chain = Digest::chain(parent.as_ref(), &Digest::parse(&l.diff_id)?);
            if chain.as_str() != l.chain_id {
                return Err(Error::invalid(
                    format!("layer {}", l.chain_id),
                    format!("its ChainID should be {chain} (from its parent and DiffID)"),
                ));
            }
            let blob = Digest::parse(&l.blob)?;
            if !self.has_blob(&blob) {
                return Err(Error::invalid(
                    self.blob_path(&blob).display().to_string(),
                    "layer blob missing from the store",
                ));
            }
            if !self.has_layer(&chain) {
                return Err(Error::invalid(
                    self.layer_path(&chain).display().to_string(),
                    "layer missing from the store",
                ));
            }
            parent = Some(chain);
        }
        self.put_blob(&mut &config[..], Some(&cfg_digest), None, &what)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: media::OCI_MANIFEST,
            config: Descriptor {
                media_type: media::OCI_CONFIG,
                digest: cfg_digest.as_str(),
                size: config.len() as u64,
            },
            layers: layers
                .iter()
                .map(|l| Descriptor {
                    media_type: &l.media_type,
                    digest: &l.blob,
                    size: l.size,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
            what: format!("manifest of {what}"),
            source,
        })?;
        let manifest_digest = Digest::of(&bytes);
        self.put_blob(
            &mut &bytes[..],
            Some(&manifest_digest),
            None,
            &format!("manifest {manifest_digest}"),
        )?;
        Ok(ImageRecord {
            name: String::new(),
            manifest: manifest_digest.to_string(),
            config: cfg_digest.to_string(),
            layers: layers.to_vec(),
            platform: format!("{}/{}", parsed.os(), parsed.architecture()),
        })
    }

    /// Records a built image: writes `config` (its serialized image config) and an OCI
    /// manifest for it and `layers` (from [`Store::commit_layer`], or an image's own), then
    /// records it as `name` (normalised; an image already so named is replaced, as
    /// [`Store::tag_image`] does) or, with `None`, untagged: keyed by its config digest, with
    /// `name` "", listed by [`Store::untagged_images`] and not by [`Store::images`]. Every
    /// layer's blob and directory must be in the store, and the config's `rootfs.diff_ids`
    /// must be the layers' DiffIDs.
    pub fn record_image(
        &self,
        name: Option<&str>,
        config: &[u8],
        layers: &[LayerRecord],
    ) -> Result<ImageRecord> {
        let name = name.map(normalize_name).transpose()?;
        let _gc = self.gc_lock(false)?;
        let mut rec = self.write_image(config, layers)?;
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        match &name {
            Some(n) => {
                state.insert_named(n, rec.clone());
                rec.name.clone_from(n);
            }
            None => {
                state.untagged.insert(rec.config.clone(), rec.clone());
            }
        }
        self.save_state(&state)?;
        Ok(rec)
    }

    /// Every untagged image (name ""), by config digest.
    pub fn untagged_images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.load_state()?.untagged.into_values().collect())
    }

    /// Every image record from one read of the state: the named ones by name, then the
    /// untagged ones (`name` ""), by ID.
    pub fn all_images(&self) -> Result<Vec<ImageRecord>> {
        let state = self.load_state()?;
        Ok(state
            .images
            .into_values()
            .chain(state.untagged.into_values())
            .collect())
    }

    /// Removes the untagged image whose config digest is `config`, then prunes.
    pub fn remove_untagged(&self, config: &Digest) -> Result<PruneStats> {
        self.change_then_prune(|state| match state.untagged.remove(config.as_str()) {
            Some(_) => Ok(true),
            None => Err(Error::ImageNotFound(config.to_string())),
        })
    }

    /// Removes every untagged image, then prunes (docker's `image prune`: dangling images
    /// go; what a container or bundle still holds stays until it is released).
    pub fn prune_untagged(&self) -> Result<PruneStats> {
        self.change_then_prune(|state| {
            let any = !state.untagged.is_empty();
            state.untagged.clear();
            Ok(any)
        })
    }
}
