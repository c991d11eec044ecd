//! The poll loop while the container's process lives: output to the log and to attach
//! clients, clients' input to stdin, control requests, reaping. It ends once the process has
//! exited and its output is drained (EOF on every output, or [`DRAIN_TIMEOUT`] after the
//! exit: a background child may hold a pipe open).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime};

use berth_monitor::{ControlRequest, ControlResponse, LogStream, Stream};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

use crate::attach::Attach;
use crate::control_socket::Control;
use crate::fdio::{self, Got, READ_SIZE};
use crate::log_writer::LogWriter;
use crate::reaper::{Reaped, Status};
use crate::stdin::StdinSink;
use crate::stdio::Output;

/// How long output is drained after the process exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How long output held for the first attach client (`--hold-output`) waits for it.
const HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads of one output per wakeup (fairness between outputs and clients).
const READS_PER_WAKEUP: usize = 8;

/// The monitor of a running process.
pub struct Monitor {
    /// SIGCHLD and the ignored signals.
    pub signals: SignalFd,
    /// Every reaped child.
    pub reaped: Reaped,
    /// The container's init (create) or the exec'd process.
    pub pid: i32,
    /// How and when it ended, once it has.
    pub exited: Option<(Status, SystemTime)>,
    /// Its outputs (stdout and stderr pipes, or the pty master).
    pub outputs: Vec<Output>,
    /// Its stdin.
    pub stdin: StdinSink,
    /// `--stdin-once`: an attach client's EOF closes stdin.
    pub stdin_once: bool,
    /// The pty master, with `--tty`.
    pub pty: Option<File>,
    /// Attach clients.
    pub attach: Attach,
    /// Control clients.
    pub control: Control,
    /// The json-file log, with `--log`.
    pub log: Option<LogWriter>,
    /// The read buffer (one allocation for the monitor's life).
    pub buf: Vec<u8>,
    /// With `--hold-output`, until the first attach client: the output read so far (the
    /// outputs are not read meanwhile).
    pub held: Option<Vec<(Stream, Vec<u8>)>>,
}

/// What a polled descriptor is.
#[derive(Clone, Copy)]
enum Slot {
    Signals,
    Output(usize),
    Stdin,
    AttachListener,
    Attach(usize),
    ControlListener,
    Control(usize),
}

/// The descriptors of one `poll`, and what each is.
#[derive(Default)]
struct PollSet<'fd> {
    slots: Vec<Slot>,
    fds: Vec<PollFd<'fd>>,
}

impl<'fd> PollSet<'fd> {
    fn add(&mut self, slot: Slot, fd: BorrowedFd<'fd>, events: PollFlags) {
        self.slots.push(slot);
        self.fds.push(PollFd::new(fd, events));
    }
}

fn log_stream(s: Stream) -> LogStream {
    match s {
        Stream::Stderr => LogStream::Stderr,
        Stream::Stdout | Stream::Stdin => LogStream::Stdout,
    }
}

impl Monitor {
    /// Serves until the process has exited and its output is drained; returns how it ended.
    pub fn run(&mut self) -> (Status, SystemTime) {
        let mut deadline = None;
        // With --hold-output the first client gets everything, however early the process
        // ended: the monitor waits for it (a while).
        let hold_until = Instant::now() + HOLD_TIMEOUT;
        loop {
            self.note_exit();
            self.release_held();
            if let Some(exit) = self.exited {
                let holding = self.held.is_some() && Instant::now() < hold_until;
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                let deadline = if holding { hold_until } else { deadline };
                if !holding && (self.outputs.iter().all(|o| !o.open) || Instant::now() >= deadline)
                {
                    return exit;
                }
                self.poll_once(Some(deadline));
                continue;
            }
            self.poll_once(deadline);
        }
    }

    /// Gives the held output (`--hold-output`) to the first attach client, once there is one.
    fn release_held(&mut self) {
        if self.held.is_some() && !self.attach.clients.is_empty() {
            for (stream, data) in self.held.take().unwrap_or_default() {
                self.forward(stream, &data);
            }
        }
    }

