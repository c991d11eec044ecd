//! The bar: a multi-layer image with whiteouts, an opaque directory, hardlinks and
//! symlinks unpacks to exactly the tree podman produces. The same OCI archive is loaded into
//! two isolated podman storages, one with the overlay driver and one with the vfs driver, and
//! into a berth store. berth's overlay rootfs is compared with podman's overlay image mount
//! (both stack per-layer directories) and berth's flattened rootfs with podman's vfs image
//! mount (both apply each layer onto the tree of the layers below).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use berth_image::bundle::{create_bundle, remove_bundle, BundleOptions};
use berth_image::store::Store;
use common::layout::{tar_dir, Comp, Layout};
use common::{
    assert_same, hardlink_groups, mounts_under, named, require_root, snapshot, unmount_all_under,
    Node, Snap, Tar,
};
use serde_json::json;

/// What an entry is, for [`Layer::put`].
#[derive(Clone, Copy)]
enum K<'a> {
    File(&'a [u8]),
    Dir,
    Sym(&'a str),
    Link(&'a str),
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
}

/// `security.capability` for cap_net_raw (vfs_cap_data revision 2, effective).
const CAP_NET_RAW: &[u8] = &[
    0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A layer tar: every entry gets its own mtime, names and link targets longer than 100 bytes
/// get GNU long-name records (or PAX records with [`Layer::put_pax`]).
struct Layer {
    t: Tar,
    clock: u64,
}

impl Layer {
    fn new(clock: u64) -> Self {
        Layer {
            t: Tar::new(),
            clock,
        }
    }

    fn header(&mut self, k: K, mode: u32, (uid, gid): (u64, u64)) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let et = match k {
            K::File(_) => tar::EntryType::Regular,
            K::Dir => tar::EntryType::Directory,
            K::Sym(_) => tar::EntryType::Symlink,
            K::Link(_) => tar::EntryType::Link,
            K::Fifo => tar::EntryType::Fifo,
            K::Char(..) => tar::EntryType::Char,
            K::Block(..) => tar::EntryType::Block,
        };
        h.set_entry_type(et);
        if let K::Char(a, b) | K::Block(a, b) = k {
            h.set_device_major(a).unwrap();
            h.set_device_minor(b).unwrap();
        }
        h.set_size(match k {
            K::File(d) => d.len() as u64,
            _ => 0,
        });
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(self.clock);
        self.clock += 7;
        h
    }

    fn put(&mut self, path: &str, k: K, mode: u32, owner: (u64, u64)) -> &mut Self {
        self.put_x(path, k, mode, owner, &[])
    }

    /// With xattrs (PAX `SCHILY.xattr.*` records).
    fn put_x(
        &mut self,
        path: &str,
        k: K,
        mode: u32,
        owner: (u64, u64),
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        if !xattrs.is_empty() {
            let recs: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(n, v)| (format!("SCHILY.xattr.{n}"), *v))
                .collect();
            self.t
                .b
                .append_pax_extensions(recs.iter().map(|(n, v)| (n.as_str(), *v)))
                .unwrap();
        }
        let mut h = self.header(k, mode, owner);
        match k {
            K::File(d) => self.t.b.append_data(&mut h, path, d).unwrap(),
            K::Sym(target) | K::Link(target) => self.t.b.append_link(&mut h, path, target).unwrap(),
            _ => self.t.b.append_data(&mut h, path, &[][..]).unwrap(),
        }
        self
    }

    /// Name (and link target) in PAX `path` / `linkpath` records, as Go's archive/tar writes
    /// long names; the ustar fields hold a placeholder.
    fn put_pax(&mut self, path: &str, k: K, mode: u32, owner: (u64, u64)) -> &mut Self {
        let mut recs: Vec<(&str, &[u8])> = vec![("path", path.as_bytes())];
        if let K::Sym(t) | K::Link(t) = k {
            recs.push(("linkpath", t.as_bytes()));
        }
        self.t.b.append_pax_extensions(recs).unwrap();
        let mut h = self.header(k, mode, owner);
        h.set_path("pax-placeholder").unwrap();
        if let K::Sym(_) | K::Link(_) = k {
            h.set_link_name("pax-placeholder").unwrap();
        }
        h.set_cksum();
        let data: &[u8] = match k {
            K::File(d) => d,
            _ => &[],
        };
        self.t.b.append(&h, data).unwrap();
        self
    }

    /// A root-owned file of mode 0644, as most of an image's files are.
    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.put(path, K::File(data), 0o644, ROOT)
    }

    /// A whiteout (`.wh.NAME`, or `.wh..wh..opq` for an opaque directory) for `path`.
    fn wh(&mut self, path: &str) -> &mut Self {
        self.file(path, b"")
    }

    fn finish(&mut self) -> Vec<u8> {
        self.t.finish()
    }
}

