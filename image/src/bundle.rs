//! Runtime bundles from images: the root filesystem is an overlay mount of the image's layer
//! chain (lowerdirs shared from the store, upper and work per bundle) or a flattened copy, and
//! `config.json` is generated from the image config (image-spec conversion.md) on top of a
//! template (such as `berth spec`'s).
//!
//! Deep images (over 100 layers) are mounted with the new mount API, one `lowerdir+` per
//! layer, so the page-size limit of a mount option string does not apply; kernels without
//! `lowerdir+` (before 6.8) get a classic mount string of short store links
//! (`<root>/l/<12 hex>`), as containerd and Docker do.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode as FsMode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};
use serde_json::{json, Map, Value};

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

/// A bundle made by [`create_bundle`].
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory (holds `config.json` and `rootfs/`).
    pub dir: PathBuf,
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// Whether `rootfs` is an overlay mount (to be unmounted by [`remove_bundle`]).
    pub overlay: bool,
    /// The generated runtime config.
    pub config: Value,
}

fn io_at<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'p {
    move |e| Error::io(path, op, e)
}

/// Mounts an overlay of `lowers` (bottom layer first) with `upper`/`work` on `target`.
/// `userxattr` (for a mount inside a user namespace) makes overlayfs read `user.overlay.*`;
/// `inert` mounts it `nosuid,nodev` (for a rootfs no container runs from).
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    userxattr: bool,
    inert: bool,
) -> Result<()> {
    if lowers.is_empty() {
        return Err(Error::invalid(
            target.display().to_string(),
            "an overlay needs at least one lower layer",
        ));
    }
    match mount_overlay_fd(lowers, upper, work, target, userxattr, inert) {
        Ok(()) => Ok(()),
        // No new mount API or no lowerdir+ (before 6.8): a classic option string.
        Err(Errno::INVAL | Errno::NOSYS) => {
            mount_overlay_legacy(lowers, upper, work, target, userxattr, inert)
        }
        Err(e) => Err(Error::io(target, "mount overlay", e)),
    }
}

