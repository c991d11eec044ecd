//! `docker cp`: `GET`/`HEAD`/`PUT /containers/{id}/archive?path=`. Paths are resolved inside
//! the container's root with `openat2(RESOLVE_IN_ROOT)`, so no symlink in the container leads
//! out of it. An uploaded tar is hostile input: it is spooled within a size bound and laid down
//! by the layer extractor, confined beneath the target directory (Landlock), within the
//! store's extraction limits; an error names the entry.

use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use berth_sys::in_root::{self, OFlags, Resolve};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::archive_tree as tree;
use crate::http::body::{no_content, streamed, BodyWriter, Resp};
use crate::http::{ApiError, ApiResult, Ctx};
use crate::state::Daemon;

/// The largest tar `PUT` accepts (`BERTHD_MAX_ARCHIVE`, default 4 GiB).
pub fn max_upload() -> u64 {
    std::env::var("BERTHD_MAX_ARCHIVE")
        .ok()
        .and_then(|v| berth_image::extract::parse_size(&v))
        .unwrap_or(4 << 30)
}

fn path_param(ctx: &Ctx) -> ApiResult<String> {
    let p = ctx
        .query
        .get("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("path is required"))?;
    if p.contains('\0') {
        return Err(ApiError::bad_request("path contains a NUL byte"));
    }
    Ok(p.to_string())
}

/// The container's root as its processes see it: through its init while it runs (its
/// volumes and binds included), else the bundle's root filesystem.
fn rootfs(d: &Daemon, c: &crate::state::Container) -> PathBuf {
    let r = c.snapshot();
    if r.state.status.is_live() && r.state.pid > 0 {
        let p = PathBuf::from(format!("/proc/{}/root", r.state.pid));
        if p.exists() {
            return p;
        }
    }
    d.config.container_dir(&r.id).join("bundle").join("rootfs")
}

/// Opens `path` inside the container's root (the last component followed, as docker does).
fn open_in(root: &Path, path: &str, flags: OFlags) -> ApiResult<std::os::fd::OwnedFd> {
    let root_fd = std::fs::File::open(root)
        .map_err(|e| ApiError::internal(format!("the container's root: {e}")))?;
    in_root::open(root_fd.as_fd(), Path::new(path), flags, Resolve::InRoot).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::not_found(format!("Could not find the file {path} in container"))
        } else {
            ApiError::bad_request(format!("{path}: {e}"))
        }
    })
}

/// The `X-Docker-Container-Path-Stat` header: base64 of the path's stat, in Go's shapes.
fn stat_header(path: &str, st: &nix::sys::stat::FileStat, link: Option<&str>) -> String {
    use nix::sys::stat::SFlag;
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
    // Go's FileMode: the directory bit is 1<<31, the symlink bit 1<<27.
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let mut mode = u64::from(st.st_mode & 0o777);
    if kind == SFlag::S_IFDIR {
        mode |= 1 << 31;
    } else if kind == SFlag::S_IFLNK {
        mode |= 1 << 27;
    }
    // A container sets its files' mtimes: an absurd one must not overflow the addition.
    let mtime = crate::time::rfc3339(
        std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::from_secs(st.st_mtime.max(0) as u64))
            .unwrap_or(std::time::UNIX_EPOCH),
    );
    let stat = json!({"name": name, "size": st.st_size, "mode": mode, "mtime": mtime,
                      "linkTarget": link.unwrap_or("")});
    base64::engine::general_purpose::STANDARD.encode(stat.to_string())
}

/// `HEAD` and `GET /containers/{id}/archive?path=`.
pub fn get(d: &Arc<Daemon>, ctx: &Ctx, key: &str, head: bool) -> ApiResult<Resp> {
    let c = d.find(key)?;
    let path = path_param(ctx)?;
    let root = rootfs(d, &c);
    // The last component is not followed (as docker without -L): a symlink is copied as
    // one; the components before it resolve inside the container's root.
    let fd = open_in(&root, &path, OFlags::PATH | OFlags::NOFOLLOW)?;
    let fail = |e: std::io::Error| ApiError::internal(format!("{path}: {e}"));
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| fail(e.into()))?;
    let link = tree::symlink_target(&fd, &st).map_err(fail)?;
    let header = stat_header(&path, &st, link.as_deref());
    if head {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("X-Docker-Container-Path-Stat", header)
            .body(crate::http::body::empty())
            .expect("a valid response"));
    }
    let readable = match &link {
        Some(_) => None,
        None => Some(tree::reopen(&fd).map_err(fail)?),
    };
    let (mut resp, tx) = streamed(StatusCode::OK, "application/x-tar");
    resp.headers_mut().insert(
        "X-Docker-Container-Path-Stat",
        header
            .parse()
            .map_err(|_| ApiError::internal("stat header"))?,
    );
    let name = Path::new(&path)
        .file_name()
        .map_or_else(|| ".".into(), std::ffi::OsStr::to_os_string);
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(BodyWriter(tx));
        let res = match (readable, link) {
            (Some(fd), _) => tree::append(&mut b, fd, Path::new(&name)),
            (None, Some(target)) => tree::append_symlink(&mut b, &st, Path::new(&name), &target),
            (None, None) => Ok(()),
        };
        if let Err(e) = res.and_then(|()| b.finish()) {
            tracing::debug!("archive of {}: {e}", path);
        }
    });
    Ok(resp)
}

/// Writes a request body of at most `limit` bytes to an unnamed file (`O_TMPFILE` in
/// `<data-root>/berthd/tmp`: nothing to clean up if berthd dies mid-upload), rewound.
pub async fn spool(d: &Daemon, mut body: Incoming, limit: u64) -> ApiResult<std::fs::File> {
    let spool_dir = d.config.data_root.join("berthd").join("tmp");
    std::fs::create_dir_all(&spool_dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut spool = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(&spool_dir)
            .map_err(|e| ApiError::internal(format!("{}: {e}", spool_dir.display())))?
    };
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            if total > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("upload larger than {limit} bytes (BERTHD_MAX_ARCHIVE)"),
                ));
            }
            spool
                .write_all(data)
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
    }
    spool
        .rewind()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(spool)
}

/// `PUT /containers/{id}/archive?path=DIR`: extracts the uploaded tar into DIR.
pub async fn put(d: &Arc<Daemon>, ctx: &Ctx, key: &str, req: Request<Incoming>) -> ApiResult<Resp> {
    let c = d.find(key)?;
    let path = path_param(ctx)?;
    let root = rootfs(d, &c);
    let dir = open_in(&root, &path, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| {
        if e.status == StatusCode::BAD_REQUEST {
            ApiError::bad_request(format!("extraction point is not a directory: {path}"))
        } else {
            e
        }
    })?;
    // Spooled (bounded) to a file: the extractor reads synchronously.
    let spool = spool(d, req.into_body(), max_upload()).await?;
    let limits = d
        .engine
        .open_store()
        .map(|s| *s.limits())
        .unwrap_or_default();
    let res = tokio::task::spawn_blocking(move || {
        let dest = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let opts = berth_image::ExtractOptions {
            mode: berth_image::Mode::Flatten,
            confine: true,
            limits,
            ..Default::default()
        };
        let r = berth_image::extract_layer(std::io::BufReader::new(spool), &dest, &opts);
        drop(dir);
        r
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    res.map_err(|e| ApiError::bad_request(crate::http::error::chain(&e)))?;
    d.container_event(&c.snapshot(), "extract-to-dir", &[("path", path)]);
    Ok(no_content(StatusCode::OK))
}
