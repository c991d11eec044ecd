//! Image commands: `images`, `image import|inspect|ls|rm|prune`, `rmi`, `unpack`, `bundle rm`
//! and the image form of `run`. Thin: parse, call `berth_image` and `berth_runtime`, print.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_image::bundle::{self, BundleOptions};
use berth_image::store::{ImageRecord, ImportOptions, Store};
use berth_image::Platform;
use berth_runtime::{CreateOptions, RunOutcome, StateRoot};
use serde_json::json;

/// Marks a bundle made by `berth run IMAGE`: deleting its container removes the bundle too
/// (overlay unmounted, upper and work directories removed, the image's layers released).
pub const RUN_MARKER: &str = "berth-run.json";

/// The store's root: `--store`, else `/var/lib/berth` for root and
/// `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`) for other users.
pub fn store_root(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        // Absolute: the path goes into config.json mounts and the run marker.
        return std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(berth_image::store::DEFAULT_ROOT);
    }
    match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
        (Some(d), _) => PathBuf::from(d).join("berth"),
        (None, Some(h)) => PathBuf::from(h).join(".local/share/berth"),
        (None, None) => PathBuf::from(berth_image::store::DEFAULT_ROOT),
    }
}

fn open_store(root: &Path) -> Result<Store> {
    Store::open(root).with_context(|| format!("image store {}", root.display()))
}

/// `image ls` / `images` output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ListFormat {
    /// Aligned columns.
    Table,
    /// A JSON array of image records.
    Json,
}

/// `berth image ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI image layout, OCI archive or docker-archive (`docker save` output).
    Import(ImportArgs),
    /// Print an image's record and config as JSON.
    Inspect {
        /// Image name (`name[:tag]`) or ID prefix.
        image: String,
    },
    /// List images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Remove images (their layers go once no image or container uses them).
    #[command(alias = "remove")]
    Rm {
        /// Image names or ID prefixes.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove blobs and layers no image or container uses, and leftovers of dead imports.
    Prune,
}

/// `berth bundle ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BundleCommand {
    /// Unmount and remove a bundle made by `berth unpack`, releasing its image's layers.
    Rm {
        /// The bundle directory.
        bundle: PathBuf,
    },
}

/// `berth images` / `berth image ls`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Print only names.
    #[arg(short, long)]
    quiet: bool,
}

/// `berth image import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A directory (OCI layout or unpacked docker-archive) or a tar (OCI archive or
    /// docker-archive; gzip and zstd are recognised).
    path: PathBuf,
    /// Name for the image (required when the source names none).
    #[arg(long)]
    name: Option<String>,
    /// Platform to select from an index, as os/arch[/variant] (default: the host's).
    #[arg(long)]
    platform: Option<String>,
}

/// How a bundle is made from an image (`unpack` and the image form of `run`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageProcessArgs {
    /// Environment variable KEY=VALUE (overrides the image's), repeatable.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory (overrides the image's WorkingDir).
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User as name|uid[:group|gid], resolved through the image's /etc/passwd and /etc/group.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Replace the image's Entrypoint (and its Cmd, unless a command is given).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// A flattened copy of the layers instead of an overlay mount.
    #[arg(long)]
    pub flat: bool,
}

impl ImageProcessArgs {
    fn bundle_options(&self, cmd: &[String]) -> BundleOptions {
        // An unprivileged user cannot mount an overlay on the host: a flattened copy instead.
        let rootless = !nix::unistd::geteuid().is_root();
        if rootless && !self.flat {
            tracing::info!("not root: a flattened rootfs instead of an overlay mount");
        }
        BundleOptions {
            flat: self.flat || rootless,
            entrypoint: self.entrypoint.as_ref().map(|e| vec![e.clone()]),
            cmd: (!cmd.is_empty()).then(|| cmd.to_vec()),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            holder: None,
            inspect: false,
            limits: None,
        }
    }

    /// Whether any image-only flag was given (they make `run` mean `run IMAGE`).
    pub fn any(&self) -> bool {
        !self.env.is_empty()
            || self.workdir.is_some()
            || self.user.is_some()
            || self.entrypoint.is_some()
            || self.flat
    }
}

