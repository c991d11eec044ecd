//! Naming images as docker users do: an image by its ID (full, bare hex or a prefix) however
//! many names it has, `rmi ID` refused for an image with several names unless forced; names
//! checked with the reference grammar of `tag` and `pull`, and normalised (`busybox` is
//! `docker.io/library/busybox:latest`) when stored, looked up and shown, old stores included.

mod common;

use std::fs;
use std::path::Path;

use common::{ImageStore, OutputExt};
use serde_json::{json, Value};

/// One test with a store of its own holding `busybox:latest`; nothing may be left after it.
fn names_test(body: impl FnOnce(&ImageStore)) {
    let i = ImageStore::new(&[], &["--network", "none"]);
    body(&i);
    i.assert_clean();
}

/// The ID (`sha256:<hex>`) of the store's only image.
fn only_id(i: &ImageStore) -> String {
    let list: Value =
        serde_json::from_str(&i.cmd(&["images", "--format", "json"]).ok().out()).unwrap();
    let mut ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["config"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{list}");
    ids[0].to_string()
}

/// `image inspect REF`'s document.
fn inspect(i: &ImageStore, reference: &str) -> Value {
    serde_json::from_str(&i.cmd(&["image", "inspect", reference]).ok().out()).unwrap()
}

fn names(i: &ImageStore) -> Vec<String> {
    i.cmd(&["images", "-q"])
        .ok()
        .out()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn an_image_with_two_names_is_used_by_its_id() {
    names_test(|i| {
        i.cmd(&["tag", "busybox", "other:1"]).ok();
        let id = only_id(i);
        let hex = id.strip_prefix("sha256:").unwrap();
        for r in [id.as_str(), hex, &hex[..12], &hex[..5]] {
            assert_eq!(inspect(i, r)["id"], id.as_str(), "inspect {r}");
        }
        let out = i.run_ok("byid", &["--rm", &hex[..12], "echo", "ran"]);
        assert_eq!(out, "ran\n");
        i.cmd(&["tag", &hex[..12], "third"]).ok();
        assert_eq!(names(i), ["busybox:latest", "other:1", "third:latest"]);

        // rmi by ID: refused while the image has several names, as docker.
        for r in [&hex[..12], id.as_str()] {
            i.cmd(&["rmi", r])
                .fails_with("image is referenced in multiple repositories");
        }
        assert_eq!(names(i).len(), 3);
        // By name: that name only.
        let out = i.cmd(&["rmi", "other:1"]).ok().out();
        assert_eq!(out, "removed other:1\n");
        assert_eq!(names(i), ["busybox:latest", "third:latest"]);
        // Forced by ID: every name, and the image.
        let out = i.cmd(&["rmi", "-f", &hex[..12]]).ok().out();
        assert_eq!(out, "removed busybox:latest\nremoved third:latest\n");
        assert!(names(i).is_empty());
        i.cmd(&["image", "prune"]).ok();
        assert_eq!(
            fs::read_dir(i.store.join("blobs/sha256")).unwrap().count(),
            0
        );
    });
}

#[test]
fn rmi_by_id_of_an_image_with_one_name_removes_it() {
    names_test(|i| {
        let id = only_id(i);
        let out = i.cmd(&["image", "rm", &id[7..19]]).ok().out();
        assert_eq!(out, "removed busybox:latest\n");
        assert!(names(i).is_empty());
        i.cmd(&["rmi", &id[7..19]]).fails_with("not found");
    });
}

#[test]
fn import_names_are_references() {
    names_test(|i| {
        let layout = i.b.path().join("layout");
        for bad in ["BAD:Name", "../../etc/x", "a b", "x:"] {
            let err = i
                .cmd(&["image", "import", "--name", bad, layout.to_str().unwrap()])
                .fails_with("image name: invalid reference");
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(names(i), ["busybox:latest"]);
    });
}

/// A docker-archive directory (`docker save` unpacked) of the OCI layout `layout`'s image,
/// whose `RepoTags` is `tags`.
fn docker_archive(layout: &Path, dir: &Path, tags: &[&str]) {
    let blobs = layout.join("blobs/sha256");
    let read = |d: &str| fs::read(blobs.join(d.strip_prefix("sha256:").unwrap())).unwrap();
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&read(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    fs::create_dir_all(dir).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();
    fs::write(dir.join("config.json"), read(config)).unwrap();
    let mut layers = Vec::new();
    for (n, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let file = format!("layer{n}.tar.gz");
        fs::write(dir.join(&file), read(l["digest"].as_str().unwrap())).unwrap();
        layers.push(file);
    }
    let m = json!([{"Config": "config.json", "RepoTags": tags, "Layers": layers}]);
    fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
}

#[test]
fn names_are_normalised_as_docker_does() {
    names_test(|i| {
        i.cmd(&["rmi", "busybox"]).ok();
        let archive = i.b.path().join("archive");
        docker_archive(
            &i.b.path().join("layout"),
            &archive,
            &[
                "docker.io/library/busybox:latest",
                "index.docker.io/team/app:v1",
            ],
        );
        let out = i
            .cmd(&["image", "import", archive.to_str().unwrap()])
            .ok()
            .out();
        assert!(out.starts_with("busybox:latest sha256:"), "{out}");
        assert_eq!(names(i), ["busybox:latest", "team/app:v1"]);
        // Every spelling of a name is that name.
        for r in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "docker.io/library/busybox:latest",
        ] {
            assert_eq!(inspect(i, r)["name"], "busybox:latest", "{r}");
        }
        assert_eq!(inspect(i, "docker.io/team/app:v1")["name"], "team/app:v1");
        assert_eq!(
            i.run_ok("short", &["--rm", "busybox", "echo", "ok"]),
            "ok\n"
        );
        // Stored normalised: by tag and import --name alike.
        i.cmd(&["tag", "docker.io/library/busybox", "docker.io/team/app"])
            .ok();
        i.cmd(&[
            "image",
            "import",
            "--name",
            "localhost:5000/x/y",
            i.b.path().join("layout").to_str().unwrap(),
        ])
        .ok();
        assert_eq!(
            names(i),
            [
                "busybox:latest",
                "localhost:5000/x/y:latest",
                "team/app:latest",
                "team/app:v1"
            ]
        );
        i.cmd(&["rmi", "docker.io/team/app:latest"]).ok();
        i.cmd(&["rmi", "-f", &only_id(i)]).ok();
    });
}

#[test]
fn names_an_older_store_kept_as_given_still_work() {
    names_test(|i| {
        // As an older berth recorded an import named `docker.io/library/busybox:latest`.
        let path = i.store.join("state.json");
        let mut state: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        state.as_object_mut().unwrap().remove("names_normalised");
        let images = state["images"].as_object_mut().unwrap();
        let mut rec = images.remove("busybox:latest").unwrap();
        rec["name"] = json!("docker.io/library/busybox:latest");
        images.insert("docker.io/library/busybox:latest".into(), rec);
        fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

        assert_eq!(names(i), ["busybox:latest"]);
        assert_eq!(inspect(i, "busybox")["name"], "busybox:latest");
        assert_eq!(i.run_ok("old", &["--rm", "busybox", "echo", "ok"]), "ok\n");
        i.cmd(&["rmi", "docker.io/library/busybox"]).ok();
        assert!(names(i).is_empty());
    });
}
