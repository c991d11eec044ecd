//! berthd's command line, with dockerd's flag names.

use std::path::PathBuf;

use clap::Parser;

/// The default socket, as `DOCKER_HOST=unix:///run/berthd.sock` names it.
pub const DEFAULT_HOST: &str = "unix:///run/berthd.sock";

/// berthd: the Docker Engine API over berth.
#[derive(Debug, Clone, Parser)]
#[command(name = "berthd", version, about)]
pub struct Args {
    /// Where to listen: `unix:///path` (default `unix:///run/berthd.sock`) or
    /// `tcp://ADDR:PORT` (mutual TLS required unless ADDR is loopback). Repeatable.
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Images, containers, volumes and networks (default: berth's store, so `berth images`
    /// and `docker images` list the same images; also $BERTH_STORE).
    #[arg(long = "data-root")]
    pub data_root: Option<PathBuf>,
    /// Runtime state: monitor sockets, the runtime's container state.
    #[arg(long = "exec-root", default_value = "/run/berthd")]
    pub exec_root: PathBuf,
    /// File to write berthd's pid to (refused while another berthd holds it).
    #[arg(short = 'p', long = "pidfile", default_value = "/run/berthd.pid")]
    pub pidfile: PathBuf,
    /// Group (name or gid) given read/write access to unix sockets (default: root only).
    #[arg(short = 'G', long = "group")]
    pub group: Option<String>,
    /// Require mutual TLS on TCP listeners.
    #[arg(long = "tlsverify")]
    pub tlsverify: bool,
    /// CA certificate clients must be signed by.
    #[arg(long = "tlscacert")]
    pub tlscacert: Option<PathBuf>,
    /// Server certificate.
    #[arg(long = "tlscert")]
    pub tlscert: Option<PathBuf>,
    /// Server key.
    #[arg(long = "tlskey")]
    pub tlskey: Option<PathBuf>,
    /// Log level: debug, info, warn, error.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
    /// The berth runtime binary (default: `berth` beside berthd, else on PATH).
    #[arg(long = "runtime")]
    pub runtime: Option<PathBuf>,
    /// The monitor binary (default: `berth-monitor` beside berthd, else on PATH).
    #[arg(long = "monitor")]
    pub monitor: Option<PathBuf>,
    /// The static init binary `docker run --init` runs as pid 1 (default: the first of
    /// /usr/bin/catatonit, /usr/bin/docker-init, /usr/bin/tini-static).
    #[arg(long = "init-path")]
    pub init_path: Option<PathBuf>,
}

/// The init binary for `--init`: the one given, else the first installed.
pub fn init_binary(given: Option<&std::path::Path>) -> Option<PathBuf> {
    berth_engine::host_flags::init_binary(given)
}

impl Args {
    /// The listeners asked for, or the default socket.
    pub fn hosts(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            vec![DEFAULT_HOST.to_string()]
        } else {
            self.hosts.clone()
        }
    }
}

/// A binary beside the running berthd, else `name` (found on PATH when run).
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}
