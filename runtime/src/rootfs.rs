//! The container's root filesystem, built inside its new mount namespace: propagation, the
//! mounts of `config.json` in order, device nodes, the `/dev` symlinks, then `pivot_root`
//! and the finishing touches (masked and read-only paths, read-only root).
//!
//! Every mount target is resolved inside the rootfs with [`in_root`] and mounted through its
//! `/proc/self/fd/N` path, so a symlink planted in the image cannot redirect a mount to the host.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use berth_sys::in_root::{self, Leaf, OFlags, Resolve};
use berth_sys::mount::{MountAttr, Tree};
use berth_sys::mountinfo::MountInfo;

use crate::error::{Context, Error, Result};
use crate::mount_options::{self, MountOptions};

/// One entry of `mounts`, validated and parsed before the container is cloned.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// Index in `mounts` (for error messages).
    pub index: usize,
    /// Destination inside the container.
    pub destination: PathBuf,
    /// Filesystem type (`bind` for binds).
    pub fstype: String,
    /// Source: a device, a filesystem name, or (binds) a host path made absolute.
    pub source: Option<PathBuf>,
    /// Parsed options.
    pub options: MountOptions,
    /// The mount's own uid mappings (idmapped mounts).
    pub uid_mappings: Vec<oci_spec::runtime::LinuxIdMapping>,
    /// The mount's own gid mappings (idmapped mounts).
    pub gid_mappings: Vec<oci_spec::runtime::LinuxIdMapping>,
}

/// Everything the init needs to build the root filesystem.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// Absolute path of the rootfs on the host.
    pub rootfs: PathBuf,
    /// Propagation for `/` (from `linux.rootfsPropagation`), if set.
    pub root_propagation: Option<MsFlags>,
    /// The mounts in order.
    pub mounts: Vec<MountPlan>,
    /// `linux.devices`.
    pub devices: Vec<LinuxDevice>,
    /// Whether the container has its own user namespace (devices are bind-mounted, not made).
    pub in_user_ns: bool,
    /// Whether the container has its own cgroup namespace.
    pub in_cgroup_ns: bool,
}

/// Builds the mount plan from the config's mounts, resolving bind sources against the bundle.
pub fn plan_mounts(mounts: &[oci_spec::runtime::Mount], bundle: &Path) -> Result<Vec<MountPlan>> {
    mounts
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let options = mount_options::parse(m.options().as_deref().unwrap_or_default(), index)?;
            let fstype = m.typ().clone().unwrap_or_else(|| {
                if options.is_bind() {
                    "bind".into()
                } else {
                    "none".into()
                }
            });
            let is_bind = options.is_bind() || fstype == "bind";
            let source = m.source().as_ref().map(|s| {
                if is_bind && s.is_relative() {
                    bundle.join(s)
                } else {
                    s.clone()
                }
            });
            if is_bind && source.is_none() {
                return Err(Error::config(
                    format!("mounts[{index}].source"),
                    "a bind mount needs a source",
                ));
            }
            Ok(MountPlan {
                index,
                destination: m.destination().clone(),
                fstype,
                source,
                options,
                uid_mappings: m.uid_mappings().clone().unwrap_or_default(),
                gid_mappings: m.gid_mappings().clone().unwrap_or_default(),
            })
        })
        .collect()
}

fn sys(what: impl FnOnce() -> String) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::Io {
        context: what(),
        err: std::io::Error::from_raw_os_error(e as i32),
    }
}

/// Changes the propagation type of the mount at `target` (`flags`: `MS_SHARED`, `MS_SLAVE`,
/// `MS_PRIVATE` or `MS_UNBINDABLE`, perhaps with `MS_REC`); `context` words the error.
fn set_propagation<P: ?Sized + nix::NixPath>(
    target: &P,
    flags: MsFlags,
    context: &str,
) -> Result<()> {
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(sys(|| context.to_string()))
}

