//! Container endpoints: list, inspect, the lifecycle actions, wait, attach, resize, rename,
//! logs, top, stats, remove, prune. Creation is in [`super::create`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use berth_engine::list::human_duration;

use crate::http::body::{no_content, ok_json, streamed, Resp};
use crate::http::query::labels_match;
use crate::http::{no_route, ApiError, ApiResult, Ctx};
use crate::state::lifecycle::{self, WaitCondition};
use crate::state::record::{ContainerRecord, Status};
use crate::state::Daemon;

pub use super::create::create;

/// "Up 5 minutes (healthy)", "Exited (0) 3 seconds ago", "Created".
fn human_status(r: &ContainerRecord, health: Option<&str>) -> String {
    let health = health.map_or_else(String::new, |h| {
        if h == "starting" {
            " (health: starting)".to_string()
        } else {
            format!(" ({h})")
        }
    });
    let ago = |t: &str| {
        crate::time::parse(t)
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map_or_else(|| "a while".to_string(), human_duration)
    };
    match r.state.status {
        Status::Running => format!("Up {}{health}", ago(&r.state.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(&r.state.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            ago(&r.state.finished_at)
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            ago(&r.state.finished_at)
        ),
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// The container's published ports, as docker's list shows them.
fn ports_of(r: &ContainerRecord) -> Vec<Value> {
    let mut out = Vec::new();
    for (port, bindings) in r.host_config.port_bindings.iter().flatten() {
        let (cport, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        let cport: u16 = cport.parse().unwrap_or(0);
        for b in bindings.iter().flatten() {
            let hp: u16 = b
                .host_port
                .as_deref()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.push(json!({"IP": b.host_ip.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                            "PrivatePort": cport, "PublicPort": hp, "Type": proto}));
        }
    }
    out
}

/// `NetworkSettings.Networks`: every network of the container, with what `details` (the
/// attachments berth made for it, when the caller read them) says of each: gateway, prefix,
/// MAC. The address shows while the container runs, as with docker.
fn networks_of(r: &ContainerRecord, details: &[berth_netns::Attachment]) -> Value {
    let mut nets = serde_json::Map::new();
    let live = r.state.status.is_live();
    for (name, ip, aliases) in r.network.endpoints() {
        let made = details
            .iter()
            .find(|a| a.network == super::networks::berth_name(name));
        let shown = |v: String| if live { v } else { String::new() };
        let mut dns_names = vec![r.name.clone(), r.id[..12].to_string()];
        dns_names.extend(aliases.iter().cloned());
        nets.insert(
            name.to_string(),
            json!({
                "NetworkID": super::networks::network_id(name),
                "EndpointID": shown(r.id.clone()),
                "Gateway": shown(made.map(|a| a.gateway.to_string()).unwrap_or_default()),
                "IPAddress": shown(ip.unwrap_or_default().to_string()),
                "IPPrefixLen": if live && ip.is_some() { made.map_or(16, |a| a.prefix_len) } else { 0 },
                "MacAddress": shown(made.map(|a| a.mac.to_string()).unwrap_or_default()),
                "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
                "Links": null,
                "DNSNames": if matches!(name, "bridge" | "host" | "none") { Value::Null } else { json!(dns_names) },
            }),
        );
    }
    Value::Object(nets)
}

fn command_of(r: &ContainerRecord) -> String {
    r.path.join(" ")
}

/// A container as `/containers/json` lists it.
pub fn summary(d: &Daemon, r: &ContainerRecord) -> Value {
    let health = d.find(&r.id).ok().and_then(|c| {
        c.health
            .lock()
            .expect("health lock")
            .as_ref()
            .map(|h| h.status.clone())
    });
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": command_of(r),
        "Created": crate::time::unix_seconds(&r.created),
        "Ports": ports_of(r),
        "Labels": r.config.labels.clone().unwrap_or_default(),
        "State": r.state.status.as_str(),
        "Status": human_status(r, health.as_deref()),
        "HostConfig": {"NetworkMode": r.host_config.network_mode.clone().unwrap_or_else(|| "bridge".into())},
        "NetworkSettings": {"Networks": networks_of(r, &[])},
        "Mounts": [],
    })
}

fn list_filter(f: &crate::http::query::Filters, r: &ContainerRecord) -> bool {
    let any =
        |key: &str, ok: &dyn Fn(&str) -> bool| f.get(key).is_none_or(|v| v.iter().any(|x| ok(x)));
    any("status", &|s| s == r.state.status.as_str())
        && any("id", &|s| r.id.starts_with(s))
        && any("name", &|s| r.name.contains(s.trim_start_matches('/')))
        && any("ancestor", &|s| r.image == s || r.image_id.contains(s))
        && any("exited", &|s| {
            r.state.status == Status::Exited && s.parse::<i64>().ok() == Some(r.state.exit_code)
        })
        && labels_match(
            f,
            &r.config
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        )
}

/// `GET /containers/json`.
pub fn list(d: &Daemon, ctx: &Ctx) -> ApiResult<Resp> {
    let all = ctx.query.flag("all", false);
    let filters = ctx.query.filters()?;
    let limit = ctx.query.int("limit")?.filter(|l| *l > 0);
    let mut recs: Vec<ContainerRecord> = d
        .containers()
        .iter()
        .map(|c| c.snapshot())
        .filter(|r| all || r.state.status.is_live() || filters.contains_key("status"))
        .filter(|r| list_filter(&filters, r))
        .collect();
    recs.sort_by(|a, b| b.created.cmp(&a.created));
    if let Some(l) = limit {
        recs.truncate(l as usize);
    }
    let out: Vec<Value> = recs.iter().map(|r| summary(d, r)).collect();
    Ok(ok_json(&out))
}

/// `GET /containers/{id}/json`.
#[allow(clippy::many_single_char_names)]
pub fn inspect(d: &Daemon, key: &str) -> ApiResult<Resp> {
    let c = d.find(key)?;
    let r = c.snapshot();
    let dir = d.config.container_dir(&r.id);
    let bundle = dir.join("bundle");
    let s = r.state.status;
    let execs: Vec<String> = d
        .execs
        .lock()
        .expect("execs lock")
        .values()
        .filter(|e| e.container == r.id && e.snapshot().running)
        .map(|e| e.id.clone())
        .collect();
    let mounts: Vec<Value> = r
        .host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|b| {
            let mut p = b.split(':');
            let (src, dst) = (p.next()?, p.next()?);
            let rw = !p.next().unwrap_or("").split(',').any(|o| o == "ro");
            let (typ, name) = if src.starts_with('/') { ("bind", "") } else { ("volume", src) };
            Some(json!({"Type": typ, "Name": name, "Source": src, "Destination": dst, "Mode": "", "RW": rw, "Propagation": "rprivate"}))
        })
        .collect();
    let ip = if s.is_live() {
        r.network.ip.clone().unwrap_or_default()
    } else {
        String::new()
    };
    // What berth made on each network: small files, read only for inspect.
    let details = r
        .network
        .state
        .as_deref()
        .and_then(|state| berth_netns::attachments(state, &r.id).ok())
        .unwrap_or_default();
    let ports: serde_json::Map<String, Value> = r
        .host_config
        .port_bindings
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(v.iter().flatten().map(|b| json!({"HostIp": b.host_ip.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "0.0.0.0".into()), "HostPort": b.host_port.clone().unwrap_or_default()})).collect::<Vec<_>>())))
        .collect();
    Ok(ok_json(&json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path.first().cloned().unwrap_or_default(),
        "Args": r.path.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": s.as_str(),
            "Running": s.is_live(),
            "Paused": s == Status::Paused,
            "Restarting": s == Status::Restarting,
            "OOMKilled": false,
            "Dead": s == Status::Dead,
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": r.state.started_at,
            "FinishedAt": r.state.finished_at,
            "Health": c.health.lock().expect("health lock").clone().filter(|_| s.is_live()),
        },
        "Image": r.image_id,
        "ResolvConfPath": bundle.join("net/resolv.conf"),
        "HostnamePath": bundle.join("net/hostname"),
        "HostsPath": bundle.join("net/hosts"),
        "LogPath": dir.join(format!("{}-json.log", r.id)),
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": if execs.is_empty() { Value::Null } else { json!(execs) },
        "HostConfig": host_config_json(&r),
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": bundle.join("rootfs")}},
        "Mounts": mounts,
        "Config": r.config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": false,
            "Ports": ports, "IPAddress": ip, "IPPrefixLen": if ip.is_empty() { 0 } else { 16 },
            "Gateway": "", "MacAddress": "", "Networks": networks_of(&r, &details),
        },
    })))
}

