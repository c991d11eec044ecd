//! Runtime bundles from images: the root filesystem is an overlay mount of the image's layer
//! chain (lowerdirs shared from the store, upper and work per bundle) or a flattened copy, and
//! `config.json` is generated from the image config (image-spec conversion.md) on top of a
//! template (such as `berth spec`'s).
//!
//! The config is typed ([`Spec`]) from template to file: [`create_bundle_with`] takes the
//! template as a `Spec`, applies the image config ([`image_spec`]), lets the caller finish it
//! (a network namespace, more mounts) and writes `config.json` once. [`create_bundle`] and
//! [`runtime_config`] are the same over a JSON template, for callers that hold one.
//!
//! Deep images (over 100 layers) are mounted with the new mount API, one `lowerdir+` per
//! layer, so the page-size limit of a mount option string does not apply; kernels without
//! `lowerdir+` (before 6.8) get a classic mount string of short store links
//! (`<root>/l/<12 hex>`), as containerd and Docker do.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder, Process, Root, Spec, UserBuilder};
use rustix::fs::{Mode as FsMode, OFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::extract::{self, ExtractOptions, Limits, Mode};
use crate::image::{Digest, ImageConfig};
use crate::store::{ImageRecord, Store};

/// How to build a bundle.
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// A flattened copy of the layers instead of an overlay mount.
    pub flat: bool,
    /// Replaces the image's Entrypoint (and drops its Cmd unless `cmd` is given too).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd (the arguments after the image name).
    pub cmd: Option<Vec<String>>,
    /// Extra `KEY=VALUE` environment entries (they override the image's).
    pub env: Vec<String>,
    /// Replaces the image's WorkingDir.
    pub workdir: Option<String>,
    /// Replaces the image's User (`user[:group]`, names or ids).
    pub user: Option<String>,
    /// Who holds the image's layers in the store (default: the bundle directory's path).
    pub holder: Option<String>,
    /// The rootfs is only for looking at or copying files, not for a container: it is
    /// mounted `nosuid,nodev` (an overlay; a flattened copy is bound over itself when root),
    /// so the image's setuid programs and device nodes give nobody anything. A container
    /// needs them as they are (the runtime binds the rootfs with its mount flags).
    pub inspect: bool,
    /// Bounds on extraction and on volume seeding (default: the store's, or
    /// [`Limits::default`] for [`runtime_config`] alone).
    pub limits: Option<Limits>,
}

/// A bundle made by [`create_bundle`] (its config as JSON) or [`create_bundle_with`] (its
/// config typed, `Bundle<Spec>`).
#[derive(Debug, Clone)]
pub struct Bundle<C = Value> {
    /// The bundle directory (holds `config.json` and `rootfs/`).
    pub dir: PathBuf,
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// Whether `rootfs` is an overlay mount (to be unmounted by [`remove_bundle`]).
    pub overlay: bool,
    /// The runtime config, as written to `config.json`.
    pub config: C,
}

fn io_at<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'p {
    move |e| Error::io(path, op, e)
}

/// An overlay mount to make: its layers and options.
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    /// The lower layers, bottom layer first.
    pub lowers: &'a [PathBuf],
    /// The upper (writable) directory.
    pub upper: &'a Path,
    /// overlayfs's work directory (same filesystem as `upper`).
    pub work: &'a Path,
    /// Read `user.overlay.*` xattrs (for a mount inside a user namespace).
    pub userxattr: bool,
    /// Mount `nosuid,nodev` (for a rootfs no container runs from).
    pub inert: bool,
}