    /// Handles the pre-ready output (exec mode) as if just read.
    pub fn forward(&mut self, stream: Stream, data: &[u8]) {
        if let Some(log) = &mut self.log {
            log.write(log_stream(stream), data);
        }
        self.attach.broadcast(stream, data);
    }

    /// Records the process's exit once it has been reaped.
    fn note_exit(&mut self) {
        if self.exited.is_none() {
            self.exited = self.reaped.get(self.pid);
        }
        self.reaped.forget_others(self.pid);
    }

    /// One `poll` and the handling of what it reported.
    fn poll_once(&mut self, deadline: Option<Instant>) {
        self.release_held();
        // A slow attach client holds the output back for a while (see crate::attach); with
        // --hold-output, nothing is read until the first client.
        let hold = self.attach.holds_back(Instant::now());
        let held = self.held.is_some();
        let mut set = PollSet::default();
        let mut add = |slot, fd, events| set.add(slot, fd, events);
        add(Slot::Signals, self.signals.as_fd(), PollFlags::POLLIN);
        if hold.is_none() && !held {
            for (i, o) in self.outputs.iter().enumerate().filter(|(_, o)| o.open) {
                add(Slot::Output(i), o.file.as_fd(), PollFlags::POLLIN);
            }
        }
        if let Some(f) = self.stdin.file() {
            add(Slot::Stdin, f.as_fd(), PollFlags::POLLOUT);
        }
        add(
            Slot::AttachListener,
            self.attach.listener.as_fd(),
            PollFlags::POLLIN,
        );
        let take_input = self.stdin.accepts();
        for (i, c) in self.attach.clients.iter().enumerate() {
            let mut ev = PollFlags::empty();
            if c.input_open && take_input {
                ev |= PollFlags::POLLIN;
            }
            if c.wants_write() {
                ev |= PollFlags::POLLOUT;
            }
            // With no events, POLLHUP still tells of a client gone.
            add(Slot::Attach(i), c.sock.as_fd(), ev);
        }
        add(
            Slot::ControlListener,
            self.control.listener.as_fd(),
            PollFlags::POLLIN,
        );
        for (i, c) in self.control.clients.iter().enumerate() {
            let mut ev = PollFlags::empty();
            if c.wants_read() {
                ev |= PollFlags::POLLIN;
            }
            if c.wants_write() {
                ev |= PollFlags::POLLOUT;
            }
            add(Slot::Control(i), c.sock.as_fd(), ev);
        }
        let wake = match (deadline, hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = wake.map_or(PollTimeout::NONE, |d| {
            // Rounded up: waking a little early would spin.
            PollTimeout::try_from(
                d.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
            )
            .unwrap_or(PollTimeout::MAX)
        });
        let PollSet { slots, mut fds } = set;
        if let Err(e) = poll(&mut fds, timeout) {
            if e != nix::errno::Errno::EINTR {
                eprintln!("berth-monitor: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        let mut ready: Vec<(Slot, PollFlags)> = slots
            .into_iter()
            .zip(&fds)
            .filter_map(|(s, f)| f.revents().filter(|r| !r.is_empty()).map(|r| (s, r)))
            .collect();
        drop(fds);
        // New attach clients before output: berthd attaches before it starts the container,
        // and when one poll reports both the connection and the first output (the monitor
        // was not scheduled in between), that output is the client's too.
        ready.sort_by_key(|(slot, _)| !matches!(slot, Slot::AttachListener));
        for (slot, revents) in ready {
            self.handle(slot, revents);
        }
        self.attach.prune();
        self.control.prune();
    }

    fn handle(&mut self, slot: Slot, revents: PollFlags) {
        let hangup = revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
        match slot {
            Slot::Signals => {
                if crate::detach::read_signals(&self.signals) {
                    self.reaped.reap_all();
                }
            }
            Slot::Output(i) => self.read_output(i),
            Slot::Stdin => self.stdin.flush(),
            Slot::AttachListener => self.attach.accept_all(),
            Slot::Attach(i) => {
                if revents.contains(PollFlags::POLLOUT) {
                    self.attach.clients[i].flush();
                }
                if revents.contains(PollFlags::POLLIN) || hangup {
                    self.read_input(i);
                }
                let c = &mut self.attach.clients[i];
                if hangup && !revents.contains(PollFlags::POLLIN) {
                    c.dead = true;
                }
            }
            Slot::ControlListener => self.control.accept_all(),
            Slot::Control(i) => {
                if revents.contains(PollFlags::POLLIN) || hangup {
                    let requests = self.control.clients[i].read_requests();
                    for r in requests {
                        let reply = match r {
                            Ok(req) => self.execute(req),
                            Err(e) => ControlResponse::error(e),
                        };
                        self.control.clients[i].reply(&reply);
                    }
                }
                let c = &mut self.control.clients[i];
                c.flush();
                if hangup && !revents.contains(PollFlags::POLLIN) {
                    c.dead = true;
                }
            }
        }
    }

    /// Reads output `i` and forwards it; notes its EOF.
    fn read_output(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(READ_SIZE, 0);
        self.read_output_into(i, &mut buf);
        self.buf = buf;
    }

    fn read_output_into(&mut self, i: usize, buf: &mut [u8]) {
        for _ in 0..READS_PER_WAKEUP {
            let out = &mut self.outputs[i];
            match fdio::read(&mut out.file, buf) {
                Ok(Got::Data(n)) => {
                    let stream = out.stream;
                    self.forward(stream, &buf[..n]);
                }
                Ok(Got::Nothing) => return,
                Ok(Got::Eof) | Err(_) => {
                    out.open = false;
                    let stream = out.stream;
                    if let Some(log) = &mut self.log {
                        log.finish(log_stream(stream));
                    }
                    return;
                }
            }
        }
    }

    /// Reads attach client `i`'s input into stdin; its EOF closes stdin with
    /// `--stdin-once`.
    fn read_input(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(READ_SIZE, 0);
        self.read_input_into(i, &mut buf);
        self.buf = buf;
    }

    fn read_input_into(&mut self, i: usize, buf: &mut [u8]) {
        for _ in 0..READS_PER_WAKEUP {
            if !self.stdin.accepts() {
                return;
            }
            let c = &mut self.attach.clients[i];
            if !c.input_open || c.dead {
                return;
            }
            match c.read_input(buf) {
                Some(n) => self.stdin.push(&buf[..n]),
                None => {
                    if !self.attach.clients[i].input_open && self.stdin_once {
                        self.stdin.close();
                    }
                    return;
                }
            }
        }
    }

    /// Carries out a control request.
    fn execute(&mut self, req: ControlRequest) -> ControlResponse {
        match req {
            ControlRequest::Resize { height, width } => match &self.pty {
                Some(pty) => match crate::terminal::resize(pty, height, width) {
                    Ok(()) => ControlResponse::ok(),
                    Err(e) => ControlResponse::error(format!("resize: {e}")),
                },
                None => ControlResponse::error("resize: the process has no terminal"),
            },
            ControlRequest::CloseStdin => {
                self.stdin.close();
                ControlResponse::ok()
            }
        }
    }

    /// After the exit: partial log lines written, stdin closed, and queued output sent to
    /// attach clients for up to `timeout`.
    pub fn flush_out(&mut self, timeout: Duration) {
        if let Some(log) = &mut self.log {
            log.finish(LogStream::Stdout);
            log.finish(LogStream::Stderr);
        }
        self.stdin = StdinSink::new(None, false);
        let deadline = Instant::now() + timeout;
        while self.attach.pending() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds: Vec<PollFd<'_>> = self
                .attach
                .clients
                .iter()
                .filter(|c| c.wants_write())
                .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT))
                .collect();
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
            );
            drop(fds);
            for c in &mut self.attach.clients {
                c.flush();
            }
            self.attach.prune();
        }
    }
}
