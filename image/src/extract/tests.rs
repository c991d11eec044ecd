//! Parallel extraction against serial extraction: every ordering hazard between entries (a
//! name replaced later, hardlinks to files of other workers, read-only directories full of
//! files, symlinks created and then traversed, whiteouts and opaque markers) gives exactly
//! the tree a serial extraction gives, and the first failing entry is the one reported.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use proptest::prelude::*;

use super::{extract_layer_with_workers, ExtractOptions, Mode};
use crate::error::Error;
use crate::synth::{Header, TarWriter};

/// A ustar writer with the shorthands the tests need.
#[derive(Default)]
struct Tar(TarWriter);

impl Tar {
    #[allow(clippy::too_many_arguments)]
    fn raw(
        &mut self,
        name: &str,
        typ: u8,
        link: &str,
        data: &[u8],
        mode: u32,
        mtime: u64,
        uid: u64,
    ) -> &mut Self {
        let header = Header {
            name,
            typ,
            link,
            mode,
            uid,
            gid: uid,
            mtime,
        };
        self.0.raw(&header, data);
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name, b'0', "", data, 0o644, 1_500_000_000, 0)
    }

    fn file_meta(&mut self, name: &str, data: &[u8], mode: u32, mtime: u64) -> &mut Self {
        self.raw(name, b'0', "", data, mode, mtime, 0)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(name, b'5', "", b"", mode, 1_400_000_000, 0)
    }

    fn sym(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, b'2', target, b"", 0o777, 1_500_000_000, 0)
    }

    fn hard(&mut self, name: &str, target: &str, mode: u32, mtime: u64) -> &mut Self {
        self.raw(name, b'1', target, b"", mode, mtime, 0)
    }

    fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0).finish()
    }
}

/// The integration tests' sandbox: a destination beside a sentinel directory that must stay
/// untouched.
#[path = "../../tests/common/sandbox.rs"]
mod sandbox;

use sandbox::{sorted_names, Sandbox};

/// Everything observable about a tree: per path its type, mode, owner, size, content or link
/// target, mtime (directories: only when `dir_times`), device number and hardlink group.
fn snapshot(root: &Path, dir_times: bool) -> BTreeMap<String, String> {
    fn walk(
        root: &Path,
        p: &Path,
        dir_times: bool,
        inodes: &mut HashMap<u64, String>,
        out: &mut BTreeMap<String, String>,
    ) {
        for n in sorted_names(p) {
            let path = p.join(&n);
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let mut d = format!("mode={:o} uid={} gid={}", m.mode(), m.uid(), m.gid());
            if ft.is_dir() {
                if dir_times {
                    let _ = write!(d, " mtime={}", m.mtime());
                }
                out.insert(rel, format!("dir {d}"));
                walk(root, &path, dir_times, inodes, out);
                continue;
            }
            // Overlay whiteouts (0/0 character devices) keep their creation time.
            if !(ft.is_char_device() && m.rdev() == 0) {
                let _ = write!(d, " mtime={}.{}", m.mtime(), m.mtime_nsec());
            }
            if m.nlink() > 1 {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                let _ = write!(d, " nlink={} group={first}", m.nlink());
            }
            let what = if ft.is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                format!(
                    "file {:?}",
                    String::from_utf8_lossy(&fs::read(&path).unwrap())
                )
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("device {}", m.rdev())
            } else {
                "fifo".to_string()
            };
            out.insert(rel, format!("{what} {d}"));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, dir_times, &mut HashMap::new(), &mut out);
    out
}

