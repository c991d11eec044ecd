//! Image archives imported into a fresh store (`Store::import_path`,
//! `import_docker_archive`, `import_oci_archive`): the archive is unpacked by the confined
//! extractor, then `manifest.json` (docker) or `oci-layout` + `index.json` (OCI) lead to
//! configs, manifests and layer blobs that are verified and extracted.
//!
//! Never a panic. Whatever the outcome, nothing is created outside the store, and no
//! import leaves anything in the store's `tmp/`. An import that succeeds gives images whose
//! layers are all extracted and whose config reads back; removing every image and pruning
//! then leaves no blob, layer or short link behind.
//!
//! The first byte picks the archive: raw bytes (as they are, or gzip-compressed), or a
//! docker-archive or OCI archive built from the input with correct digests, sizes and
//! DiffIDs and then damaged as the input says (paths that leave the archive or are
//! symlinks, wrong digests, sizes, media types or diff_ids, platforms, names, versions,
//! documents replaced by raw input). Layers are built from the hostile-name alphabet of
//! `common`. Small limits bound every input; the store lives in `/dev/shm` when there is one
//! (the store fsyncs).
#![no_main]

mod common;

use berth_image::extract::Compression;
use berth_image::image::media;
use berth_image::store::{ImportOptions, Store};
use berth_image::synth::{compress, EntryType, TarWriter};
use berth_image::{Digest, Platform};
use common::{Input, Sandbox};
use serde_json::{json, Value};

const COMPRESSIONS: &[Compression] = &[Compression::None, Compression::Gzip, Compression::Zstd];

/// Image names, valid or not.
const NAMES: &[&str] = &[
    "busybox:latest",
    "example.com/a/b:v1",
    "localhost:5000/x",
    "UPPER:case",
    "",
    "a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "v1",
    "../../etc",
    "a:b:c",
];

/// Paths an archive's documents may name (besides the real one).
const PATHS: &[&str] = &[
    "../outside/sentinel",
    "/etc/passwd",
    "missing",
    "link",
    "dir",
    "dir/",
    "./manifest.json",
    "",
    "blobs/sha256",
];

/// Platforms an index may list.
const PLATFORMS: &[(&str, &str)] = &[
    ("amd64", "linux"),
    ("arm64", "linux"),
    ("amd64", "windows"),
    ("", ""),
];

/// One layer: its blob, media type and DiffID.
struct Layer {
    blob: Vec<u8>,
    media_type: &'static str,
    diff_id: String,
}

fn layers(input: &mut Input<'_>) -> Vec<Layer> {
    (0..1 + input.byte() % 3)
        .map(|_| {
            let tar = common::build_tar(input.slice(48));
            let c = *input.pick(COMPRESSIONS);
            let media_type = match c {
                Compression::None => media::OCI_LAYER,
                Compression::Gzip => media::OCI_LAYER_GZIP,
                Compression::Zstd => media::OCI_LAYER_ZSTD,
            };
            Layer {
                blob: compress(&tar, c).expect("compress in memory"),
                media_type,
                diff_id: Digest::of(&tar).to_string(),
            }
        })
        .collect()
}

/// An image config for `layers`, damaged as the input says.
fn config(input: &mut Input<'_>, layers: &[Layer], arch: &str, os: &str) -> Vec<u8> {
    let mut diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    match input.byte() % 8 {
        0 => {
            diff_ids.pop();
        }
        1 => diff_ids.push(Digest::of(b"other").to_string()),
        2 => diff_ids.reverse(),
        3 => {
            if let Some(d) = diff_ids.first_mut() {
                *d = "sha256:nothex".into();
            }
        }
        4 => return input.slice(200).to_vec(),
        _ => {}
    }
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": os,
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("serialise")
}

