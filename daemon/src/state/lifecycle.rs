//! A container's life: start (a monitor creates it, berthd starts it), the watch on its
//! monitor that records its exit and applies `AutoRemove` and the restart policy, stop,
//! kill, wait, removal, and recovery of every container when berthd starts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use berth_monitor::Invocation;

use super::monitor::{self, Mode, Spawn};
use super::record::Status;
use super::{Container, Daemon};
use crate::http::{ApiError, ApiResult};
use crate::time;

/// An attach client waiting for its container to start: it is sent the monitor's directory
/// and answers once it has connected (so it misses no output).
pub struct PendingAttach {
    /// Where the monitor's directory is sent.
    pub dir: oneshot::Sender<(std::path::PathBuf, oneshot::Sender<()>)>,
}

/// The attach side of a container: the running monitor's directory, or the clients waiting
/// for the next start.
#[derive(Default)]
pub struct AttachHub {
    /// The monitor's directory while the container runs.
    pub dir: Option<std::path::PathBuf>,
    /// Clients waiting for the next start.
    pub waiting: Vec<PendingAttach>,
}

/// What a wait waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// The container is not running (at once if it is not).
    NotRunning,
    /// The container's next exit.
    NextExit,
    /// The container's removal.
    Removed,
}

impl WaitCondition {
    /// Parses `condition`.
    pub fn parse(s: Option<&str>) -> ApiResult<WaitCondition> {
        match s.unwrap_or("") {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(ApiError::bad_request(format!(
                "invalid condition: {other:?}"
            ))),
        }
    }
}

fn runtime_error(e: &berth_runtime::Error) -> String {
    plain_message(&crate::http::error::chain(e))
}

/// A runtime message without the logrus framing the container's init reports failures in
/// (`time="..." level=error msg="exec: \"x\": ..."` becomes `exec: "x": ...`), so docker
/// prints the message itself.
pub(crate) fn plain_message(message: &str) -> String {
    let Some(start) = message.find("time=\"") else {
        return message.to_string();
    };
    let Some(msg) = message[start..].find(" msg=\"") else {
        return message.to_string();
    };
    let mut out = message[..start].to_string();
    let mut chars = message[start + msg + 6..].chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => out.extend(chars.next()),
            '"' => break,
            ch => out.push(ch),
        }
    }
    out
}

/// The exit code of a process that could not start because of the user's command, as docker
/// gives it (127: not found, 126: not executable); `None` for other failures. docker's CLI
/// reads the same messages.
pub fn user_error_code(message: &str) -> Option<i64> {
    if [
        "executable file not found",
        "no such file or directory",
        "No such file",
    ]
    .iter()
    .any(|m| message.contains(m))
    {
        Some(127)
    } else if message.contains("permission denied") {
        Some(126)
    } else {
        None
    }
}

/// Records a failed start of `c` and the error for the client: 400 when the command is the
/// user's mistake, 500 otherwise.
fn failed_start(c: &Container, cdir: &std::path::Path, message: String) -> ApiError {
    let code = user_error_code(&message);
    c.update(cdir, |r| {
        r.state.error.clone_from(&message);
        r.state.exit_code = code.unwrap_or(128);
    });
    if code.is_some() {
        ApiError::bad_request(message)
    } else {
        ApiError::internal(message)
    }
}

/// The json-file log's settings from the container's `LogConfig`: whether to log (type
/// `none` does not), `max-size` in bytes and `max-file` (validated at create).
pub fn log_options(r: &super::record::ContainerRecord) -> (bool, Option<u64>, u32) {
    let Some(lc) = &r.host_config.log_config else {
        return (true, None, 1);
    };
    if lc.typ.as_deref() == Some("none") {
        return (false, None, 1);
    }
    let cfg = lc.config.clone().unwrap_or_default();
    let size = cfg
        .get("max-size")
        .and_then(|v| berth_image::extract::parse_size(v));
    let files = cfg
        .get("max-file")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    (true, size, files)
}

/// Starts a created or exited container. One with `AutoRemove` whose start fails is
/// removed, as dockerd does: `docker run --rm` waits for that removal.
pub async fn start(d: &Arc<Daemon>, c: &Arc<Container>) -> ApiResult<()> {
    let res = {
        let _op = c.op.lock().await;
        start_locked(d, c).await
    };
    if let Err(e) = &res {
        let auto_remove = c.snapshot().host_config.auto_remove.unwrap_or(false);
        if auto_remove && e.status != hyper::StatusCode::NOT_MODIFIED {
            if let Err(e) = remove(d, c, true).await {
                tracing::warn!("auto-removing {} after a failed start: {}", c.id, e.message);
            }
        }
    }
    res
}

