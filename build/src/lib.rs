//! berth's image builder: Dockerfiles to images, with docker's classic-builder semantics.
//!
//! ```text
//! Dockerfile ─► dockerfile::parse ─► stages of steps ─► per step: cache key ─► hit: reuse
//!                (parse-dockerfile)                                        └─► miss: run
//!   RUN        : overlay of the parent's layers + fresh upper ─► berth container ─► commit
//!   COPY / ADD : same overlay, files copied in through descriptors          ─► commit
//!   the rest   : config only (history entry with empty_layer)
//! ```
//!
//! - [`dockerfile`]: the parsed Dockerfile (stages, steps, lines, escape directive).
//! - [`lex`]: docker's word and variable rules (`${VAR:-x}`, quotes, `KEY=VALUE` lists).
//! - [`context`]: the build context, confined (`RESOLVE_IN_ROOT`), with `.dockerignore`,
//!   and content digests for the cache.
//! - [`copy`]: `COPY`/`ADD` into a step's root filesystem; [`archive`]: `ADD`'s local
//!   archives (tar, gzip, zstd, bzip2, xz); [`fetch`]: `ADD`'s URLs.
//! - [`rootfs`]: a step's overlay root, committed as a layer by the store.
//! - [`run`]: `RUN` as a confined container through the engine and the runtime binary.
//! - [`config`]: the image config a build writes.
//! - [`build`]: evaluation stage by stage, the cache, and the result.
//!
//! It is its own crate because two front-ends build images the same way: `berth build`
//! (daemonless, like buildah) and berthd's `POST /build` (the docker client's classic
//! builder protocol). It depends on the engine (step containers, networks) and the image
//! store (layers, the build cache); neither depends on it, and the `berth` runtime path
//! never loads it.

pub mod archive;
pub mod build;
pub mod config;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod error;
pub mod fetch;
pub mod lex;
pub mod rootfs;
pub mod run;
mod steps;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use build::build;
pub use context::Ignore;
pub use error::{Error, Result};

use berth_engine::NetworkMode;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Ignore rules (`None`: the context's `.dockerignore`; the docker client applies its
    /// own before sending, so berthd passes an empty set).
    pub ignore: Option<Ignore>,
    /// Names to give the image (`-t`); none: it is recorded untagged, by ID.
    pub tags: Vec<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the last stage to build.
    pub target: Option<String>,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// The network of `RUN` steps (default: bridge).
    pub network: NetworkMode,
    /// `--label`: labels added to the image.
    pub labels: BTreeMap<String, String>,
    /// The berth runtime binary `RUN` steps run through.
    pub runtime: PathBuf,
}

/// Where a build reports: docker's classic-builder text (`Step 1/3 : FROM busybox`,
/// ` ---> 1c35c4412082`, the steps' output), one chunk at a time.
pub trait Progress {
    /// A chunk of text.
    fn stream(&mut self, text: &str);
    /// Whether the caller gave up (a running step is killed, the build ends).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Fetches an image that is not in the store (`FROM` or `COPY --from` of an image).
pub trait Pull {
    /// Pulls `reference` into the store, reporting to `progress`.
    fn pull(&self, reference: &str, progress: &mut dyn Progress)
        -> std::result::Result<(), String>;
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image's ID (`sha256:<hex>` of its config).
    pub id: String,
    /// The names it was given.
    pub tags: Vec<String>,
}