/// The propagation the whole mount tree gets before the rootfs is bound, from
/// `linux.rootfsPropagation`: `[r]shared` makes it `rshared` (as runc does), so that binds of
/// shared host mounts stay peers of the host's and `rshared` binds propagate both ways;
/// `[r]private` makes it `rprivate`; anything else (absent, `[r]slave`, `[r]unbindable`)
/// `rslave`, so host mount events reach the container and none of its own leak out. A
/// non-recursive value is applied to the whole tree too: the copies of the host's mounts
/// must not stay peers of the host's unless asked to.
fn tree_propagation(root_propagation: Option<MsFlags>) -> MsFlags {
    match root_propagation {
        Some(p) if p.contains(MsFlags::MS_PRIVATE) => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        Some(p) if p.contains(MsFlags::MS_SHARED) => MsFlags::MS_SHARED | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    }
}

/// Makes the mount that holds `rootfs` (the rootfs itself, if it is a mount point) private:
/// `MS_PRIVATE` is refused with `EINVAL` on a directory that is not a mount point, so the
/// path is walked up until it is one, as runc's `rootfsParentMountPropagation` does. Only
/// this container's copy of the mount is changed.
fn rootfs_parent_private(rootfs: &Path) -> Result<()> {
    let mut path = rootfs;
    loop {
        match mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EINVAL) if path != Path::new("/") => {
                path = path.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => {
                return Err(sys(|| {
                    format!(
                        "making {} (the mount holding the rootfs) private",
                        path.display()
                    )
                })(e))
            }
        }
    }
}

/// Step 1 (new mount namespace, before hooks): propagation, rootfs bind, mounts, /dev.
/// `idmapped` holds the detached trees of the `idmap`/`ridmap` mounts, in mount order.
pub fn prepare(plan: &RootfsPlan, idmapped: Vec<OwnedFd>) -> Result<()> {
    let mut idmapped = idmapped.into_iter();
    let prop = tree_propagation(plan.root_propagation);
    set_propagation(
        "/",
        prop,
        "setting the propagation of / (linux.rootfsPropagation)",
    )?;
    if prop.contains(MsFlags::MS_SHARED) {
        // As runc: the mount holding the rootfs goes private, so that binding the rootfs
        // (and every mount made in it) does not propagate to the host, and pivot_root (which
        // refuses a shared parent) works. Binds of shared host mounts stay in their peer
        // groups: what `rshared` binds are for.
        rootfs_parent_private(&plan.rootfs)?;
    }
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(|| {
        format!("bind-mounting rootfs {}", plan.rootfs.display())
    }))?;
    let root =
        File::open(&plan.rootfs).ctx(|| format!("opening rootfs {}", plan.rootfs.display()))?;
    for m in &plan.mounts {
        let tree = if m.options.idmap.is_some() {
            idmapped.next()
        } else {
            None
        };
        mount_entry(root.as_fd(), m, plan, tree).map_err(|e| match e {
            Error::Io { context, err } => Error::Io {
                context: format!(
                    "mounts[{}] ({}): {context}",
                    m.index,
                    m.destination.display()
                ),
                err,
            },
            e => e,
        })?;
    }
    create_devices(root.as_fd(), plan)?;
    dev_symlinks(root.as_fd())?;
    Ok(())
}

