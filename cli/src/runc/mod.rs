//! The commands engines call (runc's command line): parsed by clap, run over `berth_runtime`
//! only. Both binaries use them: the lean `berth` serves them itself, and `berth-tools`, which
//! serves everything, has them too so that a command handed over gives the same answer.

pub mod argv;
pub mod exec;
pub mod lifecycle;
pub mod update;

use std::path::PathBuf;

use anyhow::Result;
use berth_runtime::StateRoot;
use clap::Subcommand;

pub use lifecycle::{CreateArgs, CreateFlags};

/// What the runtime commands need: the state root and where logs go.
pub struct Ctx {
    /// The state root (`--root`).
    pub root: StateRoot,
    /// Whether logs go to a file (`--log`): errors are echoed to stderr too.
    pub log_to_file: bool,
}

/// The flags every command takes, as runc's global flags (plus berth's `--store`).
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalFlags {
    /// Directory for container state (default: /run/berth, or $XDG_RUNTIME_DIR/berth when not root).
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: crate::log::Format,
    /// Verbose logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported yet).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Image store directory (default: /var/lib/berth, or $XDG_DATA_HOME/berth when not
    /// root; also $BERTH_STORE).
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
}

impl GlobalFlags {
    /// The runtime context these flags name.
    pub fn ctx(&self) -> Ctx {
        Ctx {
            root: StateRoot::new(self.root.clone().unwrap_or_else(StateRoot::default_dir)),
            log_to_file: self.log.is_some(),
        }
    }
}

/// The runc commands both binaries parse the same way (`run` and `delete`, whose image forms
/// need the engine, are declared by each binary).
#[derive(Subcommand, Debug)]
pub enum RuntimeCommand {
    /// Create a container that waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container ID.
        id: String,
    },
    /// Print a container's state as JSON.
    State {
        /// Container ID.
        id: String,
    },
    /// Send a signal (default SIGTERM) to a container.
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        /// Container ID.
        id: String,
        /// Signal name or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Run a new process inside a running container.
    Exec(exec::ExecArgs),
    /// Freeze every process of a container.
    Pause {
        /// Container ID.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container ID.
        id: String,
    },
    /// Change a container's resource limits.
    Update(update::UpdateArgs),
    /// Print resource statistics and OOM events as JSON lines.
    Events {
        /// Print the statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between statistics (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: humantime::Duration,
        /// Container ID.
        id: String,
    },
    /// List the processes of a container.
    Ps {
        /// Output format: table (through the host's `ps`) or a JSON array of host pids.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Container ID.
        id: String,
        /// Options for `ps` (default `-ef`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json into the bundle.
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A config for an unprivileged user.
        #[arg(long)]
        rootless: bool,
    },
    /// Print the features this build implements (JSON).
    Features,
}

/// Runs `command`; its exit status.
pub fn dispatch(cx: &Ctx, command: RuntimeCommand) -> Result<u8> {
    let root = &cx.root;
    match command {
        RuntimeCommand::Create(a) => lifecycle::create(cx, &a)?,
        RuntimeCommand::Start { id } => berth_runtime::start(root, &id)?,
        RuntimeCommand::State { id } => lifecycle::state(cx, &id)?,
        RuntimeCommand::Kill { all, id, signal } => lifecycle::kill(cx, &id, &signal, all)?,
        RuntimeCommand::Exec(a) => return exec::exec(cx, &a),
        RuntimeCommand::List { format, quiet } => lifecycle::list(root, &format, quiet)?,
        RuntimeCommand::Ps {
            format,
            id,
            ps_args,
        } => lifecycle::ps(cx, &id, &format, &ps_args)?,
        RuntimeCommand::Pause { id } => berth_runtime::pause(root, &id)?,
        RuntimeCommand::Resume { id } => berth_runtime::resume(root, &id)?,
        RuntimeCommand::Update(a) => update::update(cx, &a)?,
        RuntimeCommand::Events {
            stats,
            interval,
            id,
        } => lifecycle::events(cx, &id, stats, *interval)?,
        RuntimeCommand::Spec { bundle, rootless } => lifecycle::spec(&bundle, rootless)?,
        RuntimeCommand::Features => lifecycle::features()?,
    }
    Ok(0)
}

/// `berth --version`.
pub fn print_version() {
    println!("berth version {}", env!("CARGO_PKG_VERSION"));
    println!("commit: {}", env!("BERTH_COMMIT"));
    println!("spec: {}", berth_runtime::SPEC_VERSION);
}
