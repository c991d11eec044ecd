//! The container's init, from clone to `execve`. It runs in a forked copy of berth (no
//! re-exec), reports every setup failure to the parent over the sync channel, and after
//! `Ready` waits for `start` on the start channel.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use berth_sys::in_root::{self, OFlags, Resolve};
use nix::sched::CloneFlags;
use oci_spec::runtime::{Hook, Linux};

use crate::error::{Context, Error, Result};
use crate::namespaces::{self, NsPlan};
use crate::process::{self, ProcessPlan};
use crate::rootfs::{self, RootfsPlan};
use crate::start_channel::Waiter;
use crate::sync::{Channel, Msg};

/// Everything the init needs, prepared by the parent before cloning.
#[derive(Debug)]
pub struct Plan {
    /// Container ID (session keyring name).
    pub id: String,
    /// Namespaces.
    pub ns: NsPlan,
    /// `linux` section (id maps, time offsets, sysctl...).
    pub linux: Linux,
    /// Root filesystem.
    pub rootfs: RootfsPlan,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `root.readonly`.
    pub readonly_root: bool,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `domainname`.
    pub domainname: Option<String>,
    /// The process, if the config has one.
    pub process: Option<ProcessPlan>,
    /// `linux.memoryPolicy`, applied just before the init waits for `start`.
    pub mempolicy: Option<crate::mempolicy::MemPolicy>,
    /// Compiled seccomp filter.
    pub seccomp: Option<berth_seccomp::Filter>,
    /// The seccomp agent to send the NOTIFY listener to.
    pub notify: Option<crate::seccomp_notify::Agent>,
    /// The filter is installed at the end of `create` (a NOTIFY profile, whose listener the
    /// agent expects before `start`) instead of just before `execve`.
    pub seccomp_at_create: bool,
    /// `createContainer` hooks.
    pub create_container_hooks: Vec<Hook>,
    /// `startContainer` hooks.
    pub start_container_hooks: Vec<Hook>,
    /// Whether the parent runs hooks between mounts and pivot (prestart, createRuntime) or the
    /// init needs state documents: then the `MountsDone`/`Continue` exchange happens.
    pub hook_exchange: bool,
    /// Connected `--console-socket`.
    pub console: Option<UnixStream>,
    /// The caller's terminal is the container's (`run` in the foreground): no new session.
    pub keep_session: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// The container's state as `create` began it (pid filled in from `Continue`).
    pub state: crate::state::ContainerState,
    /// The sealed exec trampoline (CVE-2019-5736).
    pub trampoline: crate::exe_guard::Trampoline,
    /// Descriptors of the parent that the init must close at once (the state-directory lock).
    pub close_at_start: Vec<std::os::fd::RawFd>,
}

/// Entry point of the cloned child. Never returns.
pub fn main(mut plan: Plan, sync: Channel, waiter: Waiter) -> ! {
    for &fd in &plan.close_at_start {
        // SAFETY: the fd is the parent's; the init never uses it, and no Rust owner in this
        // process will touch it again (the init never returns to that code).
        unsafe { libc::close(fd) };
    }
    let code = match setup(&mut plan, &sync) {
        Ok(ready) => {
            // SAFETY: prctl with integer arguments: the init must outlive `berth create`.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
            exit_on_termination_signals();
            let _ = sync.send(&Msg::Ready);
            drop(sync);
            run(plan, waiter, &ready)
        }
        Err(Error::Exec { message, code }) => {
            let _ = sync.send(&Msg::ExecError(code, message));
            code
        }
        Err(e) => {
            let _ = sync.send(&Msg::Error(e.to_string()));
            1
        }
    };
    // SAFETY: _exit never returns and skips atexit handlers that belong to the parent.
    unsafe { libc::_exit(code) }
}

