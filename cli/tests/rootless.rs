//! Rootless: an unprivileged user (uid 65534 here) writes a config with `berth spec --rootless`
//! and runs a container with it, state under its own `$XDG_RUNTIME_DIR`; inside, it is root of a
//! user namespace that maps only its own uid.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{busybox_rootfs, OutputExt, BERTH};
use serde_json::{json, Value};

const NOBODY: u32 = 65534;

/// Runs `berth args...` as uid and gid 65534 in `dir`, with `dir/xdg` as its
/// `XDG_RUNTIME_DIR`; asserts success (with both streams in the message) and returns the
/// output.
fn as_nobody(dir: &Path, args: &[&str]) -> Output {
    as_nobody_with(dir, args, |_| {})
}

/// [`as_nobody`], letting the caller adjust the command (its environment) first.
fn as_nobody_with(dir: &Path, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
    let mut c = Command::new(BERTH);
    c.args(args)
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", dir.join("xdg"))
        .uid(NOBODY)
        .gid(NOBODY);
    adjust(&mut c);
    c.output().unwrap().ok()
}

/// A temporary directory (named `<prefix>…`) that uid 65534 may enter.
fn enterable_tempdir(prefix: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

fn chown_tree(path: &Path) {
    let st = Command::new("chown")
        .args(["-R", "-h", "65534:65534"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn unprivileged_user_runs_a_container() {
    let tmp = enterable_tempdir("berth-rootless-");
    let bundle = tmp.path().join("bundle");
    busybox_rootfs(&bundle.join("rootfs"));
    fs::create_dir(bundle.join("xdg")).unwrap();
    chown_tree(&bundle);

    as_nobody(&bundle, &["spec", "--rootless"]);
    let mut c: Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["linux"]["uidMappings"][0]["hostID"], json!(NOBODY));
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!([
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo rootless-ok"
    ]);
    fs::write(bundle.join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();

    let text = as_nobody(&bundle, &["run", "rl"]).out();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"), "{text}");
    let map: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(map, ["0", "65534", "1"], "{text}");
    assert!(text.contains("rootless-ok"));
    // The state lived under the user's runtime dir and is gone after the foreground run.
    let state = bundle.join("xdg/berth");
    assert!(state.is_dir(), "state root not under XDG_RUNTIME_DIR");
    assert!(fs::read_dir(&state)
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| e.file_name().to_string_lossy().starts_with('.')));
}

/// A home for `nobody` in a new enterable temporary directory (removed when the first value
/// drops): an empty `xdg` directory and a busybox OCI layout in `layout`, all owned by it.
fn nobody_home(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = enterable_tempdir(prefix);
    let home = tmp.path().join("home");
    fs::create_dir_all(home.join("xdg")).unwrap();
    common::busybox_layout(&home.join("layout"), "busybox:latest", &[]);
    chown_tree(&home);
    (tmp, home)
}

/// `berth run IMAGE` as an unprivileged user: a store of its own, a flattened rootfs (no
/// overlay mount without privileges), root inside its user namespace, nothing left after
/// `--rm`.
#[test]
fn unprivileged_user_runs_an_image() {
    let (_tmp, home) = nobody_home("berth-rootless-img-");
    let store = home.join("store");
    let store = store.to_str().unwrap();
    as_nobody(&home, &["--store", store, "image", "import", "layout"]);
    let text = as_nobody(
        &home,
        &[
            "--store",
            store,
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "id -u; stat -c %u /bin/busybox; echo w > /root/f && cat /root/f",
        ],
    )
    .out();
    assert_eq!(text, "0\n0\nw\n");
    assert_eq!(fs::read_dir(home.join("store/bundles")).unwrap().count(), 0);
    assert_eq!(
        fs::read_dir(home.join("xdg/berth")).map_or(0, Iterator::count),
        0
    );
}

/// A fresh account has no `~/.local/share` yet: the default store is made there, with its
/// missing parents, readable by the user only; `XDG_DATA_HOME` moves it, made as deep as
/// it must be.
#[test]
fn a_fresh_account_gets_its_default_store() {
    let (_tmp, home) = nobody_home("berth-rootless-home-");
    // A fresh account's environment: HOME, no BERTH_STORE, XDG_DATA_HOME as given.
    let account = |xdg: Option<&Path>| {
        let home = home.clone();
        let xdg = xdg.map(Path::to_path_buf);
        move |c: &mut Command| {
            c.env("HOME", &home).env_remove("BERTH_STORE");
            match &xdg {
                Some(x) => c.env("XDG_DATA_HOME", x),
                None => c.env_remove("XDG_DATA_HOME"),
            };
        }
    };
    as_nobody_with(&home, &["image", "import", "layout"], account(None));
    let out = as_nobody_with(&home, &["images", "-q"], account(None)).out();
    assert_eq!(out, "busybox:latest\n");
    let store = home.join(".local/share/berth");
    let mode = fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", store.display());
    assert!(store.join("state.json").is_file());

    let data = home.join("elsewhere/data");
    let out = as_nobody_with(&home, &["images", "-q"], account(Some(&data))).out();
    assert_eq!(out, "", "a store of its own under XDG_DATA_HOME");
    assert!(data.join("berth/blobs/sha256").is_dir());
}
