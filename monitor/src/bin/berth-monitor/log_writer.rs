//! `--log FILE`: the container's output appended in docker's json-file format (see
//! [`berth_monitor::log`]), split at newlines, a partial line written once
//! [`MAX_PARTIAL`] bytes of it wait or its stream ends.
//!
//! A failing log (disk full, ...) is reported once on stderr and otherwise ignored: the
//! container's output still reaches attach clients, and the container is never blocked.
//!
//! With a size bound (`--log-max-size`, docker's `max-size`) the log rotates as docker's
//! json-file driver does: the full file becomes `FILE.1`, `FILE.1` becomes `FILE.2`, ..., and
//! at most `--log-max-files` files (`max-file`, the current one included) are kept.

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
    /// Rotation: the largest file and how many files are kept.
    rotate: Option<(u64, u32)>,
    /// The current file's size.
    size: u64,
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
        let file = open_append(path)?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(LogWriter {
            file,
            path: path.to_path_buf(),
            partial: [Vec::new(), Vec::new()],
            failed: false,
            rotate: None,
            size,
        })
    }

    /// Rotates once the file would pass `max_size` bytes, keeping `max_files` files.
    pub fn with_rotation(mut self, max_size: Option<u64>, max_files: u32) -> LogWriter {
        self.rotate = max_size.filter(|m| *m > 0).map(|m| (m, max_files.max(1)));
        self
    }

    /// Moves the full file aside (`FILE.1`, older ones up by one, the oldest dropped) and
    /// starts an empty one.
    fn rotate_now(&mut self, max_files: u32) -> std::io::Result<()> {
        let numbered = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if max_files <= 1 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(numbered(max_files - 1));
            for i in (1..max_files - 1).rev() {
                let _ = std::fs::rename(numbered(i), numbered(i + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
            self.file = open_append(&self.path)?;
        }
        self.size = 0;
        Ok(())
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
        if let Some((max, files)) = self.rotate {
            // Line by line: a file never passes the bound by more than one line.
            if self.size + lines.len() as u64 > max {
                for line in lines.split_inclusive('\n') {
                    if self.size > 0 && self.size + line.len() as u64 > max {
                        if let Err(e) = self.rotate_now(files) {
                            eprintln!(
                                "berth-monitor: rotating the log {}: {e}",
                                self.path.display()
                            );
                        }
                    }
                    self.write_out(line);
                }
                return;
            }
        }
        self.write_out(lines);
    }

    fn write_out(&mut self, lines: &str) {
        self.size += lines.len() as u64;
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

fn open_append(path: &Path) -> std::io::Result<File> {
    File::options()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
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

    #[test]
    fn rotates_keeping_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&path).unwrap().with_rotation(Some(200), 3);
        for i in 0..40 {
            w.write(LogStream::Stdout, format!("line {i}\n").as_bytes());
        }
        assert!(path.exists() && dir.path().join("c-json.log.1").exists());
        assert!(dir.path().join("c-json.log.2").exists());
        assert!(!dir.path().join("c-json.log.3").exists());
        for f in ["c-json.log", "c-json.log.1", "c-json.log.2"] {
            assert!(std::fs::metadata(dir.path().join(f)).unwrap().len() <= 200);
        }
        let last = entries(&path);
        assert_eq!(last.last().unwrap().1, "line 39\n");
    }
}
