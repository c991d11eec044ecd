//! `exec`: a new process inside a running container. berth forks once, the child joins the
//! container's cgroups and every namespace of the container's init that differs from berth's own (user first; the pid
//! namespace is entered by the parent before the fork so the child is born in it), then sets
//! the process up exactly as the init does and execs through the sealed trampoline.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use crate::error::{Context, Error, Result};
use crate::exe_guard::Trampoline;
use crate::lifecycle::RunOutcome;
use crate::process::{self, ProcessPlan};
use crate::state::{StateRoot, Status};

/// Options of `berth exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Container ID.
    pub id: String,
    /// The process to run (from `--process` or built from the container's own process).
    pub process: Process,
    /// Return once the process has started.
    pub detach: bool,
    /// Where to write the new process's host pid.
    pub pid_file: Option<PathBuf>,
    /// Socket that receives the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// Pass fds 3..3+N to the process.
    pub preserve_fds: u32,
    /// Run even in a paused container (the process starts frozen, as runc's does).
    pub ignore_paused: bool,
    /// `--cgroup` values: `PATH` or `CONTROLLER[,CONTROLLER...]:PATH`, sub-cgroups of the
    /// container's to join instead of its own.
    pub sub_cgroups: Vec<String>,
}

/// The parsed `--cgroup` values: a default sub-path and per-controller ones.
type SubCgroups = (Option<PathBuf>, Vec<(String, PathBuf)>);

fn parse_sub_cgroups(values: &[String]) -> Result<SubCgroups> {
    let mut default = None;
    let mut per = Vec::new();
    // Paths are relative to the container's cgroup even when written absolute, as runc
    // reads them: "/" is the container's own cgroup.
    let sub = |p: &str| PathBuf::from(p.trim_start_matches('/'));
    for v in values {
        match v.split_once(':') {
            Some((ctrls, path)) => {
                for c in ctrls.split(',') {
                    if c.is_empty() {
                        return Err(Error::config(
                            "--cgroup",
                            format!("{v:?}: empty controller name"),
                        ));
                    }
                    per.push((c.to_string(), sub(path)));
                }
            }
            None => {
                if default.replace(sub(v)).is_some() {
                    return Err(Error::config(
                        "--cgroup",
                        "more than one path without a controller",
                    ));
                }
            }
        }
    }
    Ok((default, per))
}

/// Namespace kinds in the order they are joined, with their /proc names.
const KINDS: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
];

/// The container's namespaces that differ from berth's own, opened.
struct Joins {
    /// Joined by the child, in this order.
    child: Vec<(CloneFlags, std::fs::File)>,
    /// Joined by the parent before the fork.
    pid: Option<std::fs::File>,
}

fn namespaces_to_join(pid: i32) -> Result<Joins> {
    let differs = |name: &str| {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{name}")).ok();
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        theirs.is_some() && theirs != ours
    };
    let open = |name: &str| {
        std::fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .ctx(|| format!("opening /proc/{pid}/ns/{name}"))
    };
    let mut joins = Vec::new();
    for &(name, flag) in KINDS {
        if differs(name) {
            joins.push((flag, open(name)?));
        }
    }
    let pid_ns = if differs("pid") {
        Some(open("pid")?)
    } else {
        None
    };
    Ok(Joins {
        child: joins,
        pid: pid_ns,
    })
}

