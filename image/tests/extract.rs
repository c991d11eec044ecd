//! Layer extraction: every entry type, whiteouts in both modes, hostile archives, compression
//! and the DiffID, compared with GNU tar where it is installed.

#![allow(clippy::many_single_char_names)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use berth_image::extract::{extract_layer, ExtractOptions, Limits, Mode};
use berth_image::{Compression, Error, IdMap, IdRange};
use common::sandbox::Sandbox;
use common::{assert_same, is_root, require_root, snapshot, Snap, Tar, T};
use sha2::{Digest, Sha256};

fn opts(mode: Mode) -> ExtractOptions {
    ExtractOptions {
        mode,
        ..ExtractOptions::default()
    }
}

fn extract(
    data: &[u8],
    dest: &Path,
    o: &ExtractOptions,
) -> berth_image::Result<berth_image::ExtractStats> {
    extract_layer(data, dest, o)
}

fn entry_named(err: &Error) -> String {
    match err {
        Error::Entry { entry, .. } | Error::EntryIo { entry, .. } => entry.clone(),
        Error::Limit { what, .. } => what
            .strip_prefix("entry \"")
            .and_then(|w| w.strip_suffix('"'))
            .unwrap_or_else(|| panic!("expected an entry, got {what}"))
            .to_string(),
        other => panic!("expected an entry error, got {other}"),
    }
}

