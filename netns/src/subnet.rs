//! IPv4 subnets (`10.88.0.0/16`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// An IPv4 subnet: a network address with its prefix length (host bits are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// A subnet from any address inside it and a prefix length (0..=32); host bits are cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, Error> {
        if prefix > 32 {
            return Err(Error::InvalidConfig {
                value: format!("{addr}/{prefix}"),
                reason: "prefix length above 32".into(),
            });
        }
        let mask = Self::mask_of(prefix);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address (the last one of the subnet).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !Self::mask_of(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.network)
    }

    /// Whether two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `n`-th address of the subnet (0 is the network address), if inside.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// How many addresses the subnet spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidConfig {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("prefix length is not a number"))?;
        let subnet = Subnet::new(addr, prefix)?;
        if subnet.network != addr {
            return Err(bad("host bits set (give the network address)"));
        }
        Ok(subnet)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let s: Subnet = "10.88.0.0/16".parse().unwrap();
        assert!(s.contains("10.88.255.1".parse().unwrap()));
        assert!(!s.contains("10.89.0.1".parse().unwrap()));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 88, 255, 255));
        assert_eq!(s.nth(1), Some(Ipv4Addr::new(10, 88, 0, 1)));
        assert!("10.88.0.1/16".parse::<Subnet>().is_err());
        assert!("10.88.0.0/33".parse::<Subnet>().is_err());
        let t: Subnet = "10.88.128.0/17".parse().unwrap();
        assert!(s.overlaps(&t) && t.overlaps(&s));
        assert!(!t.overlaps(&"10.88.0.0/17".parse().unwrap()));
    }
}
