//! `start`, `kill`, `delete` and `run`: the operations on a container after `create`.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use crate::create::{self, CreateOptions};
use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::start_channel;
use crate::state::{ContainerState, StateRoot, Status};

/// Starts a created container: its init execs the user process.
pub fn start(root: &StateRoot, id: &str) -> Result<()> {
    let mut phases = crate::phases::Phases::start("start");
    let dir = root.open_dir(id)?;
    let mut state = dir.read()?;
    match state.status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::State(
                "cannot start a container that has stopped".into(),
            ))
        }
        s => {
            return Err(Error::State(format!(
                "cannot start a container in the {s} state"
            )))
        }
    }
    let conn = start_channel::connect(dir.path())?;
    let outcome = start_channel::trigger(conn);
    let _ = std::fs::remove_file(create::start_socket(dir.path()));
    if let Err(e) = outcome {
        // The init exits after reporting; wait for it so that a `delete` right after this
        // failure finds the container stopped.
        let _ = wait_gone(&state, INIT_EXIT_WAIT);
        return Err(e);
    }
    phases.mark("exec (startContainer hooks, user, caps, seccomp, exec)");
    state.status = Status::Running;
    dir.write(&state)?;
    drop(dir);
    run_poststart(&state)
}

/// How long `start` and `kill` wait for an init that is ending anyway (failed start, SIGKILL).
const INIT_EXIT_WAIT: Duration = Duration::from_secs(5);

/// Runs the `poststart` hooks. runtime-spec 1.3: if one fails, the container is stopped and
/// `start` fails (the container stays, stopped, for `delete`).
fn run_poststart(state: &ContainerState) -> Result<()> {
    let Some(h) = state.hooks.as_ref().and_then(|h| h.poststart().clone()) else {
        return Ok(());
    };
    // The hook sees the state of its stage (running, with the init's pid), even if a short
    // process has already exited.
    let running = state.spec_state_json_as(Status::Running);
    if let Err(e) = hooks::run_all("poststart", &h, &running) {
        stop_all(state);
        let _ = wait_gone(state, INIT_EXIT_WAIT);
        return Err(e);
    }
    Ok(())
}

/// SIGKILLs every process of the container.
fn stop_all(state: &ContainerState) {
    if let Some(cg) = &state.cgroup {
        let _ = cg.signal_all(libc::SIGKILL);
    }
    for pid in processes(state) {
        let _ = signal_pid(state, pid, libc::SIGKILL, pid == state.pid);
    }
}

/// Sends `signal` to the container's init, or with `all` to every process of the container.
///
/// With `all` a stopped container is no error, as with runc 1.1: what is left in its cgroup
/// (children of an init that exited, in a shared pid namespace) is signalled, and a cgroup
/// already gone, or empty, leaves nothing to do. containerd's shim sends `kill --all` to
/// stopped containers and logs an error for any other answer.
pub fn kill(root: &StateRoot, id: &str, signal: i32, all: bool) -> Result<()> {
    let state = root.read(id)?;
    if state.status() == Status::Stopped && !all {
        return Err(Error::NotRunning);
    }
    if all {
        if let Some(cg) = &state.cgroup {
            return Ok(cg.signal_all(signal)?);
        }
        for pid in processes(&state) {
            let _ = signal_pid(&state, pid, signal, pid == state.pid);
        }
        Ok(())
    } else {
        signal_pid(&state, state.pid, signal, true)?;
        if signal == libc::SIGKILL {
            // SIGKILL cannot be caught: wait for the init to be gone so that a `delete` right
            // after `kill ID KILL` finds the container stopped (runc's order of events).
            let _ = wait_gone(&state, INIT_EXIT_WAIT);
        }
        Ok(())
    }
}

/// Signals `pid` through a pidfd; for the init, checks the pid was not reused first.
fn signal_pid(state: &ContainerState, pid: i32, signal: i32, is_init: bool) -> Result<()> {
    let pidfd = match berth_sys::process::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(Error::NotRunning),
        Err(e) => return Err(e).ctx(|| format!("pidfd_open {pid}")),
    };
    if is_init && !state.init_alive() {
        return Err(Error::NotRunning);
    }
    match berth_sys::process::pidfd_send_signal(pidfd.as_fd(), signal) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(Error::NotRunning),
        Err(e) => Err(e).ctx(|| format!("sending signal {signal} to pid {pid}")),
    }
}

