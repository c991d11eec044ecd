//! berthd's side of `berth-monitor`: spawning one for a container's run or an exec, reading
//! its ready line, waiting for it to end (a pidfd, so it works for a monitor a previous
//! berthd started), reading the exit it recorded, and its control socket.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The attach socket in a monitor's directory.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The control socket in a monitor's directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// The exit record in a monitor's directory.
pub const EXIT_FILE: &str = "exit.json";

/// How long a monitor may take to create the container or exec process.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the monitor runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `berth create` of the bundle.
    Create {
        /// The bundle.
        bundle: PathBuf,
    },
    /// `berth exec --detach --process`.
    Exec {
        /// The process.json.
        process: PathBuf,
    },
}

/// A monitor to spawn.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// The monitor binary.
    pub monitor: PathBuf,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// The container's runtime ID.
    pub id: String,
    /// The monitor's directory (sockets, pid and exit files).
    pub dir: PathBuf,
    /// A terminal.
    pub tty: bool,
    /// Keep stdin open for attach clients.
    pub stdin: bool,
    /// Close stdin when the first attach client closes its input.
    pub stdin_once: bool,
    /// The json-file log.
    pub log: Option<PathBuf>,
    /// What it runs.
    pub mode: Mode,
}

/// The monitor's ready line.
#[derive(Debug, Clone, Deserialize)]
pub struct ReadyLine {
    /// Whether the container (or exec process) was made.
    pub ready: bool,
    /// The monitor's pid.
    #[serde(default)]
    pub monitor_pid: i32,
    /// The container's init (or exec process) pid.
    #[serde(default)]
    pub pid: i32,
    /// Why not.
    #[serde(default)]
    pub error: Option<String>,
}

/// A monitor that made its process.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// The monitor's pid.
    pub monitor_pid: i32,
    /// The process's pid.
    pub pid: i32,
}

/// How the process ended, as the monitor recorded it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal.
    pub exit_code: i64,
    /// The signal that killed it.
    #[serde(default)]
    pub signal: Option<i32>,
    /// When it ended (RFC 3339).
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// Spawns a monitor and waits for its ready line; an error carries the runtime's message.
pub async fn spawn(s: &Spawn) -> Result<Ready, String> {
    let _ = std::fs::remove_dir_all(&s.dir);
    std::fs::create_dir_all(&s.dir).map_err(|e| format!("{}: {e}", s.dir.display()))?;
    let mut cmd = tokio::process::Command::new(&s.monitor);
    cmd.arg("--runtime")
        .arg(&s.runtime)
        .arg("--runtime-root")
        .arg(&s.runtime_root)
        .arg("--id")
        .arg(&s.id)
        .arg("--dir")
        .arg(&s.dir);
    if s.tty {
        cmd.arg("--tty");
    }
    if s.stdin {
        cmd.arg("--stdin");
    }
    if s.stdin_once {
        cmd.arg("--stdin-once");
    }
    if let Some(log) = &s.log {
        cmd.arg("--log").arg(log);
    }
    match &s.mode {
        Mode::Create { bundle } => cmd.arg("create").arg("--bundle").arg(bundle),
        Mode::Exec { process } => cmd.arg("exec").arg("--process").arg(process),
    };
    let stderr = std::fs::File::create(s.dir.join("monitor.log"))
        .map_err(|e| format!("{}: {e}", s.dir.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", s.monitor.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    let read = tokio::time::timeout(READY_TIMEOUT, async {
        BufReader::new(stdout).read_line(&mut line).await
    })
    .await;
    // The first process exits once the monitor has detached.
    let _ = child.wait().await;
    match read {
        Err(_) => return Err("the monitor did not report within 120s".into()),
        Ok(Err(e)) => return Err(format!("reading the monitor's report: {e}")),
        Ok(Ok(_)) => {}
    }
    let ready: ReadyLine = serde_json::from_str(line.trim()).map_err(|_| {
        let log = std::fs::read_to_string(s.dir.join("monitor.log")).unwrap_or_default();
        format!("the monitor failed: {}", log.trim())
    })?;
    if ready.ready {
        Ok(Ready {
            monitor_pid: ready.monitor_pid,
            pid: ready.pid,
        })
    } else {
        Err(ready.error.unwrap_or_else(|| "the runtime failed".into()))
    }
}

/// Whether `pid` is a monitor of `id` (not a recycled pid).
pub fn is_monitor_of(pid: i32, id: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.first()
        .is_some_and(|a| a.ends_with(b"berth-monitor"))
        && args.iter().any(|a| *a == id.as_bytes())
}

/// Waits until process `pid` has ended (it need not be berthd's child).
pub async fn wait_gone(pid: i32) {
    let fd: OwnedFd = match berth_sys::process::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return,
    };
    // SAFETY: `fd` is an OwnedFd moved into the AsyncFd, so it stays open and refers to the
    // same pidfd for the AsyncFd's whole life, and OwnedFd::as_raw_fd always returns it.
    let registered = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
    match registered {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(_) => {
            while Path::new(&format!("/proc/{pid}")).exists() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The exit the monitor in `dir` recorded.
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Sends one control request to the monitor in `dir` and reads its reply.
pub async fn control(dir: &Path, request: &serde_json::Value) -> Result<(), String> {
    let mut s = UnixStream::connect(dir.join(CONTROL_SOCKET))
        .await
        .map_err(|e| format!("the container's monitor: {e}"))?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut reply = String::new();
    let mut r = BufReader::new(s);
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut reply))
        .await
        .map_err(|_| "the monitor did not answer".to_string())?
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(reply.trim()).unwrap_or_default();
    match v.get("error").and_then(|e| e.as_str()) {
        Some(e) => Err(e.to_string()),
        None => Ok(()),
    }
}

/// Connects to the attach socket of the monitor in `dir`.
pub async fn connect_attach(dir: &Path) -> std::io::Result<UnixStream> {
    UnixStream::connect(dir.join(ATTACH_SOCKET)).await
}