/// Runs a process in a running container.
pub fn exec(root: &StateRoot, opts: &ExecOptions) -> Result<RunOutcome> {
    let state = root.read(&opts.id)?;
    let frozen = state.status() == Status::Paused;
    match state.status() {
        Status::Stopped => {
            return Err(Error::State("cannot exec in a stopped container".into()));
        }
        // Its init still runs berth's own writable binary (see ContainerState::init_exposed).
        Status::Created | Status::Creating if state.init_exposed => {
            return Err(Error::State(
                "cannot exec in a container that has not started (its init is still berth's own binary); start it first".into(),
            ));
        }
        // The new process joins the frozen cgroup and would freeze before it could report.
        Status::Paused if !opts.ignore_paused => {
            return Err(Error::State(
                "cannot exec in a paused container (resume it, or pass --ignore-paused)".into(),
            ));
        }
        _ => {}
    }
    let spec = crate::config::load(&state.bundle)?;
    let linux = spec.linux().clone().unwrap_or_default();
    crate::config::validate_process_lsm(&opts.process)?;
    let plan = ProcessPlan::new(&opts.process, Some(&linux))?;
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|p| root.seccomp_cache().get_or_compile(p))
        .transpose()?;
    let console = match (&opts.console_socket, plan.terminal) {
        (Some(path), true) => Some(crate::terminal::connect_console_socket(path)?),
        (None, true) if opts.detach => {
            return Err(Error::config(
                "process.terminal",
                "a terminal needs --console-socket with --detach",
            ));
        }
        _ => None,
    };
    let subs = parse_sub_cgroups(&opts.sub_cgroups)?;
    if !opts.sub_cgroups.is_empty() && state.cgroup.is_none() {
        return Err(Error::Unsupported(
            "--cgroup: the container has no cgroup (rootless)".into(),
        ));
    }
    let joins = namespaces_to_join(state.pid)?;
    let trampoline = Trampoline::new()?;
    let (mut report_rx, report_tx) =
        std::os::unix::net::UnixStream::pair().ctx(|| "socketpair".to_string())?;
    let all = nix::sys::signal::SigSet::all();
    let mut old = nix::sys::signal::SigSet::empty();
    if !opts.detach {
        nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&all),
            Some(&mut old),
        )
        .ctx(|| "sigprocmask".to_string())?;
    }
    if let Some(ns) = &joins.pid {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWPID)
            .ctx(|| "joining the container's pid namespace".to_string())?;
    }
    // SAFETY: berth is single-threaded, so the child may keep running Rust code after fork.
    let child = match unsafe { nix::unistd::fork() }.ctx(|| "fork".to_string())? {
        nix::unistd::ForkResult::Child => {
            drop(report_rx);
            let (msg, code) = match join_cgroup(state.cgroup.as_ref(), &subs).and_then(|()| {
                child_main(
                    plan,
                    &joins.child,
                    console.as_ref(),
                    seccomp.as_ref(),
                    &trampoline,
                    opts.preserve_fds,
                    &report_tx,
                )
            }) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = (&report_tx).write_all(msg.as_bytes());
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    };
    drop(report_tx);
    if frozen && opts.detach {
        // The child freezes as it joins the paused cgroup and reports only after `resume`:
        // a detached exec returns now (its setup errors go unreported, as with runc).
        if let Some(pid_file) = &opts.pid_file {
            crate::state::write_atomic(pid_file, child.to_string().as_bytes())?;
        }
        return Ok(RunOutcome::Detached);
    }
    let mut message = String::new();
    let _ = report_rx.read_to_string(&mut message);
    if let Some(pid_file) = &opts.pid_file {
        if message.is_empty() {
            crate::state::write_atomic(pid_file, child.to_string().as_bytes())?;
        }
    }
    if opts.detach {
        if message.is_empty() {
            return Ok(RunOutcome::Detached);
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
        return Err(Error::Init(message));
    }
    let code = crate::lifecycle::wait_forwarding(child, &all);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None);
    Ok(if message.is_empty() {
        RunOutcome::Exited(code)
    } else {
        RunOutcome::StartFailed { message, code }
    })
}

enum Never {}

/// Moves the calling process (the forked child, before it joins any namespace: the host's
/// cgroup filesystems are still in view; pid 0 is the writer) into the container's cgroups,
/// so it counts against the limits and `ps`, `kill --all`, pause and the engines' stats see it.
fn join_cgroup(
    cgroup: Option<&berth_cgroups::Cgroup>,
    subs: &SubCgroups,
) -> std::result::Result<(), (String, i32)> {
    if let Some(cg) = cgroup {
        let res = if subs.0.is_none() && subs.1.is_empty() {
            cg.add_pid(0)
        } else {
            cg.add_pid_to_sub(0, subs.0.as_deref(), &subs.1)
        };
        res.map_err(|e| (format!("joining the container's cgroups: {e}"), 1))?;
    }
    Ok(())
}

fn child_main(
    mut p: ProcessPlan,
    joins: &[(CloneFlags, std::fs::File)],
    console: Option<&std::os::unix::net::UnixStream>,
    seccomp: Option<&berth_seccomp::Filter>,
    trampoline: &Trampoline,
    preserve_fds: u32,
    report: &std::os::unix::net::UnixStream,
) -> std::result::Result<Never, (String, i32)> {
    let fail = |e: Error| (e.to_string(), 1);
    // SAFETY: prctl with integer arguments (see exe_guard: no container process may open our exe).
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    for (flag, file) in joins {
        nix::sched::setns(file, *flag)
            .map_err(|e| (format!("joining the container's namespaces: {e}"), 1))?;
    }
    nix::unistd::chdir("/").map_err(|e| (format!("chdir /: {e}"), 1))?;
    let pty: Option<OwnedFd> = match console {
        Some(sock) => Some(
            crate::terminal::open_pty(sock, p.uid, p.gid, p.console_size)
                .map_err(fail)?
                .0,
        ),
        None => None,
    };
    nix::unistd::setsid().map_err(|e| (format!("setsid: {e}"), 1))?;
    if let Some(slave) = &pty {
        crate::terminal::make_controlling(slave).map_err(fail)?;
    }
    process::apply_limits(&p).map_err(fail)?;
    Err(crate::init::confine_and_exec(
        &mut p,
        (seccomp, false),
        None,
        "",
        trampoline,
        preserve_fds,
        report,
    ))
}
