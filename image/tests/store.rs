//! The content-addressed store: imports from OCI layouts and archives and docker-archives,
//! verification, sharing, removal, pruning and crash consistency.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_image::image::{Digest, Platform};
use berth_image::store::{ImportOptions, Store};
use berth_image::Error;
use common::layout::{self, tar_dir, Comp, Layout};
use common::{count_entries, import_layout, named, temp_store, Tar};
use serde_json::json;

fn base_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.users(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .dir("bin/")
    .file_meta("bin/sh", b"#!sh", 0o755, 0, 0)
    .dir("data/")
    .file("data/old", b"old");
    t.finish()
}

fn mid_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("data/")
        .file("data/.wh..wh..opq", b"")
        .file("data/new", b"new")
        .file("etc/.wh.group", b"");
    t.finish()
}

fn top_layer(tag: &str) -> Vec<u8> {
    let mut t = Tar::new();
    t.file("app", tag.as_bytes());
    t.finish()
}

fn config() -> serde_json::Value {
    json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
}

/// Writes an amd64 image of the gzipped base layer and `top_layer(tag)` compressed with `top`
/// to `lay`; returns its descriptor.
fn app_image(lay: &Layout, tag: &str, top: Comp) -> serde_json::Value {
    lay.image(
        &[(base_layer(), Comp::Gzip), (top_layer(tag), top)],
        config(),
        "amd64",
    )
}

fn layers_in(store: &Store) -> usize {
    count_entries(&store.root().join("layers"))
}

