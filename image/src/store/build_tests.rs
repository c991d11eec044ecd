//! Built images (named and untagged), the build cache, and what prune keeps of them.

use std::fs;

use super::{LayerCompression, LayerRecord, Store};
use crate::image::{self, Digest};

fn config(tag: &str, layers: &[&LayerRecord]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "arm64", "os": "linux",
        "config": {"Labels": {"step": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

/// A layer holding one file `name`, on `parent`.
fn layer(store: &Store, name: &str, parent: Option<&LayerRecord>) -> LayerRecord {
    let up = store.scratch_dir("t").unwrap().join("upper");
    fs::create_dir(&up).unwrap();
    fs::write(up.join(name), name).unwrap();
    let parent = parent.map(|p| Digest::parse(&p.chain_id).unwrap());
    store
        .commit_layer(&up, parent.as_ref(), LayerCompression::Gzip)
        .unwrap()
}

fn has_layer(store: &Store, l: &LayerRecord) -> bool {
    store.has_layer(&Digest::parse(&l.chain_id).unwrap())
}

#[test]
fn record_cache_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let guard = store.build_guard().unwrap();
    let l1 = layer(&store, "one", None);
    let l2 = layer(&store, "two", Some(&l1));

    let named = store
        .record_image(Some("app"), &config("a", &[&l1]), std::slice::from_ref(&l1))
        .unwrap();
    assert_eq!(
        (named.name.as_str(), named.platform.as_str()),
        ("app:latest", "linux/arm64")
    );
    assert_eq!(store.image("app").unwrap(), named);
    let m = store
        .read_blob_document(&Digest::parse(&named.manifest).unwrap())
        .unwrap();
    let m = image::parse_manifest(&m, "manifest").unwrap();
    assert_eq!(m.layers().len(), 1);
    assert_eq!(m.layers()[0].digest().to_string(), l1.blob);
    assert_eq!(m.config().digest().to_string(), named.config);
    assert_eq!(
        m.media_type().as_ref().map(ToString::to_string).as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );

    let untagged = store
        .record_image(None, &config("u", &[&l1]), std::slice::from_ref(&l1))
        .unwrap();
    assert_eq!(untagged.name, "");
    assert_eq!(
        store.untagged_images().unwrap(),
        std::slice::from_ref(&untagged)
    );
    assert_eq!(store.images().unwrap(), std::slice::from_ref(&named));
    assert_eq!(store.image(&untagged.config).unwrap(), untagged);

    let both = [l1.clone(), l2.clone()];
    let cached = store
        .cache_put("key", &config("c", &[&l1, &l2]), &both)
        .unwrap();
    assert_eq!(store.cache_get("key").unwrap(), Some(cached.clone()));
    assert_eq!(store.cache_get("other").unwrap(), None);

    // Refused: DiffIDs that are not the layers', a chain that does not chain.
    assert!(store
        .record_image(None, &config("x", &[&l2]), &both)
        .is_err());
    let mut bad = l2.clone();
    bad.chain_id.clone_from(&bad.diff_id);
    assert!(store
        .record_image(None, &config("x", &[&l2]), std::slice::from_ref(&bad))
        .is_err());
    drop(guard);

    // The untagged image keeps l1, the cache l2.
    store.remove_image("app").unwrap();
    assert!(has_layer(&store, &l1) && has_layer(&store, &l2));
    assert!(store.has_blob(&Digest::parse(&cached.manifest).unwrap()));
    assert!(!store.has_blob(&Digest::parse(&named.manifest).unwrap()));

    // A cache entry whose layer went missing is no hit.
    let l2_dir = store.layer_path(&Digest::parse(&l2.chain_id).unwrap());
    let moved = dir.path().join("moved");
    fs::rename(l2_dir.parent().unwrap(), &moved).unwrap();
    assert_eq!(store.cache_get("key").unwrap(), None);
    fs::rename(&moved, l2_dir.parent().unwrap()).unwrap();

    store.prune_build_cache().unwrap();
    assert_eq!(store.cache_get("key").unwrap(), None);
    assert!(has_layer(&store, &l1) && !has_layer(&store, &l2));

    // A name for the untagged image untags it; rmi by ID for untagged ones.
    store.tag_image(&untagged.config, "later").unwrap();
    assert!(store.untagged_images().unwrap().is_empty());
    store.remove_image("later").unwrap();
    let again = store
        .record_image(None, &config("u", &[&l1]), std::slice::from_ref(&l1))
        .unwrap_err();
    assert!(again.to_string().contains("missing"), "{again}");
    let l1 = layer(&store, "one", None);
    let u = store
        .record_image(None, &config("u", &[&l1]), std::slice::from_ref(&l1))
        .unwrap();
    store
        .remove_image(Digest::parse(&u.config).unwrap().hex())
        .unwrap();
    assert!(store.untagged_images().unwrap().is_empty());
    assert!(!has_layer(&store, &l1));
    let u = store.record_image(None, &config("u", &[]), &[]).unwrap();
    store.prune_untagged().unwrap();
    assert!(store.image(&u.config).is_err());
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    let state = fs::read_to_string(store.root().join("state.json")).unwrap();
    assert!(
        !state.contains("untagged") && !state.contains("build_cache"),
        "{state}"
    );
}

#[test]
fn old_state_files_load() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("state.json"),
        r#"{"images": {}, "holds": {}}"#,
    )
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.untagged_images().unwrap().is_empty());
    assert_eq!(store.cache_get("k").unwrap(), None);
}

#[test]
fn prune_waits_for_build_guards() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let guard = store.build_guard().unwrap();
    let l = layer(&store, "fresh", None);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let pruner = s.spawn(|| {
            let other = Store::open(dir.path()).unwrap();
            let stats = other.prune().unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            stats
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !done.load(std::sync::atomic::Ordering::SeqCst),
            "prune ran during a build"
        );
        assert!(has_layer(&store, &l));
        drop(guard);
        let stats = pruner.join().unwrap();
        assert_eq!(
            (stats.layers, stats.blobs),
            (1, 1),
            "unrecorded once the build is over"
        );
    });
}

/// A killed build's scratch directory with a bind mount in it (as its overlay would be): the
/// next open detaches the mount and removes the directory, never deleting through the mount;
/// one holding a reclaim marker is left for its owner, who removes it with
/// `remove_scratch`.
#[test]
fn dead_scratch_is_removed_without_deleting_through_its_mounts() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to mount");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), "keep").unwrap();
    // No process has a pid this large (pid_max is at most 2^22).
    let dead = store.root().join("tmp/4000000000-0-build");
    let marked = store.root().join("tmp/4000000001-0-build");
    for d in [&dead, &marked] {
        fs::create_dir_all(d.join("rootfs")).unwrap();
        rustix::mount::mount_bind(&outside, d.join("rootfs")).unwrap();
    }
    fs::write(marked.join(super::RECLAIM_MARKER), "{}").unwrap();
    let store = Store::open(store.root()).unwrap();
    assert!(!dead.exists());
    assert!(
        marked.join("rootfs/precious").exists(),
        "the marked one stays"
    );
    assert_eq!(store.dead_scratch().unwrap(), vec![marked.clone()]);
    assert!(store.remove_scratch(&marked).unwrap());
    assert!(!store.remove_scratch(&marked).unwrap(), "already gone");
    assert!(store.remove_scratch(&outside).is_err(), "not in tmp/");
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "keep"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = store.root().to_str().unwrap();
    assert!(!mounts.contains(root), "mounts left under {root}");
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}
