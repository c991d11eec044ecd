//! berth's engine: container orchestration for images, shared by berth's front-ends.
//!
//! A container of an image is made in one direction, each step typed:
//!
//! ```text
//! image (store) ─► typed Spec ─► bundle ─► network ─► config.json (once) ─► runtime ─► run record
//!   find_image     spec::template  berth_image::bundle  network::attach      berth_runtime     record
//!                  + overrides     (rootfs, image config, volumes)
//! ```
//!
//! - [`images`]: an image by name or ID prefix; `unpack`; `image prune` with what killed runs
//!   left.
//! - [`spec`]: the [`berth_runtime::oci::Spec`] (oci-spec's) of an image container, built once
//!   from `berth spec`'s template with oci-spec's types and builders; the image config and the
//!   caller's process overrides are applied by `berth_image::bundle`, the network namespace
//!   path and network files by [`spec::set_network`] and [`spec::add_binds`], all before
//!   `config.json` is written — once, typed, never re-read and patched.
//! - [`run`]: the run flow ([`Engine::run_image`]): name claimed, record written, bundle made
//!   with the network attached inside it, then the runtime's create and start.
//! - [`network`]: bridge, none, host or named networks over `berth_netns`.
//! - [`record`]: the typed, versioned [`RunRecord`] (`berth-run.json` in the bundle) that
//!   `delete` trusts — only for the container it names, in the place it belongs.
//! - [`teardown`]: `delete` and `bundle rm`, undoing what the record lists.
//! - [`reclaim`]: what a `kill -9` of a run, `unpack` or `delete` left (holds, mounts,
//!   bundles, attachments).
//! - [`container`]: containers a front-end (berthd) manages itself: the bundle made, the
//!   network attached, nothing run ([`Engine::make_container`]); [`host`]: what such a
//!   container gets of the host (binds, limits, capabilities), applied to the typed spec.
//! - [`step`]: the container of one build step (`RUN`), over a root filesystem the builder
//!   mounted.
//! - [`names`]: container names: generated, checked, claimed.
//! - [`list`]: the containers the engine ran, listed, inspected and stopped; [`logs`]: the
//!   output of detached runs.
//! - [`roots`]: default state and store roots.
//!
//! It is a library, not part of the `berth` binary, because there are two front-ends: the
//! runc-compatible `berth` command line (argument parsing and printing over this crate) and
//! berthd, the Docker Engine API daemon, next. Both run, delete and reclaim containers the
//! same way, with the same records, so either can clean up after the other. The crate stays
//! synchronous and small (no async runtime, no HTTP): the `berth` binary links it, and its
//! start time is berth's.
//!
//! ```no_run
//! use berth_engine::{Engine, NetworkChoice, NetworkMode, RunRequest};
//! # fn main() -> berth_engine::Result<()> {
//! let engine = Engine::with_defaults(None, None);
//! let run = engine.run_image(&RunRequest {
//!     image: "busybox".into(),
//!     name: Some("web".into()),
//!     hostname: None,
//!     process: Default::default(),
//!     flat: false,
//!     remove: false,
//!     detach: true,
//!     tty: false,
//!     pid_file: None,
//!     console_socket: None,
//!     network: NetworkChoice { mode: NetworkMode::None, publish: Vec::new() },
//!     host: Default::default(),
//! })?;
//! engine.delete(&run.id, true)?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use berth_image::Store;
use berth_runtime::StateRoot;

pub mod container;
pub mod error;
pub mod host;
pub mod host_flags;
pub mod images;
pub mod list;
pub mod logs;
pub mod names;
pub mod network;
pub mod reclaim;
pub mod record;
pub mod roots;
pub mod run;
pub mod spec;
pub mod step;
pub mod teardown;
pub mod workdir;

pub use container::{ContainerRequest, MadeContainer};
pub use error::{Error, Result};
pub use host::{Bind, HostOptions, Tmpfs};
pub use images::{find_image, image_id, ImagePrune, UnpackRequest, Unpacked};
pub use list::RunContainer;
pub use network::{NetworkChoice, NetworkMode};
pub use record::RunRecord;
pub use run::{ImageRun, RunRequest};
pub use spec::ProcessOverrides;
pub use step::{PreparedStep, StepRequest};

/// Where the engine keeps containers' state (the runtime's root) and images (the store).
#[derive(Debug, Clone)]
pub struct Engine {
    root: StateRoot,
    store_root: PathBuf,
}

impl Engine {
    /// An engine over the state root `root` and the store at `store_root` (made absolute:
    /// it goes into config.json mounts and run records).
    pub fn new(root: StateRoot, store_root: &Path) -> Engine {
        Engine {
            root,
            store_root: std::path::absolute(store_root).unwrap_or_else(|_| store_root.into()),
        }
    }

    /// An engine over `root` and `store`, or where they are by default
    /// ([`StateRoot::default_dir`], [`roots::store_root`]).
    pub fn with_defaults(root: Option<&Path>, store: Option<&Path>) -> Engine {
        let root = root.map_or_else(StateRoot::default_dir, Path::to_path_buf);
        Engine::new(StateRoot::new(root), &roots::store_root(store))
    }

    /// The runtime's state root.
    pub fn root(&self) -> &StateRoot {
        &self.root
    }

    /// The image store's root.
    pub fn store_root(&self) -> &Path {
        &self.store_root
    }

    /// The directory of the named volume `name` (`<store>/volumes/<name>/_data`), made on
    /// first use.
    pub fn volume_path(&self, name: &str) -> Result<PathBuf> {
        if !host_flags::valid_volume_name(name) {
            return Err(Error::Flag {
                flag: "volume".into(),
                value: name.into(),
                reason: "a volume name is [a-zA-Z0-9][a-zA-Z0-9_.-]*".into(),
            });
        }
        let dir = self.store_root.join("volumes").join(name).join("_data");
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "creating the volume",
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Opens the image store.
    pub fn open_store(&self) -> Result<Store> {
        roots::open_store(&self.store_root)
    }
}
