//! NAT and published ports in an nftables table of berth's own, `ip berth`.
//!
//! ```text
//! table ip berth {
//!   chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump published }
//!   chain output      { type nat hook output priority -100; fib daddr type local jump published }
//!   chain published   { [ip daddr HOSTIP] tcp dport 8080 dnat to 10.88.0.2:80 comment "ctr:ID" ... }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!                       ip saddr SUBNET oifname != BRIDGE masquerade comment "net:NAME"
//!                       ip saddr SUBNET oifname BRIDGE ct status dnat masquerade comment "net:NAME"
//!                       ip saddr 127.0.0.0/8 oifname BRIDGE masquerade comment "net:NAME" }
//! }
//! ```
//!
//! Published ports answer on the host's loopback too (`curl 127.0.0.1:8080`), as docker's do:
//! the output chain DNATs loopback connections as well, the bridge routes loopback-addressed
//! packets (`route_localnet`, set on berth's bridges only), and the last postrouting rule gives
//! them the bridge's address as source, so the container's answer comes back.
//!
//! The second postrouting rule is the hairpin: a container reaching a neighbour's published port
//! through a host address is answered through the host rather than directly
//! over the bridge, which conntrack could not un-DNAT. Every rule carries a comment naming its
//! owner, so a container's or a network's rules are found and deleted by handle, and prune can
//! tell which owners are gone. (A container reaching its *own* published port through a host
//! address does not work yet: after DNAT its packet has source == destination and the kernel
//! drops it before postrouting, where the masquerade would have fixed it.)
//!
//! nftables is driven through the `nftables` crate (typed JSON for `nft -j -f -`, the nftables
//! project's stable JSON API); listings are read as plain JSON so that rules written by other
//! versions never fail to parse.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, CT,
};
use nftables::helper::{self, NftablesError, DEFAULT_NFT};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{JumpTarget, Match, Operator, Statement, NAT};
use nftables::types::{NfChainType, NfFamily, NfHook};

use crate::error::{Error, Result};
use crate::ports::{PortMapping, Protocol};
use crate::subnet::Subnet;

const TABLE: &str = "berth";
const FAMILY: NfFamily = NfFamily::IP;
const PUBLISHED: &str = "published";
const CONTAINER_TAG: &str = "ctr:";
const NETWORK_TAG: &str = "net:";

fn nft_err(op: impl Into<String>) -> impl FnOnce(NftablesError) -> Error {
    let op = op.into();
    move |e| {
        let message = match e {
            NftablesError::NftFailed { stderr, stdout, .. } => {
                let text = if stderr.trim().is_empty() {
                    stdout
                } else {
                    stderr
                };
                text.trim().to_owned()
            }
            other => other.to_string(),
        };
        Error::Nft { op, message }
    }
}

/// A rule of the table as listed: its chain, handle and comment.
#[derive(Debug)]
struct Listed {
    chain: String,
    handle: u32,
    comment: Option<String>,
}

/// Lists the table's rules; `None` if the table does not exist.
fn list() -> Result<Option<Vec<Listed>>> {
    let out = match helper::get_current_ruleset_raw(DEFAULT_NFT, ["list", "table", "ip", TABLE]) {
        Ok(out) => out,
        Err(NftablesError::NftFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            return Ok(None)
        }
        Err(e) => return Err(nft_err("listing table ip berth")(e)),
    };
    let json: serde_json::Value = serde_json::from_str(&out).map_err(|e| Error::Nft {
        op: "listing table ip berth".into(),
        message: e.to_string(),
    })?;
    let mut rules = Vec::new();
    for obj in json["nftables"].as_array().into_iter().flatten() {
        let Some(rule) = obj.get("rule") else {
            continue;
        };
        rules.push(Listed {
            chain: rule["chain"].as_str().unwrap_or_default().to_owned(),
            handle: rule["handle"].as_u64().unwrap_or_default() as u32,
            comment: rule["comment"].as_str().map(str::to_owned),
        });
    }
    Ok(Some(rules))
}

fn apply(batch: Batch<'_>, op: &str) -> Result<()> {
    helper::apply_ruleset(&batch.to_nftables()).map_err(nft_err(op))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn prefix(addr: Ipv4Addr, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(addr.to_string().into())),
        len: u32::from(len),
    }))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn fib_daddr_is_local() -> Statement<'static> {
    let fib = Fib {
        result: FibResult::Type,
        flags: [FibFlag::Daddr].into_iter().collect(),
    };
    matches(
        Expression::Named(NamedExpression::Fib(fib)),
        Operator::EQ,
        Expression::String("local".into()),
    )
}

fn string(s: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(s.into()))
}

fn rule(
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: chain.into(),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    })
}

/// The `ip berth` table.
fn table() -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: FAMILY,
        name: TABLE.into(),
        handle: None,
    })
}

fn base_chain(name: &'static str, hook: NfHook, prio: i32) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(hook),
        prio: Some(prio),
        ..Chain::default()
    })
}