fn mount_entry(
    root: BorrowedFd<'_>,
    m: &MountPlan,
    plan: &RootfsPlan,
    idmapped: Option<OwnedFd>,
) -> Result<()> {
    let dest = &m.destination;
    let is_bind = m.options.is_bind() || m.fstype == "bind";
    if is_bind {
        let source = m.source.as_ref().expect("checked in plan_mounts");
        let meta = std::fs::metadata(source).ctx(|| format!("bind source {}", source.display()))?;
        let leaf = if meta.is_dir() { Leaf::Dir } else { Leaf::File };
        let target =
            in_root::ensure(root, dest, leaf).ctx(|| "creating mount point".to_string())?;
        check_not_in_proc(&target, m, true)?;
        if let Some(tree) = idmapped {
            crate::idmap::attach(&tree, &target)?;
        } else {
            let flags = MsFlags::MS_BIND | (m.options.flags & MsFlags::MS_REC);
            mount(
                Some(source),
                in_root::proc_fd_path(&target).as_c_str(),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(sys(|| format!("bind-mounting {}", source.display())))?;
        }
        let extra = m.options.bind_remount_flags();
        if !extra.is_empty() {
            remount_bind(
                root,
                dest,
                extra,
                "reopening mount point",
                "remounting bind mount with its options",
            )?;
        }
    } else if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        mount_cgroup(root, m, plan)?;
    } else {
        if (m.fstype == "proc" || m.fstype == "sysfs")
            && in_root::has_symlink(root, dest).ctx(|| "resolving mount point".to_string())?
        {
            // A symlinked /proc or /sys would put the kernel's files (and the masks berth
            // applies by path later) somewhere the image chose: refused, as runc refuses it.
            return Err(Error::config(
                format!("mounts[{}].destination", m.index),
                format!(
                    "{} is a symlink in the rootfs: {} must be mounted on ordinary directory",
                    dest.display(),
                    m.fstype
                ),
            ));
        }
        let target =
            in_root::ensure(root, dest, Leaf::Dir).ctx(|| "creating mount point".to_string())?;
        check_not_in_proc(&target, m, false)?;
        let data = (!m.options.data.is_empty()).then_some(m.options.data.as_str());
        let source = m.source.as_deref().unwrap_or_else(|| Path::new(&m.fstype));
        let copy_from = if m.options.tmpcopyup {
            Some(
                in_root::open(
                    root,
                    dest,
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    Resolve::InRoot,
                )
                .ctx(|| "opening tmpcopyup source".to_string())?,
            )
        } else {
            None
        };
        let res = mount(
            Some(source),
            in_root::proc_fd_path(&target).as_c_str(),
            Some(m.fstype.as_str()),
            m.options.flags - MsFlags::MS_REMOUNT,
            data,
        );
        match res {
            Err(nix::Error::EPERM) if m.fstype == "sysfs" && plan.in_user_ns => {
                // A user namespace without its own network namespace may not mount sysfs:
                // fall back to a recursive bind of the host's /sys, as runc does.
                mount(
                    Some("/sys"),
                    in_root::proc_fd_path(&target).as_c_str(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys(|| "bind-mounting /sys".into()))?;
            }
            r => r.map_err(sys(|| {
                format!("mounting {} ({})", source.display(), m.fstype)
            }))?,
        }
        if let Some(src) = copy_from {
            let top = in_root::open(
                root,
                dest,
                OFlags::RDONLY | OFlags::DIRECTORY,
                Resolve::InRoot,
            )
            .ctx(|| "reopening tmpfs".to_string())?;
            crate::copy::copy_tree(src.as_fd(), top.as_fd()).ctx(|| "tmpcopyup".to_string())?;
        }
    }
    apply_propagation_and_attrs(root, dest, &m.options)
}

/// Files of /proc that a bind mount may cover, as runc allows (lxcfs serves them).
const PROC_BIND_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Refuses a mount whose resolved target lies on a procfs (CVE-2019-19921, 2023-27561,
/// 2025-52881 class: a mount over `/proc/self` or `/proc/sys` would put the masks and the
/// sysctl writes on a decoy), whatever path or symlink led there; only binds over the files
/// runc allows for lxcfs pass.
fn check_not_in_proc(target: &OwnedFd, m: &MountPlan, is_bind: bool) -> Result<()> {
    let on_proc = nix::sys::statfs::fstatfs(target)
        .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
    if !on_proc {
        return Ok(());
    }
    let dest = lexical(&m.destination);
    if is_bind && PROC_BIND_ALLOWED.iter().any(|a| Path::new(a) == dest) {
        return Ok(());
    }
    Err(Error::config(
        format!("mounts[{}].destination", m.index),
        format!(
            "{} lies inside /proc: mounts over procfs are refused (only binds over {} are allowed)",
            m.destination.display(),
            PROC_BIND_ALLOWED.join(", ")
        ),
    ))
}

/// `/proc/sys` of the container, checked to be procfs (after pivot): sysctls are written
/// beneath it with no symlink or mount crossing, so nothing can redirect them.
pub fn open_proc_sys() -> Result<OwnedFd> {
    let fd: OwnedFd = File::open("/proc/sys")
        .ctx(|| "opening /proc/sys for linux.sysctl".to_string())?
        .into();
    let st = nix::sys::statfs::fstatfs(&fd).map_err(sys(|| "statfs /proc/sys".into()))?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::config(
            "linux.sysctl",
            "/proc/sys in the container is not procfs: sysctls are not written through it",
        ));
    }
    Ok(fd)
}

