//! IPv4 addresses over netlink.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::netlink::Handle;

/// Adds `addr/prefix` to interface `index` (named `name` in errors). An address that is already
/// there is fine.
pub(crate) fn add(
    h: &mut Handle,
    index: u32,
    name: &str,
    addr: Ipv4Addr,
    prefix: u8,
) -> Result<()> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    let mut attrs = vec![
        AddressAttribute::Local(IpAddr::V4(addr)),
        AddressAttribute::Address(IpAddr::V4(addr)),
    ];
    if prefix < 31 {
        let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        attrs.push(AddressAttribute::Broadcast(Ipv4Addr::from(
            u32::from(addr) | host_mask,
        )));
    }
    msg.attributes = attrs;
    h.create_or_keep(RouteNetlinkMessage::NewAddress(msg))
        .map_err(|source| Error::Address {
            op: "adding",
            address: format!("{addr}/{prefix}"),
            interface: name.to_owned(),
            source,
        })
}

/// Every IPv4 address of the namespace: (interface index, address, prefix length).
pub(crate) fn list_v4(h: &mut Handle) -> Result<Vec<(u32, Ipv4Addr, u8)>> {
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    let msgs = h
        .dump(RouteNetlinkMessage::GetAddress(req))
        .map_err(|source| Error::Address {
            op: "listing",
            address: "*".into(),
            interface: "*".into(),
            source,
        })?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => v4_address(&a),
            _ => None,
        })
        .collect())
}

/// An address message's (interface index, address, prefix length): its local address, else
/// its peer address; `None` when it has no IPv4 address.
fn v4_address(a: &AddressMessage) -> Option<(u32, Ipv4Addr, u8)> {
    let local = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    let address = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    local
        .or(address)
        .map(|ip| (a.header.index, ip, a.header.prefix_len))
}
