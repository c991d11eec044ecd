//! Image endpoints: list, pull (`/images/create`), inspect, history, tag, remove, prune.
//! Image names may hold slashes (`localhost:5000/team/app:v1`), so the name is everything
//! between `/images/` and the action.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_image::image::ImageConfig;
use berth_image::{ImageRecord, Store};
use berth_registry::progress::{Event, Progress};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::http::body::{json as json_resp, ok_json, streamed, Resp};
use crate::http::query::labels_match;
use crate::http::{no_route, ApiError, ApiResult, Ctx};
use crate::state::Daemon;

/// Routes `/images/...`.
pub async fn route(
    d: &Arc<Daemon>,
    ctx: &Ctx,
    rest: &[&str],
    req: Request<Incoming>,
) -> ApiResult<Resp> {
    let get = ctx.method == hyper::Method::GET;
    let post = ctx.method == hyper::Method::POST;
    let delete = ctx.method == hyper::Method::DELETE;
    match rest {
        ["json"] if get => list(d, ctx),
        ["create"] if post => pull(d, ctx).await,
        ["prune"] if post => prune(d).await,
        ["search"] if get => search(ctx).await,
        ["get"] if get => {
            let names: Vec<String> = ctx
                .query
                .all("names")
                .iter()
                .map(|s| (*s).to_string())
                .collect();
            super::image_archive::save(d, &names)
        }
        ["load"] if post => super::image_archive::load(d, ctx, req).await,
        [name @ .., "get"] if get && !name.is_empty() => {
            super::image_archive::save(d, &[name.join("/")])
        }
        [name @ .., "json"] if get && !name.is_empty() => inspect(d, &name.join("/")),
        [name @ .., "history"] if get && !name.is_empty() => history(d, &name.join("/")),
        [name @ .., "tag"] if post && !name.is_empty() => tag(d, ctx, &name.join("/")),
        [name @ .., "push"] if post && !name.is_empty() => {
            drop(req);
            push(d, ctx, &name.join("/"))
        }
        name if delete && !name.is_empty() => remove(d, ctx, &name.join("/")).await,
        _ => Err(no_route(ctx)),
    }
}

fn store(d: &Daemon) -> ApiResult<Store> {
    d.engine.open_store().map_err(ApiError::from)
}

/// The image's ID as docker shows it (`sha256:` of its config).
fn image_id(r: &ImageRecord) -> &str {
    &r.config
}

/// Every image record: the named ones, then the untagged ones (a build without `-t`),
/// whose `name` is empty.
fn all_records(store: &Store) -> ApiResult<Vec<ImageRecord>> {
    store.all_images().map_err(ApiError::from)
}

/// Finds an image by name, `sha256:ID`, or ID prefix; every name of it (none for an
/// untagged image).
pub fn find(store: &Store, name: &str) -> ApiResult<(ImageRecord, Vec<String>)> {
    let all = all_records(store)?;
    let names_of = |id: &str| -> Vec<String> {
        all.iter()
            .filter(|r| image_id(r) == id && !r.name.is_empty())
            .map(|r| r.name.clone())
            .collect()
    };
    // As given, or by familiar form (the CLI sends `docker.io/library/app:v1` for `app:v1`).
    let familiar = |n: &str| {
        berth_registry::Reference::parse(n)
            .ok()
            .map(|r| r.familiar())
    };
    let wanted = familiar(name);
    if let Ok(n) = berth_image::store::normalize_name(name) {
        let hit = all
            .iter()
            .find(|r| !r.name.is_empty() && r.name == n)
            .or_else(|| {
                wanted
                    .as_ref()
                    .and_then(|w| all.iter().find(|r| familiar(&r.name).as_ref() == Some(w)))
            });
        if let Some(r) = hit {
            return Ok((r.clone(), names_of(image_id(r))));
        }
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut ids: Vec<&str> = all
            .iter()
            .map(image_id)
            .filter(|id| id.trim_start_matches("sha256:").starts_with(hex))
            .collect();
        ids.dedup();
        ids.sort_unstable();
        ids.dedup();
        match ids.len() {
            1 => {
                // A named record if there is one; an untagged one goes by its ID, which
                // every store call accepts as a name.
                let r = all.iter().find(|r| image_id(r) == ids[0]).expect("found");
                let r = berth_engine::images::by_id_if_untagged(r.clone());
                return Ok((r, names_of(ids[0])));
            }
            0 => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "image ID prefix {name:?} is ambiguous"
                )))
            }
        }
    }
    Err(ApiError::not_found(format!("No such image: {name}")))
}

