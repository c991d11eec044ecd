//! Statistics in the shape of runc's `events --stats` JSON (`data` of a `stats` event), read
//! from v2 `memory.stat`, `memory.events`, `cpu.stat`, `pids.*`, `io.stat`, `hugetlb.*` or
//! their v1 counterparts; and the OOM-kill count for `events`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::convert::parse_cpu_list;
use crate::error::Result;
use crate::fsutil::{self, read_keyed, read_u64_opt};
use crate::hierarchy::Mode;

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Container statistics (runc's `types.Stats`, without intel_rdt and network interfaces).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: Cpu,
    /// The CPUs and memory nodes the container may use.
    pub cpuset: Cpuset,
    /// Memory usage and limits.
    pub memory: Memory,
    /// Process count and limit.
    pub pids: Pids,
    /// Block I/O counters.
    pub blkio: Blkio,
    /// Huge page usage per page size ("2MB", ...).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// CPU statistics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Cpu {
    /// Time used.
    pub usage: CpuUsage,
    /// CFS throttling.
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CpuUsage {
    /// Total time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per CPU (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per CPU in kernel mode (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per CPU in user mode (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Time in kernel mode.
    pub kernel: u64,
    /// Time in user mode.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Time throttled, in nanoseconds.
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// cpuset statistics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Cpuset {
    /// Effective CPUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u32>,
    /// Effective memory nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u32>,
}

/// Memory statistics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// Page cache (v1 `cache`, v2 `file`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory plus swap (v1 semantics, also on v2).
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Every counter of memory.stat.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// One memory counter with its limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct MemoryEntry {
    /// The limit (`u64::MAX` when unlimited).
    pub limit: u64,
    /// Current usage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

/// pids statistics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Pids {
    /// Processes (and threads) now.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// The limit (`u64::MAX` when unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// Block I/O statistics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Blkio {
    /// Bytes per device and operation.
    #[serde(
        default,
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations per device and operation.
    #[serde(
        default,
        rename = "ioServicedRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// One block I/O counter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// "Read", "Write", "Discard", ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Huge page statistics for one page size.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak bytes (v1 only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

/// USER_HZ, the unit of v1 `cpuacct.stat`.
const USER_HZ: u64 = 100;

impl Cgroup {
    /// Reads the container's statistics. Controllers that are not mounted or enabled read as
    /// zero; a cgroup that no longer exists is an error.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if self.mode == Mode::Unified {
            let Some(h) = self.unified() else {
                return Ok(s);
            };
            fsutil::read(&h.dir, "cgroup.procs")?;
            v2(&h.dir, &mut s)?;
        } else {
            if let Some(d) = self.procs_dir() {
                fsutil::read(d, "cgroup.procs")?;
            }
            self.v1(&mut s)?;
        }
        Ok(s)
    }

    /// How many times the kernel's OOM killer killed a process of the container (v2
    /// `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`).
    pub fn oom_kills(&self) -> Result<u64> {
        let Some(d) = self.controller_dir("memory") else {
            return Ok(0);
        };
        let file = if self.mode == Mode::Unified {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        Ok(read_keyed(d, file)?.get("oom_kill").copied().unwrap_or(0))
    }

    fn v1(&self, s: &mut Stats) -> Result<()> {
        if let Some(d) = self.controller_dir("memory") {
            let raw = read_keyed(d, "memory.stat")?;
            s.memory.cache = raw.get("cache").copied().unwrap_or(0);
            s.memory.raw = raw;
            s.memory.usage = v1_mem_entry(d, "memory")?;
            s.memory.swap = v1_mem_entry(d, "memory.memsw")?;
            s.memory.kernel = v1_mem_entry(d, "memory.kmem")?;
            s.memory.kernel_tcp = v1_mem_entry(d, "memory.kmem.tcp")?;
        }
        if let Some(d) = self.controller_dir("cpuacct") {
            let u = &mut s.cpu.usage;
            u.total = read_u64_opt(d, "cpuacct.usage")?.unwrap_or(0);
            u.percpu = v1_list(d, "cpuacct.usage_percpu")?;
            u.percpu_kernel = v1_list(d, "cpuacct.usage_percpu_sys")?;
            u.percpu_user = v1_list(d, "cpuacct.usage_percpu_user")?;
            let st = read_keyed(d, "cpuacct.stat")?;
            let ns = |k: &str| st.get(k).copied().unwrap_or(0) * (1_000_000_000 / USER_HZ);
            u.user = ns("user");
            u.kernel = ns("system");
        }
        if let Some(d) = self.controller_dir("cpu") {
            let st = read_keyed(d, "cpu.stat")?;
            s.cpu.throttling = Throttling {
                periods: st.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: st.get("throttled_time").copied().unwrap_or(0),
            };
        }
        if let Some(d) = self.controller_dir("cpuset") {
            s.cpuset = cpuset(d, "cpuset.effective_cpus", "cpuset.effective_mems")?;
        }
        if let Some(d) = self.controller_dir("pids") {
            s.pids = pids(d)?;
        }
        if let Some(d) = self.controller_dir("blkio") {
            for prefix in ["blkio.", "blkio.bfq.", "blkio.throttle."] {
                let bytes = fsutil::read_opt(d, &format!("{prefix}io_service_bytes_recursive"))?;
                let ios = fsutil::read_opt(d, &format!("{prefix}io_serviced_recursive"))?;
                if let (Some(b), Some(i)) = (bytes, ios) {
                    s.blkio.io_service_bytes_recursive = parse_blkio_v1(&b);
                    s.blkio.io_serviced_recursive = parse_blkio_v1(&i);
                    if !s.blkio.io_service_bytes_recursive.is_empty() {
                        break;
                    }
                }
            }
        }
        if let Some(d) = self.controller_dir("hugetlb") {
            for size in hugepage_sizes(d, ".limit_in_bytes") {
                let get = |f: &str| read_u64_opt(d, &format!("hugetlb.{size}.{f}"));
                s.hugetlb.insert(
                    size.clone(),
                    Hugetlb {
                        usage: get("usage_in_bytes")?.unwrap_or(0),
                        max: get("max_usage_in_bytes")?.unwrap_or(0),
                        failcnt: get("failcnt")?.unwrap_or(0),
                    },
                );
            }
        }
        Ok(())
    }
}

