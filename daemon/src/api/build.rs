//! `POST /build`: docker's classic-builder protocol over `berth_build`. The body is the
//! context as a tar (hostile: unpacked by the layer extractor, every entry confined beneath
//! a scratch directory of the store, size bounded by `BERTHD_MAX_ARCHIVE`); the query names
//! the tags (`t`), the Dockerfile's path in the context (`dockerfile`), `buildargs`,
//! `target`, `nocache`, `labels`, `networkmode`; the response streams docker's JSON lines
//! (`{"stream": ...}`, `{"aux": {"ID": ...}}`, `{"errorDetail": ...}`). `rm` and `forcerm`
//! are what berth always does: no intermediate container outlives its step. A client that
//! goes away ends the build (its running step is killed). `POST /build/prune` drops the
//! build cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use berth_build::{BuildOptions, Ignore, Progress, Pull};
use berth_engine::NetworkMode;

use super::archive::{max_upload, spool};
use crate::http::body::{json as json_resp, streamed, Resp};
use crate::http::{ApiError, ApiResult, Ctx};
use crate::state::Daemon;

/// Sends the build's text as `{"stream": ...}` lines; the client gone is a cancellation.
struct JsonStream {
    tx: mpsc::Sender<Bytes>,
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.extend_from_slice(b"\r\n");
    Bytes::from(b)
}

impl Progress for JsonStream {
    fn stream(&mut self, text: &str) {
        let _ = self.tx.blocking_send(line(&json!({ "stream": text })));
    }

    fn cancelled(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Base images missing from the store are pulled as `docker build` pulls them
/// (anonymously, default options).
struct RegistryPull {
    engine: berth_engine::Engine,
}

impl Pull for RegistryPull {
    fn pull(&self, reference: &str, progress: &mut dyn Progress) -> Result<(), String> {
        let r = berth_registry::Reference::parse(reference)
            .map_err(|e| crate::http::error::chain(&e))?;
        progress.stream(&format!("Pulling {}\n", r.familiar()));
        let store = self.engine.open_store().map_err(|e| e.to_string())?;
        let client = berth_registry::client_for(&r, berth_registry::ClientOptions::default())
            .map_err(|e| crate::http::error::chain(&e))?;
        let silent: Arc<dyn berth_registry::progress::Progress> =
            Arc::new(berth_registry::progress::Silent);
        berth_registry::pull::pull(
            &client,
            &store,
            &r,
            &berth_registry::pull::PullOptions::default(),
            silent,
        )
        .map(|_| ())
        .map_err(|e| crate::http::error::chain(&e))
    }
}

fn json_map(ctx: &Ctx, key: &str) -> ApiResult<BTreeMap<String, String>> {
    let Some(text) = ctx.query.get(key).filter(|t| !t.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let map: BTreeMap<String, Option<String>> = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("{key}: invalid JSON: {e}")))?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

/// What the query asks for, checked before the body is read.
fn options(d: &Daemon, ctx: &Ctx) -> ApiResult<(BuildOptions, PathBuf)> {
    if ctx.query.get("version") == Some("2") {
        return Err(ApiError::bad_request(
            "BuildKit (version=2) is not supported by berthd: use the classic builder (DOCKER_BUILDKIT=0)",
        ));
    }
    if ctx.query.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::not_implemented(
            "builds from a remote context (remote=)",
        ));
    }
    let dockerfile = ctx
        .query
        .get("dockerfile")
        .filter(|f| !f.is_empty())
        .unwrap_or("Dockerfile");
    if dockerfile.contains('\0') {
        return Err(ApiError::bad_request("dockerfile contains a NUL byte"));
    }
    let network = match ctx.query.get("networkmode").unwrap_or("default") {
        "" | "default" | "bridge" => NetworkMode::Bridge,
        m @ ("none" | "host") => NetworkMode::parse(m),
        other => {
            return Err(ApiError::bad_request(format!(
                "networkmode {other:?}: expected default, bridge, none or host"
            )))
        }
    };
    let opts = BuildOptions {
        context: PathBuf::new(),
        dockerfile: String::new(),
        // The docker client applied .dockerignore before sending.
        ignore: Some(Ignore::default()),
        tags: ctx
            .query
            .all("t")
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        build_args: json_map(ctx, "buildargs")?,
        target: ctx
            .query
            .get("target")
            .filter(|t| !t.is_empty())
            .map(String::from),
        no_cache: ctx.query.flag("nocache", false),
        network,
        labels: json_map(ctx, "labels")?,
        runtime: d.config.runtime.clone(),
    };
    for t in &opts.tags {
        berth_image::store::normalize_name(t)
            .map_err(|e| ApiError::bad_request(format!("t={t:?}: {e}")))?;
    }
    Ok((opts, PathBuf::from(dockerfile)))
}

