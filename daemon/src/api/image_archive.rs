//! `docker save` and `docker load`: `GET /images/get?names=` writes a docker-archive (the
//! images' configs, their layer blobs as stored, `manifest.json`, `repositories`);
//! `POST /images/load` imports one (bounded upload, the store's importer and its limits).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::archive::{max_upload, spool};
use crate::http::body::{streamed, BodyWriter, Resp};
use crate::http::{ApiError, ApiResult, Ctx};
use crate::state::Daemon;

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
}

/// `GET /images/get?names=A&names=B` (and `GET /images/{name}/get`).
pub fn save(d: &Arc<Daemon>, names: &[String]) -> ApiResult<Resp> {
    if names.is_empty() {
        return Err(ApiError::bad_request("names is required"));
    }
    let store = d.engine.open_store()?;
    let mut images = Vec::new();
    for n in names {
        let (r, _) = super::images::find(&store, n)?;
        images.push((n.clone(), r));
    }
    let (resp, tx) = streamed(StatusCode::OK, "application/x-tar");
    tokio::task::spawn_blocking(move || {
        let res = (|| -> std::io::Result<()> {
            let mut b = tar::Builder::new(BodyWriter(tx));
            let mut manifest = Vec::new();
            let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            let mut written = std::collections::BTreeSet::new();
            for (asked, r) in &images {
                let other = |e: berth_image::Error| std::io::Error::other(e.to_string());
                let cfg_digest = berth_image::Digest::parse(&r.config).map_err(other)?;
                let cfg_name = format!("{}.json", cfg_digest.hex());
                if written.insert(cfg_name.clone()) {
                    let bytes = std::fs::read(store.blob_path(&cfg_digest))?;
                    append_bytes(&mut b, &cfg_name, &bytes)?;
                }
                let mut layers = Vec::new();
                for l in &r.layers {
                    let d = berth_image::Digest::parse(&l.blob).map_err(other)?;
                    let name = format!("{}/layer.tar", d.hex());
                    if written.insert(name.clone()) {
                        let mut f = store.open_blob(&d).map_err(other)?;
                        let mut h = tar::Header::new_gnu();
                        h.set_mode(0o644);
                        h.set_size(f.metadata()?.len());
                        h.set_entry_type(tar::EntryType::Regular);
                        b.append_data(&mut h, &name, &mut f)?;
                    }
                    layers.push(name);
                }
                let tags: Vec<String> =
                    if asked.contains(':') || !asked.bytes().all(|c| c.is_ascii_hexdigit()) {
                        vec![r.name.clone()]
                    } else {
                        Vec::new()
                    };
                for t in &tags {
                    if let Some((repo, tag)) = t.rsplit_once(':') {
                        repositories
                            .entry(repo.to_string())
                            .or_default()
                            .insert(tag.to_string(), cfg_digest.hex().to_string());
                    }
                }
                manifest.push(json!({"Config": cfg_name, "RepoTags": tags, "Layers": layers}));
            }
            append_bytes(&mut b, "manifest.json", &serde_json::to_vec(&manifest)?)?;
            append_bytes(&mut b, "repositories", &serde_json::to_vec(&repositories)?)?;
            b.finish()
        })();
        if let Err(e) = res {
            tracing::debug!("image save: {e}");
        }
    });
    Ok(resp)
}

/// `POST /images/load?quiet=`: imports a docker-archive (or OCI archive).
pub async fn load(d: &Arc<Daemon>, ctx: &Ctx, req: Request<Incoming>) -> ApiResult<Resp> {
    let _ = ctx;
    let file = spool(d, req.into_body(), max_upload()).await?;
    let engine = d.engine.clone();
    let records =
        tokio::task::spawn_blocking(move || -> ApiResult<Vec<berth_image::ImageRecord>> {
            use std::os::fd::AsRawFd;
            let store = engine.open_store()?;
            let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            let recs = store
                .import_docker_archive(&path, &berth_image::ImportOptions::default())
                .map_err(|e| ApiError::bad_request(crate::http::error::chain(&e)))?;
            drop(file);
            Ok(recs)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let (resp, tx) = streamed(StatusCode::OK, "application/json");
    let lines: Vec<Bytes> = records
        .iter()
        .map(|r| {
            d.events.emit(
                "image",
                "load",
                &r.config,
                BTreeMap::from([("name".to_string(), r.name.clone())]),
            );
            let mut v =
                serde_json::to_vec(&json!({"stream": format!("Loaded image: {}\n", r.name)}))
                    .unwrap_or_default();
            v.extend_from_slice(b"\r\n");
            Bytes::from(v)
        })
        .collect();
    tokio::spawn(async move {
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}
