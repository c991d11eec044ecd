//! Links over netlink: list, create bridges and veth pairs, bring up, delete.

use std::io;
use std::os::fd::RawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::netlink::{is_not_found, Handle};

/// What berth needs to know about one interface.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<InfoKind>,
    pub up: bool,
}

/// Lists the interfaces of the handle's namespace.
pub(crate) fn list(h: &mut Handle) -> Result<Vec<Link>> {
    let msgs = h
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .map_err(|source| Error::Netlink {
            op: "listing interfaces",
            source,
        })?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
            _ => None,
        })
        .collect())
}

impl Link {
    /// What a link message says about its interface.
    fn from_message(link: LinkMessage) -> Link {
        let mut l = Link {
            index: link.header.index,
            name: String::new(),
            kind: None,
            up: link.header.flags.contains(LinkFlags::Up),
        };
        for attr in link.attributes {
            match attr {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = Some(k);
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

/// Finds one interface by name.
pub(crate) fn by_name(h: &mut Handle, name: &str) -> Result<Option<Link>> {
    Ok(list(h)?.into_iter().find(|l| l.name == name))
}

fn up_flags(msg: &mut LinkMessage) {
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
}

/// Creates a bridge, up, with the given MTU.
pub(crate) fn create_bridge(h: &mut Handle, name: &str, mtu: u32) -> Result<()> {
    let mut msg = LinkMessage::default();
    up_flags(&mut msg);
    msg.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
    ];
    h.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(|source| Error::Link {
            op: "creating bridge",
            interface: name.to_owned(),
            source,
        })
}

/// A veth pair whose host end joins a bridge and whose peer is born inside another namespace.
pub(crate) struct Veth<'a> {
    /// Host end's name.
    pub host: &'a str,
    /// Free text shown by `ip link` (`berth:<container>`).
    pub alias: &'a str,
    /// The bridge's index.
    pub master: u32,
    /// MTU of both ends.
    pub mtu: u32,
    /// Peer's name inside its namespace.
    pub peer: &'a str,
    /// Peer's MAC address.
    pub peer_mac: [u8; 6],
    /// An open fd of the peer's network namespace.
    pub peer_netns: RawFd,
}

/// Creates a veth pair in one request, the host end on its bridge (then brought up), the peer created
/// directly inside the target namespace with its final name, MTU and MAC, so a crash never
/// leaves a peer on the host.
pub(crate) fn create_veth(h: &mut Handle, v: &Veth<'_>) -> Result<()> {
    // No IFF_UP at creation: a veth end refuses to open (ENOTCONN) until its peer is linked.
    let mut peer = LinkMessage::default();
    peer.attributes = vec![
        LinkAttribute::IfName(v.peer.to_owned()),
        LinkAttribute::Mtu(v.mtu),
        LinkAttribute::Address(v.peer_mac.to_vec()),
        LinkAttribute::NetNsFd(v.peer_netns),
    ];
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(v.host.to_owned()),
        LinkAttribute::Mtu(v.mtu),
        LinkAttribute::Controller(v.master),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]),
    ];
    h.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(|source| Error::Link {
            op: "creating veth",
            interface: v.host.to_owned(),
            source,
        })?;
    // The alias is informational (`ip link` shows which container a veth serves).
    let _ = set_alias(h, v.host, v.alias);
    let host = by_name(h, v.host)?.ok_or_else(|| Error::Link {
        op: "finding the new veth",
        interface: v.host.to_owned(),
        source: io::Error::from_raw_os_error(libc::ENODEV),
    })?;
    set_up(h, host.index, v.host)
}

fn set_alias(h: &mut Handle, name: &str, alias: &str) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::IfAlias(alias.to_owned()),
    ];
    h.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Brings an interface up.
pub(crate) fn set_up(h: &mut Handle, index: u32, name: &str) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    up_flags(&mut msg);
    h.request(RouteNetlinkMessage::SetLink(msg), 0)
        .map_err(|source| Error::Link {
            op: "bringing up",
            interface: name.to_owned(),
            source,
        })
}

/// Deletes an interface by name; a missing one is not an error. Returns whether it existed.
pub(crate) fn delete(h: &mut Handle, name: &str) -> Result<bool> {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![LinkAttribute::IfName(name.to_owned())];
    match h.request(RouteNetlinkMessage::DelLink(msg), 0) {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(source) => Err(Error::Link {
            op: "deleting",
            interface: name.to_owned(),
            source,
        }),
    }
}