/// Creates the table with its chains and dispatch rules, unless it exists.
pub(crate) fn ensure_table() -> Result<()> {
    if list()?.is_some() {
        return Ok(());
    }
    let mut b = Batch::new();
    b.add(table());
    b.add(base_chain("prerouting", NfHook::Prerouting, -100));
    b.add(base_chain("output", NfHook::Output, -100));
    b.add(base_chain("postrouting", NfHook::Postrouting, 100));
    b.add(NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: PUBLISHED.into(),
        ..Chain::default()
    }));
    let jump = || {
        Statement::Jump(JumpTarget {
            target: PUBLISHED.into(),
        })
    };
    b.add(rule("prerouting", vec![fib_daddr_is_local(), jump()], None));
    b.add(rule("output", vec![fib_daddr_is_local(), jump()], None));
    apply(b, "creating table ip berth")
}

/// Deletes the whole table (when the last network goes). A missing table is fine.
pub(crate) fn delete_table() -> Result<()> {
    if list()?.is_none() {
        return Ok(());
    }
    let mut b = Batch::new();
    b.delete(table());
    apply(b, "deleting table ip berth")
}

fn delete_tagged(tag: &str, op: &str) -> Result<usize> {
    let Some(rules) = list()? else { return Ok(0) };
    let mut b = Batch::new();
    let mut n = 0;
    for r in rules.iter().filter(|r| r.comment.as_deref() == Some(tag)) {
        b.delete(NfListObject::Rule(Rule {
            family: FAMILY,
            table: TABLE.into(),
            chain: r.chain.clone().into(),
            handle: Some(r.handle),
            ..Rule::default()
        }));
        n += 1;
    }
    if n > 0 {
        apply(b, op)?;
    }
    Ok(n)
}

/// Adds a network's masquerade and hairpin rules unless present.
pub(crate) fn ensure_network(name: &str, subnet: Subnet, bridge: &str) -> Result<()> {
    ensure_table()?;
    let tag = format!("{NETWORK_TAG}{name}");
    if list()?
        .unwrap_or_default()
        .iter()
        .any(|r| r.comment.as_deref() == Some(tag.as_str()))
    {
        return Ok(());
    }
    let saddr = || {
        matches(
            payload("ip", "saddr"),
            Operator::EQ,
            prefix(subnet.network(), subnet.prefix()),
        )
    };
    let masquerade = || Statement::Masquerade(None);
    let mut b = Batch::new();
    b.add(rule(
        "postrouting",
        vec![
            saddr(),
            matches(meta(MetaKey::Oifname), Operator::NEQ, string(bridge)),
            masquerade(),
        ],
        Some(tag.clone()),
    ));
    b.add(rule(
        "postrouting",
        vec![
            saddr(),
            matches(meta(MetaKey::Oifname), Operator::EQ, string(bridge)),
            matches(
                Expression::Named(NamedExpression::CT(CT {
                    key: "status".into(),
                    family: None,
                    dir: None,
                })),
                Operator::IN,
                Expression::String("dnat".into()),
            ),
            masquerade(),
        ],
        Some(tag.clone()),
    ));
    b.add(rule(
        "postrouting",
        vec![
            matches(
                payload("ip", "saddr"),
                Operator::EQ,
                prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
            ),
            matches(meta(MetaKey::Oifname), Operator::EQ, string(bridge)),
            masquerade(),
        ],
        Some(tag),
    ));
    apply(
        b,
        format!("adding the NAT rules of network {name}").as_str(),
    )
}

/// Removes a network's rules.
pub(crate) fn remove_network(name: &str) -> Result<()> {
    delete_tagged(
        &format!("{NETWORK_TAG}{name}"),
        &format!("removing the NAT rules of network {name}"),
    )
    .map(drop)
}

/// Adds a container's DNAT rules for its published ports.
pub(crate) fn add_container(id: &str, ip: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    ensure_table()?;
    let mut b = Batch::new();
    for p in ports {
        let mut expr = Vec::new();
        if let Some(host) = p.host_ip {
            expr.push(matches(
                payload("ip", "daddr"),
                Operator::EQ,
                string(host.to_string()),
            ));
        }
        let proto = match p.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        expr.push(matches(
            payload(proto, "dport"),
            Operator::EQ,
            Expression::Number(u32::from(p.host_port)),
        ));
        expr.push(Statement::DNAT(Some(NAT {
            addr: Some(string(ip.to_string())),
            family: None,
            port: Some(Expression::Number(u32::from(p.container_port))),
            flags: None,
        })));
        b.add(rule(PUBLISHED, expr, Some(format!("{CONTAINER_TAG}{id}"))));
    }
    apply(
        b,
        format!("publishing the ports of container {id}").as_str(),
    )
}

/// Removes a container's rules; returns how many there were.
pub(crate) fn remove_container(id: &str) -> Result<usize> {
    delete_tagged(
        &format!("{CONTAINER_TAG}{id}"),
        &format!("removing the port rules of container {id}"),
    )
}

/// The containers and networks that own rules in the table.
pub(crate) fn owners() -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut containers = BTreeSet::new();
    let mut networks = BTreeSet::new();
    for r in list()?.unwrap_or_default() {
        match r.comment {
            Some(c) if c.starts_with(CONTAINER_TAG) => {
                containers.insert(c[CONTAINER_TAG.len()..].to_owned());
            }
            Some(c) if c.starts_with(NETWORK_TAG) => {
                networks.insert(c[NETWORK_TAG.len()..].to_owned());
            }
            _ => {}
        }
    }
    Ok((containers, networks))
}
