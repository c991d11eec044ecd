//! The monitor's command line, as berthd builds it:
//!
//! ```text
//! berth-monitor --runtime BERTH --runtime-root ROOT --id ID --dir DIR
//!               [--tty] [--stdin] [--stdin-once] [--log FILE]
//!               create --bundle BUNDLE | exec --process PROCESS_JSON
//! ```
//!
//! berthd spawns it with stdin `/dev/null`, stdout a pipe (the [`crate::Ready`] line arrives
//! there) and stderr a file (the monitor's own diagnostics). The process berthd spawned exits
//! at once (the monitor forks and detaches); berthd reaps it and reads the ready line.

use std::ffi::OsString;
use std::path::PathBuf;

/// What the monitor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `berth create --bundle BUNDLE ... ID`: a container (berthd then runs `berth start`).
    /// When it exits the monitor deletes the container's runtime state.
    Create {
        /// The bundle directory.
        bundle: PathBuf,
    },
    /// `berth exec --detach --process PROCESS_JSON ... ID`: a process in a running container.
    Exec {
        /// The OCI process JSON file.
        process: PathBuf,
    },
}

/// A monitor's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The `berth` runtime binary.
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The container ID.
    pub id: String,
    /// The monitor's directory: pid file, sockets, exit record.
    pub dir: PathBuf,
    /// The process has a terminal: the pty carries input and output.
    pub tty: bool,
    /// Attach clients' input goes to the process's stdin (else it is `/dev/null`).
    pub stdin: bool,
    /// The process's stdin is closed when an attach client closes its input.
    pub stdin_once: bool,
    /// The json-file log; `None`: nothing is logged.
    pub log: Option<PathBuf>,
    /// Rotate the log once it would pass this many bytes.
    pub log_max_size: Option<u64>,
    /// How many log files rotation keeps (the current one included; at least 1).
    pub log_max_files: u32,
    /// Output is held (not read, so the process waits on a full pipe) until the first attach
    /// client connects, which gets all of it: for an exec whose client attaches only after
    /// the ready line, when the process already runs.
    pub hold_output: bool,
    /// Create a container or exec a process.
    pub mode: Mode,
}

impl Invocation {
    /// The arguments after the program name.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--runtime".into(),
            self.runtime.clone().into(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
            "--id".into(),
            self.id.clone().into(),
            "--dir".into(),
            self.dir.clone().into(),
        ];
        for (on, flag) in [
            (self.tty, "--tty"),
            (self.stdin, "--stdin"),
            (self.stdin_once, "--stdin-once"),
            (self.hold_output, "--hold-output"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if let Some(max) = self.log_max_size {
            a.push("--log-max-size".into());
            a.push(max.to_string().into());
            a.push("--log-max-files".into());
            a.push(self.log_max_files.to_string().into());
        }
        if let Some(log) = &self.log {
            a.push("--log".into());
            a.push(log.clone().into());
        }
        match &self.mode {
            Mode::Create { bundle } => {
                a.extend(["create".into(), "--bundle".into(), bundle.clone().into()]);
            }
            Mode::Exec { process } => {
                a.extend(["exec".into(), "--process".into(), process.clone().into()]);
            }
        }
        a
    }
}