async fn start_locked(d: &Arc<Daemon>, c: &Arc<Container>) -> ApiResult<()> {
    let r = c.snapshot();
    match r.state.status {
        Status::Running | Status::Paused => return Err(ApiError::not_modified()),
        Status::Removing | Status::Dead => {
            return Err(ApiError::conflict(format!(
                "container {} is marked for removal and cannot be started",
                r.id
            )))
        }
        _ => {}
    }
    let cdir = d.config.container_dir(&r.id);
    let mdir = d.config.monitor_dir(&r.id);
    // A runtime state left by a monitor that was killed: gone before the create.
    let root = d.engine.root().clone();
    let id = r.id.clone();
    let _ = tokio::task::spawn_blocking(move || berth_runtime::delete(&root, &id, true)).await;
    let _ = std::fs::remove_dir_all(&mdir);
    let (log, max_size, max_files) = log_options(&r);
    let spawn = Spawn {
        monitor: d.config.monitor.clone(),
        invocation: Invocation {
            runtime: d.config.runtime.clone(),
            runtime_root: d.config.runtime_root(),
            id: r.id.clone(),
            dir: mdir.clone(),
            tty: r.tty(),
            stdin: r.config.open_stdin.unwrap_or(false),
            stdin_once: r.config.stdin_once.unwrap_or(false),
            log: log.then(|| cdir.join(format!("{}-json.log", r.id))),
            log_max_size: max_size,
            log_max_files: max_files,
            hold_output: false,
            mode: Mode::Create {
                bundle: cdir.join("bundle"),
            },
        },
    };
    let ready = match monitor::spawn(&spawn).await {
        Ok(r) => r,
        Err(message) => {
            let _ = std::fs::remove_dir_all(&mdir);
            return Err(failed_start(c, &cdir, plain_message(&message)));
        }
    };
    // Attach clients that came before the start connect now, before the process runs.
    let pending: Vec<PendingAttach> = {
        let mut hub = c.attach.lock().expect("attach lock");
        hub.dir = Some(mdir.clone());
        std::mem::take(&mut hub.waiting)
    };
    for p in pending {
        let (ack_tx, ack_rx) = oneshot::channel();
        if p.dir.send((mdir.clone(), ack_tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), ack_rx).await;
        }
    }
    super::dns::refresh(d, &r.network.names(), Some(&r.id));
    let root = d.engine.root().clone();
    let id = r.id.clone();
    let started = tokio::task::spawn_blocking(move || berth_runtime::start(&root, &id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Err(e) = started {
        let message = runtime_error(&e);
        let root = d.engine.root().clone();
        let id = r.id.clone();
        let _ = tokio::task::spawn_blocking(move || berth_runtime::delete(&root, &id, true)).await;
        monitor::wait_gone(ready.monitor_pid).await;
        c.attach.lock().expect("attach lock").dir = None;
        return Err(failed_start(c, &cdir, message));
    }
    let rec = c.update(&cdir, |r| {
        r.state.status = Status::Running;
        r.state.pid = ready.pid;
        r.state.monitor_pid = ready.monitor_pid;
        r.state.started_at = time::now_rfc3339();
        r.state.error.clear();
        r.state.stopped_by_user = false;
        r.clone()
    });
    d.container_event(&rec, "start", &[]);
    super::dns::refresh(d, &rec.network.names(), None);
    super::health::start(d, c);
    spawn_watch(d.clone(), c.clone(), ready.monitor_pid);
    Ok(())
}

/// Watches the monitor of a running container: when it ends, records the exit.
fn spawn_watch(d: Arc<Daemon>, c: Arc<Container>, monitor_pid: i32) {
    tokio::spawn(async move {
        monitor::wait_gone(monitor_pid).await;
        on_exit(&d, &c);
    });
}

/// Records a container's exit (from its monitor's record) and applies `AutoRemove` and
/// the restart policy.
fn on_exit(d: &Arc<Daemon>, c: &Arc<Container>) {
    let mdir = d.config.monitor_dir(&c.id);
    let cdir = d.config.container_dir(&c.id);
    c.attach.lock().expect("attach lock").dir = None;
    let exit = monitor::read_exit(&mdir);
    let rec = c.update(&cdir, |r| {
        r.state.status = Status::Exited;
        r.state.pid = 0;
        r.state.monitor_pid = 0;
        match &exit {
            Some(e) => {
                r.state.exit_code = i64::from(e.exit_code);
                r.state.finished_at = time::rfc3339(e.finished_at);
            }
            None => {
                r.state.exit_code = 255;
                r.state.finished_at = time::now_rfc3339();
                r.state.error = "the container's monitor ended without recording an exit".into();
            }
        }
        r.clone()
    });
    let _ = std::fs::remove_dir_all(&mdir);
    d.container_event(
        &rec,
        "die",
        &[("exitCode", rec.state.exit_code.to_string())],
    );
    if rec.host_config.auto_remove.unwrap_or(false) {
        let (d, c) = (d.clone(), c.clone());
        tokio::spawn(async move {
            if let Err(e) = remove(&d, &c, true).await {
                tracing::warn!("auto-removing {}: {}", c.id, e.message);
            }
        });
        return;
    }
    if should_restart(&rec) {
        let delay = restart_delay(rec.restart_count);
        c.update(&cdir, |r| {
            r.state.status = Status::Restarting;
            r.restart_count += 1;
        });
        let (d, c) = (d.clone(), c.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = c.op.lock().await;
            if c.status() != Status::Restarting {
                return;
            }
            if let Err(e) = start_locked(&d, &c).await {
                tracing::warn!("restarting {}: {}", c.id, e.message);
                c.update(&d.config.container_dir(&c.id), |r| {
                    r.state.status = Status::Exited;
                });
            }
        });
    }
}

