//! Issue 17: `berth build` gives what `podman build` gives. The same Dockerfiles, from the same
//! context, are built by berth and by podman (Debian's podman 4.3, buildah 1.28, RUN steps
//! through runc, `--format docker` so HEALTHCHECK, ONBUILD and SHELL are kept), and the
//! results are compared: the flattened root filesystems file by file (path, type, mode with
//! the setuid/setgid/sticky bits, owner, size and content, symlink target, hardlink groups;
//! not times) and the config fields a Dockerfile sets. A second test pushes a build whose RUN
//! steps remove base files and make a directory opaque to a local registry, reads it back
//! with skopeo and unpacks it with umoci: the tree is berth's own.
//!
//! podman's storage, run state and temporary files live in the test's temporary directory
//! (`EngineEnv`), berth's in its own (`ImageStore`); both are checked to leave no process,
//! container, mount or hold. RUN steps get `--network none` on both sides: the test runs in
//! the host's network namespace. Skipped (with a message) when podman is not installed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::engines::{engine_test, Engine, EngineEnv, Out};
use common::registry::Registry;
use common::{ImageStore, OutputExt};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The matrix.

/// Two stages; RUN making files, directories, symlinks (one dangling), hardlinks, a fifo,
/// setuid and sticky modes and a chowned directory, removing base files (whiteouts) and
/// emptying a directory of an earlier layer (opaque); COPY of a file (relative to WORKDIR,
/// renamed, into an existing directory, to a new path with and without a trailing slash), of
/// a directory (with and without a trailing slash, holding a symlink and a 0700 directory),
/// of a glob, `--chown`, `--chmod`; ADD of a local .tar.gz; WORKDIR making directories
/// (absolute and relative); ARG and ENV with `--build-arg`; COPY --from; USER before a RUN;
/// and every config instruction.
const RICH: &str = r#"FROM busybox AS builder
RUN mkdir -p /out/sub && echo artifact > /out/sub/a.txt && ln -s sub/a.txt /out/link && \
    chmod 4755 /out/sub/a.txt

FROM busybox
ARG GREETING=hello
ARG UNUSED=unused
ENV APP_HOME=/srv/app MODE="two words" FROM_ARG=$GREETING
RUN mkdir -p /made/deep/dir /opq/sub && echo "$GREETING $MODE" > /made/file && \
    ln -s /made/file /made/symlink && ln -s ../nowhere /made/dangling && \
    ln /made/file /made/hardlink && echo kept > /made/h1 && ln /made/h1 /made/h2 && \
    chmod 4755 /made/file && chmod 2750 /made/h1 && chmod 1777 /made/deep && \
    chown 1000:1000 /made/deep/dir && touch /opq/a /opq/sub/b && mkfifo /made/fifo && \
    rm /bin/vi /etc/group && rm -rf /home && mkdir /home && touch /home/new
RUN rm -rf /opq && mkdir /opq && touch /opq/new && echo more >> /made/file
WORKDIR $APP_HOME
COPY app.txt ./
COPY app.txt renamed.txt
COPY conf/ /etc/app/
COPY conf /etc/app2
COPY *.sh /opt/scripts/
COPY --chown=1000:1000 app.txt run.sh /opt/owned/
COPY --chmod=0640 app.txt /opt/moded.txt
COPY app.txt /newfile
COPY app.txt /newdir/
COPY app.txt /etc/
ADD t.tar.gz /unpacked/
WORKDIR sub
COPY --from=builder /out /from-builder
COPY --from=builder /out/sub/a.txt /a-from-builder
USER 1000:1000
RUN echo "$UNUSED $FROM_ARG" > /tmp/by-user && id -u > /tmp/id && id -g >> /tmp/id
LABEL org.example.name="demo app" version=1
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=2 CMD cat /srv/app/app.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /made/file"]
"#;

