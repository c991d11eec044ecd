//! System endpoints: `/_ping`, `/version`, `/info`, `/events`, `/system/df`, `/auth`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::http::body::{self, ok_json, streamed, Resp};
use crate::http::query::Filters;
use crate::http::{ApiError, ApiResult, Ctx, API_VERSION, MIN_API_VERSION};
use crate::state::events::Event;
use crate::state::record::Status;
use crate::state::Daemon;

/// `/_ping`: `OK`, with the API version in the headers.
pub fn ping(head: bool) -> Resp {
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("Pragma", "no-cache")
        .header("Builder-Version", "1")
        .body(if head {
            body::empty()
        } else {
            body::full("OK")
        })
        .expect("a valid response")
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `/version`.
pub fn version() -> Resp {
    let v = env!("CARGO_PKG_VERSION");
    ok_json(&json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
            "Arch": "amd64", "KernelVersion": kernel_version(), "Experimental": "false"
        }}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "berth",
        "GoVersion": "none (Rust)",
        "Os": "linux",
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    }))
}

/// `/info`.
pub fn info(d: &Arc<Daemon>) -> ApiResult<Resp> {
    let cs = d.containers();
    let count = |s: Status| cs.iter().filter(|c| c.status() == s).count();
    let images = d
        .engine
        .open_store()
        .and_then(|s| {
            s.images()
                .map_err(|e| berth_engine::Error::Image(Box::new(e)))
        })
        .map_or(0, |v| v.len());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|k| k.parse::<i64>().ok())
                })
        })
        .unwrap_or(0)
        * 1024;
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Ok(ok_json(&json!({
        "ID": host,
        "Containers": cs.len(),
        "ContainersRunning": count(Status::Running),
        "ContainersPaused": count(Status::Paused),
        "ContainersStopped": cs.len() - count(Status::Running) - count(Status::Paused),
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "PidsLimit": true, "IPv4Forwarding": true, "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count),
        "NGoroutines": 0,
        "SystemTime": crate::time::now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if v2 { "2" } else { "1" },
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": "berth",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"]},
        "NCPU": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "MemTotal": mem,
        "DockerRootDir": d.config.data_root,
        "Name": host,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"berth": {"path": d.config.runtime}},
        "DefaultRuntime": "berth",
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
        "Warnings": [],
    })))
}

/// Whether an event passes `filters` (type, event, container, image, label).
fn event_matches(f: &Filters, e: &Event) -> bool {
    let any = |key: &str, values: &[&str]| {
        f.get(key)
            .is_none_or(|want| want.iter().any(|w| values.contains(&w.as_str())))
    };
    let name = e.actor.attributes.get("name").map_or("", String::as_str);
    let image = e.actor.attributes.get("image").map_or("", String::as_str);
    any("type", &[e.typ.as_str()])
        && any("event", &[e.action.as_str()])
        && (e.typ != "container" || any("container", &[e.actor.id.as_str(), name]))
        && (f.get("container").is_none() || e.typ == "container")
        && any("image", &[image, e.actor.id.as_str()])
        && crate::http::query::labels_match(f, &e.actor.attributes)
}

/// `/events`: a stream of JSON events (`since` replays kept ones; `until` ends it).
pub fn events(d: &Arc<Daemon>, ctx: &Ctx) -> ApiResult<Resp> {
    let filters = ctx.query.filters()?;
    let since = match ctx.query.get("since") {
        Some(s) => Some(
            crate::time::parse_query_time(s)
                .ok_or_else(|| ApiError::bad_request(format!("invalid since: {s:?}")))?,
        ),
        None => None,
    };
    let until = match ctx.query.get("until") {
        Some(s) => Some(
            crate::time::parse_query_time(s)
                .ok_or_else(|| ApiError::bad_request(format!("invalid until: {s:?}")))?,
        ),
        None => None,
    };
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    };
    let since_ns = since.map(nanos);
    let until_ns = until.map(nanos);
    let (mut rx, past) = d.events.subscribe();
    let (resp, tx) = streamed(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let line = |e: &Event| {
            let mut v = serde_json::to_vec(e).unwrap_or_default();
            v.push(b'\n');
            Bytes::from(v)
        };
        if let Some(s) = since_ns {
            for e in past.iter().filter(|e| e.time_nano >= s) {
                if until_ns.is_some_and(|u| e.time_nano > u) {
                    return;
                }
                if event_matches(&filters, e) && tx.send(line(e)).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let next = match until_ns {
                Some(u) => {
                    let now = nanos(std::time::SystemTime::now());
                    if now >= u {
                        return;
                    }
                    let left = std::time::Duration::from_nanos((u - now) as u64);
                    match tokio::time::timeout(left, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                None => tokio::select! {
                    r = rx.recv() => r,
                    () = tx.closed() => return,
                },
            };
            match next {
                Ok(e) => {
                    if event_matches(&filters, &e) && tx.send(line(&e)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
    Ok(resp)
}

/// `/system/df`: images, containers and volumes with their sizes.
pub fn df(d: &Arc<Daemon>) -> ApiResult<Resp> {
    let images = super::images::summaries(d)?;
    let containers: Vec<_> = d
        .containers()
        .iter()
        .map(|c| super::containers::summary(d, &c.snapshot()))
        .collect();
    let layers: i64 = images
        .iter()
        .map(|i| {
            i.get("Size")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0)
        })
        .sum();
    Ok(ok_json(&json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    })))
}

/// `/auth`: checks credentials against a registry.
pub async fn auth(req: Request<Incoming>) -> ApiResult<Resp> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    struct Auth {
        username: Option<String>,
        password: Option<String>,
        serveraddress: Option<String>,
    }
    let a: Auth = body::json_body(req.into_body()).await?;
    let server = a
        .serveraddress
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "docker.io".into());
    let server = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    let opts = berth_registry::ClientOptions {
        credentials: Some(berth_registry::Credentials {
            username: a.username.unwrap_or_default(),
            password: a.password.unwrap_or_default(),
        }),
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || berth_registry::check_login(&server, opts))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, crate::http::error::chain(&e)))?;
    Ok(ok_json(
        &json!({"Status": "Login Succeeded", "IdentityToken": ""}),
    ))
}