fn opts(mode: Mode) -> ExtractOptions {
    ExtractOptions {
        mode,
        ..ExtractOptions::default()
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Extracts `tar` (after `lower`, serially, when given) with no worker and with `workers`
/// workers; both give the same result (tree, or error message).
fn same_as_serial(
    lower: Option<&[u8]>,
    tar: &[u8],
    o: &ExtractOptions,
    workers: usize,
    dir_times: bool,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let run = |w: usize| {
        let sb = Sandbox::new();
        if let Some(lower) = lower {
            if extract_layer_with_workers(lower, &sb.dest, o, 0).is_err() {
                return None;
            }
        }
        let r = extract_layer_with_workers(tar, &sb.dest, o, w);
        sb.check();
        Some(
            r.map(|_| snapshot(&sb.dest, dir_times))
                .map_err(|e| e.to_string()),
        )
    };
    let serial = run(0);
    let parallel = run(workers);
    assert_eq!(
        serial, parallel,
        "{workers} workers differ from a serial extraction"
    );
    serial.unwrap_or_else(|| Err("lower layer failed".into()))
}

/// The error extracting `tar` in `mode` with `workers` workers into a new sandbox gives
/// (which must hold nothing outside the destination afterwards).
fn extraction_error(tar: &[u8], mode: Mode, workers: usize) -> Error {
    let sb = Sandbox::new();
    let err = extract_layer_with_workers(tar, &sb.dest, &opts(mode), workers).unwrap_err();
    sb.check();
    err
}

/// Asserts that the description of `path` in `tree` has each of `parts`.
fn assert_has(tree: &BTreeMap<String, String>, path: &str, parts: &[&str]) {
    let found = &tree[path];
    for part in parts {
        assert!(found.contains(part), "{path}: no {part} in {found}");
    }
}

fn dirs_of_files(t: &mut Tar, dirs: usize, files: usize, tag: &str) {
    for d in 0..dirs {
        t.dir(&format!("d{d}/"), 0o755);
        for f in 0..files {
            t.file(&format!("d{d}/f{f}"), format!("{tag} {d} {f}").as_bytes());
        }
    }
}

#[test]
fn names_replaced_by_later_entries() {
    let mut t = Tar::default();
    dirs_of_files(&mut t, 20, 30, "first");
    // Every kind replacing a file a worker may still be writing, then replaced again.
    for d in 0..20 {
        t.file(&format!("d{d}/f1"), b"second");
        t.sym(&format!("d{d}/f2"), "f1");
        t.dir(&format!("d{d}/f3/"), 0o700);
        t.file(&format!("d{d}/f3/inner"), b"inner");
        t.file(&format!("d{d}/f4"), b"");
        t.file(&format!("d{d}/f4"), b"third");
        t.sym(&format!("d{d}/f5"), "nowhere");
        t.file(&format!("d{d}/f5"), b"over a symlink");
    }
    // A directory replaced by a file, then used as a parent again (an error).
    t.file("d7", b"not a directory any more");
    let tar = t.finish();
    for w in [1, 2, 4] {
        let r = same_as_serial(None, &tar, &opts(Mode::Overlay), w, true);
        assert!(r.is_ok(), "{r:?}");
        let tree = r.unwrap();
        assert!(tree["d3/f1"].starts_with("file \"second\""));
        assert!(tree["d3/f2"].starts_with("symlink -> f1"));
        assert!(tree["d3/f3/inner"].starts_with("file \"inner\""));
        assert!(tree["d3/f4"].starts_with("file \"third\""));
        assert!(tree["d3/f5"].starts_with("file \"over a symlink\""));
        assert!(tree["d7"].starts_with("file \"not a directory"));
        assert!(!tree.contains_key("d7/f0"));
    }
    let mut t = Tar::default();
    dirs_of_files(&mut t, 3, 50, "x");
    t.file("d1", b"file");
    t.file("d1/f9", b"below a file");
    let r = same_as_serial(None, &t.finish(), &opts(Mode::Overlay), 2, false);
    assert!(r.unwrap_err().contains("d1/f9"));
}

#[test]
fn hardlinks_to_files_written_by_other_workers() {
    let mut t = Tar::default();
    dirs_of_files(&mut t, 16, 40, "data");
    for d in 0..16 {
        let o = (d + 5) % 16;
        // To a file in another directory (most likely another worker), then a chain whose
        // headers set the shared inode's metadata: the last entry wins.
        let path = |(dir, name): (u64, &str)| format!("d{dir}/{name}");
        for (link, target, mode, mtime) in [
            ((d, "h"), (o, "f3"), 0o600, 1_600_000_000),
            ((o, "h2"), (d, "h"), 0o640, 1_600_000_000 + d),
            ((d, "h3"), (o, "f3"), 0o604, 1_700_000_000 + d),
            ((d, "same"), (d, "f7"), 0o644, 1_500_000_000),
        ] {
            t.hard(&path(link), &path(target), mode, mtime);
        }
    }
    let tar = t.finish();
    for w in [2, 3] {
        let tree = same_as_serial(None, &tar, &opts(Mode::Overlay), w, true).unwrap();
        // d15 is the last directory to link d4/f3: d15/h3's header wins.
        assert_has(
            &tree,
            "d4/f3",
            &["mode=100604", "mtime=1700000015.0", "nlink=4"],
        );
        assert_has(&tree, "d15/h", &["group=d15/h"]);
    }
}

#[test]
fn read_only_directory_full_of_files() {
    let mut t = Tar::default();
    t.dir("ro/", 0o555);
    for f in 0..3000 {
        t.file(&format!("ro/f{f}"), b"x");
    }
    t.dir("ro/sub/", 0o500);
    t.file_meta("ro/sub/inner", b"y", 0o400, 1_234_567_890);
    t.dir("ro/", 0o551);
    let tar = t.finish();
    let tree = same_as_serial(None, &tar, &opts(Mode::Overlay), 2, true).unwrap();
    assert_eq!(tree.len(), 3003);
    assert_has(&tree, "ro", &["mode=40551", "mtime=1400000000"]);
    assert_has(&tree, "ro/sub", &["mode=40500"]);
    assert_has(&tree, "ro/sub/inner", &["mtime=1234567890.0"]);
}

/// Symlinks to directories with entries through them (then the target's own name
/// replaced), symlinks out of the destination with entries through them and, if `looping`,
/// a symlink to itself with an entry below it.
fn symlinks_archive(looping: bool) -> Vec<u8> {
    let mut t = Tar::default();
    dirs_of_files(&mut t, 8, 20, "a");
    for d in 0..8 {
        t.sym(&format!("l{d}"), &format!("d{d}"));
        t.file(&format!("l{d}/via-link"), b"through the link");
        t.file(&format!("l{d}/f2"), b"f2 through the link");
        t.file(&format!("d{d}/f2"), b"f2 directly");
        t.hard(
            &format!("l{d}/hl"),
            &format!("l{d}/f3"),
            0o644,
            1_500_000_000,
        );
    }
    // Symlinks that point out of the destination are resolved inside it.
    t.sym("up", "../../../../..");
    t.file("up/escaped", b"stays inside");
    t.sym("abs", "/");
    t.dir("abs/etc/", 0o755);
    t.file("abs/etc/passwd", b"not the host's");
    if looping {
        t.sym("d0/loop", "loop");
        t.file("d0/loop/x", b"loops");
    }
    t.finish()
}

#[test]
fn symlinks_created_then_traversed() {
    let o = opts(Mode::Overlay);
    let err = same_as_serial(None, &symlinks_archive(true), &o, 2, false).unwrap_err();
    assert!(err.contains("d0/loop/x"), "{err}");
    // Without the looping entry, everything applies.
    let tree = same_as_serial(None, &symlinks_archive(false), &o, 2, false).unwrap();
    assert!(tree["d5/via-link"].starts_with("file \"through the link\""));
    assert!(tree["escaped"].starts_with("file \"stays inside\""));
    assert!(tree["etc/passwd"].starts_with("file \"not the host's\""));
}

#[test]
fn whiteouts_and_opaque_markers_after_queued_files() {
    let mut lower = Tar::default();
    dirs_of_files(&mut lower, 6, 10, "lower");
    let lower = lower.finish();
    let mut t = Tar::default();
    dirs_of_files(&mut t, 6, 5, "upper");
    for d in 0..6 {
        t.file(&format!("d{d}/.wh.f2"), b"");
        t.file(&format!("d{d}/.wh.f8"), b"");
        t.file(&format!("d{d}/new"), b"after the whiteout");
    }
    t.file("d3/.wh..wh..opq", b"");
    t.file("d3/late", b"after the opaque marker");
    let tar = t.finish();
    for mode in [Mode::Flatten, Mode::Overlay] {
        let tree = same_as_serial(Some(&lower), &tar, &opts(mode), 2, false).unwrap();
        if mode == Mode::Flatten {
            assert!(tree["d1/f2"].starts_with("file \"upper 1 2\""));
            assert!(!tree.contains_key("d1/f8"));
            assert!(tree.contains_key("d1/f9"));
            assert!(!tree.contains_key("d3/f9"));
            assert!(tree.contains_key("d3/f4") && tree.contains_key("d3/late"));
        }
    }
}

#[test]
fn first_failing_entry_is_reported() {
    // A symlink without a target fails on a worker; a later entry fails on the coordinator.
    let mut t = Tar::default();
    dirs_of_files(&mut t, 10, 50, "x");
    t.sym("d2/broken", "");
    dirs_of_files(&mut t, 3, 50, "y");
    t.file("bad/../name", b"");
    let tar = t.finish();
    for w in [0, 1, 2, 4] {
        let err = extraction_error(&tar, Mode::Overlay, w);
        assert!(
            matches!(&err, Error::Entry { entry, .. } if entry == "d2/broken"),
            "{w} workers: {err}"
        );
    }
    // The coordinator's error first, a worker's later: the coordinator's is reported.
    let mut t = Tar::default();
    dirs_of_files(&mut t, 4, 50, "x");
    t.file("bad/../name", b"");
    t.sym("d2/broken", "");
    let tar = t.finish();
    for w in [0, 2] {
        let err = extraction_error(&tar, Mode::Overlay, w);
        assert!(
            err.to_string().contains("bad/../name"),
            "{w} workers: {err}"
        );
    }
    // A hardlink to a file that is missing, in a directory a worker fills.
    let mut t = Tar::default();
    dirs_of_files(&mut t, 4, 50, "x");
    t.hard("d1/h", "d3/missing", 0o644, 1);
    t.sym("d0/broken", "");
    let tar = t.finish();
    for w in [0, 2] {
        let err = extraction_error(&tar, Mode::Overlay, w);
        assert!(
            matches!(&err, Error::Entry { entry, .. } if entry == "d1/h"),
            "{w} workers: {err}"
        );
    }
}

/// Finding (fuzz target `layer_extract_parallel`): a hardlink naming a directory as itself
/// (`./a` to `/a`) gave the directory the link's mode, setgid bit included, and a
/// subdirectory made after it inherited the bit or not depending on the workers' timing.
#[test]
fn a_directory_hardlinked_to_itself_is_refused() {
    let mut t = Tar::default();
    t.file("a/b", b"x");
    t.hard("./a", "/a", 0o2755, 1);
    t.dir("a/b/", 0o700);
    let tar = t.finish();
    for w in [0, 3] {
        let err = extraction_error(&tar, Mode::Flatten, w);
        assert!(
            matches!(&err, Error::Entry { entry, reason } if entry == "./a" && reason.contains("directory")),
            "{w} workers: {err}"
        );
    }
}

#[test]
fn many_directories_and_stats() {
    let tar = crate::synth::small_files_layer(5000, 3);
    let tree = same_as_serial(None, &tar, &opts(Mode::Overlay), 2, true).unwrap();
    assert!(tree.len() > 5000);
    let sb = Sandbox::new();
    let s = extract_layer_with_workers(&tar[..], &sb.dest, &opts(Mode::Overlay), 3).unwrap();
    let s0 = {
        let sb = Sandbox::new();
        extract_layer_with_workers(&tar[..], &sb.dest, &opts(Mode::Overlay), 0).unwrap()
    };
    assert_eq!(s, s0);
}

/// One entry of a random archive over a small alphabet of names.
#[derive(Debug, Clone)]
enum E {
    File(usize, u8),
    Dir(usize, u32),
    Sym(usize, usize),
    SymOut(usize),
    Hard(usize, usize, u32),
    Whiteout(usize),
    Opaque(usize),
    Fifo(usize),
}

const NAMES: &[&str] = &[
    "a", "b", "c", "a/x", "a/y", "b/x", "a/x/z", "b/x/z", "c/a", "c/a/x", "l/x", "l/y", "m/x",
];

fn entry() -> impl Strategy<Value = E> {
    let n = 0..NAMES.len();
    prop_oneof![
        4 => (n.clone(), any::<u8>()).prop_map(|(i, b)| E::File(i, b)),
        2 => (n.clone(), prop_oneof![Just(0o755u32), Just(0o555), Just(0o2775)])
            .prop_map(|(i, m)| E::Dir(i, m)),
        1 => (0..3usize, n.clone()).prop_map(|(l, t)| E::Sym(l, t)),
        1 => (0..3usize).prop_map(E::SymOut),
        2 => (n.clone(), n.clone(), prop_oneof![Just(0o644u32), Just(0o600)])
            .prop_map(|(i, t, m)| E::Hard(i, t, m)),
        1 => n.clone().prop_map(E::Whiteout),
        1 => n.clone().prop_map(E::Opaque),
        1 => n.prop_map(E::Fifo),
    ]
}

fn build(entries: &[E], pad: usize) -> Vec<u8> {
    let links = ["l", "m", "c/l"];
    let mut t = Tar::default();
    // Files in other directories in between, so that the workers have a backlog.
    let filler = |t: &mut Tar, k: usize| {
        for f in 0..pad {
            t.file(&format!("pad{}/f{f}", k % 5), b"pad");
        }
    };
    for (k, e) in entries.iter().enumerate() {
        match e {
            E::File(i, b) => {
                t.file_meta(NAMES[*i], &[*b; 3], 0o644, 1_500_000_000 + u64::from(*b));
            }
            E::Dir(i, m) => {
                t.dir(&format!("{}/", NAMES[*i]), *m);
            }
            E::Sym(l, target) => {
                t.sym(links[*l], NAMES[*target]);
            }
            E::SymOut(l) => {
                t.sym(links[*l], "../../..");
            }
            E::Hard(i, target, m) => {
                t.hard(NAMES[*i], NAMES[*target], *m, 1_600_000_000 + k as u64);
            }
            E::Whiteout(i) => {
                let (d, n) = NAMES[*i].rsplit_once('/').unwrap_or(("", NAMES[*i]));
                let name = if d.is_empty() {
                    format!(".wh.{n}")
                } else {
                    format!("{d}/.wh.{n}")
                };
                t.file(&name, b"");
            }
            E::Opaque(i) => {
                t.file(&format!("{}/.wh..wh..opq", NAMES[*i]), b"");
            }
            E::Fifo(i) => {
                t.raw(NAMES[*i], b'6', "", b"", 0o640, 1_500_000_000, 0);
            }
        }
        filler(&mut t, k);
    }
    t.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random archives over a few names (every kind, symlinks in and out of the tree,
    /// whiteouts, opaque markers), flattened onto a random lower layer or extracted as an
    /// overlay layer: the parallel result (tree or error) is the serial one.
    #[test]
    fn parallel_equals_serial(
        lower in proptest::collection::vec(entry(), 0..12),
        upper in proptest::collection::vec(entry(), 1..24),
        flatten in any::<bool>(),
        workers in 1..4usize,
        pad in 0..12usize,
    ) {
        let mode = if flatten { Mode::Flatten } else { Mode::Overlay };
        let o = ExtractOptions { mode, ..ExtractOptions::default() };
        let lower = build(&lower, 0);
        let upper = build(&upper, pad);
        let _ = same_as_serial(Some(&lower), &upper, &o, workers, false);
    }
}

#[test]
fn ownership_and_setuid_bits_in_parallel() {
    // Ownership other than the extracting user's is applied by the workers too.
    if !is_root() {
        return;
    }
    let mut t = Tar::default();
    for d in 0..4 {
        t.dir(&format!("d{d}/"), 0o755);
        for f in 0..20 {
            t.raw(
                &format!("d{d}/f{f}"),
                b'0',
                "",
                b"owned",
                0o4755,
                1_500_000_000,
                1000 + f,
            );
        }
    }
    let tree = same_as_serial(None, &t.finish(), &opts(Mode::Overlay), 2, true).unwrap();
    assert!(
        tree["d2/f7"].contains("mode=104755 uid=1007 gid=1007"),
        "{}",
        tree["d2/f7"]
    );
}