const ROOT: (u64, u64) = (0, 0);

/// The xattrs of the directory `srv/dirx`, in the layer that makes it and the one that makes
/// it opaque.
const DIRX_XATTRS: &[(&str, &[u8])] = &[("user.dir", b"on a directory")];

fn long(prefix: &str, c: char, n: usize) -> String {
    format!("{prefix}{}", c.to_string().repeat(n))
}

/// Four layers: gzip, zstd, gzip, plain.
fn layers() -> Vec<(Vec<u8>, Comp)> {
    let long_dir = long("deep/", 'd', 90);
    let long_file = format!("{long_dir}/{}", "f".repeat(80));
    let long_pax = format!("{long_dir}/{}", "p".repeat(120));
    let long_target = format!("/{}", "t".repeat(150));

    // Base: modes, owners, symlinks, hardlinks, a FIFO, a device, xattrs, long names.
    let mut l1 = Layer::new(1_500_000_000);
    l1.put("etc", K::Dir, 0o755, ROOT)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .file("etc/group", b"root:x:0:\napp:x:1000:\n")
        .put("etc/shadow", K::File(b"root:*:1::::::\n"), 0o640, (0, 42))
        .put("bin", K::Dir, 0o755, ROOT)
        .put("bin/su", K::File(b"su binary"), 0o4755, ROOT)
        .put("bin/wall", K::File(b"wall binary"), 0o2755, (0, 5))
        .put_x(
            "bin/ping",
            K::File(b"ping binary"),
            0o755,
            ROOT,
            &[
                ("user.comment", b"pings"),
                ("security.capability", CAP_NET_RAW),
            ],
        )
        .put("tmp", K::Dir, 0o1777, ROOT)
        .put("srv", K::Dir, 0o750, (1000, 1000))
        .put("srv/readonly", K::File(b"ro"), 0o444, (1000, 100))
        .put("srv/owned", K::File(b"owned v1"), 0o640, (1234, 5678))
        .put_x("srv/dirx", K::Dir, 0o755, (1000, 1000), DIRX_XATTRS)
        .put("srv/dirx/a", K::File(b"a"), 0o600, (1000, 1000))
        .put("srv/dirx/b", K::File(b"b"), 0o600, (1000, 1000))
        .put("usr", K::Dir, 0o755, ROOT)
        .put("usr/lib", K::Dir, 0o755, ROOT)
        .put("usr/lib/libc.so", K::File(b"libc"), 0o755, ROOT)
        .put("usr/lib/libc.so.6", K::Link("usr/lib/libc.so"), 0o755, ROOT)
        .put(
            "usr/lib/libc.so.6.0",
            K::Link("usr/lib/libc.so"),
            0o755,
            ROOT,
        )
        .put("lib", K::Sym("usr/lib"), 0o777, ROOT)
        .put("usr/bin", K::Dir, 0o755, ROOT)
        .put("usr/bin/abs", K::Sym("/usr/lib/libc.so"), 0o777, ROOT)
        .put("usr/bin/rel", K::Sym("../lib/libc.so"), 0o777, ROOT)
        .put("usr/bin/dangling", K::Sym("/nonexistent/x"), 0o777, ROOT)
        .put("usr/bin/owned-link", K::Sym("abs"), 0o777, (1000, 1000))
        .put("usr/bin/long-target", K::Sym(&long_target), 0o777, ROOT)
        .put("run", K::Dir, 0o755, ROOT)
        .put("run/fifo", K::Fifo, 0o620, (1000, 5))
        .put("dev", K::Dir, 0o755, ROOT)
        .put("dev/null", K::Char(1, 3), 0o666, ROOT)
        .put("dev/loop0", K::Block(7, 0), 0o660, (0, 6))
        .file("implicit/parent/file", b"no parent entries")
        .put("opq2", K::Dir, 0o700, (4, 4))
        .file("opq2/x", b"x")
        .put("gone2", K::Dir, 0o755, ROOT)
        .file("gone2/old", b"old")
        .put("deep", K::Dir, 0o755, ROOT)
        .put(&long_dir, K::Dir, 0o755, ROOT)
        .put(&long_file, K::File(b"long name"), 0o644, (7, 7))
        .put_pax(&long_pax, K::File(b"pax name"), 0o600, (8, 8))
        .put(
            &format!("{long_dir}/hard-to-long"),
            K::Link(&long_file),
            0o644,
            (7, 7),
        )
        .put("gone", K::Dir, 0o755, ROOT)
        .file("gone/file", b"gone")
        .put("old", K::Dir, 0o755, ROOT)
        .file("old/a", b"a")
        .put("old/sub", K::Dir, 0o755, ROOT)
        .file("old/sub/b", b"b")
        .put("opq", K::Dir, 0o755, (3, 3))
        .file("opq/hidden", b"hidden by the opaque marker")
        .put("opq/sub", K::Dir, 0o755, ROOT)
        .file("opq/sub/x", b"x")
        .file("f2d", b"a file, then a directory")
        .put("d2s", K::Dir, 0o755, ROOT)
        .file("d2s/inner", b"inner")
        .put("home", K::Dir, 0o755, ROOT)
        .put("home/app", K::Dir, 0o700, (1000, 1000))
        .put("home/app/.profile", K::File(b"PS1=$"), 0o644, (1000, 1000))
        .file("twice", b"base")
        .put("hl", K::Dir, 0o755, ROOT)
        .file("hl/target", b"target")
        .put_x(
            "hl/link",
            K::Link("hl/target"),
            0o600,
            (11, 12),
            &[("user.link", b"x")],
        );

    // Middle: whiteouts of a file and a directory, an opaque directory whose marker comes
    // after its new entries, file -> directory, directory -> symlink, a new hardlink pair, a
    // directory whited out and re-created in the same layer.
    let mut l2 = Layer::new(1_600_000_000);
    l2.put("etc", K::Dir, 0o755, ROOT)
        .wh("etc/.wh.group")
        .wh(".wh.old")
        .put("opq", K::Dir, 0o750, (3, 4))
        .file("opq/new", b"new in the opaque dir")
        .put("opq/newdir", K::Dir, 0o755, ROOT)
        .file("opq/newdir/y", b"y")
        .wh("opq/.wh..wh..opq")
        .put("f2d", K::Dir, 0o700, (5, 5))
        .file("f2d/inside", b"inside")
        .put("d2s", K::Sym("srv/dirx"), 0o777, ROOT)
        .put("pair", K::Dir, 0o755, ROOT)
        .put("pair/one", K::File(b"one and two"), 0o600, (7, 8))
        .put("pair/two", K::Link("pair/one"), 0o600, (7, 8))
        .put("srv", K::Dir, 0o750, (1000, 1000))
        .put("srv/owned", K::File(b"owned v2"), 0o604, (4321, 8765))
        .file("mid-only", b"mid")
        .wh(".wh.gone2")
        .put("gone2", K::Dir, 0o755, (2, 2))
        .file("gone2/new", b"new")
        .put("twice", K::File(b"mid"), 0o600, (1, 1));

    // Top: whiteouts of things from two layers down and from the middle, a whiteout inside an
    // opaque directory, a directory re-created as a file, a whited-out file re-created, an
    // opaque marker before the directory's new entries, a file whose parent has no entry in
    // this layer, an opaque marker whose directory has no entry in this layer.
    let mut l3 = Layer::new(1_700_000_000);
    l3.wh(".wh.gone")
        .put("usr", K::Dir, 0o755, ROOT)
        .put("usr/bin", K::Dir, 0o755, ROOT)
        .wh("usr/bin/.wh.dangling")
        .wh(".wh.mid-only")
        .put("opq", K::Dir, 0o750, (3, 4))
        .wh("opq/.wh.new")
        .file("old", b"old is a file now")
        .put("etc", K::Dir, 0o755, ROOT)
        .file("etc/group", b"root:x:0:\napp:x:1000:\nnew:x:5:\n")
        .put("srv", K::Dir, 0o750, (1000, 1000))
        .put_x("srv/dirx", K::Dir, 0o755, (1000, 1000), DIRX_XATTRS)
        .wh("srv/dirx/.wh..wh..opq")
        .put("srv/dirx/c", K::File(b"c"), 0o640, (1000, 1000))
        .wh(".wh.never-existed")
        .file("home/app/newfile", b"parent not in this layer")
        .wh("opq2/.wh..wh..opq")
        .put("twice", K::File(b"top"), 0o640, (2, 2));

    // Plain: the hardlink pair loses one name, the symlink that replaced a directory goes.
    let mut l4 = Layer::new(1_800_000_000);
    l4.put("pair", K::Dir, 0o755, ROOT)
        .wh("pair/.wh.two")
        .wh(".wh.d2s")
        .put("d2s", K::Dir, 0o711, (9, 9))
        .file("d2s/again", b"again");

    vec![
        (l1.finish(), Comp::Gzip),
        (l2.finish(), Comp::Zstd),
        (l3.finish(), Comp::Gzip),
        (l4.finish(), Comp::Plain),
    ]
}

