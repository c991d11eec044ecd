//! berth runtime core: an OCI runtime-spec 1.3 implementation for Linux.
//!
//! The lifecycle is runc's, designed for start latency: `create` validates everything in the
//! parent, clones the init straight into its namespaces (clone3, no re-exec, no threads),
//! builds the root filesystem there and leaves the init waiting on a socket; `start` connects
//! to it and the init execs. No berth process stays between an engine and its container.

pub mod capabilities;
pub mod config;
pub mod copy;
pub mod create;
pub mod error;
pub mod exe_guard;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod lifecycle;
pub mod mempolicy;
pub mod mount_options;
pub mod namespaces;
pub mod phases;
pub mod process;
pub mod resources;
pub mod rootfs;
pub mod sealed_exe;
pub mod seccomp_notify;
pub mod signal;
pub mod spec_template;
pub mod start_channel;
pub mod state;
pub mod sync;
pub mod terminal;

/// The mountinfo parser (moved to berth-sys; re-exported for the fuzz target).
pub use berth_sys::{failpoint, mountinfo, proc_info};

pub use create::{create, CreateOptions};
pub use error::{Error, Result};
pub use lifecycle::{
    delete, delete_with, kill, oom_kills, pause, resume, run, run_and_keep, start, stats, update,
    RunOutcome,
};
pub use state::{ContainerState, StateRoot, Status};

/// Re-export of the OCI runtime-spec types berth reads.
pub mod oci {
    pub use oci_spec::runtime::*;
}

/// The runtime-spec version berth implements.
pub const SPEC_VERSION: &str = "1.3.0";
