//! Landlock self-confinement, now in [`berth_sys::landlock`]. This module keeps the runtime's
//! entry point for the crates that call it through the runtime (the layer extractor in
//! berth-image, until it depends on berth-sys itself): the runtime's error type, and a
//! warning logged when the confinement is not complete.

use std::path::Path;

pub use berth_sys::landlock::Confinement;

use crate::error::{Error, Result};

/// Confines the calling thread's filesystem writes to `dir` (reads stay allowed everywhere);
/// see [`berth_sys::landlock::writes_beneath`].
pub fn writes_beneath(dir: &Path) -> Result<Confinement> {
    let c =
        berth_sys::landlock::writes_beneath(dir).map_err(|e| Error::Unsupported(e.to_string()))?;
    match &c {
        Confinement::Full => {}
        Confinement::Partial(msg) => tracing::warn!("{msg}"),
        Confinement::Unavailable => {
            tracing::warn!(
                "Landlock is not available: the extractor runs without self-confinement"
            );
        }
    }
    Ok(c)
}
