//! `berth update`: a container's resource limits, from a JSON document and flags.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Ctx;

/// The arguments of `update`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct UpdateArgs {
    /// linux.resources JSON from a file, or `-` for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory reservation (soft limit).
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit; -1 for unlimited.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU CFS quota in microseconds per period; -1 for unlimited.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    /// CPUs allowed (e.g. 0-1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes; -1 for unlimited.
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight (10-1000).
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Container ID.
    pub id: String,
}

/// `berth update`.
pub fn update(cx: &Ctx, a: &UpdateArgs) -> Result<()> {
    berth_runtime::update(&cx.root, &a.id, &update_resources(a)?)?;
    Ok(())
}

/// `update`'s resources: the JSON document if given, with the flags applied on top.
fn update_resources(a: &UpdateArgs) -> Result<berth_runtime::oci::LinuxResources> {
    use berth_runtime::oci::{LinuxPids, LinuxResources};
    let mut r: LinuxResources = match &a.resources {
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("reading --resources from stdin")?;
            berth_runtime::config::parse_resources(&buf).context("--resources -")?
        }
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("--resources {}", p.display()))?;
            berth_runtime::config::parse_resources(&bytes)
                .with_context(|| format!("--resources {}", p.display()))?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut mem = r.memory().unwrap_or_default();
        if let Some(v) = &a.memory {
            mem.set_limit(Some(parse_bytes(v).context("--memory")?));
        }
        if let Some(v) = &a.memory_reservation {
            mem.set_reservation(Some(parse_bytes(v).context("--memory-reservation")?));
        }
        if let Some(v) = &a.memory_swap {
            mem.set_swap(Some(parse_bytes(v).context("--memory-swap")?));
        }
        r.set_memory(Some(mem));
    }
    if a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpu_share.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut cpu = r.cpu().clone().unwrap_or_default();
        if a.cpu_quota.is_some() {
            cpu.set_quota(a.cpu_quota);
        }
        if a.cpu_period.is_some() {
            cpu.set_period(a.cpu_period);
        }
        if a.cpu_share.is_some() {
            cpu.set_shares(a.cpu_share);
        }
        if a.cpuset_cpus.is_some() {
            cpu.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            cpu.set_mems(a.cpuset_mems.clone());
        }
        r.set_cpu(Some(cpu));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut io = r.block_io().clone().unwrap_or_default();
        io.set_weight(Some(w));
        r.set_block_io(Some(io));
    }
    Ok(r)
}

/// Bytes with an optional k/m/g (binary) suffix; -1 for unlimited.
fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size"))?;
    if n == -1 {
        return Ok(-1);
    }
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}
