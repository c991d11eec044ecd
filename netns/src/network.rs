//! Named networks: configuration persisted as `<state>/networks/<name>.json`, and the host-side
//! plumbing a network needs once a container uses it (bridge with the gateway address, NAT
//! rules, IPv4 forwarding).

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};
use crate::ipam::Ipam;
use crate::state::{read_all_json, read_json, remove_file, write_json, Lock};
use crate::subnet::Subnet;
use crate::{addr, attach, link, nat, netlink};

/// The network `berth run IMAGE` uses unless told otherwise.
pub const DEFAULT_NETWORK: &str = "berth";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The default network's subnet, and the first of the /16 pool new networks draw from
/// (10.90.0.0/16, 10.91.0.0/16, ...). Not podman's 10.88.0.0/16 nor docker's 172.17.0.0/16, so
/// berth can share a host with either.
pub const DEFAULT_SUBNET: &str = "10.90.0.0/16";
/// The default MTU.
pub const DEFAULT_MTU: u32 = 1500;

const PROC_IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// A bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The network's name.
    pub name: String,
    /// The bridge on the host (created on first use).
    pub bridge: String,
    /// The containers' subnet.
    pub subnet: Subnet,
    /// The bridge's address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// MTU of the bridge and of both ends of every veth.
    pub mtu: u32,
}

/// What `create` may be told; everything left `None` gets a default.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// Bridge name (default `berth0`, else the first free `berthN`).
    pub bridge: Option<String>,
    /// Subnet (default the first free /16 from 10.90.0.0/16 on).
    pub subnet: Option<Subnet>,
    /// Gateway (default the subnet's first address).
    pub gateway: Option<Ipv4Addr>,
    /// MTU (default 1500).
    pub mtu: Option<u32>,
}

pub(crate) fn networks_dir(state: &Path) -> PathBuf {
    state.join("networks")
}

fn config_path(state: &Path, name: &str) -> PathBuf {
    networks_dir(state).join(format!("{name}.json"))
}

pub(crate) fn lock(state: &Path) -> Result<Lock> {
    Lock::exclusive(&state.join("lock"))
}

pub(crate) fn validate_name(kind: &'static str, name: &str, max: usize) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > max {
        return bad(if name.is_empty() { "empty" } else { "too long" });
    }
    if name.starts_with(['.', '-']) {
        return bad("must not start with '.' or '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad("only letters, digits, '_', '.' and '-' are allowed");
    }
    Ok(())
}

impl Network {
    /// The address pool of this network.
    pub fn ipam(&self, state: &Path) -> Ipam {
        Ipam::new(&state.join("ipam"), &self.name, self.subnet, self.gateway)
    }
}

/// Every network, sorted by name.
pub fn list(state: &Path) -> Result<Vec<Network>> {
    read_all_json(&networks_dir(state))
}

/// One network by name.
pub fn load(state: &Path, name: &str) -> Result<Network> {
    validate_name("network name", name, 64)?;
    read_json(&config_path(state, name))?.ok_or_else(|| Error::NetworkNotFound(name.to_owned()))
}

/// The subnets configured on this namespace's interfaces other than `except`, with the
/// interface's name.
fn host_subnets(except: &str) -> Result<Vec<(Subnet, Ipv4Addr, String)>> {
    let mut h = netlink::open()?;
    let links = link::list(&mut h)?;
    let mut out = Vec::new();
    for (index, ip, prefix) in addr::list_v4(&mut h)? {
        let name = links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| index.to_string(), |l| l.name.clone());
        if name != except {
            out.push((Subnet::new(ip, prefix)?, ip, name));
        }
    }
    Ok(out)
}