/// Whether the restart policy starts the container again after this exit.
fn should_restart(r: &super::record::ContainerRecord) -> bool {
    use bollard_stubs::models::RestartPolicyNameEnum as P;
    if r.state.stopped_by_user {
        return false;
    }
    let Some(policy) = &r.host_config.restart_policy else {
        return false;
    };
    match policy.name {
        Some(P::ALWAYS | P::UNLESS_STOPPED) => true,
        Some(P::ON_FAILURE) => {
            r.state.exit_code != 0
                && policy
                    .maximum_retry_count
                    .is_none_or(|max| max <= 0 || r.restart_count < max)
        }
        _ => false,
    }
}

/// docker's back-off: 100 ms, doubled each restart, at most a minute.
fn restart_delay(count: i64) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << count.clamp(0, 10));
    Duration::from_millis(ms.min(60_000))
}

/// Sends `signal` to a running container's init.
pub async fn kill(d: &Arc<Daemon>, c: &Arc<Container>, signal: i32) -> ApiResult<()> {
    if !c.status().is_live() {
        return Err(ApiError::conflict(format!(
            "Cannot kill container: {}: container {} is not running",
            c.id, c.id
        )));
    }
    let root = d.engine.root().clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || berth_runtime::kill(&root, &id, signal, false))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(runtime_error(&e)))
}

/// Waits until the container is not live, at most `timeout`; returns whether it stopped.
async fn wait_stopped(c: &Container, timeout: Duration) -> bool {
    let mut rx = c.watch();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !c.status().is_live() {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return !c.status().is_live(),
        }
    }
}

/// Stops a container: its stop signal, then SIGKILL after `timeout`; a `stop` event, as
/// dockerd emits.
pub async fn stop(
    d: &Arc<Daemon>,
    c: &Arc<Container>,
    signal: Option<i32>,
    timeout: Duration,
) -> ApiResult<()> {
    let _op = c.op.lock().await;
    stop_locked(d, c, signal, timeout).await?;
    d.container_event(&c.snapshot(), "stop", &[]);
    Ok(())
}

