//! `berth`: a runc-compatible command line over the berth crates. Parse, call, print.

mod images;
mod log;
mod network;
mod reclaim;
mod registry;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use berth_runtime::{CreateOptions, RunOutcome, StateRoot};
use clap::{Parser, Subcommand};
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
    command: Option<Command>,
}

/// runc's flags of `create` and `run`.
#[derive(clap::Args, Debug, Clone)]
struct CreateFlags {
    /// File to write the container init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a session keyring for the container.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra file descriptors (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(clap::Args, Debug, Clone)]
struct CreateArgs {
    /// Bundle directory (default: the current directory).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[command(flatten)]
    flags: CreateFlags,
    /// Container ID.
    id: String,
}

/// `run`: a bundle (runc's form: `run [--bundle DIR] ID`) or an image (`run IMAGE [CMD...]`).
#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Bundle directory (runc's form; default: the current directory when it holds a
    /// config.json and no image flag is given).
    #[arg(short, long)]
    bundle: Option<PathBuf>,
    #[command(flatten)]
    flags: CreateFlags,
    /// Return once the container has started.
    #[arg(short, long)]
    detach: bool,
    /// Image form: delete the container and its bundle when it exits.
    #[arg(long)]
    rm: bool,
    /// Image form: the container's name (default: berth-<12 hex>).
    #[arg(long)]
    name: Option<String>,
    /// Image form: give the process the caller's terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Image form: `bridge` (the default network; default for root), `none` (default for
    /// other users), `host` or a network's name.
    #[arg(long)]
    network: Option<String>,
    /// Image form: publish a port, [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]; repeatable.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    #[command(flatten)]
    image: images::ImageProcessArgs,
    /// Container ID (bundle form) or image name / ID prefix (image form).
    target: String,
    /// Image form: command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    /// The image form unless a bundle is named, or the current directory is a bundle and
    /// nothing but runc's flags was given.
    fn is_image_form(&self) -> bool {
        self.bundle.is_none()
            && (self.rm
                || self.name.is_some()
                || self.tty
                || self.network.is_some()
                || !self.publish.is_empty()
                || self.image.any()
                || !self.command.is_empty()
                || !std::path::Path::new("config.json").exists())
    }
}