/// Where podman's two drivers disagree with each other (podman 4.3.1): the overlay driver
/// unpacks each layer into an empty directory, the vfs driver onto a copy of the layers below.
/// berth's overlay rootfs matches the former and its flat rootfs the latter on these paths
/// (compared like all others). Podman's overlay and vfs trees must not differ anywhere else.
const PODMAN_DRIVERS_DIFFER: &[(&str, &str)] = &[
    (
        "home/app",
        "layer 3 adds home/app/newfile without an entry for home/app: overlay creates the \
         parent in the layer's directory as 0755 root:root, which hides the lower 0700 \
         1000:1000 directory; vfs keeps the existing directory",
    ),
    (
        "opq2",
        "layer 3 has opq2/.wh..wh..opq without an entry for opq2: the same implicit parent, \
         0755 root:root with overlay, the lower 0700 4:4 kept with vfs",
    ),
    (
        "gone2/old",
        "layer 2 has .wh.gone2, then gone2/ and gone2/new: overlay turns the whiteout into a \
         plain, non-opaque directory, so the lower gone2/old shows through; vfs removes gone2 \
         first (as the OCI spec reads)",
    ),
    (
        "pair/one",
        "layer 4 whites out its other name pair/two: overlay shows the lower inode's link \
         count (2), the copy vfs made has one name left",
    ),
];

