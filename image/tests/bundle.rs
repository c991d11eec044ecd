//! Bundles: runtime config generation from image configs, user resolution, overlay and flat
//! root filesystems (equal to each other and to umoci's), deep images.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_image::bundle::{
    self, create_bundle, remove_bundle, resolve_user, Bundle, BundleOptions,
};
use berth_image::image::{parse_config, ImageConfig};
use berth_image::store::Store;
use common::layout::{Comp, Layout};
use common::{assert_same, named, require_root, snapshot, temp_store, Snap, Tar, T};
use serde_json::json;

fn rootfs_with_users(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1001:\nwheel:x:10:app,root\naudio:x:29:app\n",
    )
    .unwrap();
}

/// An image config from its JSON.
fn image_config(json: &serde_json::Value) -> ImageConfig {
    parse_config(json.to_string().as_bytes(), "test config").unwrap()
}

/// The runtime config [`template`] and `cfg` give for the rootfs at `rootfs`, with volumes
/// made in `dir`.
fn runtime_config(
    cfg: &ImageConfig,
    rootfs: &Path,
    dir: &Path,
    opts: &BundleOptions,
) -> serde_json::Value {
    bundle::runtime_config(&template(), cfg, rootfs, dir, opts).unwrap()
}

/// A bundle of `image` in `dir` from [`template`]: a flattened rootfs or an overlay, held
/// by `holder` (else by the directory).
fn bundle_of(store: &Store, image: &str, dir: &Path, flat: bool, holder: Option<&str>) -> Bundle {
    let opts = BundleOptions {
        flat,
        holder: holder.map(String::from),
        ..BundleOptions::default()
    };
    create_bundle(store, image, dir, &template(), &opts).unwrap()
}

fn template() -> serde_json::Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "berth",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "annotations": {"org.opencontainers.image.stopSignal": "template-wins"}
    })
}

#[test]
fn config_from_image_config() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    rootfs_with_users(&rootfs);
    let cfg = image_config(&json!({
        "architecture": "amd64", "os": "linux", "author": "me", "created": "2024-01-01T00:00:00Z",
        "config": {
            "User": "app", "Entrypoint": ["/entry"], "Cmd": ["--flag"], "Env": ["PATH=/app/bin", "A=1"],
            "WorkingDir": "/srv", "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
            "Labels": {"org.opencontainers.image.author": "label-wins", "x": "y"},
            "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT"
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    }));
    let spec = runtime_config(&cfg, &rootfs, tmp.path(), &BundleOptions::default());
    let p = &spec["process"];
    assert_eq!(p["args"], json!(["/entry", "--flag"]));
    assert_eq!(p["env"], json!(["TERM=xterm", "PATH=/app/bin", "A=1"]));
    assert_eq!(p["cwd"], json!("/srv"));
    assert_eq!(
        p["user"],
        json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 29]})
    );
    let a = &spec["annotations"];
    assert_eq!(
        a["org.opencontainers.image.exposedPorts"],
        json!("53/udp,80/tcp")
    );
    assert_eq!(a["org.opencontainers.image.author"], json!("label-wins"));
    assert_eq!(a["org.opencontainers.image.os"], json!("linux"));
    assert_eq!(
        a["org.opencontainers.image.created"],
        json!("2024-01-01T00:00:00Z")
    );
    assert_eq!(
        a["org.opencontainers.image.stopSignal"],
        json!("template-wins")
    );
    assert_eq!(a["x"], json!("y"));
    let mounts = spec["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[1]["destination"], json!("/data"));
    assert!(Path::new(mounts[1]["source"].as_str().unwrap()).is_dir());
    assert_eq!(spec["root"]["path"], json!("rootfs"));
    assert_eq!(spec["hostname"], json!("berth"));

    // Overrides: entrypoint drops Cmd; cmd alone keeps Entrypoint; env and user replaced.
    let o = BundleOptions {
        entrypoint: Some(vec!["/bin/sh".into()]),
        env: vec!["A=2".into()],
        user: Some("1:wheel".into()),
        workdir: Some("/tmp".into()),
        ..BundleOptions::default()
    };
    let spec = runtime_config(&cfg, &rootfs, tmp.path(), &o);
    assert_eq!(spec["process"]["args"], json!(["/bin/sh"]));
    assert_eq!(
        spec["process"]["env"],
        json!(["TERM=xterm", "PATH=/app/bin", "A=2"])
    );
    assert_eq!(spec["process"]["user"], json!({"uid": 1, "gid": 10}));
    assert_eq!(spec["process"]["cwd"], json!("/tmp"));
    let o = BundleOptions {
        cmd: Some(vec!["x".into()]),
        ..BundleOptions::default()
    };
    let spec = runtime_config(&cfg, &rootfs, tmp.path(), &o);
    assert_eq!(spec["process"]["args"], json!(["/entry", "x"]));
}