#[derive(clap::Args, Debug, Clone)]
struct ExecArgs {
    /// process.json describing the process (instead of COMMAND and the flags below).
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's host pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Working directory.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Environment variables (KEY=VALUE), repeatable.
    #[arg(short, long)]
    env: Vec<String>,
    /// User as UID[:GID].
    #[arg(short, long)]
    user: Option<String>,
    /// Additional groups, repeatable.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Pass N extra file descriptors (3..3+N) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Add a capability (e.g. CAP_NET_ADMIN) to the bounding, effective and permitted sets;
    /// repeatable.
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Join a sub-cgroup of the container's: PATH, or CONTROLLER[,CONTROLLER]:PATH (v1);
    /// repeatable.
    #[arg(long)]
    cgroup: Vec<String>,
    /// Run even if the container is paused (the process starts frozen).
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// SELinux label for the process (ignored with a warning where SELinux is off).
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// AppArmor profile for the process (an error where AppArmor is off).
    #[arg(long)]
    apparmor: Option<String>,
    /// Container ID.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
struct UpdateArgs {
    /// linux.resources JSON from a file, or `-` for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix).
    #[arg(long)]
    memory: Option<String>,
    /// Memory reservation (soft limit).
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Memory plus swap limit; -1 for unlimited.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU CFS quota in microseconds per period; -1 for unlimited.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    /// CPUs allowed (e.g. 0-1).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Maximum number of processes; -1 for unlimited.
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block I/O weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// Container ID.
    id: String,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    Run(RunArgs),
    /// Run a new process inside a running container.
    Exec(ExecArgs),
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
    Update(UpdateArgs),
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
    Bundle(images::BundleCommand),
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

/// The error and its causes on one line, `outer: inner`, skipping a cause whose text the
/// line already holds (library errors often include their source in their own message).
fn render(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

/// `/run/berth` for root; `$XDG_RUNTIME_DIR/berth` for other users (as runc does).
fn default_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !nix::unistd::geteuid().is_root() => PathBuf::from(dir).join("berth"),
        _ => PathBuf::from("/run/berth"),
    }
}

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.flags.pid_file.clone(),
        console_socket: a.flags.console_socket.clone(),
        no_pivot: a.flags.no_pivot,
        no_new_keyring: a.flags.no_new_keyring,
        preserve_fds: a.flags.preserve_fds,
        foreground: false,
    }
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
    let root = StateRoot::new(cli.root.clone().unwrap_or_else(default_root));
    let store_flag = cli
        .store
        .clone()
        .or_else(|| std::env::var_os("BERTH_STORE").map(PathBuf::from));
    let store = images::store_root(store_flag.as_deref());
    let Some(command) = cli.command else {
        bail!("no command given; see berth --help");
    };

    match command {
        Command::Create(a) => {
            berth_runtime::create(&root, &create_options(&a), false)?;
        }
        Command::Start { id } => berth_runtime::start(&root, &id)?,
        Command::State { id } => {
            let state = root.read(&id)?;
            println!("{}", serde_json::to_string_pretty(&state.spec_state())?);
        }
        Command::Kill { all, id, signal } => {
            let sig = berth_runtime::signal::parse(&signal)?;
            berth_runtime::kill(&root, &id, sig, all)?;
        }
        Command::Delete { force, id } => {
            let existed = root.read(&id).is_ok();
            // The image bundle and network go before the state, so a `delete` killed midway
            // can be run again and still finds them.
            berth_runtime::delete_with(&root, &id, force, |s| {
                berth_runtime::failpoint::hit("delete:stopped");
                images::remove_run_bundle(&s.bundle, &id).map_err(|e| format!("{e:#}"))
            })?;
            if force && !existed {
                // What a killed `run` or `delete` of that name left without state.
                reclaim::orphaned_container(&root, &store, &id)?;
            }
        }
        Command::Run(a) if a.is_image_form() => {
            return images::run_image(
                &root,
                &store,
                &images::RunImage {
                    image: &a.target,
                    command: &a.command,
                    process: &a.image,
                    name: a.name.as_deref(),
                    rm: a.rm,
                    detach: a.detach,
                    tty: a.tty,
                    pid_file: a.flags.pid_file.clone(),
                    console_socket: a.flags.console_socket.clone(),
                    network: network::NetworkChoice {
                        mode: a
                            .network
                            .as_deref()
                            .unwrap_or(if nix::unistd::geteuid().is_root() {
                                "bridge"
                            } else {
                                "none"
                            }),
                        publish: &a.publish,
                    },
                },
            );
        }
        Command::Run(a) => {
            if !a.command.is_empty() {
                bail!("run: a COMMAND after the container ID is only for `run IMAGE [CMD...]`; the bundle's config.json says what runs");
            }
            let create = CreateArgs {
                bundle: a.bundle.clone().unwrap_or_else(|| PathBuf::from(".")),
                flags: a.flags.clone(),
                id: a.target.clone(),
            };
            return match berth_runtime::run(&root, &create_options(&create), a.detach)? {
                RunOutcome::Detached => Ok(0),
                RunOutcome::Exited(code) => Ok(u8::try_from(code).unwrap_or(255)),
                RunOutcome::StartFailed { message, code } => {
                    tracing::error!("{message}");
                    if cli.log.is_some() {
                        eprintln!("berth: {message}");
                    }
                    Ok(u8::try_from(code).unwrap_or(1))
                }
            };
        }
        Command::Exec(a) => {
            let opts = exec_options(&root, &a)?;
            return match berth_runtime::exec::exec(&root, &opts)? {
                RunOutcome::Detached => Ok(0),
                RunOutcome::Exited(code) => Ok(u8::try_from(code).unwrap_or(255)),
                RunOutcome::StartFailed { message, code } => {
                    tracing::error!("{message}");
                    if cli.log.is_some() {
                        eprintln!("berth: {message}");
                    }
                    Ok(u8::try_from(code).unwrap_or(1))
                }
            };
        }
        Command::List { format, quiet } => list(&root, &format, quiet)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&root, &id, &format, &ps_args)?,
        Command::Pause { id } => berth_runtime::pause(&root, &id)?,
        Command::Resume { id } => berth_runtime::resume(&root, &id)?,
        Command::Update(a) => berth_runtime::update(&root, &a.id, &update_resources(&a)?)?,
        Command::Events {
            stats,
            interval,
            id,
        } => events(&root, &id, stats, *interval)?,
        Command::Spec { bundle, rootless } => {
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
        }
        Command::Features => println!(
            "{}",
            serde_json::to_string_pretty(&berth_runtime::features::document())?
        ),
        Command::Images(a) => images::list(&store, &a)?,
        Command::Image(c) => images::image_command(&root, &store, c)?,
        Command::Rmi { images: names } => images::remove(&store, &names)?,
        Command::Unpack(a) => images::unpack(&store, &a)?,
        Command::Bundle(c) => images::bundle_command(&root, &store, c)?,
        Command::Network(c) => network::command(&root, &store, c)?,
        Command::Pull(a) => registry::pull(&store, &a)?,
        Command::Push(a) => registry::push(&store, &a)?,
        Command::Login(a) => registry::login(&a)?,
        Command::Logout(a) => registry::logout(&a)?,
        Command::Tag(a) => registry::tag(&store, &a)?,
    }
    Ok(0)
}

