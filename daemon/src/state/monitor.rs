//! berthd's side of `berth-monitor`: spawning one for a container's run or an exec, reading
//! its ready line, waiting for it to end (a pidfd, so it works for a monitor a previous
//! berthd started), reading the exit it recorded, and its control socket.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_monitor::{ControlRequest, ControlResponse, ExitRecord, Invocation, Ready};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub use berth_monitor::Mode;

/// How long a monitor may take to create the container or exec process.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A monitor to spawn: its binary and its command line.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// The monitor binary.
    pub monitor: PathBuf,
    /// What it is told.
    pub invocation: Invocation,
}

/// A monitor that made its process.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// The monitor's pid.
    pub monitor_pid: i32,
    /// The process's pid.
    pub pid: i32,
}

/// Spawns a monitor and waits for its ready line; an error carries the runtime's message.
/// Its directory is made if missing (a leftover `exit.json` in it is the caller's to clear).
pub async fn spawn(s: &Spawn) -> Result<Started, String> {
    let dir = &s.invocation.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = tokio::process::Command::new(&s.monitor);
    cmd.args(s.invocation.to_args());
    let stderr = std::fs::File::create(dir.join("monitor.log"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
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
    let ready: Ready = serde_json::from_str(line.trim()).map_err(|_| {
        let log = std::fs::read_to_string(dir.join("monitor.log")).unwrap_or_default();
        format!("the monitor failed: {}", log.trim())
    })?;
    match ready {
        Ready::Running { monitor_pid, pid } => Ok(Started { monitor_pid, pid }),
        Ready::Failed { error } => Err(error),
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
    args.first().is_some_and(|a| a.ends_with(b"berth-monitor")) && args.contains(&id.as_bytes())
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
    ExitRecord::read(dir).ok().flatten()
}

/// Sends one control request to the monitor in `dir` and reads its reply.
pub async fn control(dir: &Path, request: ControlRequest) -> Result<(), String> {
    let mut s = UnixStream::connect(dir.join(berth_monitor::CONTROL_SOCKET))
        .await
        .map_err(|e| format!("the container's monitor: {e}"))?;
    let mut line = request.to_line();
    if !line.ends_with('\n') {
        line.push('\n');
    }
    s.write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    let mut r = BufReader::new(s);
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut reply))
        .await
        .map_err(|_| "the monitor did not answer".to_string())?
        .map_err(|e| e.to_string())?;
    ControlResponse::parse(reply.trim())
        .map_err(|e| e.to_string())?
        .into_result()
}

/// Connects to the attach socket of the monitor in `dir`.
pub async fn connect_attach(dir: &Path) -> std::io::Result<UnixStream> {
    UnixStream::connect(dir.join(berth_monitor::ATTACH_SOCKET)).await
}
