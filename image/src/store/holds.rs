//! Holds: what a bundle (or anything else) keeps alive while it uses an image's blobs and
//! layers, with the process that took it, until it is released.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::records::ImageRecord;
use super::Store;
use crate::error::{Error, Result};

/// What a bundle (or anything else) keeps alive while it uses an image's layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The image the holder was made from.
    pub image: String,
    /// Blobs kept.
    pub blobs: Vec<String>,
    /// Layers (ChainIDs) kept.
    pub chains: Vec<String>,
    /// The process that took the hold (to tell a hold whose maker was killed before it
    /// finished from one still being made); absent in stores written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    /// Its pid.
    pub pid: i32,
    /// Its start time (clock ticks since boot, from `/proc/<pid>/stat`).
    pub start: u64,
}

impl Creator {
    /// The calling process.
    pub fn current() -> Option<Creator> {
        let pid = std::process::id() as i32;
        let (start, _) = berth_sys::proc_info::start_time(pid)?;
        Some(Creator { pid, start })
    }

    /// Whether that very process still runs (not a zombie, not a reused pid).
    pub fn is_alive(&self) -> bool {
        berth_sys::proc_info::start_time(self.pid)
            .is_some_and(|(start, zombie)| start == self.start && !zombie)
    }
}

impl Store {
    /// Keeps an image's blobs and layers alive for `holder` (a container id) until
    /// [`Store::release`], even if the image is removed meanwhile. `image` is a name or a
    /// full ID, as [`Store::image`] takes.
    pub fn hold(&self, holder: &str, image: &str) -> Result<ImageRecord> {
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        let rec = state
            .find(image)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(image.to_string()))?;
        if state.holds.contains_key(holder) {
            // Two bundles of one holder would share (and one would release) a single hold.
            return Err(Error::invalid(
                format!("holder {holder:?}"),
                "already holds an image (a bundle of that name exists or is being made)",
            ));
        }
        let mut blobs = vec![rec.manifest.clone(), rec.config.clone()];
        blobs.extend(rec.layers.iter().map(|l| l.blob.clone()));
        state.holds.insert(
            holder.to_string(),
            Hold {
                image: if rec.name.is_empty() {
                    rec.config.clone()
                } else {
                    rec.name.clone()
                },
                blobs,
                chains: rec.layers.iter().map(|l| l.chain_id.clone()).collect(),
                creator: Creator::current(),
            },
        );
        self.save_state(&state)?;
        Ok(rec)
    }

    /// Every hold, by holder.
    pub fn holds(&self) -> Result<BTreeMap<String, Hold>> {
        let _l = self.state_lock()?;
        Ok(self.load_state()?.holds)
    }

    /// Drops `holder`'s hold (a no-op if it has none).
    pub fn release(&self, holder: &str) -> Result<()> {
        let _l = self.state_lock()?;
        let mut state = self.load_state()?;
        if state.holds.remove(holder).is_some() {
            self.save_state(&state)?;
        }
        Ok(())
    }
}