/// Host pids of the container's processes: its pid namespace's members, or (sharing the
/// host's pid namespace) the init and its descendants.
pub fn processes(state: &ContainerState) -> Vec<i32> {
    if !state.init_alive() {
        return Vec::new();
    }
    if let Some(pids) = state.cgroup.as_ref().and_then(|cg| cg.pids().ok()) {
        return pids;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![state.pid];
    };
    let pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    if state.own_pid_ns {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/pid", state.pid)) else {
            return vec![state.pid];
        };
        return pids
            .into_iter()
            .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns))
            .collect();
    }
    let parent_of = |p: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
    };
    let mut out = vec![state.pid];
    let links: Vec<(i32, i32)> = pids
        .iter()
        .filter_map(|&p| Some((p, parent_of(p)?)))
        .collect();
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(links.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// Deletes a container. `force` kills a created or running one first; a missing container
/// with `force` is not an error.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    delete_with(root, id, force, |_| Ok(()))
}

/// [`delete`], with `release` undoing what the caller made for the container (its image
/// bundle, its network) once its processes and cgroup are gone and before its state is
/// removed. The state goes last, so a `delete` killed at any point can be run again and
/// finds everything still to undo; if `release` fails, the state stays and the error says
/// what failed.
pub fn delete_with(
    root: &StateRoot,
    id: &str,
    force: bool,
    release: impl FnOnce(&ContainerState) -> std::result::Result<(), String>,
) -> Result<()> {
    let dir = match root.open_dir(id) {
        Err(Error::NotFound(_)) if force => return Ok(()),
        r => r?,
    };
    let state = dir.read()?;
    let status = state.status();
    if status != Status::Stopped && state.init_alive() {
        if !force {
            return Err(Error::State(format!(
                "cannot delete container {id} that is not stopped: {status}"
            )));
        }
        stop_all(&state);
        wait_gone(&state, Duration::from_secs(10))?;
    }
    if let Some(cg) = &state.cgroup {
        cg.destroy()?;
    }
    release(&state).map_err(|e| {
        Error::State(format!(
            "container {id}: {e} (its state is kept: `delete` again once that is mended)"
        ))
    })?;
    if let Some(h) = state.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        let mut stopped = state.clone();
        stopped.status = Status::Stopped;
        hooks::run_all_warn("poststop", &h, &stopped.spec_state_json());
    }
    dir.remove()
}

/// Waits until the init has exited (it may stay a zombie until its parent reaps it).
fn wait_gone(state: &ContainerState, timeout: Duration) -> Result<()> {
    let Ok(pidfd) = berth_sys::process::pidfd_open(state.pid) else {
        return Ok(());
    };
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&raw mut pfd, 1, timeout.as_millis() as i32) };
    if n == 0 {
        return Err(Error::State(format!(
            "container init (pid {}) did not exit after SIGKILL",
            state.pid
        )));
    }
    Ok(())
}

/// Freezes a running container (`pause`).
pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open_dir(id)?;
    let mut state = dir.read()?;
    match state.status() {
        Status::Running => {}
        Status::Paused => return Err(Error::State(format!("container {id} is already paused"))),
        s => {
            return Err(Error::State(format!(
                "cannot pause container {id}: it is {s}"
            )))
        }
    }
    let cg = state.cgroup.as_ref().ok_or_else(|| {
        Error::Unsupported(format!("cannot pause {id}: it has no cgroup (rootless)"))
    })?;
    cg.freeze()?;
    state.status = Status::Paused;
    dir.write(&state)
}

/// Thaws a paused container (`resume`).
pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open_dir(id)?;
    let mut state = dir.read()?;
    if state.status() != Status::Paused {
        return Err(Error::State(format!("container {id} is not paused")));
    }
    if let Some(cg) = &state.cgroup {
        cg.thaw()?;
    }
    state.status = Status::Running;
    dir.write(&state)
}

/// Applies new resource limits to a created, running or paused container (`update`).
pub fn update(
    root: &StateRoot,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let dir = root.open_dir(id)?;
    let state = dir.read()?;
    if state.status() == Status::Stopped {
        return Err(Error::NotRunning);
    }
    let cg = state.cgroup.as_ref().ok_or_else(|| {
        Error::Unsupported(format!("cannot update {id}: it has no cgroup (rootless)"))
    })?;
    Ok(cg.apply(&without_zero_values(resources))?)
}

/// `value`, except that a zero ("leave as is") becomes `None`.
fn nonzero<T: PartialEq + Default>(value: Option<T>) -> Option<T> {
    value.filter(|v| *v != T::default())
}

/// Engines send zeros for what they do not change (docker: `"quota":0,"period":0`,
/// `"blockIO":{"weight":0}`); runc reads a zero as "leave as is", and so does berth.
pub fn without_zero_values(
    r: &oci_spec::runtime::LinuxResources,
) -> oci_spec::runtime::LinuxResources {
    let mut r = r.clone();
    if let Some(mut cpu) = r.cpu().clone() {
        cpu.set_shares(nonzero(cpu.shares()));
        cpu.set_quota(nonzero(cpu.quota()));
        cpu.set_period(nonzero(cpu.period()));
        r.set_cpu(Some(cpu));
    }
    if let Some(mut mem) = *r.memory() {
        mem.set_reservation(nonzero(mem.reservation()));
        #[allow(deprecated)]
        mem.set_kernel(nonzero(mem.kernel()));
        mem.set_limit(nonzero(mem.limit()));
        mem.set_swap(nonzero(mem.swap()));
        r.set_memory(Some(mem));
    }
    if let Some(mut io) = r.block_io().clone() {
        io.set_weight(nonzero(io.weight()));
        r.set_block_io(Some(io));
    }
    if r.pids().as_ref().is_some_and(|p| p.limit() == 0) {
        r.set_pids(None);
    }
    r
}

