//! `berth exec`: a new process in a running container, from `--process` or from the
//! container's own process with COMMAND and the flags applied (as runc does).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use berth_runtime::StateRoot;

use super::lifecycle::outcome_code;
use super::Ctx;

/// The arguments of `exec`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExecArgs {
    /// process.json describing the process (instead of COMMAND and the flags below).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's host pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Allocate a terminal (without --console-socket, berth relays it to the caller).
    #[arg(short, long)]
    pub tty: bool,
    /// With -t, send standard input to the terminal (without -t, standard input is always
    /// the process's, as runc gives it).
    #[arg(short, long)]
    pub interactive: bool,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables (KEY=VALUE), repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// User as UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional groups, repeatable.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass N extra file descriptors (3..3+N) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Add a capability (e.g. CAP_NET_ADMIN) to the bounding, effective and permitted sets;
    /// repeatable.
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    /// Join a sub-cgroup of the container's: PATH, or CONTROLLER[,CONTROLLER]:PATH (v1);
    /// repeatable.
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Run even if the container is paused (the process starts frozen).
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// SELinux label for the process (ignored with a warning where SELinux is off).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile for the process (an error where AppArmor is off).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `berth exec`: the process's exit status (foreground), or 0 once it started (detached).
pub fn exec(cx: &Ctx, a: &ExecArgs) -> Result<u8> {
    let mut opts = exec_options(&cx.root, a)?;
    // A terminal nobody receives: berth relays it (as runc does).
    let relay = if a.tty && a.console_socket.is_none() && !a.detach {
        let relay = crate::console::ConsoleRelay::listen(a.interactive)
            .context("exec -t: listening for the terminal")?;
        opts.console_socket = Some(relay.socket().to_path_buf());
        if let Some((rows, cols)) = crate::console::window_size() {
            opts.process.set_console_size(Some(
                berth_runtime::oci::BoxBuilder::default()
                    .height(u32::from(rows))
                    .width(u32::from(cols))
                    .build()?,
            ));
        }
        Some(relay)
    } else {
        None
    };
    let outcome = berth_runtime::exec::exec(&cx.root, &opts);
    if let Some(relay) = relay {
        relay.finish();
    }
    Ok(outcome_code(cx, outcome?))
}

/// The exec process: `--process` as given, or the container's own process with COMMAND and
/// the flags applied (as runc does).
fn exec_options(root: &StateRoot, a: &ExecArgs) -> Result<berth_runtime::exec::ExecOptions> {
    use berth_runtime::oci::{Process, User};
    let mut process: Process = if let Some(path) = &a.process {
        let bytes = std::fs::read(path).with_context(|| format!("--process {}", path.display()))?;
        berth_runtime::config::parse_process(&bytes)
            .with_context(|| format!("--process {}", path.display()))?
    } else {
        if a.command.is_empty() {
            bail!("exec: give a COMMAND or --process");
        }
        let state = root.read(&a.id)?;
        let spec = berth_runtime::config::load(&state.bundle)?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(a.command.clone()));
        p.set_terminal(Some(a.tty));
        p
    };
    if a.tty {
        process.set_terminal(Some(true));
    }
    if let Some(cwd) = &a.cwd {
        process.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let env = process.env().clone().unwrap_or_default();
        process.set_env(Some(override_env(env, &a.env)));
    }
    if !a.cap.is_empty() {
        process.set_capabilities(Some(add_capabilities(
            process.capabilities().clone().unwrap_or_default(),
            &a.cap,
        )?));
    }
    if let Some(label) = &a.process_label {
        process.set_selinux_label(Some(label.clone()));
    }
    if let Some(profile) = &a.apparmor {
        process.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(user) = &a.user {
        let (uid, gid) = user
            .split_once(':')
            .map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
        let mut u: User = process.user().clone();
        u.set_uid(
            uid.parse()
                .with_context(|| format!("--user {user}: uid must be a number"))?,
        );
        if let Some(g) = gid {
            u.set_gid(
                g.parse()
                    .with_context(|| format!("--user {user}: gid must be a number"))?,
            );
        }
        process.set_user(u);
    }
    if !a.additional_gids.is_empty() {
        let mut u: User = process.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        process.set_user(u);
    }
    if a.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    Ok(berth_runtime::exec::ExecOptions {
        id: a.id.clone(),
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        sub_cgroups: a.cgroup.clone(),
    })
}

/// `env` with each `KEY=VALUE` of `overrides` replacing an entry for the same key (or added),
/// so the override is the only value the process sees.
fn override_env(mut env: Vec<String>, overrides: &[String]) -> Vec<String> {
    for kv in overrides {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    env
}

/// `exec --cap`: adds each capability to the bounding, effective and permitted sets, as runc
/// does (not inheritable or ambient).
fn add_capabilities(
    mut caps: berth_runtime::oci::LinuxCapabilities,
    names: &[String],
) -> Result<berth_runtime::oci::LinuxCapabilities> {
    use berth_runtime::oci::Capability;
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap: Capability = serde_json::from_value(serde_json::Value::String(full))
            .map_err(|_| anyhow::anyhow!("--cap {name}: unknown capability"))?;
        let add = |set: &Option<berth_runtime::oci::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
    }
    Ok(caps)
}
