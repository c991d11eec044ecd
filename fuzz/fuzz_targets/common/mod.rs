//! Shared by the filesystem fuzz targets: a sandbox directory with a sentinel beside the
//! destination, tar streams built from fuzz input, a reader of structured input and
//! snapshots of directory trees for comparing them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::synth::{EntryType, TarWriter};

/// `base/dest` (extraction target) and `base/outside/sentinel`; removed on drop.
pub struct Sandbox {
    pub base: PathBuf,
    pub dest: PathBuf,
    pub outside: PathBuf,
}

/// A directory in memory (`/dev/shm`) when there is one, else the temp dir: creating and
/// removing a sandbox per input on a busy disk (and the fsyncs of the store or of a saved
/// config) would bound the speed of a run to a few inputs a second.
pub fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let usable = std::fs::metadata(shm).is_ok_and(|m| m.is_dir())
        // SAFETY: a valid NUL-terminated path.
        && unsafe { libc::access(c"/dev/shm".as_ptr(), libc::W_OK) } == 0;
    if usable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl Sandbox {
    /// A sandbox in [`scratch_dir`].
    pub fn new(what: &str) -> Sandbox {
        Sandbox::new_in(&scratch_dir(), what)
    }

    /// A sandbox in `dir`.
    pub fn new_in(dir: &Path, what: &str) -> Sandbox {
        static N: AtomicU64 = AtomicU64::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep(dir));
        let base = dir.join(format!(
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
        self.check_with(&[]);
    }

    /// Nothing but `dest`, the untouched sentinel beside it and the directories `extra`
    /// (other working directories of the target).
    pub fn check_with(&self, extra: &[&str]) {
        let mut want: Vec<&str> = ["dest", "outside"].iter().chain(extra).copied().collect();
        want.sort_unstable();
        let mut names: Vec<_> = std::fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, want, "created beside the destination");
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

/// Removes `dir` (the layer may have left read-only directories: without privileges, they
/// are made removable and the removal tried again).
fn remove(dir: &Path) {
    fn open_up(p: &Path) {
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
    if std::fs::remove_dir_all(dir).is_err() {
        open_up(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes the sandboxes of fuzzing processes that are gone (a crash aborts before a
/// sandbox is dropped): `berth-fuzz-<what>-<pid>-<n>`.
fn sweep(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("berth-fuzz-") else {
            continue;
        };
        let pid = rest
            .rsplitn(3, '-')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            remove(&e.path());
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        remove(&self.base);
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

/// Reads structured input: bytes, numbers and length-prefixed slices, zeros once the input
/// is used up (so every input decodes to something).
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.byte()) | (u16::from(self.byte()) << 8)
    }

    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// One of `items`.
    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.byte() as usize % items.len()]
    }

    /// A slice of at most `max` bytes (its length is the next byte, scaled).
    pub fn slice(&mut self, max: usize) -> &'a [u8] {
        let n = (self.byte() as usize).min(max).min(self.data.len());
        let (s, rest) = self.data.split_at(n);
        self.data = rest;
        s
    }

    /// A slice of at most `max` bytes with a two-byte length.
    pub fn long_slice(&mut self, max: usize) -> &'a [u8] {
        let n = (self.u16() as usize).min(max).min(self.data.len());
        let (s, rest) = self.data.split_at(n);
        self.data = rest;
        s
    }

    /// Lossy text of [`Input::slice`].
    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.slice(max)).into_owned()
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// What a tree snapshot records of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: (i64, i64),
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        /// The content when small, else its length only.
        data: Option<Vec<u8>>,
        nlink: u64,
        mtime: (i64, i64),
    },
    Symlink {
        target: PathBuf,
        uid: u32,
        gid: u32,
        mtime: (i64, i64),
    },
    Other {
        kind: &'static str,
        mode: u32,
        rdev: u64,
    },
    /// An extended attribute's value (keyed `path@name`).
    Xattr(Vec<u8>),
}

/// Options of [`tree`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeOpts {
    /// Record modes, owners and modification times (not only kinds and content).
    pub meta: bool,
    /// Record the link counts of files.
    pub nlink: bool,
    /// Record xattrs (`trusted.*`, `user.*`) as `path@name` entries.
    pub xattrs: bool,
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and a buffer of the given size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let Ok(cn) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut val = vec![0u8; 4096];
        // SAFETY: valid strings and a buffer of the given size.
        let m =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m >= 0 {
            val.truncate(m as usize);
            out.push((String::from_utf8_lossy(name).into_owned(), val));
        }
    }
    out.sort();
    out
}

/// A snapshot of the tree under `root` (not following symlinks), by relative path.
pub fn tree(root: &Path, opts: TreeOpts) -> BTreeMap<String, Node> {
    fn walk(root: &Path, rel: &Path, opts: TreeOpts, out: &mut BTreeMap<String, Node>) {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let rel = rel.join(e.file_name());
            let p = root.join(&rel);
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let m = |v: u32| if opts.meta { v } else { 0 };
            let mtime = if opts.meta {
                (md.mtime(), md.mtime_nsec())
            } else {
                (0, 0)
            };
            let ft = md.file_type();
            let key = rel.to_string_lossy().into_owned();
            let node = if ft.is_dir() {
                Node::Dir {
                    mode: m(md.mode() & 0o7777),
                    uid: m(md.uid()),
                    gid: m(md.gid()),
                    mtime,
                }
            } else if ft.is_file() {
                Node::File {
                    mode: m(md.mode() & 0o7777),
                    uid: m(md.uid()),
                    gid: m(md.gid()),
                    size: md.len(),
                    data: (md.len() <= 1 << 16).then(|| std::fs::read(&p).unwrap_or_default()),
                    nlink: if opts.nlink { md.nlink() } else { 0 },
                    mtime,
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&p).unwrap_or_default(),
                    uid: m(md.uid()),
                    gid: m(md.gid()),
                    mtime,
                }
            } else {
                let kind = if ft.is_char_device() {
                    "char"
                } else if ft.is_block_device() {
                    "block"
                } else if ft.is_fifo() {
                    "fifo"
                } else {
                    "socket"
                };
                Node::Other {
                    kind,
                    mode: m(md.mode() & 0o7777),
                    rdev: md.rdev(),
                }
            };
            if opts.xattrs {
                for (name, val) in xattrs(&p) {
                    out.insert(format!("{key}@{name}"), Node::Xattr(val));
                }
            }
            out.insert(key, node);
            if ft.is_dir() {
                walk(root, &rel, opts, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), opts, &mut out);
    out
}

/// Small extraction limits: every input's extraction stays within a few MiB of stream,
/// a few hundred entries and a little metadata (the free-space reserve is off: the sandbox
/// disk's fullness is not the input's doing).
pub fn small_limits() -> berth_image::Limits {
    berth_image::Limits {
        max_layer_bytes: 4 << 20,
        max_image_bytes: 8 << 20,
        max_entries: 512,
        max_entry_meta: 64 << 10,
        max_layer_meta: 1 << 20,
        max_file_size: 2 << 20,
        max_total_size: 8 << 20,
        max_volume_bytes: 1 << 20,
        min_free_bytes: 0,
        min_free_inodes: 0,
    }
}