/// The context's rules (`.dockerignore`, `COPY .`), ownership and modes of what COPY creates
/// (`--chown` of a directory and of a file under new parents, `--chmod` with and without
/// `--chown`), ADD of an archive to a path without a slash and of a plain file, SHELL,
/// ONBUILD, and hardlinks that survive into the image.
const CONTEXT_RULES: &str = r#"FROM busybox
SHELL ["/bin/sh", "-ec"]
RUN mkdir /opq && touch /opq/old && echo h > /h1 && ln /h1 /h2 && mkdir -p /srv && touch /srv/keep
RUN rm -rf /opq && mkdir /opq && touch /opq/new && rm /srv/keep
COPY . /ctx/
COPY --chown=1000:1000 conf /chowned-dir
COPY --chmod=0750 conf /chmoded-dir/
COPY --chown=1000:1000 app.txt /deep/new/dirs/file
COPY --chown=1000:1000 --chmod=0600 run.sh /srv/
ADD t.tar.gz /opt/t
ADD app.txt /added.txt
ONBUILD RUN echo triggered
"#;

/// Where berth and podman 4.3 differ and why; each entry names the one path and the one
/// attribute (`owner` or `mode`) allowed to differ there. An entry that no longer differs is
/// reported (remove it then).
struct Known {
    path: &'static str,
    attr: &'static str,
    why: &'static str,
}

const KNOWN: &[Known] = &[
    // `COPY --chmod=0750 dir /new/`: berth gives the created destination directory the mode
    // too, as BuildKit does since moby/buildkit#4945 (fsutil#228); buildah 1.28 leaves 0755.
    Known {
        path: "/chmoded-dir",
        attr: "mode",
        why: "COPY --chmod on a created destination directory: BuildKit semantics, not buildah's",
    },
];

/// Writes the shared build context: files with several modes, a directory with a symlink and
/// a 0700 subdirectory, scripts for the glob, an ignored file and a gzip tarball.
fn write_context(ctx: &Path, dockerfile: &str) {
    let file = |rel: &str, content: &str, mode: u32| {
        let p = ctx.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    file("Dockerfile", dockerfile, 0o644);
    file("app.txt", "app\n", 0o644);
    file("conf/a.conf", "a=1\n", 0o644);
    file("conf/sub/b.conf", "b=2\n", 0o600);
    fs::set_permissions(ctx.join("conf/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("a.conf", ctx.join("conf/link")).unwrap();
    file("run.sh", "#!/bin/sh\necho run\n", 0o755);
    file("other.sh", "#!/bin/sh\n", 0o644);
    file("secret.txt", "secret\n", 0o644);
    file("junk.tmp", "junk\n", 0o644);
    file(".dockerignore", "secret.txt\n*.tmp\n", 0o644);
    let src = ctx.with_extension("tarsrc");
    fs::create_dir_all(src.join("tdir")).unwrap();
    fs::write(src.join("inner.txt"), "inner\n").unwrap();
    fs::write(src.join("tdir/deep.txt"), "deep\n").unwrap();
    let tar = Command::new("tar")
        .args(["--owner=123", "--group=456", "-czf"])
        .arg(ctx.join("t.tar.gz"))
        .arg("-C")
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success(), "tar: {}", tar.err());
}

// ---------------------------------------------------------------------------------------------
// Trees.

/// One entry of a root filesystem, as far as an image defines it.
#[derive(Clone, PartialEq, Eq)]
struct Node {
    /// `f`ile, `d`irectory, `l`ink (symbolic), `p`ipe, `c`har or `b`lock device, `s`ocket.
    kind: char,
    /// Permission bits with setuid, setgid and sticky.
    mode: u32,
    uid: u32,
    gid: u32,
    /// A regular file's content.
    content: Vec<u8>,
    /// A symlink's target.
    target: Option<PathBuf>,
    rdev: u64,
    /// The other paths of the tree that are the same file (hardlinks).
    links: Vec<String>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if self.kind == 'f' {
            // FNV-1a: enough to tell contents apart in a message.
            let h = self.content.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            });
            write!(f, " {} bytes fnv:{h:016x}", self.content.len())?;
            if self.content.len() <= 40 {
                write!(f, " {:?}", String::from_utf8_lossy(&self.content))?;
            }
        }
        if let Some(t) = &self.target {
            write!(f, " -> {}", t.display())?;
        }
        if self.kind == 'c' || self.kind == 'b' {
            write!(f, " rdev {:x}", self.rdev)?;
        }
        if !self.links.is_empty() {
            write!(f, " links {:?}", self.links)?;
        }
        Ok(())
    }
}

