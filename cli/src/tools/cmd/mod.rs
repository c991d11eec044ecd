//! The commands: one module per family, each parsing its arguments (clap), calling the engine
//! or the runtime, and printing. runc's commands come from the library's `runc` module.

pub mod build;
pub mod bundle;
pub mod containers;
pub mod docs;
pub mod images;
pub mod network;
pub mod registry;
pub mod run;
pub mod run_host;

use anyhow::Result;
use berth_cli::runc::{self, RuntimeCommand};
use berth_engine::Engine;
use clap::Subcommand;

/// What every command may need: the engine (state root and store), and the runtime's
/// context (the same root, and where logs go).
pub struct Ctx {
    /// The engine over `--root` and `--store`.
    pub engine: Engine,
    /// The runtime commands' context.
    pub runtime: runc::Ctx,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Runtime(RuntimeCommand),
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
    /// List images in the store.
    Images(images::ListArgs),
    /// Manage images: import, inspect, ls, rm, prune.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Remove images.
    Rmi(images::RemoveArgs),
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
    /// Manage the containers of `run IMAGE`: ls (ps), inspect, stop, rm.
    #[command(subcommand)]
    Container(containers::ContainerCommand),
    /// Stop containers of `run IMAGE`: SIGTERM, then SIGKILL after a grace period.
    Stop(containers::StopArgs),
    /// Remove containers of `run IMAGE` (and their bundles).
    Rm(containers::RemoveArgs),
    /// Print details of containers of `run IMAGE` (or of images) as a JSON array.
    Inspect(containers::InspectArgs),
    /// Print what a container of `run -d IMAGE` wrote.
    Logs(containers::LogsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(docs::CompletionArgs),
    /// Print the man page, or write every page into a directory.
    Man(docs::ManArgs),
}

/// Runs `command`; its exit status.
pub fn dispatch(cx: &Ctx, command: Command) -> Result<u8> {
    match command {
        Command::Runtime(c) => return runc::dispatch(&cx.runtime, c),
        Command::Delete { force, id } => cx.engine.delete(&id, force)?,
        Command::Run(a) => return run::run(cx, &a),
        Command::Images(a) => images::list(cx, &a)?,
        Command::Rmi(a) | Command::Image(images::ImageCommand::Rm(a)) => {
            return images::remove(cx, &a)
        }
        Command::Image(c) => images::image_command(cx, c)?,
        Command::Unpack(a) => images::unpack(cx, &a)?,
        Command::Bundle(c) => bundle::command(cx, c)?,
        Command::Network(c) => network::command(cx, c)?,
        Command::Pull(a) => registry::pull(cx, &a)?,
        Command::Push(a) => registry::push(cx, &a)?,
        Command::Login(a) => registry::login(&a)?,
        Command::Logout(a) => registry::logout(&a)?,
        Command::Tag(a) => registry::tag(cx, &a)?,
        Command::Build(a) => build::build(cx, &a)?,
        Command::Container(c) => containers::command(cx, c)?,
        Command::Stop(a) => containers::stop(cx, &a)?,
        Command::Rm(a) => containers::remove(cx, &a)?,
        Command::Inspect(a) => containers::inspect_any(cx, &a)?,
        Command::Logs(a) => containers::logs(cx, &a)?,
        Command::Completion(a) => docs::completion(&a),
        Command::Man(a) => docs::man(&a)?,
    }
    Ok(0)
}