async fn stop_locked(
    d: &Arc<Daemon>,
    c: &Arc<Container>,
    signal: Option<i32>,
    timeout: Duration,
) -> ApiResult<()> {
    let cdir = d.config.container_dir(&c.id);
    let r = c.snapshot();
    if r.state.status == Status::Restarting {
        c.update(&cdir, |r| {
            r.state.status = Status::Exited;
            r.state.stopped_by_user = true;
        });
        return Ok(());
    }
    if !r.state.status.is_live() {
        return Err(ApiError::not_modified());
    }
    c.update(&cdir, |r| r.state.stopped_by_user = true);
    if r.state.status == Status::Paused {
        let root = d.engine.root().clone();
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || berth_runtime::resume(&root, &id)).await;
    }
    let signal = match signal {
        Some(s) => s,
        None => r
            .config
            .stop_signal
            .as_deref()
            .and_then(|s| berth_runtime::signal::parse(s).ok())
            .unwrap_or(libc::SIGTERM),
    };
    if kill(d, c, signal).await.is_ok() {
        // As dockerd: the stop signal is a `kill` event before the `die`.
        d.container_event(&c.snapshot(), "kill", &[("signal", signal.to_string())]);
    }
    if wait_stopped(c, timeout).await {
        return Ok(());
    }
    let _ = kill(d, c, libc::SIGKILL).await;
    if wait_stopped(c, Duration::from_secs(30)).await {
        Ok(())
    } else {
        Err(ApiError::internal(format!(
            "container {} did not stop after SIGKILL",
            c.id
        )))
    }
}

/// Restarts a container: stop (if running), then start.
pub async fn restart(d: &Arc<Daemon>, c: &Arc<Container>, timeout: Duration) -> ApiResult<()> {
    let _op = c.op.lock().await;
    match stop_locked(d, c, None, timeout).await {
        Ok(()) => d.container_event(&c.snapshot(), "stop", &[]),
        Err(e) if e.status == hyper::StatusCode::NOT_MODIFIED => {}
        Err(e) => return Err(e),
    }
    start_locked(d, c).await?;
    d.container_event(&c.snapshot(), "restart", &[]);
    Ok(())
}