/// Signals that end a process by default. A created container's init may be pid 1 of its pid
/// namespace, which the kernel shields from every signal it has no handler for (SIGKILL
/// aside): `kill ID TERM` before `start` would do nothing. With these handlers the waiting
/// init ends as runc's does; `execve` resets them for the container's process.
const TERMINATING: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGPWR,
];

extern "C" fn exit_on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

fn exit_on_termination_signals() {
    for &sig in TERMINATING {
        // SAFETY: a handler that only calls _exit (async-signal-safe); the init has no other
        // handler for these signals.
        unsafe { libc::signal(sig, exit_on_signal as *const () as libc::sighandler_t) };
    }
}

/// What setup hands to the waiting half.
struct Ready {
    /// State JSON (status `created`) for `startContainer` hooks.
    created: String,
    /// The pty slave, when the container has a terminal.
    pty: Option<OwnedFd>,
}

fn setup(plan: &mut Plan, sync: &Channel) -> Result<Ready> {
    // Die with berth while being set up; cleared before Ready.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let ns = &plan.ns;
    let idmapped;
    if ns.unshare_flags.is_empty() {
        idmapped = expect_go(sync)?;
        if ns.new_user {
            become_ns_root()?;
        }
        for j in &ns.joins {
            namespaces::join(j)?;
        }
    } else {
        for j in &ns.joins {
            namespaces::join(j)?;
        }
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
            .ctx(|| "unshare user namespace".to_string())?;
        sync.send(&Msg::NeedIdMaps).ctx(|| "sync".to_string())?;
        idmapped = expect_go(sync)?;
        become_ns_root()?;
        nix::sched::unshare(ns.unshare_flags - CloneFlags::CLONE_NEWUSER)
            .ctx(|| "unshare namespaces".to_string())?;
        if ns.fork_after_unshare {
            // SAFETY: berth is single-threaded here, so fork is sound.
            match unsafe { nix::unistd::fork() }
                .ctx(|| "fork into the pid namespace".to_string())?
            {
                nix::unistd::ForkResult::Parent { child } => {
                    let _ = sync.send(&Msg::InitPid(child.as_raw()));
                    // SAFETY: _exit ends this intermediate process at once.
                    unsafe { libc::_exit(0) }
                }
                nix::unistd::ForkResult::Child => {
                    // SAFETY: prctl with integer arguments.
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                }
            }
        }
    }
    // The time offsets first: /proc/self/timens_offsets is writable only while the init is
    // dumpable (non-dumpable makes its /proc files owned by the host's root, which a user
    // namespace does not map). Becoming root in a new user namespace cleared the flag (a
    // credential change does), so it is set for this step: no other process is in the
    // container's namespaces yet.
    if ns.new_time {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        namespaces::enter_new_time_ns(&plan.linux)?;
    }
    // From here the init is visible inside the container's namespaces: make it non-dumpable so
    // no container process can open its /proc/<pid>/exe (or ptrace it) before it execs.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if ns.new_net {
        if let Err(e) = namespaces::loopback_up() {
            tracing::warn!("{e}");
        }
    }
    if ns.new_cgroup {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "unshare cgroup namespace".to_string())?;
    }
    if !plan.no_new_keyring {
        join_session_keyring(&plan.id);
    }
    // The masks' null device, taken before any hook or container process could swap it.
    let null = if ns.own_mount {
        rootfs::prepare(&plan.rootfs, idmapped)?;
        Some(rootfs::open_null(&plan.rootfs.rootfs)?)
    } else {
        None
    };
    let (creating, created) = if plan.hook_exchange {
        sync.send(&Msg::MountsDone).ctx(|| "sync".to_string())?;
        match sync.recv().ctx(|| "sync".to_string())? {
            Some(Msg::Continue(pid)) => {
                let mut state = plan.state.clone();
                state.pid = pid;
                (
                    state.spec_state_json_as(crate::state::Status::Creating),
                    state.spec_state_json_as(crate::state::Status::Created),
                )
            }
            Some(Msg::Error(e)) => return Err(Error::Hook(e)),
            other => return Err(Error::Init(format!("unexpected sync message {other:?}"))),
        }
    } else {
        (String::new(), String::new())
    };
    crate::hooks::run_all("createContainer", &plan.create_container_hooks, &creating)?;
    if ns.own_mount {
        rootfs::enter(&plan.rootfs.rootfs, plan.no_pivot)?;
    } else {
        rootfs::chroot_only(&plan.rootfs.rootfs)?;
    }
    let pty = finish_setup(plan, null.as_ref())?;
    drop(null);
    if plan.seccomp_at_create {
        // A NOTIFY profile: the agent gets its listener during `create`, as runc sends it, so
        // an agent may wait for it before calling `start`.
        if let Some(f) = &plan.seccomp {
            // berth's own getcwd check runs now, before the filter could hand it to the agent.
            if let Some(p) = &plan.process {
                process::enter_cwd(&p.cwd, false)?;
            }
            install_seccomp(f, plan.notify.take(), &created)?;
        }
    }
    Ok(Ready { created, pty })
}