#[test]
fn user_resolution() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    rootfs_with_users(r);
    let u = resolve_user(r, "").unwrap();
    assert_eq!((u.uid, u.gid), (0, 0));
    let u = resolve_user(r, "1000").unwrap();
    assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 1001, 0));
    let u = resolve_user(r, "4242:77").unwrap();
    assert_eq!((u.uid, u.gid), (4242, 77));
    let u = resolve_user(r, "app:audio").unwrap();
    assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 29, 0));
    let err = resolve_user(r, "nobody").unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
    assert!(resolve_user(r, "app:nogroup").is_err());
    // An absolute symlink for /etc/passwd is resolved inside the rootfs, never on the host.
    fs::remove_file(r.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", r.join("etc/passwd")).unwrap();
    assert!(
        resolve_user(r, "root").is_err(),
        "must not read the host's /etc/passwd"
    );
}

fn two_layer_image(tmp: &Path, store: &Store, name: &str) {
    let dir = tmp.join(format!("layout-{name}"));
    let mut lay = Layout::new(&dir);
    let mut base = Tar::new();
    base.users(
        "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
        "root:x:0:\nweb:x:33:\n",
    )
    .dir("var/")
    .dir("var/www/")
    .file("var/www/index.html", b"old")
    .file("var/www/gone.html", b"gone")
    .dir("opt/")
    .file("opt/a", b"a")
    .file_meta("bin/tool", b"bin", 0o4755, 0, 0)
    .symlink("bin/link", "tool")
    .hardlink("bin/hard", "bin/tool");
    let mut top = Tar::new();
    top.dir("var/www/")
        .file("var/www/index.html", b"new")
        .file("var/www/.wh.gone.html", b"")
        .file("opt/b", b"b")
        .file("opt/.wh..wh..opq", b"");
    let desc = lay.image(
        &[(base.finish(), Comp::Gzip), (top.finish(), Comp::Zstd)],
        json!({"Cmd": ["/bin/tool"], "User": "web"}),
        "amd64",
    );
    lay.tag(desc, "1").write_index();
    store.import_oci_layout(&dir, &named(name)).unwrap();
}

#[test]
fn overlay_and_flat_bundles() {
    require_root!();
    let (tmp, store) = temp_store();
    two_layer_image(tmp.path(), &store, "web");
    let ob = tmp.path().join("bundle-overlay");
    let b = bundle_of(&store, "web", &ob, false, Some("c1"));
    assert!(b.overlay);
    // Other users cannot reach the image's setuid programs through the bundle.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&ob).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(b.config["process"]["user"], json!({"uid": 33, "gid": 33}));
    assert_eq!(b.config["process"]["args"], json!(["/bin/tool"]));
    let written: serde_json::Value =
        serde_json::from_slice(&fs::read(ob.join("config.json")).unwrap()).unwrap();
    assert_eq!(written, b.config);
    let fb = tmp.path().join("bundle-flat");
    let f = bundle_of(&store, "web:latest", &fb, true, Some("c2"));
    assert!(!f.overlay);
    let snap = Snap {
        mtimes: true,
        no_overlay_xattrs: true,
        ..Snap::default()
    };
    let a = snapshot(&b.rootfs, snap);
    assert_same(
        &a,
        &snapshot(&f.rootfs, snap),
        "overlay rootfs vs flat rootfs",
    );
    assert_eq!(
        fs::read(b.rootfs.join("var/www/index.html")).unwrap(),
        b"new"
    );
    assert!(!b.rootfs.join("var/www/gone.html").exists());
    assert!(!b.rootfs.join("opt/a").exists());
    // Writes land in the bundle's upper layer, never in the shared layers.
    fs::write(b.rootfs.join("opt/written"), b"w").unwrap();
    assert!(ob.join("upper/opt/written").exists());
    // The image can be removed while bundles hold its layers.
    store.remove_image("web").unwrap();
    assert!(fs::read(b.rootfs.join("bin/tool")).is_ok());
    remove_bundle(&store, &ob, Some("c1")).unwrap();
    remove_bundle(&store, &fb, Some("c2")).unwrap();
    assert!(!ob.exists());
    store.prune().unwrap();
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        0
    );
}

