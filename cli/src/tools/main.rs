//! `berth-tools`: every berth command, over the berth crates: images, registries, networks,
//! builds and `run IMAGE` through `berth_engine`, and runc's commands through the library's
//! `runc` module, as the lean `berth` serves them. `berth` hands over to this binary whatever
//! it does not serve itself. Parse, call, print: the commands are in `cmd` (one module per
//! family).

mod cmd;
mod docker_ps;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{bail, Result};
use berth_cli::runc::{self, GlobalFlags};
use berth_cli::startup;
use berth_engine::Engine;
use clap::{CommandFactory as _, FromArgMatches as _, Parser};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "A fast, runc-compatible OCI container runtime",
    disable_version_flag = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalFlags,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<cmd::Command>,
}

fn main() -> ExitCode {
    startup::quiet_on_closed_stdout();
    let args: Vec<OsString> = docker_ps::rewrite(std::env::args_os().collect());
    let sealed = startup::seal_if_needed(&args);
    let cli = command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| e.exit());
    if let Err(e) = startup::init_logging(&cli.globals) {
        eprintln!("berth: {e:#}");
        return ExitCode::from(1);
    }
    let log_to_file = cli.globals.log.is_some();
    match sealed.and_then(|()| run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(startup::report(&e, log_to_file)),
    }
}

/// The command line, with the global flags (`--root`, `--log`, ...) shown in the top-level
/// help only: each subcommand's help shows its own flags.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    let globals: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().clone())
        .collect();
    hide_in_subcommands(&mut cmd, &globals);
    cmd
}

/// Hides the arguments `ids` in every subcommand of `cmd`, at every depth (in place, in the
/// same order: `mut_args`, unlike `mut_arg`, keeps a built command's argument index valid).
fn hide_in_subcommands(cmd: &mut clap::Command, ids: &[clap::Id]) {
    for sub in cmd.get_subcommands_mut() {
        let mut hidden = std::mem::take(sub).mut_args(|a| {
            if ids.contains(a.get_id()) {
                a.hide(true)
            } else {
                a
            }
        });
        hide_in_subcommands(&mut hidden, ids);
        *sub = hidden;
    }
}

fn run(cli: Cli) -> Result<u8> {
    if cli.version {
        runc::print_version();
        return Ok(0);
    }
    if cli.globals.systemd_cgroup {
        bail!("--systemd-cgroup: the systemd cgroup driver is not supported yet; use cgroupfs");
    }
    let Some(command) = cli.command else {
        // Global flags only: the help, as with no arguments at all.
        let _ = command().write_help(&mut std::io::stderr());
        return Ok(2);
    };
    let cx = cmd::Ctx {
        engine: Engine::with_defaults(cli.globals.root.as_deref(), cli.globals.store.as_deref()),
        runtime: cli.globals.ctx(),
    };
    cmd::dispatch(&cx, command)
}