/// Adds entries that make the archive's paths misbehave: a symlink out, a directory, a
/// hardlink, `blobs/` as a symlink.
/// `existing` names a file of the archive for a hardlink to point to.
fn extras(t: &mut TarWriter, input: &mut Input<'_>, existing: &str) {
    let flags = input.byte();
    if flags & 1 != 0 {
        t.entry("link", EntryType::Symlink, "/etc/passwd", b"", 0o777);
    }
    if flags & 2 != 0 {
        t.entry("dir/", EntryType::Dir, "", b"", 0o755);
    }
    if flags & 4 != 0 {
        t.entry("hard", EntryType::Hardlink, existing, b"", 0o644);
    }
    if flags & 8 != 0 {
        t.entry("blobs/", EntryType::Symlink, "/", b"", 0o777);
    }
}

fn docker_archive(input: &mut Input<'_>) -> Vec<u8> {
    let layers = layers(input);
    let cfg = config(input, &layers, "amd64", "linux");
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    let mut t = TarWriter::new();
    t.entry(&cfg_name, EntryType::File, "", &cfg, 0o644);
    let mut layer_paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("{i}/layer.tar");
        t.entry(&format!("{i}/"), EntryType::Dir, "", b"", 0o755);
        t.entry(&p, EntryType::File, "", &l.blob, 0o644);
        layer_paths.push(p);
    }
    let damage = input.byte();
    let mut config_path = cfg_name.clone();
    match damage % 8 {
        0 => config_path = (*input.pick(PATHS)).to_string(),
        1 => {
            let i = input.byte() as usize % layer_paths.len();
            layer_paths[i] = (*input.pick(PATHS)).to_string();
        }
        2 => layer_paths.push(layer_paths[0].clone()),
        _ => {}
    }
    let tags: Value = match input.byte() % 4 {
        0 => Value::Null,
        1 => json!([]),
        _ => json!([*input.pick(NAMES)]),
    };
    let manifest = if damage & 0x80 != 0 {
        input.slice(200).to_vec()
    } else {
        serde_json::to_vec(&json!([{
            "Config": config_path,
            "RepoTags": tags,
            "Layers": layer_paths,
        }]))
        .expect("serialise")
    };
    t.entry("manifest.json", EntryType::File, "", &manifest, 0o644);
    extras(&mut t, input, "manifest.json");
    t.finish()
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({
        "mediaType": media_type,
        "digest": Digest::of(data).to_string(),
        "size": data.len(),
    })
}

fn oci_archive(input: &mut Input<'_>) -> Vec<u8> {
    let layers = layers(input);
    let (arch, os) = *input.pick(PLATFORMS);
    let cfg = config(input, &layers, arch, os);
    let mut blobs: Vec<Vec<u8>> = vec![cfg.clone()];
    let mut layer_descs: Vec<Value> = Vec::new();
    for l in &layers {
        layer_descs.push(descriptor(l.media_type, &l.blob));
        blobs.push(l.blob.clone());
    }
    let damage = input.byte();
    let i = input.byte() as usize % layer_descs.len();
    match damage % 8 {
        0 => layer_descs[i]["size"] = json!(layers[i].blob.len() + 1),
        1 => layer_descs[i]["digest"] = json!(Digest::of(b"missing").to_string()),
        2 => {
            layer_descs[i]["mediaType"] = json!(*input.pick(&[
                media::OCI_LAYER_GZIP,
                media::OCI_LAYER_ZSTD,
                media::OCI_CONFIG,
                "application/octet-stream",
            ]))
        }
        3 => layer_descs.push(layer_descs[i].clone()),
        4 => layer_descs[i]["digest"] = json!(*input.pick(PATHS)),
        _ => {}
    }
    let manifest = if damage & 0x40 != 0 {
        input.slice(200).to_vec()
    } else {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": descriptor(media::OCI_CONFIG, &cfg),
            "layers": layer_descs,
        }))
        .expect("serialise")
    };
    blobs.push(manifest.clone());
    let mut top = descriptor(media::OCI_MANIFEST, &manifest);
    if damage & 0x20 != 0 {
        // A nested index that lists the manifest for a platform.
        let mut d = top.clone();
        d["platform"] = json!({"architecture": arch, "os": os});
        let nested = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [d],
        }))
        .expect("serialise");
        blobs.push(nested.clone());
        top = descriptor(media::OCI_INDEX, &nested);
    }
    if damage & 0x10 != 0 {
        top["size"] = json!(input.u16());
    }
    let flags = input.byte();
    let name = *input.pick(NAMES);
    let key = if flags & 1 == 0 {
        "org.opencontainers.image.ref.name"
    } else {
        "io.containerd.image.name"
    };
    if flags & 2 == 0 {
        top["annotations"] = json!({ key: name });
    }
    let mut manifests = vec![top.clone()];
    if flags & 4 != 0 {
        manifests.push(top);
    }
    let index = if flags & 8 != 0 {
        input.slice(200).to_vec()
    } else {
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).expect("serialise")
    };
    let layout = match flags >> 4 & 3 {
        0 => br#"{"imageLayoutVersion":"2.0.0"}"#.to_vec(),
        1 => b"[]".to_vec(),
        _ => br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    };
    let mut t = TarWriter::new();
    t.entry("oci-layout", EntryType::File, "", &layout, 0o644);
    t.entry("index.json", EntryType::File, "", &index, 0o644);
    for b in &blobs {
        let p = format!("blobs/sha256/{}", Digest::of(b).hex());
        t.entry(&p, EntryType::File, "", b, 0o644);
    }
    extras(&mut t, input, "index.json");
    t.finish()
}

