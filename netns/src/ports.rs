//! Published ports: `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port: traffic to `host_ip:host_port` (any local address when `host_ip` is
/// `None`) is forwarded to the container's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to listen on; `None` for every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl PortMapping {
    /// Whether two mappings claim the same host socket (same protocol and port, and addresses
    /// equal or one of them unspecified).
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

fn port(spec: &str, what: &str, text: &str) -> Result<u16, Error> {
    let bad = |reason: String| Error::InvalidPort {
        spec: spec.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(bad(format!("{what} is empty")));
    }
    match text.parse::<u16>() {
        Ok(0) => Err(bad(format!("{what} 0 is not a port"))),
        Ok(p) => Ok(p),
        Err(_) => Err(bad(format!(
            "{what} {text:?} is not a number from 1 to 65535"
        ))),
    }
}

impl FromStr for PortMapping {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidPort {
            spec: spec.to_owned(),
            reason,
        };
        let (ports, protocol) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some((_, other)) => return Err(bad(format!("protocol {other:?} is not tcp or udp"))),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [h, c] => (None, *h, *c),
            [ip, h, c] => {
                let ip =
                    if ip.is_empty() {
                        None
                    } else {
                        Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                            bad(format!("host address {ip:?} is not an IPv4 address"))
                        })?)
                    };
                (ip.filter(|ip| !ip.is_unspecified()), *h, *c)
            }
            [_] => return Err(bad(
                "expected HOSTPORT:CONTAINERPORT (publishing without a host port is not supported)"
                    .into(),
            )),
            _ => {
                return Err(bad(
                    "expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]".into()
                ))
            }
        };
        Ok(PortMapping {
            host_ip,
            host_port: port(spec, "host port", host_port)?,
            container_port: port(spec, "container port", container_port)?,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortMapping {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        s.parse::<PortMapping>().unwrap_err().to_string()
    }

    #[test]
    fn parses_the_docker_forms() {
        assert_eq!(
            p("8080:80"),
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(
            p("127.0.0.1:8080:80/udp"),
            PortMapping {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Udp
            }
        );
        assert_eq!(p("53:53/udp").protocol, Protocol::Udp);
        assert_eq!(p("443:8443/tcp").container_port, 8443);
        assert_eq!(p(":8080:80").host_ip, None);
        assert_eq!(p("0.0.0.0:8080:80").host_ip, None);
        assert_eq!(p("192.0.2.7:1:2").to_string(), "192.0.2.7:1:2/tcp");
        assert_eq!(p("8080:80").to_string(), "8080:80/tcp");
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(err("80"), "invalid port mapping \"80\": expected HOSTPORT:CONTAINERPORT (publishing without a host port is not supported)");
        assert_eq!(
            err("8080:80/sctp"),
            "invalid port mapping \"8080:80/sctp\": protocol \"sctp\" is not tcp or udp"
        );
        assert_eq!(err("70000:80"), "invalid port mapping \"70000:80\": host port \"70000\" is not a number from 1 to 65535");
        assert_eq!(
            err("8080:0"),
            "invalid port mapping \"8080:0\": container port 0 is not a port"
        );
        assert_eq!(
            err("8080:"),
            "invalid port mapping \"8080:\": container port is empty"
        );
        assert_eq!(
            err("host:8080:80"),
            "invalid port mapping \"host:8080:80\": host address \"host\" is not an IPv4 address"
        );
        assert_eq!(
            err("1:2:3:4"),
            "invalid port mapping \"1:2:3:4\": expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]"
        );
    }

    #[test]
    fn conflicts() {
        assert!(p("8080:80").conflicts_with(&p("127.0.0.1:8080:81")));
        assert!(!p("127.0.0.2:8080:80").conflicts_with(&p("127.0.0.1:8080:80")));
        assert!(!p("8080:80/udp").conflicts_with(&p("8080:80")));
        assert!(!p("8081:80").conflicts_with(&p("8080:80")));
    }
}
