//! `berth`: a runc-compatible command line over the berth crates. Parse, call, print: the
//! commands are in `cmd` (one module per family), container orchestration for images in
//! `berth_engine`, the runtime in `berth_runtime`.

mod cmd;
mod log;
mod output;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use berth_engine::Engine;
use clap::Parser;
use tracing_subscriber::prelude::*;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "A fast, runc-compatible OCI container runtime",
    disable_version_flag = true
)]
struct Cli {
    /// Directory for container state (default: /run/berth, or $XDG_RUNTIME_DIR/berth when not root).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: log::Format,
    /// Verbose logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported yet).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Image store directory (default: /var/lib/berth, or $XDG_DATA_HOME/berth when not
    /// root; also $BERTH_STORE).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<cmd::Command>,
}

/// The subcommand named in `args` (skipping the global flags and their values), found
/// without clap so that the re-exec into the read-only copy happens before any other work.
fn subcommand(args: &[std::ffi::OsString]) -> Option<&str> {
    let mut it = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        match a {
            "--root" | "--log" | "--log-format" | "--store" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => return Some(a),
        }
    }
    None
}

/// The bundle of `create` (`--bundle`/`-b`, else the current directory, if it holds a
/// config).
fn bundle_arg(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let strs: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    for (i, a) in strs.iter().enumerate() {
        if *a == "--bundle" || *a == "-b" {
            return strs.get(i + 1).map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--bundle=") {
            return Some(PathBuf::from(v));
        }
    }
    let here = PathBuf::from(".");
    here.join("config.json").exists().then_some(here)
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The processes that enter a container must not be the writable host binary: `create`,
    // `run` and `exec` go on from berth's read-only copy (see berth_runtime::sealed_exe).
    let needs_copy = match subcommand(&args) {
        Some("exec" | "run") => true,
        Some("create") => {
            !bundle_arg(&args).is_some_and(|b| berth_runtime::sealed_exe::bundle_needs_no_copy(&b))
        }
        _ => false,
    };
    let sealed = if needs_copy {
        berth_runtime::sealed_exe::reexec_sealed(&args)
            .context("running berth from its read-only copy")
    } else {
        Ok(())
    };
    let cli = Cli::parse();
    let to_file = cli.log.is_some();
    if let Err(e) = init_logging(&cli) {
        eprintln!("berth: {e:#}");
        return ExitCode::from(1);
    }
    match sealed.and_then(|()| run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = render(&e);
            tracing::error!("{msg}");
            if to_file {
                eprintln!("berth: {msg}");
            }
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, `outer: inner` (see `berth_engine::error::render`).
fn render(e: &anyhow::Error) -> String {
    berth_engine::error::render(e.as_ref())
}

fn init_logging(cli: &Cli) -> Result<()> {
    let out: Box<dyn Write + Send> = match &cli.log {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--log {}", path.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::registry()
        .with(log::LogLayer::new(out, cli.log_format, level))
        .init();
    Ok(())
}

fn run(cli: Cli) -> Result<u8> {
    if cli.version {
        println!("berth version {}", env!("CARGO_PKG_VERSION"));
        println!("commit: {}", env!("BERTH_COMMIT"));
        println!("spec: {}", berth_runtime::SPEC_VERSION);
        return Ok(0);
    }
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: the systemd cgroup driver is not supported yet; use cgroupfs");
    }
    let Some(command) = cli.command else {
        bail!("no command given; see berth --help");
    };
    let cx = cmd::Ctx {
        engine: Engine::with_defaults(cli.root.as_deref(), cli.store.as_deref()),
        log_to_file: cli.log.is_some(),
    };
    cmd::dispatch(&cx, command)
}
