//! Registries through the command line, against Debian's `docker-registry` (the CNCF
//! distribution registry) on 127.0.0.1, seeded and checked with `skopeo`: pull by tag and by
//! digest, a re-pull that moves no layer byte, push (monolithic, chunked, cross-repository
//! mount) checked by `skopeo inspect` and copied back, a two-platform index, Basic auth
//! (htpasswd) and Bearer tokens with login/logout, a corrupted layer rejected with nothing
//! stored, a dropped download resumed, and `berth run` of what was pulled.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::registry::{add_arm64, Mode, Proxy, Registry};
use common::{Berth, OutputExt};

/// One test's berth with its own store and docker config directory.
struct Env {
    b: Berth,
    store: PathBuf,
    docker_config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let b = Berth::new();
        let store = b.path().join("store");
        let docker_config = b.path().join("docker");
        Env {
            b,
            store,
            docker_config,
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_stdin(args, None)
    }

    fn cmd_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all = vec!["--store", self.store.to_str().unwrap()];
        all.extend_from_slice(args);
        let input = stdin.map(|s| {
            let p = self.b.path().join("stdin");
            std::fs::write(&p, s).unwrap();
            p
        });
        self.b.cmd_with(&all, |c| {
            c.env("DOCKER_CONFIG", &self.docker_config);
            if let Some(p) = &input {
                c.stdin(std::fs::File::open(p).unwrap());
            }
        })
    }

    fn layout(&self, name: &str, extra: &[&Path]) -> PathBuf {
        let dir = self
            .b
            .path()
            .join(format!("layout-{}", name.replace([':', '/'], "-")));
        common::busybox_layout(&dir, name, extra);
        dir
    }

    /// A registry holding this test's busybox layout (see [`Env::layout`]) as `<repo>:v1`,
    /// behind a [`Proxy`] in `mode`.
    fn behind_proxy(&self, repo: &str, mode: Mode) -> Proxied {
        let reg = Registry::start(None);
        let layout = self.layout(&format!("{repo}:latest"), &[]);
        reg.seed(&layout, repo, "v1", None);
        let proxy = Proxy::start(reg.port, mode);
        Proxied {
            image: format!("{}/{repo}:v1", proxy.host()),
            proxy,
            reg,
            layout,
        }
    }

    /// Entries of a store directory (`blobs/sha256`, `layers`, `tmp`).
    fn entries(&self, dir: &str) -> Vec<String> {
        match std::fs::read_dir(self.store.join(dir)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// What [`Env::behind_proxy`] starts (the proxy goes first, then the registry).
struct Proxied {
    /// The image as pulled through the proxy: `<proxy>/<repo>:v1`.
    image: String,
    proxy: Proxy,
    reg: Registry,
    /// The layout the registry was seeded with.
    layout: PathBuf,
}

/// `N blobs downloaded, SIZE received, R resumed downloads` of a pull's summary line, SIZE in
/// bytes (as read back from `12.3MB`, `4kB`, `512B`).
fn pulled(out: &Output) -> (u64, u64, u64) {
    let err = out.err();
    let line = err
        .lines()
        .find(|l| l.starts_with("pulled "))
        .unwrap_or_else(|| panic!("no summary line in:\n{err}"));
    let nums: Vec<u64> = line
        .rsplit(": ")
        .next()
        .unwrap()
        .split(", ")
        .map(|p| size_bytes(p.split(' ').next().unwrap()))
        .collect();
    (nums[0], nums[1], nums[2])
}

/// A count, or a human size (`12.3MB`, `4kB`, `512B`) in bytes.
fn size_bytes(s: &str) -> u64 {
    let units = [("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("B", 1.0)];
    let (num, scale) = units
        .iter()
        .find_map(|(u, scale)| s.strip_suffix(u).map(|n| (n, *scale)))
        .unwrap_or((s, 1.0));
    let n: f64 = num.parse().unwrap_or_else(|_| panic!("not a size: {s}"));
    (n * scale) as u64
}

/// A layer of one file, as an uncompressed tar.
fn file_layer(dir: &Path, name: &str, content: &str) -> PathBuf {
    let src = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(name), content).unwrap();
    let tar = dir.join(format!("{name}.tar"));
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(name)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    tar
}

#[test]
fn pull_by_tag_and_digest_repull_moves_nothing_then_run() {
    let e = Env::new();
    let reg = Registry::start(None);
    let extra = file_layer(e.b.path(), "hello.txt", "hello from the registry\n");
    let layout = e.layout("bb:latest", &[&extra]);
    reg.seed(&layout, "team/bb", "v1", None);
    let image = format!("{}/team/bb:v1", reg.host());

    let out = e.cmd(&["pull", &image]).ok();
    let (blobs, bytes, _) = pulled(&out);
    assert_eq!(blobs, 3, "config and two layers: {}", out.err());
    assert!(bytes > 500_000, "{}", out.err());
    let (name, digest) = out
        .out()
        .trim()
        .split_once(' ')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    assert_eq!(name, image);
    assert_eq!(e.entries("layers").len(), 2);

    // Re-pull: the manifest only, not one layer byte.
    let out = e.cmd(&["pull", &image]).ok();
    let (blobs, bytes, _) = pulled(&out);
    assert_eq!(blobs, 0, "{}", out.err());
    assert!(bytes < 2000, "{bytes} bytes for a re-pull");

    // By digest: the same image under name@digest, nothing downloaded.
    let by_digest = format!("{}/team/bb@{digest}", reg.host());
    let out = e.cmd(&["pull", "-q", &by_digest]).ok();
    assert_eq!(out.out().trim(), format!("{by_digest} {digest}"));
    assert!(out.err().is_empty(), "--quiet printed: {}", out.err());
    let list = e.cmd(&["images", "-q"]).ok().out();
    assert!(list.contains(&image) && list.contains(&by_digest), "{list}");

    // A wrong digest and an unknown tag: the registry's codes.
    let bad = format!("{}/team/bb@sha256:{}", reg.host(), "0".repeat(64));
    e.cmd(&["pull", &bad]).fails_with("MANIFEST_UNKNOWN");
    e.cmd(&["pull", &format!("{}/team/bb:nope", reg.host())])
        .fails_with("MANIFEST_UNKNOWN");
    e.cmd(&["pull", &format!("{}/nobody:v1", reg.host())])
        .fails_with("pulling");

    // And it runs.
    let id = e.b.id("pulled");
    e.b.track(&id);
    let tag_env = format!("BERTH_TEST_TAG={}", e.b.tag);
    let out = e
        .cmd(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--name",
            &id,
            "-e",
            &tag_env,
            &image,
            "cat",
            "/hello.txt",
        ])
        .ok();
    assert_eq!(out.out(), "hello from the registry\n");
    e.b.assert_clean();
}

#[test]
fn push_checked_by_skopeo_then_mount_and_chunks() {
    let e = Env::new();
    let reg = Registry::start(None);
    let layout = e.layout("local:latest", &[]);
    e.cmd(&["image", "import", layout.to_str().unwrap()]).ok();
    let target = format!("{}/pushed/bb:1", reg.host());
    e.cmd(&["push", &target]).fails_with("berth tag");
    e.cmd(&["tag", "local", &target]).ok();
    let out = e.cmd(&["push", &target]).ok();
    assert!(
        out.err().contains("2 blobs uploaded, 0 already there"),
        "{}",
        out.err()
    );
    let digest = out.out().trim().rsplit('@').next().unwrap().to_string();

    let inspect = Registry::skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert!(inspect.status.success(), "{}", inspect.err());
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(doc["Digest"], digest.as_str());
    assert_eq!(doc["Layers"].as_array().unwrap().len(), 1);
    let back = e.b.path().join("back");
    let copy = Registry::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:x", back.display()),
    ]);
    assert!(copy.status.success(), "{}", copy.err());

    // Again: everything is there already.
    let out = e.cmd(&["push", &target]).ok();
    assert!(
        out.err().contains("0 blobs uploaded, 2 already there"),
        "{}",
        out.err()
    );

    // Another repository of the same registry: mounted, not uploaded.
    let other = format!("{}/elsewhere/bb:2", reg.host());
    e.cmd(&["tag", &target, &other]).ok();
    let out = e.cmd(&["push", &other]).ok();
    assert!(
        out.err()
            .contains("0 blobs uploaded, 0 already there, 2 mounted"),
        "{}",
        out.err()
    );

    // Chunked upload to a third one (under another name for the same host: no mount).
    let third = format!("localhost:{}/chunked:3", reg.port);
    e.cmd(&["tag", &target, &third]).ok();
    let out = e.cmd(&["push", "--chunk-size", "100000", &third]).ok();
    assert!(out.err().contains("2 blobs uploaded"), "{}", out.err());
    let raw = Registry::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{third}"),
    ]);
    assert!(raw.status.success(), "{}", raw.err());
    // What skopeo reads back pulls again, verified, into a fresh store.
    let e2 = Env::new();
    e2.cmd(&["pull", &third]).ok();
}

