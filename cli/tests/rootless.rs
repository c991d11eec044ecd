//! Rootless: an unprivileged user (uid 65534 here) writes a config with `berth spec --rootless`
//! and runs a container with it, state under its own `$XDG_RUNTIME_DIR`; inside, it is root of a
//! user namespace that maps only its own uid.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{busybox_rootfs, BERTH};
use serde_json::{json, Value};

const NOBODY: u32 = 65534;

fn as_nobody(dir: &Path, args: &[&str]) -> Output {
    Command::new(BERTH)
        .args(args)
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", dir.join("xdg"))
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap()
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
    let tmp = tempfile::Builder::new()
        .prefix("berth-rootless-")
        .tempdir()
        .unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = tmp.path().join("bundle");
    busybox_rootfs(&bundle.join("rootfs"));
    fs::create_dir(bundle.join("xdg")).unwrap();
    chown_tree(&bundle);

    let out = as_nobody(&bundle, &["spec", "--rootless"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    let out = as_nobody(&bundle, &["run", "rl"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

/// `berth run IMAGE` as an unprivileged user: a store of its own, a flattened rootfs (no
/// overlay mount without privileges), root inside its user namespace, nothing left after
/// `--rm`.
#[test]
fn unprivileged_user_runs_an_image() {
    let tmp = tempfile::Builder::new()
        .prefix("berth-rootless-img-")
        .tempdir()
        .unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(home.join("xdg")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.py");
    let st = Command::new("python3")
        .arg(script)
        .arg(home.join("layout"))
        .status()
        .unwrap();
    assert!(st.success());
    chown_tree(&home);
    let store = home.join("store");
    let store = store.to_str().unwrap();
    let out = as_nobody(&home, &["--store", store, "image", "import", "layout"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_nobody(
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
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "0\n0\nw\n");
    assert_eq!(fs::read_dir(home.join("store/bundles")).unwrap().count(), 0);
    assert_eq!(
        fs::read_dir(home.join("xdg/berth")).map_or(0, Iterator::count),
        0
    );
}
