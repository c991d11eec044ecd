//! `berth network ls|create|rm|prune`: the networks image containers join, over the netns
//! crate (`<store>/net`).

use std::io::Write as _;
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use berth_netns::{network, NetworkOptions, PruneReport, Subnet};

use super::Ctx;

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
pub fn command(cx: &Ctx, cmd: NetworkCommand) -> Result<()> {
    let state = cx.engine.network_state();
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
            let report = cx.engine.prune_networks()?;
            let mut out = std::io::stdout().lock();
            for line in prune_lines(&report) {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

/// What `network prune` repaired, a line each (or that nothing needed it).
fn prune_lines(r: &PruneReport) -> Vec<String> {
    if r.is_empty() {
        return vec!["nothing to prune".to_string()];
    }
    let mut lines = Vec::new();
    lines.extend(
        r.detached
            .iter()
            .map(|id| format!("detached container {id}")),
    );
    lines.extend(
        r.leases
            .iter()
            .map(|(net, ip, owner)| format!("released {ip} on network {net} (held by {owner})")),
    );
    lines.extend(r.veths.iter().map(|v| format!("deleted veth {v}")));
    lines.extend(
        r.rules
            .iter()
            .map(|o| format!("deleted the port rules of {o}")),
    );
    lines.extend(
        r.netns_files
            .iter()
            .map(|p| format!("removed namespace file {}", p.display())),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_report_reads_as_lines() {
        assert_eq!(prune_lines(&PruneReport::default()), ["nothing to prune"]);
        let r = PruneReport {
            detached: vec!["web".into()],
            leases: vec![(
                "bridge".into(),
                Ipv4Addr::new(10, 90, 0, 3),
                "ctr:old".into(),
            )],
            veths: vec!["vb1234".into()],
            rules: vec!["ctr:old".into()],
            netns_files: vec!["/run/berth/netns/old".into()],
        };
        assert_eq!(
            prune_lines(&r),
            [
                "detached container web",
                "released 10.90.0.3 on network bridge (held by ctr:old)",
                "deleted veth vb1234",
                "deleted the port rules of ctr:old",
                "removed namespace file /run/berth/netns/old",
            ]
        );
    }
}
