//! Idmapped bind mounts (`idmap`, `ridmap`): in a user-namespaced container a host directory
//! owned by root shows as owned by the container's root, and files the container creates land
//! as host root; without the option they show as the overflow uid.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{berth_test, OutputExt};
use serde_json::json;

#[test]
fn idmapped_bind_mount_maps_ownership() {
    berth_test(|b| {
        let host = b.dir("shared");
        fs::write(host.join("file"), "x").unwrap();
        let mut c = b.config(&[
            "sh",
            "-c",
            "stat -c %u /mnt/file /tmp/file; echo y > /mnt/made",
        ]);
        common::user_namespace(&mut c, 200_000);
        c["root"]["readonly"] = json!(false);
        c["mounts"].as_array_mut().unwrap().extend([
            json!({"destination": "/mnt", "type": "bind", "source": host, "options": ["rbind", "ridmap"]}),
            json!({"destination": "/tmp", "type": "bind", "source": host, "options": ["bind"]}),
        ]);
        let out = b.run_ok("idmap", &c);
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
    });
}

#[test]
fn idmap_without_a_user_namespace_or_mappings_is_a_clear_error() {
    berth_test(|b| {
        let mut c = b.config(&["true"]);
        common::add_mount(
            &mut c,
            json!({"destination": "/mnt", "type": "bind", "source": b.path(), "options": ["bind", "idmap"]}),
        );
        b.assert_create_fails(&b.id("noidns"), &c, "uidMappings");
    });
}
