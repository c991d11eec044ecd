//! Container networking for berth: named bridge networks, a veth pair per container, addresses
//! from a file-locked IPAM, NAT and published ports, and the `/etc` files a container needs.
//!
//! # Use from the runtime
//!
//! ```no_run
//! # fn main() -> berth_netns::Result<()> {
//! use std::path::Path;
//! use berth_netns::{attach, detach, network, AttachOptions};
//!
//! let state = Path::new("/run/berth/net");
//! let net = network::ensure_default(state)?;             // "berth", bridge berth0, 10.90.0.0/16
//! let opts = AttachOptions { publish: vec!["8080:80".parse()?], ..Default::default() };
//! let a = attach(state, &net.name, "web", &opts)?;
//! // config.json: linux.namespaces += {"type": "network", "path": a.netns_path}
//! // ... the container runs ...
//! detach(state, "web")?;                                  // at delete; idempotent
//! # Ok(()) }
//! ```
//!
//! # State
//!
//! Everything lives under a directory the caller chooses: `networks/<name>.json` (configuration),
//! `ipam/<name>.json` + `.lock` (leases), `attachments/<id>.json` (what attach made),
//! `attachments/<id>+<network>.json` (a further network [`connect`]ed, inside the same namespace),
//! `netns/<id>` (the pinned namespaces), `lock` (serializes create/remove/attach/detach/prune
//! across processes) and `ip_forward.saved`.
//!
//! # Choices
//!
//! - Netlink through `netlink-packet-route` + `netlink-sys`, synchronous (no async runtime).
//!   Settings inside a container's namespace are made over a socket opened on a thread that
//!   has `setns`'d into it; the veth peer is created directly inside the container's namespace
//!   (`IFLA_NET_NS_FD` on the peer) with its final name, MAC and MTU, so no half-moved peer is
//!   ever left on the host.
//! - nftables through the `nftables` crate, which drives `nft -j -f -` (the nftables project's
//!   JSON API, stable across versions): the `nft` binary (Debian package `nftables`) must be
//!   installed. berth owns one table, `ip berth`; see [`nat`](crate#nat) below.
//! - IPv4 only. The host's `net.ipv4.ip_forward` is turned on when a network is first used and
//!   put back when the last network is removed. Bridge netfilter (`br_netfilter`) is not
//!   needed: hairpin traffic is masqueraded through the host instead.
//! - Host firewalls with a `drop` policy in their own forward chains (docker's iptables rules,
//!   for one) are not modified: berth's table only does NAT.
//!
//! # NAT
//!
//! `ip berth` has `prerouting` and `output` nat chains jumping, for traffic to a local address,
//! to a `published` chain of DNAT rules (one per published port, commented `ctr:<id>`), and a
//! `postrouting` chain with two rules per network (commented `net:<name>`): masquerade of the
//! subnet's traffic leaving through another interface, and the hairpin masquerade of the
//! subnet's DNATed traffic going back out through the bridge. Published ports are not reachable
//! through `127.0.0.1` (that would need `route_localnet`), nor by a container through a host
//! address when the port is its own (see the `nat` module).

mod addr;
mod attach;
mod error;
pub mod files;
pub mod ipam;
mod link;
mod mac;
pub mod namespace;
mod nat;
mod netlink;
pub mod network;
mod ports;
mod route;
mod state;
mod subnet;

pub use attach::{
    attach, attachment, attachments, connect, detach, disconnect, netns_path, prune, records,
    veth_name, AttachOptions, Attachment, PruneReport, CONTAINER_IFNAME,
};
pub use error::{Error, Result};
pub use mac::MacAddr;
pub use network::{Network, NetworkOptions};
pub use ports::{PortMapping, Protocol};
pub use subnet::Subnet;
