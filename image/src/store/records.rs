//! Image records: the images of the store by name (`name:tag`), with their manifest, config
//! and layers, kept with the holds in `state.json` (read and written under `state.lock`).

use std::collections::BTreeMap;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::holds::Hold;
use super::layout::{lock, write_atomic, Lock};
use super::Store;
use crate::error::{Error, Result};
use crate::image::{self, Digest};

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// ChainID of the image's layers up to and including this one (the cache key).
    pub chain_id: String,
    /// DiffID: digest of the uncompressed tar stream.
    pub diff_id: String,
    /// Digest of the blob as stored (compressed or not).
    pub blob: String,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Its name (`name:tag`).
    pub name: String,
    /// Digest of the manifest.
    pub manifest: String,
    /// Digest of the config.
    pub config: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The platform it was selected for.
    pub platform: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) images: BTreeMap<String, ImageRecord>,
    pub(super) holds: BTreeMap<String, Hold>,
}

/// Normalises an image name: a missing tag becomes `:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('\0') {
        return Err(Error::invalid(
            format!("image name {name:?}"),
            "empty or contains whitespace",
        ));
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}:latest"))
    }
}

impl Store {
    pub(super) fn state_lock(&self) -> Result<Lock> {
        lock(&self.root.join("state.lock"), true)
    }

    pub(super) fn load_state(&self) -> Result<State> {
        let p = self.root.join("state.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Json {
                what: p.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io(p, "read", e)),
        }
    }

    pub(super) fn save_state(&self, state: &State) -> Result<()> {
        let data = serde_json::to_vec_pretty(state).map_err(|source| Error::Json {
            what: "state.json".into(),
            source,
        })?;
        write_atomic(&self.root.join("state.json"), &data)
    }

    /// Every image, by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.load_state()?.images.into_values().collect())
    }

    /// One image by name (a missing tag means `:latest`).
    pub fn image(&self, name: &str) -> Result<ImageRecord> {
        let n = normalize_name(name)?;
        self.load_state()?
            .images
            .remove(&n)
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))
    }

    /// The parsed config of an image.
    pub fn image_config(&self, image: &ImageRecord) -> Result<image::ImageConfig> {
        let d = Digest::parse(&image.config)?;
        let what = format!("config {d} of {}", image.name);
        image::parse_config(&self.read_document(&d, &what)?, &what)
    }

    /// Records the image `src` under the name `dst` as well (`berth tag`); an image already
    /// named `dst` is replaced (its content goes at the next prune if nothing uses it).
    pub fn tag_image(&self, src: &str, dst: &str) -> Result<ImageRecord> {
        let src_name = normalize_name(src)?;
        let dst_name = normalize_name(dst)?;
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        let mut rec = state
            .images
            .get(&src_name)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(src.to_string()))?;
        rec.name.clone_from(&dst_name);
        state.images.insert(dst_name, rec.clone());
        self.save_state(&state)?;
        Ok(rec)
    }
}