/// Creates a network (configuration only: the bridge and NAT rules come with the first
/// container). Refuses a name or bridge already used, and a subnet overlapping another network
/// or an address of this host.
pub fn create(state: &Path, name: &str, opts: &NetworkOptions) -> Result<Network> {
    validate_name("network name", name, 64)?;
    let _lock = lock(state)?;
    let existing = list(state)?;
    if existing.iter().any(|n| n.name == name) {
        return Err(Error::NetworkExists(name.to_owned()));
    }
    let bridge = match &opts.bridge {
        Some(b) => {
            validate_name("bridge name", b, 15)?;
            if let Some(other) = existing.iter().find(|n| &n.bridge == b) {
                return Err(Error::BridgeInUse {
                    bridge: b.clone(),
                    other: other.name.clone(),
                });
            }
            b.clone()
        }
        None => std::iter::once(DEFAULT_BRIDGE.to_owned())
            .chain((1..=4096).map(|i| format!("berth{i}")))
            .find(|b| existing.iter().all(|n| &n.bridge != b))
            .expect("an unused bridge name"),
    };
    let host = host_subnets(&bridge)?;
    let subnet = match opts.subnet {
        Some(s) => {
            if s.prefix() > 30 || s.prefix() < 8 {
                return Err(Error::InvalidConfig {
                    value: s.to_string(),
                    reason: "prefix length must be between 8 and 30".into(),
                });
            }
            if let Some(other) = existing.iter().find(|n| n.subnet.overlaps(&s)) {
                return Err(Error::SubnetOverlap {
                    subnet: s.to_string(),
                    other: other.name.clone(),
                    other_subnet: other.subnet.to_string(),
                });
            }
            if let Some((_, ip, iface)) = host.iter().find(|(h, _, _)| h.overlaps(&s)) {
                return Err(Error::SubnetInUse {
                    subnet: s.to_string(),
                    address: ip.to_string(),
                    interface: iface.clone(),
                });
            }
            s
        }
        None => {
            let first: Subnet = DEFAULT_SUBNET.parse()?;
            let [a, b, _, _] = first.network().octets();
            (b..=255)
                .map(|b| Subnet::new(Ipv4Addr::new(a, b, 0, 0), 16).expect("valid /16"))
                .find(|s| {
                    existing.iter().all(|n| !n.subnet.overlaps(s))
                        && host.iter().all(|(h, _, _)| !h.overlaps(s))
                })
                .ok_or_else(|| Error::InvalidConfig {
                    value: format!("{a}.{b}.0.0/16 to {a}.255.0.0/16"),
                    reason: "every default subnet is taken; give one explicitly".into(),
                })?
        }
    };
    let gateway = opts
        .gateway
        .unwrap_or_else(|| subnet.nth(1).expect("a /30 or larger has .1"));
    if !subnet.contains(gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
        return Err(Error::InvalidConfig {
            value: gateway.to_string(),
            reason: format!("the gateway must be a host address of {subnet}"),
        });
    }
    let mtu = opts.mtu.unwrap_or(DEFAULT_MTU);
    if !(68..=65535).contains(&mtu) {
        return Err(Error::InvalidConfig {
            value: mtu.to_string(),
            reason: "MTU must be between 68 and 65535".into(),
        });
    }
    let net = Network {
        name: name.to_owned(),
        bridge,
        subnet,
        gateway,
        mtu,
    };
    write_json(&config_path(state, name), &net)?;
    Ok(net)
}

/// The default network, created with every default if missing.
pub fn ensure_default(state: &Path) -> Result<Network> {
    match load(state, DEFAULT_NETWORK) {
        Err(Error::NetworkNotFound(_)) => {
            match create(state, DEFAULT_NETWORK, &NetworkOptions::default()) {
                Err(Error::NetworkExists(_)) => load(state, DEFAULT_NETWORK),
                other => other,
            }
        }
        other => other,
    }
}