/// Mounts `o` on `target`: through `fsopen` and `lowerdir+`, or a classic option string on
/// kernels before 6.8.
pub fn mount_overlay(o: &Overlay<'_>, target: &Path) -> Result<()> {
    if o.lowers.is_empty() {
        return Err(Error::invalid(
            target.display().to_string(),
            "an overlay needs at least one lower layer",
        ));
    }
    match mount_overlay_fd(o, target) {
        Ok(()) => Ok(()),
        // No new mount API or no lowerdir+ (before 6.8): a classic option string.
        Err(Errno::INVAL | Errno::NOSYS) => mount_overlay_legacy(o, target),
        Err(e) => Err(Error::io(target, "mount overlay", e)),
    }
}

fn mount_overlay_fd(o: &Overlay<'_>, target: &Path) -> rustix::io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    // lowerdir+ adds layers from the top down.
    for l in o.lowers.iter().rev() {
        fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    fsconfig_set_string(&fs, "upperdir", o.upper)?;
    fsconfig_set_string(&fs, "workdir", o.work)?;
    if o.userxattr {
        fsconfig_set_flag(&fs, "userxattr")?;
    }
    fsconfig_create(&fs)?;
    let attrs = if o.inert {
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV
    } else {
        MountAttrFlags::empty()
    };
    let mnt: OwnedFd = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

fn mount_overlay_legacy(o: &Overlay<'_>, target: &Path) -> Result<()> {
    let lower: Vec<String> = o
        .lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        o.upper.display(),
        o.work.display()
    );
    if o.userxattr {
        data.push_str(",userxattr");
    }
    let page = rustix::param::page_size();
    if data.len() >= page {
        return Err(Error::invalid(
            target.display().to_string(),
            format!(
                "{} layers do not fit an overlay mount string of {page} bytes and this kernel lacks lowerdir+",
                o.lowers.len()
            ),
        ));
    }
    let data = std::ffi::CString::new(data).map_err(|_| {
        Error::invalid(
            target.display().to_string(),
            "a layer path contains a NUL byte",
        )
    })?;
    let flags = if o.inert {
        MountFlags::NOSUID | MountFlags::NODEV
    } else {
        MountFlags::empty()
    };
    rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str()))
        .map_err(|e| Error::io(target, "mount overlay", e))
}

/// Creates a bundle for `image` in `dir` (created; must not hold a bundle already):
/// `rootfs/` (overlay mount, or a flattened copy when `opts.flat`), `upper/` and `work/` for the
/// overlay, and `config.json` from `template` with the image config applied. The image's
/// layers are held in the store until [`remove_bundle`].
///
/// The JSON form of [`create_bundle_with`]: `template` is read as a [`Spec`] (see
/// [`spec_from_template`]) and the written config is returned as JSON.
pub fn create_bundle(
    store: &Store,
    image: &str,
    dir: &Path,
    template: &Value,
    opts: &BundleOptions,
) -> Result<Bundle> {
    let template = spec_from_template(template)?;
    let b = create_bundle_with(store, image, dir, template, opts, |_| Ok::<(), Error>(()))?;
    let config = serde_json::to_value(&b.config).map_err(|source| Error::Json {
        what: "config.json".into(),
        source,
    })?;
    Ok(Bundle {
        dir: b.dir,
        rootfs: b.rootfs,
        overlay: b.overlay,
        config,
    })
}