/// `POST /build`.
pub async fn build(d: &Arc<Daemon>, ctx: &Ctx, req: Request<Incoming>) -> ApiResult<Resp> {
    let (mut opts, dockerfile) = options(d, ctx)?;
    let quiet = ctx.query.flag("q", false);
    let upload = spool(d, req.into_body(), max_upload()).await?;
    let engine = d.engine.clone();
    let (resp, out) = streamed(StatusCode::OK, "application/json");
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let job = tokio::task::spawn_blocking(move || -> Result<String, String> {
        use std::os::fd::AsRawFd;
        let store = engine.open_store().map_err(|e| e.to_string())?;
        let dir = store.scratch_dir("context").map_err(|e| e.to_string())?;
        let result = (|| {
            let tar = PathBuf::from(format!("/proc/self/fd/{}", upload.as_raw_fd()));
            unpack_context(&tar, &dir)?;
            let ctx = berth_build::context::Context::open(&dir, Some(Ignore::default()))
                .map_err(|e| e.to_string())?;
            let text = ctx
                .read_small(&dockerfile, 4 << 20)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "Cannot locate specified Dockerfile: {}",
                        dockerfile.display()
                    )
                })?;
            opts.dockerfile =
                String::from_utf8(text).map_err(|_| "the Dockerfile is not UTF-8".to_string())?;
            opts.context.clone_from(&dir);
            let mut progress: Box<dyn Progress> = if quiet {
                Box::new(Quiet)
            } else {
                Box::new(JsonStream { tx: tx.clone() })
            };
            let puller = RegistryPull {
                engine: engine.clone(),
            };
            berth_build::build(&engine, &opts, Some(&puller), progress.as_mut())
                .map(|b| b.id)
                .map_err(|e| e.to_string())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    });
    let d = d.clone();
    tokio::spawn(async move {
        // The client gone (its connection closed, even while a step prints nothing):
        // dropping the receiver cancels the build, whose running step is killed.
        let forward = async {
            loop {
                tokio::select! {
                    b = rx.recv() => match b {
                        Some(b) => {
                            if out.send(b).await.is_err() {
                                return false;
                            }
                        }
                        None => return true,
                    },
                    () = out.closed() => return false,
                }
            }
        };
        let alive = forward.await;
        drop(rx);
        let result = job.await.map_err(|e| e.to_string()).and_then(|r| r);
        if !alive {
            return;
        }
        match result {
            Ok(id) => {
                let _ = out.send(line(&json!({"aux": {"ID": id}}))).await;
                if quiet {
                    let _ = out
                        .send(line(&json!({ "stream": format!("{id}\n") })))
                        .await;
                }
                d.events.emit("image", "build", &id, BTreeMap::new());
            }
            Err(m) => {
                let _ = out
                    .send(line(&json!({"errorDetail": {"message": m}, "error": m})))
                    .await;
            }
        }
    });
    Ok(resp)
}

struct Quiet;

impl Progress for Quiet {
    fn stream(&mut self, _text: &str) {}
}

/// Unpacks the context tar (plain or compressed) beneath `dir`.
fn unpack_context(tar: &Path, dir: &Path) -> Result<(), String> {
    let stream = berth_build::archive::open_tar(tar)
        .map_err(|e| format!("the build context: {e}"))?
        .ok_or_else(|| {
            "the build context is not a tar archive (plain, gzip, zstd, bzip2 or xz)".to_string()
        })?;
    berth_build::archive::unpack(stream, dir, true).map_err(|e| format!("the build context: {e}"))
}

/// `POST /build/prune`: drops the build cache.
pub async fn prune(d: &Arc<Daemon>) -> ApiResult<Resp> {
    let engine = d.engine.clone();
    let stats =
        tokio::task::spawn_blocking(move || -> ApiResult<berth_image::store::PruneStats> {
            let store = engine.open_store()?;
            Ok(store.prune_build_cache()?)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let _ = stats;
    Ok(json_resp(
        StatusCode::OK,
        &json!({"CachesDeleted": [], "SpaceReclaimed": 0}),
    ))
}
