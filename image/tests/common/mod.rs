//! Helpers shared by the integration tests: tar streams built by hand (including malformed
//! ones the `tar` crate refuses to write) and a tree snapshot to compare extraction results.
#![allow(
    dead_code,
    unused_macros,
    clippy::many_single_char_names,
    clippy::too_many_arguments,
    clippy::needless_pass_by_value
)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

pub mod sandbox;

/// A tar stream under construction.
pub struct Tar {
    pub b: tar::Builder<Vec<u8>>,
}

/// An entry's type for [`Tar::raw`].
#[derive(Clone, Copy)]
pub enum T {
    File,
    Dir,
    Sym,
    Link,
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        Tar { b }
    }

    /// Appends an entry whose name and link are written verbatim (no checks).
    pub fn raw(
        &mut self,
        name: &[u8],
        t: T,
        link: &[u8],
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name);
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link);
        }
        let (et, dev) = match t {
            T::File => (tar::EntryType::Regular, None),
            T::Dir => (tar::EntryType::Directory, None),
            T::Sym => (tar::EntryType::Symlink, None),
            T::Link => (tar::EntryType::Link, None),
            T::Char(a, b) => (tar::EntryType::Char, Some((a, b))),
            T::Block(a, b) => (tar::EntryType::Block, Some((a, b))),
            T::Fifo => (tar::EntryType::Fifo, None),
        };
        h.set_entry_type(et);
        if let Some((a, b)) = dev {
            h.set_device_major(a).unwrap();
            h.set_device_minor(b).unwrap();
        }
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(
            name.as_bytes(),
            T::File,
            b"",
            data,
            0o644,
            0,
            0,
            1_600_000_000,
        )
    }

    pub fn file_meta(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        self.raw(
            name.as_bytes(),
            T::File,
            b"",
            data,
            mode,
            uid,
            gid,
            1_600_000_000,
        )
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(
            name.as_bytes(),
            T::Dir,
            b"",
            b"",
            0o755,
            0,
            0,
            1_500_000_000,
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name.as_bytes(),
            T::Sym,
            target.as_bytes(),
            b"",
            0o777,
            0,
            0,
            1_600_000_000,
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name.as_bytes(),
            T::Link,
            target.as_bytes(),
            b"",
            0o644,
            0,
            0,
            1_600_000_000,
        )
    }

    /// The `etc/` directory with the users and groups of an image: `etc/passwd` and
    /// `etc/group` holding `passwd` and `group`.
    pub fn users(&mut self, passwd: &str, group: &str) -> &mut Self {
        self.dir("etc/")
            .file("etc/passwd", passwd.as_bytes())
            .file("etc/group", group.as_bytes())
    }

    /// A file with PAX records (xattrs, long names).
    pub fn pax_file(&mut self, name: &str, data: &[u8], records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        let mut h = tar::Header::new_ustar();
        let short = if name.len() < 100 {
            name
        } else {
            "placeholder"
        };
        h.set_path(short).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// What a tree entry looks like, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: String,
    pub mtime: Option<i64>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Options of [`snapshot`].
#[derive(Clone, Copy, Default)]
pub struct Snap {
    /// Include directory mtimes.
    pub dir_mtimes: bool,
    /// Include mtimes of non-directories.
    pub mtimes: bool,
    /// Leave out trusted.overlay.* xattrs.
    pub no_overlay_xattrs: bool,
}

/// Every entry below `root` (not `root` itself), keyed by relative path.
pub fn snapshot(root: &Path, opts: Snap) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, opts, &mut out);
    out
}

fn xattrs(p: &Path, opts: Snap) -> Vec<(String, Vec<u8>)> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let s = String::from_utf8_lossy(name).into_owned();
        if opts.no_overlay_xattrs && s.starts_with("trusted.overlay.") {
            continue;
        }
        if s.starts_with("security.selinux") {
            continue;
        }
        let mut v = vec![0u8; 65536];
        let m = rustix::fs::lgetxattr(p, name, &mut v[..]).unwrap();
        v.truncate(m);
        out.push((s, v));
    }
    out.sort();
    out
}

