//! Commits read back with the `tar` crate, and a real overlay round trip through the
//! store's extractor (run as root: devices, trusted xattrs, mounts).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{self as rfs, FileType, Mode, XattrFlags, CWD};
use sha2::{Digest as _, Sha256};

use super::LayerCompression;
use crate::extract::{self, ExtractOptions};
use crate::image::Digest;
use crate::store::{LayerRecord, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn mknod(p: &Path, ft: FileType, dev: u64) {
    rfs::mknodat(CWD, p, ft, Mode::from_raw_mode(0o644), dev).unwrap();
}

fn setx(p: &Path, k: &str, v: &[u8]) {
    rfs::lsetxattr(p, k, v, XattrFlags::empty()).unwrap();
}

fn getx(p: &Path, k: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    rfs::lgetxattr(p, k, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

/// The uncompressed stream of a committed layer's blob.
fn stream(store: &Store, l: &LayerRecord) -> Vec<u8> {
    let blob = store.blob_path(&Digest::parse(&l.blob).unwrap());
    let mut out = Vec::new();
    extract::open_layer(&blob, Some(&l.media_type))
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// `path type [-> link] [size] [xattrs]` for every entry of a tar stream.
fn listing(tar_bytes: &[u8]) -> Vec<String> {
    use std::fmt::Write as _;
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        let h = e.header();
        let mut s = format!(
            "{} {:?} {:o} {}:{}",
            String::from_utf8_lossy(&e.path_bytes()),
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap()
        );
        if let Some(l) = e.link_name_bytes() {
            let _ = write!(s, " -> {}", String::from_utf8_lossy(&l));
        }
        if h.entry_type().is_file() {
            let _ = write!(s, " size={}", h.size().unwrap());
        }
        if let Some(x) = e.pax_extensions().unwrap() {
            for r in x {
                let r = r.unwrap();
                if r.key().unwrap().starts_with("SCHILY.xattr.") {
                    let _ = write!(s, " {}={}", r.key().unwrap(), r.value().unwrap());
                }
            }
        }
        out.push(s);
    }
    out
}

#[test]
fn commit_writes_every_kind_and_reuses_the_layer() {
    let (_d, store) = store();
    let make = || {
        let up = store.scratch_dir("build").unwrap().join("upper");
        fs::create_dir(&up).unwrap();
        fs::write(up.join("a.txt"), b"hello").unwrap();
        fs::set_permissions(up.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
        rfs::chownat(
            CWD,
            up.join("a.txt"),
            Some(rfs::Uid::from_raw(1000)),
            Some(rfs::Gid::from_raw(1001)),
            rfs::AtFlags::empty(),
        )
        .unwrap();
        setx(&up.join("a.txt"), "user.note", b"kept");
        setx(&up.join("a.txt"), "user.overlay.fake", b"y");
        fs::create_dir(up.join("d")).unwrap();
        setx(&up.join("d"), "trusted.overlay.origin", b"\0\xfb");
        fs::hard_link(up.join("a.txt"), up.join("d/hl")).unwrap();
        symlink("../a.txt", up.join("d/link")).unwrap();
        mknod(&up.join("p"), FileType::Fifo, 0);
        mknod(&up.join("gone"), FileType::CharacterDevice, 0);
        mknod(
            &up.join("tty"),
            FileType::CharacterDevice,
            rfs::makedev(5, 0),
        );
        fs::create_dir(up.join("o")).unwrap();
        setx(&up.join("o"), "trusted.overlay.opaque", b"y");
        fs::write(up.join("o/new"), b"").unwrap();
        let long = "n".repeat(200);
        fs::write(up.join("d").join(&long), b"x").unwrap();
        let long = format!("d/{long}");
        let all = [
            "a.txt", "d/link", &long, "p", "gone", "tty", "o/new", "o", "d", "",
        ];
        for p in all {
            let t = rfs::Timestamps {
                last_access: rfs::Timespec {
                    tv_sec: 1_700_000_000,
                    tv_nsec: 0,
                },
                last_modification: rfs::Timespec {
                    tv_sec: 1_700_000_000,
                    tv_nsec: 5,
                },
            };
            rfs::utimensat(CWD, up.join(p), &t, rfs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
        up
    };
    let up = make();
    let l = store
        .commit_layer(&up, None, LayerCompression::Gzip)
        .unwrap();
    assert!(!up.exists(), "the upper dir became the layer");
    assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    let tar_bytes = stream(&store, &l);
    let diff = format!("sha256:{:x}", Sha256::digest(&tar_bytes));
    assert_eq!(l.diff_id, diff);
    assert_eq!(l.chain_id, diff, "a base layer's ChainID is its DiffID");
    let blob = store.blob_path(&Digest::parse(&l.blob).unwrap());
    assert_eq!(fs::metadata(&blob).unwrap().len(), l.size);
    let long = "n".repeat(200);
    assert_eq!(
        listing(&tar_bytes),
        [
            "a.txt Regular 640 1000:1001 size=5 SCHILY.xattr.user.note=kept".to_string(),
            "d/ Directory 755 0:0".into(),
            "d/hl Link 640 1000:1001 -> a.txt".into(),
            "d/link Symlink 777 0:0 -> ../a.txt".into(),
            format!("d/{long} Regular 644 0:0 size=1"),
            ".wh.gone Regular 600 0:0 size=0".into(),
            "o/ Directory 755 0:0".into(),
            "o/.wh..wh..opq Regular 755 0:0 size=0".into(),
            "o/new Regular 644 0:0 size=0".into(),
            "p Fifo 644 0:0".into(),
            "tty Char 644 0:0".into(),
        ]
    );
    let mut a = tar::Archive::new(&tar_bytes[..]);
    let first = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(first.header().mtime().unwrap(), 1_700_000_000);
    // The layer: what extraction would make, overlay bookkeeping gone, markers kept.
    let chain = Digest::parse(&l.chain_id).unwrap();
    let layer = store.layer_path(&chain);
    assert_eq!(fs::read(layer.join("d/hl")).unwrap(), b"hello");
    assert_eq!(getx(&layer.join("d"), "trusted.overlay.origin"), None);
    assert_eq!(getx(&layer.join("a.txt"), "user.overlay.fake"), None);
    assert_eq!(
        getx(&layer.join("o"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert_eq!(fs::metadata(&layer).unwrap().mode() & 0o7777, 0o755);
    assert!(store.short_layer_path(&chain).join("a.txt").is_file());
    let info = fs::read_to_string(layer.parent().unwrap().join("layer.json")).unwrap();
    assert!(info.contains(&l.blob), "{info}");
    // The same tree again: the same layer, reused; the second upper dir is removed.
    let ino = fs::metadata(&layer).unwrap().ino();
    let up2 = make();
    let l2 = store
        .commit_layer(&up2, None, LayerCompression::Gzip)
        .unwrap();
    assert_eq!(l2, l);
    assert!(!up2.exists());
    assert_eq!(fs::metadata(&layer).unwrap().ino(), ino);
    // On top of a parent: the ChainID chains.
    let up3 = store.scratch_dir("build").unwrap();
    let l3 = store
        .commit_layer(&up3, Some(&chain), LayerCompression::Zstd)
        .unwrap();
    let d3 = Digest::parse(&l3.diff_id).unwrap();
    assert_eq!(l3.chain_id, Digest::chain(Some(&chain), &d3).to_string());
    assert!(store.has_layer(&Digest::parse(&l3.chain_id).unwrap()));
}

#[test]
fn empty_layer_is_docker_s() {
    let (_d, store) = store();
    let up = store.scratch_dir("empty").unwrap();
    let l = store
        .commit_layer(&up, None, LayerCompression::None)
        .unwrap();
    assert_eq!(
        l.diff_id,
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    );
    assert_eq!((l.blob.as_str(), l.size), (l.diff_id.as_str(), 1024));
    assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar");
    let up = store.scratch_dir("empty").unwrap();
    let g = store
        .commit_layer(&up, None, LayerCompression::Gzip)
        .unwrap();
    assert_eq!((g.diff_id, g.chain_id), (l.diff_id, l.chain_id));
}

#[test]
fn refuses_what_it_cannot_commit() {
    let (_d, store) = store();
    let scratch = store.scratch_dir("x").unwrap();
    assert!(store.scratch_dir("a/b").is_err());
    let up = scratch.join("upper");
    fs::create_dir_all(up.join("moved")).unwrap();
    setx(&up.join("moved"), "trusted.overlay.redirect", b"/old");
    let e = store
        .commit_layer(&up, None, LayerCompression::Gzip)
        .unwrap_err();
    assert!(e.to_string().contains("redirect_dir=off"), "{e}");
    assert!(up.is_dir(), "the upper dir stays on an error");
    fs::write(scratch.join("file"), b"").unwrap();
    assert!(store
        .commit_layer(&scratch.join("file"), None, LayerCompression::Gzip)
        .is_err());
    assert!(fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .next()
        .is_none());
}

/// Extracts `tar_bytes` flattened onto `dest`.
fn flatten(tar_bytes: &[u8], dest: &Path) {
    let opts = ExtractOptions {
        mode: extract::Mode::Flatten,
        ..ExtractOptions::default()
    };
    extract::extract_layer(tar_bytes, dest, &opts).unwrap();
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
                out.push(format!("{rel}/"));
            } else {
                out.push(format!("{rel}={}", fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn overlay_round_trip() {
    let (_d, store) = store();
    // The lower layer, extracted by the store from a tar.
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("keep.txt", "k"),
        ("del.txt", "d"),
        ("opq/old1", "1"),
        ("opq/sub/old2", "2"),
        ("dir/x", "old"),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    let base_tar = b.into_inner().unwrap();
    let blob = store.put_blob_from(&mut &base_tar[..], None).unwrap();
    let diff = Digest::of(&base_tar);
    let base = LayerRecord {
        chain_id: diff.to_string(),
        diff_id: diff.to_string(),
        blob: blob.to_string(),
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        size: base_tar.len() as u64,
    };
    let lower = store.ensure_layer(&base, None).unwrap();

    let scratch = store.scratch_dir("build").unwrap();
    let (upper, work, merged) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("m"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let o = crate::bundle::Overlay {
        lowers: &[lower],
        upper: &upper,
        work: &work,
        userxattr: false,
        inert: true,
    };
    crate::bundle::mount_overlay(&o, &merged).unwrap();
    let changes = (|| -> std::io::Result<()> {
        fs::remove_file(merged.join("del.txt"))?;
        fs::remove_dir_all(merged.join("opq"))?;
        fs::create_dir(merged.join("opq"))?;
        fs::write(merged.join("opq/new"), "n")?;
        fs::write(merged.join("dir/x"), "changed")?;
        fs::write(merged.join("new.txt"), "new")
    })();
    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty()).unwrap();
    changes.unwrap();

    let l = store
        .commit_layer(&upper, Some(&diff), LayerCompression::Gzip)
        .unwrap();
    let tar_bytes = stream(&store, &l);
    let names: Vec<String> = listing(&tar_bytes)
        .iter()
        .map(|s| s.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            ".wh.del.txt",
            "dir/",
            "dir/x",
            "new.txt",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/new"
        ]
    );
    let flat = scratch.join("flat");
    fs::create_dir(&flat).unwrap();
    flatten(&base_tar, &flat);
    flatten(&tar_bytes, &flat);
    let want = [
        "dir/",
        "dir/x=changed",
        "keep.txt=k",
        "new.txt=new",
        "opq/",
        "opq/new=n",
    ];
    assert_eq!(tree(&flat), want);
    // The committed layer mounts over its parent as an extracted one would.
    let top = store.layer_path(&Digest::parse(&l.chain_id).unwrap());
    for p in ["dir", "dir/x"] {
        assert_eq!(getx(&top.join(p), "trusted.overlay.origin"), None, "{p}");
    }
    let (up2, work2) = (scratch.join("u2"), scratch.join("w2"));
    fs::create_dir(&up2).unwrap();
    fs::create_dir(&work2).unwrap();
    let lowers = [store.layer_path(&diff), top];
    let o = crate::bundle::Overlay {
        lowers: &lowers,
        upper: &up2,
        work: &work2,
        userxattr: false,
        inert: true,
    };
    crate::bundle::mount_overlay(&o, &merged).unwrap();
    let seen = tree(&merged);
    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty()).unwrap();
    assert_eq!(seen, want);
}