/// The host config as inspect shows it, with the log driver berthd uses filled in as dockerd
/// does (docker-py's `containers.run` reads `HostConfig.LogConfig.Type`).
fn host_config_json(r: &ContainerRecord) -> Value {
    let mut hc = serde_json::to_value(&r.host_config).unwrap_or_else(|_| json!({}));
    if let Some(o) = hc.as_object_mut() {
        let typ = o
            .get("LogConfig")
            .and_then(|l| l.get("Type"))
            .and_then(Value::as_str);
        if typ.is_none_or(str::is_empty) {
            o.insert(
                "LogConfig".into(),
                json!({"Type": "json-file", "Config": {}}),
            );
        }
    }
    hc
}

fn timeout_of(ctx: &Ctx, r: &ContainerRecord) -> ApiResult<Duration> {
    let t = ctx
        .query
        .int("t")?
        .or(ctx.query.int("timeout")?)
        .or(r.config.stop_timeout)
        .unwrap_or(10);
    // -1 waits "forever" (a year); a larger wait is that year too, so that a deadline never
    // overflows the clock.
    const YEAR: u64 = 3600 * 24 * 365;
    Ok(Duration::from_secs(if t < 0 {
        YEAR
    } else {
        (t as u64).min(YEAR)
    }))
}

fn signal_of(ctx: &Ctx) -> ApiResult<Option<i32>> {
    ctx.query
        .get("signal")
        .filter(|s| !s.is_empty())
        .map(|s| {
            berth_runtime::signal::parse(s)
                .map_err(|_| ApiError::bad_request(format!("Invalid signal: {s}")))
        })
        .transpose()
}

