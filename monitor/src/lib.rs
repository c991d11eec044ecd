//! berth's container monitor: one small process per container (berth's conmon, or
//! containerd's shim), and the protocol berthd speaks with it.
//!
//! berthd spawns `berth-monitor` for every container it creates and every process it
//! `exec`s. The monitor detaches from berthd (a `kill -9` of the daemon leaves it and its
//! container running), runs the runtime's `create` or `exec --detach` with stdio it made
//! itself (pipes, or a pty received over `--console-socket`), and then, for the life of the
//! container's process:
//!
//! - writes its output to a log file in docker's json-file format ([`log`]),
//! - serves attach clients on `DIR/attach.sock`: output framed as docker's multiplexed stream
//!   ([`frame`]) from the moment a client connects, input to the container's stdin (a client
//!   shutting down its write half closes stdin with `--stdin-once`). A client that reads
//!   slowly holds the container's output back, as docker's attach does; one that takes
//!   nothing for half a second holds nothing back and is dropped once 1 MiB waits for it,
//! - serves control requests on `DIR/control.sock` ([`control`]: resize, close stdin),
//! - reaps the process (it is a child subreaper) and writes `DIR/exit.json` ([`exit`]).
//!
//! ```text
//! berthd ──spawn──► berth-monitor ──fork──► monitor (setsid, subreaper)
//!    ▲  ready line (stdout pipe)                 │ runs `berth create|exec`, which forks the
//!    └───────────────────────────────────────────┤ container process: reparented to it
//!       attach.sock / control.sock / exit.json   ▼
//! ```
//!
//! It is its own crate, and its own binary, because of what it must be: one per container,
//! alive as long as the container, so lean (single-threaded, a `poll(2)` loop, no async
//! runtime) and independent of berthd (which links tokio and an HTTP stack, and may be
//! restarted or killed at any time) and of the `berth` runtime binary (which exits once the
//! container is created). This library holds only what both sides must agree on: file names,
//! the command line ([`Invocation`]), the ready line ([`Ready`]), the attach framing, the
//! control requests, the exit record and the log format with its reader.

pub mod control;
pub mod error;
pub mod exit;
pub mod frame;
pub mod invocation;
pub mod log;
pub mod ready;
mod time;

pub use control::{ControlRequest, ControlResponse};
pub use error::{Error, Result};
pub use exit::ExitRecord;
pub use frame::{FrameHeader, Stream};
pub use invocation::{Invocation, Mode};
pub use log::{LogEntry, LogReader, LogStream};
pub use ready::Ready;

/// `DIR/init.pid`: the runtime writes the container process's host pid here (`--pid-file`).
pub const INIT_PID_FILE: &str = "init.pid";
/// `DIR/console.sock`: the socket the runtime sends the pty master to (`--tty` only).
pub const CONSOLE_SOCKET: &str = "console.sock";
/// `DIR/attach.sock`: attach clients (output framed as docker's stream, input to stdin).
pub const ATTACH_SOCKET: &str = "attach.sock";
/// `DIR/control.sock`: line-delimited JSON control requests ([`ControlRequest`]).
pub const CONTROL_SOCKET: &str = "control.sock";
/// `DIR/exit.json`: the [`ExitRecord`], written atomically once the process has exited.
pub const EXIT_FILE: &str = "exit.json";