/// The container's resource statistics (`events --stats`), as runc's event JSON.
pub fn stats(root: &StateRoot, id: &str) -> Result<serde_json::Value> {
    let state = root.read(id)?;
    if state.status() == Status::Stopped {
        return Err(Error::NotRunning);
    }
    let cg = state
        .cgroup
        .as_ref()
        .ok_or_else(|| Error::Unsupported(format!("{id} has no cgroup (rootless): no stats")))?;
    let data = serde_json::to_value(cg.stats()?).expect("stats serialise");
    Ok(serde_json::json!({"type": "stats", "id": id, "data": data}))
}

/// The number of OOM kills in the container so far (for `events`).
pub fn oom_kills(root: &StateRoot, id: &str) -> Result<u64> {
    let state = root.read(id)?;
    match &state.cgroup {
        Some(cg) => Ok(cg.oom_kills()?),
        None => Ok(0),
    }
}

/// How `run` ends.
#[derive(Debug)]
pub enum RunOutcome {
    /// `--detach`: the container runs on.
    Detached,
    /// The container exited with this status (128+N for signal N), and was deleted.
    Exited(i32),
    /// The init could not exec the process (message as runc words it); it exited with `code`
    /// (127 not found, 126 not executable) and the container was deleted.
    StartFailed {
        /// What went wrong.
        message: String,
        /// The init's exit status.
        code: i32,
    },
}

/// `run`: create and start; in the foreground forward signals, wait, delete, and return the
/// exit status.
pub fn run(root: &StateRoot, opts: &CreateOptions, detach: bool) -> Result<RunOutcome> {
    if detach {
        create::create(root, opts, false)?;
        start(root, &opts.id)?;
        return Ok(RunOutcome::Detached);
    }
    run_foreground(root, opts, true)
}

/// A foreground `run` that keeps the stopped container (state, cgroup) for a later
/// `delete`, as `docker run` without `--rm` keeps its container. A start that fails still
/// deletes it.
pub fn run_and_keep(root: &StateRoot, opts: &CreateOptions) -> Result<RunOutcome> {
    run_foreground(root, opts, false)
}

fn run_foreground(
    root: &StateRoot,
    opts: &CreateOptions,
    delete_after: bool,
) -> Result<RunOutcome> {
    // Block every catchable signal before the clone so none is lost, SIGCHLD included; the
    // init restores an empty mask before exec.
    let all = nix::sys::signal::SigSet::all();
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&all),
        Some(&mut old),
    )
    .ctx(|| "sigprocmask".to_string())?;
    // Grandchild inits (user namespace with joins) must be reaped by us too.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let created = match create::create(
        root,
        &CreateOptions {
            foreground: true,
            ..opts.clone()
        },
        true,
    ) {
        Ok(c) => c,
        Err(Error::Exec { message, code }) => {
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&old),
                None,
            );
            return Ok(RunOutcome::StartFailed { message, code });
        }
        Err(e) => return Err(e),
    };
    let pid = created.state.pid;
    let started = start_channel::trigger(created.starter.expect("inline start"));
    let mut start_error = None;
    match started {
        Ok(()) => {
            if let Ok(dir) = root.open_dir(&opts.id) {
                let mut s = created.state.clone();
                s.status = Status::Running;
                let _ = dir.write(&s);
            }
            if let Err(e) = run_poststart(&created.state) {
                start_error = Some(e);
            }
        }
        Err(e) => start_error = Some(e),
    }
    let code = wait_forwarding(pid, &all);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None);
    if delete_after || start_error.is_some() {
        delete(root, &opts.id, true)?;
    }
    Ok(match start_error {
        Some(e) => RunOutcome::StartFailed {
            message: e.to_string(),
            code,
        },
        None => RunOutcome::Exited(code),
    })
}

/// Waits for `pid` (a child, or a grandchild when berth is a subreaper) while forwarding every
/// other signal to it; returns its exit status (128+N for signal N).
pub(crate) fn wait_forwarding(pid: i32, set: &nix::sys::signal::SigSet) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        // Reap first: the child may have exited before we got here.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => return c,
                Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let Ok(sig) = set.wait() else { continue };
        if sig != nix::sys::signal::Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
}
