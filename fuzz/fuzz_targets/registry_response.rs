//! Registry responses, as the distribution client reads them: the `/v2/` ping and its
//! `WWW-Authenticate` challenge, token JSON from the realm, error bodies, manifests with
//! `Content-Type` and `Docker-Content-Digest`, redirects and their `Location` (to the
//! registry or to another origin), blob downloads that lose their connection and resume with
//! `Range`, and a push's upload sessions (`Location`s of `POST` and `PATCH`, statuses of
//! every step). The client talks to a fake registry in this process on loopback (127.0.0.1,
//! with 127.0.0.2 as another origin): no network is needed.
//!
//! The registry serves a valid image built from the input (an OCI or Docker manifest,
//! perhaps behind an index, with layers from the hostile-name alphabet of `common`),
//! accepts uploads (sessions on either origin), and authenticates as the input says (none,
//! Basic, or Bearer with a token endpoint on either origin); the rest of the input is a
//! queue of tweaks per kind of request (ping, token, manifest, blob, upload, other origin)
//! that replace the status, headers or body of the answer: raw token JSON and error bodies,
//! wrong or malformed digests, truncated bodies with honest or lying lengths, wrong
//! `Content-Range`s, `Location`s of every kind.
//!
//! The client fetches a manifest by tag or digest, checks a blob with `HEAD`, pulls the image
//! into a fresh store, or pushes it from one (stores in `/dev/shm` when there is one). Never
//! a panic, and: credentials and tokens never reach the other origin except as the token
//! endpoint the registry named; a manifest fetched by digest has that digest; a pull leaves
//! nothing in the store's `tmp/`, and an image it records has its layers.
//!
//! Every URL the registry hands out names a loopback address: `Location`s and realms from
//! the input that would name any other host are replaced, so nothing is ever resolved or
//! connected to off this machine. Retries are off or immediate (no backoff, `Retry-After`
//! never above 0) and the client's limits small (1 MiB blobs, 8 layers, 2 s idle, 5 s per
//! request) so every input ends quickly. `FUZZ_DEBUG=1` prints every exchange.
#![no_main]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use berth_image::extract::Compression;
use berth_image::image::media;
use berth_image::store::{ImportOptions, Store};
use berth_image::synth::compress;
use berth_image::{Digest, Platform};
use berth_registry::auth::parse_challenges;
use berth_registry::client::{Client, ClientOptions};
use berth_registry::progress::{Progress, Silent};
use berth_registry::pull::{self, PullOptions};
use berth_registry::push::{self, PushOptions};
use berth_registry::{Credentials, Limits, Reference};
use common::{Input, Sandbox};
use serde_json::json;

const REPO: &str = "library/app";
const TOKEN: &str = "fuzz-token";
const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

/// What kind of request an answer is for; each has its queue of tweaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Ping,
    Token,
    Manifest,
    Blob,
    /// Blob uploads (`/blobs/uploads/`), on either origin.
    Upload,
    /// Anything else on the other origin but its token endpoint.
    Elsewhere,
}

const KINDS: &[Kind] = &[
    Kind::Ping,
    Kind::Token,
    Kind::Manifest,
    Kind::Blob,
    Kind::Upload,
    Kind::Elsewhere,
];

/// How the registry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Basic,
    /// Bearer, token endpoint on the registry's origin.
    BearerHere,
    /// Bearer, token endpoint on the other origin.
    BearerThere,
}

#[derive(Debug, Clone)]
enum Body {
    Keep,
    /// The first `n` bytes; `honest`: with their length as `Content-Length` (else the full
    /// length is declared and the connection closes early).
    Cut {
        n: usize,
        honest: bool,
    },
    Raw(Vec<u8>),
    /// A distribution-spec error body.
    Error(String, String),
}

/// A change to one answer.
#[derive(Debug, Clone)]
struct Tweak {
    status: Option<u16>,
    challenge: Option<String>,
    /// `Docker-Content-Digest`: `Some(None)` removes it.
    digest: Option<Option<String>>,
    content_type: Option<&'static str>,
    location: Option<String>,
    retry_after: Option<&'static str>,
    /// `Content-Range` for a `Range` request: an offset off by this much.
    range_skew: i64,
    body: Body,
}