/// Creates a bundle for `image` in `dir` as [`create_bundle`] does, from a typed `template`:
/// the image config is applied ([`image_spec`]), then `finish` completes the spec (with the
/// root filesystem in place and the image's layers held) before `config.json` is written,
/// once. If `finish` or anything else fails, what was made is undone and the hold released.
pub fn create_bundle_with<E: From<Error>>(
    store: &Store,
    image: &str,
    dir: &Path,
    template: Spec,
    opts: &BundleOptions,
    finish: impl FnOnce(&mut Spec) -> std::result::Result<(), E>,
) -> std::result::Result<Bundle<Spec>, E> {
    let holder = opts
        .holder
        .clone()
        .unwrap_or_else(|| dir.display().to_string());
    if dir.join("config.json").exists() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "already holds a bundle (config.json exists)",
        )
        .into());
    }
    let existed = dir.exists();
    let record = store.hold(&holder, image)?;
    let opts = BundleOptions {
        limits: Some(opts.limits.unwrap_or(*store.limits())),
        ..opts.clone()
    };
    let build = || -> std::result::Result<Bundle<Spec>, E> {
        let config = store.image_config(&record)?;
        let rootfs = make_rootfs(store, &record, dir, &opts)?;
        let mut spec = image_spec(template, &config, &rootfs, dir, &opts)?;
        finish(&mut spec)?;
        let text = serde_json::to_vec_pretty(&spec).map_err(|source| Error::Json {
            what: "config.json".into(),
            source,
        })?;
        let path = dir.join("config.json");
        fs::write(&path, text).map_err(io_at(&path, "write"))?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            rootfs,
            overlay: !opts.flat && !record.layers.is_empty(),
            config: spec,
        })
    };
    // What was made (the rootfs mounted or not) is undone on any error.
    let res = build();
    if res.is_err() {
        discard_partial(dir, existed);
        let _ = store.release(&holder);
    }
    res
}

/// Undoes a bundle whose making was cut short (its maker killed): unmounts its rootfs,
/// removes the entries [`create_bundle`] makes in `dir` (never the directory's other
/// contents) and releases `holder`'s hold, last.
pub fn discard_unfinished(store: &Store, dir: &Path, holder: &str) -> Result<()> {
    discard_partial(dir, true);
    store.release(holder)
}

/// Removes what a failed [`create_bundle_with`] left: the whole directory if it created it, else
/// only the entries it makes (a directory the caller prepared keeps its other contents).
fn discard_partial(dir: &Path, existed: bool) {
    let _ = rustix::mount::unmount(dir.join("rootfs"), UnmountFlags::DETACH);
    if !existed {
        let _ = crate::store::remove_any(dir);
        return;
    }
    for name in ["rootfs", "upper", "work", "volumes", "config.json"] {
        let p = dir.join(name);
        if fs::symlink_metadata(&p).is_ok() {
            let _ = crate::store::remove_any(&p);
        }
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .recursive(true)
        .create(p)
        .map_err(io_at(p, "create directory"))
}

/// Makes `dir` (0700) and the root filesystem in it: an overlay of the image's layers (with
/// `upper/` and `work/`) or, when `opts.flat`, the layers extracted one onto the other (bound
/// over itself `nosuid,nodev` for `opts.inspect`). Returns the rootfs' path; on an error the
/// caller discards what was made.
fn make_rootfs(
    store: &Store,
    record: &ImageRecord,
    dir: &Path,
    opts: &BundleOptions,
) -> Result<PathBuf> {
    // 0700: the rootfs may hold the image's setuid programs and device nodes; other users must
    // not reach them (a container's root has no nosuid, since the container needs it as is;
    // an `inspect` root has).
    mkdir(dir, 0o700)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_at(dir, "chmod"))?;
    let rootfs = dir.join("rootfs");
    mkdir(&rootfs, 0o755)?;
    let overlay = !opts.flat;
    if overlay {
        store.ensure_image_layers(record)?;
        let mut lowers = Vec::new();
        for l in &record.layers {
            let chain = Digest::parse(&l.chain_id)?;
            // Short links keep a classic mount string small; lowerdir+ resolves them too.
            let short = store.short_layer_path(&chain);
            lowers.push(if short.exists() {
                short
            } else {
                store.layer_path(&chain)
            });
        }
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        mkdir(&upper, 0o755)?;
        mkdir(&work, 0o700)?;
        if record.layers.is_empty() {
            // An image without layers: an empty writable root.
            fs::remove_dir(&rootfs).map_err(io_at(&rootfs, "remove"))?;
            std::os::unix::fs::symlink("upper", &rootfs).map_err(io_at(&rootfs, "symlink"))?;
        } else {
            let overlay = Overlay {
                lowers: &lowers,
                upper: &upper,
                work: &work,
                userxattr: false,
                inert: opts.inspect,
            };
            mount_overlay(&overlay, &rootfs)?;
            berth_sys::failpoint::hit("bundle:mounted");
        }
    } else {
        let n = record.layers.len();
        let budget = store.image_budget(&record.name);
        for (i, l) in record.layers.iter().enumerate() {
            let blob = Digest::parse(&l.blob)?;
            let reader = extract::open_layer(&store.blob_path(&blob), Some(&l.media_type))?;
            let eo = ExtractOptions {
                mode: Mode::Flatten,
                rootless: !rustix::process::geteuid().is_root(),
                confine: true,
                sync: i + 1 == n,
                limits: opts.limits.unwrap_or(*store.limits()),
                budget: Some(budget.clone()),
                ..ExtractOptions::default()
            };
            let stats = extract::extract_layer(reader, &rootfs, &eo)
                .map_err(|e| e.within(&format!("layer {}", l.blob)))?;
            if stats.diff_id != l.diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("layer {blob} (uncompressed)"),
                    expected: l.diff_id.clone(),
                    actual: stats.diff_id,
                });
            }
        }
    }
    if opts.inspect && !overlay {
        inert_bind(&rootfs)?;
    }
    Ok(rootfs)
}

