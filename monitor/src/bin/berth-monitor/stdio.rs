//! The container's stdio, made by the monitor: pipes (stdout, stderr, and stdin with
//! `--stdin`, else `/dev/null`), or with `--tty` a console socket on which the pty master
//! arrives. Every descriptor is close-on-exec; the runtime gets its ends as its own stdio
//! (std's `Command` dups them to 0, 1, 2), which the container's process inherits.

use std::fs::File;
use std::io;
use std::process::Stdio;

use berth_monitor::{Invocation, Stream, CONSOLE_SOCKET};
use nix::fcntl::OFlag;

use crate::console::Console;
use crate::fdio::set_nonblocking;
use crate::runtime::RuntimeStdio;

/// An output the monitor reads: the read end of a pipe, or the pty master.
pub struct Output {
    /// The monitor's end (non-blocking).
    pub file: File,
    /// Which stream it carries.
    pub stream: Stream,
    /// Still open (no EOF read yet).
    pub open: bool,
}

/// The monitor's side of the stdio, before the runtime has run.
pub enum Setup {
    /// Without a terminal: the container's stdout and stderr pipes (through which the
    /// runtime's own errors arrive too), and its stdin pipe with `--stdin`.
    Pipes {
        /// Stdout, then stderr.
        outputs: Vec<Output>,
        /// The write end of the stdin pipe (non-blocking).
        stdin: Option<File>,
    },
    /// With a terminal: the console socket, and a pipe that only the runtime writes to (its
    /// stdout and stderr: its error messages).
    Tty {
        /// Receives the pty master.
        console: Console,
        /// The runtime's output.
        errors: Output,
    },
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// An output pipe: the monitor's non-blocking read end, and the write end for the runtime.
fn output_pipe(stream: Stream) -> io::Result<(Output, Stdio)> {
    let (r, w) = pipe()?;
    set_nonblocking(&r)?;
    let out = Output {
        file: r,
        stream,
        open: true,
    };
    Ok((out, Stdio::from(w)))
}

/// Makes the stdio for `inv`.
pub fn setup(inv: &Invocation) -> io::Result<(Setup, RuntimeStdio)> {
    if inv.tty {
        let console = Console::new(crate::sockets::listen(&inv.dir.join(CONSOLE_SOCKET))?);
        let (r, w) = pipe()?;
        set_nonblocking(&r)?;
        let errors = Output {
            file: r,
            stream: Stream::Stdout,
            open: true,
        };
        let stdio = RuntimeStdio {
            stdin: Stdio::null(),
            stdout: Stdio::from(w.try_clone()?),
            stderr: Stdio::from(w),
        };
        return Ok((Setup::Tty { console, errors }, stdio));
    }
    let (out, out_w) = output_pipe(Stream::Stdout)?;
    let (err, err_w) = output_pipe(Stream::Stderr)?;
    let (stdin, stdin_r) = if inv.stdin {
        let (r, w) = pipe()?;
        set_nonblocking(&w)?;
        (Some(w), Stdio::from(r))
    } else {
        (None, Stdio::null())
    };
    let stdio = RuntimeStdio {
        stdin: stdin_r,
        stdout: out_w,
        stderr: err_w,
    };
    Ok((
        Setup::Pipes {
            outputs: vec![out, err],
            stdin,
        },
        stdio,
    ))
}
