//! Networking for `berth run IMAGE` and `berth network ls|create|rm|prune`, over the netns
//! crate. Networks, leases and pinned namespaces live in `<store>/net`.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_netns::{files, network, AttachOptions, NetworkOptions, PortMapping, Subnet};
use berth_runtime::StateRoot;
use serde_json::{json, Value};

/// Where networks, leases and pinned network namespaces live.
pub fn state_dir(store_root: &Path) -> PathBuf {
    store_root.join("net")
}

/// `berth network ...`.
#[derive(clap::Subcommand, Debug)]
pub enum NetworkCommand {
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a bridge network.
    Create {
        /// Subnet in CIDR form (default: the first free /16 from 10.90.0.0/16 on).
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// Bridge name (default: berth0, else the first free berthN).
        #[arg(long)]
        bridge: Option<String>,
        /// MTU (default 1500).
        #[arg(long)]
        mtu: Option<u32>,
        /// Network name.
        name: String,
    },
    /// Remove networks (refused while a container is attached).
    #[command(alias = "remove")]
    Rm {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove what a crash left: leases, veths, port rules and namespaces of containers that
    /// no longer exist.
    Prune,
}

/// `berth network ...`.
pub fn command(root: &StateRoot, store_root: &Path, cmd: NetworkCommand) -> Result<()> {
    let state = state_dir(store_root);
    match cmd {
        NetworkCommand::Ls { format, quiet } => {
            let mut nets = network::list(&state)?;
            nets.sort_by(|a, b| a.name.cmp(&b.name));
            let mut out = std::io::stdout().lock();
            if quiet {
                for n in &nets {
                    writeln!(out, "{}", n.name)?;
                }
            } else if format == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&nets)?)?;
            } else {
                writeln!(
                    out,
                    "{:<16} {:<12} {:<18} {:<15} MTU",
                    "NAME", "BRIDGE", "SUBNET", "GATEWAY"
                )?;
                for n in &nets {
                    writeln!(
                        out,
                        "{:<16} {:<12} {:<18} {:<15} {}",
                        n.name,
                        n.bridge,
                        n.subnet.to_string(),
                        n.gateway.to_string(),
                        n.mtu
                    )?;
                }
            }
        }
        NetworkCommand::Create {
            subnet,
            gateway,
            bridge,
            mtu,
            name,
        } => {
            let subnet = subnet
                .map(|s| s.parse::<Subnet>().with_context(|| format!("--subnet {s}")))
                .transpose()?;
            let n = network::create(
                &state,
                &name,
                &NetworkOptions {
                    bridge,
                    subnet,
                    gateway,
                    mtu,
                },
            )?;
            println!("{} {} {}", n.name, n.bridge, n.subnet);
        }
        NetworkCommand::Rm { names } => {
            for n in names {
                network::remove(&state, &n)?;
                println!("removed {n}");
            }
        }
        NetworkCommand::Prune => {
            let report = berth_netns::prune(&state, |id| {
                crate::reclaim::container_in_use(root, store_root, id)
            })?;
            println!("{report:?}");
        }
    }
    Ok(())
}

/// How a `run IMAGE` container is networked.
pub struct NetworkChoice<'a> {
    /// `bridge` (the default network), `none`, `host` or a network's name.
    pub mode: &'a str,
    /// `-p` mappings.
    pub publish: &'a [String],
}

/// What `attach_to_bundle` did, for the cleanup at delete (`None`: nothing to undo).
pub type Attached = Option<PathBuf>;

/// Networks the container of the bundle `dir` (config.json already written): joins a pinned
/// namespace attached to a bridge network, or a fresh empty one (`none`), or the host's
/// (`host`), and bind-mounts a generated `/etc/resolv.conf`, `/etc/hosts` and
/// `/etc/hostname`. Returns the network state dir when something must be detached later.
pub fn attach_to_bundle(
    store_root: &Path,
    dir: &Path,
    id: &str,
    hostname: &str,
    choice: &NetworkChoice<'_>,
) -> Result<Attached> {
    let publish: Vec<PortMapping> = choice
        .publish
        .iter()
        .map(|p| p.parse().with_context(|| format!("-p {p}")))
        .collect::<Result<_>>()?;
    if !publish.is_empty() && matches!(choice.mode, "none" | "host") {
        bail!(
            "-p: ports are published only on a bridge network, not with --network {}",
            choice.mode
        );
    }
    let config_path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(&config_path).with_context(|| format!("{}", config_path.display()))?,
    )
    .with_context(|| format!("{}", config_path.display()))?;
    let host_resolv = files::host_resolv_conf();
    let state = state_dir(store_root);
    let (netns, ip, attached) = match choice.mode {
        "host" => (NetNs::Host, None, None),
        "none" => (NetNs::New, None, None),
        name => {
            let net = if name == "bridge" {
                network::ensure_default(&state)?
            } else {
                network::load(&state, name)?
            };
            let a = berth_netns::attach(
                &state,
                &net.name,
                id,
                &AttachOptions {
                    publish,
                    mac: None,
                    hostname: Some(hostname.to_string()),
                },
            )?;
            (NetNs::Path(a.netns_path.clone()), Some(a.ip), Some(state))
        }
    };
    let res = (|| -> Result<()> {
        let resolv = if matches!(netns, NetNs::Host) {
            host_resolv.clone()
        } else {
            files::resolv_conf(&host_resolv, &[])
        };
        let f = files::write_files(&dir.join("net"), hostname, ip, &resolv)?;
        set_network_namespace(&mut config, &netns)?;
        let mounts = config
            .as_object_mut()
            .context("config.json: not an object")?
            .entry("mounts")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .context("config.json: mounts: not an array")?;
        for (dest, src) in [
            ("/etc/resolv.conf", &f.resolv_conf),
            ("/etc/hosts", &f.hosts),
            ("/etc/hostname", &f.hostname),
        ] {
            mounts.push(json!({
                "destination": dest, "type": "bind", "source": src, "options": ["rbind", "rw"]
            }));
        }
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        Ok(())
    })();
    if let Err(e) = res {
        if let Some(state) = &attached {
            let _ = berth_netns::detach(state, id);
        }
        return Err(e);
    }
    Ok(attached)
}

enum NetNs {
    Host,
    New,
    Path(PathBuf),
}

fn set_network_namespace(config: &mut Value, ns: &NetNs) -> Result<()> {
    let list = config
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut)
        .context("config.json: linux.namespaces: missing")?;
    list.retain(|n| n["type"] != "network");
    match ns {
        NetNs::Host => {}
        NetNs::New => list.push(json!({"type": "network"})),
        NetNs::Path(p) => list.push(json!({"type": "network", "path": p})),
    }
    Ok(())
}

/// Undoes [`attach_to_bundle`] for container `id` (idempotent).
pub fn detach(state: &Path, id: &str) -> Result<()> {
    berth_netns::detach(state, id).with_context(|| format!("detaching {id} from its network"))
}