/// One answer being built.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Declared length, when not the body's.
    declared: Option<usize>,
}

impl Answer {
    fn new(status: u16, body: Vec<u8>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body,
            declared: None,
        }
    }

    fn header(mut self, k: &str, v: &str) -> Answer {
        self.set(k, v);
        self
    }

    fn set(&mut self, k: &str, v: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        self.headers.push((k.to_string(), v.to_string()));
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    other_origin: bool,
    method: String,
    path: String,
    authorization: Option<String>,
}

/// A request as the server read it.
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// What one input makes the registry do.
struct Script {
    auth: Auth,
    /// Blob GETs answered with a redirect to the other origin.
    blobs_elsewhere: bool,
    /// Upload sessions (their `Location`s) on the other origin.
    uploads_elsewhere: bool,
    /// A push: the registry has no blob yet (`HEAD` answers 404).
    push: bool,
    /// Documents and blobs by digest.
    content: HashMap<String, (Vec<u8>, &'static str)>,
    /// The digest `latest` names.
    top: String,
    tweaks: Mutex<HashMap<Kind, Vec<Tweak>>>,
    seen: Mutex<Vec<Seen>>,
    /// Realms the registry's origin named in its challenges.
    announced: Mutex<Vec<String>>,
}

struct Server {
    here: SocketAddr,
    there: SocketAddr,
    script: Mutex<Option<Arc<Script>>>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<&'static Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // The client and the server may write to a connection the other end closed.
        // SAFETY: ignoring SIGPIPE only makes such writes fail with EPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let here = TcpListener::bind("127.0.0.1:0").expect("listen on 127.0.0.1");
        let there = TcpListener::bind("127.0.0.2:0").expect("listen on 127.0.0.2");
        let s: &'static Server = Box::leak(Box::new(Server {
            here: here.local_addr().expect("address"),
            there: there.local_addr().expect("address"),
            script: Mutex::new(None),
        }));
        for (l, other) in [(here, false), (there, true)] {
            std::thread::spawn(move || {
                for conn in l.incoming().flatten() {
                    let script = s.script.lock().expect("lock").clone();
                    std::thread::spawn(move || serve(s, script, conn, other));
                }
            });
        }
        s
    })
}

fn read_request(c: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut byte).ok()?;
        // A TLS ClientHello (0x16): hang up, as a plain HTTP server would fail it.
        if n == 0 || buf.len() > 64 << 10 || byte[0] == 0x16 && buf.is_empty() {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    if !first.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // The body (uploads, manifests): read before answering, or the client's write fails.
    let start = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut body = buf[start..].to_vec();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while body.len() < len.min(8 << 20) {
        let n = c.read(&mut byte).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&byte[..n]);
    }
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

fn serve(s: &Server, script: Option<Arc<Script>>, mut c: TcpStream, other: bool) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(req) = read_request(&mut c) else {
        return;
    };
    let Some(script) = script else {
        return;
    };
    script.seen.lock().expect("lock").push(Seen {
        other_origin: other,
        method: req.method.clone(),
        path: req.path.clone(),
        authorization: req.header("authorization"),
    });
    let a = answer(s, &script, other, &req);
    let (method, path) = (&req.method, &req.path);
    let mut out = format!("HTTP/1.1 {} Fuzz\r\nConnection: close\r\n", a.status);
    for (k, v) in &a.headers {
        // No line breaks inside a header (a server could not send them).
        let v = v.replace(['\r', '\n'], " ");
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{method} {path} (other origin: {other}) -> {out}");
    }
    let no_body = method == "HEAD" || a.status == 204 || a.status == 304;
    out.push_str(&format!(
        "Content-Length: {}\r\n\r\n",
        a.declared.unwrap_or(a.body.len())
    ));
    let mut bytes = out.into_bytes();
    if !no_body {
        bytes.extend_from_slice(&a.body);
    }
    let _ = c.write_all(&bytes);
    let _ = c.shutdown(std::net::Shutdown::Write);
}

