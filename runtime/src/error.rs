//! The runtime's error type: every variant names what failed, so the CLI can print one line.

use std::io;

/// Errors returned by the runtime crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container ID is not present under the state root.
    #[error("container does not exist: {0}")]
    NotFound(String),
    /// A container with this ID already exists.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// The container ID is empty or contains characters that cannot be used in a path.
    #[error(
        "invalid container id {0:?}: use only letters, digits, '_', '+', '-' and '.' (not first)"
    )]
    InvalidId(String),
    /// The bundle's configuration is invalid; `field` is a JSON path such as `mounts[2].destination`.
    #[error("config.json: {field}: {msg}")]
    Config {
        /// JSON path of the offending field.
        field: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The operation is not allowed in the container's current status.
    #[error("{0}")]
    State(String),
    /// The container has no running process.
    #[error("container not running")]
    NotRunning,
    /// A system call or file operation failed.
    #[error("{context}: {}", describe(err))]
    Io {
        /// What was being done.
        context: String,
        /// The underlying OS error (part of the message, not a separate cause).
        err: io::Error,
    },
    /// The container's init process reported a failure during setup.
    #[error("{0}")]
    Init(String),
    /// The process cannot be executed (runc's wording; engines map it to exit 127 / 126).
    #[error("{message}")]
    Exec {
        /// E.g. `exec: "foo": executable file not found in $PATH`.
        message: String,
        /// 127 (not found) or 126 (not executable).
        code: i32,
    },
    /// A hook failed.
    #[error("{0}")]
    Hook(String),
    /// A feature that this build does not support was requested.
    #[error("{0}")]
    Unsupported(String),
    /// Creating, configuring or removing the container's cgroups failed.
    #[error("{0}")]
    Cgroup(#[from] berth_cgroups::Error),
    /// The seccomp profile could not be compiled or installed.
    #[error("linux.seccomp: {0}")]
    Seccomp(#[from] berth_seccomp::Error),
}

/// An OS error as runc words it (the one wording, shared with the cgroups crate).
pub use berth_sys::errno::describe;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds a [`Error::Config`] for a field.
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

/// Attaches a human context to `io::Error`s and `nix::Error`s.
pub trait Context<T> {
    /// Wraps the error with `context()`'s text.
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|err| Error::Io {
            context: context().into(),
            err,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: context().into(),
            err: io::Error::from_raw_os_error(e.raw_os_error()),
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: context().into(),
            err: io::Error::from_raw_os_error(e as i32),
        })
    }
}

/// An error and its causes on one line, `outer: inner`, skipping a cause whose text the line
/// already holds (library errors often include their source in their own message).
pub fn render(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}