type Tree = BTreeMap<String, Node>;

/// Every entry below `root` (not `root` itself), keyed `/a/b`.
fn snapshot(root: &Path) -> Tree {
    fn walk(dir: &Path, rel: &str, out: &mut Tree, inodes: &mut BTreeMap<(u64, u64), Vec<String>>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let e = e.unwrap();
            let path = e.path();
            let key = format!("{rel}/{}", e.file_name().to_string_lossy());
            let md = fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_file() {
                'f'
            } else if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else {
                's'
            };
            if kind == 'f' {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(key.clone());
            }
            out.insert(
                key.clone(),
                Node {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    content: if kind == 'f' {
                        fs::read(&path).unwrap()
                    } else {
                        Vec::new()
                    },
                    target: (kind == 'l').then(|| fs::read_link(&path).unwrap()),
                    rdev: md.rdev(),
                    links: Vec::new(),
                },
            );
            if kind == 'd' {
                walk(&path, &key, out, inodes);
            }
        }
    }
    let mut tree = Tree::new();
    let mut inodes = BTreeMap::new();
    walk(root, "", &mut tree, &mut inodes);
    // Hardlink groups, by inode within the tree (not st_nlink: an overlay mount reports the
    // lower layer's count for a file whose partner was copied up and replaced above it).
    for group in inodes.values().filter(|g| g.len() > 1) {
        for p in group {
            let mut others: Vec<String> = group.iter().filter(|o| *o != p).cloned().collect();
            others.sort();
            tree.get_mut(p).unwrap().links = others;
        }
    }
    drop_placeholders(&mut tree);
    tree
}

/// Drops the mount points a RUN step leaves behind in its layer when the base image lacks
/// them (busybox has neither `/etc/hosts` nor `/run`), only while they are empty: berth
/// leaves empty `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (0644), buildah an
/// empty `/etc/hostname` (0755) and an empty `/run` (its `.containerenv` mount point's
/// parent). docker's classic builder keeps all of them in the container's init layer,
/// outside the image.
fn drop_placeholders(tree: &mut Tree) {
    for p in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        if tree
            .get(p)
            .is_some_and(|n| n.kind == 'f' && n.content.is_empty())
        {
            tree.remove(p);
        }
    }
    let run_empty = !tree.keys().any(|k| k.starts_with("/run/"));
    if run_empty && tree.get("/run").is_some_and(|n| n.kind == 'd') {
        tree.remove("/run");
    }
}

/// `attr` of `n` set to a fixed value, so that two nodes compare without it.
fn without(n: &Node, attr: &str) -> Node {
    let mut n = n.clone();
    match attr {
        "owner" => (n.uid, n.gid) = (0, 0),
        "mode" => n.mode = 0,
        _ => panic!("unknown attribute {attr}"),
    }
    n
}

