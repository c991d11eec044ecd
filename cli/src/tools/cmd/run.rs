//! `berth run`: runc's form over a bundle (`run [--bundle DIR] ID`), through the runtime, or
//! an image (`run IMAGE [CMD...]`), through the engine.

use std::path::PathBuf;

use std::os::fd::AsRawFd as _;

use anyhow::{anyhow, bail, Context as _, Result};
use berth_cli::console::{self, ConsoleRelay};
use berth_engine::network::parse_publish;
use berth_engine::{HostOptions, NetworkChoice, NetworkMode, ProcessOverrides, RunRequest};
use berth_runtime::RunOutcome;

use super::images::ImageProcessArgs;
use super::registry;
use super::run_host::HostArgs;
use super::Ctx;
use berth_cli::runc::CreateFlags;

/// `run`: a bundle (runc's form: `run [--bundle DIR] ID`) or an image (`run IMAGE [CMD...]`).
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Bundle directory (runc's form; default: the current directory when it holds a
    /// config.json and no image flag is given).
    #[arg(short, long)]
    bundle: Option<PathBuf>,
    #[command(flatten)]
    flags: CreateFlags,
    /// Return once the container has started.
    #[arg(short, long)]
    detach: bool,
    /// Image form: delete the container and its bundle when it exits.
    #[arg(long)]
    rm: bool,
    /// Image form: the container's name (default: berth-<12 hex>).
    #[arg(long)]
    name: Option<String>,
    /// Image form: give the process a terminal of its own (a pty, relayed to the caller
    /// unless --console-socket is given).
    #[arg(short = 't', long)]
    tty: bool,
    /// Image form: keep standard input open for the process (without it, the process reads
    /// /dev/null); with -t, the caller's terminal is put in raw mode.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Image form: `bridge` (the default network; default for root), `none` (default for
    /// other users), `host` or a network's name.
    #[arg(long)]
    network: Option<String>,
    /// Image form: publish a port, [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]; repeatable.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Image form: pull the image from its registry first: when it is not in the store
    /// (`missing`), every time (`always`), or never.
    #[arg(long, value_enum, default_value = "missing")]
    pull: PullPolicy,
    #[command(flatten)]
    image: ImageProcessArgs,
    #[command(flatten)]
    host: HostArgs,
    /// Container ID (bundle form) or image name / ID prefix (image form).
    target: String,
    /// Image form: command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `run --pull`: when the image comes from its registry, as docker's.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// When the store has no image of that name.
    Missing,
    /// Before every run.
    Always,
    /// Never: the image must be in the store.
    Never,
}

impl RunArgs {
    /// The image form unless a bundle is named, or the current directory is a bundle and
    /// nothing but runc's flags was given.
    fn is_image_form(&self) -> bool {
        self.bundle.is_none()
            && (self.rm
                || self.name.is_some()
                || self.tty
                || self.interactive
                || self.network.is_some()
                || !self.publish.is_empty()
                || self.image.any()
                || self.host.any()
                || !self.command.is_empty()
                || !std::path::Path::new("config.json").exists())
    }
}

/// `berth run`: the container's exit status (foreground), or 0 once it started (detached).
pub fn run(cx: &Ctx, a: &RunArgs) -> Result<u8> {
    if a.is_image_form() {
        return run_image(cx, a);
    }
    if !a.command.is_empty() {
        bail!("run: a COMMAND after the container ID is only for `run IMAGE [CMD...]`; the bundle's config.json says what runs");
    }
    let bundle = a.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    berth_cli::runc::lifecycle::run_bundle(&cx.runtime, &a.flags, &a.target, bundle, a.detach)
}

