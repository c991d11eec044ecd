//! Volume endpoints (the `local` driver): create, list, inspect, remove, prune. A volume is a
//! directory `<data-root>/berthd/volumes/<name>/_data`, made on first use by a container
//! (`-v NAME:/path`) or by `docker volume create`; its labels live beside it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::create::{volume_path, volumes_dir};
use crate::http::body::{json_body, no_content, ok_json, Resp};
use crate::http::query::labels_match;
use crate::http::{no_route, ApiError, ApiResult, Ctx};
use crate::state::record::ContainerRecord;
use crate::state::Daemon;

/// Routes `/volumes/...`.
pub async fn route(
    d: &Arc<Daemon>,
    ctx: &Ctx,
    rest: &[&str],
    req: Request<Incoming>,
) -> ApiResult<Resp> {
    let m = &ctx.method;
    match rest {
        [] if m == hyper::Method::GET => list(d, ctx),
        ["create"] if m == hyper::Method::POST => create(d, req).await,
        ["prune"] if m == hyper::Method::POST => prune(d, ctx),
        [name] if m == hyper::Method::GET => inspect(d, name),
        [name] if m == hyper::Method::DELETE => remove(d, ctx, name),
        _ => Err(no_route(ctx)),
    }
}

fn labels_path(d: &Daemon, name: &str) -> PathBuf {
    volumes_dir(d).join(name).join("labels.json")
}

fn labels_of(d: &Daemon, name: &str) -> BTreeMap<String, String> {
    std::fs::read(labels_path(d, name))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Whether container `r` uses volume `name`.
fn uses(r: &ContainerRecord, name: &str) -> bool {
    r.host_config
        .binds
        .iter()
        .flatten()
        .any(|b| b.split(':').next() == Some(name))
        || r.host_config
            .mounts
            .iter()
            .flatten()
            .any(|m| m.source.as_deref() == Some(name))
}

fn users(d: &Daemon, name: &str) -> Vec<String> {
    d.containers()
        .iter()
        .map(|c| c.snapshot())
        .filter(|r| uses(r, name))
        .map(|r| r.id)
        .collect()
}

fn describe(d: &Daemon, name: &str) -> Value {
    let dir = volumes_dir(d).join(name);
    let created = std::fs::metadata(&dir)
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .map_or_else(|_| crate::time::ZERO.to_string(), crate::time::rfc3339);
    json!({
        "Name": name,
        "Driver": "local",
        "Mountpoint": dir.join("_data"),
        "CreatedAt": created,
        "Labels": labels_of(d, name),
        "Scope": "local",
        "Options": {},
    })
}

fn names(d: &Daemon) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(volumes_dir(d))
        .map(|r| {
            r.flatten()
                .filter(|e| e.path().join("_data").is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn list(d: &Daemon, ctx: &Ctx) -> ApiResult<Resp> {
    let f = ctx.query.filters()?;
    let vols: Vec<Value> = names(d)
        .into_iter()
        .filter(|n| {
            f.get("name")
                .is_none_or(|v| v.iter().any(|x| n.contains(x.as_str())))
        })
        .filter(|n| {
            f.get("dangling").is_none_or(|v| {
                v.iter()
                    .any(|x| (x == "true" || x == "1") == users(d, n).is_empty())
            })
        })
        .filter(|n| labels_match(&f, &labels_of(d, n)))
        .map(|n| describe(d, &n))
        .collect();
    Ok(ok_json(&json!({"Volumes": vols, "Warnings": []})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    driver: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

async fn create(d: &Arc<Daemon>, req: Request<Incoming>) -> ApiResult<Resp> {
    let body: Option<CreateBody> = json_body(req.into_body()).await?;
    let body = body.unwrap_or_default();
    if let Some(driver) = body
        .driver
        .as_deref()
        .filter(|x| !x.is_empty() && *x != "local")
    {
        return Err(ApiError::bad_request(format!(
            "volume driver {driver:?} is not supported by berthd (local only)"
        )));
    }
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(crate::state::record::new_id);
    volume_path(d, &name)?;
    if let Some(labels) = body.labels.filter(|l| !l.is_empty()) {
        let bytes = serde_json::to_vec(&labels).map_err(|e| ApiError::internal(e.to_string()))?;
        berth_sys::fs::write_atomic(
            &labels_path(d, &name),
            &bytes,
            0o600,
            berth_sys::fs::Durability::Durable,
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    d.events.emit(
        "volume",
        "create",
        &name,
        BTreeMap::from([("driver".to_string(), "local".to_string())]),
    );
    Ok(super::images::created(&describe(d, &name)))
}

fn inspect(d: &Daemon, name: &str) -> ApiResult<Resp> {
    if !names(d).iter().any(|n| n == name) {
        return Err(ApiError::not_found(format!("get {name}: no such volume")));
    }
    Ok(ok_json(&describe(d, name)))
}

fn remove_volume(d: &Daemon, name: &str) -> ApiResult<()> {
    let dir = volumes_dir(d).join(name);
    std::fs::remove_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    d.events.emit("volume", "destroy", name, BTreeMap::new());
    Ok(())
}

fn remove(d: &Daemon, ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    if !names(d).iter().any(|n| n == name) {
        if ctx.query.flag("force", false) {
            return Ok(no_content(StatusCode::NO_CONTENT));
        }
        return Err(ApiError::not_found(format!("get {name}: no such volume")));
    }
    let users = users(d, name);
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "remove {name}: volume is in use - [{}]",
            users.join(", ")
        )));
    }
    remove_volume(d, name)?;
    Ok(no_content(StatusCode::NO_CONTENT))
}

fn prune(d: &Daemon, ctx: &Ctx) -> ApiResult<Resp> {
    let f = ctx.query.filters()?;
    let all = f
        .get("all")
        .is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
    let mut deleted = Vec::new();
    for n in names(d) {
        // As docker 23+: without all=true only anonymous volumes (64-hex names) go.
        let anonymous = n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
        if (all || anonymous)
            && users(d, &n).is_empty()
            && labels_match(&f, &labels_of(d, &n))
            && remove_volume(d, &n).is_ok()
        {
            deleted.push(n);
        }
    }
    Ok(ok_json(
        &json!({"VolumesDeleted": deleted, "SpaceReclaimed": 0}),
    ))
}
