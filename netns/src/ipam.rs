//! Address management: leases of one network in a JSON file guarded by an exclusive `flock`,
//! so concurrent berth processes (and threads) never hand out the same address, and leases
//! survive restarts until released.
//!
//! Allocation goes round-robin from the last address handed out, so an address just released
//! is not reused at once (stale ARP entries elsewhere would point at the old MAC).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{read_json, remove_file, write_json, Lock};
use crate::subnet::Subnet;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Leases {
    /// The last address handed out (the round-robin cursor).
    #[serde(default)]
    last: Option<Ipv4Addr>,
    /// Address → owner (a container id).
    #[serde(default)]
    leases: BTreeMap<Ipv4Addr, String>,
}

/// The address pool of one network.
#[derive(Debug, Clone)]
pub struct Ipam {
    network: String,
    subnet: Subnet,
    gateway: Ipv4Addr,
    file: PathBuf,
    lock: PathBuf,
}

impl Ipam {
    /// The pool of network `network` over `subnet`, never handing out `gateway`, the network
    /// or the broadcast address; its files are `<dir>/<network>.json` and `<dir>/<network>.lock`.
    pub fn new(dir: &Path, network: &str, subnet: Subnet, gateway: Ipv4Addr) -> Self {
        Self {
            network: network.to_owned(),
            subnet,
            gateway,
            file: dir.join(format!("{network}.json")),
            lock: dir.join(format!("{network}.lock")),
        }
    }

    fn with_leases<T>(&self, f: impl FnOnce(&mut Leases) -> Result<(T, bool)>) -> Result<T> {
        let _guard = Lock::exclusive(&self.lock)?;
        let mut leases: Leases = read_json(&self.file)?.unwrap_or_default();
        let (out, dirty) = f(&mut leases)?;
        if dirty {
            write_json(&self.file, &leases)?;
        }
        Ok(out)
    }