/// Waits for `Go`, which carries the detached trees of the idmapped mounts.
fn expect_go(sync: &Channel) -> Result<Vec<OwnedFd>> {
    match sync.recv_with_fds().ctx(|| "sync".to_string())? {
        (Some(Msg::Go), fds) => Ok(fds),
        (Some(Msg::Error(e)), _) => Err(Error::Init(e)),
        (other, _) => Err(Error::Init(format!("sync: expected Go, got {other:?}"))),
    }
}

fn become_ns_root() -> Result<()> {
    // SAFETY: integer arguments.
    if unsafe { libc::setresgid(0, 0, 0) } != 0 || unsafe { libc::setresuid(0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| {
            "becoming root in the user namespace (are uid 0 and gid 0 mapped?)".to_string()
        });
    }
    Ok(())
}

fn join_session_keyring(id: &str) {
    let Ok(name) = std::ffi::CString::new(id) else {
        return;
    };
    // Failure (e.g. ENOSYS, EDQUOT) is tolerated as in runc.
    let _ = berth_sys::keyring::join_session_keyring(&name);
}

/// Waits for `start`, then execs. Returns the exit code on failure.
fn run(mut plan: Plan, waiter: Waiter, ready: &Ready) -> i32 {
    let Ok(mut conn) = waiter.wait() else {
        return 1;
    };
    match exec_process(&mut plan, ready, &conn) {
        Ok(never) => match never {},
        Err((msg, code)) => {
            let _ = conn.write_all(msg.as_bytes());
            code
        }
    }
}

/// After pivot: terminal, names, sysctls, masked/readonly paths, limits.
fn finish_setup(plan: &Plan, null: Option<&OwnedFd>) -> Result<Option<OwnedFd>> {
    let mut pty = None;
    if let (Some(p), Some(sock)) = (&plan.process, &plan.console) {
        if p.terminal {
            let slave = crate::terminal::setup_pty(sock, p.uid, p.gid, p.console_size)?;
            // The pty becomes stdio now, as runc's init does, not at `start`: the caller's
            // stdout and stderr must not stay open in the waiting init. containerd's shim
            // reads `create`'s output pipes to EOF before it calls `start`, so holding them
            // would hang `ctr run -t` and `docker run -t` forever.
            crate::terminal::dup_onto_stdio(&slave)?;
            pty = Some(slave);
        }
    }
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).ctx(|| format!("hostname: sethostname {h:?}"))?;
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: pointer and length describe `d`.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("domainname: setdomainname {d:?}"));
        }
    }
    let sysctls = plan.linux.sysctl().clone().unwrap_or_default();
    if !sysctls.is_empty() {
        let proc_sys = rootfs::open_proc_sys()?;
        for (k, v) in &sysctls {
            if k.contains("..") || k.contains('/') && k.contains('.') {
                return Err(Error::config(format!("linux.sysctl.{k}"), "invalid key"));
            }
            let rel = k.replace('.', "/");
            let write = || -> std::io::Result<()> {
                let fd = in_root::open(
                    proc_sys.as_fd(),
                    std::path::Path::new(&rel),
                    OFlags::WRONLY | OFlags::TRUNC,
                    Resolve::InRootStrict,
                )?;
                std::io::Write::write_all(&mut std::fs::File::from(fd), v.as_bytes())
            };
            write().ctx(|| format!("linux.sysctl.{k}: writing /proc/sys/{rel}"))?;
        }
    }
    if let Some(null) = null {
        finish_rootfs(plan, null)?;
    }
    if let Some(m) = &plan.mempolicy {
        m.apply()?;
    }
    if let Some(p) = &plan.process {
        process::apply_limits(p)?;
        // Engines expect a missing or non-executable program to fail `create` (podman maps
        // the message to exit 127/126); `start` looks it up again in case the rootfs changed.
        process::lookup(p).map_err(|f| Error::Exec {
            message: f.message,
            code: f.exit_code,
        })?;
    }
    Ok(pty)
}