fn config_of(store: &Store, r: &ImageRecord) -> ApiResult<ImageConfig> {
    store.image_config(r).map_err(ApiError::from)
}

fn created_of(cfg: &ImageConfig) -> String {
    cfg.created()
        .clone()
        .unwrap_or_else(|| crate::time::ZERO.into())
}

fn size_of(r: &ImageRecord) -> i64 {
    r.layers.iter().map(|l| l.size as i64).sum()
}

fn repo_digests(names: &[String], r: &ImageRecord) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| {
            let repo = n
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or(n.as_str(), |(r, _)| r);
            format!("{repo}@{}", r.manifest)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn labels_of(cfg: &ImageConfig) -> BTreeMap<String, String> {
    cfg.config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default()
}

/// Every image as `/images/json` lists it (one entry per ID, with all its names).
pub fn summaries(d: &Daemon) -> ApiResult<Vec<Value>> {
    let store = store(d)?;
    let all = all_records(&store)?;
    let mut by_id: BTreeMap<String, (ImageRecord, Vec<String>)> = BTreeMap::new();
    for r in all {
        let names = &mut by_id
            .entry(r.config.clone())
            .or_insert_with(|| (r.clone(), Vec::new()))
            .1;
        if !r.name.is_empty() {
            names.push(r.name.clone());
        }
    }
    let mut out = Vec::new();
    for (id, (r, mut names)) in by_id {
        names.sort();
        let cfg = config_of(&store, &r).ok();
        let created = cfg
            .as_ref()
            .map_or(0, |c| crate::time::unix_seconds(&created_of(c)));
        let labels = cfg.as_ref().map(labels_of).unwrap_or_default();
        let containers = d
            .containers()
            .iter()
            .filter(|c| c.snapshot().image_id == id)
            .count();
        out.push(json!({
            "Id": id,
            "ParentId": "",
            "RepoTags": names,
            "RepoDigests": repo_digests(&names, &r),
            "Created": created,
            "Size": size_of(&r),
            "SharedSize": -1,
            "VirtualSize": size_of(&r),
            "Labels": labels,
            "Containers": containers,
        }));
    }
    Ok(out)
}

fn list(d: &Daemon, ctx: &Ctx) -> ApiResult<Resp> {
    let filters = ctx.query.filters()?;
    let mut images = summaries(d)?;
    if let Some(refs) = filters.get("reference") {
        images.retain(|i| {
            i["RepoTags"].as_array().is_some_and(|tags| {
                tags.iter().filter_map(Value::as_str).any(|t| {
                    refs.iter().any(|want| {
                        t == want
                            || t.rsplit_once(':').is_some_and(|(repo, _)| repo == want)
                            || glob_match(want, t)
                    })
                })
            })
        });
    }
    if filters.contains_key("label") {
        images.retain(|i| {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(i["Labels"].clone()).unwrap_or_default();
            labels_match(&filters, &labels)
        });
    }
    if filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| x == "true"))
    {
        images.retain(|i| i["RepoTags"].as_array().is_none_or(Vec::is_empty));
    }
    images.sort_by_key(|i| std::cmp::Reverse(i["Created"].as_i64().unwrap_or(0)));
    Ok(ok_json(&images))
}

/// `*` matches any run of characters except `/` (docker's reference filter).
fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p) && !rest[..rest.len() - p.len()].contains('/');
        } else {
            let Some(pos) = rest.find(p) else {
                return false;
            };
            if rest[..pos].contains('/') {
                return false;
            }
            rest = &rest[pos + p.len()..];
        }
    }
    rest.is_empty()
}

/// The image config's `Config` in docker's shape.
pub fn docker_config(cfg: &ImageConfig) -> Value {
    let c = cfg.config().clone().unwrap_or_default();
    let set = |v: Option<Vec<String>>| -> Value {
        v.map_or(Value::Null, |list| {
            Value::Object(list.into_iter().map(|k| (k, json!({}))).collect())
        })
    };
    json!({
        "Hostname": "", "Domainname": "", "User": c.user().clone().unwrap_or_default(),
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "ExposedPorts": set(c.exposed_ports().clone()),
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": c.env().clone(), "Cmd": c.cmd().clone(), "Image": "",
        "Volumes": set(c.volumes().clone()),
        "WorkingDir": c.working_dir().clone().unwrap_or_default(),
        "Entrypoint": c.entrypoint().clone(), "OnBuild": null,
        "Labels": c.labels().clone(),
        "StopSignal": c.stop_signal().clone(),
    })
}

