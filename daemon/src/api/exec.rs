//! Exec endpoints: create (`POST /containers/{id}/exec`), start (hijacked unless detached),
//! resize, inspect. Each start runs a monitor in exec mode; its exit is the exec's.

use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::attach::{pump, Streams};
use crate::http::body::{json_body, no_content, ok_json, Resp};
use crate::http::hijack::hijack;
use crate::http::{ApiError, ApiResult, Ctx};
use crate::state::exec::{write_process, Exec, ExecConfig, ExecState};
use crate::state::monitor::{self, Mode, Spawn};
use crate::state::{record, Container, Daemon};

/// `POST /containers/{id}/exec`.
pub async fn create(
    d: &Arc<Daemon>,
    c: &Arc<Container>,
    req: Request<Incoming>,
) -> ApiResult<Resp> {
    let config: ExecConfig = json_body(req.into_body()).await?;
    let r = c.snapshot();
    if r.state.status == record::Status::Paused {
        return Err(ApiError::conflict(format!(
            "Container {} is paused, unpause the container before exec",
            r.id
        )));
    }
    if !r.state.status.is_live() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            r.id
        )));
    }
    if config.cmd.as_ref().is_none_or(Vec::is_empty) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let id = record::new_id();
    d.execs.lock().expect("execs lock").insert(
        id.clone(),
        Arc::new(Exec {
            id: id.clone(),
            container: r.id.clone(),
            config,
            state: Mutex::new(ExecState::default()),
        }),
    );
    Ok(super::images::created(&json!({"Id": id})))
}

fn find(d: &Daemon, id: &str) -> ApiResult<Arc<Exec>> {
    d.execs
        .lock()
        .expect("execs lock")
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    #[serde(default)]
    detach: bool,
}

/// `POST /exec/{id}/start`.
pub async fn start(d: &Arc<Daemon>, id: &str, mut req: Request<Incoming>) -> ApiResult<Resp> {
    let e = find(d, id)?;
    {
        let mut st = e.state.lock().expect("exec lock");
        if st.running || st.done {
            return Err(ApiError::conflict(format!(
                "Exec {id} has already been started"
            )));
        }
        st.running = true;
    }
    let body_bytes = {
        use http_body_util::BodyExt;
        let b = http_body_util::Limited::new(req.body_mut(), crate::http::body::MAX_JSON_BODY)
            .collect()
            .await
            .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        b.to_bytes()
    };
    let body: Option<StartBody> = crate::http::body::parse_json(&body_bytes)?;
    let detach = body.unwrap_or_default().detach;
    let c = d.find(&e.container)?;
    let dir = d.config.exec_dir(&e.id);
    let fail = |msg: String| {
        let mut st = e.state.lock().expect("exec lock");
        st.running = false;
        st.done = true;
        st.exit_code = Some(126);
        ApiError::internal(msg)
    };
    if !c.status().is_live() {
        return Err(fail(format!("Container {} is not running", c.id)));
    }
    let process = write_process(
        &d.config.container_dir(&c.id).join("bundle"),
        &e.config,
        &dir,
    )
    .map_err(|err| fail(err.message))?;
    let spawn = Spawn {
        monitor: d.config.monitor.clone(),
        invocation: berth_monitor::Invocation {
            runtime: d.config.runtime.clone(),
            runtime_root: d.config.runtime_root(),
            id: c.id.clone(),
            dir: dir.clone(),
            tty: e.config.tty,
            stdin: e.config.attach_stdin,
            stdin_once: true,
            log: None,
            hold_output: !detach,
            log_max_size: None,
            log_max_files: 1,
            mode: Mode::Exec { process },
        },
    };
    if detach {
        let ready = monitor::spawn(&spawn).await.map_err(|m| {
            let m = crate::state::lifecycle::plain_message(&m);
            let code = crate::state::lifecycle::user_error_code(&m);
            let err = fail(m);
            let _ = std::fs::remove_dir_all(&dir);
            match code {
                Some(code) => {
                    e.state.lock().expect("exec lock").exit_code = Some(code);
                    ApiError::bad_request(err.message)
                }
                None => err,
            }
        })?;
        e.state.lock().expect("exec lock").pid = ready.pid;
        d.container_event(&c.snapshot(), "exec_start", &[("execID", e.id.clone())]);
        tokio::spawn(watch_exit(e.clone(), dir, ready.monitor_pid));
        return Ok(no_content(StatusCode::OK));
    }
    // Attached: the process starts once the client holds the upgraded connection, as with
    // dockerd (a client that reads the 101 through a buffer, as docker-py does, would lose
    // output that arrived with it).
    let tty = e.config.tty;
    let streams = Streams {
        stdin: e.config.attach_stdin,
        stdout: e.config.attach_stdout,
        stderr: e.config.attach_stderr,
    };
    let (resp, io) = hijack(&mut req, tty);
    let d = d.clone();
    tokio::spawn(async move {
        let Ok(mut client) = io.await else {
            let mut st = e.state.lock().expect("exec lock");
            st.running = false;
            st.done = true;
            return;
        };
        let ready = match monitor::spawn(&spawn).await {
            Ok(ready) => ready,
            Err(m) => {
                let m = crate::state::lifecycle::plain_message(&m);
                {
                    let mut st = e.state.lock().expect("exec lock");
                    st.running = false;
                    st.done = true;
                    st.exit_code =
                        Some(crate::state::lifecycle::user_error_code(&m).unwrap_or(126));
                }
                let _ = std::fs::remove_dir_all(&dir);
                // As dockerd: the client's stream carries the message and the exec's exit
                // code the failure (`docker exec c nosuch` prints it and exits 127).
                let text = format!("{m}\r\n").into_bytes();
                let mut out = Vec::with_capacity(text.len() + 8);
                if !tty {
                    out.extend_from_slice(&[1, 0, 0, 0]);
                    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                }
                out.extend_from_slice(&text);
                let _ = client.write_all(&out).await;
                let _ = client.shutdown().await;
                return;
            }
        };
        e.state.lock().expect("exec lock").pid = ready.pid;
        d.container_event(&c.snapshot(), "exec_start", &[("execID", e.id.clone())]);
        let sock = match monitor::connect_attach(&dir).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!("exec {}: the monitor's attach socket: {err}", e.id);
                watch_exit(e, dir, ready.monitor_pid).await;
                return;
            }
        };
        // The exit is recorded before the client's stream ends: `docker exec` inspects the
        // exec for its exit code as soon as its output ends.
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            watch_exit(e, dir, ready.monitor_pid).await;
            let _ = ended_tx.send(());
        });
        let ended = async {
            let _ = ended_rx.await;
        };
        pump(client, sock, tty, streams, ended).await;
    });
    Ok(resp)
}

