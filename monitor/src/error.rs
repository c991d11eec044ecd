//! The library's error type: malformed frames, protocol lines, records and log lines.

use std::io;
use std::path::PathBuf;

/// What can go wrong decoding what the monitor writes (or reading it back).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A frame header names a stream other than 0, 1 or 2.
    #[error("attach frame: unknown stream {0}")]
    FrameStream(u8),
    /// A frame header whose bytes 1 to 3 are not zero.
    #[error("attach frame: header padding is not zero")]
    FramePadding,
    /// A frame longer than the reader accepts.
    #[error("attach frame: payload of {len} bytes, more than the {max} accepted")]
    FrameTooLong {
        /// The length the header declares.
        len: u32,
        /// The reader's limit.
        max: usize,
    },
    /// A JSON document (ready line, control request, exit record, log line) that does not
    /// parse, or parses to something invalid.
    #[error("{what}: {reason}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A log line longer than the reader accepts (not written by the monitor).
    #[error("log line {line}: longer than {max} bytes")]
    LogLineTooLong {
        /// 1-based line number.
        line: u64,
        /// The reader's limit.
        max: usize,
    },
    /// A log line that is not a json-file entry.
    #[error("log line {line}: {reason}")]
    LogLine {
        /// 1-based line number.
        line: u64,
        /// Why.
        reason: String,
    },
    /// Reading a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading a log stream.
    #[error("reading the log: {0}")]
    Read(#[source] io::Error),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::Malformed`] of `what` from any error.
    pub(crate) fn malformed(what: &'static str, reason: &impl std::fmt::Display) -> Error {
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}