/// The registry's own answer, then the next tweak of its kind.
fn answer(s: &Server, script: &Script, other: bool, req: &Req) -> Answer {
    let (method, path) = (req.method.as_str(), req.path.as_str());
    let (authorization, range) = (req.header("authorization"), req.header("range"));
    let here = format!("http://{}", s.here);
    let there = format!("http://{}", s.there);
    let realm = match script.auth {
        Auth::BearerThere => format!("{there}/token"),
        _ => format!("{here}/token"),
    };
    let challenge = match script.auth {
        Auth::None => String::new(),
        Auth::Basic => r#"Basic realm="fuzz""#.to_string(),
        Auth::BearerHere | Auth::BearerThere => {
            format!(r#"Bearer realm="{realm}",service="fuzz",scope="repository:{REPO}:pull""#)
        }
    };
    let token_path = (script.auth == Auth::BearerThere) == other && path.starts_with("/token");
    let kind = if token_path {
        Kind::Token
    } else if path.contains("/blobs/uploads/") {
        Kind::Upload
    } else if other {
        Kind::Elsewhere
    } else if path == "/v2/" || path == "/v2" {
        Kind::Ping
    } else if path.contains("/manifests/") {
        Kind::Manifest
    } else {
        Kind::Blob
    };
    let authorized = match script.auth {
        Auth::None => true,
        Auth::Basic => {
            authorization.as_deref()
                == Some(
                    Credentials {
                        username: USER.into(),
                        password: PASSWORD.into(),
                    }
                    .basic_header()
                    .as_str(),
                )
        }
        _ => authorization.as_deref() == Some(&format!("Bearer {TOKEN}")),
    };
    let denied = || {
        Answer::new(
            401,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
        )
        .header("WWW-Authenticate", &challenge)
    };
    let lookup = |digest: &str| script.content.get(digest).cloned();
    let mut a = match kind {
        Kind::Token => Answer::new(200, json!({ "token": TOKEN }).to_string().into_bytes()),
        Kind::Ping if !authorized => denied(),
        Kind::Ping => Answer::new(200, b"{}".to_vec()),
        _ if !other && !authorized => denied(),
        Kind::Upload => {
            // A session at `uploads/u<n>`; a PUT completes it.
            let session = if script.uploads_elsewhere {
                format!("{there}/v2/{REPO}/blobs/uploads/u1?_state=s")
            } else {
                format!("/v2/{REPO}/blobs/uploads/u1?_state=s")
            };
            match method {
                "POST" | "PATCH" => Answer::new(202, Vec::new())
                    .header("Location", &session)
                    .header("Range", &format!("0-{}", req.body.len().saturating_sub(1))),
                "PUT" => {
                    let digest = path
                        .split(['?', '&'])
                        .find_map(|p| p.strip_prefix("digest="))
                        .unwrap_or("")
                        .replace("%3A", ":");
                    Answer::new(201, Vec::new())
                        .header("Location", &format!("/v2/{REPO}/blobs/{digest}"))
                        .header("Docker-Content-Digest", &digest)
                }
                _ => Answer::new(405, Vec::new()),
            }
        }
        Kind::Manifest if method == "PUT" => Answer::new(201, Vec::new())
            .header("Docker-Content-Digest", Digest::of(&req.body).as_str()),
        Kind::Blob if method == "HEAD" && script.push => Answer::new(404, Vec::new()),
        Kind::Manifest => {
            let reference = path.rsplit('/').next().unwrap_or("");
            let digest = if reference.starts_with("sha256:") {
                reference.to_string()
            } else {
                script.top.clone()
            };
            match lookup(&digest).filter(|_| reference == "latest" || reference == digest) {
                Some((doc, media_type)) => Answer::new(200, doc)
                    .header("Content-Type", media_type)
                    .header("Docker-Content-Digest", &digest),
                None => Answer::new(
                    404,
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                        .to_vec(),
                ),
            }
        }
        Kind::Blob | Kind::Elsewhere => {
            let digest = path
                .split(['/', '?'])
                .find(|p| p.starts_with("sha256:"))
                .unwrap_or("")
                .to_string();
            match lookup(&digest) {
                Some(_) if kind == Kind::Blob && script.blobs_elsewhere && method == "GET" => {
                    Answer::new(307, Vec::new())
                        .header("Location", &format!("{there}/storage/{digest}?sig=x"))
                }
                Some((data, _)) => blob_answer(data, range.as_deref()),
                None => Answer::new(
                    404,
                    br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#.to_vec(),
                ),
            }
        }
    };
    let tweak = {
        let mut t = script.tweaks.lock().expect("lock");
        t.get_mut(&kind)
            .and_then(|q| (!q.is_empty()).then(|| q.remove(0)))
    };
    if let Some(t) = tweak {
        apply(&mut a, t);
    }
    if !other {
        for (k, v) in &a.headers {
            if k.eq_ignore_ascii_case("www-authenticate") {
                let realms = parse_challenges(v)
                    .into_iter()
                    .filter_map(|c| c.params.get("realm").cloned());
                script.announced.lock().expect("lock").extend(realms);
            }
        }
    }
    a
}

/// A blob, or its tail for `Range: bytes=N-`.
fn blob_answer(data: Vec<u8>, range: Option<&str>) -> Answer {
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(n) if n <= data.len() => {
            let total = data.len();
            Answer::new(206, data[n..].to_vec()).header(
                "Content-Range",
                &format!("bytes {n}-{}/{total}", total.saturating_sub(1)),
            )
        }
        Some(_) => Answer::new(416, Vec::new()),
        None => Answer::new(200, data),
    }
    .header("Content-Type", "application/octet-stream")
}

