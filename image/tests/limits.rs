//! Hostile inputs that cost without bound unless limited (issue 14, item 5): decompression
//! bombs in gzip and zstd, an image whose layers add up, a layer that would fill the disk,
//! floods of PAX and GNU extension headers and of extended attributes. Every attack is run:
//! the hostile stream is generated here (a bomb as the same compressed member of 1 MiB of
//! zeros repeated, which decoders read back to back), and each must fail with an error that
//! names the layer or entry and the limit, leaving nothing in the store.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_image::extract::{
    extract_layer, extract_layer_single_thread, extract_layer_with_workers, ExtractOptions, Limits,
};
use berth_image::image::Digest;
use berth_image::store::{BlobSource, ImportOptions, Store};
use berth_image::Error;
use common::layout::{self, Layout};
use common::{import_layout, require_root, Tar};
use serde_json::json;

const MIB: u64 = 1 << 20;
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A ustar header for a regular file `name` that declares `size` bytes.
fn file_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// An extension header of type `typ` (`x`, `g`, `L`, `V`, ...) declaring `size` bytes.
fn ext_header(typ: u8, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path("././@ext").unwrap();
    h.set_entry_type(tar::EntryType::new(typ));
    h.set_size(size);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A PAX extended header of `typ` holding `records`, padded to whole blocks.
fn pax(typ: u8, records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, v) in records {
        // The length counts itself: find the width that fits.
        let rest = 1 + k.len() + 1 + v.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut out = ext_header(typ, data.len() as u64);
    out.extend_from_slice(&data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// A compressed tar whose one file `bomb` declares `size` bytes of zeros (a multiple of
/// 1 MiB): the header, then `size / 1 MiB` copies of one compressed MiB of zeros.
fn bomb(size: u64, compress: fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let mut out = compress(&file_header("bomb", size));
    let mib = compress(&vec![0; MIB as usize]);
    for _ in 0..size / MIB {
        out.extend_from_slice(&mib);
    }
    out
}

/// The limit an error reports, and the error's text.
fn limit_of(err: &Error) -> (&'static str, String) {
    match err {
        Error::Limit { limit, .. } => (limit, err.to_string()),
        other => panic!("expected a limit error, got {other:?}: {other}"),
    }
}

/// Bytes the tree below `dir` takes on disk.
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        total += md.blocks() * 512;
        if md.is_dir() {
            total += disk_usage(&e.path());
        }
    }
    total
}

fn small(limits: Limits) -> ExtractOptions {
    ExtractOptions {
        limits,
        ..ExtractOptions::default()
    }
}

#[test]
fn gzip_and_zstd_bombs_stop_at_the_layer_limit() {
    // 8 GiB of zeros: about 8 MB of gzip, 300 KB of zstd.
    let gzip = bomb(8 << 30, gz);
    let zstd = bomb(8 << 30, zst);
    assert!(gzip.len() < 10 << 20 && zstd.len() < 1 << 20);
    let opts = small(Limits {
        max_layer_bytes: 8 * MIB,
        ..Limits::default()
    });
    for (what, blob, media) in [("gzip", &gzip, GZIP), ("zstd", &zstd, ZSTD)] {
        for workers in [None, Some(0), Some(2)] {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("blob");
            fs::write(&path, blob).unwrap();
            let dest = tmp.path().join("dest");
            fs::create_dir(&dest).unwrap();
            let reader = berth_image::open_layer(&path, Some(media)).unwrap();
            let err = match workers {
                None => extract_layer_single_thread(reader, &dest, &opts),
                Some(n) => extract_layer_with_workers(reader, &dest, &opts, n),
            }
            .unwrap_err();
            let (limit, text) = limit_of(&err);
            assert_eq!(limit, "BERTH_MAX_LAYER_BYTES", "{what}: {text}");
            assert!(text.contains("8388608"), "{text}");
            let used = disk_usage(&dest);
            assert!(used <= 8 * MIB, "{what}: {used} bytes written");
        }
    }
}

#[test]
fn data_after_the_end_of_the_archive_is_bounded_too() {
    // A valid empty archive, then gigabytes of zeros the DiffID would have to cover.
    let mut head = Tar::new().file("a", b"x").finish();
    head.truncate(1024);
    let mut blob = gz(&head);
    let mib = gz(&vec![0; MIB as usize]);
    for _ in 0..4096 {
        blob.extend_from_slice(&mib);
    }
    let tmp = tempfile::tempdir().unwrap();
    let opts = small(Limits {
        max_layer_bytes: 16 * MIB,
        ..Limits::default()
    });
    let reader = flate2::read::MultiGzDecoder::new(&blob[..]);
    let err = extract_layer(reader, tmp.path(), &opts).unwrap_err();
    assert_eq!(limit_of(&err).0, "BERTH_MAX_LAYER_BYTES");
}

/// Blobs of an OCI layout served as a registry would (for the pipelined pull path).
struct LayoutBlobs(PathBuf);

impl BlobSource for LayoutBlobs {
    fn open(&self, digest: &Digest) -> berth_image::Result<Box<dyn Read + Send>> {
        let p = self.0.join("blobs/sha256").join(digest.hex());
        Ok(Box::new(fs::File::open(p).unwrap()))
    }
}

/// Names in a store directory (`tmp`, `layers`, `l`).
fn names_in(store: &Store, sub: &str) -> Vec<String> {
    fs::read_dir(store.root().join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn assert_nothing_left(store: &Store) {
    for sub in ["tmp", "layers", "l"] {
        assert_eq!(names_in(store, sub), Vec::<String>::new(), "{sub}/");
    }
    assert!(store.images().unwrap().is_empty());
}

/// An OCI layout at `dir` with one image `bomb:v1` of the given layer blobs; returns the
/// manifest's digest and size.
fn layout_of(dir: &Path, layers: &[(Vec<u8>, &str, String)]) -> (Digest, u64) {
    let mut lay = Layout::new(dir);
    let desc = lay.image_of_blobs(layers, json!({}), std::env::consts::ARCH);
    let md = Digest::parse(desc["digest"].as_str().unwrap()).unwrap();
    let size = desc["size"].as_u64().unwrap();
    lay.tag(desc, "v1").write_index();
    (md, size)
}

#[test]
fn a_bomb_imported_into_the_store_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let blob = bomb(8 << 30, zst);
    let blob_digest = layout::digest(&blob);
    let diff = format!("sha256:{}", "0".repeat(64));
    let dir = tmp.path().join("layout");
    let (manifest, size) = layout_of(&dir, &[(blob, ZSTD, diff)]);
    let mut store = Store::open(tmp.path().join("store")).unwrap();
    store.set_limits(Limits {
        max_layer_bytes: 8 * MIB,
        ..Limits::default()
    });
    // Pulled (the blob streams in while it is extracted) and imported from the layout.
    let src = LayoutBlobs(dir.clone());
    let opts = ImportOptions::default();
    let err = store
        .import_from(&src, "bomb:v1", &manifest, Some(size), &opts)
        .unwrap_err();
    let (limit, text) = limit_of(&err);
    assert_eq!(limit, "BERTH_MAX_LAYER_BYTES");
    assert!(text.contains(&blob_digest), "the layer is named: {text}");
    assert_nothing_left(&store);
    assert!(!store.has_blob(&Digest::parse(&blob_digest).unwrap()));
    let err = store.import_oci_layout(&dir, &opts).unwrap_err();
    assert!(err.to_string().contains(&blob_digest), "{err}");
    assert_eq!(limit_of(&err).0, "BERTH_MAX_LAYER_BYTES");
    assert_nothing_left(&store);
}

#[test]
fn an_image_s_layers_share_one_budget() {
    let tmp = tempfile::tempdir().unwrap();
    // Three honest layers of 6 MiB each: every one within the layer limit, not all three
    // within the image's.
    let layers: Vec<_> = (0..3)
        .map(|i| {
            let tar = Tar::new()
                .file(&format!("f{i}"), &vec![i as u8; 6 * MIB as usize])
                .finish();
            (zst(&tar), ZSTD, layout::digest(&tar))
        })
        .collect();
    let dir = tmp.path().join("layout");
    layout_of(&dir, &layers);
    let mut store = Store::open(tmp.path().join("store")).unwrap();
    store.set_limits(Limits {
        max_layer_bytes: 8 * MIB,
        max_image_bytes: 15 * MIB,
        ..Limits::default()
    });
    let err = import_layout(&store, &dir).unwrap_err();
    let (limit, text) = limit_of(&err);
    assert_eq!(limit, "BERTH_MAX_IMAGE_BYTES", "{text}");
    assert!(
        text.contains("image layout:v1"),
        "the image is named: {text}"
    );
    assert!(store.images().unwrap().is_empty());
    assert_eq!(names_in(&store, "tmp"), Vec::<String>::new());
    // Within the budget it imports.
    store.set_limits(Limits {
        max_image_bytes: 20 * MIB,
        ..*store.limits()
    });
    import_layout(&store, &dir).unwrap();
}

/// Unmounts a test filesystem on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_bomb_that_would_fill_the_disk_stops_at_the_reserve_with_default_limits() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    let _m = Mounted(mnt.clone());
    // The default limits: 100 GiB per layer, a reserve of min(1 GiB, 1/20 of the disk).
    let mut store = Store::open(mnt.join("store")).unwrap();
    store.set_limits(Limits::default());
    let blob = bomb(8 << 30, zst);
    let dir = tmp.path().join("layout");
    let diff = format!("sha256:{}", "0".repeat(64));
    let (manifest, size) = layout_of(&dir, &[(blob, ZSTD, diff)]);
    let err = store
        .import_from(
            &LayoutBlobs(dir),
            "bomb:v1",
            &manifest,
            Some(size),
            &ImportOptions::default(),
        )
        .unwrap_err();
    let (limit, text) = limit_of(&err);
    assert_eq!(limit, "BERTH_MIN_FREE_BYTES", "{text}");
    assert_nothing_left(&store);
    let st = rustix::fs::statvfs(&mnt).unwrap();
    assert!(
        st.f_bavail * st.f_frsize > 150 * MIB,
        "the partial layer was removed"
    );
}

#[test]
fn a_flood_of_pax_headers_before_one_entry_is_refused_with_default_limits() {
    // Thousands of extended headers, each well under the 1 MiB record limit, all for one
    // entry: without a cap per entry they would pile up in memory.
    let comment = vec![b'c'; 1000];
    let xattr = |i: usize| format!("SCHILY.xattr.user.k{i}");
    for typ in [b'x', b'g'] {
        let mut stream = Vec::new();
        for i in 0..10_000 {
            let key = xattr(i);
            stream.extend(pax(typ, &[(&key, &comment)]));
        }
        stream.extend(file_header("victim", 0));
        let tmp = tempfile::tempdir().unwrap();
        let err = extract_layer(&stream[..], tmp.path(), &ExtractOptions::default()).unwrap_err();
        let (limit, text) = limit_of(&err);
        assert_eq!(limit, "BERTH_MAX_ENTRY_META", "{text}");
        assert!(text.contains("tar stream at byte"), "{text}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
    // GNU long names and volume labels count too; a label that declares a terabyte is
    // refused at its header, not skipped for an hour.
    let mut stream = Vec::new();
    for _ in 0..10_000 {
        let mut h = ext_header(b'L', 600);
        h.extend_from_slice(&[b'n'; 1024]);
        stream.extend(h);
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = extract_layer(&stream[..], tmp.path(), &ExtractOptions::default()).unwrap_err();
    assert_eq!(limit_of(&err).0, "BERTH_MAX_ENTRY_META");
    let err = extract_layer(
        &ext_header(b'V', 1 << 40)[..],
        tmp.path(),
        &ExtractOptions::default(),
    )
    .unwrap_err();
    assert_eq!(limit_of(&err).0, "BERTH_MAX_ENTRY_META");
}

#[test]
fn pax_metadata_per_layer_is_bounded() {
    // Every entry carries one PAX header of almost 1 MiB (under both the record and the
    // per-entry limits): the layer's total is what stops it. Gzip makes the stream tiny.
    let comment = vec![b'c'; (MIB - 100) as usize];
    let mut raw = Vec::new();
    for i in 0..24 {
        raw.extend(pax(b'x', &[("comment", &comment)]));
        raw.extend(file_header(&format!("f{i}"), 0));
    }
    let blob = gz(&raw);
    assert!(blob.len() < (raw.len() / 100), "{} bytes", blob.len());
    let opts = small(Limits {
        max_layer_meta: 8 * MIB,
        ..Limits::default()
    });
    for workers in [0, 2] {
        let tmp = tempfile::tempdir().unwrap();
        let reader = flate2::read::MultiGzDecoder::new(&blob[..]);
        let err = extract_layer_with_workers(reader, tmp.path(), &opts, workers).unwrap_err();
        let (limit, text) = limit_of(&err);
        assert_eq!(limit, "BERTH_MAX_LAYER_META", "{text}");
    }
    // Names kept in memory count: long names (GNU `L` records), many entries.
    let mut t = Tar::new();
    let long = "d".repeat(200);
    for i in 0..2000 {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        t.b.append_data(&mut h, format!("{long}/{i:0>50}"), &[][..])
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let opts = small(Limits {
        max_layer_meta: 256 << 10,
        ..Limits::default()
    });
    let err = extract_layer(&t.finish()[..], tmp.path(), &opts).unwrap_err();
    assert_eq!(limit_of(&err).0, "BERTH_MAX_LAYER_META");
}

#[test]
fn a_flood_of_xattrs_on_one_entry_is_refused_quickly() {
    // 20000 distinct names (and as many repeats of one): more than Linux can list on a
    // file. Refused at parse time, in linear time.
    let names: Vec<String> = (0..20_000)
        .map(|i| format!("SCHILY.xattr.user.{i:05}"))
        .collect();
    let mut records: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
    let mut stream = pax(b'x', &records);
    stream.extend(file_header("victim", 0));
    let tmp = tempfile::tempdir().unwrap();
    let err = extract_layer(&stream[..], tmp.path(), &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Tar { .. }) && err.to_string().contains("extended attributes"),
        "{err}"
    );
    // One name repeated is one attribute (its last value).
    for r in &mut records {
        r.0 = "SCHILY.xattr.user.same";
    }
    records.last_mut().unwrap().1 = b"last";
    let mut stream = pax(b'x', &records);
    stream.extend(file_header("ok", 0));
    let tmp = tempfile::tempdir().unwrap();
    let opts = ExtractOptions {
        rootless: true,
        ..ExtractOptions::default()
    };
    extract_layer(&stream[..], tmp.path(), &opts).unwrap();
    assert!(tmp.path().join("ok").exists());
}
