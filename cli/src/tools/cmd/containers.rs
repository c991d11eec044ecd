//! Container commands as docker users know them, over the containers the engine ran
//! (`berth run IMAGE`): `container ls` (`ps`, docker style), `container inspect` (JSON),
//! `stop` and `rm`. runc's own commands (`list`, `ps ID`, `state`, `delete`) stay as they are.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _, Result};
use berth_engine::list::human_duration;
use berth_engine::RunContainer;
use berth_runtime::Status;
use serde_json::{json, Value};

use super::Ctx;

/// `berth container ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ContainerCommand {
    /// List containers (running ones; all with -a).
    #[command(alias = "ps", alias = "list")]
    Ls(ListArgs),
    /// Print containers' details as a JSON array.
    Inspect(InspectArgs),
    /// Stop containers: SIGTERM, then SIGKILL after the grace period.
    Stop(StopArgs),
    /// Remove containers (and their bundles).
    #[command(alias = "remove")]
    Rm(RemoveArgs),
    /// Print what a detached container wrote (its standard output and error).
    Logs(LogsArgs),
}

/// `berth logs` / `berth container logs`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Keep printing what it writes until it stops.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long)]
    tail: Option<usize>,
    /// Container name.
    container: String,
}

/// `berth container ls`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Show every container, not only running ones.
    #[arg(short, long)]
    all: bool,
    /// Print only container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not shorten the command.
    #[arg(long)]
    no_trunc: bool,
}

/// `berth container inspect` / `berth inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Container names (`berth inspect`: or images).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth stop` / `berth container stop`.
#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    /// Container names.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth rm` / `berth container rm`.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
    /// Container names.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth container ...`.
pub fn command(cx: &Ctx, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Ls(a) => list(cx, &a),
        ContainerCommand::Inspect(a) => inspect(cx, &a),
        ContainerCommand::Stop(a) => stop(cx, &a),
        ContainerCommand::Rm(a) => remove(cx, &a),
        ContainerCommand::Logs(a) => logs(cx, &a),
    }
}

/// Docker's word for a status (`None`: no runtime state left).
fn state_name(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Creating | Status::Created) => "created",
        Some(Status::Running) => "running",
        Some(Status::Paused) => "paused",
        Some(Status::Stopped) => "exited",
        None => "dead",
    }
}

/// How long ago the container was created.
fn since_created(c: &RunContainer) -> Option<Duration> {
    let created = humantime::parse_rfc3339_weak(&c.state.as_ref()?.created).ok()?;
    Some(
        SystemTime::now()
            .duration_since(created)
            .unwrap_or_default(),
    )
}

/// The STATUS column: `Up 5 minutes`, `Up 2 hours (Paused)`, `Exited`, `Created`.
fn status_column(c: &RunContainer) -> String {
    let up = since_created(c).map(human_duration).unwrap_or_default();
    match c.status() {
        Some(Status::Running) => format!("Up {up}"),
        Some(Status::Paused) => format!("Up {up} (Paused)"),
        Some(Status::Stopped) => "Exited".into(),
        Some(Status::Creating | Status::Created) => "Created".into(),
        None => "Dead".into(),
    }
}

/// The COMMAND column: quoted, shortened to 20 characters unless `full`.
fn command_column(c: &RunContainer, full: bool) -> String {
    let cmd = c.command.join(" ");
    let shown = if full || cmd.chars().count() <= 20 {
        cmd
    } else {
        let mut s: String = cmd.chars().take(19).collect();
        s.push('…');
        s
    };
    format!("\"{shown}\"")
}

/// `berth container ls` (docker's `ps`): ID, IMAGE, COMMAND, CREATED, STATUS, NAMES.
pub fn list(cx: &Ctx, a: &ListArgs) -> Result<()> {
    let shown: Vec<RunContainer> = cx
        .engine
        .containers()?
        .into_iter()
        .filter(|c| a.all || c.is_running())
        .collect();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for c in &shown {
            writeln!(out, "{}", c.id)?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 6]> = shown
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.record.image.clone(),
                command_column(c, a.no_trunc),
                since_created(c).map_or_else(String::new, |d| format!("{} ago", human_duration(d))),
                status_column(c),
                c.id.clone(),
            ]
        })
        .collect();
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 3));
            }
        }
        s
    };
    writeln!(out, "{}", line(&header))?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    Ok(())
}