/// The start of a system layer: directories and files with special modes and owners, and a
/// symlink.
fn system_entries(t: &mut Tar) -> &mut Tar {
    t.dir("./")
        .dir("etc/")
        .file_meta("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, 0, 0)
        .file_meta("bin/su", b"\x7fELF", 0o4755, 0, 0)
        .raw(b"tmp/", T::Dir, b"", b"", 0o1777, 0, 0, 1_400_000_000)
        .raw(b"srv/", T::Dir, b"", b"", 0o2775, 0, 50, 1_400_000_000)
        .file_meta("srv/data", b"x", 0o640, 1000, 50)
        .symlink("bin/sh", "busybox")
}

/// A hardlink to `bin/su` whose header repeats the inode's metadata, as GNU tar writes it
/// (berth, like podman and containerd, applies a link header's metadata; GNU tar ignores
/// it), and a character device.
fn link_and_device(t: &mut Tar) -> &mut Tar {
    t.raw(
        b"bin/su2",
        T::Link,
        b"bin/su",
        b"",
        0o4755,
        0,
        0,
        1_600_000_000,
    )
    .raw(
        b"dev/null",
        T::Char(1, 3),
        b"",
        b"",
        0o666,
        0,
        0,
        1_600_000_000,
    )
}

#[test]
fn regular_entries_and_metadata() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    system_entries(&mut t).symlink("lib64", "/lib");
    link_and_device(&mut t)
        .raw(
            b"dev/loop0",
            T::Block(7, 0),
            b"",
            b"",
            0o660,
            0,
            6,
            1_600_000_000,
        )
        .raw(b"run/fifo", T::Fifo, b"", b"", 0o600, 0, 0, 1_600_000_000)
        .pax_file(
            "usr/bin/ping",
            b"ping",
            &[
                ("SCHILY.xattr.user.origin", b"test"),
                (
                    "SCHILY.xattr.security.capability",
                    &[
                        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                ),
                ("mtime", b"1234567890.5"),
            ],
        );
    let long = format!("usr/share/{}/{}", "d".repeat(120), "f".repeat(200));
    t.pax_file(&long, b"long", &[("path", long.as_bytes())]);
    let data = t.finish();
    let stats = extract(&data, &sb.dest, &opts(Mode::Overlay)).unwrap();
    sb.check();
    let d = &sb.dest;
    assert_eq!(
        fs::read(d.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    let su = fs::metadata(d.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!(su.nlink(), 2, "hardlink shares the inode");
    assert_eq!(fs::metadata(d.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
    assert_eq!(
        fs::read_link(d.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(fs::read_link(d.join("lib64")).unwrap(), Path::new("/lib"));
    let fifo = fs::symlink_metadata(d.join("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o600);
    assert_eq!(fs::read(d.join(&long)).unwrap(), b"long");
    let ping = d.join("usr/bin/ping");
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(&ping, "user.origin", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"test");
    let pm = fs::metadata(&ping).unwrap();
    assert_eq!((pm.mtime(), pm.mtime_nsec()), (1_234_567_890, 500_000_000));
    // Directory mtimes are set after their contents.
    assert_eq!(fs::metadata(d.join("tmp")).unwrap().mtime(), 1_400_000_000);
    assert_eq!(fs::metadata(d.join("etc")).unwrap().mtime(), 1_500_000_000);
    assert_eq!(fs::metadata(d).unwrap().mtime(), 1_500_000_000);
    if is_root() {
        let n = rustix::fs::getxattr(&ping, "security.capability", &mut buf[..]).unwrap();
        assert_eq!(n, 20);
        let srv = fs::metadata(d.join("srv/data")).unwrap();
        assert_eq!((srv.uid(), srv.gid()), (1000, 50));
        assert_eq!(fs::metadata(d.join("srv")).unwrap().mode() & 0o7777, 0o2775);
        let null = fs::symlink_metadata(d.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        let lp = fs::symlink_metadata(d.join("dev/loop0")).unwrap();
        assert!(lp.file_type().is_block_device());
        assert_eq!(lp.gid(), 6);
        assert_eq!(stats.devices, 2);
    }
    assert_eq!(stats.files, 5);
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.symlinks, 2);
    assert_eq!(stats.bytes, data.len() as u64);
    assert_eq!(stats.diff_id, format!("sha256:{:x}", Sha256::digest(&data)));
}

#[test]
fn gnu_long_names_and_links() {
    let sb = Sandbox::new();
    let mut b = tar::Builder::new(Vec::new());
    let long = format!("a/{}/file", "x".repeat(150));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o600);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    let target = format!("../{}", "y".repeat(150));
    b.append_link(&mut h, "a/link", &target).unwrap();
    let data = b.into_inner().unwrap();
    extract(&data, &sb.dest, &opts(Mode::Overlay)).unwrap();
    sb.check();
    assert_eq!(fs::read(sb.dest.join(&long)).unwrap(), b"abc");
    assert_eq!(
        fs::read_link(sb.dest.join("a/link")).unwrap(),
        Path::new(&target)
    );
}

fn gnu_tar() -> bool {
    Command::new("tar")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"))
}

#[test]
fn sparse_files_gnu_and_pax() {
    if !gnu_tar() {
        eprintln!("GNU tar missing: skipped");
        return;
    }
    for format in ["gnu", "posix"] {
        let src = tempfile::tempdir().unwrap();
        let f = fs::File::create(src.path().join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        (&f).write_all(b"head").unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"middle", 20 << 20).unwrap();
        f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
        drop(f);
        let out = Command::new("tar")
            .args(["--sparse", &format!("--format={format}"), "-cf", "-", "-C"])
            .arg(src.path())
            .arg("sparse")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout.len() < 1 << 20,
            "{format}: the archive is sparse"
        );
        let sb = Sandbox::new();
        extract(&out.stdout, &sb.dest, &opts(Mode::Flatten)).unwrap();
        sb.check();
        let got = fs::read(sb.dest.join("sparse")).unwrap();
        let want = fs::read(src.path().join("sparse")).unwrap();
        assert!(got == want, "{format}: sparse content differs");
        let md = fs::metadata(sb.dest.join("sparse")).unwrap();
        assert!(
            md.blocks() * 512 < 8 << 20,
            "{format}: holes were kept ({} blocks)",
            md.blocks()
        );
    }
}

#[test]
fn overlay_whiteouts_and_opaque() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.dir("a/")
        .file("a/keep", b"k")
        .file("a/.wh..wh..opq", b"")
        .file("a/.wh.gone", b"")
        .dir("b/")
        .file("b/.wh.x", b"");
    // A whiteout of a name this layer also has: the file wins.
    t.file("c/both", b"mine").file("c/.wh.both", b"");
    let data = t.finish();
    let stats = extract(&data, &sb.dest, &opts(Mode::Overlay)).unwrap();
    sb.check();
    assert_eq!(stats.opaques, 1);
    assert_eq!(stats.whiteouts, 3);
    let d = &sb.dest;
    assert_eq!(fs::read(d.join("a/keep")).unwrap(), b"k");
    assert_eq!(fs::read(d.join("c/both")).unwrap(), b"mine");
    if is_root() {
        let gone = fs::symlink_metadata(d.join("a/gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        assert!(fs::symlink_metadata(d.join("b/x"))
            .unwrap()
            .file_type()
            .is_char_device());
        let mut buf = [0u8; 8];
        let n = rustix::fs::getxattr(d.join("a"), "trusted.overlay.opaque", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"y");
        assert!(rustix::fs::getxattr(d.join("b"), "trusted.overlay.opaque", &mut buf[..]).is_err());
    }
    assert!(!d.join("a/.wh.gone").exists());
}

fn lower_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("a/")
        .file("a/x", b"x")
        .dir("a/sub/")
        .file("a/sub/deep", b"deep")
        .dir("b/")
        .file("b/y", b"y")
        .file("c", b"c")
        .dir("d/")
        .file("d/keep", b"keep")
        .file("d/drop", b"drop")
        .dir("e/")
        .file("e/old", b"old")
        .dir("e/sub/")
        .file("e/sub/old", b"old");
    t.finish()
}

fn upper_layer() -> Vec<u8> {
    let mut t = Tar::new();
    // Opaque marker after siblings from this same layer: they stay, lower content goes.
    t.dir("a/")
        .file("a/new", b"new")
        .dir("a/sub/")
        .file("a/sub/fresh", b"fresh")
        .file("a/.wh..wh..opq", b"")
        .file(".wh.b", b"")
        .file(".wh.c", b"")
        .file("d/.wh.drop", b"")
        .file("e/.wh..wh..opq", b"")
        .file("e/new", b"n")
        .file("f/.wh.nothing", b"");
    t.finish()
}

#[test]
fn flatten_whiteouts_and_late_opaque_marker() {
    let sb = Sandbox::new();
    extract(&lower_layer(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    extract(&upper_layer(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    sb.check();
    let s = snapshot(&sb.dest, Snap::default());
    let names: Vec<_> = s.keys().cloned().collect();
    assert_eq!(
        names,
        [
            "a",
            "a/new",
            "a/sub",
            "a/sub/fresh",
            "d",
            "d/keep",
            "e",
            "e/new",
            "f"
        ],
        "{s:#?}"
    );
}

fn try_mount_overlay(lowers: &[&Path], target: &Path) -> bool {
    let lower = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let st = Command::new("mount")
        .args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("lowerdir={lower}"),
        ])
        .arg(target)
        .status();
    st.is_ok_and(|s| s.success())
}

/// The overlay layers mounted together show exactly the flattened tree.
#[test]
fn overlay_mount_equals_flatten() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let l1 = tmp.path().join("l1");
    let l2 = tmp.path().join("l2");
    let flat = tmp.path().join("flat");
    let merged = tmp.path().join("merged");
    for d in [&l1, &l2, &flat, &merged] {
        fs::create_dir(d).unwrap();
    }
    extract(&lower_layer(), &l1, &opts(Mode::Overlay)).unwrap();
    extract(&upper_layer(), &l2, &opts(Mode::Overlay)).unwrap();
    extract(&lower_layer(), &flat, &opts(Mode::Flatten)).unwrap();
    extract(&upper_layer(), &flat, &opts(Mode::Flatten)).unwrap();
    if !try_mount_overlay(&[&l1, &l2], &merged) {
        eprintln!("overlay mount failed: skipped");
        return;
    }
    /// Unmounts on drop, so a failing snapshot leaks no mount.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let mounted = Unmount(&merged);
    let snap = Snap {
        mtimes: true,
        no_overlay_xattrs: true,
        ..Snap::default()
    };
    let a = snapshot(&merged, snap);
    drop(mounted);
    let b = snapshot(&flat, snap);
    assert_same(&a, &b, "overlay mount vs flattened");
}

#[test]
fn hostile_dotdot_is_refused_and_named() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.file("ok", b"1")
        .raw(b"../outside/pwned", T::File, b"", b"x", 0o644, 0, 0, 0);
    let err = extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap_err();
    assert_eq!(entry_named(&err), "../outside/pwned");
    assert!(err.to_string().contains(".."), "{err}");
    sb.check();
    let mut t = Tar::new();
    t.raw(b"a/../../outside/pwned", T::File, b"", b"x", 0o644, 0, 0, 0);
    let err = extract(&t.finish(), &sb.dest, &opts(Mode::Overlay)).unwrap_err();
    assert_eq!(entry_named(&err), "a/../../outside/pwned");
    sb.check();
}

#[test]
fn hostile_absolute_names_stay_inside() {
    let sb = Sandbox::new();
    let abs = sb.outside.join("pwned");
    let mut t = Tar::new();
    t.raw(
        abs.to_str().unwrap().as_bytes(),
        T::File,
        b"",
        b"x",
        0o644,
        0,
        0,
        0,
    );
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    sb.check();
    assert!(sb.dest.join(abs.strip_prefix("/").unwrap()).exists());
}

#[test]
fn hostile_symlink_parents_are_resolved_inside() {
    for mode in [Mode::Overlay, Mode::Flatten] {
        let sb = Sandbox::new();
        let passwd = fs::read("/etc/passwd").unwrap();
        let mut t = Tar::new();
        t.symlink("a", "/")
            .file("a/etc/passwd", b"pwned")
            .symlink("up", "../../../../../../..")
            .file("up/escape", b"pwned");
        extract(&t.finish(), &sb.dest, &opts(mode)).unwrap();
        sb.check();
        assert_eq!(fs::read("/etc/passwd").unwrap(), passwd);
        assert_eq!(fs::read(sb.dest.join("etc/passwd")).unwrap(), b"pwned");
        assert!(sb.dest.join("escape").exists());
        // Symlinks to directories that exist only outside: resolved inside the destination,
        // where they dangle, so the entry is refused.
        for (link, target) in [("abs", sb.outside.to_str().unwrap()), ("rel", "../outside")] {
            let mut t = Tar::new();
            let name = format!("{link}/pwned");
            t.symlink(link, target).file(&name, b"pwned");
            let err = extract(&t.finish(), &sb.dest, &opts(mode)).unwrap_err();
            assert_eq!(entry_named(&err), name);
            sb.check();
        }
        // Once the target exists inside, the same archive lands there.
        fs::create_dir(sb.dest.join("outside")).unwrap();
        let mut t = Tar::new();
        t.symlink("rel", "../outside").file("rel/pwned", b"inside");
        extract(&t.finish(), &sb.dest, &opts(mode)).unwrap();
        assert_eq!(fs::read(sb.dest.join("outside/pwned")).unwrap(), b"inside");
        sb.check();
    }
}

#[test]
fn hostile_final_symlink_is_replaced_not_followed() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.symlink("victim", sb.outside.join("sentinel").to_str().unwrap())
        .file("victim", b"overwritten?")
        .symlink("d", sb.outside.to_str().unwrap())
        .dir("d/");
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    sb.check();
    assert_eq!(fs::read(sb.dest.join("victim")).unwrap(), b"overwritten?");
    assert!(fs::symlink_metadata(sb.dest.join("d")).unwrap().is_dir());
}

#[test]
fn hostile_hardlinks() {
    // A hardlink to a host file: the target is looked up inside the destination.
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.hardlink("shadow", "/etc/shadow");
    let err = extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap_err();
    assert_eq!(entry_named(&err), "shadow");
    sb.check();
    let mut t = Tar::new();
    t.hardlink("s", "../outside/sentinel");
    let err = extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap_err();
    assert_eq!(entry_named(&err), "s");
    sb.check();
    // Through a symlinked directory that points outside: resolved inside, so not found.
    let mut t = Tar::new();
    t.symlink("o", sb.outside.to_str().unwrap())
        .hardlink("s", "o/sentinel");
    let err = extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap_err();
    assert_eq!(entry_named(&err), "s");
    sb.check();
    // A hardlink to a symlink links the symlink itself; writing the name again replaces it.
    let mut t = Tar::new();
    t.symlink("sym", sb.outside.join("sentinel").to_str().unwrap())
        .hardlink("hl", "sym")
        .file("hl", b"new");
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    sb.check();
    assert_eq!(fs::read(sb.dest.join("hl")).unwrap(), b"new");
}

#[test]
fn hostile_symlink_from_an_earlier_layer() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.symlink("etc", sb.outside.to_str().unwrap())
        .symlink("lib", "../outside")
        .dir("real/")
        .file("real/x", b"x");
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    for name in [
        "etc/pwned",
        "lib/pwned",
        "etc/.wh.sentinel",
        "lib/.wh..wh..opq",
    ] {
        let mut t = Tar::new();
        t.file(name, b"x");
        let err = extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap_err();
        assert_eq!(entry_named(&err), name);
        sb.check();
    }
    // Swapped to point at a directory inside: whiteouts and files follow it, inside.
    let mut t = Tar::new();
    t.symlink("lib", "/real");
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    let mut t = Tar::new();
    t.file("lib/.wh.x", b"").file("lib/y", b"y");
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    assert!(!sb.dest.join("real/x").exists());
    assert!(sb.dest.join("real/y").exists());
    sb.check();
}

/// The fuzz finding in fuzz/regressions/whiteout_apply: a lower layer's `a -> /` aliases the
/// upper layer's `a/b/c` onto `b/c`, so `.wh.b` followed by `a/b/c` leaves a fresh `b` (as
/// containerd's in-root resolution does); it lands inside the root, and the whiteout itself is
/// never materialised.
#[test]
fn whiteout_then_a_path_aliased_through_a_lower_symlink() {
    let sb = Sandbox::new();
    let mut lower = Tar::new();
    lower.file("b/old", b"old").symlink("a", "/");
    extract(&lower.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    let mut upper = Tar::new();
    upper.file(".wh.b", b"").file("a/b/c", b"c");
    extract(&upper.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    assert!(
        !sb.dest.join("b/old").exists(),
        "the whiteout removed the old b"
    );
    assert_eq!(fs::read(sb.dest.join("b/c")).unwrap(), b"c");
    assert!(!sb.dest.join(".wh.b").exists());
    assert!(fs::symlink_metadata(sb.dest.join("a"))
        .unwrap()
        .file_type()
        .is_symlink());
    sb.check();
}

#[test]
fn hostile_sizes_and_counts() {
    let sb = Sandbox::new();
    // Declares a terabyte, carries a few bytes: a truncated stream.
    let mut h = tar::Header::new_gnu();
    h.set_path("huge").unwrap();
    h.set_size(1 << 40);
    h.set_mode(0o644);
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.extend_from_slice(&[0u8; 4096]);
    let err = extract(&data, &sb.dest, &opts(Mode::Flatten)).unwrap_err();
    assert!(matches!(err, Error::Tar { .. }), "{err}");
    sb.check();
    // Above the file-size limit: refused before writing.
    let small = ExtractOptions {
        limits: Limits {
            max_file_size: 1000,
            max_entries: 3,
            ..Limits::default()
        },
        ..ExtractOptions::default()
    };
    let err = extract(&data, &sb.dest, &small).unwrap_err();
    assert_eq!(entry_named(&err), "huge");
    assert!(err.to_string().contains("exceeds"), "{err}");
    let mut t = Tar::new();
    for i in 0..5 {
        t.file(&format!("f{i}"), b"");
    }
    let err = extract(&t.finish(), &sb.dest, &small).unwrap_err();
    assert_eq!(entry_named(&err), "f3");
    // A PAX header of absurd size.
    let mut h = tar::Header::new_ustar();
    h.set_path("pax").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(1 << 30);
    h.set_cksum();
    let err = extract(h.as_bytes(), &sb.dest, &opts(Mode::Flatten)).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    // Garbage is not a tar stream.
    let err = extract(&[7u8; 2048], &sb.dest, &opts(Mode::Flatten)).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    sb.check();
}

#[test]
fn rootless_skips_devices() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.raw(b"dev/null", T::Char(1, 3), b"", b"", 0o666, 0, 0, 0)
        .file("f", b"x");
    let o = ExtractOptions {
        rootless: true,
        ..ExtractOptions::default()
    };
    let stats = extract(&t.finish(), &sb.dest, &o).unwrap();
    assert_eq!(stats.skipped, 1);
    assert!(
        stats.notices.iter().any(|n| n.contains("dev/null")),
        "{:?}",
        stats.notices
    );
    assert!(!sb.dest.join("dev/null").exists());
    assert!(sb.dest.join("f").exists());
}

#[test]
fn id_mapping_shifts_ownership() {
    require_root!();
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.file_meta("f", b"x", 0o4755, 0, 0)
        .file_meta("g", b"y", 0o644, 1000, 1000)
        .file("implicit/x", b"z");
    let map = IdMap {
        uids: vec![IdRange {
            container: 0,
            host: 100_000,
            size: 65536,
        }],
        gids: vec![IdRange {
            container: 0,
            host: 200_000,
            size: 65536,
        }],
    };
    let o = ExtractOptions {
        id_map: Some(map.clone()),
        ..ExtractOptions::default()
    };
    extract(&t.finish(), &sb.dest, &o).unwrap();
    let f = fs::metadata(sb.dest.join("f")).unwrap();
    assert_eq!(
        (f.uid(), f.gid(), f.mode() & 0o7777),
        (100_000, 200_000, 0o4755)
    );
    let g = fs::metadata(sb.dest.join("g")).unwrap();
    assert_eq!((g.uid(), g.gid()), (101_000, 201_000));
    let i = fs::metadata(sb.dest.join("implicit")).unwrap();
    assert_eq!((i.uid(), i.gid()), (100_000, 200_000));
    let mut t = Tar::new();
    t.file_meta("h", b"", 0o644, 70_000, 0);
    let err = extract(&t.finish(), &sb.dest, &o).unwrap_err();
    assert_eq!(entry_named(&err), "h");
    assert!(err.to_string().contains("not mapped"));
}

#[test]
fn replacing_entries_of_other_types() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.dir("x/")
        .file("x/inner", b"1")
        .file("y", b"file")
        .symlink("z", "y")
        .dir("w/");
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    let mut t = Tar::new();
    t.file("x", b"now a file")
        .dir("y/")
        .file("y/in", b"2")
        .file("z", b"was a link")
        .raw(b"w/", T::Dir, b"", b"", 0o700, 0, 0, 5);
    extract(&t.finish(), &sb.dest, &opts(Mode::Flatten)).unwrap();
    sb.check();
    assert_eq!(fs::read(sb.dest.join("x")).unwrap(), b"now a file");
    assert_eq!(fs::read(sb.dest.join("y/in")).unwrap(), b"2");
    assert_eq!(fs::read(sb.dest.join("z")).unwrap(), b"was a link");
    let w = fs::metadata(sb.dest.join("w")).unwrap();
    assert_eq!(w.permissions().mode() & 0o7777, 0o700);
}

#[test]
fn compression_gzip_zstd_and_sniffing() {
    let mut t = Tar::new();
    t.file("a", b"hello").file("b/c", &vec![7u8; 300_000]);
    let plain = t.finish();
    let want = format!("sha256:{:x}", Sha256::digest(&plain));
    let tmp = tempfile::tempdir().unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    for (name, bytes, mt) in [
        ("plain", &plain, "application/vnd.oci.image.layer.v1.tar"),
        (
            "gz",
            &gz,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        ("zst", &zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
    ] {
        let p = tmp.path().join(name);
        fs::write(&p, bytes).unwrap();
        for media in [None, Some(mt)] {
            let dest = tmp.path().join(format!("{name}-{}", media.is_some()));
            fs::create_dir(&dest).unwrap();
            let r = berth_image::open_layer(&p, media).unwrap();
            let stats = extract_layer(r, &dest, &opts(Mode::Overlay)).unwrap();
            assert_eq!(stats.diff_id, want, "{name}");
            assert_eq!(fs::read(dest.join("b/c")).unwrap().len(), 300_000);
        }
    }
    assert_eq!(Compression::sniff(&gz), Compression::Gzip);
    assert_eq!(Compression::sniff(&zst), Compression::Zstd);
    assert!(berth_image::open_layer(
        &tmp.path().join("zst"),
        Some("application/vnd.oci.image.layer.v1.tar+gzip")
    )
    .is_err());
    assert!(berth_image::open_layer(&tmp.path().join("zst"), Some("application/json")).is_err());
    // A corrupt gzip stream is a read error, not a panic or a half-success.
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(tmp.path().join("bad"), &bad).unwrap();
    let dest = tmp.path().join("bad-dest");
    fs::create_dir(&dest).unwrap();
    let r = berth_image::open_layer(&tmp.path().join("bad"), None).unwrap();
    assert!(extract_layer(r, &dest, &opts(Mode::Overlay)).is_err());
}

#[test]
fn confined_extraction_leaves_the_caller_unconfined() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.file("a", b"x").symlink("l", "/").file("l/b", b"y");
    let o = ExtractOptions {
        confine: true,
        ..ExtractOptions::default()
    };
    let stats = extract(&t.finish(), &sb.dest, &o).unwrap();
    assert_eq!(stats.files, 2);
    // The calling thread can still write elsewhere.
    fs::write(sb.base.join("after"), b"ok").unwrap();
    fs::remove_file(sb.base.join("after")).unwrap();
    sb.check();
}

/// Same result as GNU tar for a layer without whiteouts.
#[test]
fn matches_gnu_tar() {
    if !gnu_tar() || !is_root() {
        eprintln!("GNU tar or root missing: skipped");
        return;
    }
    let mut t = Tar::new();
    system_entries(&mut t);
    link_and_device(&mut t)
        .raw(b"run/fifo", T::Fifo, b"", b"", 0o600, 0, 0, 1_600_000_000)
        .pax_file(
            "usr/bin/ping",
            b"ping",
            &[("SCHILY.xattr.user.origin", b"test")],
        );
    for d in ["bin/", "dev/", "run/", "usr/", "usr/bin/"] {
        t.raw(d.as_bytes(), T::Dir, b"", b"", 0o755, 0, 0, 1_300_000_000);
    }
    let data = t.finish();
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    fs::create_dir(&ours).unwrap();
    fs::create_dir(&theirs).unwrap();
    extract(&data, &ours, &opts(Mode::Overlay)).unwrap();
    let mut child = Command::new("tar")
        .args([
            "-x",
            "-p",
            "--same-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-f",
            "-",
            "-C",
        ])
        .arg(&theirs)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    assert!(child.wait().unwrap().success());
    let snap = Snap {
        dir_mtimes: true,
        mtimes: true,
        ..Snap::default()
    };
    assert_same(
        &snapshot(&ours, snap),
        &snapshot(&theirs, snap),
        "berth vs GNU tar",
    );
}

/// Unprivileged (on this thread only: setresuid(2) is per thread) extraction of read-only
/// directories: their children are still written, their modes are right at the end, and
/// ownership and devices are skipped with notices.
#[test]
fn unprivileged_read_only_directories() {
    require_root!();
    let sb = Sandbox::new();
    rustix::fs::chown(
        &sb.dest,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let mut t = Tar::new();
    t.raw(b"./", T::Dir, b"", b"", 0o555, 0, 0, 1_400_000_000)
        .raw(b"ro/", T::Dir, b"", b"", 0o500, 0, 0, 1_400_000_000)
        .file_meta("ro/f", b"data", 0o444, 0, 0)
        .raw(b"ro/sub/", T::Dir, b"", b"", 0o555, 0, 0, 1_400_000_000)
        .file("ro/sub/g", b"g")
        .raw(b"dev/null", T::Char(1, 3), b"", b"", 0o666, 0, 0, 0);
    let data = t.finish();
    let dest = sb.dest.clone();
    let stats = std::thread::spawn(move || {
        rustix::thread::set_thread_res_gid(
            rustix::fs::Gid::from_raw(65534),
            rustix::fs::Gid::from_raw(65534),
            rustix::fs::Gid::from_raw(65534),
        )
        .unwrap();
        rustix::thread::set_thread_res_uid(
            rustix::fs::Uid::from_raw(65534),
            rustix::fs::Uid::from_raw(65534),
            rustix::fs::Uid::from_raw(65534),
        )
        .unwrap();
        let o = ExtractOptions {
            rootless: true,
            ..ExtractOptions::default()
        };
        berth_image::extract::extract_layer_single_thread(&data[..], &dest, &o)
    })
    .join()
    .unwrap()
    .unwrap();
    sb.check();
    let mode = |p: &str| fs::metadata(sb.dest.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("ro"), 0o500);
    assert_eq!(mode("ro/sub"), 0o555);
    assert_eq!(mode("ro/f"), 0o444);
    assert_eq!(fs::metadata(&sb.dest).unwrap().mode() & 0o7777, 0o555);
    assert_eq!(fs::read(sb.dest.join("ro/sub/g")).unwrap(), b"g");
    assert_eq!(fs::metadata(sb.dest.join("ro/f")).unwrap().uid(), 65534);
    assert!(!sb.dest.join("dev/null").exists());
    assert!(
        stats.notices.iter().any(|n| n.contains("ownership")),
        "{:?}",
        stats.notices
    );
    // Let the temp dir be removed.
    fs::set_permissions(&sb.dest, fs::Permissions::from_mode(0o755)).unwrap();
}