/// Writes `value` to `/proc/<rel>` after checking that `/proc` is procfs, resolving `rel`
/// with no symlink or mount crossing (a decoy cannot take the write).
pub fn write_proc_file(rel: &Path, value: &str) -> std::io::Result<()> {
    let proc: OwnedFd = File::open("/proc")?.into();
    let st = nix::sys::statfs::fstatfs(&proc).map_err(std::io::Error::from)?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(std::io::Error::other("/proc is not procfs"));
    }
    let fd = in_root::open(
        proc.as_fd(),
        rel,
        OFlags::WRONLY | OFlags::TRUNC,
        Resolve::InRootStrict,
    )?;
    std::io::Write::write_all(&mut File::from(fd), value.as_bytes())
}

/// `path` with `.` and `..` resolved lexically (as an absolute path).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn apply_propagation_and_attrs(root: BorrowedFd<'_>, dest: &Path, o: &MountOptions) -> Result<()> {
    if o.propagation.is_empty() && o.recursive == crate::mount_options::RecursiveAttrs::default() {
        return Ok(());
    }
    let top = in_root::open_path(root, dest).ctx(|| "reopening mount point".to_string())?;
    for p in &o.propagation {
        set_propagation(
            in_root::proc_fd_path(&top).as_c_str(),
            *p,
            "changing mount propagation",
        )?;
    }
    if o.recursive != crate::mount_options::RecursiveAttrs::default() {
        let attr = MountAttr {
            set: o.recursive.set,
            clear: o.recursive.clear,
            ..MountAttr::default()
        };
        berth_sys::mount::mount_setattr(top.as_fd(), Tree::Recursive, &attr)
            .ctx(|| "mount_setattr (recursive mount options)".to_string())?;
    }
    Ok(())
}

/// Remounts the bind mount at `path` with `flags` added to `MS_BIND | MS_REMOUNT`, keeping the
/// flags it has that the kernel locked. `path` is resolved in `root` again, so that the remount
/// names the new mount and not the directory under it (EINVAL: not a mount root). The two
/// contexts word the errors of reopening and of remounting.
fn remount_bind(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: MsFlags,
    reopen_context: &str,
    remount_context: &str,
) -> Result<()> {
    let top = in_root::open_path(root, path).ctx(|| reopen_context.to_string())?;
    mount(
        None::<&str>,
        in_root::proc_fd_path(&top).as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(&top),
        None::<&str>,
    )
    .map_err(sys(|| remount_context.to_string()))
}

/// Flags a mount already has that an unprivileged remount may not clear.
fn locked_flags(fd: &OwnedFd) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    use nix::sys::statvfs::FsFlags;
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// The cgroup (v1 and v2) mounts of this mount namespace.
fn cgroup_hierarchies() -> std::io::Result<Vec<MountInfo>> {
    let mut all = berth_sys::mountinfo::read_self()?;
    all.retain(|m| m.fstype == "cgroup" || m.fstype == "cgroup2");
    Ok(all)
}

/// Where the cgroup2 hierarchy is mounted, if anywhere.
fn cgroup2_mount_point() -> Option<PathBuf> {
    cgroup_hierarchies()
        .ok()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.mount_point)
}