    /// Leases an address to `owner`; the same owner asking again gets its address back.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        self.with_leases(|l| {
            if let Some((ip, _)) = l.leases.iter().find(|(_, o)| *o == owner) {
                return Ok((*ip, false));
            }
            let size = self.subnet.size();
            // Usable host numbers: 1..size-1 (network and broadcast excluded) for prefixes
            // up to /30; /31 and /32 use every address.
            let (lo, hi) = if size > 2 {
                (1u64, size - 2)
            } else {
                (0, size - 1)
            };
            let span = hi - lo + 1;
            let start = l
                .last
                .filter(|ip| self.subnet.contains(*ip))
                .map_or(lo, |ip| {
                    u64::from(u32::from(ip) - u32::from(self.subnet.network())) + 1
                });
            for i in 0..span {
                let n = lo + (start.saturating_sub(lo) + i) % span;
                let ip = self.subnet.nth(n as u32).expect("inside the subnet");
                if ip == self.gateway || l.leases.contains_key(&ip) {
                    continue;
                }
                l.leases.insert(ip, owner.to_owned());
                l.last = Some(ip);
                return Ok((ip, true));
            }
            Err(Error::PoolExhausted {
                network: self.network.clone(),
                subnet: self.subnet.to_string(),
            })
        })
    }

    /// Leases `ip` to `owner`: refused if it is outside the subnet, the gateway, the network or
    /// broadcast address, or leased to another owner. An owner holding another address of
    /// this pool keeps it and is refused (release it first).
    pub fn allocate_at(&self, owner: &str, ip: Ipv4Addr) -> Result<Ipv4Addr> {
        let size = self.subnet.size();
        let edge = size > 2 && (ip == self.subnet.network() || ip == self.subnet.broadcast());
        if !self.subnet.contains(ip) || ip == self.gateway || edge {
            return Err(Error::InvalidConfig {
                value: ip.to_string(),
                reason: format!(
                    "not an address network {} can lease (subnet {}, gateway {})",
                    self.network, self.subnet, self.gateway
                ),
            });
        }
        self.with_leases(
            |l| match l.leases.iter().find(|(a, o)| **a == ip || *o == owner) {
                Some((held, o)) if *held == ip && o == owner => Ok((ip, false)),
                Some((held, o)) => Err(Error::AddressInUse {
                    network: self.network.clone(),
                    address: *held,
                    container: o.clone(),
                }),
                None => {
                    l.leases.insert(ip, owner.to_owned());
                    Ok((ip, true))
                }
            },
        )
    }

    /// Releases every lease of `owner`; returns the address it held, if any.
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>> {
        self.with_leases(|l| {
            let held: Vec<Ipv4Addr> = l
                .leases
                .iter()
                .filter(|(_, o)| *o == owner)
                .map(|(ip, _)| *ip)
                .collect();
            for ip in &held {
                l.leases.remove(ip);
            }
            Ok((held.first().copied(), !held.is_empty()))
        })
    }

    /// Every lease: address → owner.
    pub fn leases(&self) -> Result<BTreeMap<Ipv4Addr, String>> {
        self.with_leases(|l| Ok((l.leases.clone(), false)))
    }

    /// Removes the pool's files (when its network is removed).
    pub fn remove_files(&self) -> Result<()> {
        remove_file(&self.file)?;
        remove_file(&self.lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn pool(dir: &Path, subnet: &str) -> Ipam {
        let subnet: Subnet = subnet.parse().unwrap();
        Ipam::new(dir, "t", subnet, subnet.nth(1).unwrap())
    }

    #[test]
    fn allocates_skipping_gateway_and_is_idempotent_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), "10.1.0.0/24");
        let a = p.allocate("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(p.allocate("a").unwrap(), a);
        assert_eq!(p.allocate("b").unwrap(), Ipv4Addr::new(10, 1, 0, 3));
    }

    #[test]
    fn release_and_round_robin() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), "10.1.0.0/24");
        let a = p.allocate("a").unwrap();
        assert_eq!(p.release("a").unwrap(), Some(a));
        assert_eq!(p.release("a").unwrap(), None);
        // The released address is not handed out again right away.
        assert_eq!(p.allocate("b").unwrap(), Ipv4Addr::new(10, 1, 0, 3));
        assert!(p.leases().unwrap().values().all(|o| o == "b"));
    }

    #[test]
    fn allocate_at_takes_the_address_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), "10.1.0.0/24");
        let want = Ipv4Addr::new(10, 1, 0, 77);
        assert_eq!(p.allocate_at("a", want).unwrap(), want);
        assert_eq!(p.allocate_at("a", want).unwrap(), want);
        assert_eq!(p.allocate("a").unwrap(), want);
        assert!(matches!(
            p.allocate_at("b", want),
            Err(Error::AddressInUse { .. })
        ));
        assert!(matches!(
            p.allocate_at("a", Ipv4Addr::new(10, 1, 0, 78)),
            Err(Error::AddressInUse { .. })
        ));
        for bad in [[10, 1, 0, 1], [10, 1, 0, 0], [10, 1, 0, 255], [10, 2, 0, 5]] {
            assert!(matches!(
                p.allocate_at("c", Ipv4Addr::from(bad)),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn exhaustion_names_the_network() {
        let dir = tempfile::tempdir().unwrap();
        // /29: 8 addresses, minus network, broadcast and gateway = 5.
        let p = pool(dir.path(), "10.1.0.0/29");
        for i in 0..5 {
            p.allocate(&format!("c{i}")).unwrap();
        }
        let err = p.allocate("late").unwrap_err();
        assert!(matches!(err, Error::PoolExhausted { .. }));
        assert_eq!(
            err.to_string(),
            "address pool of network t (10.1.0.0/29) is exhausted: every address is leased"
        );
        p.release("c3").unwrap();
        assert_eq!(p.allocate("late").unwrap(), Ipv4Addr::new(10, 1, 0, 5));
    }

    #[test]
    fn leases_survive_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let a = pool(dir.path(), "10.1.0.0/24").allocate("a").unwrap();
        let again = pool(dir.path(), "10.1.0.0/24");
        assert_eq!(
            again.leases().unwrap().get(&a).map(String::as_str),
            Some("a")
        );
        assert_eq!(again.allocate("b").unwrap(), Ipv4Addr::new(10, 1, 0, 3));
        again.remove_files().unwrap();
        assert!(pool(dir.path(), "10.1.0.0/24").leases().unwrap().is_empty());
    }

    #[test]
    fn concurrent_allocations_from_threads_never_collide() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = Arc::clone(&dir);
                std::thread::spawn(move || {
                    // Each thread has its own instance, hence its own open of the lock file.
                    let p = pool(dir.path(), "10.2.0.0/24");
                    (0..20)
                        .map(|i| p.allocate(&format!("t{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(all.len(), 160);
        assert_eq!(
            all.iter().collect::<HashSet<_>>().len(),
            160,
            "an address was leased twice"
        );
        assert_eq!(pool(dir.path(), "10.2.0.0/24").leases().unwrap().len(), 160);
    }
}