/// Waits for an exec's monitor to end and records the exit it wrote.
async fn watch_exit(e: Arc<Exec>, dir: std::path::PathBuf, monitor_pid: i32) {
    monitor::wait_gone(monitor_pid).await;
    let code = monitor::read_exit(&dir).map_or(126, |x| i64::from(x.exit_code));
    {
        let mut st = e.state.lock().expect("exec lock");
        st.running = false;
        st.done = true;
        st.exit_code = Some(code);
        st.pid = 0;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(d: &Arc<Daemon>, ctx: &Ctx, id: &str) -> ApiResult<Resp> {
    let e = find(d, id)?;
    let h = ctx.query.int("h")?.unwrap_or(0);
    let w = ctx.query.int("w")?.unwrap_or(0);
    if !e.snapshot().running {
        return Err(ApiError::conflict(format!("Exec {id} is not running")));
    }
    monitor::control(&d.config.exec_dir(&e.id), resize_request(h, w)?)
        .await
        .map_err(ApiError::internal)?;
    Ok(no_content(StatusCode::OK))
}

/// `GET /exec/{id}/json`.
pub fn inspect(d: &Arc<Daemon>, id: &str) -> ApiResult<Resp> {
    let e = find(d, id)?;
    let st = e.snapshot();
    let cmd = e.config.cmd.clone().unwrap_or_default();
    Ok(ok_json(&json!({
        "ID": e.id,
        "Running": st.running,
        "ExitCode": st.exit_code,
        "ProcessConfig": {
            "tty": e.config.tty, "entrypoint": cmd.first(), "arguments": cmd.iter().skip(1).collect::<Vec<_>>(),
            "privileged": e.config.privileged, "user": e.config.user.clone().unwrap_or_default(),
        },
        "OpenStdin": e.config.attach_stdin,
        "OpenStderr": e.config.attach_stderr,
        "OpenStdout": e.config.attach_stdout,
        "CanRemove": false,
        "ContainerID": e.container,
        "DetachKeys": "",
        "Pid": st.pid,
    })))
}

/// A resize request from `h` and `w` (each 1..=65535).
pub fn resize_request(h: i64, w: i64) -> ApiResult<berth_monitor::ControlRequest> {
    let dim = |v: i64, name: &str| {
        u16::try_from(v)
            .ok()
            .filter(|x| *x > 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid {name}: {v}")))
    };
    Ok(berth_monitor::ControlRequest::Resize {
        height: dim(h, "h")?,
        width: dim(w, "w")?,
    })
}
