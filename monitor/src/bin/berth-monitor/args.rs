//! The command line (see [`berth_monitor::invocation`]), parsed into an [`Invocation`] whose
//! paths are absolute: the monitor changes to `/` when it detaches.

use std::path::{Path, PathBuf};

use berth_monitor::{Invocation, Mode};
use clap::{Parser, Subcommand};

/// berth's per-container monitor: runs the runtime's create or exec, holds the process's
/// stdio, logs and serves its output, records its exit.
#[derive(Parser, Debug)]
#[command(name = "berth-monitor", version)]
struct Cli {
    /// The `berth` runtime binary.
    #[arg(long)]
    runtime: PathBuf,
    /// The runtime's --root.
    #[arg(long = "runtime-root")]
    runtime_root: PathBuf,
    /// The container ID.
    #[arg(long)]
    id: String,
    /// The monitor's directory (pid file, sockets, exit record).
    #[arg(long)]
    dir: PathBuf,
    /// The process has a terminal (received over DIR/console.sock).
    #[arg(long)]
    tty: bool,
    /// Attach clients' input goes to the process's stdin.
    #[arg(long)]
    stdin: bool,
    /// Close the process's stdin when an attach client closes its input.
    #[arg(long = "stdin-once")]
    stdin_once: bool,
    /// Append the output to FILE in docker's json-file format.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Hold the output until the first attach client connects.
    #[arg(long = "hold-output")]
    hold_output: bool,
    /// Rotate the log once it would pass BYTES.
    #[arg(long = "log-max-size")]
    log_max_size: Option<u64>,
    /// How many log files rotation keeps.
    #[arg(long = "log-max-files", default_value_t = 1)]
    log_max_files: u32,
    #[command(subcommand)]
    mode: ModeArg,
}

#[derive(Subcommand, Debug)]
enum ModeArg {
    /// `berth create` a container (berthd starts it).
    Create {
        /// The bundle directory.
        #[arg(long)]
        bundle: PathBuf,
    },
    /// `berth exec --detach` a process in a running container.
    Exec {
        /// The OCI process JSON.
        #[arg(long)]
        process: PathBuf,
    },
}

/// Parses `args` (program name first).
pub fn parse<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let invalid = |msg: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, msg);
    if cli.id.is_empty() || cli.id.starts_with('-') || cli.id.contains('/') {
        return Err(invalid(format!("--id {:?}: not a container ID", cli.id)));
    }
    let abs =
        |p: &Path| std::path::absolute(p).map_err(|e| invalid(format!("{}: {e}", p.display())));
    // A bare program name is looked up in PATH; anything with a slash is a path.
    let runtime = if cli.runtime.components().count() > 1 {
        abs(&cli.runtime)?
    } else {
        cli.runtime
    };
    let mode = match cli.mode {
        ModeArg::Create { bundle } => Mode::Create {
            bundle: abs(&bundle)?,
        },
        ModeArg::Exec { process } => Mode::Exec {
            process: abs(&process)?,
        },
    };
    Ok(Invocation {
        runtime,
        runtime_root: abs(&cli.runtime_root)?,
        id: cli.id,
        dir: abs(&cli.dir)?,
        tty: cli.tty,
        stdin: cli.stdin,
        stdin_once: cli.stdin_once,
        log: cli.log.as_deref().map(abs).transpose()?,
        hold_output: cli.hold_output,
        log_max_size: cli.log_max_size,
        log_max_files: cli.log_max_files,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mode: Mode) -> Invocation {
        Invocation {
            runtime: "/usr/bin/berth".into(),
            runtime_root: "/run/berth".into(),
            id: "web".into(),
            dir: "/run/berthd/web".into(),
            tty: true,
            stdin: true,
            stdin_once: false,
            log: Some("/var/lib/berthd/web/log.json".into()),
            hold_output: false,
            log_max_size: None,
            log_max_files: 1,
            mode,
        }
    }

    #[test]
    fn round_trips_the_library_command_line() {
        for inv in [
            sample(Mode::Create {
                bundle: "/b".into(),
            }),
            Invocation {
                tty: false,
                stdin_once: true,
                log: None,
                hold_output: false,
                log_max_size: None,
                log_max_files: 1,
                ..sample(Mode::Exec {
                    process: "/p.json".into(),
                })
            },
        ] {
            let mut args = vec![std::ffi::OsString::from("berth-monitor")];
            args.extend(inv.to_args());
            assert_eq!(parse(args).unwrap(), inv);
        }
    }

    #[test]
    fn relative_paths_become_absolute_and_bad_ids_are_refused() {
        let inv = parse([
            "m",
            "--runtime",
            "berth",
            "--runtime-root",
            "r",
            "--id",
            "x",
            "--dir",
            "d",
            "create",
            "--bundle",
            "b",
        ])
        .unwrap();
        assert_eq!(inv.runtime, PathBuf::from("berth"));
        assert!(inv.dir.is_absolute() && inv.runtime_root.is_absolute());
        for id in ["", "-x", "a/b"] {
            assert!(parse([
                "m",
                "--runtime",
                "berth",
                "--runtime-root",
                "r",
                "--id",
                id,
                "--dir",
                "d",
                "create",
                "--bundle",
                "b",
            ])
            .is_err());
        }
        assert!(parse(["m", "--runtime", "berth"]).is_err());
    }
}