fn inspect(d: &Daemon, name: &str) -> ApiResult<Resp> {
    let store = store(d)?;
    let (r, mut names) = find(&store, name)?;
    names.sort();
    let cfg = config_of(&store, &r)?;
    let diff_ids: Vec<String> = r.layers.iter().map(|l| l.diff_id.clone()).collect();
    Ok(ok_json(&json!({
        "Id": r.config,
        "RepoTags": names,
        "RepoDigests": repo_digests(&names, &r),
        "Parent": "",
        "Comment": "",
        "Created": created_of(&cfg),
        "DockerVersion": "",
        "Author": cfg.author().clone().unwrap_or_default(),
        "Config": docker_config(&cfg),
        "Architecture": cfg.architecture().to_string(),
        "Os": cfg.os().to_string(),
        "Size": size_of(&r),
        "VirtualSize": size_of(&r),
        "GraphDriver": {"Name": "overlay2", "Data": null},
        "RootFS": {"Type": "layers", "Layers": diff_ids},
        "Metadata": {"LastTagTime": crate::time::ZERO},
    })))
}

fn history(d: &Daemon, name: &str) -> ApiResult<Resp> {
    let store = store(d)?;
    let (r, names) = find(&store, name)?;
    let cfg = config_of(&store, &r)?;
    let mut layers = r.layers.iter().rev();
    let mut out: Vec<Value> = Vec::new();
    let history = cfg.history().clone().unwrap_or_default();
    for (i, h) in history.iter().enumerate().rev() {
        let empty = h.empty_layer().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers.next().map_or(0, |l| l.size as i64)
        };
        out.push(json!({
            "Id": if i + 1 == history.len() { r.config.clone() } else { "<missing>".into() },
            "Created": h.created().as_deref().map_or(0, crate::time::unix_seconds),
            "CreatedBy": h.created_by().clone().unwrap_or_default(),
            "Tags": if i + 1 == history.len() { json!(names) } else { Value::Null },
            "Size": size,
            "Comment": h.comment().clone().unwrap_or_default(),
        }));
    }
    Ok(ok_json(&out))
}

fn tag(d: &Daemon, ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    let repo = ctx
        .query
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("repository name must have at least one component"))?;
    let tag = ctx
        .query
        .get("tag")
        .filter(|t| !t.is_empty())
        .unwrap_or("latest");
    // Stored under its familiar name, as pulls are (`docker.io/library/app:v1` is `app:v1`).
    let dst = berth_registry::Reference::parse(&format!("{repo}:{tag}"))
        .map_err(|e| ApiError::bad_request(crate::http::error::chain(&e)))?
        .familiar();
    let store = store(d)?;
    let (r, _) = find(&store, name)?;
    store.tag_image(&r.name, &dst).map_err(ApiError::from)?;
    d.events.emit(
        "image",
        "tag",
        &r.config,
        BTreeMap::from([("name".to_string(), dst)]),
    );
    Ok(crate::http::body::no_content(StatusCode::CREATED))
}