/// `berth run IMAGE [CMD...]`: a bundle under `<store>/bundles/<name>`, then create + start.
/// The bundle goes with the container: at exit with `--rm`, else at `berth delete`.
fn run_image(cx: &Ctx, a: &RunArgs) -> Result<u8> {
    let image = image_to_run(cx, a)?;
    let relay = if a.tty && a.flags.console_socket.is_none() && !a.detach {
        Some(ConsoleRelay::listen(a.interactive).context("-t: listening for the terminal")?)
    } else {
        None
    };
    if !a.interactive && relay.is_none() {
        stdin_from_null()?;
    }
    let host = HostOptions {
        console_size: relay
            .as_ref()
            .and_then(|_| console::window_size())
            .map(|(rows, cols)| (u32::from(rows), u32::from(cols))),
        ..a.host.options(cx)?
    };
    let mut env = a.host.env_file_entries()?;
    env.extend(a.image.env.iter().cloned());
    let req = RunRequest {
        image,
        name: a.name.clone(),
        hostname: a.host.hostname.clone(),
        process: ProcessOverrides {
            env: with_caller_values(&env, |k| std::env::var(k).ok()),
            ..a.image.overrides(&a.command)
        },
        flat: a.image.flat,
        remove: a.rm,
        detach: a.detach,
        tty: a.tty,
        pid_file: a.flags.pid_file.clone(),
        console_socket: relay
            .as_ref()
            .map(|r| r.socket().to_path_buf())
            .or_else(|| a.flags.console_socket.clone()),
        network: NetworkChoice {
            mode: a
                .network
                .as_deref()
                .map_or_else(NetworkMode::default_for_caller, NetworkMode::parse),
            publish: parse_publish(&a.publish).map_err(in_flags)?,
        },
        host,
    };
    let run = cx.engine.run_image(&req).map_err(in_flags);
    if let Some(relay) = relay {
        relay.finish();
    }
    let run = run?;
    match run.outcome {
        RunOutcome::Detached => {
            println!("{}", run.id);
            Ok(0)
        }
        RunOutcome::Exited(code) => {
            if !a.rm && a.name.is_none() {
                let id = &run.id;
                eprintln!("berth: container {id} has exited; `berth delete {id}` removes it");
            }
            Ok(u8::try_from(code).unwrap_or(255))
        }
        RunOutcome::StartFailed { message, code } => {
            // The engine removed the container, its bundle and its network.
            tracing::error!("{message}");
            Ok(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// `-e` as docker takes it: `KEY=VALUE` as given; a bare `KEY` takes the caller's value
/// (`lookup`), and is left out when the caller has none.
fn with_caller_values(env: &[String], lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    env.iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                lookup(e).map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// The image `run` names, pulled first as `--pull` says: the name it has in the store.
fn image_to_run(cx: &Ctx, a: &RunArgs) -> Result<String> {
    let missing = match a.pull {
        PullPolicy::Never => return Ok(a.target.clone()),
        PullPolicy::Always => None,
        PullPolicy::Missing => {
            let store = cx.engine.open_store()?;
            match berth_engine::find_image(&store, &a.target) {
                Ok(_) => return Ok(a.target.clone()),
                Err(e @ berth_engine::Error::ImageNotFound { .. }) => {
                    eprintln!(
                        "berth: image {:?} is not in the store; pulling it",
                        a.target
                    );
                    Some(e)
                }
                Err(e) => return Err(in_flags(e)),
            }
        }
    };
    let report = registry::pull_image(
        cx,
        &a.target,
        None,
        registry::DEFAULT_PARALLEL,
        false,
        &registry::ConnectArgs::default(),
    );
    match (report, missing) {
        (Ok(report), _) => Ok(report.record.name),
        (Err(e), Some(missing)) => Err(e.context(missing.to_string())),
        (Err(e), None) => Err(e),
    }
}

/// Without `-i`, the container reads /dev/null, as docker's does: it inherits this
/// process's standard input, which becomes /dev/null.
fn stdin_from_null() -> Result<()> {
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0).context("making /dev/null standard input")?;
    Ok(())
}

/// The engine's errors about the request, in terms of this command's flags.
fn in_flags(e: berth_engine::Error) -> anyhow::Error {
    use berth_engine::Error as E;
    match e {
        E::Name { name, reason } => anyhow!("--name {name:?}: {reason}"),
        E::Publish { spec, source } => anyhow::Error::new(source).context(format!("-p {spec}")),
        E::PublishNeedsBridge { mode } => anyhow!(
            "-p: ports are published only on a bridge network, not with --network {mode}"
        ),
        E::RemoveDetached => anyhow!("--rm with --detach: nothing would wait to remove the container; use `berth delete` (it removes the bundle too)"),
        e @ (E::ImageNotFound { .. } | E::AmbiguousImage { .. }) => {
            anyhow!("{e}; for runc's `run ID` form, give --bundle or run where config.json is")
        }
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_env_names_take_the_callers_value_or_go() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let env = ["A=1", "HOME", "UNSET", "B="].map(String::from);
        assert_eq!(
            with_caller_values(&env, lookup),
            ["A=1", "HOME=/root", "B="]
        );
    }
}