/// Binds a flattened rootfs over itself `nosuid,nodev` (when root: an unprivileged user's
/// copy holds only files it owns, so their setuid bits give it nothing new).
fn inert_bind(rootfs: &Path) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        tracing::info!("not root: the flattened rootfs is not mounted nosuid,nodev");
        return Ok(());
    }
    rustix::mount::mount_bind(rootfs, rootfs)
        .map_err(|e| Error::io(rootfs, "bind the rootfs over itself", e))?;
    let flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV;
    rustix::mount::mount_remount(rootfs, flags, "").map_err(|e| {
        let _ = rustix::mount::unmount(rootfs, UnmountFlags::DETACH);
        Error::io(rootfs, "remount the rootfs nosuid,nodev", e)
    })
}

/// Unmounts a bundle's rootfs (if an overlay), removes the bundle directory and releases the
/// holder's hold on the image's layers.
pub fn remove_bundle(store: &Store, dir: &Path, holder: Option<&str>) -> Result<()> {
    let rootfs = dir.join("rootfs");
    match rustix::mount::unmount(&rootfs, UnmountFlags::DETACH) {
        Ok(()) | Err(Errno::INVAL | Errno::NOENT) => {}
        // Without privileges berth never mounted it (rootless bundles are flat).
        Err(Errno::PERM) if !rustix::process::geteuid().is_root() => {}
        Err(e) => return Err(Error::io(rootfs, "unmount", e)),
    }
    if dir.exists() {
        crate::store::remove_any(dir)?;
    }
    let holder = holder.map_or_else(|| dir.display().to_string(), String::from);
    store.release(&holder)
}