/// A JSON document of an OCI layout at `dir`: `index.json`, or the blob `digest`.
fn read_json(dir: &Path, digest: Option<&str>) -> serde_json::Value {
    let path = match digest {
        Some(d) => dir.join("blobs/sha256").join(&d[7..]),
        None => dir.join("index.json"),
    };
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The digest of the first manifest in the index of the OCI layout at `dir`, and the manifest.
fn first_manifest(dir: &Path) -> (String, serde_json::Value) {
    let index = read_json(dir, None);
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read_json(dir, Some(&digest));
    (digest, manifest)
}

#[test]
fn import_oci_layout_three_compressions() {
    let (tmp, store) = temp_store();
    let dir = tmp.path().join("busy");
    let mut lay = Layout::new(&dir);
    let desc = lay.image(
        &[
            (base_layer(), Comp::Plain),
            (mid_layer(), Comp::Gzip),
            (top_layer("a"), Comp::Zstd),
        ],
        config(),
        "amd64",
    );
    lay.tag(desc, "v1").write_index();
    let imgs = import_layout(&store, &dir).unwrap();
    assert_eq!(imgs.len(), 1);
    let img = &imgs[0];
    assert_eq!(img.name, "busy:v1");
    assert_eq!(img.layers.len(), 3);
    // ChainIDs per config.md.
    let d: Vec<Digest> = img
        .layers
        .iter()
        .map(|l| Digest::parse(&l.diff_id).unwrap())
        .collect();
    let c1 = Digest::chain(None, &d[0]);
    let c2 = Digest::chain(Some(&c1), &d[1]);
    assert_eq!(img.layers[0].chain_id, c1.to_string());
    assert_eq!(img.layers[1].chain_id, c2.to_string());
    assert_eq!(img.layers[0].diff_id, layout::digest(&base_layer()));
    for l in &img.layers {
        let p = store.layer_path(&Digest::parse(&l.chain_id).unwrap());
        assert!(p.is_dir(), "{p:?}");
        assert!(store.blob_path(&Digest::parse(&l.blob).unwrap()).is_file());
    }
    let top = store.layer_path(&Digest::parse(&img.layers[2].chain_id).unwrap());
    assert_eq!(fs::read(top.join("app")).unwrap(), b"a");
    assert_eq!(store.images().unwrap().len(), 1);
    assert_eq!(store.image("busy:v1").unwrap(), *img);
    let cfg = store.image_config(img).unwrap();
    assert_eq!(
        cfg.config().as_ref().unwrap().cmd().as_ref().unwrap(),
        &vec!["/bin/sh".to_string()]
    );
    // Re-import: nothing extracted again.
    let before = fs::metadata(&top).unwrap().modified().unwrap();
    import_layout(&store, &dir).unwrap();
    assert_eq!(fs::metadata(&top).unwrap().modified().unwrap(), before);
    assert_eq!(layers_in(&store), 3);
}

#[test]
fn platform_selection_from_an_index() {
    let (tmp, store) = temp_store();
    let dir = tmp.path().join("multi");
    let mut lay = Layout::new(&dir);
    let amd = lay.image(&[(top_layer("amd64"), Comp::Gzip)], config(), "amd64");
    let arm = lay.image(&[(top_layer("arm64"), Comp::Gzip)], config(), "arm64");
    let mut att = lay.image(&[(top_layer("att"), Comp::Plain)], config(), "amd64");
    att["platform"] = json!({"os": "unknown", "architecture": "unknown"});
    let idx = lay.index_blob(vec![att, arm, amd]);
    lay.tag(idx, "latest").write_index();
    let host = store.import_oci_layout(&dir, &named("multi")).unwrap();
    assert_eq!(host[0].name, "multi:latest");
    if Platform::host().architecture == "amd64" {
        assert_eq!(host[0].platform, "linux/amd64");
    }
    let arm = store
        .import_oci_layout(
            &dir,
            &ImportOptions {
                platform: Platform::parse("linux/arm64/v8").unwrap(),
                ..named("multi-arm")
            },
        )
        .unwrap();
    assert_eq!(arm[0].platform, "linux/arm64");
    let top = store.layer_path(&Digest::parse(&arm[0].layers[0].chain_id).unwrap());
    assert_eq!(fs::read(top.join("app")).unwrap(), b"arm64");
    let err = store
        .import_oci_layout(
            &dir,
            &ImportOptions {
                platform: Platform::parse("linux/s390x").unwrap(),
                ..named("x")
            },
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/arm64"),
        "{msg}"
    );
    assert!(Platform::parse("linux").is_err());
}

#[test]
fn corrupt_blob_and_wrong_diff_id_are_refused() {
    let (tmp, store) = temp_store();
    let dir = tmp.path().join("bad");
    let mut lay = Layout::new(&dir);
    let desc = lay.image(&[(base_layer(), Comp::Gzip)], config(), "amd64");
    lay.tag(desc, "v1").write_index();
    // Corrupt the layer blob (same size).
    let (_, manifest) = first_manifest(&dir);
    let ld = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let lp = dir.join("blobs/sha256").join(&ld[7..]);
    let mut data = fs::read(&lp).unwrap();
    let n = data.len();
    data[n - 10] ^= 1;
    fs::write(&lp, &data).unwrap();
    let err = import_layout(&store, &dir).unwrap_err();
    match &err {
        Error::DigestMismatch { what, expected, .. } => {
            assert!(what.contains(&ld), "{what}");
            assert_eq!(expected, &ld);
        }
        other => panic!("{other}"),
    }
    assert!(store.images().unwrap().is_empty());
    assert_eq!(layers_in(&store), 0);
    assert!(!store.blob_path(&Digest::parse(&ld).unwrap()).exists());

    // A config whose diff_id does not match the layer's content.
    let dir2 = tmp.path().join("bad2");
    let mut lay = Layout::new(&dir2);
    let desc = lay.image(&[(base_layer(), Comp::Zstd)], config(), "amd64");
    lay.tag(desc, "v1").write_index();
    let (_, mut manifest) = first_manifest(&dir2);
    let mut cfg = read_json(&dir2, manifest["config"]["digest"].as_str());
    cfg["rootfs"]["diff_ids"][0] = json!(layout::digest(b"something else"));
    let cb = serde_json::to_vec(&cfg).unwrap();
    manifest["config"] = json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": lay.blob(&cb), "size": cb.len()});
    let mb = serde_json::to_vec(&manifest).unwrap();
    let mut lay2 = Layout::new(&dir2);
    lay2.tag(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": lay2.blob(&mb), "size": mb.len()}), "v1").write_index();
    let err = import_layout(&store, &dir2).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("uncompressed"), "{err}");
    assert_eq!(layers_in(&store), 0);
    assert_eq!(count_entries(&store.root().join("tmp")), 0);
}

#[test]
fn shared_layers_refcounts_rmi_and_prune() {
    let (tmp, store) = temp_store();
    let dir = tmp.path().join("two");
    let mut lay = Layout::new(&dir);
    let a = app_image(&lay, "a", Comp::Gzip);
    let b = app_image(&lay, "b", Comp::Gzip);
    lay.tag(a, "a").tag(b, "b").write_index();
    let imgs = import_layout(&store, &dir).unwrap();
    assert_eq!(imgs.len(), 2);
    assert_eq!(imgs[0].layers[0].chain_id, imgs[1].layers[0].chain_id);
    assert_eq!(layers_in(&store), 3, "the base layer is extracted once");
    // A hold keeps image a's layers after rmi.
    store.hold("ctr1", "two:a").unwrap();
    let st = store.remove_image("two:a").unwrap();
    assert_eq!(st.layers, 0);
    assert_eq!(layers_in(&store), 3);
    store.release("ctr1").unwrap();
    let st = store.prune().unwrap();
    assert_eq!(
        st.layers, 1,
        "only a's top layer goes; the base is shared with b"
    );
    assert!(st.blobs >= 3, "{st:?}");
    assert_eq!(layers_in(&store), 2);
    assert!(matches!(
        store.remove_image("two:a"),
        Err(Error::ImageNotFound(_))
    ));
    store.remove_image("two:b").unwrap();
    assert_eq!(layers_in(&store), 0);
    assert_eq!(count_entries(&store.root().join("blobs/sha256")), 0);
    assert_eq!(count_entries(&store.root().join("l")), 0);
}

#[test]
fn oci_archive_and_docker_archive() {
    let (tmp, store) = temp_store();
    // OCI archive: a tar of a layout.
    let dir = tmp.path().join("lay");
    let mut lay = Layout::new(&dir);
    let d = app_image(&lay, "oci", Comp::Plain);
    lay.tag(d, "1.0").write_index();
    let archive = tmp.path().join("img.tar");
    fs::write(&archive, tar_dir(&dir)).unwrap();
    let imgs = store
        .import_oci_archive(&archive, &named("example.com/app:1.0"))
        .unwrap();
    assert_eq!(imgs[0].name, "example.com/app:1.0");

    // docker save (classic layout: <id>/layer.tar, <hex>.json, manifest.json with RepoTags).
    let ddir = tmp.path().join("docker");
    fs::create_dir_all(ddir.join("l1")).unwrap();
    fs::create_dir_all(ddir.join("l2")).unwrap();
    fs::write(ddir.join("l1/layer.tar"), base_layer()).unwrap();
    fs::write(ddir.join("l2/layer.tar"), top_layer("docker")).unwrap();
    let cfg = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": null, "Healthcheck": {"Test": ["NONE"]}, "ArgsEscaped": true},
        "rootfs": {"type": "layers", "diff_ids": [layout::digest(&base_layer()), layout::digest(&top_layer("docker"))]},
        "history": [{"created_by": "x"}],
        "container_config": {"Hostname": ""},
        "docker_version": "24.0.0",
    });
    let cb = serde_json::to_vec(&cfg).unwrap();
    let cname = format!("{}.json", &layout::digest(&cb)[7..]);
    fs::write(ddir.join(&cname), &cb).unwrap();
    fs::write(
        ddir.join("manifest.json"),
        serde_json::to_vec(&json!([{"Config": cname, "RepoTags": ["busybox:latest", "busybox:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}])).unwrap(),
    )
    .unwrap();
    let darchive = tmp.path().join("docker.tar");
    fs::write(&darchive, tar_dir(&ddir)).unwrap();
    let imgs = store
        .import_docker_archive(&darchive, &ImportOptions::default())
        .unwrap();
    let names: Vec<_> = imgs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["busybox:latest", "busybox:1"]);
    let top = store.layer_path(&Digest::parse(&imgs[0].layers[1].chain_id).unwrap());
    assert_eq!(fs::read(top.join("app")).unwrap(), b"docker");
    assert_eq!(
        imgs[0].layers[0].chain_id,
        store.image("example.com/app:1.0").unwrap().layers[0].chain_id,
        "shared across sources"
    );
    assert_eq!(store.image("busybox").unwrap().name, "busybox:latest");

    // A manifest.json that points outside the archive.
    fs::write(
        ddir.join("manifest.json"),
        serde_json::to_vec(
            &json!([{"Config": "../../etc/passwd", "RepoTags": ["evil:1"], "Layers": []}]),
        )
        .unwrap(),
    )
    .unwrap();
    fs::write(&darchive, tar_dir(&ddir)).unwrap();
    let err = store
        .import_docker_archive(&darchive, &ImportOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("leaves the archive"), "{err}");
}

#[test]
fn stale_temporaries_are_cleaned_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    drop(Store::open(&root).unwrap());
    // What a killed import leaves behind: a half layer and a half blob, named after a dead pid.
    fs::create_dir_all(root.join("tmp/999999999-0-layer/diff/usr")).unwrap();
    fs::write(root.join("tmp/999999999-1-blob"), b"half").unwrap();
    let store = Store::open(&root).unwrap();
    assert_eq!(count_entries(&store.root().join("tmp")), 0);
}

/// The child side of `kill_9_mid_import_leaves_the_store_consistent`.
#[test]
fn child_import() {
    let (Ok(store), Ok(dir)) = (
        std::env::var("BERTH_TEST_STORE"),
        std::env::var("BERTH_TEST_LAYOUT"),
    ) else {
        return;
    };
    let store = Store::open(store).unwrap();
    store
        .import_oci_layout(
            Path::new(&dir),
            &ImportOptions {
                parallel: 1,
                ..ImportOptions::default()
            },
        )
        .unwrap();
}

#[test]
fn kill_9_mid_import_leaves_the_store_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let dir = tmp.path().join("big");
    let mut lay = Layout::new(&dir);
    let mut layers = Vec::new();
    for l in 0..4 {
        let mut t = Tar::new();
        for i in 0..3000 {
            t.file(&format!("d{l}/{}/f{i}", i % 50), &vec![b'x'; 2000]);
        }
        layers.push((t.finish(), Comp::Gzip));
    }
    let desc = lay.image(&layers, config(), "amd64");
    lay.tag(desc, "v1").write_index();
    for delay_ms in [30u64, 150, 400] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_import", "--nocapture"])
            .env("BERTH_TEST_STORE", &root)
            .env("BERTH_TEST_LAYOUT", &dir)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let store = Store::open(&root).unwrap();
        // Every layer present is complete (its layer.json was written before the rename).
        for ent in fs::read_dir(root.join("layers")).unwrap() {
            let p = ent.unwrap().path();
            assert!(p.join("layer.json").is_file(), "incomplete layer {p:?}");
        }
        // Every blob present matches its name.
        for ent in fs::read_dir(root.join("blobs/sha256")).unwrap() {
            let p = ent.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(layout::digest(&fs::read(&p).unwrap())[7..], name);
        }
        assert_eq!(count_entries(&root.join("tmp")), 0);
        // An image is listed only if complete.
        for img in store.images().unwrap() {
            for l in &img.layers {
                assert!(store.has_layer(&Digest::parse(&l.chain_id).unwrap()));
            }
        }
    }
    let store = Store::open(&root).unwrap();
    let imgs = import_layout(&store, &dir).unwrap();
    assert_eq!(imgs[0].layers.len(), 4);
    assert_eq!(layers_in(&store), 4);
}