/// The exec process: `--process` as given, or the container's own process with COMMAND and
/// the flags applied (as runc does).
fn exec_options(root: &StateRoot, a: &ExecArgs) -> Result<berth_runtime::exec::ExecOptions> {
    use berth_runtime::oci::{Process, User};
    let mut process: Process = if let Some(path) = &a.process {
        let bytes = std::fs::read(path).with_context(|| format!("--process {}", path.display()))?;
        berth_runtime::config::parse_process(&bytes)
            .with_context(|| format!("--process {}", path.display()))?
    } else {
        if a.command.is_empty() {
            bail!("exec: give a COMMAND or --process");
        }
        let state = root.read(&a.id)?;
        let spec = berth_runtime::config::load(&state.bundle)?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(a.command.clone()));
        p.set_terminal(Some(a.tty));
        p
    };
    if a.tty {
        process.set_terminal(Some(true));
    }
    if let Some(cwd) = &a.cwd {
        process.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let env = process.env().clone().unwrap_or_default();
        process.set_env(Some(override_env(env, &a.env)));
    }
    if !a.cap.is_empty() {
        process.set_capabilities(Some(add_capabilities(
            process.capabilities().clone().unwrap_or_default(),
            &a.cap,
        )?));
    }
    if let Some(label) = &a.process_label {
        process.set_selinux_label(Some(label.clone()));
    }
    if let Some(profile) = &a.apparmor {
        process.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(user) = &a.user {
        let (uid, gid) = user
            .split_once(':')
            .map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
        let mut u: User = process.user().clone();
        u.set_uid(
            uid.parse()
                .with_context(|| format!("--user {user}: uid must be a number"))?,
        );
        if let Some(g) = gid {
            u.set_gid(
                g.parse()
                    .with_context(|| format!("--user {user}: gid must be a number"))?,
            );
        }
        process.set_user(u);
    }
    if !a.additional_gids.is_empty() {
        let mut u: User = process.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        process.set_user(u);
    }
    if a.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    Ok(berth_runtime::exec::ExecOptions {
        id: a.id.clone(),
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        sub_cgroups: a.cgroup.clone(),
    })
}

/// `env` with each `KEY=VALUE` of `overrides` replacing an entry for the same key (or added),
/// so the override is the only value the process sees.
fn override_env(mut env: Vec<String>, overrides: &[String]) -> Vec<String> {
    for kv in overrides {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    env
}

/// `exec --cap`: adds each capability to the bounding, effective and permitted sets, as runc
/// does (not inheritable or ambient).
fn add_capabilities(
    mut caps: berth_runtime::oci::LinuxCapabilities,
    names: &[String],
) -> Result<berth_runtime::oci::LinuxCapabilities> {
    use berth_runtime::oci::Capability;
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap: Capability = serde_json::from_value(serde_json::Value::String(full))
            .map_err(|_| anyhow::anyhow!("--cap {name}: unknown capability"))?;
        let add = |set: &Option<berth_runtime::oci::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
    }
    Ok(caps)
}

/// `update`'s resources: the JSON document if given, with the flags applied on top.
fn update_resources(a: &UpdateArgs) -> Result<berth_runtime::oci::LinuxResources> {
    use berth_runtime::oci::{LinuxPids, LinuxResources};
    let mut r: LinuxResources = match &a.resources {
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("reading --resources from stdin")?;
            berth_runtime::config::parse_resources(&buf).context("--resources -")?
        }
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("--resources {}", p.display()))?;
            berth_runtime::config::parse_resources(&bytes)
                .with_context(|| format!("--resources {}", p.display()))?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut mem = r.memory().unwrap_or_default();
        if let Some(v) = &a.memory {
            mem.set_limit(Some(parse_bytes(v).context("--memory")?));
        }
        if let Some(v) = &a.memory_reservation {
            mem.set_reservation(Some(parse_bytes(v).context("--memory-reservation")?));
        }
        if let Some(v) = &a.memory_swap {
            mem.set_swap(Some(parse_bytes(v).context("--memory-swap")?));
        }
        r.set_memory(Some(mem));
    }
    if a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpu_share.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut cpu = r.cpu().clone().unwrap_or_default();
        if a.cpu_quota.is_some() {
            cpu.set_quota(a.cpu_quota);
        }
        if a.cpu_period.is_some() {
            cpu.set_period(a.cpu_period);
        }
        if a.cpu_share.is_some() {
            cpu.set_shares(a.cpu_share);
        }
        if a.cpuset_cpus.is_some() {
            cpu.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            cpu.set_mems(a.cpuset_mems.clone());
        }
        r.set_cpu(Some(cpu));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut io = r.block_io().clone().unwrap_or_default();
        io.set_weight(Some(w));
        r.set_block_io(Some(io));
    }
    Ok(r)
}

/// Bytes with an optional k/m/g (binary) suffix; -1 for unlimited.
fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size"))?;
    if n == -1 {
        return Ok(-1);
    }
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}

/// runc's `events`: statistics once with `--stats`; otherwise a stats line every interval and
/// an `oom` line for each new OOM kill, until the container stops.
fn events(root: &StateRoot, id: &str, once: bool, interval: std::time::Duration) -> Result<()> {
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
fn ps(root: &StateRoot, id: &str, format: &str, args: &[String]) -> Result<()> {
    let state = root.read(id)?;
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

fn list(root: &StateRoot, format: &str, quiet: bool) -> Result<()> {
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
