//! Containers on networks: attach (namespace, veth, address, routes, ports), connect and
//! disconnect of further networks, detach, and prune of what a crash left behind. A record per
//! container, `<state>/attachments/<id>.json`, says what attach made (the first network, whose
//! interface is `eth0` and carries the default route); one per further network,
//! `<state>/attachments/<id>+<network>.json` (neither name may hold a `+`), what connect made
//! (`eth1`, `eth2`, ... inside the same namespace, no default route, no published ports). Names
//! derived from the container id (the host veths, the namespace file, the nftables comments) let
//! detach and prune find leftovers even without the records.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};
use crate::mac::MacAddr;
use crate::network::{self, validate_name, Network};
use crate::ports::PortMapping;
use crate::state::{read_all_json, read_json, remove_file, write_json};
use crate::{addr, link, namespace, nat, netlink, route};

/// The container's interface name (on its first network).
pub const CONTAINER_IFNAME: &str = "eth0";
const VETH_PREFIX: &str = "bv";
/// Between a container id and a network name in the keys of further networks.
const KEY_SEP: char = '+';

/// What [`attach`] may be told.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Ports to publish on the host.
    pub publish: Vec<PortMapping>,
    /// The container interface's MAC (default `02:42` + its IPv4 address).
    pub mac: Option<MacAddr>,
    /// The container's hostname, kept in the record for [`crate::files`].
    pub hostname: Option<String>,
    /// The address to lease (default: the pool's next free one).
    pub ip: Option<Ipv4Addr>,
}

/// A container attached to a network: what berth made for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The container.
    pub container_id: String,
    /// Its network.
    pub network: String,
    /// The pinned network namespace to put in the container's config
    /// (`{"type": "network", "path": ...}`).
    pub netns_path: PathBuf,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The default route.
    pub gateway: Ipv4Addr,
    /// The MAC of the container's interface.
    pub mac: MacAddr,
    /// The container's interface (`eth0`).
    pub interface: String,
    /// The host end of the veth pair, on the network's bridge.
    pub veth_host: String,
    /// The published ports.
    pub publish: Vec<PortMapping>,
    /// The hostname given at attach.
    pub hostname: Option<String>,
}

impl Attachment {
    /// Whether this is the container's first network (the one [`attach`] made, with the
    /// namespace and the default route), rather than one added by [`connect`].
    pub fn is_first(&self) -> bool {
        self.interface == CONTAINER_IFNAME
    }

    fn record_path(&self, state: &Path) -> PathBuf {
        if self.is_first() {
            record_path(state, &self.container_id)
        } else {
            extra_record_path(state, &self.container_id, &self.network)
        }
    }

    /// The number of the container's interface (`eth3` → 3), for ordering.
    fn interface_number(&self) -> u32 {
        self.interface
            .strip_prefix("eth")
            .and_then(|n| n.parse().ok())
            .unwrap_or(u32::MAX)
    }
}

/// What [`prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Containers fully detached (namespace gone, or the caller said they are gone).
    pub detached: Vec<String>,
    /// Leases released whose owner had no attachment: (network, address, owner).
    pub leases: Vec<(String, Ipv4Addr, String)>,
    /// Host veths deleted that belonged to no attachment.
    pub veths: Vec<String>,
    /// Owners (containers `ctr:ID`, networks `net:NAME`) whose nftables rules were deleted.
    pub rules: Vec<String>,
    /// Namespace files removed that belonged to no attachment.
    pub netns_files: Vec<PathBuf>,
}

impl PruneReport {
    /// Whether nothing needed repair.
    pub fn is_empty(&self) -> bool {
        self.detached.is_empty()
            && self.leases.is_empty()
            && self.veths.is_empty()
            && self.rules.is_empty()
            && self.netns_files.is_empty()
    }
}

fn records_dir(state: &Path) -> PathBuf {
    state.join("attachments")
}

fn record_path(state: &Path, id: &str) -> PathBuf {
    records_dir(state).join(format!("{id}.json"))
}

fn extra_record_path(state: &Path, id: &str, network: &str) -> PathBuf {
    records_dir(state).join(format!("{id}{KEY_SEP}{network}.json"))
}

/// The host veth of container `id` on a network it was connected to after its first.
fn extra_veth_name(id: &str, network: &str) -> String {
    veth_name(&format!("{id}{KEY_SEP}{network}"))
}

fn netns_dir(state: &Path) -> PathBuf {
    state.join("netns")
}

/// The namespace file of a container: `<state>/netns/<id>`.
pub fn netns_path(state: &Path, id: &str) -> PathBuf {
    netns_dir(state).join(id)
}