/// Compares two trees; panics with every difference (only in berth, only in podman, and
/// different entries side by side) unless the only ones are [`KNOWN`].
fn assert_same_tree(what: &str, berth: &Tree, podman: &Tree, known: &[Known]) {
    let mut diffs = Vec::new();
    let mut tolerated = Vec::new();
    let keys: BTreeSet<&String> = berth.keys().chain(podman.keys()).collect();
    for k in keys {
        match (berth.get(k), podman.get(k)) {
            (Some(b), Some(p)) if b == p => {}
            (Some(b), Some(p)) => match known.iter().find(|x| x.path == k) {
                Some(x) if without(b, x.attr) == without(p, x.attr) => {
                    tolerated.push(format!("  {k}: berth {b:?}, podman {p:?} ({})", x.why));
                }
                _ => diffs.push(format!("  {k}:\n    berth:  {b:?}\n    podman: {p:?}")),
            },
            (Some(b), None) => diffs.push(format!("  {k}: only in berth's: {b:?}")),
            (None, Some(p)) => diffs.push(format!("  {k}: only in podman's: {p:?}")),
            (None, None) => unreachable!(),
        }
    }
    for x in known {
        if let (Some(b), Some(p)) = (berth.get(x.path), podman.get(x.path)) {
            if b == p {
                println!("{what}: {} no longer differs; remove it from KNOWN", x.path);
            }
        }
    }
    if !tolerated.is_empty() {
        println!("{what}: known differences:\n{}", tolerated.join("\n"));
    }
    assert!(
        diffs.is_empty(),
        "{what}: the root filesystems differ ({} of {} entries in berth's, {} in podman's):\n{}",
        diffs.len(),
        berth.len(),
        podman.len(),
        diffs.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Configs.

/// The config fields a Dockerfile sets.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// `config.config[field]`, with absent, null, `""`, `[]` and `{}` all `null` (podman writes
/// empty values where berth, as docker, omits them), and without the `io.buildah.version`
/// label podman adds to every image.
fn config_field(config: &Value, field: &str) -> Value {
    let mut v = config["config"][field].clone();
    if field == "Labels" {
        if let Some(m) = v.as_object_mut() {
            m.remove("io.buildah.version");
        }
    }
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if empty {
        Value::Null
    } else {
        v
    }
}

fn assert_same_config(what: &str, berth: &Value, podman: &Value) {
    let mut diffs = Vec::new();
    for f in CONFIG_FIELDS {
        let (b, p) = (config_field(berth, f), config_field(podman, f));
        if b != p {
            diffs.push(format!("  {f}:\n    berth:  {b}\n    podman: {p}"));
        }
    }
    for f in ["architecture", "os"] {
        if berth[f] != podman[f] {
            diffs.push(format!("  {f}: berth {} podman {}", berth[f], podman[f]));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: the image configs differ:\n{}",
        diffs.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// berth's side.

fn berth_build(i: &ImageStore, ctx: &Path, tag: &str, args: &[&str]) {
    let mut all = vec!["build", "--network", "none", "-t", tag];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let out = i.cmd(&all).ok();
    assert!(out.out().contains("Successfully tagged"), "{}", out.out());
}

/// The image's config document, as stored (`berth image inspect` shows the fields of its
/// own typed config; the blob is the image).
fn berth_config(i: &ImageStore, image: &str) -> Value {
    let doc: Value = serde_json::from_str(&i.cmd(&["image", "inspect", image]).ok().out()).unwrap();
    let id = doc["id"].as_str().unwrap();
    let hex = id.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(i.store.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

fn berth_layers(i: &ImageStore, image: &str) -> usize {
    let doc: Value = serde_json::from_str(&i.cmd(&["image", "inspect", image]).ok().out()).unwrap();
    doc["layers"].as_array().unwrap().len()
}

/// The image's flattened root filesystem (`berth unpack --flat`), snapshotted, then the
/// bundle removed.
fn berth_tree(i: &ImageStore, image: &str) -> Tree {
    let bundle =
        i.b.path()
            .join(format!("flat-{}", image.replace([':', '/'], "-")));
    i.cmd(&["unpack", "--flat", image, bundle.to_str().unwrap()])
        .ok();
    let tree = snapshot(&bundle.join("rootfs"));
    i.cmd(&["bundle", "rm", bundle.to_str().unwrap()]).ok();
    tree
}

// ---------------------------------------------------------------------------------------------
// podman's side.

/// podman with its storage, run state and configuration in the test's temporary directory;
/// RUN steps through runc (crun refuses this hybrid cgroup host), cgroupfs.
struct Podman {
    env: EngineEnv,
}

impl Engine for Podman {
    fn start() -> Option<Podman> {
        let env = EngineEnv::if_available("build equivalence", &["podman"], "podman")?;
        let d = env.path().to_path_buf();
        for sub in ["storage", "run", "tmp", "vartmp", "net"] {
            env.dir(sub);
        }
        fs::write(
            d.join("containers.conf"),
            format!(
                r#"[containers]
netns = "none"
cgroupns = "host"
default_ulimits = ["nofile=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
static_dir = "{d}/static"
tmp_dir = "{d}/tmp"
volume_path = "{d}/volumes"
lock_type = "file"
"#,
                d = d.display()
            ),
        )
        .unwrap();
        fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/run\"\n",
                d = d.display()
            ),
        )
        .unwrap();
        fs::write(
            d.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        let p = Podman { env };
        let layout = p.env.path().join("busybox-oci");
        p.env.busybox_layout(&layout);
        let archive = p.env.oci_archive(&layout);
        let loaded = p.cli(&["load", "-q", "-i", archive.to_str().unwrap()]).ok();
        assert!(
            loaded.out.contains("localhost/busybox:latest"),
            "{loaded:?}"
        );
        Some(p)
    }

    /// Unmounts and removes every image (so containers/storage unmounts its own overlay
    /// home), then asserts that nothing is left.
    fn finish(self) {
        self.cli(&["image", "unmount", "--all", "--force"]).ok();
        self.cli(&["rmi", "--all", "--force"]).ok();
        self.env.finish(|_| false);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.cli(&["image", "unmount", "--all", "--force"]);
        }
    }
}

impl Podman {
    fn cli(&self, args: &[&str]) -> Out {
        let d = self.env.path();
        let mut all = vec![
            format!("--root={}/storage", d.display()),
            format!("--runroot={}/run", d.display()),
            format!("--tmpdir={}/tmp", d.display()),
            format!("--network-config-dir={}/net", d.display()),
        ];
        all.extend(args.iter().map(ToString::to_string));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.env.run("podman", &all, |c| {
            c.env("CONTAINERS_CONF", d.join("containers.conf"))
                .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
                .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
                .env("TMPDIR", d.join("vartmp"));
        })
    }

    fn build(&self, ctx: &Path, tag: &str, args: &[&str]) {
        let mut all = vec![
            "build",
            "--pull=never",
            "--network=none",
            "--format",
            "docker",
            "-t",
            tag,
        ];
        all.extend_from_slice(args);
        all.push(ctx.to_str().unwrap());
        self.cli(&all).ok();
    }

    /// The image's root filesystem (`podman image mount`: the image's layers alone),
    /// snapshotted, then unmounted.
    fn tree(&self, image: &str) -> Tree {
        let mnt = PathBuf::from(self.cli(&["image", "mount", image]).ok().trimmed());
        assert!(mnt.starts_with(self.env.path()), "{mnt:?}");
        let tree = snapshot(&mnt);
        self.cli(&["image", "unmount", image]).ok();
        tree
    }

    /// The image's config document as stored (podman's inspect leaves out OnBuild and
    /// Shell): `skopeo inspect --config --raw` of the test's containers-storage.
    fn config(&self, image: &str) -> Value {
        let d = self.env.path();
        let out = self
            .env
            .run(
                "skopeo",
                &[
                    "inspect",
                    "--config",
                    "--raw",
                    &format!(
                        "containers-storage:[overlay@{}/storage+{}/run]{image}",
                        d.display(),
                        d.display()
                    ),
                ],
                |c| {
                    c.env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"));
                },
            )
            .ok();
        serde_json::from_str(&out.out).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// One Dockerfile of the matrix, built both ways from one context.
fn compare(
    p: &Podman,
    i: &ImageStore,
    name: &str,
    dockerfile: &str,
    args: &[&str],
    known: &[Known],
) {
    let ctx = i.b.dir(&format!("ctx-{name}"));
    write_context(&ctx, dockerfile);
    berth_build(i, &ctx, &format!("{name}:1"), args);
    p.build(&ctx, &format!("localhost/{name}:1"), args);
    let berth = berth_tree(i, &format!("{name}:1"));
    let podman = p.tree(&format!("localhost/{name}:1"));
    assert!(berth.len() > 200, "{name}: {} entries", berth.len());
    assert_same_tree(name, &berth, &podman, known);
    assert_same_config(
        name,
        &berth_config(i, &format!("{name}:1")),
        &p.config(&format!("localhost/{name}:1")),
    );
    i.cmd(&["rmi", &format!("{name}:1")]).ok();
}

#[test]
fn berth_and_podman_build_the_same_files_and_config() {
    engine_test(
        "build equivalence (2 Dockerfiles, both builders)",
        |p: &Podman| {
            let i = ImageStore::new(&[], &["--network", "none"]);
            compare(p, &i, "rich", RICH, &["--build-arg", "GREETING=hi"], KNOWN);
            compare(p, &i, "rules", CONTEXT_RULES, &[], KNOWN);
            i.assert_clean();
        },
    );
}

/// A build with whiteouts and an opaque directory, pushed, copied back by skopeo to an OCI
/// layout and unpacked by umoci: the same tree as berth's own flat unpack, as many layers as
/// berth recorded, the removed files absent. Not skipped: skopeo, umoci and docker-registry
/// are installed by scripts/setup.sh, as for the registry tests.
#[test]
fn a_pushed_build_reads_back_with_skopeo_and_umoci() {
    let i = ImageStore::new(&[], &["--network", "none"]);
    let ctx = i.b.dir("ctx");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN mkdir -p /opq/sub && touch /opq/old /opq/sub/old && echo keep > /keep\n\
         RUN rm /bin/vi /etc/group && rm -rf /opq && mkdir /opq && touch /opq/new && \
         echo new > /new && ln -s new /new-link\n\
         COPY app.txt /srv/\n\
         CMD [\"cat\", \"/new\"]\n",
    )
    .unwrap();
    fs::write(ctx.join("app.txt"), "app\n").unwrap();
    berth_build(&i, &ctx, "pushed:1", &[]);
    let layers = berth_layers(&i, "pushed:1");
    assert_eq!(layers, 4, "busybox, two RUN steps and a COPY");

    let reg = Registry::start(None);
    let target = format!("{}/eq/pushed:1", reg.host());
    let docker_config = i.b.dir("docker-config");
    let with_config = |args: &[&str]| {
        i.cmd_with(args, |c| {
            c.env("DOCKER_CONFIG", &docker_config);
        })
        .ok()
    };
    with_config(&["tag", "pushed:1", &target]);
    with_config(&["push", &target]);

    let layout = i.b.path().join("oci");
    let copy = Registry::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:back", layout.display()),
    ]);
    assert!(copy.status.success(), "skopeo copy: {}", copy.err());
    // The manifest skopeo wrote: as many layers as berth's image.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        layers,
        "{manifest}"
    );

    let bundle = i.b.path().join("umoci-bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:back", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(unpack.status.success(), "umoci unpack: {}", unpack.err());
    let umoci = snapshot(&bundle.join("rootfs"));
    for gone in ["/bin/vi", "/etc/group", "/opq/old", "/opq/sub"] {
        assert!(
            !umoci.contains_key(gone),
            "{gone} is back in umoci's rootfs"
        );
    }
    for (path, content) in [
        ("/new", "new\n"),
        ("/keep", "keep\n"),
        ("/srv/app.txt", "app\n"),
    ] {
        assert_eq!(
            umoci.get(path).map(|n| n.content.as_slice()),
            Some(content.as_bytes()),
            "{path} in umoci's rootfs"
        );
    }
    assert!(umoci.contains_key("/opq/new") && umoci.contains_key("/bin/sh"));
    assert_same_tree(
        "umoci's unpack of the pushed image",
        &berth_tree(&i, "pushed:1"),
        &umoci,
        &[],
    );

    i.cmd(&["rmi", "pushed:1", &target]).ok();
    i.assert_clean();
}