/// 150 layers: more than a classic overlay option string can name.
#[test]
fn deep_image_overlay() {
    require_root!();
    let (tmp, store) = temp_store();
    let dir = tmp.path().join("deep");
    let mut lay = Layout::new(&dir);
    let mut layers = Vec::new();
    for i in 0..150 {
        let mut t = Tar::new();
        t.file(&format!("layer{i}"), format!("{i}").as_bytes())
            .file("top", format!("{i}").as_bytes());
        layers.push((t.finish(), Comp::Plain));
    }
    let desc = lay.image(&layers, json!({"Cmd": ["/x"]}), "amd64");
    lay.tag(desc, "1").write_index();
    store.import_oci_layout(&dir, &named("deep")).unwrap();
    let bd = tmp.path().join("b");
    let b = bundle_of(&store, "deep", &bd, false, None);
    assert_eq!(fs::read(b.rootfs.join("top")).unwrap(), b"149");
    assert_eq!(fs::read(b.rootfs.join("layer0")).unwrap(), b"0");
    assert_eq!(fs::read_dir(&b.rootfs).unwrap().count(), 151);
    remove_bundle(&store, &bd, None).unwrap();
}

/// The flattened rootfs equals what umoci (from Debian's package) unpacks from the same
/// layout.
#[test]
fn flat_rootfs_matches_umoci() {
    require_root!("umoci", "--version");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout-umoci");
    let mut lay = Layout::new(&dir);
    let mut l1 = Tar::new();
    l1.dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .dir("usr/")
        .dir("usr/lib/")
        .file_meta("usr/lib/a.so", b"a", 0o755, 0, 0)
        .file_meta("usr/lib/b.so", b"b", 0o644, 100, 100)
        .symlink("lib", "usr/lib")
        // The link header repeats the inode's metadata, as GNU tar writes it: umoci keeps the
        // target's metadata, podman and containerd (and berth) apply the link header's; the
        // podman test covers headers that differ.
        .raw(
            b"usr/lib/a2.so",
            T::Link,
            b"usr/lib/a.so",
            b"",
            0o755,
            0,
            0,
            1_600_000_000,
        )
        .dir("var/")
        .dir("var/cache/")
        .file("var/cache/x", b"x")
        .file("var/cache/y", b"y");
    let mut l2 = Tar::new();
    l2.dir("var/cache/")
        .file("var/cache/z", b"z")
        .file("var/cache/.wh..wh..opq", b"")
        .file("usr/lib/.wh.b.so", b"")
        .file_meta("usr/bin/su", b"su", 0o4755, 0, 0)
        .pax_file("usr/bin/ping", b"ping", &[("SCHILY.xattr.user.k", b"v")]);
    let desc = lay.image(
        &[(l1.finish(), Comp::Gzip), (l2.finish(), Comp::Gzip)],
        json!({"Cmd": ["/bin/sh"]}),
        "amd64",
    );
    lay.tag(desc, "t").write_index();
    let theirs = tmp.path().join("umoci");
    let out = Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:t", dir.display()))
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.import_oci_layout(&dir, &named("u")).unwrap();
    let bd = tmp.path().join("bundle");
    let b = bundle_of(&store, "u", &bd, true, None);
    let snap = Snap {
        mtimes: true,
        ..Snap::default()
    };
    assert_same(
        &snapshot(&b.rootfs, snap),
        &snapshot(&theirs, snap),
        "berth flat vs umoci raw unpack",
    );
    remove_bundle(&store, &bd, None).unwrap();
}

/// Volumes start with the image's content at their path, read inside the rootfs: a symlink
/// in the image (absolute or climbing) is copied as a symlink or resolved inside the image,
/// never to host files.
#[test]
fn volumes_are_seeded_from_the_image() {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    rootfs_with_users(&rootfs);
    let data = rootfs.join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("sub/file"), "content").unwrap();
    fs::set_permissions(data.join("sub/file"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o750)).unwrap();
    symlink("/etc/passwd", data.join("abs")).unwrap();
    symlink("../../../../../../etc", rootfs.join("climb")).unwrap();
    let cfg = image_config(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Volumes": {"/data": {}, "/climb": {}, "/missing": {}}},
        "rootfs": {"type": "layers", "diff_ids": []}
    }));
    let spec = runtime_config(&cfg, &rootfs, tmp.path(), &BundleOptions::default());
    let src = |dest: &str| {
        let m = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == json!(dest))
            .unwrap();
        Path::new(m["source"].as_str().unwrap()).to_path_buf()
    };
    let v = src("/data");
    assert_eq!(fs::read_to_string(v.join("sub/file")).unwrap(), "content");
    assert_eq!(
        fs::metadata(v.join("sub/file")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(fs::metadata(&v).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(
        fs::read_link(v.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    // /climb resolves inside the image: its /etc (passwd and group), not the host's.
    let c = src("/climb");
    let mut names: Vec<_> = fs::read_dir(&c)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["group", "passwd"]);
    assert_eq!(
        fs::metadata(c.join("passwd")).unwrap().len(),
        fs::metadata(rootfs.join("etc/passwd")).unwrap().len()
    );
    assert_eq!(fs::read_dir(src("/missing")).unwrap().count(), 0);
}
