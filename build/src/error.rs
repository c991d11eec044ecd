//! Build errors: each names the line, the step, the path or the command it is about.

use std::io;
use std::path::PathBuf;

/// What went wrong in a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile does not parse.
    #[error("Dockerfile parse error on line {line}: {message}")]
    Parse {
        /// The line (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An instruction is wrong (a bad flag, a bad argument, a variable that must be set).
    #[error("Dockerfile line {line}: {text}: {message}")]
    Instruction {
        /// The line (1-based).
        line: usize,
        /// The instruction.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// A `RUN` command failed.
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        /// The command as run.
        command: String,
        /// Its exit status.
        code: i32,
    },
    /// A source of `COPY`/`ADD` is missing, outside the context or unreadable.
    #[error("{step}: {path}: {message}")]
    Source {
        /// The step.
        step: String,
        /// The source path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The base image or a `--from` image is not there and could not be pulled.
    #[error("{image}: {message}")]
    Base {
        /// The image.
        image: String,
        /// Why it cannot be used.
        message: String,
    },
    /// `--target` names no stage.
    #[error("target stage {0:?} could not be found")]
    NoTarget(String),
    /// An I/O error on a path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    /// The engine failed (a step's container or network).
    #[error(transparent)]
    Engine(#[from] berth_engine::Error),
    /// The build was cancelled.
    #[error("the build was cancelled")]
    Cancelled,
}

impl Error {
    /// An I/O error on `path` while doing `op`.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Results of the builder.
pub type Result<T, E = Error> = std::result::Result<T, E>;