/// A device's number, `major:minor`.
fn device_number(md: &fs::Metadata) -> String {
    let dev = md.rdev();
    format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev))
}

fn walk(root: &Path, dir: &Path, opts: Snap, out: &mut BTreeMap<String, Node>) {
    for name in sandbox::sorted_names(dir) {
        let p = dir.join(&name);
        // overlayfs lists a whiteout in a directory of one layer, but it cannot be looked up.
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        let ft = md.file_type();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let (kind, content) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&p).unwrap().to_string_lossy().into_owned(),
            )
        } else if ft.is_file() {
            let data = fs::read(&p).unwrap();
            (
                "file",
                format!(
                    "{:x} {} nlink={}",
                    Sha256::digest(&data),
                    data.len(),
                    md.nlink().min(2)
                ),
            )
        } else if ft.is_char_device() {
            ("char", device_number(&md))
        } else if ft.is_block_device() {
            ("block", device_number(&md))
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else {
            ("other", String::new())
        };
        let mtime = if (ft.is_dir() && opts.dir_mtimes) || (!ft.is_dir() && opts.mtimes) {
            Some(md.mtime())
        } else {
            None
        };
        out.insert(
            rel,
            Node {
                kind: kind.into(),
                mode: if ft.is_symlink() {
                    0
                } else {
                    md.mode() & 0o7777
                },
                uid: md.uid(),
                gid: md.gid(),
                content,
                mtime,
                xattrs: xattrs(&p, opts),
            },
        );
        if ft.is_dir() {
            walk(root, &p, opts, out);
        }
    }
}

