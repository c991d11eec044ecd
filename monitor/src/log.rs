//! Docker's json-file log format, written by the monitor (`--log FILE`) and read back by
//! berthd for `docker logs`: one JSON object per line, appended.
//!
//! ```text
//! {"log":"hello\n","stream":"stdout","time":"2026-12-06T21:00:00.123456789Z"}
//! ```
//!
//! Output is split at newlines, each entry carrying its line with the newline; a partial line
//! is written once [`MAX_PARTIAL`] bytes of it are buffered, or when its stream ends. Bytes
//! that are not UTF-8 are replaced (U+FFFD), as docker's encoder does.

use std::io::BufRead;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most bytes of a line without newline buffered before it is written as an entry.
pub const MAX_PARTIAL: usize = 16 * 1024;

/// The longest line [`LogReader`] accepts (far above what the monitor writes: a 16 KiB
/// partial line escaped as `\uXXXX` throughout).
pub const MAX_LINE: usize = 1024 * 1024;

/// Which output stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output (everything, with a terminal).
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// The attach [`crate::Stream`] of this log stream.
    pub fn attach_stream(self) -> crate::Stream {
        match self {
            LogStream::Stdout => crate::Stream::Stdout,
            LogStream::Stderr => crate::Stream::Stderr,
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The text: a line with its newline, or a partial line.
    pub log: String,
    /// The stream it was written to.
    pub stream: LogStream,
    /// When the monitor read it (UTC RFC 3339, nanoseconds).
    #[serde(with = "crate::time::rfc3339")]
    pub time: SystemTime,
}

impl LogEntry {
    /// An entry of `bytes` (lossily decoded) from `stream` at `time`.
    pub fn new(stream: LogStream, bytes: &[u8], time: SystemTime) -> LogEntry {
        LogEntry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream,
            time,
        }
    }

    /// The entry as a log line, with its newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a log entry always serializes");
        line.push('\n');
        line
    }
}

/// Reads a json-file log back, entry by entry.
///
/// A last line without newline is a write in progress (or cut by a crash) and is skipped.
/// A malformed or overlong line yields an error item and reading goes on with the next line.
#[derive(Debug)]
pub struct LogReader<R> {
    reader: R,
    line: Vec<u8>,
    line_no: u64,
    max_line: usize,
}

impl<R: BufRead> LogReader<R> {
    /// A reader of `reader`, accepting lines up to [`MAX_LINE`] bytes.
    pub fn new(reader: R) -> LogReader<R> {
        LogReader::with_max_line(reader, MAX_LINE)
    }

    /// A reader accepting lines up to `max_line` bytes.
    pub fn with_max_line(reader: R, max_line: usize) -> LogReader<R> {
        LogReader {
            reader,
            line: Vec::new(),
            line_no: 0,
            max_line,
        }
    }

    /// Reads one line into `self.line` (without its newline). `Ok(None)` at the end or
    /// before a last line without newline; `Ok(Some(false))` for a line that was too long
    /// (skipped up to its newline).
    fn read_line(&mut self) -> Result<Option<bool>> {
        self.line.clear();
        let mut too_long = false;
        loop {
            let buf = self.reader.fill_buf().map_err(Error::Read)?;
            if buf.is_empty() {
                // End of input: what was gathered had no newline.
                return Ok(None);
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if !too_long {
                if self.line.len() + chunk.len() > self.max_line {
                    too_long = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let used = done.unwrap_or(buf.len());
            self.reader.consume(used);
            if done.is_some() {
                return Ok(Some(!too_long));
            }
        }
    }
}

impl<R: BufRead> Iterator for LogReader<R> {
    type Item = Result<LogEntry>;

    fn next(&mut self) -> Option<Result<LogEntry>> {
        let complete = match self.read_line() {
            Ok(Some(complete)) => complete,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        self.line_no += 1;
        if !complete {
            return Some(Err(Error::LogLineTooLong {
                line: self.line_no,
                max: self.max_line,
            }));
        }
        Some(
            serde_json::from_slice(&self.line).map_err(|e| Error::LogLine {
                line: self.line_no,
                reason: e.to_string(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ns: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, ns)
    }

    #[test]
    fn line_shape() {
        let e = LogEntry::new(LogStream::Stdout, b"hello\n", at(123_456_789));
        assert_eq!(
            e.to_line(),
            "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2027-01-15T08:00:00.123456789Z\"}\n"
        );
        let bad = LogEntry::new(LogStream::Stderr, b"\xffok\t\"", at(0));
        assert_eq!(bad.log, "\u{fffd}ok\t\"");
        let back: Vec<_> = LogReader::new(bad.to_line().as_bytes())
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(back, [bad]);
    }

    #[test]
    fn reads_entries_and_skips_a_truncated_last_line() {
        let a = LogEntry::new(LogStream::Stdout, b"one\n", at(1));
        let b = LogEntry::new(LogStream::Stderr, b"two", at(2));
        let text = format!("{}{}{{\"log\":\"thr", a.to_line(), b.to_line());
        let back: Vec<_> = LogReader::new(text.as_bytes())
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(back, [a, b]);
        assert_eq!(LogReader::new(&b""[..]).count(), 0);
    }

    #[test]
    fn malformed_and_overlong_lines_are_errors_then_reading_goes_on() {
        let good = LogEntry::new(LogStream::Stdout, b"fine\n", at(3));
        let long = "x".repeat(300);
        let text = format!(
            "not json\n{{\"log\":\"a\",\"stream\":\"stdin\",\"time\":\"2027-01-15T08:00:00Z\"}}\n{long}\n{}",
            good.to_line()
        );
        // A small buffer so the long line spans several fills.
        let reader = std::io::BufReader::with_capacity(16, text.as_bytes());
        let items: Vec<_> = LogReader::with_max_line(reader, 200).collect();
        assert_eq!(items.len(), 4);
        assert!(matches!(items[0], Err(Error::LogLine { line: 1, .. })));
        assert!(matches!(items[1], Err(Error::LogLine { line: 2, .. })));
        assert!(matches!(
            items[2],
            Err(Error::LogLineTooLong { line: 3, max: 200 })
        ));
        assert_eq!(items[3].as_ref().unwrap(), &good);
    }
}
