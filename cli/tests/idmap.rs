//! Idmapped bind mounts (`idmap`, `ridmap`): in a user-namespaced container a host directory
//! owned by root shows as owned by the container's root, and files the container creates land
//! as host root; without the option they show as the overflow uid.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{Berth, OutputExt};
use serde_json::json;

#[test]
fn idmapped_bind_mount_maps_ownership() {
    let b = Berth::new();
    let host = b.path().join("shared");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("file"), "x").unwrap();
    let mut c = b.config(&[
        "sh",
        "-c",
        "stat -c %u /mnt/file /tmp/file; echo y > /mnt/made",
    ]);
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200_000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200_000, "size": 65536}]);
    c["root"]["readonly"] = json!(false);
    c["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/mnt", "type": "bind", "source": host, "options": ["rbind", "ridmap"]}),
        json!({"destination": "/tmp", "type": "bind", "source": host, "options": ["bind"]}),
    ]);
    let out = b.run(&b.id("idmap"), &c);
    assert_eq!(out.code(), 0, "{}", out.err());
    let text = out.out();
    let uids: Vec<&str> = text.lines().collect();
    assert_eq!(
        uids,
        ["0", "65534"],
        "idmapped vs plain bind: {}",
        out.out()
    );
    assert_eq!(
        fs::metadata(host.join("made")).unwrap().uid(),
        0,
        "written through the idmap as host root"
    );
    b.assert_clean();
}

#[test]
fn idmap_without_a_user_namespace_or_mappings_is_a_clear_error() {
    let b = Berth::new();
    let mut c = b.config(&["true"]);
    c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/mnt", "type": "bind", "source": b.path(), "options": ["bind", "idmap"]}));
    let id = b.id("noidns");
    let out = b.try_create(&id, &c);
    assert!(!out.status.success());
    assert!(out.err().contains("uidMappings"), "{}", out.err());
    b.assert_no_state(&id);
    b.assert_clean();
}
