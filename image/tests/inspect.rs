//! A rootfs made only to look at files (`berth unpack --inspect`, issue 14, item 11) is
//! mounted nosuid,nodev: an image's setuid-root program run from it by another user does not
//! run as root. A container's rootfs keeps setuid (its bundle directory is 0700 instead),
//! which the control case shows is what an exposed rootfs would give away.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use berth_image::bundle::{create_bundle, remove_bundle, BundleOptions};
use common::layout::{Comp, Layout};
use common::{import_layout, require_root, temp_store, Tar};
use serde_json::json;

fn template() -> serde_json::Value {
    json!({"ociVersion": "1.2.0", "process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}})
}

/// The options of the mount at `path` in /proc/self/mountinfo (per-mount and superblock).
fn mount_options(path: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&want)).then(|| f[5].to_string())
    })
}

/// The effective uid `rootfs/bin/id -u` reports when run as nobody.
fn euid_as_nobody(rootfs: &Path) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(rootfs.join("bin/id"))
        .arg("-u")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_inspect_rootfs_is_nosuid_nodev() {
    require_root!("setpriv", "--help");
    let (tmp, store) = temp_store();
    // Other users may walk down to the bundles, as they could before bundles were 0700.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let id = fs::read("/usr/bin/id").unwrap();
    let layer = Tar::new()
        .dir("bin")
        .file_meta("bin/id", &id, 0o4755, 0, 0)
        .finish();
    let dir = tmp.path().join("layout");
    let mut lay = Layout::new(&dir);
    let desc = lay.image(
        &[(layer, Comp::Gzip)],
        json!({"Cmd": ["sh"]}),
        std::env::consts::ARCH,
    );
    lay.tag(desc, "v1").write_index();
    import_layout(&store, &dir).unwrap();
    for (flat, inspect) in [(false, false), (false, true), (true, true)] {
        let bdir = tmp.path().join(format!("bundle-{flat}-{inspect}"));
        let opts = BundleOptions {
            flat,
            inspect,
            ..BundleOptions::default()
        };
        let b = create_bundle(&store, "layout:v1", &bdir, &template(), &opts).unwrap();
        fs::set_permissions(&b.dir, fs::Permissions::from_mode(0o755)).unwrap();
        let what = format!("flat={flat} inspect={inspect}");
        match mount_options(&b.rootfs) {
            Some(o) if inspect => {
                let o: Vec<&str> = o.split(',').collect();
                assert!(
                    o.contains(&"nosuid") && o.contains(&"nodev"),
                    "{what}: {o:?}"
                );
            }
            Some(o) => assert!(!o.contains("nosuid"), "{what}: {o}"),
            None => panic!("{what}: the rootfs is not a mount"),
        }
        let euid = euid_as_nobody(&b.rootfs);
        if inspect {
            assert_eq!(euid, "65534", "{what}: the setuid bit gave nothing");
        } else {
            assert_eq!(euid, "0", "{what}: a container's rootfs keeps setuid");
        }
        remove_bundle(&store, &b.dir, None).unwrap();
        assert!(mount_options(&b.rootfs).is_none(), "{what}: unmounted");
    }
}