/// `berth unpack`.
#[derive(clap::Args, Debug)]
pub struct UnpackArgs {
    #[command(flatten)]
    process: ImageProcessArgs,
    /// Image name or ID prefix.
    image: String,
    /// Bundle directory to create (must not hold a config.json).
    bundle: PathBuf,
    /// The rootfs is only for looking at or copying files, not for a container: mounted
    /// nosuid,nodev, so the image's setuid programs and device nodes give nobody anything.
    #[arg(long)]
    inspect: bool,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Finds an image by name (`name[:tag]`) or by a prefix (at least 4 hex digits) of its ID
/// (the config digest, as `docker images` shows it).
pub fn find_image(store: &Store, name: &str) -> Result<ImageRecord> {
    match store.image(name) {
        Ok(r) => return Ok(r),
        Err(berth_image::Error::ImageNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<ImageRecord> = store
            .images()?
            .into_iter()
            .filter(|r| image_id(r).starts_with(hex))
            .collect();
        match hits.len() {
            1 => return Ok(hits.into_iter().next().expect("one hit")),
            0 => {}
            n => bail!("image ID prefix {name:?} is ambiguous ({n} images match)"),
        }
    }
    bail!(
        "image {name:?} not found in the store {} (berth images lists them; berth image import adds one)",
        store.root().display()
    )
}

fn image_id(r: &ImageRecord) -> &str {
    r.config.strip_prefix("sha256:").unwrap_or(&r.config)
}

fn human_size(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// `berth images` / `berth image ls`.
pub fn list(store_root: &Path, a: &ListArgs) -> Result<()> {
    let store = open_store(store_root)?;
    let mut images = store.images()?;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &images {
            writeln!(out, "{}", r.name)?;
        }
        return Ok(());
    }
    match a.format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&images)?)?,
        ListFormat::Table => {
            let w = images
                .iter()
                .map(|r| r.name.len())
                .max()
                .unwrap_or(0)
                .max(4);
            writeln!(
                out,
                "{:w$}  {:12}  {:14}  {:>6}  SIZE",
                "NAME", "IMAGE ID", "PLATFORM", "LAYERS"
            )?;
            for r in &images {
                let size: u64 = r.layers.iter().map(|l| l.size).sum();
                writeln!(
                    out,
                    "{:w$}  {:12}  {:14}  {:>6}  {}",
                    r.name,
                    &image_id(r)[..12.min(image_id(r).len())],
                    r.platform,
                    r.layers.len(),
                    human_size(size)
                )?;
            }
        }
    }
    Ok(())
}