fn v1_mem_entry(d: &Path, prefix: &str) -> Result<MemoryEntry> {
    let get = |f: &str| read_u64_opt(d, &format!("{prefix}.{f}"));
    Ok(MemoryEntry {
        limit: get("limit_in_bytes")?.unwrap_or(0),
        usage: get("usage_in_bytes")?.unwrap_or(0),
        max: get("max_usage_in_bytes")?.unwrap_or(0),
        failcnt: get("failcnt")?.unwrap_or(0),
    })
}

fn v1_list(d: &Path, file: &str) -> Result<Vec<u64>> {
    Ok(fsutil::read_opt(d, file)?
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect())
}

fn cpuset(d: &Path, cpus: &str, mems: &str) -> Result<Cpuset> {
    let list = |f: &str| -> Result<Vec<u32>> {
        Ok(fsutil::read_opt(d, f)?
            .and_then(|t| parse_cpu_list(&t).ok())
            .map(|s| s.into_iter().collect())
            .unwrap_or_default())
    };
    Ok(Cpuset {
        cpus: list(cpus)?,
        mems: list(mems)?,
    })
}

fn pids(d: &Path) -> Result<Pids> {
    Ok(Pids {
        current: read_u64_opt(d, "pids.current")?.unwrap_or(0),
        limit: read_u64_opt(d, "pids.max")?.unwrap_or(0),
    })
}

/// Page sizes with a `hugetlb.<size><suffix>` file in `d`.
fn hugepage_sizes(d: &Path, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(d) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(suffix))
        {
            if !size.contains('.') {
                out.push(size.to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Parses v1 blkio recursive files: `8:0 Read 4096` lines (the `Total` line is dropped).
pub(crate) fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (dev, op, value) = (it.next()?, it.next()?, it.next()?);
            let (maj, min) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: op.to_owned(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Parses v2 `io.stat` (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`) into runc's
/// bytes and operations lists.
pub(crate) fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value,
            });
        }
    }
    (bytes, ios)
}

fn v2(d: &Path, s: &mut Stats) -> Result<()> {
    let controllers = fsutil::read(d, "cgroup.controllers")?;
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    // cpu.stat's usage lines are there even without the cpu controller.
    let cpu = read_keyed(d, "cpu.stat")?;
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    s.cpu.usage.total = us("usage_usec");
    s.cpu.usage.user = us("user_usec");
    s.cpu.usage.kernel = us("system_usec");
    s.cpu.throttling = Throttling {
        periods: cpu.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    if has("memory") {
        let raw = read_keyed(d, "memory.stat")?;
        s.memory.cache = raw.get("file").copied().unwrap_or(0);
        s.memory.raw = raw;
        let events = read_keyed(d, "memory.events")?;
        s.memory.usage = MemoryEntry {
            limit: read_u64_opt(d, "memory.max")?.unwrap_or(u64::MAX),
            usage: read_u64_opt(d, "memory.current")?.unwrap_or(0),
            max: read_u64_opt(d, "memory.peak")?.unwrap_or(0),
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        // As runc: report memory+swap, as v1 did.
        if let Some(cur) = read_u64_opt(d, "memory.swap.current")? {
            let limit = read_u64_opt(d, "memory.swap.max")?.unwrap_or(u64::MAX);
            let swap_events = read_keyed(d, "memory.swap.events")?;
            s.memory.swap = MemoryEntry {
                limit: if limit == u64::MAX || s.memory.usage.limit == u64::MAX {
                    u64::MAX
                } else {
                    limit + s.memory.usage.limit
                },
                usage: cur + s.memory.usage.usage,
                max: 0,
                failcnt: swap_events.get("max").copied().unwrap_or(0),
            };
        }
    }
    if has("pids") {
        s.pids = pids(d)?;
    }
    if has("cpuset") {
        s.cpuset = cpuset(d, "cpuset.cpus.effective", "cpuset.mems.effective")?;
    }
    if has("io") {
        if let Some(t) = fsutil::read_opt(d, "io.stat")? {
            let (b, i) = parse_io_stat(&t);
            s.blkio.io_service_bytes_recursive = b;
            s.blkio.io_serviced_recursive = i;
        }
    }
    if has("hugetlb") {
        for size in hugepage_sizes(d, ".current") {
            let ev = read_keyed(d, &format!("hugetlb.{size}.events"))?;
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: read_u64_opt(d, &format!("hugetlb.{size}.current"))?.unwrap_or(0),
                    max: 0,
                    failcnt: ev.get("max").copied().unwrap_or(0),
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat() {
        let (b, i) = parse_io_stat("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].op, "Read");
        assert_eq!(b[1].value, 20);
        assert_eq!(i[1].value, 2);
    }

    #[test]
    fn blkio_v1() {
        let e = parse_blkio_v1("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].major, e[0].minor, e[0].value), (8, 0, 4096));
    }

    #[test]
    fn json_names_match_runc() {
        let v = serde_json::to_value(Stats::default()).unwrap();
        assert!(v["memory"]["kernelTCP"].is_object());
        assert!(v["cpu"]["usage"]["kernel"].is_number());
        assert!(v["memory"]["usage"]["failcnt"].is_number());
    }
}
