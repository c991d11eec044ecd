//! Images and root filesystems for berth.
//!
//! This crate owns the second hot path after container start:
//!
//! - [`extract`]: hostile-safe, fast layer extraction (plain, gzip, zstd tar streams) as
//!   overlayfs layers or onto a flattened root filesystem, with whiteouts (including an opaque
//!   marker after its siblings), xattrs, devices, sparse files, PAX/GNU long names, id
//!   mapping, rootless mode and Landlock self-confinement. Every path is resolved inside the
//!   destination through directory fds and `openat2(RESOLVE_IN_ROOT)`; errors name the entry.
//! - [`image`]: OCI and Docker v2 schema 2 manifests, indexes (manifest lists) and configs;
//!   digests, ChainIDs and platform selection.
//! - [`reference`](mod@reference): image references as docker parses them, and the familiar names the
//!   store keeps images under (`busybox` is `busybox:latest` is
//!   `docker.io/library/busybox:latest`).
//! - [`store`]: a content-addressed store (default `/var/lib/berth`) verified while
//!   streaming, with layers extracted once per ChainID and shared, reference counting,
//!   imports from OCI layouts, OCI archives and docker-archives, `rmi` and `prune`, and crash
//!   consistency (temp + rename everywhere); for builds, directories (overlay upper dirs)
//!   committed as layers ([`Store::commit_layer`]), built images recorded named or untagged,
//!   and a build cache.
//! - [`bundle`]: runtime bundles whose rootfs is an overlay mount of the layer chain (any
//!   depth, through `lowerdir+`) or a flattened copy, with a config.json generated from the
//!   image config on top of a template: a typed `Spec` the caller may finish before it is
//!   written, once ([`bundle::create_bundle_with`]).
//! - [`volume`]: volumes seeded with the image's content at their path.
//! - [`synth`]: synthetic layers for benchmarks and fuzzing.
//!
//! ```no_run
//! use berth_image::{bundle, store::{ImportOptions, Store}};
//! # fn main() -> berth_image::Result<()> {
//! let store = Store::open_default()?;
//! store.import_docker_archive("busybox.tar".as_ref(), &ImportOptions::default())?;
//! let template = serde_json::json!({"ociVersion": "1.2.0", "process": {"args": ["sh"]}});
//! let b = bundle::create_bundle(&store, "busybox", "/run/b1".as_ref(), &template,
//!     &bundle::BundleOptions::default())?;
//! // ... berth run with b.dir, then:
//! bundle::remove_bundle(&store, &b.dir, None)?;
//! # Ok(()) }
//! ```

pub mod bundle;
pub mod error;
pub mod extract;
pub mod image;
pub mod reference;
pub mod store;
pub mod synth;
pub mod volume;

pub use bundle::{
    create_bundle, create_bundle_with, discard_unfinished, image_spec, remove_bundle, Bundle,
    BundleOptions,
};
pub use error::{Error, Result};
pub use extract::{
    extract_layer, open_layer, Compression, ExtractOptions, ExtractStats, IdMap, IdRange, Limits,
    Mode,
};
pub use image::{Digest, Platform};
pub use store::{
    BuildGuard, Creator, Hold, ImageRecord, ImportOptions, LayerCompression, LayerRecord, Store,
};