fn apply(a: &mut Answer, t: Tweak) {
    if t.range_skew != 0 && a.status == 206 {
        // The tail starts elsewhere than Content-Range says.
        a.body = if t.range_skew > 0 {
            a.body
                .get(t.range_skew as usize..)
                .unwrap_or_default()
                .to_vec()
        } else {
            let mut v = vec![b'?'; t.range_skew.unsigned_abs() as usize];
            v.append(&mut a.body);
            v
        };
    }
    if let Some(s) = t.status {
        a.status = s;
    }
    if let Some(c) = t.challenge {
        a.set("WWW-Authenticate", &c);
    }
    match t.digest {
        Some(Some(d)) => a.set("Docker-Content-Digest", &d),
        Some(None) => a.headers.retain(|(k, _)| k != "Docker-Content-Digest"),
        None => {}
    }
    if let Some(c) = t.content_type {
        a.set("Content-Type", c);
    }
    if let Some(l) = t.location {
        a.set("Location", &l);
    }
    if let Some(r) = t.retry_after {
        a.set("Retry-After", r);
    }
    match t.body {
        Body::Keep => {}
        Body::Cut { n, honest } => {
            let full = a.body.len();
            a.body.truncate(n);
            if !honest {
                a.declared = Some(full);
            }
        }
        Body::Raw(b) => a.body = b,
        Body::Error(code, message) => {
            a.body = json!({"errors": [{"code": code, "message": message, "detail": {"x": 1}}]})
                .to_string()
                .into_bytes();
        }
    }
}

const STATUSES: &[u16] = &[
    200, 201, 202, 204, 206, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 416, 429, 500, 502,
    503, 599,
];

const CONTENT_TYPES: &[&str] = &[
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
    "application/json",
    "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
    "",
];

const CODES: &[&str] = &[
    "UNAUTHORIZED",
    "DENIED",
    "MANIFEST_UNKNOWN",
    "BLOB_UNKNOWN",
    "TOOMANYREQUESTS",
    "UNSUPPORTED",
    "",
];

