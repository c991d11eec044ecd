//! From the runtime's `create`/`exec` to the ready line: run it, capture what arrives on the
//! container's pipes meanwhile (the runtime's own messages come out there), receive the pty
//! master with `--tty`, and decide: the container's pid, or the runtime's error.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use berth_monitor::{Invocation, Stream, INIT_PID_FILE};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

use crate::console::Console;
use crate::fdio::{self, Got, READ_SIZE};
use crate::reaper::{Reaped, Status};
use crate::stdio::{Output, Setup};

/// The most output kept while the runtime runs (the runtime's messages, or an exec'd
/// process's first output); beyond it the pipes are left unread until the runtime exits.
const CAPTURE_MAX: usize = 1024 * 1024;

/// How long the pty master may take to arrive after the runtime exited.
const CONSOLE_GRACE: Duration = Duration::from_secs(2);

/// The container's side of stdio once it runs.
pub struct Io {
    /// What the monitor reads: stdout and stderr pipes, or the pty master.
    pub outputs: Vec<Output>,
    /// Where input goes: the stdin pipe, or a duplicate of the pty master.
    pub stdin: Option<File>,
    /// The pty master (for resizing), with `--tty`.
    pub pty: Option<File>,
}

/// A started container process.
pub struct Started {
    /// Its host pid (from the pid file).
    pub pid: i32,
    /// Its stdio.
    pub io: Io,
    /// What it wrote before the runtime exited (exec mode), in order.
    pub early: Vec<(Stream, Vec<u8>)>,
    /// When the runtime returned.
    pub at: SystemTime,
}

/// Why nothing was started.
pub struct Failure {
    /// For the ready line.
    pub message: String,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            message: e.to_string(),
        }
    }
}

/// Output captured while the runtime runs, in arrival order.
struct Capture {
    chunks: Vec<(Stream, Vec<u8>)>,
    size: usize,
}

impl Capture {
    fn full(&self) -> bool {
        self.size >= CAPTURE_MAX
    }

    /// Reads what `out` has now (everything, or until the capture is full).
    fn read(&mut self, out: &mut Output) -> std::io::Result<()> {
        let mut buf = vec![0u8; READ_SIZE];
        while out.open && !self.full() {
            match fdio::read(&mut out.file, &mut buf)? {
                Got::Data(n) => {
                    self.size += n;
                    self.chunks.push((out.stream, buf[..n].to_vec()));
                }
                Got::Nothing => break,
                Got::Eof => out.open = false,
            }
        }
        Ok(())
    }

    /// Everything as text, for an error message.
    fn text(&self) -> String {
        let bytes: Vec<u8> = self.chunks.iter().flat_map(|(_, b)| b.clone()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Runs the runtime with `setup`'s stdio and waits for it, reaping into `reaped`.
pub fn start(
    inv: &Invocation,
    signals: &SignalFd,
    reaped: &mut Reaped,
) -> Result<Started, Failure> {
    let (setup, runtime_stdio) = crate::stdio::setup(inv)?;
    let runtime = crate::runtime::spawn(inv, runtime_stdio)?;
    let (mut captured, mut console, stdin) = match setup {
        Setup::Pipes { outputs, stdin } => (outputs, None, stdin),
        Setup::Tty { console, errors } => (vec![errors], Some(console), None),
    };
    let mut capture = Capture {
        chunks: Vec::new(),
        size: 0,
    };
    let mut master: Option<OwnedFd> = None;
    let status = loop {
        if let Some((status, _)) = reaped.get(runtime) {
            break status;
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let console_fd = console
            .as_ref()
            .filter(|_| master.is_none())
            .map(Console::poll_fd);
        fds.extend(console_fd.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        let first_output = fds.len();
        if !capture.full() {
            for out in captured.iter().filter(|o| o.open) {
                fds.push(PollFd::new(out.file.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}").into()),
        }
        let signalled = fds[0].any().unwrap_or(false);
        let console_ready = console_fd.is_some() && fds[1].any().unwrap_or(false);
        let outputs_ready = fds[first_output..].iter().any(|f| f.any().unwrap_or(false));
        drop(fds);
        if signalled && crate::detach::read_signals(signals) {
            reaped.reap_all();
        }
        if console_ready {
            if let Some(c) = console.as_mut() {
                master = c.progress()?;
            }
        }
        if outputs_ready {
            for out in &mut captured {
                capture.read(out)?;
            }
        }
    };
    // What the runtime wrote before it exited is in the pipes now.
    for out in &mut captured {
        capture.read(out)?;
    }
    if status != Status::Exited(0) {
        let text = capture.text();
        let message = if text.trim().is_empty() {
            format!("{} {status}", inv.runtime.display())
        } else {
            text
        };
        return Err(Failure { message });
    }
    if let (Some(c), None) = (console.as_mut(), master.as_ref()) {
        master = Some(wait_for_master(c)?);
    }
    let pid = read_pid(inv)?;
    let io = match master {
        Some(m) => {
            let pty = File::from(m);
            fdio::set_nonblocking(&pty)?;
            Io {
                outputs: vec![Output {
                    file: pty.try_clone()?,
                    stream: Stream::Stdout,
                    open: true,
                }],
                stdin: Some(pty.try_clone()?),
                pty: Some(pty),
            }
        }
        None => Io {
            outputs: captured,
            stdin,
            pty: None,
        },
    };
    // With a terminal the captured pipe was the runtime's alone: not the container's output.
    let early = if inv.tty { Vec::new() } else { capture.chunks };
    Ok(Started {
        pid,
        io,
        early,
        at: SystemTime::now(),
    })
}

/// Waits up to [`CONSOLE_GRACE`] for the pty master after the runtime exited.
fn wait_for_master(console: &mut Console) -> Result<OwnedFd, Failure> {
    let deadline = Instant::now() + CONSOLE_GRACE;
    loop {
        if let Some(m) = console.progress()? {
            return Ok(m);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(
                "the runtime sent no pty master on the console socket (does the process have \"terminal\": true?)"
                    .into(),
            );
        }
        let mut fds = [PollFd::new(console.poll_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, timeout);
    }
}

/// The container process's pid from `DIR/init.pid`.
fn read_pid(inv: &Invocation) -> Result<i32, Failure> {
    let path = inv.dir.join(INIT_PID_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(format!("{}: not a pid: {text:?}", path.display()).into()),
    }
}