/// Paths under `dir`, relative.
fn listing(dir: &std::path::Path) -> Vec<String> {
    common::tree(dir, common::TreeOpts::default())
        .into_keys()
        .collect()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.byte();
    let archive = match sel % 5 {
        0 => input.rest().to_vec(),
        1 => compress(input.rest(), Compression::Gzip).expect("compress in memory"),
        2 | 3 => docker_archive(&mut input),
        _ => oci_archive(&mut input),
    };
    let archive = if sel & 0x80 != 0 {
        compress(&archive, Compression::Zstd).expect("compress in memory")
    } else {
        archive
    };
    let sb = Sandbox::new("import");
    let path = sb.base.join("archive.tar");
    std::fs::write(&path, &archive).expect("write the archive");
    let mut store = Store::open(&sb.dest).expect("open the store");
    store.set_limits(common::small_limits());
    let opts = ImportOptions {
        platform: Platform::parse("linux/amd64").expect("a platform"),
        name: (sel & 0x40 != 0).then(|| (*input.pick(NAMES)).to_string()),
        parallel: 1 + usize::from(sel >> 3 & 1),
    };
    let res = match (sel >> 4) % 3 {
        0 => store.import_path(&path, &opts),
        1 => store.import_docker_archive(&path, &opts),
        _ => store.import_oci_archive(&path, &opts),
    };
    sb.check_with(&["archive.tar"]);
    assert_eq!(
        listing(&sb.dest.join("tmp")),
        Vec::<String>::new(),
        "the import left temporaries ({res:?})"
    );
    if let Ok(records) = &res {
        for r in records {
            let again = store.image(&r.name).expect("an imported image");
            for l in &again.layers {
                let chain = Digest::parse(&l.chain_id).expect("a recorded ChainID");
                assert!(store.has_layer(&chain), "layer {} missing", l.chain_id);
            }
            store.image_config(&again).expect("the config reads back");
        }
        for r in records {
            // Several records may share a name (a tag given twice).
            let _ = store.remove_image(&r.name);
        }
    }
    store.prune().expect("prune");
    for d in ["blobs/sha256", "layers", "l", "tmp"] {
        assert_eq!(
            listing(&sb.dest.join(d)),
            Vec::<String>::new(),
            "{d} after removing every image and pruning ({res:?})"
        );
    }
});
