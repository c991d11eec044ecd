//! The HTTP layer: connections served with hyper, API version prefixes negotiated as dockerd
//! does, the request context handlers get, and connection hijack for attach and exec.

pub mod body;
pub mod error;
pub mod hijack;
pub mod query;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

pub use body::{Body, Resp};
pub use error::{ApiError, ApiResult};
pub use query::Query;

use crate::state::Daemon;

/// The newest API version berthd speaks (what `/_ping` and `/version` advertise).
pub const API_VERSION: &str = "1.47";
/// The oldest API version berthd accepts.
pub const MIN_API_VERSION: &str = "1.24";

/// An API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Parses `1.47`.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What a handler knows of its request besides the body.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The method.
    pub method: Method,
    /// The path without the version prefix, percent-decoded per segment.
    pub segments: Vec<String>,
    /// The query.
    pub query: Query,
    /// The API version the client asked for (the newest when unversioned).
    pub version: ApiVersion,
    /// The request's headers.
    pub headers: hyper::HeaderMap,
}

impl Ctx {
    /// The segments as `&str`s, for matching.
    pub fn parts(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Splits `/v1.47/containers/json` into the version and the segments; refuses versions
/// outside what berthd speaks, with dockerd's messages.
pub fn parse_path(path: &str) -> ApiResult<(ApiVersion, Vec<String>)> {
    let max = ApiVersion::parse(API_VERSION).expect("valid");
    let min = ApiVersion::parse(MIN_API_VERSION).expect("valid");
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode(s)
                .ok_or_else(|| ApiError::bad_request(format!("bad path segment {s:?}")))
        })
        .collect::<ApiResult<_>>()?;
    let mut version = max;
    if let Some(first) = segs.first() {
        if let Some(v) = first.strip_prefix('v').and_then(ApiVersion::parse) {
            if v < min {
                return Err(ApiError::bad_request(format!(
                    "client version {v} is too old. Minimum supported API version is {min}, please upgrade your client to a newer version"
                )));
            }
            if v > max {
                return Err(ApiError::bad_request(format!(
                    "client version {v} is too new. Maximum supported API version is {max}"
                )));
            }
            version = v;
            segs.remove(0);
        }
    }
    Ok((version, segs))
}

/// Percent-decodes one path segment (it must be UTF-8 and free of NUL).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('\0')).then_some(text)
}

/// Serves one connection until the client closes it (upgrades for attach and exec allowed).
pub async fn serve_connection<S>(io: S, daemon: Arc<Daemon>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let daemon = daemon.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(daemon, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
    {
        tracing::debug!("connection: {e}");
    }
}

async fn handle(daemon: Arc<Daemon>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let res = match parse_path(&path) {
        Ok((version, segments)) => {
            let query = Query::parse(req.uri().query().unwrap_or(""));
            let ctx = Ctx {
                method: method.clone(),
                segments,
                query,
                version,
                headers: req.headers().clone(),
            };
            crate::api::route(daemon, ctx, req).await
        }
        Err(e) => Err(e),
    };
    let mut resp = match res {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!("{method} {path}: {}", e.message);
            } else {
                tracing::debug!("{method} {path}: {} {}", e.status, e.message);
            }
            body::error_response(&e)
        }
    };
    let h = resp.headers_mut();
    h.insert(
        "Api-Version",
        hyper::header::HeaderValue::from_static(API_VERSION),
    );
    h.insert(
        "Docker-Experimental",
        hyper::header::HeaderValue::from_static("false"),
    );
    h.insert("Ostype", hyper::header::HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        hyper::header::HeaderValue::from_static(concat!(
            "berthd/",
            env!("CARGO_PKG_VERSION"),
            " (linux)"
        )),
    );
    resp
}

/// 404 for a path no endpoint serves.
pub fn no_route(ctx: &Ctx) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("page not found: {} /{}", ctx.method, ctx.segments.join("/")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_segments() {
        let (v, s) = parse_path("/v1.41/containers/abc/json").unwrap();
        assert_eq!(v, ApiVersion(1, 41));
        assert_eq!(s, ["containers", "abc", "json"]);
        let (v, s) = parse_path("/_ping").unwrap();
        assert_eq!(v.to_string(), API_VERSION);
        assert_eq!(s, ["_ping"]);
        assert!(parse_path("/v1.12/info")
            .unwrap_err()
            .message
            .contains("too old"));
        assert!(parse_path("/v9.0/info")
            .unwrap_err()
            .message
            .contains("too new"));
        let (_, s) = parse_path("/images/localhost%3A5000%2Fapp/json").unwrap();
        assert_eq!(s, ["images", "localhost:5000/app", "json"]);
        assert!(parse_path("/images/a%00b/json").is_err());
        assert!(parse_path("/images/%zz/json").is_err());
    }
}
