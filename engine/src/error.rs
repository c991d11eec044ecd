//! The engine's error type: every variant names the image, container, path or field at fault.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while running, deleting or reclaiming containers of images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image store could not be opened.
    #[error("image store {}", path.display())]
    Store {
        /// The store's root.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<berth_image::Error>,
    },
    /// No image of that name or ID prefix is in the store.
    #[error("image {name:?} not found in the store {} (berth images lists them; berth pull or berth image import adds one)", store.display())]
    ImageNotFound {
        /// The name or ID prefix asked for.
        name: String,
        /// The store's root.
        store: PathBuf,
    },
    /// An image ID prefix that matches more than one image.
    #[error("image ID prefix {prefix:?} is ambiguous ({count} images match)")]
    AmbiguousImage {
        /// The prefix.
        prefix: String,
        /// How many images it matches.
        count: usize,
    },
    /// A container name that cannot be used (it becomes a path component and an interface
    /// record's key).
    #[error("container name {name:?}: {reason}")]
    Name {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A container of that name has state already.
    #[error("container {0:?} already exists")]
    Exists(String),
    /// The bundle directory of that name exists: a container of that name is being made, or
    /// a leftover of one was not removed.
    #[error("{} already exists (a container of that name is being made, or was not deleted); `berth bundle rm {}` removes a leftover", dir.display(), dir.display())]
    NameTaken {
        /// The bundle directory.
        dir: PathBuf,
    },
    /// Removing the container at exit asked of a detached run, which nothing waits for.
    #[error("a container removed when it exits must run in the foreground, not detached")]
    RemoveDetached,
    /// A port mapping that does not parse.
    #[error("port mapping {spec:?}")]
    Publish {
        /// The mapping as given.
        spec: String,
        /// Why it does not parse.
        #[source]
        source: berth_netns::Error,
    },
    /// Ports published with a network mode that has no bridge.
    #[error("ports are published only on a bridge network, not with network {mode:?}")]
    PublishNeedsBridge {
        /// The network mode.
        mode: String,
    },
    /// Making the bundle of an image failed (nothing of it is left).
    #[error("unpacking {image}")]
    Unpack {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: Box<berth_image::Error>,
    },
    /// `unpack` into a directory failed (nothing of the bundle is left).
    #[error("unpacking {image} into {}", dir.display())]
    UnpackInto {
        /// The image.
        image: String,
        /// The bundle directory, as given.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<berth_image::Error>,
    },
    /// Removing a bundle failed.
    #[error("{what} {}", dir.display())]
    RemoveBundle {
        /// "removing bundle", "removing the unfinished bundle".
        what: &'static str,
        /// The bundle directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<berth_image::Error>,
    },
    /// `bundle rm` of a directory that holds no bundle.
    #[error("{}: not a bundle (no config.json or rootfs)", dir.display())]
    NotABundle {
        /// The directory.
        dir: PathBuf,
    },
    /// `bundle rm` of the bundle of a container that exists or is being made.
    #[error("{}: bundle of container {id}, which exists or is being made; `berth delete -f {id}` removes both", dir.display())]
    BundleInUse {
        /// The bundle directory.
        dir: PathBuf,
        /// The container.
        id: String,
    },
    /// A run record that cannot be trusted: malformed, or of a newer format.
    #[error("run record {}: {reason}", path.display())]
    Record {
        /// The record's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime spec cannot be completed: a field the engine sets is missing or invalid.
    #[error("config {field}: {reason}")]
    Spec {
        /// The field, as a path in config.json (`linux.namespaces`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Detaching a container from its network failed.
    #[error("detaching {id} from its network")]
    Detach {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: berth_netns::Error,
    },
    /// A container still running after `stop`'s SIGKILL and its grace.
    #[error("container {0:?} did not stop after SIGKILL")]
    StillRunning(String),
    /// A command-line flag's value (docker's spelling) that does not parse.
    #[error("{flag} {value:?}: {reason}")]
    Flag {
        /// The flag, e.g. `--volume`.
        flag: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem operation on a named path failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("creating", "writing", "removing").
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// From the image store or bundle code.
    #[error(transparent)]
    Image(Box<berth_image::Error>),
    /// From the runtime.
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    /// From container networking.
    #[error(transparent)]
    Network(#[from] berth_netns::Error),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Error {
        Error::Image(Box::new(e))
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub use berth_runtime::error::render;
