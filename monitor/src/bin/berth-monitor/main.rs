//! `berth-monitor`: the per-container monitor (see the `berth_monitor` library for what it
//! does and the protocol). The life of one monitor:
//!
//! 1. [`detach`]: only stdio kept of what berthd passed; fork (berthd reaps the intermediate
//!    at once), `setsid`, child subreaper; signals through a signalfd.
//! 2. [`startup`]: the container's stdio ([`stdio`], [`console`]), the runtime's `create` or
//!    `exec --detach` ([`runtime`]), then the ready line on stdout, which is then closed.
//! 3. [`event_loop`]: output to the log ([`log_writer`]) and attach clients ([`attach`]),
//!    input to stdin ([`stdin`]), control requests ([`control_socket`]), reaping
//!    ([`reaper`]), until the process has exited and its output is drained.
//! 4. `delete --force` (create mode), the exit record ([`finish`]), clients closed, sockets
//!    removed, exit 0.

mod args;
mod attach;
mod console;
mod control_socket;
mod detach;
mod event_loop;
mod fdio;
mod finish;
mod log_writer;
mod reaper;
mod runtime;
mod sockets;
mod startup;
mod stdin;
mod stdio;
mod terminal;

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use berth_monitor::{
    Invocation, Mode, Ready, ATTACH_SOCKET, CONTROL_SOCKET, EXIT_FILE, INIT_PID_FILE,
};

use crate::attach::Attach;
use crate::control_socket::Control;
use crate::event_loop::Monitor;
use crate::log_writer::LogWriter;
use crate::reaper::Reaped;
use crate::stdin::StdinSink;

/// How long attach clients get to take the last output after the exit record is written.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    // First, before anything opens a descriptor: nothing of berthd's stays open.
    if let Err(e) = detach::close_inherited_fds() {
        return report(&Ready::failed(&format!(
            "closing inherited descriptors: {e}"
        )));
    }
    let inv = match args::parse(std::env::args_os()) {
        Ok(inv) => inv,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let _ = e.print();
            report(&Ready::failed(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    run(&inv)
}

/// Writes the ready line on stdout (berthd's pipe) and closes it; a failure exits 1.
fn report(ready: &Ready) -> ExitCode {
    let mut out = std::io::stdout().lock();
    // berthd may be gone: nobody to tell then, and the container is watched all the same.
    let _ = out.write_all(ready.to_line().as_bytes());
    let _ = out.flush();
    drop(out);
    if let Err(e) = detach::null_over_stdout() {
        eprintln!("berth-monitor: closing stdout: {e}");
    }
    match ready {
        Ready::Running { .. } => ExitCode::SUCCESS,
        Ready::Failed { error } => {
            eprintln!("berth-monitor: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Makes DIR (0700) and removes what a previous monitor of it left.
fn prepare_dir(inv: &Invocation) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&inv.dir)
        .with_context(|| format!("creating {}", inv.dir.display()))?;
    for name in [EXIT_FILE, INIT_PID_FILE] {
        let path = inv.dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    sockets::remove_all(&inv.dir);
    Ok(())
}

fn run(inv: &Invocation) -> ExitCode {
    if let Err(e) = prepare_dir(inv) {
        return report(&Ready::failed(&format!("{e:#}")));
    }
    if let Err(e) = detach::detach() {
        return report(&Ready::failed(&format!("detaching: {e}")));
    }
    // A container of that ID that exists already is not ours to delete when create fails.
    let ours_to_delete = match &inv.mode {
        Mode::Create { .. } => !inv.runtime_root.join(&inv.id).exists(),
        Mode::Exec { .. } => false,
    };
    let setup = (|| -> anyhow::Result<_> {
        let signals = detach::signals().context("signals")?;
        let attach = Attach::new(sockets::listen(&inv.dir.join(ATTACH_SOCKET))?);
        let control = Control::new(sockets::listen(&inv.dir.join(CONTROL_SOCKET))?);
        let log = inv
            .log
            .as_deref()
            .map(|p| {
                LogWriter::open(p).map(|w| w.with_rotation(inv.log_max_size, inv.log_max_files))
            })
            .transpose()?;
        Ok((signals, attach, control, log))
    })();
    let (signals, attach, control, log) = match setup {
        Ok(s) => s,
        Err(e) => {
            sockets::remove_all(&inv.dir);
            return report(&Ready::failed(&format!("{e:#}")));
        }
    };
    let mut reaped = Reaped::default();
    let started = match startup::start(inv, &signals, &mut reaped) {
        Ok(s) => s,
        Err(failure) => {
            if ours_to_delete {
                runtime::delete_force(inv);
            }
            reaped.reap_all();
            sockets::remove_all(&inv.dir);
            return report(&Ready::failed(&failure.message));
        }
    };
    report(&Ready::Running {
        monitor_pid: std::process::id() as i32,
        pid: started.pid,
    });
    let mut monitor = Monitor {
        signals,
        reaped,
        pid: started.pid,
        exited: None,
        outputs: started.io.outputs,
        stdin: StdinSink::new(started.io.stdin, inv.tty),
        stdin_once: inv.stdin_once,
        pty: started.io.pty,
        attach,
        control,
        log,
        buf: Vec::new(),
        held: None,
    };
    // Clients that connected while the runtime ran get its early output too; with
    // --hold-output, the first client to connect does.
    monitor.attach.accept_all();
    if inv.hold_output && monitor.attach.clients.is_empty() {
        monitor.held = Some(started.early);
    } else {
        for (stream, data) in &started.early {
            monitor.forward(*stream, data);
        }
    }
    let (status, finished) = monitor.run();
    eprintln!("berth-monitor: {} {status}", inv.id);
    monitor.flush_out(Duration::ZERO);
    if let Mode::Create { .. } = inv.mode {
        runtime::delete_force(inv);
    }
    if let Err(e) = finish::write_exit_record(&inv.dir, status, started.at, finished) {
        eprintln!(
            "berth-monitor: writing {}: {e}",
            inv.dir.join(EXIT_FILE).display()
        );
    }
    monitor.flush_out(FINAL_FLUSH);
    drop(monitor);
    sockets::remove_all(&inv.dir);
    ExitCode::SUCCESS
}
