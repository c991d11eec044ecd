//! Namespaces: which to create at clone time, which to join by path (`setns`), which to
//! unshare later, and the uid/gid maps and time offsets that go with them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};

/// A namespace to join, opened by the parent so a bad path fails before anything is cloned.
#[derive(Debug)]
pub struct Join {
    /// Namespace kind.
    pub flag: CloneFlags,
    /// Open namespace file.
    pub file: File,
    /// Path it came from (for messages).
    pub path: PathBuf,
}

/// How the init's namespaces come to be.
#[derive(Debug)]
pub struct NsPlan {
    /// Namespaces created by clone3 itself.
    pub clone_flags: CloneFlags,
    /// Namespaces the init unshares itself after joining (user-namespace-with-joins path).
    pub unshare_flags: CloneFlags,
    /// Namespaces to join, user first.
    pub joins: Vec<Join>,
    /// A pid namespace to join (the parent enters it before cloning).
    pub join_pid: Option<Join>,
    /// The init must fork once more so that it is pid 1 of a pid namespace it unshared.
    pub fork_after_unshare: bool,
    /// A new user namespace is created.
    pub new_user: bool,
    /// A new mount namespace is created.
    pub new_mount: bool,
    /// The container has a mount namespace of its own, new or joined by path: the root
    /// filesystem is built in it. Without one the mount namespace is inherited (runtime-spec:
    /// an unlisted namespace is the runtime's) and berth touches no mount.
    pub own_mount: bool,
    /// A new pid namespace is created.
    pub new_pid: bool,
    /// A new cgroup namespace is created (unshared by the init once in its cgroup).
    pub new_cgroup: bool,
    /// A new time namespace is created (unshared by the init, offsets written, entered).
    pub new_time: bool,
    /// The uts namespace is the container's own (new or joined): hostname may be set.
    pub own_uts: bool,
    /// A new network namespace is created (its loopback is brought up, as runc and crun do).
    pub new_net: bool,
}

impl Default for NsPlan {
    fn default() -> Self {
        NsPlan {
            clone_flags: CloneFlags::empty(),
            unshare_flags: CloneFlags::empty(),
            joins: Vec::new(),
            join_pid: None,
            fork_after_unshare: false,
            new_user: false,
            new_mount: false,
            own_mount: false,
            new_pid: false,
            new_cgroup: false,
            new_time: false,
            own_uts: false,
            new_net: false,
        }
    }
}

fn flag_of(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Plans namespace creation from `linux.namespaces`.
pub fn plan(linux: Option<&Linux>) -> Result<NsPlan> {
    let mut p = NsPlan::default();
    let mut new = CloneFlags::empty();
    let mut joins = Vec::new();
    for (i, ns) in linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let flag = flag_of(ns.typ());
        match ns.path() {
            None => new |= flag,
            Some(path) => {
                let file = File::open(path)
                    .ctx(|| format!("linux.namespaces[{i}].path: opening {}", path.display()))?;
                let join = Join {
                    flag,
                    file,
                    path: path.clone(),
                };
                if flag == CloneFlags::CLONE_NEWPID {
                    p.join_pid = Some(join);
                } else {
                    joins.push(join);
                }
            }
        }
        if flag == CloneFlags::CLONE_NEWUTS {
            p.own_uts = true;
        }
        if flag == CloneFlags::CLONE_NEWNS {
            p.own_mount = true;
        }
    }
    // Join the user namespace first: it grants the capabilities needed for the others.
    joins.sort_by_key(|j| j.flag != CloneFlags::CLONE_NEWUSER);
    p.new_user = new.contains(CloneFlags::CLONE_NEWUSER);
    p.new_mount = new.contains(CloneFlags::CLONE_NEWNS);
    p.new_pid = new.contains(CloneFlags::CLONE_NEWPID);
    p.new_cgroup = new.contains(CloneFlags::CLONE_NEWCGROUP);
    p.new_time = new.contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    p.new_net = new.contains(CloneFlags::CLONE_NEWNET);
    // The cgroup and time namespaces are unshared by the init later (see the field docs).
    let cloneable =
        new - CloneFlags::CLONE_NEWCGROUP - CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    if p.new_user && !joins.is_empty() {
        // Joined namespaces must be entered with the host's credentials, before the new user
        // namespace exists; everything new is then unshared inside it.
        p.unshare_flags = cloneable;
        p.fork_after_unshare = p.new_pid;
    } else {
        p.clone_flags = cloneable;
    }
    p.joins = joins;
    Ok(p)
}