async fn remove(d: &Arc<Daemon>, ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    let force = ctx.query.flag("force", false);
    let store = store(d)?;
    let (r, names) = find(&store, name)?;
    let by_id = name
        .trim_start_matches("sha256:")
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        && !names
            .iter()
            .any(|n| berth_image::store::normalize_name(name).is_ok_and(|x| &x == n));
    let targets: Vec<String> = if by_id {
        names.clone()
    } else {
        vec![r.name.clone()]
    };
    if by_id && names.len() > 1 && !force {
        return Err(ApiError::conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            &r.config.trim_start_matches("sha256:")[..12]
        )));
    }
    let last = targets.len() == names.len();
    if last {
        if let Some(c) = d
            .containers()
            .iter()
            .find(|c| c.snapshot().image_id == r.config)
        {
            let live = c.status().is_live();
            if live || !force {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                    &c.id[..12],
                    &r.config.trim_start_matches("sha256:")[..12]
                )));
            }
        }
    }
    let mut out = Vec::new();
    if names.is_empty() {
        // An untagged image (a build without -t): removed by its ID.
        let engine = d.engine.clone();
        let id = r.config.clone();
        tokio::task::spawn_blocking(move || -> ApiResult<()> {
            let digest = berth_image::Digest::parse(&id).map_err(ApiError::from)?;
            engine.open_store()?.remove_untagged(&digest)?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    }
    for t in &targets {
        let engine = d.engine.clone();
        let t2 = t.clone();
        tokio::task::spawn_blocking(move || -> ApiResult<()> {
            engine.open_store()?.remove_image(&t2)?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        out.push(json!({"Untagged": t}));
        d.events.emit(
            "image",
            "untag",
            &r.config,
            BTreeMap::from([("name".to_string(), t.clone())]),
        );
    }
    if last {
        out.push(json!({"Deleted": r.config}));
        d.events.emit(
            "image",
            "delete",
            &r.config,
            BTreeMap::from([("name".to_string(), r.name.clone())]),
        );
    }
    Ok(ok_json(&out))
}

/// `image prune`: untagged images no container uses (docker's dangling images), then
/// what no image uses any more.
async fn prune(d: &Arc<Daemon>) -> ApiResult<Resp> {
    let engine = d.engine.clone();
    let in_use: std::collections::BTreeSet<String> = d
        .containers()
        .iter()
        .map(|c| c.snapshot().image_id)
        .collect();
    let (deleted, report) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let store = engine.open_store()?;
        let mut deleted = Vec::new();
        for r in store.untagged_images()? {
            if in_use.contains(&r.config) {
                continue;
            }
            let digest = berth_image::Digest::parse(&r.config)?;
            store.remove_untagged(&digest)?;
            deleted.push(json!({"Deleted": r.config}));
        }
        Ok((deleted, engine.prune_images()?))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    for v in &deleted {
        if let Some(id) = v["Deleted"].as_str() {
            d.events.emit("image", "delete", id, BTreeMap::new());
        }
    }
    let deleted = if deleted.is_empty() {
        Value::Null
    } else {
        Value::Array(deleted)
    };
    Ok(ok_json(&json!({
        "ImagesDeleted": deleted,
        "SpaceReclaimed": 0,
        "LayersDeleted": report.stats.layers,
    })))
}

/// A blob's progress: bytes so far, its size, bytes at the last line printed.
type BlobProgress = (u64, Option<u64>, u64);

/// Renders pull progress as docker's JSON lines.
struct JsonProgress {
    tx: mpsc::Sender<Bytes>,
    state: std::sync::Mutex<BTreeMap<String, BlobProgress>>,
}

fn short(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.extend_from_slice(b"\r\n");
    Bytes::from(b)
}

impl Progress for JsonProgress {
    fn event(&self, event: &Event<'_>) {
        let msg = match *event {
            Event::Resolved {
                reference,
                digest: _,
            } => {
                let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
                json!({"status": format!("Pulling from {repo}"), "id": tag})
            }
            Event::Fetching { digest, size } => {
                self.state
                    .lock()
                    .expect("lock")
                    .insert(digest.to_string(), (0, size, 0));
                json!({"status": "Pulling fs layer", "progressDetail": {}, "id": short(digest)})
            }
            Event::Bytes { digest, bytes } => {
                let mut st = self.state.lock().expect("lock");
                let e = st.entry(digest.to_string()).or_insert((0, None, 0));
                e.0 += bytes;
                if e.0 - e.2 < 256 * 1024 {
                    return;
                }
                e.2 = e.0;
                let (current, total) = (e.0, e.1);
                drop(st);
                json!({"status": "Downloading", "progressDetail": {"current": current, "total": total},
                       "id": short(digest)})
            }
            Event::Done { digest } => {
                let _ = self.tx.blocking_send(line(
                    &json!({"status": "Download complete", "progressDetail": {}, "id": short(digest)}),
                ));
                json!({"status": "Pull complete", "progressDetail": {}, "id": short(digest)})
            }
            _ => return,
        };
        let _ = self.tx.blocking_send(line(&msg));
    }
}

/// The registry client options for a reference, with the client's `X-Registry-Auth`.
fn client_options(ctx: &Ctx) -> berth_registry::ClientOptions {
    let mut opts = berth_registry::ClientOptions::default();
    if let Some(header) = ctx.header("X-Registry-Auth") {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::URL_SAFE
            .decode(header.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(header.trim()))
            .ok();
        if let Some(v) = decoded.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
            let user = v["username"].as_str().unwrap_or("");
            let pass = v["password"].as_str().unwrap_or("");
            if !user.is_empty() {
                opts.credentials = Some(berth_registry::Credentials {
                    username: user.to_string(),
                    password: pass.to_string(),
                });
            }
        }
    }
    opts
}

fn pull_status(e: &berth_registry::Error) -> StatusCode {
    match e {
        berth_registry::Error::Reference { .. } => StatusCode::BAD_REQUEST,
        berth_registry::Error::Registry {
            status: 401 | 403 | 404,
            ..
        }
        | berth_registry::Error::Auth { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `/images/create?fromImage=&tag=`: pulls, streaming docker's progress lines. An error
/// before any progress is the response's status; after, an `error` line.
async fn pull(d: &Arc<Daemon>, ctx: &Ctx) -> ApiResult<Resp> {
    if ctx.query.get("fromSrc").is_some() {
        return Err(ApiError::not_implemented("image import (fromSrc)"));
    }
    let from = ctx
        .query
        .get("fromImage")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    let tag = ctx.query.get("tag").unwrap_or("");
    let full = if tag.is_empty() {
        from.to_string()
    } else if tag.starts_with("sha256:") {
        format!("{from}@{tag}")
    } else {
        format!("{from}:{tag}")
    };
    let reference = berth_registry::Reference::parse(&full)
        .map_err(|e| ApiError::bad_request(crate::http::error::chain(&e)))?;
    let opts = client_options(ctx);
    let store = store(d)?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let progress = Arc::new(JsonProgress {
        tx: tx.clone(),
        state: std::sync::Mutex::new(BTreeMap::new()),
    });
    let familiar = reference.familiar();
    let job = tokio::task::spawn_blocking(move || {
        let client = berth_registry::client_for(&reference, opts)?;
        berth_registry::pull::pull(
            &client,
            &store,
            &reference,
            &berth_registry::pull::PullOptions::default(),
            progress,
        )
    });
    drop(tx);
    // Wait for the first progress line or the end.
    let first = rx.recv().await;
    let Some(first) = first else {
        let report = job
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::new(pull_status(&e), crate::http::error::chain(&e)))?;
        let (resp, out) = streamed(StatusCode::OK, "application/json");
        let _ = out
            .send(line(
                &json!({"status": format!("Digest: {}", report.digest)}),
            ))
            .await;
        let _ = out
            .send(line(
                &json!({"status": format!("Status: Image is up to date for {familiar}")}),
            ))
            .await;
        return Ok(resp);
    };
    let (resp, out) = streamed(StatusCode::OK, "application/json");
    let d = d.clone();
    tokio::spawn(async move {
        let _ = out.send(first).await;
        while let Some(b) = rx.recv().await {
            let _ = out.send(b).await;
        }
        match joined(job.await) {
            Ok(report) => {
                let fetched = report.stats.blobs_fetched > 0;
                let _ = out
                    .send(line(
                        &json!({"status": format!("Digest: {}", report.digest)}),
                    ))
                    .await;
                let status = if fetched {
                    format!("Status: Downloaded newer image for {familiar}")
                } else {
                    format!("Status: Image is up to date for {familiar}")
                };
                let _ = out.send(line(&json!({"status": status}))).await;
                d.events.emit(
                    "image",
                    "pull",
                    &familiar,
                    BTreeMap::from([("name".to_string(), familiar.clone())]),
                );
            }
            Err(m) => {
                let _ = out.send(error_line(&m)).await;
            }
        }
    });
    Ok(resp)
}

/// docker's error line in a progress stream (once the 200 has gone out).
fn error_line(message: &str) -> Bytes {
    line(&json!({"errorDetail": {"message": message}, "error": message}))
}

/// A registry job's result, its error (or the task's) as the message the client prints.
fn joined<T>(r: Result<berth_registry::Result<T>, tokio::task::JoinError>) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(crate::http::error::chain(&e)),
        Err(e) => Err(e.to_string()),
    }
}

/// 201 with JSON (used by create endpoints).
pub fn created(value: &Value) -> Resp {
    json_resp(StatusCode::CREATED, value)
}

/// `GET /images/search?term=REGISTRY/TERM&limit=`: the repositories of a registry's catalog
/// whose names hold TERM. Only registry-qualified terms are answered (the catalog is the
/// distribution API's; Docker Hub's search service is not spoken here).
async fn search(ctx: &Ctx) -> ApiResult<Resp> {
    let term = ctx
        .query
        .get("term")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("term is required"))?
        .to_string();
    let limit = ctx.query.int("limit")?.unwrap_or(25).clamp(1, 100) as usize;
    let (registry, needle) = match term.split_once('/') {
        Some((r, rest)) if r.contains('.') || r.contains(':') || r == "localhost" => {
            (r.to_string(), rest.to_string())
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "search {term:?}: give a registry-qualified term (REGISTRY/NAME); berthd searches a registry's catalog"
            )))
        }
    };
    let opts = client_options(ctx);
    let reg = registry.clone();
    let repos = tokio::task::spawn_blocking(move || {
        let client = berth_registry::Client::new(&reg, opts)?;
        berth_registry::catalog::catalog(&client, berth_registry::catalog::MAX_ENTRIES)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::new(pull_status(&e), crate::http::error::chain(&e)))?;
    let out: Vec<Value> = repos
        .into_iter()
        .filter(|r| r.contains(needle.as_str()))
        .take(limit)
        .map(|r| {
            json!({"name": format!("{registry}/{r}"), "description": "", "star_count": 0,
                   "is_official": false, "is_automated": false})
        })
        .collect();
    Ok(ok_json(&out))
}