#[test]
fn multi_platform_index_picks_the_platform() {
    let e = Env::new();
    let reg = Registry::start(None);
    let layout = e.layout("multi:latest", &[]);
    add_arm64(&layout);
    reg.seed(&layout, "multi", "latest", None);
    let image = format!("{}/multi", reg.host());
    let out = e.cmd(&["pull", &image]).ok();
    let host = e
        .cmd(&["image", "inspect", &format!("{image}:latest")])
        .ok();
    let doc: serde_json::Value = serde_json::from_slice(&host.stdout).unwrap();
    assert_eq!(doc["platform"], "linux/amd64", "{}", out.err());
    let out = e.cmd(&["pull", "--platform", "linux/arm64", &image]).ok();
    // The layers are shared: only the arm64 config moves.
    assert_eq!(pulled(&out).0, 1, "{}", out.err());
    let arm = e
        .cmd(&["image", "inspect", &format!("{image}:latest")])
        .ok();
    let doc: serde_json::Value = serde_json::from_slice(&arm.stdout).unwrap();
    assert_eq!(doc["platform"], "linux/arm64");
    e.cmd(&["pull", "--platform", "linux/s390x", &image])
        .fails_with("no manifest for platform linux/s390x (available: linux/amd64, linux/arm64)");
}

#[test]
fn basic_auth_login_pull_push_logout() {
    let e = Env::new();
    let reg = Registry::start(Some(("alice", "secret")));
    let layout = e.layout("auth:latest", &[]);
    reg.seed(&layout, "private", "v1", Some("alice:secret"));
    let image = format!("{}/private:v1", reg.host());

    let err = e.cmd(&["pull", &image]).fails_with("UNAUTHORIZED");
    assert!(
        err.contains(&format!("berth login {}", reg.host())),
        "{err}"
    );
    e.cmd_stdin(
        &["login", &reg.host(), "-u", "alice", "--password-stdin"],
        Some("wrong\n"),
    )
    .fails_with("UNAUTHORIZED");
    assert!(!e.docker_config.join("config.json").exists());
    e.cmd_stdin(
        &["login", &reg.host(), "-u", "alice", "--password-stdin"],
        Some("secret\n"),
    )
    .ok();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.docker_config.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["auths"][reg.host()]["auth"], "YWxpY2U6c2VjcmV0");
    e.cmd(&["pull", &image]).ok();
    let copy = format!("{}/private/copy:v2", reg.host());
    e.cmd(&["tag", &image, &copy]).ok();
    e.cmd(&["push", &copy]).ok();
    e.cmd(&["logout", &reg.host()]).ok();
    e.cmd(&["logout", &reg.host()]).fails_with("not logged in");
    e.cmd(&["pull", &copy]).fails_with("UNAUTHORIZED");
}

