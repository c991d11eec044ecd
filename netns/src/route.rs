//! Routes over netlink: the container's default route.

use std::net::Ipv4Addr;

use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::netlink::Handle;

/// Adds `default via gateway dev <index>` to the main table. An existing one is fine.
pub(crate) fn add_default(h: &mut Handle, index: u32, name: &str, gateway: Ipv4Addr) -> Result<()> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = 0;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
        RouteAttribute::Oif(index),
    ];
    h.create_or_keep(RouteNetlinkMessage::NewRoute(msg))
        .map_err(|source| Error::Route {
            gateway,
            interface: name.to_owned(),
            source,
        })
}