/// `berth image ...`.
pub fn image_command(root: &StateRoot, store_root: &Path, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Import(a) => import(store_root, &a),
        ImageCommand::Inspect { image } => {
            let store = open_store(store_root)?;
            let r = find_image(&store, &image)?;
            let config = store.image_config(&r)?;
            let doc = json!({
                "name": r.name,
                "id": r.config,
                "manifest": r.manifest,
                "platform": r.platform,
                "layers": r.layers,
                "config": serde_json::to_value(&config)?,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        ImageCommand::Ls(a) => list(store_root, &a),
        ImageCommand::Rm { images } => remove(store_root, &images),
        ImageCommand::Prune => {
            let store = open_store(store_root)?;
            let orphans = crate::reclaim::orphaned_holds(root, store_root, &store)?;
            let s = store.prune()?;
            println!(
                "removed {} blobs, {} layers, {} leftovers of interrupted imports, {} bundles of killed runs or unpacks",
                s.blobs,
                s.layers,
                s.temporaries,
                orphans.len()
            );
            Ok(())
        }
    }
}

fn import(store_root: &Path, a: &ImportArgs) -> Result<()> {
    let store = open_store(store_root)?;
    let mut opts = ImportOptions {
        name: a.name.clone(),
        ..ImportOptions::default()
    };
    if let Some(p) = &a.platform {
        opts.platform = Platform::parse(p).with_context(|| format!("--platform {p}"))?;
    }
    let records = store
        .import_path(&a.path, &opts)
        .with_context(|| format!("importing {}", a.path.display()))?;
    for r in records {
        println!("{} {}", r.name, r.config);
    }
    Ok(())
}

/// `berth rmi` / `berth image rm`.
pub fn remove(store_root: &Path, images: &[String]) -> Result<()> {
    let store = open_store(store_root)?;
    for name in images {
        let r = find_image(&store, name)?;
        store.remove_image(&r.name)?;
        println!("removed {}", r.name);
    }
    Ok(())
}

/// `berth unpack IMAGE BUNDLE [CMD...]`.
pub fn unpack(store_root: &Path, a: &UnpackArgs) -> Result<()> {
    let store = open_store(store_root)?;
    let r = find_image(&store, &a.image)?;
    let template = template(false);
    // Absolute, so `bundle rm` finds the hold whatever the caller's directory then.
    let dir = std::path::absolute(&a.bundle).unwrap_or_else(|_| a.bundle.clone());
    let opts = BundleOptions {
        inspect: a.inspect,
        ..a.process.bundle_options(&a.command)
    };
    let b = bundle::create_bundle(&store, &r.name, &dir, &template, &opts)
        .with_context(|| format!("unpacking {} into {}", r.name, a.bundle.display()))?;
    println!(
        "{}: {} rootfs of {}",
        b.dir.display(),
        if b.overlay { "overlay" } else { "flat" },
        r.name
    );
    Ok(())
}

/// `berth bundle ...`.
pub fn bundle_command(root: &StateRoot, store_root: &Path, cmd: BundleCommand) -> Result<()> {
    match cmd {
        BundleCommand::Rm { bundle: dir } => {
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            // A bundle of `run IMAGE` whose container is gone, or whose `run` was killed.
            if dir.parent() == Some(&store_root.join("bundles")) {
                if let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                    if crate::reclaim::container_in_use(root, store_root, id) {
                        bail!("{}: bundle of container {id}, which exists or is being made; `berth delete -f {id}` removes both", dir.display());
                    }
                    if crate::reclaim::orphaned_container(root, store_root, id)? {
                        return Ok(());
                    }
                }
            }
            if crate::reclaim::orphaned_unpack(&open_store(store_root)?, &dir)? {
                return Ok(());
            }
            if !dir.join("config.json").exists() && !dir.join("rootfs").exists() {
                bail!("{}: not a bundle (no config.json or rootfs)", dir.display());
            }
            // A leftover of `run IMAGE` (its container already gone): undone as delete would.
            if let Ok(text) = std::fs::read_to_string(dir.join(RUN_MARKER)) {
                let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(id) = doc["id"].as_str() {
                    return remove_run_bundle(&dir, id);
                }
            }
            let store = open_store(store_root)?;
            bundle::remove_bundle(&store, &dir, None)
                .with_context(|| format!("removing bundle {}", dir.display()))?;
            Ok(())
        }
    }
}

/// `berth spec`'s config with a writable root and docker's default capabilities: the base
/// every image bundle starts from.
fn template(terminal: bool) -> serde_json::Value {
    let mut t = berth_runtime::spec_template::default_config(
        !nix::unistd::geteuid().is_root(),
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    t["process"]["terminal"] = json!(terminal);
    // A container's writable layer is the point of an image root (as docker and podman).
    t["root"]["readonly"] = json!(false);
    // docker's default capabilities (ping needs NET_RAW, package managers CHOWN and FOWNER).
    let caps = json!(DOCKER_CAPS);
    t["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
    });
    t
}

/// The capabilities docker and podman give a container by default.
const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The image form of `berth run`.
pub struct RunImage<'a> {
    /// The image.
    pub image: &'a str,
    /// Command and arguments (replace the image's Cmd).
    pub command: &'a [String],
    /// Bundle settings.
    pub process: &'a ImageProcessArgs,
    /// Container name (default: berth-<12 hex>).
    pub name: Option<&'a str>,
    /// Remove the container and its bundle when it exits.
    pub rm: bool,
    /// Return once started.
    pub detach: bool,
    /// Use the caller's terminal.
    pub tty: bool,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--network` and `-p`.
    pub network: crate::network::NetworkChoice<'a>,
}

fn generated_name() -> String {
    let mut b = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    let mut name = String::from("berth-");
    for x in b {
        let _ = std::fmt::Write::write_fmt(&mut name, format_args!("{x:02x}"));
    }
    name
}

/// `berth run IMAGE [CMD...]`: a bundle under `<store>/bundles/<name>`, then create + start.
/// The bundle goes with the container: at exit with `--rm`, else at `berth delete`.
pub fn run_image(root: &StateRoot, store_root: &Path, r: &RunImage<'_>) -> Result<u8> {
    if r.rm && r.detach {
        bail!("--rm with --detach: nothing would wait to remove the container; use `berth delete` (it removes the bundle too)");
    }
    let store = open_store(store_root)?;
    let record = find_image(&store, r.image).map_err(|e| {
        anyhow::anyhow!("{e}; for runc's `run ID` form, give --bundle or run where config.json is")
    })?;
    let id = r.name.map_or_else(generated_name, str::to_string);
    // The name becomes a path component (the bundle, the pinned netns): checked first, with
    // the runtime's rule (and the network's, which allows no '+' and at most 128 bytes).
    berth_runtime::state::validate_id(&id).with_context(|| format!("--name {id:?}"))?;
    if id.len() > 128 || id.contains('+') {
        bail!("--name {id:?}: at most 128 bytes of [A-Za-z0-9_.-] for a networked container");
    }
    if root.read(&id).is_ok() {
        bail!("container {id:?} already exists");
    }
    let bundles = store_root.join("bundles");
    std::fs::create_dir_all(&bundles).with_context(|| format!("creating {}", bundles.display()))?;
    let dir = crate::reclaim::run_bundle_dir(store_root, &id);
    // Claims the name atomically: a concurrent `run --name` of the same name fails here.
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists (a container of that name is being made, or was not deleted); `berth bundle rm {}` removes a leftover",
            dir.display(),
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let holder = crate::reclaim::container_holder(&id);
    let mut opts = r.process.bundle_options(r.command);
    opts.holder = Some(holder.clone());
    let mut template = template(r.tty);
    // As docker does: the container's name (at most 63 bytes) is its hostname.
    let hostname: String = id.chars().take(63).collect();
    template["hostname"] = json!(hostname);
    let b = match bundle::create_bundle(&store, &record.name, &dir, &template, &opts) {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            return Err(e).with_context(|| format!("unpacking {}", record.name));
        }
    };
    let mut attached: Option<PathBuf> = None;
    let discard = |attached: &Option<PathBuf>| {
        // A detached run whose start failed leaves a created container: it goes first.
        let _ = berth_runtime::delete(root, &id, true);
        if let Some(net) = attached {
            let _ = crate::network::detach(net, &id);
        }
        let _ = bundle::remove_bundle(&store, &dir, Some(&holder));
    };
    let res = crate::network::attach_to_bundle(store_root, &dir, &id, &hostname, &r.network)
        .and_then(|net| {
            attached = net;
            // Written once the network is attached: `delete` undoes what it lists.
            let marker = json!({
                "store": store_root, "holder": holder, "image": record.name,
                "net": attached, "id": id,
            });
            std::fs::write(dir.join(RUN_MARKER), marker.to_string())
                .with_context(|| format!("writing {}", dir.join(RUN_MARKER).display()))?;
            berth_runtime::failpoint::hit("run:attached");
            Ok(())
        })
        .and_then(|()| {
            let co = CreateOptions {
                id: id.clone(),
                bundle: b.dir.clone(),
                pid_file: r.pid_file.clone(),
                console_socket: r.console_socket.clone(),
                no_pivot: false,
                no_new_keyring: false,
                preserve_fds: 0,
                foreground: false,
            };
            Ok(if r.detach {
                berth_runtime::run(root, &co, true)?
            } else if r.rm {
                berth_runtime::run(root, &co, false)?
            } else {
                berth_runtime::run_and_keep(root, &co)?
            })
        });
    let outcome = match res {
        Ok(o) => o,
        Err(e) => {
            // Nothing was started (or it was deleted): the bundle and network go too.
            discard(&attached);
            return Err(e);
        }
    };
    match outcome {
        RunOutcome::Detached => {
            println!("{id}");
            Ok(0)
        }
        RunOutcome::Exited(code) => {
            if r.rm {
                remove_run_bundle(&dir, &id)?;
            } else if r.name.is_none() {
                eprintln!("berth: container {id} has exited; `berth delete {id}` removes it");
            }
            Ok(u8::try_from(code).unwrap_or(255))
        }
        RunOutcome::StartFailed { message, code } => {
            // The runtime deleted the container: its bundle and network go with it.
            discard(&attached);
            tracing::error!("{message}");
            Ok(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// After `delete` of container `id`: removes the bundle `berth run IMAGE` made for it (network
/// detached, overlay unmounted, upper and work removed, layers released). Only a marker that
/// names this container, in `<store>/bundles/<id>`, counts: bundles without one are the
/// caller's and stay. Every step runs even if an earlier one fails; the first error is returned.
pub fn remove_run_bundle(bundle_dir: &Path, id: &str) -> Result<()> {
    let marker = bundle_dir.join(RUN_MARKER);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", marker.display()))?;
    let (Some(store), Some(holder)) = (doc["store"].as_str(), doc["holder"].as_str()) else {
        bail!("{}: no store or holder", marker.display());
    };
    let store = Path::new(store);
    let expected = store.join("bundles").join(id);
    if doc["id"].as_str() != Some(id) || bundle_dir != expected {
        // A copied or forged marker: not this container's bundle to remove.
        tracing::warn!(
            "{}: names another container or place; the bundle is left alone",
            marker.display()
        );
        return Ok(());
    }
    let mut first: Option<anyhow::Error> = None;
    if let Some(net) = doc["net"].as_str() {
        if let Err(e) = crate::network::detach(Path::new(net), id) {
            first.get_or_insert(e);
        }
    }
    if store.is_dir() {
        let res = open_store(store).and_then(|s| {
            bundle::remove_bundle(&s, bundle_dir, Some(holder))
                .with_context(|| format!("removing bundle {}", bundle_dir.display()))
        });
        if let Err(e) = res {
            first.get_or_insert(e);
        }
    } else {
        // The store is gone: nothing to release, but the mount and directory still go.
        let _ = nix::mount::umount2(&bundle_dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        if let Err(e) = std::fs::remove_dir_all(bundle_dir) {
            first.get_or_insert(
                anyhow::Error::new(e).context(format!("removing {}", bundle_dir.display())),
            );
        }
    }
    first.map_or(Ok(()), Err)
}