/// Enters a namespace by file.
pub fn join(j: &Join) -> Result<()> {
    nix::sched::setns(&j.file, j.flag).ctx(|| format!("joining namespace {}", j.path.display()))
}

/// The text of a `uid_map` / `gid_map` file.
pub fn id_map_text(maps: &[LinuxIdMapping]) -> String {
    use std::fmt::Write as _;
    maps.iter().fold(String::new(), |mut out, m| {
        let _ = writeln!(out, "{} {} {}", m.container_id(), m.host_id(), m.size());
        out
    })
}

/// Writes the id maps of a child's user namespace from the parent: directly as root, or as an
/// unprivileged user either directly (a single mapping of the caller's own ids, with setgroups
/// denied) or through the setuid `newuidmap`/`newgidmap` helpers (Debian `uidmap`), which check
/// /etc/subuid and /etc/subgid.
pub fn write_id_maps(pid: i32, linux: &Linux) -> Result<()> {
    let uids = linux.uid_mappings().as_deref().unwrap_or_default();
    let gids = linux.gid_mappings().as_deref().unwrap_or_default();
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    if euid != 0 {
        let own = |maps: &[LinuxIdMapping], id: u32| {
            maps.len() == 1 && maps[0].host_id() == id && maps[0].size() == 1
        };
        if own(uids, euid) && (gids.is_empty() || own(gids, egid)) {
            std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
                .ctx(|| "writing setgroups".to_string())?;
        } else {
            run_id_helper("newuidmap", pid, uids, "linux.uidMappings")?;
            return run_id_helper("newgidmap", pid, gids, "linux.gidMappings");
        }
    }
    let uid = id_map_text(uids);
    let gid = id_map_text(gids);
    if !uid.is_empty() {
        std::fs::write(format!("/proc/{pid}/uid_map"), uid)
            .ctx(|| "linux.uidMappings: writing uid_map".to_string())?;
    }
    if !gid.is_empty() {
        std::fs::write(format!("/proc/{pid}/gid_map"), gid)
            .ctx(|| "linux.gidMappings: writing gid_map".to_string())?;
    }
    Ok(())
}

fn run_id_helper(helper: &str, pid: i32, maps: &[LinuxIdMapping], field: &str) -> Result<()> {
    if maps.is_empty() {
        return Ok(());
    }
    let mut cmd = std::process::Command::new(helper);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let out = cmd.output().map_err(|e| {
        Error::Unsupported(format!(
            "{field}: mapping these ids as an unprivileged user needs {helper} (Debian package uidmap): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::config(
            field,
            format!(
                "{helper} refused the mapping: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// Creates and enters a time namespace with the configured offsets.
pub fn enter_new_time_ns(linux: &Linux) -> Result<()> {
    nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        .ctx(|| "unshare time namespace".to_string())?;
    if let Some(offsets) = linux.time_offsets() {
        use std::fmt::Write as _;
        let mut text = String::new();
        for (clock, off) in offsets {
            let name = match clock.as_str() {
                "monotonic" => "monotonic",
                "boottime" => "boottime",
                other => {
                    return Err(Error::config(
                        format!("linux.timeOffsets.{other}"),
                        "unknown clock",
                    ))
                }
            };
            let _ = writeln!(
                text,
                "{name} {} {}",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            );
        }
        std::fs::write("/proc/self/timens_offsets", text)
            .ctx(|| "linux.timeOffsets: writing timens_offsets".to_string())?;
    }
    let ns = File::open("/proc/self/ns/time_for_children")
        .ctx(|| "opening time_for_children".to_string())?;
    // SAFETY: setns on a valid namespace fd with the matching type.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWTIME) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "entering time namespace".to_string());
    }
    Ok(())
}

/// Whether `setgroups` may be called in the current user namespace.
pub fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny")
}

/// Brings the loopback interface of the current (new) network namespace up, as runc and crun
/// do: a container without other networking still reaches 127.0.0.1.
pub fn loopback_up() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ctx(|| "loopback: socket".to_string())?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `req` into it; `req` is a
    // valid ifreq that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "loopback: SIOCGIFFLAGS".to_string());
    }
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the initialised one.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS sets the flags in `req` on the interface it names.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "loopback: SIOCSIFFLAGS".to_string());
    }
    Ok(())
}