/// Renders push progress as docker's JSON lines.
struct PushProgress {
    tx: mpsc::Sender<Bytes>,
}

impl Progress for PushProgress {
    fn event(&self, event: &Event<'_>) {
        let msg = match *event {
            Event::Uploading { digest, size } => {
                json!({"status": "Pushing", "progressDetail": {"current": 0, "total": size}, "id": short(digest)})
            }
            Event::Done { digest } => {
                json!({"status": "Pushed", "progressDetail": {}, "id": short(digest)})
            }
            Event::Exists { digest } => {
                json!({"status": "Layer already exists", "progressDetail": {}, "id": short(digest)})
            }
            Event::Mounted { digest, from } => {
                json!({"status": format!("Mounted from {from}"), "progressDetail": {}, "id": short(digest)})
            }
            _ => return,
        };
        let _ = self.tx.blocking_send(line(&msg));
    }
}

/// `POST /images/{name}/push?tag=`: pushes the stored image to the registry its name names,
/// streaming docker's progress lines; errors after the first line are `error` lines.
fn push(d: &Arc<Daemon>, ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    let tag = ctx.query.get("tag").filter(|t| !t.is_empty());
    let full = match tag {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let reference = berth_registry::Reference::parse(&full)
        .map_err(|e| ApiError::bad_request(crate::http::error::chain(&e)))?;
    let local = reference.familiar();
    let store = store(d)?;
    store.image(&local).map_err(|_| {
        ApiError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            reference.familiar_repository()
        ))
    })?;
    let opts = client_options(ctx);
    let (resp, out) = streamed(StatusCode::OK, "application/json");
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let progress: Arc<dyn Progress> = Arc::new(PushProgress { tx });
    let repo_line = format!(
        "The push refers to repository [{}]",
        reference.familiar_repository()
    );
    let tag_name = reference.tag.clone().unwrap_or_else(|| "latest".into());
    let d = d.clone();
    tokio::spawn(async move {
        let _ = out.send(line(&json!({"status": repo_line}))).await;
        let job = tokio::task::spawn_blocking(move || {
            let client = berth_registry::client_for(&reference, opts)?;
            let report = berth_registry::push::push(
                &client,
                &store,
                &local,
                &reference,
                &berth_registry::push::PushOptions::default(),
                &progress,
            );
            drop(progress);
            report
        });
        while let Some(b) = rx.recv().await {
            let _ = out.send(b).await;
        }
        match joined(job.await) {
            Ok(report) => {
                let digest = report.digest.to_string();
                let _ = out
                    .send(line(
                        &json!({"status": format!("{tag_name}: digest: {digest} size: 0")}),
                    ))
                    .await;
                let _ = out
                    .send(line(&json!({"progressDetail": {}, "aux": {"Tag": tag_name, "Digest": digest, "Size": 0}})))
                    .await;
                d.events.emit(
                    "image",
                    "push",
                    &full,
                    BTreeMap::from([("name".to_string(), full.clone())]),
                );
            }
            Err(m) => {
                let _ = out.send(error_line(&m)).await;
            }
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_globs() {
        assert!(glob_match("busy*", "busybox:latest"));
        assert!(!glob_match("busy*", "x/busybox:latest"));
        assert!(glob_match("*:latest", "busybox:latest"));
        assert!(!glob_match("busybox", "busybox"));
    }
}
