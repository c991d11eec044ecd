//! The crate's error type: every variant names the cgroup file, config field or operation that
//! failed, so the runtime can print it as one line.

use std::io;
use std::path::PathBuf;

use berth_sys::errno::describe;

/// Errors returned by `berth-cgroups`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, creating or removing a cgroup file or directory failed.
    #[error("{op} {path}: {}", describe(source))]
    Io {
        /// What was done: "read", "mkdir", "rmdir", "open".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing a value into a cgroup file failed.
    #[error("write {value:?} to {path}: {}", describe(source))]
    Write {
        /// The cgroup file.
        path: PathBuf,
        /// The value that was written.
        value: String,
        /// The OS error.
        source: io::Error,
    },
    /// A cgroup file held something this crate cannot parse.
    #[error("parse {path}: {reason}")]
    Parse {
        /// The file (or `/proc/self/mountinfo`, `/proc/self/cgroup`).
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// `linux.cgroupsPath` cannot be used.
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    InvalidPath {
        /// The path as configured.
        path: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A `linux.resources` field has an invalid value.
    #[error("linux.resources.{field}: {reason}")]
    InvalidResource {
        /// JSON path below `linux.resources`, e.g. `memory.swap`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `linux.resources` field is valid but cannot be applied on this host.
    #[error("linux.resources.{field}: not supported on this host: {reason}")]
    UnsupportedResource {
        /// JSON path below `linux.resources`.
        field: String,
        /// Why (which controller or file is missing).
        reason: String,
    },
    /// A feature berth does not implement (for example the systemd cgroup driver).
    #[error("{0}")]
    Unsupported(String),
    /// No usable cgroup filesystem is mounted.
    #[error("no cgroup filesystem found in /proc/self/mountinfo for the hierarchies in /proc/self/cgroup")]
    NoCgroupFs,
    /// The container's cgroup already holds processes that are not ours.
    #[error("{path}: cgroup is not empty: {count} process(es) already in it")]
    NotEmpty {
        /// The cgroup directory.
        path: PathBuf,
        /// How many processes it holds.
        count: usize,
    },
    /// Waiting for the kernel (freeze, processes to exit) took too long.
    #[error("{path}: timed out waiting for {what}")]
    Timeout {
        /// The cgroup directory.
        path: PathBuf,
        /// What was awaited.
        what: String,
    },
    /// A `bpf(2)` call for the device filter failed.
    #[error("device filter: bpf({op}): {}{}", describe(source), if log.is_empty() { String::new() } else { format!("; verifier log: {log}") })]
    Bpf {
        /// The bpf command, e.g. `BPF_PROG_LOAD`.
        op: &'static str,
        /// The OS error.
        source: io::Error,
        /// The verifier log, when there is one.
        log: String,
    },
    /// Sending a signal to a process of the cgroup failed.
    #[error("kill {pid} with signal {signal}: {}", describe(source))]
    Signal {
        /// The process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The OS error.
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The OS error number behind this error, if it wraps one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::Write { source, .. }
            | Error::Bpf { source, .. }
            | Error::Signal { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidResource {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::UnsupportedResource {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
