//! Image records: the images of the store by name (`name:tag`), with their manifest, config
//! and layers, kept with the holds in `state.json` (read and written under `state.lock`);
//! built images without a name (untagged, by config digest) and the build cache beside them.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::holds::Hold;
use super::layout::{lock, write_atomic, Lock};
use super::Store;
use crate::error::{Error, Result};
use crate::image::{self, Digest};
use crate::reference::Reference;

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
    /// Images recorded without a name ("dangling"), by config digest; their `name` is "".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) untagged: BTreeMap<String, ImageRecord>,
    /// The build cache: images by a key only builders interpret; their `name` is "".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) build_cache: BTreeMap<String, ImageRecord>,
    /// Whether the names are in normalised form: false in an older store's state, which is
    /// re-keyed once on load ([`State::normalise_names`]) and saved marked, so that later
    /// loads parse no names.
    #[serde(default)]
    pub(super) names_normalised: bool,
}

/// The config digest `reference` names when it is an image ID: `sha256:<64 hex>` or the
/// 64 hex digits alone.
pub(super) fn as_config_digest(reference: &str) -> Option<Digest> {
    let r = reference.trim();
    if r.starts_with("sha256:") {
        Digest::parse(r).ok()
    } else {
        Digest::parse(&format!("sha256:{r}")).ok()
    }
}

impl State {
    /// The image `reference` names: a full image ID (config digest), found among named
    /// images first, then untagged ones; or a name (normalised: `busybox` is
    /// `busybox:latest`).
    pub(super) fn find(&self, reference: &str) -> Option<&ImageRecord> {
        if let Some(d) = as_config_digest(reference) {
            return self
                .images
                .values()
                .find(|r| r.config == d.as_str())
                .or_else(|| self.untagged.get(d.as_str()));
        }
        self.name_key(reference).and_then(|k| self.images.get(&k))
    }

    /// The key of the image named `reference`: the name as given when an older store
    /// recorded it so (one that does not parse as a reference), else its normalised form;
    /// `None` when no image has that name (a reference that does not parse names none: it
    /// may be a container ID given to runc's `run ID`, whose caller says so).
    pub(super) fn name_key(&self, reference: &str) -> Option<String> {
        if self.images.contains_key(reference) {
            return Some(reference.to_string());
        }
        normalize_name(reference)
            .ok()
            .filter(|n| self.images.contains_key(n))
    }

    /// Records `rec` under `name`, replacing an image of that name; an untagged entry of the
    /// same image goes (it has a name now).
    pub(super) fn insert_named(&mut self, name: &str, mut rec: ImageRecord) {
        self.untagged.remove(&rec.config);
        rec.name = name.to_string();
        self.images.insert(name.to_string(), rec);
    }

    /// Names that older stores recorded as given (`docker.io/library/busybox:latest`,
    /// `busybox`) re-keyed under their normalised form, so that every spelling finds them.
    /// A name that does not parse, or whose normalised form another image has, stays as it
    /// is ([`State::name_key`] still finds it as written).
    fn normalise_names(&mut self) {
        let stale: Vec<(String, String)> = self
            .images
            .keys()
            .filter_map(|k| {
                normalize_name(k)
                    .ok()
                    .filter(|n| n != k)
                    .map(|n| (k.clone(), n))
            })
            .collect();
        for (old, new) in stale {
            if self.images.contains_key(&new) {
                continue;
            }
            if let Some(rec) = self.images.remove(&old) {
                self.insert_named(&new, rec);
            }
        }
        self.names_normalised = true;
    }
}

/// Normalises an image name as docker does, to the familiar form the store keeps names in
/// and shows: `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` are
/// `busybox:latest`; `foo/bar` is `foo/bar:latest`; another registry stays
/// (`localhost:5000/app:v1`); a digest wins over a tag (`app@sha256:...`). What docker
/// would not take as a reference (`BAD:Name`, `../../etc/x`, 64 hex digits) is refused,
/// naming the reason.
pub fn normalize_name(name: &str) -> Result<String> {
    Ok(Reference::parse(name)?.familiar())
}

impl Store {
    pub(super) fn state_lock(&self) -> Result<Lock> {
        lock(&self.root.join("state.lock"), true)
    }

    pub(super) fn load_state(&self) -> Result<State> {
        let p = self.root.join("state.json");
        match fs::read(&p) {
            Ok(b) => {
                let mut state: State =
                    serde_json::from_slice(&b).map_err(|source| Error::Json {
                        what: p.display().to_string(),
                        source,
                    })?;
                if !state.names_normalised {
                    state.normalise_names();
                }
                Ok(state)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State {
                names_normalised: true,
                ..State::default()
            }),
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

    /// One image by name (normalised: a missing tag means `:latest`, `docker.io/library/` is
    /// implied) or by full ID (`sha256:<hex>` of its config, or the hex alone; named images
    /// first, then untagged ones, whose `name` is "").
    pub fn image(&self, name: &str) -> Result<ImageRecord> {
        self.load_state()?
            .find(name)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))
    }

    /// The image that has the name `reference` (normalised), if any: unlike
    /// [`Store::image`], never one found by its ID.
    pub fn image_by_name(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let state = self.load_state()?;
        Ok(state
            .name_key(reference)
            .and_then(|k| state.images.get(&k).cloned()))
    }

    /// The parsed config of an image.
    pub fn image_config(&self, image: &ImageRecord) -> Result<image::ImageConfig> {
        let d = Digest::parse(&image.config)?;
        let what = format!("config {d} of {}", image.name);
        image::parse_config(&self.read_document(&d, &what)?, &what)
    }

    /// Records the image `src` (a name or full ID, as [`Store::image`] takes) under the name
    /// `dst` as well (`berth tag`); an image already named `dst` is replaced (its content goes
    /// at the next prune if nothing uses it), and an untagged `src` is untagged no more.
    pub fn tag_image(&self, src: &str, dst: &str) -> Result<ImageRecord> {
        let dst_name = normalize_name(dst)?;
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        let mut rec = state
            .find(src)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(src.to_string()))?;
        state.insert_named(&dst_name, rec.clone());
        rec.name = dst_name;
        self.save_state(&state)?;
        Ok(rec)
    }
}