/// `POST /containers/{id}/{action}`.
pub async fn action(
    d: &Arc<Daemon>,
    ctx: &Ctx,
    key: &str,
    action: &str,
    req: Request<Incoming>,
) -> ApiResult<Resp> {
    let c = d.find(key)?;
    match action {
        "start" => {
            lifecycle::start(d, &c).await?;
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        "stop" => {
            let t = timeout_of(ctx, &c.snapshot())?;
            lifecycle::stop(d, &c, signal_of(ctx)?, t).await?;
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        "restart" => {
            let t = timeout_of(ctx, &c.snapshot())?;
            lifecycle::restart(d, &c, t).await?;
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        "kill" => {
            let sig = signal_of(ctx)?.unwrap_or(libc::SIGKILL);
            if sig == libc::SIGKILL || sig == libc::SIGTERM {
                c.update(&d.config.container_dir(&c.id), |r| {
                    r.state.stopped_by_user = true;
                });
            }
            lifecycle::kill(d, &c, sig).await?;
            d.container_event(&c.snapshot(), "kill", &[("signal", sig.to_string())]);
            if sig == libc::SIGKILL {
                // As dockerd: a SIGKILL returns once the container has stopped, so
                // `docker kill c && docker rm c` works.
                let stopped = lifecycle::wait(d, &c, WaitCondition::NotRunning);
                let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
            }
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        "pause" => {
            lifecycle::set_paused(d, &c, true).await?;
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        "unpause" => {
            lifecycle::set_paused(d, &c, false).await?;
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        "wait" => wait(d, ctx, c),
        "attach" => super::attach::attach(d, ctx, c, req),
        "resize" => {
            let h = ctx.query.int("h")?.unwrap_or(0);
            let w = ctx.query.int("w")?.unwrap_or(0);
            if !c.status().is_live() {
                return Err(ApiError::conflict(format!(
                    "Container {} is not running",
                    c.id
                )));
            }
            crate::state::monitor::control(
                &d.config.monitor_dir(&c.id),
                super::exec::resize_request(h, w)?,
            )
            .await
            .map_err(ApiError::internal)?;
            Ok(no_content(StatusCode::OK))
        }
        "rename" => {
            let name = ctx
                .query
                .get("name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad_request("name is required"))?;
            let name = name.trim_start_matches('/').to_string();
            crate::state::record::validate_name(&name).map_err(ApiError::bad_request)?;
            if let Some(other) = d.name_taken(&name) {
                return Err(ApiError::conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            let old = c.update(&d.config.container_dir(&c.id), |r| {
                std::mem::replace(&mut r.name, name)
            });
            d.container_event(&c.snapshot(), "rename", &[("oldName", format!("/{old}"))]);
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        "update" => update(d, &c, req).await,
        "exec" => super::exec::create(d, &c, req).await,
        _ => Err(no_route(ctx)),
    }
}

/// `POST /containers/{id}/update`: the restart policy (resources of a live container are
/// refused until the runtime's update is wired).
async fn update(
    d: &Arc<Daemon>,
    c: &Arc<crate::state::Container>,
    req: Request<Incoming>,
) -> ApiResult<Resp> {
    let body: Value = crate::http::body::json_body(req.into_body()).await?;
    let obj = body.as_object().cloned().unwrap_or_default();
    let mut warnings = Vec::new();
    let policy = match obj.get("RestartPolicy") {
        Some(p) => Some(
            serde_json::from_value::<bollard_stubs::models::RestartPolicy>(p.clone())
                .map_err(|e| ApiError::bad_request(format!("RestartPolicy: {e}")))?,
        ),
        None => None,
    };
    for k in obj.keys().filter(|k| *k != "RestartPolicy") {
        if !obj[k].is_null() && obj[k] != json!(0) && obj[k] != json!("") {
            warnings.push(format!("{k} is not updated by berthd yet"));
        }
    }
    if let Some(p) = policy {
        c.update(&d.config.container_dir(&c.id), |r| {
            r.host_config.restart_policy = Some(p);
        });
    }
    d.container_event(&c.snapshot(), "update", &[]);
    Ok(ok_json(&json!({"Warnings": warnings})))
}

fn wait(d: &Arc<Daemon>, ctx: &Ctx, c: Arc<crate::state::Container>) -> ApiResult<Resp> {
    let cond = WaitCondition::parse(ctx.query.get("condition"))?;
    let (resp, tx) = streamed(StatusCode::OK, "application/json");
    let d = d.clone();
    tokio::spawn(async move {
        let code = tokio::select! {
            code = lifecycle::wait(&d, &c, cond) => code,
            () = tx.closed() => return,
        };
        let mut body =
            serde_json::to_vec(&json!({"StatusCode": code, "Error": null})).unwrap_or_default();
        body.push(b'\n');
        let _ = tx.send(body.into()).await;
    });
    Ok(resp)
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn remove(d: &Arc<Daemon>, ctx: &Ctx, key: &str) -> ApiResult<Resp> {
    let c = d.find(key)?;
    lifecycle::remove(d, &c, ctx.query.flag("force", false)).await?;
    Ok(no_content(StatusCode::NO_CONTENT))
}

/// `POST /containers/prune`: removes stopped containers.
pub async fn prune(d: &Arc<Daemon>, ctx: &Ctx) -> ApiResult<Resp> {
    let filters = ctx.query.filters()?;
    let mut deleted = Vec::new();
    for c in d.containers() {
        let r = c.snapshot();
        if matches!(
            r.state.status,
            Status::Exited | Status::Created | Status::Dead
        ) && labels_match(
            &filters,
            &r.config
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        ) && lifecycle::remove(d, &c, false).await.is_ok()
        {
            deleted.push(r.id);
        }
    }
    Ok(ok_json(
        &json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0}),
    ))
}

/// `GET /containers/{id}/logs`.
pub fn logs(d: &Arc<Daemon>, ctx: &Ctx, key: &str) -> ApiResult<Resp> {
    super::logs::logs(d, ctx, key)
}

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(d: &Arc<Daemon>, ctx: &Ctx, key: &str) -> ApiResult<Resp> {
    let c = d.find(key)?;
    if !c.status().is_live() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let state = d
        .engine
        .root()
        .read(&c.id)
        .map_err(|e| ApiError::internal(crate::http::error::chain(&e)))?;
    let pids: std::collections::HashSet<String> = berth_runtime::lifecycle::processes(&state)
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    let args = ctx
        .query
        .get("ps_args")
        .filter(|a| !a.is_empty())
        .unwrap_or("-ef");
    if args.len() > 256
        || args
            .chars()
            .any(|ch| !(ch.is_ascii_alphanumeric() || " -,=".contains(ch)))
    {
        return Err(ApiError::bad_request(format!("invalid ps_args {args:?}")));
    }
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .output()
        .await
        .map_err(|e| ApiError::internal(format!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(ApiError::internal(format!(
            "ps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_col = header
        .iter()
        .position(|h| h == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let procs: Vec<Vec<String>> = lines
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if !pids.contains(*fields.get(pid_col)?) {
                return None;
            }
            let n = header.len();
            let mut row: Vec<String> = fields[..n - 1].iter().map(|s| (*s).to_string()).collect();
            row.push(fields[n - 1..].join(" "));
            Some(row)
        })
        .collect();
    Ok(ok_json(&json!({"Titles": header, "Processes": procs})))
}

/// `GET /containers/{id}/stats?stream=`.
pub async fn stats(d: &Arc<Daemon>, ctx: &Ctx, key: &str) -> ApiResult<Resp> {
    super::stats::stats(d, ctx, key).await
}