/// Masked and read-only paths, a read-only root and `/`'s propagation (after pivot).
fn finish_rootfs(plan: &Plan, null: &OwnedFd) -> Result<()> {
    rootfs::finish(
        null,
        plan.linux.masked_paths().as_deref().unwrap_or_default(),
        plan.linux.readonly_paths().as_deref().unwrap_or_default(),
        plan.readonly_root,
        plan.rootfs.root_propagation.filter(|p| {
            // Shared and unbindable need setting on the new root itself; private and
            // slave were given to the whole tree before the rootfs was bound.
            p.intersects(nix::mount::MsFlags::MS_SHARED | nix::mount::MsFlags::MS_UNBINDABLE)
        }),
    )
}

enum Never {}

fn exec_process(
    plan: &mut Plan,
    ready: &Ready,
    conn: &UnixStream,
) -> std::result::Result<Never, (String, i32)> {
    let fail = |e: Error| (e.to_string(), 1);
    crate::hooks::run_all_with_env(
        "startContainer",
        &plan.start_container_hooks,
        &ready.created,
        plan.process.as_ref().map_or(&[], |p| p.env.as_slice()),
    )
    .map_err(fail)?;
    let Some(p) = plan.process.as_mut() else {
        return Err((
            "cannot start a container without a process: config.json has no \"process\"".into(),
            1,
        ));
    };
    if !plan.keep_session {
        nix::unistd::setsid().map_err(|e| (format!("setsid: {e}"), 1))?;
    }
    if let Some(slave) = &ready.pty {
        crate::terminal::make_controlling(slave).map_err(fail)?;
    }
    let seccomp = if plan.seccomp_at_create {
        None
    } else {
        plan.seccomp.as_ref()
    };
    Err(confine_and_exec(
        p,
        (seccomp, plan.seccomp_at_create),
        plan.notify.take(),
        &ready.created,
        &plan.trampoline,
        plan.preserve_fds,
        conn,
    ))
}