/// A `cgroup` mount: cgroup2 on a unified host; on a v1/hybrid host a tmpfs holding one mount
/// per hierarchy the host has (plus `unified`), as runc lays it out.
fn mount_cgroup(root: BorrowedFd<'_>, m: &MountPlan, plan: &RootfsPlan) -> Result<()> {
    let flags = m.options.flags - (MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_REC);
    let target = in_root::ensure(root, &m.destination, Leaf::Dir)
        .ctx(|| "creating mount point".to_string())?;
    check_not_in_proc(&target, m, false)?;
    let hierarchies = cgroup_hierarchies().ctx(|| "reading /proc/self/mountinfo".to_string())?;
    let unified_host = hierarchies
        .iter()
        .any(|h| h.mount_point == Path::new("/sys/fs/cgroup") && h.fstype == "cgroup2");
    if unified_host || m.fstype == "cgroup2" {
        return mount_one_cgroup(root, &m.destination, &target, ("cgroup2", ""), flags, plan);
    }
    mount(
        Some("tmpfs"),
        in_root::proc_fd_path(&target).as_c_str(),
        Some("tmpfs"),
        (flags - MsFlags::MS_RDONLY) | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(sys(|| "mounting tmpfs for cgroup hierarchies".into()))?;
    for h in &hierarchies {
        let Some(name) = h
            .mount_point
            .strip_prefix("/sys/fs/cgroup")
            .ok()
            .and_then(|p| p.to_str())
            .filter(|p| !p.is_empty() && !p.contains('/'))
        else {
            continue;
        };
        let sub = in_root::ensure(root, &m.destination.join(name), Leaf::Dir)
            .ctx(|| format!("creating cgroup mount point {name}"))?;
        let dest = m.destination.join(name);
        mount_one_cgroup(root, &dest, &sub, (&h.fstype, &h.fs_options()), flags, plan)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let top = in_root::open_path(root, &m.destination)
            .ctx(|| "reopening cgroup tmpfs".to_string())?;
        mount(
            None::<&str>,
            in_root::proc_fd_path(&top).as_c_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(sys(|| "remounting cgroup tmpfs read-only".into()))?;
    }
    Ok(())
}

/// Mounts one hierarchy (`kind` is the filesystem type and its options) at `target`, the
/// opened `dest`.
fn mount_one_cgroup(
    root: BorrowedFd<'_>,
    dest: &Path,
    target: &OwnedFd,
    kind: (&str, &str),
    flags: MsFlags,
    plan: &RootfsPlan,
) -> Result<()> {
    let (fstype, options) = kind;
    let path = in_root::proc_fd_path(target);
    let data = (!options.is_empty()).then_some(options);
    let res = mount(Some("cgroup"), path.as_c_str(), Some(fstype), flags, data);
    if res.is_ok() {
        return Ok(());
    }
    if !plan.in_cgroup_ns || plan.in_user_ns {
        // Without a cgroup namespace (or where a user namespace may not mount v1
        // hierarchies) show the host's hierarchy through a bind, read-only when asked.
        let host = if fstype == "cgroup2" && options.is_empty() {
            cgroup2_mount_point().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
        } else {
            cgroup_hierarchies()
                .ok()
                .and_then(|hs| {
                    hs.into_iter()
                        .find(|h| h.fs_options() == options && h.fstype == fstype)
                })
                .map_or_else(|| PathBuf::from("/sys/fs/cgroup"), |h| h.mount_point)
        };
        mount(
            Some(&host),
            path.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys(|| {
            format!("bind-mounting cgroup hierarchy {}", host.display())
        }))?;
        if flags.contains(MsFlags::MS_RDONLY) {
            // The remount must name the new bind mount, not the directory under it that
            // `target` still refers to (EINVAL: not a mount root).
            remount_bind(
                root,
                dest,
                MsFlags::MS_RDONLY,
                "reopening the cgroup hierarchy's bind mount",
                "remounting cgroup hierarchy read-only",
            )?;
        }
        return Ok(());
    }
    res.map_err(sys(|| format!("mounting cgroup hierarchy {options}")))
}

const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn create_devices(root: BorrowedFd<'_>, plan: &RootfsPlan) -> Result<()> {
    for &(path, major, minor) in DEFAULT_DEVICES {
        if plan.devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        make_device(
            root,
            Path::new(path),
            libc::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
            plan.in_user_ns,
        )?;
    }
    for (i, d) in plan.devices.iter().enumerate() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::config(
                    format!("linux.devices[{i}].type"),
                    "\"a\" is not a device node type",
                ))
            }
        };
        let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
        make_device(
            root,
            d.path(),
            kind,
            d.major() as u32,
            d.minor() as u32,
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
            plan.in_user_ns,
        )
        .map_err(|e| match e {
            Error::Io { context, err } => Error::Io {
                context: format!("linux.devices[{i}] ({}): {context}", d.path().display()),
                err,
            },
            e => e,
        })?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: u32,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    in_user_ns: bool,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| {
        Error::config(
            "linux.devices",
            format!("{} has no file name", path.display()),
        )
    })?;
    let dir = in_root::ensure(root, parent, Leaf::Dir)
        .ctx(|| format!("creating {}", parent.display()))?;
    let cname = CString::new(name.as_bytes())
        .map_err(|_| Error::config("linux.devices", "path contains NUL"))?;
    if in_user_ns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let target = in_root::ensure(root, path, Leaf::File)
            .ctx(|| format!("creating {}", path.display()))?;
        return mount(
            Some(path),
            in_root::proc_fd_path(&target).as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(|| {
            format!("bind-mounting host device {}", path.display())
        }));
    }
    // SAFETY: valid dirfd and NUL-terminated name; mknodat reads nothing else from us.
    let mut rc = unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            kind | mode,
            libc::makedev(major, minor),
        )
    };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
        // SAFETY: as above; remove the old entry (not a directory) and try once more.
        unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
        // SAFETY: as above.
        rc = unsafe {
            libc::mknodat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                kind | mode,
                libc::makedev(major, minor),
            )
        };
    }
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("mknod {}", path.display()));
    }
    // SAFETY: valid dirfd and name; AT_SYMLINK_NOFOLLOW keeps us on the node just made.
    let rc = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("chown {}", path.display()));
    }
    // The umask applied to mknod; set the exact mode.
    // SAFETY: valid dirfd and name.
    let rc = unsafe { libc::fchmodat(dir.as_raw_fd(), cname.as_ptr(), mode, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("chmod {}", path.display()));
    }
    Ok(())
}

