//! `RUN`: the command runs as an ordinary confined berth container (docker's default
//! capabilities, seccomp, masked paths) over the step's root filesystem. The engine writes
//! its config and attaches its network; the runtime runs as a child process
//! (`berth --root R run --bundle B ID`) whose output the builder relays, so the builder never
//! forks itself (it may live in a threaded daemon) and a container's output never mixes
//! with the build's own messages.
//!
//! The runtime dies with the builder (`PR_SET_PDEATHSIG`: SIGKILL when the thread that
//! spawned it, which waits for it, is gone). What it leaves then (the container, which
//! outlives its `run`; the state; the cgroup; the network) is named by the marker the
//! engine writes into the bundle, and the next build or `image prune` undoes it
//! (`Engine::reclaim_steps`). A caller that gives up ([`Progress::cancelled`], polled even
//! while the step prints nothing) has the container killed at once.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_engine::{Engine, NetworkChoice, StepRequest};

use crate::error::{Error, Result};
use crate::Progress;

/// What one `RUN` runs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The command (exec'd).
    pub args: Vec<String>,
    /// Environment (`KEY=VALUE`).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// `user[:group]`.
    pub user: String,
    /// The network.
    pub network: NetworkChoice,
}

/// Runs `spec` in the root filesystem mounted at `bundle/rootfs`: its output goes to
/// `progress`; a non-zero exit is [`Error::RunFailed`]. The container and its network are
/// gone when this returns. `bundle` is the step's scratch directory (see
/// [`crate::rootfs::StepRoot::bundle`]).
pub fn run_step(
    engine: &Engine,
    runtime: &Path,
    bundle: &Path,
    spec: &RunSpec,
    progress: &mut dyn Progress,
) -> Result<()> {
    let id = format!("berth-build-{}", berth_engine::names::random_hex(8));
    let short: String = id["berth-build-".len()..].chars().take(12).collect();
    progress.stream(&format!(" ---> Running in {short}\n"));
    let prepared = engine.prepare_step(&StepRequest {
        id: id.clone(),
        bundle: bundle.to_path_buf(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        user: spec.user.clone(),
        network: spec.network.clone(),
        hostname: short.clone(),
    })?;
    let result = spawn_and_relay(engine, runtime, bundle, &id, progress);
    let released = engine.release_step(&prepared);
    let code = result?;
    released?;
    progress.stream(&format!(" ---> Removed intermediate container {short}\n"));
    if code != 0 {
        return Err(Error::RunFailed {
            command: spec.args.join(" "),
            code,
        });
    }
    Ok(())
}

fn spawn_and_relay(
    engine: &Engine,
    runtime: &Path,
    bundle: &Path,
    id: &str,
    progress: &mut dyn Progress,
) -> Result<i32> {
    let builder = rustix::process::getpid();
    let mut cmd = Command::new(runtime);
    cmd.arg("--root")
        .arg(engine.root().path())
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
    // (prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The builder died before the signal was armed.
            if rustix::process::getppid() != Some(builder) {
                return Err(std::io::Error::other("the builder is gone"));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::io(runtime, "run", e))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let mut cancelled = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => progress.stream(&String::from_utf8_lossy(&chunk)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !cancelled && progress.cancelled() {
            cancelled = true;
            let _ = Command::new(runtime)
                .arg("--root")
                .arg(engine.root().path())
                .args(["kill", id, "KILL"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| Error::io(runtime, "wait for", e))?;
    if cancelled {
        return Err(Error::Cancelled);
    }
    Ok(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    }))
}