/// The last steps before `execve`, shared by the init and `exec`: fd hygiene, the cwd check,
/// HOME and the program's lookup (all before any filter; the cwd check is skipped when
/// `cwd_verified` says it was done before the filter went in at `create`), seccomp (before the
/// capability drop unless no_new_privs is set, as late as possible otherwise), the user and
/// capabilities, the chdir, no_new_privs, default signals, and the exec through the
/// trampoline. Returns only on failure: the message and the exit code.
pub(crate) fn confine_and_exec(
    p: &mut ProcessPlan,
    (seccomp, cwd_verified): (Option<&berth_seccomp::Filter>, bool),
    mut notify: Option<crate::seccomp_notify::Agent>,
    state: &str,
    trampoline: &crate::exe_guard::Trampoline,
    preserve_fds: u32,
    keep: &impl AsRawFd,
) -> (String, i32) {
    let fail = |e: Error| (e.to_string(), 1);
    let mut steps = || -> std::result::Result<std::ffi::CString, (String, i32)> {
        // Before any seccomp filter: a profile need not allow close_range (runc's and many
        // hand-written ones do not).
        close_fds(preserve_fds, keep).map_err(fail)?;
        // berth's own lookups also go before the filter, which may deny or hand to an agent
        // the calls they make (getcwd, open, stat): the cwd check (done as root here; the
        // chdir is repeated as the user below), HOME, the program.
        let cwd_verified = cwd_verified || process::enter_cwd(&p.cwd, false).is_ok();
        process::fill_home(p);
        let path = process::lookup(p).map_err(|f| (f.message, f.exit_code))?;
        let nnp = p.no_new_privileges;
        if let (Some(f), false) = (seccomp, nnp) {
            // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: before the drop.
            install_seccomp(f, notify.take(), state).map_err(fail)?;
        }
        process::switch_user(p, namespaces::setgroups_allowed()).map_err(fail)?;
        process::enter_cwd(&p.cwd, cwd_verified).map_err(fail)?;
        if nnp {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err((format!("prctl(PR_SET_NO_NEW_PRIVS): {e}"), 1));
            }
            if let Some(f) = seccomp {
                install_seccomp(f, notify.take(), state).map_err(fail)?;
            }
        }
        Ok(path)
    };
    let path = match steps() {
        Ok(path) => path,
        Err(e) => return e,
    };
    reset_signals();
    let failure = process::exec(trampoline, &path, p);
    (failure.message, failure.exit_code)
}

/// Installs the filter; a NOTIFY listener goes to the agent.
fn install_seccomp(
    f: &berth_seccomp::Filter,
    agent: Option<crate::seccomp_notify::Agent>,
    state: &str,
) -> Result<()> {
    let listener = f.install()?;
    if let (Some(listener), Some(agent)) = (listener, agent) {
        agent.send(&listener, state)?;
    }
    Ok(())
}

/// Marks every descriptor above stdio and the preserved ones close-on-exec, so nothing of the
/// host (state directory, sockets, log file) reaches the container.
fn close_fds(preserve: u32, conn: &impl AsRawFd) -> Result<()> {
    let first = 3 + preserve;
    if berth_sys::process::cloexec_from(first).is_err() {
        // A kernel before 5.11 (no CLOSE_RANGE_CLOEXEC): one fcntl per open descriptor.
        cloexec_each(first)?;
    }
    for fd in 3..first {
        if fd as i32 == conn.as_raw_fd() {
            continue;
        }
        // SAFETY: fcntl on an integer fd; an fd that is not open just fails.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) };
    }
    Ok(())
}

/// The slow path of [`close_fds`]: marks every open descriptor from `first` up
/// close-on-exec, listing them from `/proc/self/fd` (or, without /proc, trying each number
/// below the descriptor limit).
fn cloexec_each(first: u32) -> Result<()> {
    let set = |fd: i32| {
        // SAFETY: fcntl on an integer fd; F_GETFD/F_SETFD only touch its flags, and a closed
        // fd just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    };
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => {
            let fds: Vec<i32> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds.into_iter().filter(|&fd| fd >= first as i32) {
                set(fd);
            }
        }
        Err(_) => {
            let (soft, _) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .ctx(|| "getrlimit(RLIMIT_NOFILE)".to_string())?;
            for fd in first..soft.min(1 << 20) as u32 {
                set(fd as i32);
            }
        }
    }
    Ok(())
}

/// Restores default signal dispositions and an empty mask (Rust ignores SIGPIPE; `run` blocks
/// signals): the container must start with a clean slate.
fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL is always valid for catchable signals.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: a zeroed sigset emptied by sigemptyset, passed to sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());
    }
}