/// Freezes or thaws a running container.
pub async fn set_paused(d: &Arc<Daemon>, c: &Arc<Container>, paused: bool) -> ApiResult<()> {
    let _op = c.op.lock().await;
    let status = c.status();
    if !status.is_live() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    if paused && status == Status::Paused {
        return Err(ApiError::conflict(format!(
            "Container {} is already paused",
            c.id
        )));
    }
    if !paused && status != Status::Paused {
        return Err(ApiError::conflict(format!(
            "Container {} is not paused",
            c.id
        )));
    }
    let root = d.engine.root().clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || {
        if paused {
            berth_runtime::pause(&root, &id)
        } else {
            berth_runtime::resume(&root, &id)
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(runtime_error(&e)))?;
    let rec = c.update(&d.config.container_dir(&c.id), |r| {
        r.state.status = if paused {
            Status::Paused
        } else {
            Status::Running
        };
        r.clone()
    });
    d.container_event(&rec, if paused { "pause" } else { "unpause" }, &[]);
    Ok(())
}

/// Waits for `cond`; returns the exit code.
pub async fn wait(d: &Arc<Daemon>, c: &Arc<Container>, cond: WaitCondition) -> i64 {
    let mut rx = c.watch();
    let mut removed = d.watch_removed();
    let exits_at_start = c.snapshot().state.finished_at;
    loop {
        let r = c.snapshot();
        match cond {
            WaitCondition::NotRunning
                if !r.state.status.is_live() && r.state.status != Status::Restarting =>
            {
                return r.state.exit_code
            }
            WaitCondition::NextExit
                if r.state.finished_at != exits_at_start && r.state.status != Status::Running =>
            {
                return r.state.exit_code
            }
            _ => {}
        }
        if cond == WaitCondition::Removed && removed.borrow().contains(&c.id) {
            return r.state.exit_code;
        }
        tokio::select! {
            ch = rx.changed() => {
                if ch.is_err() {
                    return c.snapshot().state.exit_code;
                }
            }
            ch = removed.changed() => {
                if ch.is_err() || removed.borrow().contains(&c.id) {
                    return c.snapshot().state.exit_code;
                }
            }
        }
    }
}

/// Removes a container (with `force`, killing it first): network detached, bundle and
/// writable layer gone, logs and record removed.
pub async fn remove(d: &Arc<Daemon>, c: &Arc<Container>, force: bool) -> ApiResult<()> {
    let _op = c.op.lock().await;
    let r = c.snapshot();
    if r.state.status == Status::Removing {
        return Err(ApiError::conflict(format!(
            "removal of container {} is already in progress",
            r.id
        )));
    }
    if r.state.status.is_live() {
        if !force {
            return Err(ApiError::conflict(format!(
                "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                r.id
            )));
        }
        stop_locked(d, c, Some(libc::SIGKILL), Duration::from_secs(10)).await?;
    }
    let cdir = d.config.container_dir(&r.id);
    c.update(&cdir, |r| r.state.status = Status::Removing);
    let engine = d.engine.clone();
    let (id, holder, net) = (r.id.clone(), r.holder.clone(), r.network.state.clone());
    let bundle = cdir.join("bundle");
    let root = d.engine.root().clone();
    let res = tokio::task::spawn_blocking(move || {
        let _ = berth_runtime::delete(&root, &id, true);
        engine.remove_container(&id, &bundle, &holder, net.as_deref())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Err(e) = res {
        c.update(&cdir, |r| {
            r.state.status = Status::Dead;
            r.state.error = crate::http::error::chain(&e);
        });
        return Err(ApiError::internal(format!(
            "removing container {}: {}",
            r.id,
            crate::http::error::chain(&e)
        )));
    }
    let _ = std::fs::remove_dir_all(d.config.monitor_dir(&r.id));
    if let Err(e) = std::fs::remove_dir_all(&cdir) {
        tracing::warn!("{}: {e}", cdir.display());
    }
    d.forget(&r.id);
    d.container_event(&r, "destroy", &[]);
    Ok(())
}

/// Picks up every container at berthd's start: a running one whose monitor lives is
/// watched again; one whose monitor is gone gets the exit it recorded (and its restart
/// policy); a removal that was cut short is finished; restart policies `always` and
/// `unless-stopped` start the stopped containers they cover, as dockerd does.
pub async fn recover(d: &Arc<Daemon>) {
    for c in d.containers() {
        let r = c.snapshot();
        match r.state.status {
            Status::Running | Status::Paused => {
                if monitor::is_monitor_of(r.state.monitor_pid, &r.id) {
                    tracing::info!(
                        "container {}: running, monitor {}",
                        r.id,
                        r.state.monitor_pid
                    );
                    spawn_watch(d.clone(), c.clone(), r.state.monitor_pid);
                } else {
                    on_exit(d, &c);
                }
            }
            Status::Restarting => {
                let (d, c) = (d.clone(), c.clone());
                tokio::spawn(async move {
                    let _op = c.op.lock().await;
                    let _ = start_locked(&d, &c).await;
                });
            }
            Status::Removing | Status::Dead => {
                if let Err(e) = remove(d, &c, true).await {
                    tracing::warn!("finishing the removal of {}: {}", r.id, e.message);
                }
            }
            Status::Exited | Status::Created => {
                use bollard_stubs::models::RestartPolicyNameEnum as P;
                let policy = r.host_config.restart_policy.as_ref().and_then(|p| p.name);
                let restart = match policy {
                    Some(P::ALWAYS) => r.state.status == Status::Exited,
                    Some(P::UNLESS_STOPPED) => {
                        r.state.status == Status::Exited && !r.state.stopped_by_user
                    }
                    _ => false,
                };
                if restart {
                    let (d, c) = (d.clone(), c.clone());
                    tokio::spawn(async move {
                        let _ = start(&d, &c).await;
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_backoff() {
        assert_eq!(
            WaitCondition::parse(None).unwrap(),
            WaitCondition::NotRunning
        );
        assert_eq!(
            WaitCondition::parse(Some("removed")).unwrap(),
            WaitCondition::Removed
        );
        assert!(WaitCondition::parse(Some("later")).is_err());
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(3), Duration::from_millis(800));
        assert_eq!(restart_delay(100), Duration::from_secs(60));
        assert_eq!(
            user_error_code("exec: \"nosuch\": executable file not found in $PATH"),
            Some(127)
        );
        assert_eq!(
            user_error_code("exec /etc/passwd: permission denied"),
            Some(126)
        );
        assert_eq!(user_error_code("cgroup: device busy"), None);
        assert_eq!(
            plain_message(
                "time=\"2026-01-01T00:00:00Z\" level=error msg=\"exec: \\\"nosuch\\\": executable file not found in $PATH\""
            ),
            "exec: \"nosuch\": executable file not found in $PATH"
        );
        assert_eq!(plain_message("plain failure"), "plain failure");
    }
}
