//! How `start` reaches a created container's init, and how the init answers.
//!
//! `create` binds a Unix socket in the container's state directory and leaves the init
//! waiting on it; `start` connects and sends one byte. The connection is close-on-exec, so a
//! successful `execve` closes it and `start` reads end-of-file, while a failed one writes its
//! error there first. `run` skips the file and uses a socket pair.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use crate::error::{Context, Error, Result};

/// File name of the socket inside the state directory.
pub const SOCKET: &str = "exec.sock";
const GO: u8 = b'S';

/// The init's side, before `start`.
#[derive(Debug)]
pub enum Waiter {
    /// A listening socket in the state directory (`create`).
    Listener(UnixListener),
    /// One end of a socket pair (`run`).
    Pair(UnixStream),
}

/// A path to `name` inside `dir` short enough for `sun_path`, whatever the length of `dir`.
fn short_path(dir: &OwnedFd, name: &str) -> String {
    format!("/proc/self/fd/{}/{name}", dir.as_raw_fd())
}

/// Binds the start socket in the (open) state directory.
pub fn listen(dir: &Path) -> Result<Waiter> {
    let fd: OwnedFd = std::fs::File::open(dir)
        .ctx(|| format!("opening {}", dir.display()))?
        .into();
    let l = UnixListener::bind(short_path(&fd, SOCKET))
        .ctx(|| format!("binding {}/{SOCKET}", dir.display()))?;
    Ok(Waiter::Listener(l))
}

/// A connected pair: the waiter for the init and the stream `run` starts it with.
pub fn pair() -> Result<(Waiter, UnixStream)> {
    let (a, b) = UnixStream::pair().ctx(|| "socketpair".to_string())?;
    Ok((Waiter::Pair(a), b))
}

impl Waiter {
    /// Blocks until `start`; returns the connection to report an exec failure on.
    pub fn wait(self) -> std::io::Result<UnixStream> {
        match self {
            Waiter::Pair(mut s) => {
                let mut b = [0u8; 1];
                s.read_exact(&mut b)?;
                Ok(s)
            }
            Waiter::Listener(l) => loop {
                let (mut s, _) = l.accept()?;
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() && b[0] == GO {
                    return Ok(s);
                }
            },
        }
    }
}

/// Sends the start byte and waits for the outcome: end-of-file means the exec happened.
pub fn trigger(mut s: UnixStream) -> Result<()> {
    s.write_all(&[GO])
        .ctx(|| "signalling the container to start".to_string())?;
    let mut answer = String::new();
    // A read error (e.g. ECONNRESET when the init was killed) reads as "nothing said".
    let _ = s.read_to_string(&mut answer);
    if answer.is_empty() {
        Ok(())
    } else {
        Err(Error::Init(answer))
    }
}

/// Connects to a created container's start socket.
pub fn connect(dir: &Path) -> Result<UnixStream> {
    let fd: OwnedFd = std::fs::File::open(dir)
        .ctx(|| format!("opening {}", dir.display()))?
        .into();
    UnixStream::connect(short_path(&fd, SOCKET))
        .ctx(|| "connecting to the container's init (is it still waiting?)".to_string())
}
