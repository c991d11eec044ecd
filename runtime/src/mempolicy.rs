//! `linux.memoryPolicy` (runtime-spec 1.3): the NUMA memory policy of the container's init,
//! validated in the parent and applied with `set_mempolicy(2)` just before the init execs (a
//! policy is inherited across fork and exec). The node list ("0-3,7") becomes a node mask.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use crate::error::{Error, Result};

/// The highest node number accepted (the kernel's `MAX_NUMNODES` on x86_64 builds is 1024 at
/// most); larger numbers are refused before any syscall.
const MAX_NODES: usize = 1024;

/// A validated policy, ready for `set_mempolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPolicy {
    /// The mode with its `MPOL_F_*` flags or-ed in.
    mode: i32,
    /// The node mask, one bit per node.
    mask: Vec<libc::c_ulong>,
}

const BITS: usize = libc::c_ulong::BITS as usize;

impl MemPolicy {
    /// Validates `linux.memoryPolicy`.
    pub fn new(p: &LinuxMemoryPolicy) -> Result<Self> {
        let field = "linux.memoryPolicy";
        let mut mode = match p.mode() {
            MemoryPolicyModeType::MpolDefault => 0,
            MemoryPolicyModeType::MpolPreferred => 1,
            MemoryPolicyModeType::MpolBind => 2,
            MemoryPolicyModeType::MpolInterleave => 3,
            MemoryPolicyModeType::MpolLocal => 4,
            MemoryPolicyModeType::MpolPreferredMany => 5,
            MemoryPolicyModeType::MpolWeightedInterleave => 6,
        };
        let nodes = p.nodes().as_deref().unwrap_or("").trim();
        let mask = parse_nodes(nodes).map_err(|e| Error::config(format!("{field}.nodes"), e))?;
        let empty = mask.iter().all(|w| *w == 0);
        match p.mode() {
            MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal if !empty => {
                return Err(Error::config(
                    format!("{field}.nodes"),
                    format!("{} takes no nodes", p.mode()),
                ));
            }
            MemoryPolicyModeType::MpolBind
            | MemoryPolicyModeType::MpolInterleave
            | MemoryPolicyModeType::MpolWeightedInterleave
            | MemoryPolicyModeType::MpolPreferredMany
                if empty =>
            {
                return Err(Error::config(
                    format!("{field}.nodes"),
                    format!("{} needs at least one node", p.mode()),
                ));
            }
            _ => {}
        }
        for f in p.flags().iter().flatten() {
            mode |= match f {
                MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
                MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
                MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            };
        }
        Ok(MemPolicy { mode, mask })
    }

    /// Applies the policy to the calling process (`set_mempolicy`).
    pub fn apply(&self) -> Result<()> {
        if let Err(e) = berth_sys::mem::set_mempolicy(self.mode, &self.mask) {
            let hint = match e.raw_os_error() {
                Some(libc::ENOSYS) => " (this kernel has no NUMA support)",
                Some(libc::EINVAL) => {
                    " (mode, flags and nodes do not fit together, or a node does not exist)"
                }
                _ => "",
            };
            return Err(Error::Io {
                context: format!("linux.memoryPolicy: set_mempolicy{hint}"),
                err: e,
            });
        }
        Ok(())
    }
}

/// Parses a node list such as `0-3,7` into a mask (the list syntax is cpuset's).
fn parse_nodes(s: &str) -> std::result::Result<Vec<libc::c_ulong>, String> {
    let nodes = berth_cgroups::convert::parse_cpu_list(s)?;
    let mut mask: Vec<libc::c_ulong> = Vec::new();
    for n in nodes {
        let n = n as usize;
        if n >= MAX_NODES {
            return Err(format!("node {n} is beyond the limit of {MAX_NODES} nodes"));
        }
        if mask.len() <= n / BITS {
            mask.resize(n / BITS + 1, 0);
        }
        mask[n / BITS] |= 1 << (n % BITS);
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<MemPolicy> {
        MemPolicy::new(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn node_lists() {
        assert_eq!(parse_nodes("0-3,7").unwrap(), vec![0b1000_1111]);
        assert_eq!(parse_nodes("64").unwrap(), vec![0, 1]);
        assert!(parse_nodes("0-9876543210").is_err());
        assert!(parse_nodes("3-1").is_err());
        assert!(parse_nodes("x").is_err());
        assert!(parse_nodes("1,,2").is_err());
    }

    #[test]
    fn modes_and_flags() {
        let p =
            policy(r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES"]}"#).unwrap();
        assert_eq!(p.mode, 2 | 1 << 15);
        assert!(policy(r#"{"mode":"MPOL_DEFAULT"}"#).is_ok());
        let e = policy(r#"{"mode":"MPOL_DEFAULT","nodes":"0"}"#).unwrap_err();
        assert!(e.to_string().contains("linux.memoryPolicy.nodes"), "{e}");
        assert!(policy(r#"{"mode":"MPOL_INTERLEAVE"}"#).is_err());
    }

    #[test]
    fn bad_mode_or_flag_fails_to_parse() {
        assert!(serde_json::from_str::<LinuxMemoryPolicy>(r#"{"mode":"bad"}"#).is_err());
        assert!(serde_json::from_str::<LinuxMemoryPolicy>(r#"{"nodes":"0-7"}"#).is_err());
        assert!(serde_json::from_str::<LinuxMemoryPolicy>(
            r#"{"mode":"MPOL_BIND","nodes":"0","flags":["badflag"]}"#
        )
        .is_err());
    }
}