/// Asserts the two snapshots are equal, listing every difference.
pub fn assert_same(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>, what: &str) {
    let mut diffs = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => diffs.push(format!("only in first: {k} {v:?}")),
            Some(w) if w != v => diffs.push(format!("differs: {k}\n  {v:?}\n  {w:?}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            diffs.push(format!("only in second: {k} {v:?}"));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// A file path as an OsStr (for building paths from bytes).
pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether `program` runs (`program arg` succeeds), for tests of what other tools do.
pub fn has_program(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Returns from the calling test, after printing why it is skipped, unless it runs as root
/// (and, when a program is named, `$program $arg` succeeds: the program is installed).
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
    ($program:literal, $arg:literal) => {
        if !($crate::common::is_root() && $crate::common::has_program($program, $arg)) {
            eprintln!("skipped: needs root and {}", $program);
            return;
        }
    };
}
#[allow(unused_imports)] // Not every test binary skips tests.
pub(crate) use require_root;

/// How many entries the directory `dir` holds.
pub fn count_entries(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

/// Import options that record the image as `name`.
pub fn named(name: &str) -> berth_image::store::ImportOptions {
    berth_image::store::ImportOptions {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Imports the OCI layout at `dir` into `store` with the default options (each image named
/// after the directory and its tag).
pub fn import_layout(
    store: &berth_image::store::Store,
    dir: &Path,
) -> berth_image::Result<Vec<berth_image::ImageRecord>> {
    store.import_oci_layout(dir, &berth_image::store::ImportOptions::default())
}

/// A store in a new temporary directory (at `store/` in it), which the test may fill with
/// anything else it needs.
pub fn temp_store() -> (tempfile::TempDir, berth_image::store::Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = berth_image::store::Store::open(tmp.path().join("store")).unwrap();
    (tmp, store)
}

/// Builds OCI image layouts (and archives of them) for store and bundle tests.
pub mod layout {
    use std::fs;
    use std::io::Write;
    use std::path::Path;

    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};

    pub fn digest(data: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(data))
    }

    /// How a layer blob is compressed.
    #[derive(Clone, Copy)]
    pub enum Comp {
        Plain,
        Gzip,
        Zstd,
    }

    pub fn compress(tar: &[u8], c: Comp) -> (Vec<u8>, &'static str) {
        match c {
            Comp::Plain => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
            Comp::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                (
                    e.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Comp::Zstd => (
                zstd::encode_all(tar, 1).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        }
    }

    /// An OCI layout being written.
    pub struct Layout<'a> {
        pub dir: &'a Path,
        pub index: Vec<Value>,
    }

    impl<'a> Layout<'a> {
        pub fn new(dir: &'a Path) -> Self {
            fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
            fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
            Layout {
                dir,
                index: Vec::new(),
            }
        }

        pub fn blob(&self, data: &[u8]) -> String {
            let d = digest(data);
            fs::write(self.dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
            d
        }

        /// Writes config + manifest for the layers (tar streams, compressed as given) and
        /// returns the manifest descriptor.
        pub fn image(&self, layers: &[(Vec<u8>, Comp)], config: Value, arch: &str) -> Value {
            let blobs: Vec<_> = layers
                .iter()
                .map(|(tar, c)| {
                    let (blob, mt) = compress(tar, *c);
                    (blob, mt, digest(tar))
                })
                .collect();
            self.image_of_blobs(&blobs, config, arch)
        }

        /// [`Self::image`] from blobs as they are (compressed or not, even hostile), each
        /// with its media type and the DiffID to declare.
        pub fn image_of_blobs(
            &self,
            layers: &[(Vec<u8>, &str, String)],
            config: Value,
            arch: &str,
        ) -> Value {
            let mut descs = Vec::new();
            let mut diff_ids = Vec::new();
            for (blob, mt, diff_id) in layers {
                diff_ids.push(diff_id.clone());
                let d = self.blob(blob);
                descs.push(json!({"mediaType": mt, "digest": d, "size": blob.len()}));
            }
            let mut cfg = json!({
                "architecture": arch,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "config": config,
            });
            if arch == "arm64" {
                cfg["variant"] = json!("v8");
            }
            let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
            let cd = self.blob(&cfg_bytes);
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg_bytes.len()},
                "layers": descs,
            });
            let mb = serde_json::to_vec(&manifest).unwrap();
            let md = self.blob(&mb);
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": md,
                "size": mb.len(),
                "platform": {"os": "linux", "architecture": arch},
            })
        }

        /// An index over several manifest descriptors (written as a blob); returns its
        /// descriptor.
        pub fn index_blob(&self, manifests: Vec<Value>) -> Value {
            let idx = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            });
            let b = serde_json::to_vec(&idx).unwrap();
            let d = self.blob(&b);
            json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": b.len()})
        }

        /// Adds a descriptor to index.json under a ref name.
        pub fn tag(&mut self, mut desc: Value, name: &str) -> &mut Self {
            desc["annotations"] = json!({"org.opencontainers.image.ref.name": name});
            self.index.push(desc);
            self
        }

        pub fn write_index(&self) {
            let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.index});
            fs::write(
                self.dir.join("index.json"),
                serde_json::to_vec(&idx).unwrap(),
            )
            .unwrap();
        }
    }

    /// A tar of a directory's regular files and directories (for OCI archives and
    /// docker-archives).
    pub fn tar_dir(dir: &Path) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all(".", dir).unwrap();
        b.into_inner().unwrap()
    }
}

/// Groups of paths below `root` that name the same inode (hard links), each group sorted;
/// only non-directories with more than one name in the tree are listed.
pub fn hardlink_groups(root: &Path) -> std::collections::BTreeSet<Vec<String>> {
    fn walk(root: &Path, dir: &Path, by_ino: &mut BTreeMap<(u64, u64), Vec<String>>) {
        for ent in fs::read_dir(dir).unwrap() {
            let p = ent.unwrap().path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                walk(root, &p, by_ino);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                by_ino.entry((md.dev(), md.ino())).or_default().push(rel);
            }
        }
    }
    let mut by_ino = BTreeMap::new();
    walk(root, root, &mut by_ino);
    by_ino
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

/// Mount points at or below `dir` in this process's mount namespace, deepest (latest) first.
pub fn mounts_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = berth_sys::mountinfo::read_self()
        .unwrap()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.reverse();
    out
}

/// Detaches every mount at or below `dir` (child mounts first); returns how many were found.
pub fn unmount_all_under(dir: &Path) -> usize {
    let mut n = 0;
    // A mount may hide others below it: repeat until none is left (bounded).
    for _ in 0..16 {
        let ms = mounts_under(dir);
        if ms.is_empty() {
            break;
        }
        n += ms.len();
        for m in ms {
            let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
        }
    }
    n
}
