//! `--log FILE`: the container's output appended in docker's json-file format (see
//! [`berth_monitor::log`]), split at newlines, a partial line written once
//! [`MAX_PARTIAL`] bytes of it wait or its stream ends.
//!
//! A failing log (disk full, ...) is reported once on stderr and otherwise ignored: the
//! container's output still reaches attach clients, and the container is never blocked.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_monitor::log::{LogEntry, LogStream, MAX_PARTIAL};

/// The json-file writer.
pub struct LogWriter {
    file: File,
    path: PathBuf,
    /// The unterminated line of stdout and of stderr.
    partial: [Vec<u8>; 2],
    failed: bool,
}

fn index(stream: LogStream) -> usize {
    match stream {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

impl LogWriter {
    /// Opens (creates, mode 0640) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<LogWriter> {
        let file = File::options()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(LogWriter {
            file,
            path: path.to_path_buf(),
            partial: [Vec::new(), Vec::new()],
            failed: false,
        })
    }

    /// Logs `data` of `stream`: every complete line, and the pending partial line once it
    /// reaches [`MAX_PARTIAL`] bytes.
    pub fn write(&mut self, stream: LogStream, data: &[u8]) {
        let now = SystemTime::now();
        let mut lines = String::new();
        let pending = &mut self.partial[index(stream)];
        let mut rest = data;
        while !rest.is_empty() {
            let room = MAX_PARTIAL - pending.len();
            let take = match rest[..rest.len().min(room)]
                .iter()
                .position(|&b| b == b'\n')
            {
                Some(i) => i + 1,
                None => rest.len().min(room),
            };
            pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if pending.last() == Some(&b'\n') || pending.len() >= MAX_PARTIAL {
                lines.push_str(&LogEntry::new(stream, pending, now).to_line());
                pending.clear();
            }
        }
        self.append(&lines);
    }

    /// Writes `stream`'s partial line, if any (its end of file).
    pub fn finish(&mut self, stream: LogStream) {
        let pending = &mut self.partial[index(stream)];
        if pending.is_empty() {
            return;
        }
        let line = LogEntry::new(stream, pending, SystemTime::now()).to_line();
        pending.clear();
        self.append(&line);
    }

    fn append(&mut self, lines: &str) {
        if lines.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(lines.as_bytes()) {
            if !self.failed {
                eprintln!(
                    "berth-monitor: writing the log {}: {e}",
                    self.path.display()
                );
                self.failed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_monitor::LogReader;

    fn entries(path: &Path) -> Vec<(LogStream, String)> {
        LogReader::new(std::io::BufReader::new(File::open(path).unwrap()))
            .map(|e| {
                let e = e.unwrap();
                (e.stream, e.log)
            })
            .collect()
    }

    #[test]
    fn splits_at_newlines_and_bounds_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(LogStream::Stdout, b"one\ntw");
        w.write(LogStream::Stderr, b"err");
        w.write(LogStream::Stdout, b"o\nthree\n\n");
        w.write(LogStream::Stderr, b"or\n");
        let long = vec![b'x'; MAX_PARTIAL + 5];
        w.write(LogStream::Stdout, &long);
        w.write(LogStream::Stdout, b"tail");
        w.finish(LogStream::Stdout);
        w.finish(LogStream::Stderr);
        let got = entries(&path);
        let x = |n| "x".repeat(n);
        assert_eq!(
            got,
            [
                (LogStream::Stdout, "one\n".to_string()),
                (LogStream::Stdout, "two\n".to_string()),
                (LogStream::Stdout, "three\n".to_string()),
                (LogStream::Stdout, "\n".to_string()),
                (LogStream::Stderr, "error\n".to_string()),
                (LogStream::Stdout, x(MAX_PARTIAL)),
                (LogStream::Stdout, format!("{}tail", x(5))),
            ]
        );
        // Appends: a second writer adds after the first's lines.
        let mut w2 = LogWriter::open(&path).unwrap();
        w2.write(LogStream::Stderr, b"again\n");
        assert_eq!(entries(&path).len(), 8);
    }
}
