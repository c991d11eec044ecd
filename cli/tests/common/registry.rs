//! A real registry for tests: Debian's `docker-registry` (the CNCF distribution registry) on
//! 127.0.0.1 with a free port, a temporary storage directory and a generated config (with
//! htpasswd Basic auth when asked), killed by pid when dropped; images seeded with `skopeo`;
//! and a small HTTP proxy in front of it that can require Bearer tokens from its own token
//! endpoint, flip a byte of a layer blob, or drop a blob download half-way once.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::python3;

/// A running registry.
pub struct Registry {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    /// Holds the config, the htpasswd file and the storage.
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

impl Registry {
    /// Starts a registry; with `user` = (name, password), behind htpasswd Basic auth.
    pub fn start(user: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            let _ = write!(
                config,
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                file.display()
            );
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
            .spawn()
            .expect("docker-registry");
        let r = Registry { port, child, dir };
        wait_listening(port);
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy` of the OCI layout `layout` (its `latest` image, every platform) to
    /// `repo:tag`, with `creds` (`user:password`) when the registry wants them.
    pub fn seed(&self, layout: &Path, repo: &str, tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host()))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `skopeo` with `args`.
    pub fn skopeo(args: &[&str]) -> std::process::Output {
        Command::new("skopeo").args(args).output().expect("skopeo")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything unchanged.
    Forward,
    /// Flips a byte of every layer blob (a blob GET answered 200 with more than 1 kB): one of
    /// the gzip header's MTIME, which no gzip check covers, so the content still decompresses
    /// to the right DiffID and only the blob digest can tell.
    CorruptBlob,
    /// Sends only the first half of the first layer blob download, then closes.
    DropOnce,
    /// Sends the first half of every layer blob, then stalls (for 20 s) without closing.
    Stall,
    /// Requires `Bearer` tokens from its `/token` endpoint, which wants Basic credentials
    /// `alice:secret` and issues a token naming the scopes asked for.
    Bearer,
}

/// A one-request-per-connection HTTP proxy on 127.0.0.1 in front of a registry.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Requests handled.
    pub requests: Arc<AtomicUsize>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request or response: head and body (by Content-Length, or to EOF when
/// `to_eof`).
fn read_message(s: &mut TcpStream, to_eof: bool) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        // A TLS ClientHello (berth tries HTTPS first): hang up, as a plain HTTP server would
        // answer it with an error.
        if n == 0 || (buf.is_empty() && chunk[0] == 0x16) {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end..].to_vec();
    if to_eof {
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let len: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while body.len() < len {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some((head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.push_str("\r\n");
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(body);
}

fn handle(mut client: TcpStream, upstream: u16, port: u16, mode: Mode, dropped: &AtomicBool) {
    let Some((head, body)) = read_message(&mut client, false) else {
        return;
    };
    let request_line = head.lines().next().unwrap_or("").to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    if mode == Mode::Bearer {
        if path.starts_with("/token") {
            // alice:secret
            if header(&head, "authorization") == Some("Basic YWxpY2U6c2VjcmV0") {
                let scopes: Vec<&str> = path
                    .split(['?', '&'])
                    .filter_map(|kv| kv.strip_prefix("scope="))
                    .collect();
                let token = format!("tok-{}", scopes.join("+"));
                respond(
                    &mut client,
                    "200 OK",
                    &[("Content-Type", "application/json".into())],
                    format!("{{\"token\":\"{token}\",\"expires_in\":300}}").as_bytes(),
                );
            } else {
                respond(
                    &mut client,
                    "401 Unauthorized",
                    &[("Content-Type", "application/json".into())],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                );
            }
            return;
        }
        let ok = header(&head, "authorization").is_some_and(|a| a.starts_with("Bearer tok-"));
        if !ok {
            respond(
                &mut client,
                "401 Unauthorized",
                &[
                    ("Content-Type", "application/json".into()),
                    (
                        "WWW-Authenticate",
                        format!(
                            "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"berth-test\""
                        ),
                    ),
                ],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
            return;
        }
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut out = String::new();
    for (i, line) in head.trim_end().lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        let drop_auth = mode == Mode::Bearer && lower.starts_with("authorization:");
        if i > 0 && (lower.starts_with("connection:") || drop_auth) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    if up.write_all(out.as_bytes()).is_err() || up.write_all(&body).is_err() {
        return;
    }
    let Some((rhead, mut rbody)) = read_message(&mut up, true) else {
        return;
    };
    let is_layer = method == "GET"
        && path.contains("/blobs/sha256:")
        && rhead.starts_with("HTTP/1.1 200")
        && rbody.len() > 1000;
    // Location headers point at the registry: rewrite them to the proxy.
    let rhead = rhead.replace(
        &format!("127.0.0.1:{upstream}"),
        &format!("127.0.0.1:{port}"),
    );
    if is_layer && mode == Mode::CorruptBlob {
        rbody[4] ^= 0xff;
    }
    if is_layer && mode == Mode::DropOnce && !dropped.swap(true, Ordering::SeqCst) {
        let _ = client.write_all(rhead.as_bytes());
        let _ = client.write_all(&rbody[..rbody.len() / 2]);
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    }
    if is_layer && mode == Mode::Stall {
        let _ = client.write_all(rhead.as_bytes());
        let _ = client.write_all(&rbody[..rbody.len() / 2]);
        std::thread::sleep(Duration::from_secs(20));
        return;
    }
    let _ = client.write_all(rhead.as_bytes());
    let _ = client.write_all(&rbody);
}

impl Proxy {
    /// A proxy to the registry on `upstream`.
    pub fn start(upstream: u16, mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (st, rq) = (Arc::clone(&stop), Arc::clone(&requests));
        let thread = std::thread::spawn(move || {
            let dropped = Arc::new(AtomicBool::new(false));
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                rq.fetch_add(1, Ordering::SeqCst);
                let d = Arc::clone(&dropped);
                std::thread::spawn(move || handle(conn, upstream, port, mode, &d));
            }
        });
        Proxy {
            port,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes the layout at `dir` a two-platform image: the index's single linux/amd64 manifest
/// plus a linux/arm64 one (same layers, a config saying arm64).
pub fn add_arm64(dir: &Path) {
    let script = r#"
import hashlib, json, os, sys
d = sys.argv[1]
def rd(dg): return open(os.path.join(d, "blobs/sha256", dg.split(":")[1]), "rb").read()
def wr(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(d, "blobs/sha256", h), "wb").write(data)
    return "sha256:" + h, len(data)
idx = json.load(open(os.path.join(d, "index.json")))
amd = idx["manifests"][0]
man = json.loads(rd(amd["digest"]))
cfg = json.loads(rd(man["config"]["digest"]))
cfg["architecture"] = "arm64"
cd, cn = wr(json.dumps(cfg, sort_keys=True).encode())
man["config"]["digest"], man["config"]["size"] = cd, cn
md, mn = wr(json.dumps(man, sort_keys=True).encode())
inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
  {"mediaType": amd["mediaType"], "digest": amd["digest"], "size": amd["size"], "platform": {"os": "linux", "architecture": "amd64"}},
  {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn, "platform": {"os": "linux", "architecture": "arm64"}}]}
xd, xn = wr(json.dumps(inner, sort_keys=True).encode())
idx["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": xd, "size": xn, "annotations": amd.get("annotations", {})}]
json.dump(idx, open(os.path.join(d, "index.json"), "w"))
"#;
    python3(&[OsStr::new("-c"), OsStr::new(script), dir.as_os_str()]);
}