/// Removes a network: its bridge, NAT rules, address pool and configuration. Refused while
/// containers are attached. When the last network goes, berth's nftables table goes too and
/// IPv4 forwarding returns to what it was before berth enabled it.
pub fn remove(state: &Path, name: &str) -> Result<()> {
    let _lock = lock(state)?;
    let net = load(state, name)?;
    let users: Vec<String> = attach::records(state)?
        .into_iter()
        .filter(|a| a.network == name)
        .map(|a| a.container_id)
        .collect();
    if !users.is_empty() {
        return Err(Error::NetworkInUse {
            network: name.to_owned(),
            containers: users,
        });
    }
    teardown(state, &net)?;
    remove_file(&config_path(state, name))?;
    if list(state)?.is_empty() {
        nat::delete_table()?;
        restore_forwarding(state)?;
    }
    Ok(())
}

/// Removes the host-side objects of a network (bridge, NAT rules, pool files).
fn teardown(state: &Path, net: &Network) -> Result<()> {
    let mut h = netlink::open()?;
    link::delete(&mut h, &net.bridge)?;
    nat::remove_network(&net.name)?;
    net.ipam(state).remove_files()
}

/// Makes sure the network's bridge exists with the gateway address and is up, its NAT rules
/// are in place and IPv4 forwarding is on. Idempotent.
pub(crate) fn ensure_up(state: &Path, net: &Network) -> Result<u32> {
    let mut h = netlink::open()?;
    let bridge = match link::by_name(&mut h, &net.bridge)? {
        Some(l) => l,
        None => {
            link::create_bridge(&mut h, &net.bridge, net.mtu)?;
            link::by_name(&mut h, &net.bridge)?.ok_or_else(|| Error::Link {
                op: "finding the new bridge",
                interface: net.bridge.clone(),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?
        }
    };
    if bridge.kind != Some(netlink_packet_route::link::InfoKind::Bridge) {
        return Err(Error::Link {
            op: "using as a bridge",
            interface: net.bridge.clone(),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "an interface of another kind has this name",
            ),
        });
    }
    addr::add(
        &mut h,
        bridge.index,
        &net.bridge,
        net.gateway,
        net.subnet.prefix(),
    )?;
    if !bridge.up {
        link::set_up(&mut h, bridge.index, &net.bridge)?;
    }
    // Loopback-addressed packets may be routed out of the bridge: published ports answer on
    // the host's 127.0.0.1 (see crate::nat). The setting goes with the bridge.
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge);
    fs::write(&localnet, "1").map_err(io_err("enabling", PathBuf::from(&localnet)))?;
    nat::ensure_network(&net.name, net.subnet, &net.bridge)?;
    enable_forwarding(state)?;
    Ok(bridge.index)
}

fn saved_forwarding(state: &Path) -> PathBuf {
    state.join("ip_forward.saved")
}

/// Turns IPv4 forwarding on in the namespace berth runs in, remembering that it was off.
fn enable_forwarding(state: &Path) -> Result<()> {
    let current =
        fs::read_to_string(PROC_IP_FORWARD).map_err(io_err("reading", PROC_IP_FORWARD))?;
    if current.trim() == "1" {
        return Ok(());
    }
    fs::write(saved_forwarding(state), current.trim())
        .map_err(io_err("writing", saved_forwarding(state)))?;
    fs::write(PROC_IP_FORWARD, "1").map_err(io_err("enabling forwarding in", PROC_IP_FORWARD))
}

/// Puts IPv4 forwarding back to what it was before berth turned it on.
fn restore_forwarding(state: &Path) -> Result<()> {
    let saved = saved_forwarding(state);
    match fs::read_to_string(&saved) {
        Ok(value) => {
            fs::write(PROC_IP_FORWARD, value.trim())
                .map_err(io_err("restoring", PROC_IP_FORWARD))?;
            remove_file(&saved)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            op: "reading",
            path: saved,
            source,
        }),
    }
}

/// Called by prune once no network is left: table and forwarding back to the start.
pub(crate) fn reset_when_empty(state: &Path) -> Result<()> {
    if list(state)?.is_empty() {
        nat::delete_table()?;
        restore_forwarding(state)?;
    }
    Ok(())
}