/// The container `id` the engine ran, or an error that says where to look.
fn find(cx: &Ctx, id: &str) -> Result<RunContainer> {
    match cx.engine.run_container(id)? {
        Some(c) => Ok(c),
        None => bail!("no such container: {id} (berth container ls -a lists those of `berth run IMAGE`; berth list, every runtime container)"),
    }
}

/// A container as `docker inspect` shows the fields berth knows.
fn inspect_doc(c: &RunContainer) -> Value {
    let status = c.status();
    let state = c.state.as_ref();
    json!({
        "Id": c.id,
        "Name": c.id,
        "Created": state.map(|s| s.created.clone()),
        "Path": c.command.first(),
        "Args": c.command.get(1..).unwrap_or_default(),
        "State": {
            "Status": state_name(status),
            "Running": status == Some(Status::Running),
            "Paused": status == Some(Status::Paused),
            "Pid": state.map_or(0, |s| if c.is_running() { s.pid } else { 0 }),
        },
        "Image": c.record.image,
        "Config": {
            "Image": c.record.image,
            "Cmd": c.command,
            "Hostname": c.id.chars().take(63).collect::<String>(),
        },
        "BundlePath": c.bundle,
        "RootfsPath": state.map(|s| s.rootfs.clone()),
        "NetworkState": c.record.net,
    })
}

/// `berth container inspect NAME...`: a JSON array, as docker prints it.
pub fn inspect(cx: &Ctx, a: &InspectArgs) -> Result<()> {
    let docs = a
        .containers
        .iter()
        .map(|id| find(cx, id).map(|c| inspect_doc(&c)))
        .collect::<Result<Vec<_>>>()?;
    println!("{}", serde_json::to_string_pretty(&docs)?);
    Ok(())
}

/// `berth inspect NAME...`: as docker, each name a container of `run IMAGE` or else an
/// image (`image inspect`'s document); a JSON array.
pub fn inspect_any(cx: &Ctx, a: &InspectArgs) -> Result<()> {
    let mut docs = Vec::new();
    for name in &a.containers {
        if let Some(c) = cx.engine.run_container(name)? {
            docs.push(inspect_doc(&c));
            continue;
        }
        let doc = super::images::image_doc(cx, name)
            .with_context(|| format!("no such container or image: {name}"))?;
        docs.push(doc);
    }
    println!("{}", serde_json::to_string_pretty(&docs)?);
    Ok(())
}

/// `berth stop NAME...`: each name once it has stopped.
pub fn stop(cx: &Ctx, a: &StopArgs) -> Result<()> {
    for id in &a.containers {
        find(cx, id)?;
        cx.engine
            .stop(id, Duration::from_secs(a.time))
            .with_context(|| format!("stopping {id}"))?;
        println!("{id}");
    }
    Ok(())
}

/// `berth rm NAME...`: a running container only with --force, as docker.
pub fn remove(cx: &Ctx, a: &RemoveArgs) -> Result<()> {
    for id in &a.containers {
        let c = find(cx, id)?;
        if c.is_running() && !a.force {
            bail!("cannot remove container {id}: it is running; stop it first, or use --force");
        }
        cx.engine
            .delete(id, true)
            .with_context(|| format!("removing {id}"))?;
        println!("{id}");
    }
    Ok(())
}

/// How often `logs -f` looks for more output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// `berth logs [-f] [-n N] NAME`: the log of a container run detached without a terminal.
pub fn logs(cx: &Ctx, a: &LogsArgs) -> Result<()> {
    use std::io::{Read as _, Seek as _};
    let c = find(cx, &a.container)?;
    let Some(path) = cx.engine.log_path(&c.id) else {
        bail!(
            "{}: no log (only a container run with -d and without -t keeps its output)",
            c.id
        );
    };
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = Vec::new();
    f.read_to_end(&mut text)?;
    let start = match a.tail {
        Some(0) => text.len(),
        Some(n) => {
            let body = text.strip_suffix(b"\n").unwrap_or(&text);
            body.iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| **b == b'\n')
                .nth(n - 1)
                .map_or(0, |(i, _)| i + 1)
        }
        None => 0,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&text[start..])?;
    out.flush()?;
    if !a.follow {
        return Ok(());
    }
    let mut at = f.stream_position()?;
    loop {
        let running = cx
            .engine
            .run_container(&c.id)?
            .is_some_and(|c| c.is_running());
        let mut more = Vec::new();
        f.seek(std::io::SeekFrom::Start(at))?;
        at += f.read_to_end(&mut more)? as u64;
        out.write_all(&more)?;
        out.flush()?;
        if !running {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}