fn dev_symlinks(root: BorrowedFd<'_>) -> Result<()> {
    let dev =
        in_root::ensure(root, Path::new("/dev"), Leaf::Dir).ctx(|| "creating /dev".to_string())?;
    let has_pts = in_root::open_path(root, Path::new("/dev/pts/ptmx")).is_ok();
    let mut links: Vec<(&std::ffi::CStr, &std::ffi::CStr)> = vec![
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
    ];
    if has_pts {
        // SAFETY: valid dirfd and static name; a missing entry is fine.
        unsafe { libc::unlinkat(dev.as_raw_fd(), c"ptmx".as_ptr(), 0) };
        links.push((c"pts/ptmx", c"ptmx"));
    }
    for (target, name) in links {
        // SAFETY: valid dirfd and static NUL-terminated strings.
        let rc = unsafe { libc::symlinkat(target.as_ptr(), dev.as_raw_fd(), name.as_ptr()) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("symlink /dev/{}", name.to_string_lossy()));
        }
    }
    Ok(())
}

/// The container's null device as berth made it, opened before any hook runs or any
/// container process exists and checked to be character device 1:3, for masking files: a
/// container that later swaps its `/dev/null` for a symlink cannot make a masked path show
/// something else (CVE-2025-31133). The descriptor stays valid across `pivot_root`.
pub fn open_null(rootfs: &Path) -> Result<OwnedFd> {
    let root = File::open(rootfs).ctx(|| format!("opening rootfs {}", rootfs.display()))?;
    let fd = in_root::open(
        root.as_fd(),
        Path::new("/dev/null"),
        OFlags::PATH | OFlags::NOFOLLOW,
        Resolve::InRoot,
    )
    .ctx(|| "opening the container's /dev/null".to_string())?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(sys(|| "fstat /dev/null".into()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(Error::Init(
            "/dev/null in the container is not the null device (char 1:3)".into(),
        ));
    }
    Ok(fd)
}

/// Step 2: make the rootfs `/`, with `pivot_root` or (`--no-pivot`) `MS_MOVE` + `chroot`.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    let new_root = File::open(rootfs).ctx(|| format!("opening {}", rootfs.display()))?;
    nix::unistd::fchdir(new_root.as_raw_fd()).map_err(sys(|| "chdir to rootfs".into()))?;
    if no_pivot {
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(sys(|| "moving rootfs to /".into()))?;
        nix::unistd::chroot(".").map_err(sys(|| "chroot".into()))?;
    } else {
        let old_root = File::open("/").ctx(|| "opening /".to_string())?;
        nix::unistd::pivot_root(".", ".").map_err(sys(|| "pivot_root".into()))?;
        nix::unistd::fchdir(old_root.as_raw_fd()).map_err(sys(|| "chdir to old root".into()))?;
        // Detach the old root without letting the unmount propagate to the host.
        set_propagation(
            ".",
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "making old root a slave",
        )?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys(|| "detaching old root".into()))?;
    }
    nix::unistd::chdir("/").map_err(sys(|| "chdir /".into()))?;
    Ok(())
}

