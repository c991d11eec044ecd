//! Container networking for berth, spoken over netlink.
//!
//! This crate will own bridges, veth pairs, addresses, routes, an IPAM, NAT and published ports
//! for people who run containers with `berth run IMAGE` directly (engines bring their own
//! networking).
//!
//! Nothing is implemented yet.