/// Reads a small file of the root filesystem, resolved inside it (a symlinked `/etc/passwd`
/// cannot make berth read a host file). A missing file reads as empty.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        FsMode::empty(),
    )
    .map_err(|e| Error::io(rootfs, "open", e))?;
    let fd = match berth_sys::in_root::open_relative(
        root.as_fd(),
        rel,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK,
        berth_sys::in_root::Resolve::InRootSameMount,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(String::new()),
        Err(e) => return Err(Error::io(rootfs.join(rel), "open", e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(rootfs.join(rel), "fstat", e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Error::invalid(
            format!("/{rel} in the image"),
            "not a regular file",
        ));
    }
    let mut data = Vec::new();
    fs::File::from(fd)
        .take(4 << 20)
        .read_to_end(&mut data)
        .map_err(io_at(&rootfs.join(rel), "read"))?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// A resolved `process.user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups (only when the image names a user without a group).
    pub additional_gids: Vec<u32>,
}

/// Resolves an image `User` (`user[:group]`, names or numbers) through the root filesystem's
/// `/etc/passwd` and `/etc/group` (conversion.md: numbers verbatim, names looked up, a name
/// that is not there is an error).
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<User> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(User {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        });
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let groups = read_in_root(rootfs, "etc/group")?;
    // name:x:uid:gid:gecos:home:shell
    let pw: Vec<(&str, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                *f.first()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    // name:x:gid:member,member
    let gr: Vec<(&str, u32, Vec<&str>)> = groups
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3).map_or_else(Vec::new, |m| {
                m.split(',').filter(|s| !s.is_empty()).collect()
            });
            Some((*f.first()?, f.get(2)?.parse().ok()?, members))
        })
        .collect();
    let bad = |reason: String| Error::invalid(format!("image user {spec:?}"), reason);
    let (uid, mut gid, name) = if let Ok(uid) = user.parse::<u32>() {
        let entry = pw.iter().find(|(_, u, _)| *u == uid);
        (uid, entry.map_or(0, |e| e.2), None)
    } else {
        let entry = pw
            .iter()
            .find(|(n, _, _)| *n == user)
            .ok_or_else(|| bad(format!("no user {user:?} in the image's /etc/passwd")))?;
        (entry.1, entry.2, Some(user))
    };
    let mut additional_gids = Vec::new();
    match group {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => gr
                    .iter()
                    .find(|(n, _, _)| *n == g)
                    .map(|e| e.1)
                    .ok_or_else(|| bad(format!("no group {g:?} in the image's /etc/group")))?,
            };
        }
        None => {
            if let Some(name) = name {
                for (_, g, members) in &gr {
                    if members.contains(&name) && *g != gid && !additional_gids.contains(g) {
                        additional_gids.push(*g);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// Merges environment lists: later entries replace earlier ones with the same name.
fn merge_env(layers: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for list in layers {
        for e in *list {
            if let Some(pos) = out.iter().position(|o| env_key(o) == env_key(e)) {
                out[pos].clone_from(e);
            } else {
                out.push(e.clone());
            }
        }
    }
    out
}

/// Reads a JSON config template as a [`Spec`]. The fields the image config sets need not be
/// in it: a `process` without `user` or `cwd` gets root and `/` until the image's apply.
pub fn spec_from_template(template: &Value) -> Result<Spec> {
    let mut t = template.clone();
    if let Some(p) = t.get_mut("process").and_then(Value::as_object_mut) {
        p.entry("user").or_insert_with(|| serde_json::json!({}));
        p.entry("cwd").or_insert_with(|| serde_json::json!("/"));
    }
    serde_json::from_value(t).map_err(|source| Error::Json {
        what: "config template".into(),
        source,
    })
}

/// A process with nothing set but what the runtime spec requires (oci-spec's `Default` fills
/// in a shell, capabilities and rlimits, which a template without `process` does not ask for).
fn bare_process() -> Process {
    serde_json::from_value(serde_json::json!({"user": {}, "cwd": "/"}))
        .expect("a user and a cwd make a process")
}

fn built<T>(what: &str, r: std::result::Result<T, oci_spec::OciSpecError>) -> Result<T> {
    r.map_err(|e| Error::invalid(what, e.to_string()))
}

/// [`image_spec`] over a JSON template, returning JSON (see [`spec_from_template`]).
pub fn runtime_config(
    template: &Value,
    image: &ImageConfig,
    rootfs: &Path,
    bundle: &Path,
    opts: &BundleOptions,
) -> Result<Value> {
    let spec = image_spec(spec_from_template(template)?, image, rootfs, bundle, opts)?;
    serde_json::to_value(&spec).map_err(|source| Error::Json {
        what: "config".into(),
        source,
    })
}

/// Generates a runtime config: `template` with `root.path = "rootfs"`, and the image config
/// applied (conversion.md): process args (Entrypoint + Cmd, overridable), env (the template's
/// defaults only for names the image does not set), cwd, user (resolved in `rootfs`),
/// annotations (os, architecture, variant, author, created, stop signal, exposed ports, then
/// labels, which take precedence; the template's win over all), and a bind mount from
/// `bundle/volumes/` for each Volume, seeded with the image's content at that path.
pub fn image_spec(
    mut spec: Spec,
    image: &ImageConfig,
    rootfs: &Path,
    bundle: &Path,
    opts: &BundleOptions,
) -> Result<Spec> {
    let empty = oci_spec::image::Config::default();
    let cfg = image.config().as_ref().unwrap_or(&empty);
    let mut root = spec.root().clone().unwrap_or_else(|| {
        let mut r = Root::default();
        r.set_readonly(None);
        r
    });
    root.set_path("rootfs".into());
    spec.set_root(Some(root));

    let entrypoint: Vec<String> = opts
        .entrypoint
        .clone()
        .unwrap_or_else(|| cfg.entrypoint().clone().unwrap_or_default());
    let cmd: Vec<String> = match (&opts.cmd, &opts.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cfg.cmd().clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::invalid(
            "image config",
            "no Entrypoint or Cmd, and none given",
        ));
    }
    let image_env = cfg.env().clone().unwrap_or_default();
    let mut process = spec.process().clone().unwrap_or_else(bare_process);
    let defaults: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !image_env.iter().any(|i| env_key(i) == env_key(t)))
        .collect();
    process.set_env(Some(merge_env(&[&defaults, &image_env, &opts.env])));
    process.set_args(Some(args));
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::invalid(
            format!("working directory {cwd:?}"),
            "not absolute",
        ));
    }
    process.set_cwd(cwd.into());
    let user_spec = opts
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec)?;
    let mut u = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        u = u.additional_gids(user.additional_gids);
    }
    process.set_user(built("process.user", u.build())?);
    spec.set_process(Some(process));

    let mut ann: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ann.insert(format!("org.opencontainers.image.{k}"), v);
        }
    };
    put("os", Some(image.os().to_string()));
    put("architecture", Some(image.architecture().to_string()));
    put("variant", image.variant().clone());
    put("os.version", image.os_version().clone());
    put(
        "os.features",
        image.os_features().as_ref().map(|f| f.join(",")),
    );
    put("author", image.author().clone());
    put("created", image.created().clone());
    put("stopSignal", cfg.stop_signal().clone());
    put(
        "exposedPorts",
        cfg.exposed_ports().as_ref().map(|p| {
            let mut p = p.clone();
            p.sort();
            p.join(",")
        }),
    );
    if let Some(labels) = cfg.labels() {
        for (k, v) in labels {
            ann.insert(k.clone(), v.clone());
        }
    }
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    for (k, v) in ann {
        annotations.entry(k).or_insert(v);
    }
    spec.set_annotations(Some(annotations));

    if let Some(volumes) = cfg.volumes() {
        let mut budget = crate::volume::SeedBudget::new(&opts.limits.unwrap_or_default());
        let mut vols = volumes.clone();
        vols.sort();
        let mut mounts: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
        for (i, v) in vols.iter().enumerate() {
            if !v.starts_with('/') {
                return Err(Error::invalid(
                    format!("image volume {v:?}"),
                    "not absolute",
                ));
            }
            let src = bundle.join("volumes").join(format!("{i}"));
            mkdir(&src, 0o755)?;
            crate::volume::seed(rootfs, v, &src, &mut budget)?;
            let m = MountBuilder::default()
                .destination(v)
                .typ("bind")
                .source(src)
                .options(vec!["rbind".to_string(), "rw".to_string()])
                .build();
            mounts.push(built(&format!("image volume {v:?}"), m)?);
        }
        spec.set_mounts(Some(mounts));
    }
    Ok(spec)
}
