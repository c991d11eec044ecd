//! What both binaries do before a command runs: the re-exec into berth's read-only view where
//! a command's processes enter a container, logging, and the error line.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::runc::GlobalFlags;

/// The subcommand named in `args` (skipping the global flags and their values), found
/// without clap so that the re-exec into the read-only copy happens before any other work.
pub fn subcommand(args: &[OsString]) -> Option<&str> {
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

/// The bundle of `create` or `run` (`--bundle`/`-b`, else the current directory, if it holds
/// a config).
fn bundle_arg(args: &[OsString]) -> Option<PathBuf> {
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

/// [`seal_for`] the command and bundle `args` name, read without clap (`berth-tools` seals
/// before it parses).
pub fn seal_if_needed(args: &[OsString]) -> Result<()> {
    seal_for(args, subcommand(args), bundle_arg(args).as_deref())
}

/// The processes that enter a container must not be the writable host binary: `create`,
/// `run` and `exec` go on from berth's read-only view (see `berth_runtime::sealed_exe`),
/// re-executing with `args`, unless the container of `bundle` keeps its processes away from
/// berth's by its own namespaces. Returns the error to report once logging is up.
pub fn seal_for(args: &[OsString], command: Option<&str>, bundle: Option<&Path>) -> Result<()> {
    let needs_copy = match command {
        Some("exec") => true,
        Some("create" | "run") => {
            !bundle.is_some_and(berth_runtime::sealed_exe::bundle_needs_no_copy)
        }
        _ => false,
    };
    if needs_copy {
        berth_runtime::sealed_exe::reexec_sealed(args)
            .context("running berth from its read-only copy")?;
    }
    Ok(())
}

/// Sends tracing events to `--log` (or stderr) in `--log-format`, at debug level with
/// `--debug`.
pub fn init_logging(flags: &GlobalFlags) -> Result<()> {
    let out: Box<dyn Write + Send> = match &flags.log {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--log {}", path.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let level = if flags.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    tracing::subscriber::set_global_default(crate::log::LogLayer::new(
        out,
        flags.log_format,
        level,
    ))
    .context("installing the logger")?;
    Ok(())
}

/// Makes a closed standard output (`berth list | head -1`) end the command quietly, with
/// status 0, as a reader that has read enough wants: `println!`'s panic on `EPIPE` exits
/// instead (see also [`report`]).
pub fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && stdout_closed() {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether standard output is a pipe or socket nobody reads any more (`poll` says `POLLERR`
/// for a pipe without readers).
fn stdout_closed() -> bool {
    let mut fds = [libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    }];
    // SAFETY: poll on an array of one live pollfd, without waiting.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    rc > 0 && fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Whether `e` is a write to a standard output whose reader has gone.
fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) && stdout_closed()
}

/// Logs a failed command's error (and echoes it to stderr when logs go to a file); the exit
/// status for it. A write to a standard output nobody reads any more is no failure: 0,
/// quietly.
pub fn report(e: &anyhow::Error, log_to_file: bool) -> u8 {
    if is_closed_stdout(e) {
        return 0;
    }
    let msg = berth_runtime::error::render(e.as_ref());
    tracing::error!("{msg}");
    if log_to_file {
        eprintln!("berth: {msg}");
    }
    1
}