/// Step 2 without a mount namespace of the container's own: `chroot` into the rootfs, so the
/// process still sees `root.path` as `/` (nothing is mounted: the mounts are the host's).
pub fn chroot_only(rootfs: &Path) -> Result<()> {
    nix::unistd::chroot(rootfs).map_err(sys(|| format!("chroot {}", rootfs.display())))?;
    nix::unistd::chdir("/").map_err(sys(|| "chdir /".into()))
}

/// Step 3 (after pivot): masked paths, read-only paths, root read-only, `/` propagation.
pub fn finish(
    null: &OwnedFd,
    masked: &[String],
    readonly: &[String],
    readonly_root: bool,
    root_propagation: Option<MsFlags>,
) -> Result<()> {
    let root = File::open("/").ctx(|| "opening /".to_string())?;
    for p in readonly {
        readonly_path(root.as_fd(), Path::new(p))
            .map_err(|e| annotate(e, "linux.readonlyPaths", p))?;
    }
    for p in masked {
        mask_path(root.as_fd(), null, Path::new(p))
            .map_err(|e| annotate(e, "linux.maskedPaths", p))?;
    }
    if readonly_root {
        let locked = locked_flags(
            &in_root::open_path(root.as_fd(), Path::new("/")).ctx(|| "opening /".to_string())?,
        );
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
            None::<&str>,
        )
        .map_err(sys(|| "remounting / read-only (root.readonly)".into()))?;
    }
    if let Some(p) = root_propagation {
        set_propagation("/", p, "linux.rootfsPropagation")?;
    }
    Ok(())
}

fn annotate(e: Error, field: &str, path: &str) -> Error {
    match e {
        Error::Io { context, err } => Error::Io {
            context: format!("{field} {path}: {context}"),
            err,
        },
        e => e,
    }
}

fn readonly_path(root: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let fd = match in_root::open_path(root, path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).ctx(|| "resolving".to_string()),
    };
    mount(
        Some(in_root::proc_fd_path(&fd).as_c_str()),
        in_root::proc_fd_path(&fd).as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(|| "bind-mounting".into()))?;
    remount_bind(
        root,
        path,
        MsFlags::MS_RDONLY | MsFlags::MS_REC,
        "reopening",
        "remounting read-only",
    )
}

fn mask_path(root: BorrowedFd<'_>, null: &OwnedFd, path: &Path) -> Result<()> {
    let fd = match in_root::open_path(root, path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).ctx(|| "resolving".to_string()),
    };
    let is_dir = nix::sys::stat::fstat(fd.as_raw_fd())
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    let target = in_root::proc_fd_path(&fd);
    if is_dir {
        mount(
            Some("tmpfs"),
            target.as_c_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(sys(|| "masking with a read-only tmpfs".into()))
    } else {
        mount(
            Some(in_root::proc_fd_path(null).as_c_str()),
            target.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(|| "masking with /dev/null".into()))
    }
}
