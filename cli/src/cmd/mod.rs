//! The commands: one module per family, each parsing its arguments (clap), calling the engine
//! or the runtime, and printing.

pub mod build;
pub mod bundle;
pub mod exec;
pub mod images;
pub mod network;
pub mod registry;
pub mod run;
pub mod runtime;
pub mod update;

use std::path::PathBuf;

use anyhow::Result;
use berth_engine::Engine;
use clap::Subcommand;

/// What every command may need: the engine (state root and store) and where logs go.
pub struct Ctx {
    /// The engine over `--root` and `--store`.
    pub engine: Engine,
    /// Whether logs go to a file (`--log`): errors are echoed to stderr too.
    pub log_to_file: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container that waits for `start`.
    Create(runtime::CreateArgs),
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
    /// Delete a container.
    Delete {
        /// Kill a running container first; succeed if it does not exist.
        #[arg(short, long)]
        force: bool,
        /// Container ID.
        id: String,
    },
    /// Create and start a container: from a bundle (`run [-b DIR] ID`, as runc) or from an
    /// image (`run [--rm] [--name N] [-e K=V] [-w DIR] [-u USER] IMAGE [CMD...]`).
    Run(run::RunArgs),
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
    /// List images in the store.
    Images(images::ListArgs),
    /// Manage images: import, inspect, ls, rm, prune.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Remove images.
    Rmi {
        /// Image names or ID prefixes.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Make a bundle from an image: an overlay rootfs (or --flat copy) and a config.json.
    Unpack(images::UnpackArgs),
    /// Manage bundles made by unpack.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Manage networks for `run IMAGE`: ls, create, rm, prune.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Pull an image from a registry.
    Pull(registry::PullArgs),
    /// Push an image to a registry.
    Push(registry::PushArgs),
    /// Store credentials for a registry (docker's config.json).
    Login(registry::LoginArgs),
    /// Forget the credentials of a registry.
    Logout(registry::LogoutArgs),
    /// Give an image another name.
    Tag(registry::TagArgs),
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
}

/// Runs `command`; its exit status.
pub fn dispatch(cx: &Ctx, command: Command) -> Result<u8> {
    let root = cx.engine.root();
    match command {
        Command::Create(a) => runtime::create(cx, &a)?,
        Command::Start { id } => berth_runtime::start(root, &id)?,
        Command::State { id } => runtime::state(cx, &id)?,
        Command::Kill { all, id, signal } => runtime::kill(cx, &id, &signal, all)?,
        Command::Delete { force, id } => cx.engine.delete(&id, force)?,
        Command::Run(a) => return run::run(cx, &a),
        Command::Exec(a) => return exec::exec(cx, &a),
        Command::List { format, quiet } => runtime::list(root, &format, quiet)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => runtime::ps(cx, &id, &format, &ps_args)?,
        Command::Pause { id } => berth_runtime::pause(root, &id)?,
        Command::Resume { id } => berth_runtime::resume(root, &id)?,
        Command::Update(a) => update::update(cx, &a)?,
        Command::Events {
            stats,
            interval,
            id,
        } => runtime::events(cx, &id, stats, *interval)?,
        Command::Spec { bundle, rootless } => runtime::spec(&bundle, rootless)?,
        Command::Features => runtime::features()?,
        Command::Images(a) => images::list(cx, &a)?,
        Command::Image(c) => images::image_command(cx, c)?,
        Command::Rmi { images: names } => images::remove(cx, &names)?,
        Command::Unpack(a) => images::unpack(cx, &a)?,
        Command::Bundle(c) => bundle::command(cx, c)?,
        Command::Network(c) => network::command(cx, c)?,
        Command::Pull(a) => registry::pull(cx, &a)?,
        Command::Push(a) => registry::push(cx, &a)?,
        Command::Login(a) => registry::login(&a)?,
        Command::Logout(a) => registry::logout(&a)?,
        Command::Tag(a) => registry::tag(cx, &a)?,
        Command::Build(a) => build::build(cx, &a)?,
    }
    Ok(0)
}
