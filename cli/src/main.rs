//! `berth`: the runc-compatible runtime that engines call, lean (see the library's doc). It
//! serves runc's commands itself and hands every other command (and anything it cannot parse,
//! help included) to `berth-tools`, which answers exactly as before.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use berth_cli::runc::argv::{self, LeanCommand};
use berth_cli::runc::{self, RuntimeCommand};
use berth_cli::{handover, startup};

fn main() -> ExitCode {
    startup::quiet_on_closed_stdout();
    let args: Vec<OsString> = std::env::args_os().collect();
    let strings: Option<Vec<String>> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str().map(String::from))
        .collect();
    // Not one of runc's commands as this binary reads them (an image command, `run IMAGE`,
    // help, a mistake): berth-tools parses it again and answers.
    let Some((globals, command)) = strings.as_deref().and_then(argv::parse) else {
        return hand_over(args);
    };
    let cx = globals.ctx();
    match &command {
        LeanCommand::Version => {
            runc::print_version();
            return ExitCode::SUCCESS;
        }
        LeanCommand::Run { bundle: None, .. } if !Path::new("config.json").exists() => {
            return hand_over(args)
        }
        LeanCommand::Delete { id, force } if !runtime_only(&cx, &globals, id, *force) => {
            return hand_over(args)
        }
        _ => {}
    }
    let (name, bundle) = match &command {
        LeanCommand::Runtime(RuntimeCommand::Create(a)) => {
            (Some("create"), Some(a.bundle.as_path()))
        }
        LeanCommand::Run { bundle, .. } => (
            Some("run"),
            Some(bundle.as_deref().unwrap_or(Path::new("."))),
        ),
        LeanCommand::Runtime(RuntimeCommand::Exec(_)) => (Some("exec"), None),
        _ => (None, None),
    };
    let sealed = startup::seal_for(&args, name, bundle);
    if let Err(e) = startup::init_logging(&globals) {
        eprintln!("berth: {e:#}");
        return ExitCode::from(1);
    }
    if globals.systemd_cgroup {
        let e = anyhow::anyhow!(
            "--systemd-cgroup: the systemd cgroup driver is not supported yet; use cgroupfs"
        );
        return ExitCode::from(startup::report(&e, cx.log_to_file));
    }
    let result = sealed.and_then(|()| match command {
        LeanCommand::Version => Ok(0),
        LeanCommand::Runtime(c) => runc::dispatch(&cx, c),
        LeanCommand::Run {
            bundle,
            flags,
            detach,
            id,
        } => {
            let bundle = bundle.unwrap_or_else(|| ".".into());
            runc::lifecycle::run_bundle(&cx, &flags, &id, bundle, detach)
        }
        LeanCommand::Delete { force, id } => berth_runtime::delete(&cx.root, &id, force)
            .map(|()| 0)
            .map_err(Into::into),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(startup::report(&e, cx.log_to_file)),
    }
}

/// Whether `delete ID` is the runtime's alone. It is not for a container the engine made (its
/// bundle has a run record: the engine undoes its image bundle and network), nor for a
/// `--force` of a container that is gone but may have left the engine something to reclaim
/// (its bundle directory, or a hold in the store). A container that is gone, without
/// `--force`, is the runtime's error to report.
fn runtime_only(cx: &runc::Ctx, globals: &runc::GlobalFlags, id: &str, force: bool) -> bool {
    use berth_engine::{names, roots};
    match cx.root.read(id) {
        Ok(s) => !s.bundle.join(berth_engine::record::FILE).exists(),
        Err(_) if !force => true,
        Err(_) => {
            let store = roots::store_root(globals.store.as_deref());
            let holder = format!("\"{}\"", names::holder(id));
            !names::bundle_dir(&store, id).exists()
                && std::fs::read_to_string(store.join("state.json"))
                    .map_or(true, |state| !state.contains(&holder))
        }
    }
}

/// Hands the command to `berth-tools` (which answers everything, errors and help included).
fn hand_over(args: Vec<OsString>) -> ExitCode {
    let e = handover::exec_tools(args);
    eprintln!(
        "berth: this command needs {} ({e}); install it beside berth or set BERTH_TOOLS",
        handover::tools_path().display()
    );
    ExitCode::from(127)
}
