//! A terminal of its own for a foreground process started without `--console-socket`
//! (`run IMAGE -t`, `exec -t`), as runc and docker give one: berth listens on a private
//! console socket, receives the pty master the runtime sends there, and relays between the
//! caller's standard streams and the master. With `-i` the caller's input goes to the
//! terminal, and the caller's terminal (when standard input is one) is put in raw mode for
//! the time of the run, so that keys reach the container's process as typed. The caller's
//! window size is the terminal's first size.
//!
//! Only std, nix and libc: the lean `berth` serves `exec -t`.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use nix::sys::termios::{self, SetArg, Termios};

/// ASCII EOT (`^D`): what a terminal reads as the end of input.
const EOT: u8 = 4;

/// A console socket being listened on, and the relay once the master arrives.
pub struct ConsoleRelay {
    dir: PathBuf,
    socket: PathBuf,
    relay: Option<JoinHandle<()>>,
    saved: Option<Termios>,
}

impl ConsoleRelay {
    /// Listens on a new socket in a private directory; once the runtime sends a master there,
    /// relays the output to standard output and, with `forward_stdin`, standard input to the
    /// terminal (raw mode on the caller's terminal then).
    pub fn listen(forward_stdin: bool) -> std::io::Result<ConsoleRelay> {
        let dir = private_dir()?;
        let socket = dir.join("console.sock");
        let listener = match UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let stdin = std::io::stdin();
        let saved = if forward_stdin {
            raw_mode(stdin.as_fd())
        } else {
            None
        };
        let relay = std::thread::spawn(move || {
            if let Some(master) = accept_master(&listener) {
                relay(master, forward_stdin);
            }
        });
        Ok(ConsoleRelay {
            dir,
            socket,
            relay: Some(relay),
            saved,
        })
    }

    /// The socket to give the runtime as `--console-socket`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// After the process has exited: waits for the terminal's last output, then puts the
    /// caller's terminal back as it was.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(relay) = self.relay.take() {
            // A master that never came (the start failed): an empty connection ends the wait.
            if !relay.is_finished() {
                let _ = UnixStream::connect(&self.socket);
            }
            let _ = relay.join();
        }
        if let Some(t) = self.saved.take() {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &t);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ConsoleRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The caller's window size (rows, columns), from standard input, output or error, whichever
/// is a terminal.
pub fn window_size() -> Option<(u16, u16)> {
    [0, 1, 2].into_iter().find_map(|fd: RawFd| {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ with a pointer to a live winsize; fails harmlessly on a
        // non-terminal.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut ws) };
        (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
    })
}

/// A new directory only this user can enter, for the socket.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|_| !nix::unistd::geteuid().is_root())
        .map_or_else(std::env::temp_dir, PathBuf::from);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = base.join(format!("berth-console-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Puts the terminal on `fd` in raw mode; its settings before, if it is a terminal.
fn raw_mode(fd: BorrowedFd<'_>) -> Option<Termios> {
    let saved = termios::tcgetattr(fd).ok()?;
    let mut raw = saved.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(fd, SetArg::TCSADRAIN, &raw).ok()?;
    Some(saved)
}

/// The first connection's pty master, or `None` for a connection without one (see
/// [`ConsoleRelay::finish`]).
fn accept_master(listener: &UnixListener) -> Option<OwnedFd> {
    let (conn, _) = listener.accept().ok()?;
    berth_runtime::terminal::receive_console(&conn).ok()?
}

/// Copies the master's output to standard output until the terminal closes (every process
/// holding it has exited); with `forward_stdin`, a thread copies standard input to the
/// master, ending it with `^D` at the end of input.
fn relay(master: OwnedFd, forward_stdin: bool) {
    if set_window_size(master.as_fd()) {
        if let Ok(copy) = master.try_clone() {
            follow_window_size(copy);
        }
    }
    let mut output = std::fs::File::from(master);
    if forward_stdin {
        if let Ok(mut input) = output.try_clone() {
            // Not joined: it may be blocked reading the caller's input when the process ends.
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin().lock();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = input.write_all(&[EOT]);
                            return;
                        }
                        Ok(n) => {
                            if input.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    }
    let mut buf = [0u8; 4096];
    let mut stdout = std::io::stdout().lock();
    // EIO once the last holder of the terminal's other end closes it.
    while let Ok(n) = output.read(&mut buf) {
        if n == 0 || stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
            break;
        }
    }
}

/// Gives the terminal on `master` the caller's window size; whether the caller has one.
fn set_window_size(master: BorrowedFd<'_>) -> bool {
    let Some((rows, cols)) = window_size() else {
        return false;
    };
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on a pty master with a pointer to a live winsize.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) };
    true
}

/// How often [`follow_window_size`] looks at the caller's window size.
const WINDOW_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// Passes every change of the caller's window size on to the terminal on `master` (whose
/// process group the kernel then sends `SIGWINCH`), from a thread that lasts as long as the
/// process. It looks a few times a second: berth's own `SIGWINCH` is not to be had, as the
/// runtime's foreground wait takes every signal to forward it to the container.
fn follow_window_size(master: OwnedFd) {
    let mut last = window_size();
    std::thread::spawn(move || loop {
        std::thread::sleep(WINDOW_CHECK);
        let now = window_size();
        if now != last {
            set_window_size(master.as_fd());
            last = now;
        }
    });
}
