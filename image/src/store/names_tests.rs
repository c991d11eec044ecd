//! Image names in the store: normalised when recorded and looked up, older stores' names kept
//! as given re-keyed (or left when they clash or do not parse), and `rmi ID`.

use std::fs;

use super::Store;
use crate::image::Digest;
use crate::Error;

fn config(n: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Env": [format!("N={n}")]},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap()
}

#[test]
fn names_are_normalised_and_refused_as_docker_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store
        .record_image(Some("docker.io/library/app"), &config(1), &[])
        .unwrap();
    assert_eq!(r.name, "app:latest");
    for spelling in [
        "app",
        "app:latest",
        "library/app",
        "index.docker.io/library/app:latest",
    ] {
        assert_eq!(
            store.image(spelling).unwrap().name,
            "app:latest",
            "{spelling}"
        );
    }
    let t = store.tag_image("app", "docker.io/team/x:1").unwrap();
    assert_eq!(t.name, "team/x:1");
    for bad in ["BAD:Name", "../../etc/x", "a b"] {
        let e = store.tag_image("app", bad).unwrap_err();
        assert!(matches!(e, Error::Reference(_)), "{bad}: {e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn an_older_stores_names_are_rekeyed_unless_they_clash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = store.record_image(Some("a"), &config(1), &[]).unwrap();
    let b = store.record_image(Some("b"), &config(2), &[]).unwrap();
    // As an older berth wrote them: one spelled in full, one clashing with a normalised name,
    // one that is no reference.
    let path = dir.path().join("state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    state.as_object_mut().unwrap().remove("names_normalised");
    let images = state["images"].as_object_mut().unwrap();
    let mut full = images.remove("a:latest").unwrap();
    full["name"] = "docker.io/library/a:latest".into();
    images.insert("docker.io/library/a:latest".into(), full);
    let mut clash = images["b:latest"].clone();
    clash["name"] = "docker.io/library/b:latest".into();
    clash["config"] = a.config.clone().into();
    images.insert("docker.io/library/b:latest".into(), clash);
    let mut odd = images["b:latest"].clone();
    odd["name"] = "Odd".into();
    images.insert("Odd".into(), odd);
    fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let names: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        names,
        ["Odd", "a:latest", "b:latest", "docker.io/library/b:latest"]
    );
    assert_eq!(store.image("a").unwrap().config, a.config);
    assert_eq!(store.image("b").unwrap().config, b.config);
    assert_eq!(store.image("Odd").unwrap().config, b.config);
    store.remove_image("Odd").unwrap();
    // The first write keeps the re-keyed names, marked: later loads parse none.
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved["names_normalised"], true);
    assert!(saved["images"].get("a:latest").is_some());
    store.remove_image("docker.io/library/b:latest").unwrap();
    assert_eq!(store.images().unwrap().len(), 2);
}

#[test]
fn rmi_by_id_takes_every_name_and_wants_force_for_several() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store.record_image(Some("one"), &config(1), &[]).unwrap();
    store.tag_image("one", "two").unwrap();
    let id = Digest::parse(&r.config).unwrap();
    let e = store.remove_image_id(&id, false).unwrap_err();
    assert!(
        matches!(&e, Error::MultipleNames { names, .. } if names.len() == 2),
        "{e}"
    );
    assert_eq!(store.images().unwrap().len(), 2);
    let (names, _) = store.remove_image_id(&id, true).unwrap();
    assert_eq!(names, ["one:latest", "two:latest"]);
    assert!(store.images().unwrap().is_empty());
    assert!(matches!(
        store.remove_image_id(&id, true).unwrap_err(),
        Error::ImageNotFound(_)
    ));
    // An untagged image goes by its ID, with or without force.
    let u = store.record_image(None, &config(2), &[]).unwrap();
    let (names, _) = store
        .remove_image_id(&Digest::parse(&u.config).unwrap(), false)
        .unwrap();
    assert!(names.is_empty());
    assert!(store.untagged_images().unwrap().is_empty());
}
