//! `create`: everything decided and validated in the parent, then one clone3 into the new
//! namespaces, then a short exchange with the init until it waits for `start`.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::config;
use crate::error::{Context, Error, Result};
use crate::init::{self, Plan};
use crate::namespaces;
use crate::process::ProcessPlan;
use crate::rootfs::{self, RootfsPlan};
use crate::start_channel;
use crate::state::{ContainerState, LockedDir, StateRoot, Status};
use crate::sync::{self, Msg};

/// Options of `berth create` (and the create half of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container ID.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's host pid.
    pub pid_file: Option<PathBuf>,
    /// Socket that receives the pty master when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Do not give the container its own session keyring.
    pub no_new_keyring: bool,
    /// Pass fds 3..3+N to the container.
    pub preserve_fds: u32,
    /// `run` in the foreground: a terminal config uses the caller's terminal.
    pub foreground: bool,
}

/// A container that has been created.
#[derive(Debug)]
pub struct Created {
    /// Its state, as persisted.
    pub state: ContainerState,
    /// For `run`: the stream that starts it (no socket file).
    pub starter: Option<UnixStream>,
}

/// Creates a container; with `inline_start` the returned [`Created::starter`] starts it.
pub fn create(root: &StateRoot, opts: &CreateOptions, inline_start: bool) -> Result<Created> {
    let mut phases = crate::phases::Phases::start("create");
    crate::state::validate_id(&opts.id)?;
    let bundle =
        std::fs::canonicalize(&opts.bundle).ctx(|| format!("bundle {}", opts.bundle.display()))?;
    let spec = config::load(&bundle)?;
    phases.mark("config load+validate");
    let rootfs_path = config::rootfs_path(&spec, &bundle);
    let rootfs = std::fs::canonicalize(&rootfs_path)
        .ctx(|| format!("root.path {}", rootfs_path.display()))?;
    if !rootfs.is_dir() {
        return Err(Error::config(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let ns = namespaces::plan(Some(&linux))?;
    if !ns.own_mount {
        check_inherited_mount_ns(&spec)?;
    }
    if ns.new_user && linux.uid_mappings().as_ref().is_none_or(Vec::is_empty) {
        return Err(Error::config(
            "linux.uidMappings",
            "a new user namespace needs uid mappings",
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .map(|p| ProcessPlan::new(p, Some(&linux)))
        .transpose()?;
    let mempolicy = linux
        .memory_policy()
        .as_ref()
        .map(crate::mempolicy::MemPolicy::new)
        .transpose()?;
    phases.mark("namespace and process plans");
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|p| root.seccomp_cache().get_or_compile(p))
        .transpose()?;
    let notify = match (linux.seccomp(), &seccomp) {
        (Some(profile), Some(filter)) => crate::seccomp_notify::connect(profile, filter)?,
        _ => None,
    };
    let terminal = process.as_ref().is_some_and(|p| p.terminal);
    let console = match (&opts.console_socket, terminal) {
        (Some(path), true) => Some(crate::terminal::connect_console_socket(path)?),
        (None, true) if !opts.foreground => {
            return Err(Error::config(
                "process.terminal",
                "a terminal needs --console-socket when the container is detached",
            ))
        }
        _ => None,
    };
    check_preserved_fds(opts.preserve_fds)?;
    let hooks = spec.hooks().clone().unwrap_or_default();
    #[allow(deprecated)]
    let prestart = hooks.prestart().clone().unwrap_or_default();
    let create_runtime = hooks.create_runtime().clone().unwrap_or_default();
    let create_container = hooks.create_container().clone().unwrap_or_default();
    let start_container = hooks.start_container().clone().unwrap_or_default();
    let rootfs_plan = RootfsPlan {
        rootfs: rootfs.clone(),
        root_propagation: linux
            .rootfs_propagation()
            .as_deref()
            .map(|p| {
                crate::mount_options::propagation_option(p).ok_or_else(|| {
                    Error::config(
                        "linux.rootfsPropagation",
                        format!("unknown propagation {p:?}"),
                    )
                })
            })
            .transpose()?,
        // Without a mount namespace of its own nothing is mounted (see check_inherited_mount_ns).
        mounts: if ns.own_mount {
            rootfs::plan_mounts(spec.mounts().as_deref().unwrap_or_default(), &bundle)?
        } else {
            Vec::new()
        },
        devices: linux.devices().clone().unwrap_or_default(),
        in_user_ns: ns.new_user
            || ns
                .joins
                .iter()
                .any(|j| j.flag == nix::sched::CloneFlags::CLONE_NEWUSER),
        in_cgroup_ns: ns.new_cgroup,
    };
    if spec.hostname().is_some() && !ns.own_uts {
        return Err(Error::config("hostname", "needs a uts namespace"));
    }

    phases.mark("seccomp compile, mount plan");
    // From here on, failures must clean up what they leave.
    let dir = root.create_dir(&opts.id)?;
    let mut state = ContainerState {
        oci_version: spec.version().clone(),
        id: opts.id.clone(),
        status: Status::Creating,
        pid: 0,
        bundle: bundle.clone(),
        rootfs,
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        init_start_time: 0,
        own_pid_ns: ns.new_pid,
        init_exposed: !ns.new_user && !crate::sealed_exe::running_sealed(),
        hooks: spec.hooks().clone(),
        cgroup: None,
    };
    let mut guard = Cleanup {
        dir: Some(dir),
        pids: Vec::new(),
        cgroup: None,
    };
    state.cgroup = crate::resources::setup(&linux, &opts.id)?;
    guard.cgroup.clone_from(&state.cgroup);
    phases.mark("cgroups");
    let d = guard.dir.as_ref().expect("set above");
    d.write(&state)?;

    let (waiter, starter) = if inline_start {
        let (w, s) = start_channel::pair()?;
        (w, Some(s))
    } else {
        (start_channel::listen(d.path())?, None)
    };
    let (parent_end, child_end) = sync::pair().ctx(|| "socketpair".to_string())?;
    if let Some(j) = &ns.join_pid {
        refuse_exposed_init(root, &j.path)?;
        namespaces::join(j)?;
    }
    let hook_exchange = notify.is_some()
        || !(prestart.is_empty()
            && create_runtime.is_empty()
            && create_container.is_empty()
            && start_container.is_empty());
    let plan = Plan {
        id: opts.id.clone(),
        ns,
        linux: linux.clone(),
        rootfs: rootfs_plan,
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(oci_spec::runtime::Root::readonly)
            .unwrap_or(false),
        hostname: spec.hostname().clone(),
        domainname: spec.domainname().clone(),
        process,
        mempolicy,
        seccomp_at_create: notify.is_some(),
        seccomp,
        notify,
        create_container_hooks: create_container,
        start_container_hooks: start_container,
        hook_exchange,
        console,
        keep_session: opts.foreground && terminal && opts.console_socket.is_none(),
        preserve_fds: opts.preserve_fds,
        close_at_start: vec![d.lock_fd()],
        trampoline: crate::exe_guard::Trampoline::new()?,
        state: state.clone(),
    };
    phases.mark("state dir, channels");
    let clone_flags = plan.ns.clone_flags;
    let cgroup_fd = match &state.cgroup {
        Some(cg) => cg.unified_dir_fd()?,
        None => None,
    };
    // clone3 with fork semantics, straight into the new namespaces and (with a cgroup
    // directory fd) into the container's cgroup.
    // SAFETY: berth is single-threaded here, so the child may keep running Rust code.
    let child = unsafe {
        berth_sys::process::fork_into(
            clone_flags.bits() as u64,
            cgroup_fd.as_ref().map(std::os::fd::AsFd::as_fd),
        )
    }
    .ctx(|| "clone3 into the container's namespaces".to_string())?;
    if child == 0 {
        drop(parent_end);
        init::main(plan, child_end, waiter);
    }
    drop(child_end);
    drop(waiter);
    phases.mark("clone3");
    guard.pids.push(child);
    if let Some(cg) = &state.cgroup {
        // CLONE_INTO_CGROUP placed it in the v2 hierarchy; the v1 ones need the pid too.
        if cgroup_fd.is_some() {
            cg.add_cloned_pid(child)?;
        } else {
            cg.add_pid(child)?;
        }
    }
    phases.mark("cgroup join");
    let unshare_path = !plan.ns.unshare_flags.is_empty();
    if unshare_path {
        expect(&parent_end, &Msg::NeedIdMaps, child)?;
    }
    if plan.ns.new_user {
        namespaces::write_id_maps(child, &linux)?;
    }
    phases.mark("id maps");
    let idmapped =
        crate::idmap::detached_trees(&plan.rootfs.mounts, child, plan.rootfs.in_user_ns)?;
    let idmapped_fds: Vec<std::os::fd::RawFd> = idmapped
        .iter()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .collect();
    parent_end
        .send_with_fds(&Msg::Go, &idmapped_fds)
        .ctx(|| "sync with the container's init".to_string())?;
    // Limits go on, and the device filter is made, while the init mounts its root filesystem
    // (on another CPU); the filter is enforced once the init has made its device nodes, before
    // any hook. The init runs nothing but berth's code until this `create` has returned.
    let mut devices = match &state.cgroup {
        Some(cg) => Some(crate::resources::apply(cg, &linux)?),
        None => None,
    };
    phases.mark("cgroup limits, device filter made");
    let mut init_pid = child;
    if plan.ns.fork_after_unshare {
        match recv(&parent_end, child)? {
            Msg::InitPid(p) => {
                init_pid = p;
                guard.pids.push(p);
                let _ = waitpid(Pid::from_raw(child), None);
            }
            other => return Err(unexpected(&other)),
        }
    }
    state.pid = init_pid;
    state.init_start_time = crate::proc_info::start_time(init_pid).map_or(0, |(t, _)| t);
    loop {
        let msg = recv(&parent_end, init_pid)?;
        if matches!(msg, Msg::MountsDone | Msg::Ready) {
            if let Some(filter) = devices.take() {
                filter.enforce()?;
            }
        }
        match msg {
            Msg::MountsDone => {
                let creating = state.spec_state_json();
                crate::hooks::run_all("prestart", &prestart, &creating)?;
                crate::hooks::run_all("createRuntime", &create_runtime, &creating)?;
                parent_end
                    .send(&Msg::Continue(init_pid))
                    .ctx(|| "sync".to_string())?;
            }
            Msg::Ready => {
                phases.mark("init setup (mounts, pivot, devices, limits)");
                break;
            }
            other => return Err(unexpected(&other)),
        }
    }
    state.status = Status::Created;
    guard.dir.as_ref().expect("set").write(&state)?;
    if let Some(pid_file) = &opts.pid_file {
        crate::state::write_atomic(pid_file, init_pid.to_string().as_bytes())?;
    }
    phases.mark("state and pid file");
    // Success: disarm the cleanup (this also releases the lock).
    guard.pids.clear();
    guard.cgroup = None;
    guard.dir = None;
    Ok(Created { state, starter })
}

/// Without a mount namespace of its own the container shares the caller's mounts: berth
/// builds no root filesystem (the init only `chroot`s into `root.path`), as runc skips its
/// rootfs setup. `mounts`, `maskedPaths` and `readonlyPaths` are then skipped with a warning
/// (mounting them would change the host's mount table; the chrooted process has no /proc or
/// /sys of its own to mask). What would leave a promise unkept is refused, naming the field: a
/// read-only root, device nodes, root propagation.
fn check_inherited_mount_ns(spec: &oci_spec::runtime::Spec) -> Result<()> {
    let why = "needs a mount namespace: linux.namespaces has none, so the container shares the host's mounts (add {\"type\": \"mount\"})";
    let linux = spec.linux().as_ref();
    let non_empty = |v: Option<&Vec<String>>| v.is_some_and(|v| !v.is_empty());
    let skipped = [
        (
            "mounts",
            spec.mounts().as_ref().is_some_and(|m| !m.is_empty()),
        ),
        (
            "linux.maskedPaths",
            non_empty(linux.and_then(|l| l.masked_paths().as_ref())),
        ),
        (
            "linux.readonlyPaths",
            non_empty(linux.and_then(|l| l.readonly_paths().as_ref())),
        ),
    ];
    for (field, given) in skipped {
        if given {
            tracing::warn!(
                "{field} skipped: no mount namespace in linux.namespaces, so nothing is mounted (the host's mounts are shared)"
            );
        }
    }
    if linux
        .and_then(|l| l.devices().as_ref())
        .is_some_and(|d| !d.is_empty())
    {
        return Err(Error::config("linux.devices", why));
    }
    if linux
        .and_then(|l| l.rootfs_propagation().as_ref())
        .is_some()
    {
        return Err(Error::config("linux.rootfsPropagation", why));
    }
    if spec
        .root()
        .as_ref()
        .and_then(oci_spec::runtime::Root::readonly)
        .unwrap_or(false)
    {
        return Err(Error::config("root.readonly", why));
    }
    Ok(())
}

fn unexpected(m: &Msg) -> Error {
    match m {
        Msg::Error(e) => Error::Init(e.clone()),
        Msg::ExecError(code, message) => Error::Exec {
            message: message.clone(),
            code: *code,
        },
        other => Error::Init(format!(
            "unexpected message from the container's init: {other:?}"
        )),
    }
}

fn expect(ch: &sync::Channel, want: &Msg, pid: i32) -> Result<()> {
    let m = recv(ch, pid)?;
    if &m == want {
        Ok(())
    } else {
        Err(unexpected(&m))
    }
}

fn recv(ch: &sync::Channel, pid: i32) -> Result<Msg> {
    match ch
        .recv()
        .ctx(|| "sync with the container's init".to_string())?
    {
        Some(Msg::Error(e)) => Err(Error::Init(e)),
        Some(Msg::ExecError(code, message)) => Err(Error::Exec { message, code }),
        Some(m) => Ok(m),
        None => Err(Error::Init(format!(
            "container init (pid {pid}) exited during setup"
        ))),
    }
}

/// Undoes a failed create: kills and reaps what was cloned, removes the state directory.
struct Cleanup {
    dir: Option<LockedDir>,
    pids: Vec<i32>,
    cgroup: Option<berth_cgroups::Cgroup>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.destroy();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3 + n {
        // SAFETY: F_GETFD on an integer fd only queries flags.
        if unsafe { libc::fcntl(fd as i32, libc::F_GETFD) } < 0 {
            return Err(Error::State(format!(
                "--preserve-fds: file descriptor {fd} is not open"
            )));
        }
    }
    Ok(())
}

/// The state directory's start socket path (for tests and diagnostics).
pub fn start_socket(dir: &Path) -> PathBuf {
    dir.join(start_channel::SOCKET)
}

/// Refuses to join the pid namespace named by `path` (`/proc/<pid>/ns/pid`) while `<pid>` is
/// the init of a container of this root that has not started and still runs berth's
/// writable binary ([`ContainerState::init_exposed`]): a process of the joining container
/// could open that init's `/proc/<pid>/exe`.
fn refuse_exposed_init(root: &StateRoot, path: &Path) -> Result<()> {
    let pid = path
        .strip_prefix("/proc")
        .ok()
        .and_then(|p| p.components().next())
        .and_then(|c| c.as_os_str().to_str())
        .and_then(|p| p.parse::<i32>().ok());
    let Some(pid) = pid else {
        return Ok(());
    };
    for id in root.list().unwrap_or_default() {
        let Ok(s) = root.read(&id) else { continue };
        if s.pid == pid && s.init_exposed && matches!(s.status, Status::Created | Status::Creating)
        {
            return Err(Error::config(
                "linux.namespaces",
                format!(
                    "pid namespace {}: container {id} has not started yet; start it before joining its pid namespace",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}
