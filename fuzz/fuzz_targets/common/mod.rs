//! Shared by the extraction fuzz targets: a sandbox directory with a sentinel beside the
//! destination, and tar streams built from fuzz input.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::synth::{EntryType, TarWriter};

/// `base/dest` (extraction target) and `base/outside/sentinel`; removed on drop.
pub struct Sandbox {
    pub base: PathBuf,
    pub dest: PathBuf,
    pub outside: PathBuf,
}

impl Sandbox {
    pub fn new(what: &str) -> Sandbox {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir().join(format!(
            "berth-fuzz-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let dest = base.join("dest");
        let outside = base.join("outside");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("sentinel"), b"keep").unwrap();
        Sandbox {
            base,
            dest,
            outside,
        }
    }

    /// Nothing but `dest` and the untouched sentinel beside it.
    pub fn check(&self) {
        let mut names: Vec<_> = std::fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dest", "outside"], "created beside the destination");
        let inside: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(inside, ["sentinel"], "written outside the destination");
        assert_eq!(
            std::fs::read(self.outside.join("sentinel")).unwrap(),
            b"keep"
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The layer may have left read-only directories: make them removable first.
        fn open_up(p: &std::path::Path) {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(md) = std::fs::symlink_metadata(p) {
                if md.is_dir() {
                    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
                    if let Ok(rd) = std::fs::read_dir(p) {
                        for e in rd.flatten() {
                            open_up(&e.path());
                        }
                    }
                }
            }
        }
        open_up(&self.base);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "a/b",
    "a/c",
    "b/a",
    "..",
    "../x",
    "/",
    "/abs",
    "a/../..",
    ".",
    "./a",
    ".wh.a",
    ".wh.b",
    "a/.wh.b",
    "a/.wh..wh..opq",
    ".wh..wh..opq",
    "b/.wh..wh..opq",
    "a/b/c",
    "l",
    "l/x",
    "l/.wh.x",
    "outside",
    "../outside/sentinel",
    "a/.wh.c",
    ".wh..wh.plnk",
];

const LINKS: &[&str] = &[
    "/",
    "..",
    "../..",
    "../outside",
    "a",
    "/a",
    "a/b",
    "l",
    "../outside/sentinel",
    "/etc",
];

/// One decoded entry.
pub struct Spec {
    pub kind: EntryType,
    pub name: String,
    pub link: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Decodes input into entries: 4 bytes each (kind, name, link, mode/data size).
pub fn entries(data: &[u8]) -> Vec<Spec> {
    data.chunks_exact(4)
        .take(64)
        .map(|c| {
            let kind = match c[0] % 5 {
                0 | 4 => EntryType::File,
                1 => EntryType::Dir,
                2 => EntryType::Symlink,
                _ => EntryType::Hardlink,
            };
            Spec {
                kind,
                name: NAMES[c[1] as usize % NAMES.len()].to_string(),
                link: LINKS[c[2] as usize % LINKS.len()].to_string(),
                data: vec![b'x'; (c[3] & 0x0f) as usize * 100],
                mode: [0o644, 0o755, 0o000, 0o4755, 0o1777, 0o700, 0o444, 0o2755]
                    [(c[3] >> 4) as usize % 8],
            }
        })
        .collect()
}

/// A valid tar stream of [`entries`].
pub fn build_tar(data: &[u8]) -> Vec<u8> {
    let mut t = TarWriter::new();
    for e in entries(data) {
        let body: &[u8] = if e.kind == EntryType::File {
            &e.data
        } else {
            b""
        };
        let name = if e.kind == EntryType::Dir {
            format!("{}/", e.name)
        } else {
            e.name.clone()
        };
        t.entry(&name, e.kind, &e.link, body, e.mode);
    }
    t.finish()
}
