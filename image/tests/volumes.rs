//! Image volumes seeded from hostile images (issue 14, item 7): a huge sparse file keeps its
//! holes, and what seeding copies is bounded over all of a bundle's volumes, with the
//! bundle, its volumes and its hold on the image gone after the error.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use berth_image::bundle::{self, create_bundle, BundleOptions};
use berth_image::extract::Limits;
use berth_image::image::parse_config;
use berth_image::Error;
use common::layout::{Comp, Layout};
use common::{import_layout, temp_store, Tar};
use serde_json::json;

const GIB: u64 = 1 << 30;

fn template() -> serde_json::Value {
    json!({"ociVersion": "1.2.0", "process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}})
}

#[test]
fn a_sparse_file_of_100_gib_is_seeded_as_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir_all(rootfs.join("data")).unwrap();
    let f = fs::File::create(rootfs.join("data/sparse")).unwrap();
    f.set_len(100 * GIB).unwrap();
    for (off, text) in [(0, "head"), (50 * GIB, "middle"), (100 * GIB - 4, "tail")] {
        f.write_all_at(text.as_bytes(), off).unwrap();
    }
    drop(f);
    let cfg = parse_config(
        json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Volumes": {"/data": {}}},
            "rootfs": {"type": "layers", "diff_ids": []}
        })
        .to_string()
        .as_bytes(),
        "test config",
    )
    .unwrap();
    // The default limits: 100 GiB of data per bundle would not fit the holes as data.
    let bdir = tmp.path().join("bundle");
    fs::create_dir(&bdir).unwrap();
    bundle::runtime_config(&template(), &cfg, &rootfs, &bdir, &BundleOptions::default()).unwrap();
    let copy = bdir.join("volumes/0/sparse");
    let md = fs::metadata(&copy).unwrap();
    assert_eq!(md.len(), 100 * GIB);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} bytes on disk",
        md.blocks() * 512
    );
    let f = fs::File::open(&copy).unwrap();
    for (off, text) in [(0, "head"), (50 * GIB, "middle"), (100 * GIB - 4, "tail")] {
        let mut buf = vec![0; text.len()];
        f.read_exact_at(&mut buf, off).unwrap();
        assert_eq!(buf, text.as_bytes());
    }
    let mut buf = [7u8; 16];
    f.read_exact_at(&mut buf, 10 * GIB).unwrap();
    assert_eq!(buf, [0; 16], "a hole reads as zeros");
}

fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn seeding_is_bounded_over_all_volumes_and_leaves_nothing() {
    let (tmp, mut store) = temp_store();
    // 600 KiB of data, seeded twice (two spellings of one path): over a budget of 1 MiB.
    let layer = Tar::new()
        .dir("data")
        .file("data/blob", &vec![1u8; 600 << 10])
        .finish();
    let dir = tmp.path().join("layout");
    let mut lay = Layout::new(&dir);
    let cfg = json!({"Cmd": ["sh"], "Volumes": {"/data": {}, "/data/": {}}});
    let desc = lay.image(&[(layer, Comp::Gzip)], cfg, std::env::consts::ARCH);
    lay.tag(desc, "v1").write_index();
    import_layout(&store, &dir).unwrap();
    store.set_limits(Limits {
        max_volume_bytes: 1 << 20,
        ..Limits::default()
    });
    let bdir = tmp.path().join("bundle");
    let opts = BundleOptions {
        flat: true,
        ..BundleOptions::default()
    };
    let err = create_bundle(&store, "layout:v1", &bdir, &template(), &opts).unwrap_err();
    match &err {
        Error::Limit { what, limit, .. } => {
            assert_eq!(*limit, "BERTH_MAX_VOLUME_BYTES");
            assert!(
                what.starts_with("volume /data") && what.ends_with("/blob"),
                "{err}"
            );
        }
        other => panic!("expected a limit error, got {other}"),
    }
    assert!(
        !bdir.exists(),
        "the partial bundle is removed: {:?}",
        names(&bdir)
    );
    // The hold was released: the same holder may hold the image again.
    let holder = bdir.display().to_string();
    store.hold(&holder, "layout:v1").unwrap();
    store.release(&holder).unwrap();
    // Within the budget it is seeded.
    store.set_limits(Limits::default());
    let b = create_bundle(&store, "layout:v1", &bdir, &template(), &opts).unwrap();
    assert_eq!(names(&b.dir.join("volumes")).len(), 2);
    bundle::remove_bundle(&store, &b.dir, None).unwrap();
}
