//! `berth bundle rm`: bundles made by `unpack` or left by an image run, removed through the
//! engine.

use std::path::PathBuf;

use anyhow::Result;

use super::Ctx;

/// `berth bundle ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BundleCommand {
    /// Unmount and remove a bundle made by `berth unpack`, releasing its image's layers.
    Rm {
        /// The bundle directory.
        bundle: PathBuf,
    },
}

/// `berth bundle ...`.
pub fn command(cx: &Ctx, cmd: BundleCommand) -> Result<()> {
    match cmd {
        BundleCommand::Rm { bundle } => cx.engine.remove_bundle_dir(&bundle)?,
    }
    Ok(())
}