/// The host veth name of a container: `bv` + 12 hex digits of a hash of its id (interface
/// names are limited to 15 bytes).
pub fn veth_name(id: &str) -> String {
    // FNV-1a, 64 bits: stable across releases, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{VETH_PREFIX}{:012x}", h >> 16)
}

fn is_berth_veth(name: &str) -> bool {
    name.len() == VETH_PREFIX.len() + 12
        && name.starts_with(VETH_PREFIX)
        && name[VETH_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// The record of a container, if attached.
pub fn attachment(state: &Path, id: &str) -> Result<Option<Attachment>> {
    validate_name("container id", id, 128)?;
    read_json(&record_path(state, id))
}

/// Every attachment record (first and further networks of every container).
pub fn records(state: &Path) -> Result<Vec<Attachment>> {
    read_all_json(&records_dir(state))
}

fn records_of(state: &Path, id: &str) -> Result<Vec<Attachment>> {
    let mut out: Vec<Attachment> = records(state)?
        .into_iter()
        .filter(|a| a.container_id == id)
        .collect();
    out.sort_by_key(Attachment::interface_number);
    Ok(out)
}

/// Every network of container `id`: the first (`eth0`), then those connected later, in the
/// order of their interfaces. Empty if it is attached to none.
pub fn attachments(state: &Path, id: &str) -> Result<Vec<Attachment>> {
    validate_name("container id", id, 128)?;
    records_of(state, id)
}

/// Attaches container `id` to network `network`: a pinned network namespace at
/// `<state>/netns/<id>` with `lo` up and `eth0` (address from the pool, MAC, MTU, default route
/// via the gateway), the host end of its veth on the bridge (created on first use), and the
/// published ports. On failure everything made so far is undone.
pub fn attach(state: &Path, network: &str, id: &str, opts: &AttachOptions) -> Result<Attachment> {
    validate_name("container id", id, 128)?;
    let _lock = network::lock(state)?;
    let net = network::load(state, network)?;
    let records = records(state)?;
    if let Some(a) = records.iter().find(|a| a.container_id == id) {
        return Err(Error::AlreadyAttached {
            container: id.to_owned(),
            network: a.network.clone(),
        });
    }
    for (i, p) in opts.publish.iter().enumerate() {
        if opts.publish[..i].iter().any(|q| q.conflicts_with(p)) {
            return Err(Error::PortDuplicated {
                mapping: p.to_string(),
            });
        }
        for a in &records {
            if a.publish.iter().any(|q| q.conflicts_with(p)) {
                return Err(Error::PortInUse {
                    mapping: p.to_string(),
                    container: a.container_id.clone(),
                });
            }
        }
    }
    // Whatever an earlier crash left under this id goes first.
    cleanup(state, id, None)?;
    let bridge_index = network::ensure_up(state, &net)?;
    let ip = lease(&net, state, id, opts.ip)?;
    let attachment = Attachment {
        container_id: id.to_owned(),
        network: net.name.clone(),
        netns_path: netns_path(state, id),
        ip,
        prefix_len: net.subnet.prefix(),
        gateway: net.gateway,
        mac: opts.mac.unwrap_or_else(|| MacAddr::from_ip(ip)),
        interface: CONTAINER_IFNAME.to_owned(),
        veth_host: veth_name(id),
        publish: opts.publish.clone(),
        hostname: opts.hostname.clone(),
    };
    match plumb(state, &net, bridge_index, &attachment) {
        Ok(()) => Ok(attachment),
        Err(e) => {
            let _ = cleanup(state, id, Some(&attachment));
            Err(e)
        }
    }
}

fn lease(net: &Network, state: &Path, id: &str, ip: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
    let pool = net.ipam(state);
    match ip {
        Some(ip) => pool.allocate_at(id, ip),
        None => pool.allocate(id),
    }
}

/// Connects container `id`, attached already (its namespace made by [`attach`]), to a further
/// network: a veth whose container end is the first free `ethN` (N ≥ 1) in its namespace, with
/// an address from that network's pool (or `opts.ip`) and the subnet's route, but no default
/// route (that stays on the first network) and no published ports. Works whether or not the
/// container runs. On failure everything made so far is undone.
pub fn connect(state: &Path, network: &str, id: &str, opts: &AttachOptions) -> Result<Attachment> {
    validate_name("container id", id, 128)?;
    let _lock = network::lock(state)?;
    let net = network::load(state, network)?;
    let mine = records_of(state, id)?;
    let first = mine
        .iter()
        .find(|a| a.is_first())
        .filter(|a| namespace::is_pinned(&a.netns_path))
        .ok_or_else(|| Error::NoNamespace {
            container: id.to_owned(),
        })?;
    if mine.iter().any(|a| a.network == net.name) {
        return Err(Error::AlreadyAttached {
            container: id.to_owned(),
            network: net.name.clone(),
        });
    }
    // One more than the interfaces there are: a free number is among them.
    let interface = (1..=mine.len() + 1)
        .map(|n| format!("eth{n}"))
        .find(|n| mine.iter().all(|a| &a.interface != n))
        .expect("a free interface number");
    let veth_host = extra_veth_name(id, &net.name);
    // Whatever an earlier crash left of this pair goes first: its veth, its lease.
    netlink::open().and_then(|mut h| link::delete(&mut h, &veth_host))?;
    net.ipam(state).release(id)?;
    let bridge_index = network::ensure_up(state, &net)?;
    let ip = lease(&net, state, id, opts.ip)?;
    let attachment = Attachment {
        container_id: id.to_owned(),
        network: net.name.clone(),
        netns_path: first.netns_path.clone(),
        ip,
        prefix_len: net.subnet.prefix(),
        gateway: net.gateway,
        mac: opts.mac.unwrap_or_else(|| MacAddr::from_ip(ip)),
        interface,
        veth_host,
        publish: Vec::new(),
        hostname: opts.hostname.clone(),
    };
    match plumb(state, &net, bridge_index, &attachment) {
        Ok(()) => Ok(attachment),
        Err(e) => {
            let _ = remove_extra(state, &attachment);
            Err(e)
        }
    }
}

/// Disconnects container `id` from a network [`connect`] added: its interface (the veth), its
/// lease and its record go. The first network is refused ([`Error::FirstNetwork`]): only
/// [`detach`] undoes it, with the namespace.
pub fn disconnect(state: &Path, network: &str, id: &str) -> Result<()> {
    validate_name("container id", id, 128)?;
    validate_name("network name", network, 64)?;
    let _lock = network::lock(state)?;
    let mine = records_of(state, id)?;
    match mine.iter().find(|a| a.network == network) {
        None => Err(Error::NotAttached {
            container: id.to_owned(),
            network: network.to_owned(),
        }),
        Some(a) if a.is_first() => Err(Error::FirstNetwork {
            container: id.to_owned(),
            network: network.to_owned(),
        }),
        Some(a) => remove_extra(state, a),
    }
}

/// Removes what [`connect`] made for `a`: veth, lease, record. Every step runs even if one
/// fails; the first error is returned.
fn remove_extra(state: &Path, a: &Attachment) -> Result<()> {
    let mut first: Option<Error> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    keep(
        netlink::open()
            .and_then(|mut h| link::delete(&mut h, &a.veth_host))
            .map(drop),
    );
    keep(
        network::load(state, &a.network)
            .and_then(|n| n.ipam(state).release(&a.container_id))
            .map(drop),
    );
    keep(remove_file(&a.record_path(state)));
    first.map_or(Ok(()), Err)
}

fn plumb(state: &Path, net: &Network, bridge_index: u32, a: &Attachment) -> Result<()> {
    let first = a.is_first();
    if first {
        namespace::create(&a.netns_path)?;
    }
    let ns = namespace::open(&a.netns_path)?;
    let mut h = netlink::open()?;
    link::create_veth(
        &mut h,
        &link::Veth {
            host: &a.veth_host,
            alias: &format!("berth:{}", a.container_id),
            master: bridge_index,
            mtu: net.mtu,
            peer: &a.interface,
            peer_mac: a.mac.0,
            peer_netns: ns.as_raw_fd(),
        },
    )?;
    drop(ns);
    namespace::run_in(&a.netns_path, || {
        let mut h = netlink::open()?;
        let links = link::list(&mut h)?;
        for l in &links {
            if l.name == "lo" && !l.up {
                link::set_up(&mut h, l.index, "lo")?;
            }
        }
        let eth = links
            .iter()
            .find(|l| l.name == a.interface)
            .ok_or_else(|| Error::Link {
                op: "finding in the container's namespace",
                interface: a.interface.clone(),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?;
        addr::add(&mut h, eth.index, &a.interface, a.ip, a.prefix_len)?;
        if !eth.up {
            link::set_up(&mut h, eth.index, &a.interface)?;
        }
        if first {
            route::add_default(&mut h, eth.index, &a.interface, a.gateway)?;
        }
        Ok(())
    })?;
    if first {
        nat::add_container(&a.container_id, a.ip, &a.publish)?;
    }
    write_json(&a.record_path(state), a)
}

/// Removes everything of container `id`, whether or not its records say so: port rules, host
/// veths (of the first network and of every further one), leases in every network, the
/// namespace file, the records. Every step runs even if one fails; the first error is
/// returned.
fn cleanup(state: &Path, id: &str, known: Option<&Attachment>) -> Result<()> {
    let record = match known {
        Some(a) => Some(a.clone()),
        None => read_json::<Attachment>(&record_path(state, id)).unwrap_or(None),
    };
    let mut first: Option<Error> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    keep(nat::remove_container(id).map(drop));
    let veth = record
        .as_ref()
        .map_or_else(|| veth_name(id), |a| a.veth_host.clone());
    keep(
        netlink::open()
            .and_then(|mut h| link::delete(&mut h, &veth))
            .map(drop),
    );
    match network::list(state) {
        Ok(nets) => {
            for n in nets {
                keep(n.ipam(state).release(id).map(drop));
                let veth = extra_veth_name(id, &n.name);
                keep(
                    netlink::open()
                        .and_then(|mut h| link::delete(&mut h, &veth))
                        .map(drop),
                );
                keep(remove_file(&extra_record_path(state, id, &n.name)));
            }
        }
        Err(e) => keep(Err(e)),
    }
    // Further networks whose network is gone (or whose veth has another name).
    match records_of(state, id) {
        Ok(extras) => {
            for a in extras.iter().filter(|a| !a.is_first()) {
                keep(
                    netlink::open()
                        .and_then(|mut h| link::delete(&mut h, &a.veth_host))
                        .map(drop),
                );
                keep(remove_file(&a.record_path(state)));
            }
        }
        Err(e) => keep(Err(e)),
    }
    let ns = record
        .as_ref()
        .map_or_else(|| netns_path(state, id), |a| a.netns_path.clone());
    keep(namespace::remove(&ns).map(drop));
    keep(remove_file(&record_path(state, id)));
    first.map_or(Ok(()), Err)
}

/// Detaches container `id` from every network: removes its port rules, host veths, address
/// leases, namespace file and records. Idempotent: an unknown id, or one half cleaned by a
/// crash, is fine.
pub fn detach(state: &Path, id: &str) -> Result<()> {
    validate_name("container id", id, 128)?;
    let _lock = network::lock(state)?;
    cleanup(state, id, None)
}

/// Repairs what crashes left: detaches every container whose namespace file is no longer a
/// pinned namespace or for which `is_live` says false (the caller knows which containers still
/// exist), then removes leases, host veths (`bv…`), nftables rules and namespace files that
/// belong to no remaining attachment, and berth's nftables table if no network is left.
pub fn prune(state: &Path, is_live: impl Fn(&str) -> bool) -> Result<PruneReport> {
    let _lock = network::lock(state)?;
    let mut report = PruneReport::default();
    let mut live = Vec::new();
    for a in records(state)? {
        if is_live(&a.container_id) && namespace::is_pinned(&a.netns_path) {
            live.push(a);
        } else if !report.detached.contains(&a.container_id) {
            cleanup(state, &a.container_id, Some(&a).filter(|a| a.is_first()))?;
            report.detached.push(a.container_id);
        }
    }
    let live_ids: BTreeSet<&str> = live.iter().map(|a| a.container_id.as_str()).collect();
    let nets = network::list(state)?;
    for n in &nets {
        let pool = n.ipam(state);
        for (ip, owner) in pool.leases()? {
            if !live_ids.contains(owner.as_str()) {
                pool.release(&owner)?;
                report.leases.push((n.name.clone(), ip, owner));
            }
        }
    }
    let live_veths: BTreeSet<&str> = live.iter().map(|a| a.veth_host.as_str()).collect();
    let mut h = netlink::open()?;
    for l in link::list(&mut h)? {
        if is_berth_veth(&l.name)
            && !live_veths.contains(l.name.as_str())
            && link::delete(&mut h, &l.name)?
        {
            report.veths.push(l.name);
        }
    }
    let (containers, networks) = nat::owners()?;
    for c in containers {
        if !live_ids.contains(c.as_str()) {
            nat::remove_container(&c)?;
            report.rules.push(format!("ctr:{c}"));
        }
    }
    for n in networks {
        if !nets.iter().any(|x| x.name == n) {
            nat::remove_network(&n)?;
            report.rules.push(format!("net:{n}"));
        }
    }
    let dir = netns_dir(state);
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries {
                let e = e.map_err(io_err("listing", &dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if !live_ids.contains(name.as_str()) && namespace::remove(&e.path())? {
                    report.netns_files.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                op: "listing",
                path: dir,
                source,
            })
        }
    }
    network::reset_when_empty(state)?;
    Ok(report)
}