/// `Location` and realm values: `{here}`, `{there}` are the two origins.
const URLS: &[&str] = &[
    "{here}/v2/library/app/blobs/",
    "{there}/storage/",
    "/v2/library/app/manifests/",
    "storage/",
    "//127.0.0.2:{there_port}/storage/",
    "https://127.0.0.1:{here_port}/storage/",
    "http://user:pw@127.0.0.2:{there_port}/storage/",
    "ftp://127.0.0.1/x/",
    "http://127.0.0.1:1/closed/",
    "{here}/token",
    "{there}/token",
    "http://[::1]:{here_port}/token",
    "",
    "%zz/",
];

/// Whether every host `text` could make the client connect to is a loopback address (so
/// fuzzed text never makes it resolve a name or reach another machine).
fn loopback_only(base: &url::Url, text: &str) -> bool {
    let ok = |u: &url::Url| match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(_)) => false,
        None => true,
    };
    base.join(text.trim()).map_or(true, |u| ok(&u))
        && url::Url::parse(text.trim()).map_or(true, |u| ok(&u))
}

fn url_text(input: &mut Input<'_>, s: &Server) -> String {
    let mut u = input
        .pick(URLS)
        .replace("{here}", &format!("http://{}", s.here))
        .replace("{there}", &format!("http://{}", s.there))
        .replace("{here_port}", &s.here.port().to_string())
        .replace("{there_port}", &s.there.port().to_string());
    // A tail: a digest, a query, or text from the input (kept only when harmless).
    match input.byte() % 4 {
        0 => u.push_str(&Digest::of(b"x").to_string()),
        1 => u.push_str("?digest=sha256:00&_state=abc"),
        2 => u.push_str(&input.text(40)),
        _ => {}
    }
    u
}

fn tweak(input: &mut Input<'_>, s: &Server) -> Tweak {
    let flags = input.u16();
    let base = url::Url::parse(&format!("http://{}/v2/", s.here)).expect("a URL");
    let status = (flags & 1 != 0).then(|| *input.pick(STATUSES));
    let challenge = (flags & 2 != 0).then(|| {
        let text = match input.byte() % 4 {
            0 => format!(r#"Bearer realm="{}",service="svc""#, url_text(input, s)),
            1 => r#"Basic realm="x""#.to_string(),
            2 => format!(
                r#"Bearer realm="{}",scope="{}", Basic"#,
                url_text(input, s),
                input.text(20)
            ),
            _ => input.text(80),
        };
        let safe = parse_challenges(&text)
            .iter()
            .filter_map(|c| c.params.get("realm"))
            .all(|r| loopback_only(&base, r));
        if safe {
            text
        } else {
            "Bearer service=unsafe".to_string()
        }
    });
    let digest = (flags & 4 != 0).then(|| match input.byte() % 5 {
        0 => None,
        1 => Some(Digest::of(b"wrong").to_string()),
        2 => Some("sha256:".to_string()),
        3 => Some("sha512:abc".to_string()),
        _ => Some(input.text(72)),
    });
    let content_type = (flags & 8 != 0).then(|| *input.pick(CONTENT_TYPES));
    let location = (flags & 0x10 != 0).then(|| {
        let l = url_text(input, s);
        if loopback_only(&base, &l) {
            l
        } else {
            "/v2/unsafe".to_string()
        }
    });
    let retry_after = (flags & 0x20 != 0).then(|| *input.pick(&["0", "-1", "soon", " 0 "]));
    let range_skew = if flags & 0x40 != 0 {
        i64::from(input.byte() as i8)
    } else {
        0
    };
    let body = match (flags >> 8) % 6 {
        0 | 1 => Body::Keep,
        2 => Body::Cut {
            n: usize::from(input.u16()),
            honest: flags & 0x80 != 0,
        },
        3 => Body::Raw(input.long_slice(512).to_vec()),
        4 => Body::Error((*input.pick(CODES)).to_string(), input.text(40)),
        _ => Body::Raw(
            match input.byte() % 4 {
                0 => json!({"token": input.text(20), "expires_in": input.u16()}),
                1 => json!({"access_token": input.text(20)}),
                2 => json!({"token": ""}),
                _ => json!({"token": null, "access_token": 7}),
            }
            .to_string()
            .into_bytes(),
        ),
    };
    Tweak {
        status,
        challenge,
        digest,
        content_type,
        location,
        retry_after,
        range_skew,
        body,
    }
}

/// An OCI image layout of `content` whose index names `top`.
fn write_layout(
    dir: &std::path::Path,
    content: &HashMap<String, (Vec<u8>, &'static str)>,
    top: &str,
) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    for (digest, (data, _)) in content {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        std::fs::write(blobs.join(hex), data).expect("write");
    }
    let (data, media_type) = &content[top];
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": media_type, "digest": top, "size": data.len()},
    ]});
    std::fs::write(dir.join("index.json"), index.to_string()).expect("write");
}