/// Directories that a layer names only as a parent (no entry of their own there): created (in
/// an overlay layer) or changed (in a flat tree) at extraction time, on both sides, so their
/// mtime is not compared.
const IMPLICIT_DIRS: &[&str] = &["implicit", "implicit/parent", "home", "home/app", "opq2"];

/// Paths where `a` and `b` differ, each with a description of both values.
fn differences(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>) -> Vec<(String, String)> {
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| (p.clone(), format!("{p}: {:?} / {:?}", a.get(p), b.get(p))))
        .collect()
}

/// podman with storage, run state and temporaries all under one directory, and one storage
/// driver.
struct Podman {
    dir: PathBuf,
    driver: &'static str,
}

impl Podman {
    fn new(dir: &Path, driver: &'static str) -> Self {
        for d in ["root", "runroot", "tmp", "net", "vartmp"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        // Our own storage.conf: no host setting (mount_program, additional image stores)
        // applies.
        fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"{1}\"\nrunroot = \"{0}/runroot\"\ngraphroot = \"{0}/root\"\n",
                dir.display(),
                driver
            ),
        )
        .unwrap();
        Podman {
            dir: dir.to_path_buf(),
            driver,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let d = &self.dir;
        Command::new("podman")
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            // Where an archive is unpacked before it is copied (else /var/tmp).
            .env("TMPDIR", d.join("vartmp"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net"))
            .args([
                "--storage-driver",
                self.driver,
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Loads `archive` (one image) and mounts the image itself (nothing added, unlike a
    /// container's rootfs); returns the mount point.
    fn load_and_mount(&self, archive: &Path) -> PathBuf {
        self.ok(&["load", "--quiet", "--input", archive.to_str().unwrap()]);
        let id = self.ok(&["images", "--quiet", "--no-trunc"]);
        let id = id.trim();
        assert_eq!(
            id.lines().count(),
            1,
            "{}: one image loaded: {id}",
            self.driver
        );
        let mnt = PathBuf::from(self.ok(&["image", "mount", id]).trim());
        assert!(mnt.is_dir(), "{}: {mnt:?}", self.driver);
        assert!(
            mnt.starts_with(&self.dir),
            "{}: {mnt:?} outside the test's storage",
            self.driver
        );
        mnt
    }
}

/// Processes whose command line names `dir` (only podman and its helpers started by this
/// test can, since `dir` is a fresh temporary directory).
fn processes_naming(dir: &Path) -> Vec<(i32, String)> {
    let me = std::process::id();
    let needle = dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for ent in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let Ok(cmd) = fs::read(ent.path().join("cmdline")) else {
            continue;
        };
        if cmd.windows(needle.len()).any(|w| w == needle) {
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// Cleans up whatever happened: podman's mounts and images, berth's bundles, every mount left
/// under the temporary directory, and processes naming it; then the directory goes.
struct Guard {
    tmp: tempfile::TempDir,
    podman: Vec<Podman>,
    store: Option<Store>,
    bundles: Vec<PathBuf>,
}

impl Guard {
    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn cleanup(&mut self) {
        for p in self.podman.drain(..) {
            let _ = p.run(&["image", "unmount", "--all", "--force"]);
            let _ = p.run(&["rm", "--all", "--force"]);
            let _ = p.run(&["rmi", "--all", "--force"]);
        }
        if let Some(store) = self.store.take() {
            for b in self.bundles.drain(..) {
                let _ = remove_bundle(&store, &b, None);
            }
        }
        for (pid, _) in processes_naming(self.tmp.path()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        unmount_all_under(self.tmp.path());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cleanup();
        // `tmp` is removed after this, with nothing mounted below it any more.
    }
}

fn template() -> serde_json::Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": false},
    })
}

#[test]
fn unpacks_exactly_like_podman() {
    require_root!("podman", "--version");
    let start = Instant::now();
    let mut g = Guard {
        tmp: tempfile::tempdir().unwrap(),
        podman: Vec::new(),
        store: None,
        bundles: Vec::new(),
    };
    let tmp = g.path().to_path_buf();

    // One OCI archive for podman and berth.
    let lay_dir = tmp.join("layout");
    let mut lay = Layout::new(&lay_dir);
    let desc = lay.image(&layers(), json!({"Cmd": ["/bin/su"]}), "amd64");
    lay.tag(desc, "bar").write_index();
    let archive = tmp.join("image.tar");
    fs::write(&archive, tar_dir(&lay_dir)).unwrap();

    // podman, twice, in storages of their own: the overlay driver keeps each layer in a
    // directory of its own and stacks them at mount time, like berth's overlay rootfs; the vfs
    // driver applies each layer onto a copy of its parent, i.e. flattens, like berth's flat
    // rootfs.
    let mut theirs = BTreeMap::new();
    for driver in ["overlay", "vfs"] {
        let p = Podman::new(&tmp.join(format!("podman-{driver}")), driver);
        g.podman.push(p);
        let mnt = g.podman.last().unwrap().load_and_mount(&archive);
        theirs.insert(driver, mnt);
    }

    // berth: overlay and flat bundles of the same archive.
    let store = g.store.insert(Store::open(tmp.join("store")).unwrap());
    store.import_oci_archive(&archive, &named("bar")).unwrap();
    let mut rootfs = Vec::new();
    for flat in [false, true] {
        let dir = tmp.join(if flat {
            "bundle-flat"
        } else {
            "bundle-overlay"
        });
        g.bundles.push(dir.clone());
        let store = g.store.as_ref().unwrap();
        let b = create_bundle(
            store,
            "bar",
            &dir,
            &template(),
            &BundleOptions {
                flat,
                ..BundleOptions::default()
            },
        )
        .unwrap();
        assert_eq!(b.overlay, !flat);
        rootfs.push((if flat { "flat" } else { "overlay" }, b.rootfs));
    }

    // Content, type, mode, owner, symlink target, device numbers, xattrs (not overlayfs' own),
    // link counts, hardlink groups, and mtimes of everything, directories included (but for
    // directories created implicitly, whose mtime is the extraction time).
    let snap = Snap {
        mtimes: true,
        dir_mtimes: true,
        no_overlay_xattrs: true,
    };
    let mut want = BTreeMap::new();
    let mut want_links = BTreeMap::new();
    for (driver, mnt) in &theirs {
        let mut w = snapshot(mnt, snap);
        for d in IMPLICIT_DIRS {
            w.get_mut(*d).unwrap().mtime = None;
        }
        want.insert(*driver, w);
        want_links.insert(*driver, hardlink_groups(mnt));
    }
    // podman against itself: its drivers differ on the listed paths only.
    let drivers_differ = differences(&want["overlay"], &want["vfs"]);
    let unexpected: Vec<&String> = drivers_differ
        .iter()
        .filter(|(p, _)| !PODMAN_DRIVERS_DIFFER.iter().any(|(q, _)| p == q))
        .map(|(_, d)| d)
        .collect();
    assert!(
        unexpected.is_empty(),
        "podman overlay vs podman vfs (first / second):\n{}",
        unexpected
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        want_links["overlay"], want_links["vfs"],
        "hardlink groups: podman overlay vs podman vfs"
    );
    if !drivers_differ.is_empty() {
        eprintln!(
            "podman overlay vs podman vfs (first / second), berth matches each:\n  {}",
            drivers_differ
                .iter()
                .map(|(p, d)| {
                    let why = PODMAN_DRIVERS_DIFFER
                        .iter()
                        .find(|(q, _)| q == p)
                        .unwrap()
                        .1;
                    format!("{d} ({why})")
                })
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    for (what, r) in &rootfs {
        let driver = if *what == "flat" { "vfs" } else { "overlay" };
        let mut ours = snapshot(r, snap);
        for d in IMPLICIT_DIRS {
            if let Some(n) = ours.get_mut(*d) {
                n.mtime = None;
            }
        }
        let want = &want[driver];
        assert_same(
            &ours,
            want,
            &format!("berth {what} rootfs (first) vs podman {driver} image mount (second)"),
        );
        assert_eq!(
            hardlink_groups(r),
            want_links[driver],
            "hardlink groups: berth {what} vs podman {driver}"
        );
    }
    let (want, want_links) = (&want["overlay"], &want_links["overlay"]);

    // The bar's cases, checked by name too (so the comparison cannot pass on two empty trees).
    let expect_absent = [
        "old/a",
        "etc/.wh.group",
        "gone",
        "opq/hidden",
        "opq/sub",
        "opq/new",
        "usr/bin/dangling",
        "mid-only",
        "pair/two",
        "d2s/inner",
        "never-existed",
    ];
    for p in expect_absent {
        assert!(!want.contains_key(p), "podman has {p}");
    }
    for (p, kind) in [
        ("old", "file"),
        ("opq/newdir/y", "file"),
        ("f2d/inside", "file"),
        ("d2s/again", "file"),
        ("lib", "symlink"),
        ("run/fifo", "fifo"),
        ("dev/null", "char"),
        ("srv/dirx/c", "file"),
        ("etc/group", "file"),
    ] {
        assert_eq!(want[p].kind, kind, "{p}: {:?}", want[p]);
    }
    assert_eq!(want["bin/su"].mode, 0o4755);
    assert_eq!(want["tmp"].mode, 0o1777);
    assert!(!want.contains_key("srv/dirx/a"));
    assert!(want["bin/ping"]
        .xattrs
        .contains(&("security.capability".to_string(), CAP_NET_RAW.to_vec())));
    assert!(want["srv/dirx"]
        .xattrs
        .contains(&("user.dir".to_string(), b"on a directory".to_vec())));
    assert!(want_links.contains(&vec![
        "usr/lib/libc.so".to_string(),
        "usr/lib/libc.so.6".to_string(),
        "usr/lib/libc.so.6.0".to_string(),
    ]));

    // Cleanup leaves no mount and no process behind.
    g.cleanup();
    // vfs' image mount is a plain directory, no mount: its layers are gone too.
    let vfs_layers: Vec<_> = fs::read_dir(tmp.join("podman-vfs/root/vfs/dir"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(vfs_layers.is_empty(), "vfs layers left: {vfs_layers:?}");
    let left = mounts_under(&tmp);
    assert!(left.is_empty(), "mounts left: {left:?}");
    let procs = processes_naming(&tmp);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    eprintln!(
        "berth overlay == podman overlay, berth flat == podman vfs ({} entries) in {:?}",
        want.len(),
        start.elapsed()
    );
}
