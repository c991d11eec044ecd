//! The container's stdin as the monitor feeds it: attach clients' input queued (bounded: a
//! container that does not read its stdin makes the monitor stop reading clients' input, not
//! grow), written when the pipe or pty takes it, closed on request.

use std::fs::File;

use crate::fdio::OutQueue;

/// The most input queued for the container.
const MAX_PENDING: usize = 1024 * 1024;

/// The end-of-file character of a terminal in canonical mode (`^D`).
const VEOF: u8 = 0x04;

/// The container's stdin.
pub struct StdinSink {
    file: Option<File>,
    pending: OutQueue,
    closing: bool,
    tty: bool,
}

impl StdinSink {
    /// Feeds `file` (the stdin pipe's write end, or a duplicate of the pty master when `tty`);
    /// `None`: the container's stdin is `/dev/null` and input is discarded.
    pub fn new(file: Option<File>, tty: bool) -> StdinSink {
        StdinSink {
            file,
            pending: OutQueue::default(),
            closing: false,
            tty,
        }
    }

    /// Whether clients' input is wanted now (open, and room in the queue). Input that is not
    /// wanted at all ([`StdinSink::discards`]) is still read, and dropped.
    pub fn accepts(&self) -> bool {
        self.discards() || self.pending.len() < MAX_PENDING
    }

    /// Whether input goes nowhere (no stdin, or closed).
    pub fn discards(&self) -> bool {
        self.file.is_none() || self.closing
    }

    /// The descriptor to poll for writability, when input waits.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref().filter(|_| !self.pending.is_empty())
    }

    /// Queues input and writes what goes.
    pub fn push(&mut self, data: &[u8]) {
        if self.discards() {
            return;
        }
        self.pending.push(data);
        self.flush();
    }

    /// Closes stdin once the queued input is written: the pipe's write end is closed; a
    /// terminal gets `^D` (its master cannot be half-closed) and no more input.
    pub fn close(&mut self) {
        if self.discards() {
            return;
        }
        if self.tty {
            self.pending.push(&[VEOF]);
        }
        self.closing = true;
        self.flush();
    }

    /// Writes queued input; closes once all is written after [`StdinSink::close`]. A write
    /// error (the container closed its stdin, or exited) drops stdin and the queue.
    pub fn flush(&mut self) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if !self.pending.is_empty() && self.pending.flush(file).is_err() {
            self.file = None;
            self.pending = OutQueue::default();
            return;
        }
        if self.closing && self.pending.is_empty() {
            self.file = None;
        }
    }
}
