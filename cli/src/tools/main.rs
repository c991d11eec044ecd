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
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "A fast, runc-compatible OCI container runtime",
    disable_version_flag = true
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
    let args: Vec<OsString> = docker_ps::rewrite(std::env::args_os().collect());
    let sealed = startup::seal_if_needed(&args);
    let cli = Cli::parse_from(&args);
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

fn run(cli: Cli) -> Result<u8> {
    if cli.version {
        runc::print_version();
        return Ok(0);
    }
    if cli.globals.systemd_cgroup {
        bail!("--systemd-cgroup: the systemd cgroup driver is not supported yet; use cgroupfs");
    }
    let Some(command) = cli.command else {
        bail!("no command given; see berth --help");
    };
    let cx = cmd::Ctx {
        engine: Engine::with_defaults(cli.globals.root.as_deref(), cli.globals.store.as_deref()),
        runtime: cli.globals.ctx(),
    };
    cmd::dispatch(&cx, command)
}
