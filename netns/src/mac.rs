//! MAC addresses.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The address berth gives a container by default: locally administered, unicast,
    /// `02:42` followed by the container's IPv4 address (unique within a network).
    pub fn from_ip(ip: Ipv4Addr) -> Self {
        let [a, b, c, d] = ip.octets();
        Self([0x02, 0x42, a, b, c, d])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| Error::InvalidMac(s.to_owned()))?;
            *byte = u8::from_str_radix(p, 16).map_err(|_| Error::InvalidMac(s.to_owned()))?;
        }
        if parts.next().is_some() || out[0] & 1 == 1 || out == [0; 6] {
            // Trailing bytes, a multicast address or all zeroes cannot name an interface.
            return Err(Error::InvalidMac(s.to_owned()));
        }
        Ok(Self(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_default() {
        let m: MacAddr = "02:42:0A:58:00:02".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:0a:58:00:02");
        assert_eq!(MacAddr::from_ip(Ipv4Addr::new(10, 88, 0, 2)), m);
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().is_err());
        assert!("02:42:0a:58:00".parse::<MacAddr>().is_err());
        assert!("02:42:0a:58:00:02:03".parse::<MacAddr>().is_err());
    }
}