fn mount_overlay_fd(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    userxattr: bool,
    inert: bool,
) -> rustix::io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    // lowerdir+ adds layers from the top down.
    for l in lowers.iter().rev() {
        fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    fsconfig_set_string(&fs, "upperdir", upper)?;
    fsconfig_set_string(&fs, "workdir", work)?;
    if userxattr {
        fsconfig_set_flag(&fs, "userxattr")?;
    }
    fsconfig_create(&fs)?;
    let attrs = if inert {
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

fn mount_overlay_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    userxattr: bool,
    inert: bool,
) -> Result<()> {
    let lower: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if userxattr {
        data.push_str(",userxattr");
    }
    let page = rustix::param::page_size();
    if data.len() >= page {
        return Err(Error::invalid(
            target.display().to_string(),
            format!(
                "{} layers do not fit an overlay mount string of {page} bytes and this kernel lacks lowerdir+",
                lowers.len()
            ),
        ));
    }
    let data = std::ffi::CString::new(data).map_err(|_| {
        Error::invalid(
            target.display().to_string(),
            "a layer path contains a NUL byte",
        )
    })?;
    let flags = if inert {
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
pub fn create_bundle(
    store: &Store,
    image: &str,
    dir: &Path,
    template: &Value,
    opts: &BundleOptions,
) -> Result<Bundle> {
    let holder = opts
        .holder
        .clone()
        .unwrap_or_else(|| dir.display().to_string());
    if dir.join("config.json").exists() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "already holds a bundle (config.json exists)",
        ));
    }
    let existed = dir.exists();
    let record = store.hold(&holder, image)?;
    let opts = BundleOptions {
        limits: Some(opts.limits.unwrap_or(*store.limits())),
        ..opts.clone()
    };
    let res = build_bundle(store, &record, dir, template, &opts);
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

/// Removes what a failed [`build_bundle`] left: the whole directory if it created it, else
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

fn build_bundle(
    store: &Store,
    record: &ImageRecord,
    dir: &Path,
    template: &Value,
    opts: &BundleOptions,
) -> Result<Bundle> {
    if dir.join("config.json").exists() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "already holds a bundle (config.json exists)",
        ));
    }
    let config = store.image_config(record)?;
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
            mount_overlay(&lowers, &upper, &work, &rootfs, false, opts.inspect)?;
            berth_runtime::failpoint::hit("bundle:mounted");
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
    let res = (|| {
        if opts.inspect && !overlay {
            inert_bind(&rootfs)?;
        }
        let spec = runtime_config(template, &config, &rootfs, dir, opts)?;
        let text = serde_json::to_vec_pretty(&spec).map_err(|source| Error::Json {
            what: "config.json".into(),
            source,
        })?;
        let path = dir.join("config.json");
        fs::write(&path, text).map_err(io_at(&path, "write"))?;
        Ok(spec)
    })();
    match res {
        Ok(spec) => Ok(Bundle {
            dir: dir.to_path_buf(),
            rootfs,
            overlay: overlay && !record.layers.is_empty(),
            config: spec,
        }),
        Err(e) => {
            if overlay || opts.inspect {
                let _ = rustix::mount::unmount(&rootfs, UnmountFlags::DETACH);
            }
            Err(e)
        }
    }
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
    let fd = match rustix::fs::openat2(
        &root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        FsMode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
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

fn obj<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>> {
    let m = v
        .as_object_mut()
        .ok_or_else(|| Error::invalid("config template", "not a JSON object"))?;
    let e = m.entry(key.to_string()).or_insert_with(|| json!({}));
    e.as_object_mut()
        .ok_or_else(|| Error::invalid(format!("config template: {key}"), "not a JSON object"))
}

/// Generates a runtime config: `template` with `root.path = "rootfs"`, and the image config
/// applied (conversion.md): process args (Entrypoint + Cmd, overridable), env (the template's
/// defaults only for names the image does not set), cwd, user (resolved in `rootfs`),
/// annotations (os, architecture, variant, author, created, stop signal, exposed ports, then
/// labels, which take precedence), and a bind mount from `bundle/volumes/` for each Volume,
/// seeded with the image's content at that path.
pub fn runtime_config(
    template: &Value,
    image: &ImageConfig,
    rootfs: &Path,
    bundle: &Path,
    opts: &BundleOptions,
) -> Result<Value> {
    let mut spec = template.clone();
    let empty = oci_spec::image::Config::default();
    let cfg = image.config().as_ref().unwrap_or(&empty);
    obj(&mut spec, "root")?.insert("path".into(), json!("rootfs"));

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
    let process = obj(&mut spec, "process")?;
    let template_env: Vec<String> = process
        .get("env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let defaults: Vec<String> = template_env
        .into_iter()
        .filter(|t| !image_env.iter().any(|i| env_key(i) == env_key(t)))
        .collect();
    let env = merge_env(&[&defaults, &image_env, &opts.env]);
    process.insert("args".into(), json!(args));
    process.insert("env".into(), json!(env));
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
    process.insert("cwd".into(), json!(cwd));
    let user_spec = opts
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec)?;
    let mut u = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        u["additionalGids"] = json!(user.additional_gids);
    }
    process.insert("user".into(), u);

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
    let annotations = obj(&mut spec, "annotations")?;
    for (k, v) in ann {
        annotations.entry(k).or_insert(json!(v));
    }

    if let Some(volumes) = cfg.volumes() {
        let mut budget = crate::volume::SeedBudget::new(&opts.limits.unwrap_or_default());
        let mut vols = volumes.clone();
        vols.sort();
        let mut mounts = Vec::new();
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
            mounts.push(json!({
                "destination": v,
                "type": "bind",
                "source": src,
                "options": ["rbind", "rw"],
            }));
        }
        let m = spec
            .as_object_mut()
            .ok_or_else(|| Error::invalid("config template", "not a JSON object"))?
            .entry("mounts")
            .or_insert_with(|| json!([]));
        let arr = m
            .as_array_mut()
            .ok_or_else(|| Error::invalid("config template: mounts", "not an array"))?;
        arr.extend(mounts);
    }
    Ok(spec)
}