/// The image the registry serves; returns the digest `latest` names.
fn image(input: &mut Input<'_>, content: &mut HashMap<String, (Vec<u8>, &'static str)>) -> String {
    let flags = input.byte();
    let mut put = |data: Vec<u8>, media_type: &'static str| -> serde_json::Value {
        let d = Digest::of(&data).to_string();
        let desc = json!({"mediaType": media_type, "digest": d, "size": data.len()});
        content.insert(d, (data, media_type));
        desc
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for _ in 0..1 + flags % 2 {
        let tar = common::build_tar(input.slice(40));
        diff_ids.push(Digest::of(&tar).to_string());
        let (c, mt) = match input.byte() % 3 {
            0 => (Compression::None, media::OCI_LAYER),
            1 => (Compression::Gzip, media::OCI_LAYER_GZIP),
            _ => (Compression::Zstd, media::OCI_LAYER_ZSTD),
        };
        layers.push(put(compress(&tar, c).expect("compress in memory"), mt));
    }
    let docker = flags & 2 != 0;
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = put(
        config.to_string().into_bytes(),
        if docker {
            media::DOCKER_CONFIG
        } else {
            media::OCI_CONFIG
        },
    );
    let manifest_type = if docker {
        media::DOCKER_MANIFEST
    } else {
        media::OCI_MANIFEST
    };
    let manifest = json!({
        "schemaVersion": 2, "mediaType": manifest_type, "config": config, "layers": layers,
    });
    let mut top = put(manifest.to_string().into_bytes(), manifest_type);
    if flags & 4 != 0 {
        let mut entry = top.clone();
        entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
        let other = json!({"mediaType": manifest_type, "digest": Digest::of(b"arm").to_string(),
            "size": 3, "platform": {"architecture": "arm64", "os": "linux"}});
        let index_type = if docker {
            media::DOCKER_LIST
        } else {
            media::OCI_INDEX
        };
        let index =
            json!({"schemaVersion": 2, "mediaType": index_type, "manifests": [other, entry]});
        top = put(index.to_string().into_bytes(), index_type);
    }
    top["digest"].as_str().expect("a digest").to_string()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = server();
    let mut input = Input::new(data);
    let sel = input.byte();
    let op = sel % 6;
    let auth = *input.pick(&[Auth::None, Auth::Basic, Auth::BearerHere, Auth::BearerThere]);
    let mut content = HashMap::new();
    let top = image(&mut input, &mut content);
    let layer_blob = content
        .iter()
        .find(|(_, (_, mt))| mt.contains("layer"))
        .map(|(d, _)| d.clone())
        .unwrap_or_default();
    let mut tweaks: HashMap<Kind, Vec<Tweak>> = HashMap::new();
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let kind = *input.pick(KINDS);
        let t = tweak(&mut input, s);
        tweaks.entry(kind).or_default().push(t);
    }
    let script = Arc::new(Script {
        auth,
        blobs_elsewhere: sel & 0x40 != 0,
        uploads_elsewhere: sel & 0x40 != 0,
        push: op == 5,
        content: content.clone(),
        top: top.clone(),
        tweaks: Mutex::new(tweaks),
        seen: Mutex::new(Vec::new()),
        announced: Mutex::new(Vec::new()),
    });
    *s.script.lock().expect("lock") = Some(Arc::clone(&script));

    let host = s.here.to_string();
    let opts = ClientOptions {
        insecure: sel & 0x20 != 0,
        ca_file: None,
        credentials: (sel & 0x10 != 0).then(|| Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        }),
        retries: u32::from(sel >> 7),
        backoff: Duration::ZERO,
        // Small bounds, and timeouts that end any exchange that would hang.
        limits: Some(Limits {
            max_blob_size: 1 << 20,
            max_layers: 8,
            disk_reserve: 0,
            idle_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            min_rate: 0,
            rate_grace: Duration::from_secs(10),
        }),
    };
    let client = Client::new(&host, opts).expect("a client for a loopback registry");
    match op {
        0 => {
            let _ = pull::fetch_manifest(&client, REPO, "latest");
        }
        1 => {
            if let Ok(m) = pull::fetch_manifest(&client, REPO, &top) {
                assert_eq!(m.digest.as_str(), top, "fetched by digest");
            }
        }
        2 => {
            let _ = push::blob_exists(&client, REPO, &layer_blob);
        }
        5 => {
            // The image is imported from an OCI layout of the registry's content, then pushed.
            let sb = Sandbox::new("push");
            let layout = sb.base.join("layout");
            write_layout(&layout, &content, &top);
            let mut store = Store::open(&sb.dest).expect("open the store");
            store.set_limits(common::small_limits());
            let iopts = ImportOptions {
                platform: Platform::parse("linux/amd64").expect("a platform"),
                name: Some("app:latest".into()),
                parallel: 1,
            };
            // A layer of the alphabet may not extract: then there is nothing to push.
            if store.import_oci_layout(&layout, &iopts).is_ok() {
                let target =
                    Reference::parse(&format!("{host}/{REPO}:latest")).expect("a reference");
                let popts = PushOptions {
                    chunk_size: (sel & 8 != 0).then_some(100),
                };
                let progress: Arc<dyn Progress> = Arc::new(Silent);
                let _ = push::push(&client, &store, "app:latest", &target, &popts, &progress);
            }
            sb.check_with(&["layout"]);
        }
        _ => {
            let target = if op == 3 {
                ":latest".to_string()
            } else {
                format!("@{top}")
            };
            let r = Reference::parse(&format!("{host}/{REPO}{target}")).expect("a reference");
            let sb = Sandbox::new("pull");
            let mut store = Store::open(&sb.dest).expect("open the store");
            store.set_limits(common::small_limits());
            let popts = PullOptions {
                platform: Platform::parse("linux/amd64").expect("a platform"),
                parallel: 1,
                require_platform: false,
            };
            let res = pull::pull(&client, &store, &r, &popts, Arc::new(Silent));
            let tmp = common::tree(&sb.dest.join("tmp"), common::TreeOpts::default());
            assert!(
                tmp.is_empty(),
                "the pull left temporaries: {tmp:?} ({res:?})"
            );
            if let Ok(report) = &res {
                let rec = store.image(&report.record.name).expect("the pulled image");
                for l in &rec.layers {
                    let chain = Digest::parse(&l.chain_id).expect("a ChainID");
                    assert!(store.has_layer(&chain), "layer {} missing", l.chain_id);
                }
            }
            sb.check();
        }
    }
    drop(client);
    *s.script.lock().expect("lock") = None;
    // Credentials and tokens go to the registry, and to the other origin only when it is a
    // token endpoint the registry named.
    let named: Vec<String> = script
        .announced
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|r| url::Url::parse(r).ok())
        .filter(|u| u.port_or_known_default() == Some(s.there.port()))
        .map(|u| u.path().to_string())
        .collect();
    for seen in script.seen.lock().expect("lock").iter() {
        let path = seen.path.split('?').next().unwrap_or("");
        if seen.other_origin && !named.iter().any(|n| n == path) {
            assert!(
                seen.authorization.is_none(),
                "credentials sent to the other origin with {} {}, not a token endpoint the \
                 registry named ({named:?}): {seen:?}",
                seen.method,
                seen.path
            );
        }
    }
});