#[test]
fn bearer_tokens_from_the_token_endpoint() {
    let e = Env::new();
    let bearer = e.behind_proxy("tok", Mode::Bearer);
    // Anonymous: the token endpoint refuses.
    e.cmd(&["pull", &bearer.image]).fails_with("UNAUTHORIZED");
    e.cmd(&["login", &bearer.proxy.host(), "-u", "alice", "-p", "nope"])
        .fails_with("UNAUTHORIZED");
    e.cmd(&["login", &bearer.proxy.host(), "-u", "alice", "-p", "secret"])
        .ok();
    e.cmd(&["pull", &bearer.image]).ok();
    let pushed = format!("{}/tok/again:v2", bearer.proxy.host());
    e.cmd(&["tag", &bearer.image, &pushed]).ok();
    let out = e.cmd(&["push", &pushed]).ok();
    assert!(out.err().contains("2 mounted"), "{}", out.err());
}

#[test]
fn corrupted_layer_is_rejected_and_nothing_is_stored() {
    let e = Env::new();
    let corrupt = e.behind_proxy("bad", Mode::CorruptBlob);
    e.cmd(&["pull", &corrupt.image])
        .fails_with("digest mismatch");
    assert!(e.entries("layers").is_empty(), "a layer was kept");
    assert!(e.entries("tmp").is_empty(), "leftovers in tmp/");
    let images = e.cmd(&["images", "-q"]).ok();
    assert!(
        images.out().is_empty(),
        "an image was recorded: {}",
        images.out()
    );
    let layer = {
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(corrupt.layout.join("index.json")).unwrap())
                .unwrap();
        let m = idx["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .replace("sha256:", "");
        let man: serde_json::Value = serde_json::from_slice(
            &std::fs::read(corrupt.layout.join("blobs/sha256").join(m)).unwrap(),
        )
        .unwrap();
        man["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .replace("sha256:", "")
    };
    assert!(
        !e.entries("blobs/sha256").contains(&layer),
        "the corrupted blob was kept"
    );
    // Straight from the registry it is fine.
    e.cmd(&["pull", &format!("{}/bad:v1", corrupt.reg.host())])
        .ok();
}

#[test]
fn dropped_download_resumes_with_range() {
    let e = Env::new();
    let drop_once = e.behind_proxy("drop", Mode::DropOnce);
    let out = e.cmd(&["pull", &drop_once.image]).ok();
    let (blobs, _, resumed) = pulled(&out);
    assert_eq!((blobs, resumed), (2, 1), "{}", out.err());
    assert_eq!(e.entries("layers").len(), 1);
}

#[test]
fn killed_pull_leaves_no_partial_blob() {
    let e = Env::new();
    let stall = e.behind_proxy("kill", Mode::Stall);
    let mut child = std::process::Command::new(common::BERTH)
        .arg("--store")
        .arg(&e.store)
        .args(["pull", "-q", &stall.image])
        .env("DOCKER_CONFIG", &e.docker_config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until half the layer is in a temporary file, then kill -9.
    let tmp = e.store.join("tmp");
    let arrived = common::poll_until(std::time::Duration::from_secs(20), || {
        std::fs::read_dir(&tmp).is_ok_and(|rd| {
            rd.flatten().any(|f| {
                f.file_name().to_string_lossy().ends_with("-blob")
                    && f.metadata().is_ok_and(|m| m.len() > 100_000)
            })
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(arrived, "the download never reached the store's tmp/");
    let blobs = e.entries("blobs/sha256");
    // Only the manifest and config (complete, verified) made it; no layer blob, no layer.
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    assert!(e.entries("layers").is_empty());
    // The next command's store open removes the dead pull's leftovers.
    assert!(e.cmd(&["images", "-q"]).ok().out().is_empty());
    assert!(e.entries("tmp").is_empty(), "{:?}", e.entries("tmp"));
    e.cmd(&["pull", "-q", &format!("{}/kill:v1", stall.reg.host())])
        .ok();
}
