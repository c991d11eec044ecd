//! The runc commands over `berth_runtime`: `create`, `run` (runc's bundle form), `state`,
//! `kill`, `delete`, `events`, `ps`, `list`, `spec` and `features` (`exec` and `update` have
//! modules of their own).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use berth_runtime::{CreateOptions, RunOutcome, StateRoot};

use super::Ctx;

/// runc's flags of `create` and `run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CreateFlags {
    /// File to write the container init's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a session keyring for the container.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

impl CreateFlags {
    /// The runtime's options for container `id` of `bundle`.
    pub fn options(&self, id: &str, bundle: PathBuf) -> CreateOptions {
        CreateOptions {
            id: id.to_string(),
            bundle,
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            foreground: false,
        }
    }
}

/// The arguments of `create`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CreateArgs {
    /// Bundle directory (default: the current directory).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// runc's flags of `create`.
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Container ID.
    pub id: String,
}

/// `berth create`.
pub fn create(cx: &Ctx, a: &CreateArgs) -> Result<()> {
    berth_runtime::create(&cx.root, &a.flags.options(&a.id, a.bundle.clone()), false)?;
    Ok(())
}

/// `berth run [--bundle DIR] ID` (runc's form): the container's exit status (foreground), or 0
/// once it started (detached).
pub fn run_bundle(
    cx: &Ctx,
    flags: &CreateFlags,
    id: &str,
    bundle: PathBuf,
    detach: bool,
) -> Result<u8> {
    let outcome = berth_runtime::run(&cx.root, &flags.options(id, bundle), detach)?;
    Ok(outcome_code(cx, outcome))
}

/// `berth state ID`: the runtime-spec state as JSON.
pub fn state(cx: &Ctx, id: &str) -> Result<()> {
    let state = cx.root.read(id)?;
    println!("{}", serde_json::to_string_pretty(&state.spec_state())?);
    Ok(())
}

/// `berth kill [--all] ID [SIGNAL]`.
pub fn kill(cx: &Ctx, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = berth_runtime::signal::parse(signal)?;
    berth_runtime::kill(&cx.root, id, sig, all)?;
    Ok(())
}

/// The exit status of a foreground `run` or `exec` (0 when detached); a start failure is
/// logged (and echoed to stderr when logging goes to a file).
pub fn outcome_code(cx: &Ctx, outcome: RunOutcome) -> u8 {
    match outcome {
        RunOutcome::Detached => 0,
        RunOutcome::Exited(code) => u8::try_from(code).unwrap_or(255),
        RunOutcome::StartFailed { message, code } => {
            tracing::error!("{message}");
            if cx.log_to_file {
                eprintln!("berth: {message}");
            }
            u8::try_from(code).unwrap_or(1)
        }
    }
}

/// runc's `events`: statistics once with `--stats`; otherwise a stats line every interval and
/// an `oom` line for each new OOM kill, until the container stops.
pub fn events(cx: &Ctx, id: &str, once: bool, interval: std::time::Duration) -> Result<()> {
    let root = &cx.root;
    if once {
        println!("{}", berth_runtime::stats(root, id)?);
        return Ok(());
    }
    let mut ooms = berth_runtime::oom_kills(root, id)?;
    loop {
        match berth_runtime::stats(root, id) {
            Ok(line) => println!("{line}"),
            Err(berth_runtime::Error::NotRunning | berth_runtime::Error::NotFound(_)) => {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        }
        let now = berth_runtime::oom_kills(root, id).unwrap_or(ooms);
        for _ in ooms..now {
            println!("{}", serde_json::json!({"type": "oom", "id": id}));
        }
        ooms = now;
        std::thread::sleep(interval);
    }
}

/// runc's `ps`: JSON pids, or the host's `ps` output filtered to the container's processes.
pub fn ps(cx: &Ctx, id: &str, format: &str, args: &[String]) -> Result<()> {
    let state = cx.root.read(id)?;
    let pids = berth_runtime::lifecycle::processes(&state);
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<&str> = if args.is_empty() {
        vec!["-ef"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .with_context(|| format!("ps {}: no PID column", args.join(" ")))?;
    println!("{header}");
    for line in lines {
        if line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            println!("{line}");
        }
    }
    Ok(())
}

/// `berth list`.
pub fn list(root: &StateRoot, format: &str, quiet: bool) -> Result<()> {
    let mut states = Vec::new();
    for id in root.list()? {
        if let Ok(s) = root.read(&id) {
            states.push(s);
        }
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in &states {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    if format == "json" {
        let docs: Vec<_> = states
            .iter()
            .map(berth_runtime::ContainerState::spec_state)
            .collect();
        writeln!(out, "{}", serde_json::to_string(&docs)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    )?;
    for s in &states {
        let st = s.spec_state();
        writeln!(
            out,
            "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
            st.id,
            st.pid,
            st.status.to_string(),
            st.bundle.display().to_string(),
            st.created,
            if st.owner.is_empty() {
                "root"
            } else {
                st.owner
            }
        )?;
    }
    Ok(())
}

/// `berth spec`: a default config.json in the bundle (never over an existing one).
pub fn spec(bundle: &std::path::Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    let doc = berth_runtime::spec_template::default_config(
        rootless,
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `berth features`.
pub fn features() -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&berth_runtime::features::document())?
    );
    Ok(())
}
