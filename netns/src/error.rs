//! The crate's error type: every variant names the interface, address, network or file involved.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Everything that can go wrong while setting up or tearing down container networking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request about one interface failed.
    #[error("{op} interface {interface}: {source}")]
    Link {
        /// What was being done ("creating bridge", "deleting veth", ...).
        op: &'static str,
        /// The interface's name.
        interface: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Adding or listing an address failed.
    #[error("{op} address {address} on {interface}: {source}")]
    Address {
        /// What was being done.
        op: &'static str,
        /// The address with its prefix length, or `*` for a listing.
        address: String,
        /// The interface's name.
        interface: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Adding a route failed.
    #[error("adding a default route via {gateway} on {interface}: {source}")]
    Route {
        /// The gateway of the route.
        gateway: Ipv4Addr,
        /// The interface's name.
        interface: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Talking to the kernel over netlink failed outside of one object.
    #[error("netlink: {op}: {source}")]
    Netlink {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An nftables command failed.
    #[error("nftables: {op}: {message}")]
    Nft {
        /// What was being done.
        op: String,
        /// `nft`'s complaint (its stderr), or the execution error.
        message: String,
    },
    /// Creating, entering or removing a network namespace failed.
    #[error("network namespace {path}: {op}: {source}")]
    Namespace {
        /// The namespace file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A state file or directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A state file does not hold what berth wrote.
    #[error("corrupt state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Every address of a network's subnet is leased.
    #[error("address pool of network {network} ({subnet}) is exhausted: every address is leased")]
    PoolExhausted {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: String,
    },
    /// A host port is already published by another container.
    #[error("port {mapping} is already published by container {container}")]
    PortInUse {
        /// The mapping asked for.
        mapping: String,
        /// The container that holds it.
        container: String,
    },
    /// The same host port appears twice in one request.
    #[error("port {mapping} is published twice")]
    PortDuplicated {
        /// The mapping.
        mapping: String,
    },
    /// A new network's subnet overlaps an existing berth network.
    #[error("subnet {subnet} overlaps network {other} ({other_subnet})")]
    SubnetOverlap {
        /// The subnet asked for.
        subnet: String,
        /// The network that already covers part of it.
        other: String,
        /// That network's subnet.
        other_subnet: String,
    },
    /// A new network's subnet overlaps an address already configured on this host.
    #[error("subnet {subnet} overlaps address {address} of host interface {interface}")]
    SubnetInUse {
        /// The subnet asked for.
        subnet: String,
        /// The address found.
        address: String,
        /// The interface holding it.
        interface: String,
    },
    /// Another network already uses this bridge.
    #[error("bridge {bridge} is already used by network {other}")]
    BridgeInUse {
        /// The bridge name.
        bridge: String,
        /// The network using it.
        other: String,
    },
    /// A network with this name exists.
    #[error("network {0} already exists")]
    NetworkExists(String),
    /// No network has this name.
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// Containers are still attached to the network.
    #[error("network {network} is in use by containers: {}", containers.join(", "))]
    NetworkInUse {
        /// The network.
        network: String,
        /// The attached containers.
        containers: Vec<String>,
    },
    /// The container is attached already.
    #[error("container {container} is already attached to network {network}")]
    AlreadyAttached {
        /// The container.
        container: String,
        /// Its network.
        network: String,
    },
    /// The container is not on that network.
    #[error("container {container} is not connected to network {network}")]
    NotAttached {
        /// The container.
        container: String,
        /// The network.
        network: String,
    },
    /// Connecting a further network needs the container's namespace, made by [`crate::attach`].
    #[error("container {container} has no network namespace of berth's to connect a network into")]
    NoNamespace {
        /// The container.
        container: String,
    },
    /// The network a container was attached to first cannot be disconnected alone: its
    /// interface holds the namespace and the default route.
    #[error("container {container} was attached to network {network} first: only removing the container detaches it")]
    FirstNetwork {
        /// The container.
        container: String,
        /// Its first network.
        network: String,
    },
    /// An address asked for is leased to another container.
    #[error("address {address} of network {network} is already in use by container {container}")]
    AddressInUse {
        /// The network.
        network: String,
        /// The address.
        address: Ipv4Addr,
        /// Its holder.
        container: String,
    },
    /// A name (network, bridge, container id) is not acceptable.
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName {
        /// What the name is for.
        kind: &'static str,
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A subnet, gateway or MTU is not acceptable.
    #[error("invalid network configuration {value:?}: {reason}")]
    InvalidConfig {
        /// The value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A port mapping does not parse.
    #[error("invalid port mapping {spec:?}: {reason}")]
    InvalidPort {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A MAC address does not parse.
    #[error("invalid MAC address {0:?}: expected six hex bytes such as 02:42:0a:58:00:02")]
    InvalidMac(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
