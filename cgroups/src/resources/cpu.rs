//! `linux.resources.cpu` scheduling fields: v1 `cpu.shares`, `cpu.cfs_*`, `cpu.rt_*`,
//! `cpu.idle`; v2 `cpu.weight`, `cpu.max`, `cpu.max.burst`, `cpu.idle`. (`cpus`/`mems` are in
//! [`super::cpuset`].)

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::Target;
use crate::convert::{check_quota_period, cpu_max, shares_to_weight};
use crate::error::{Error, Result};
use crate::fsutil;

pub(crate) fn apply(t: &Target<'_>, c: &LinuxCpu) -> Result<()> {
    let any = c.shares().is_some_and(|s| s != 0)
        || c.quota().is_some_and(|q| q != 0)
        || c.period().is_some_and(|p| p != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some_and(|p| p != 0)
        || c.realtime_runtime().is_some_and(|r| r != 0);
    if !any {
        return Ok(());
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    check_quota_period(quota, period).map_err(|r| Error::invalid("cpu.quota", r))?;
    let realtime =
        c.realtime_period().is_some_and(|p| p != 0) || c.realtime_runtime().is_some_and(|r| r != 0);
    if t.v2() && realtime {
        return Err(Error::unsupported(
            "cpu.realtimeRuntime",
            "cgroup v2 has no realtime group scheduling",
        ));
    }
    let dir = t.dir("cpu", "cpu")?;
    if t.v2() {
        v2(dir, c, quota, period)
    } else {
        v1(dir, c, quota, period)
    }
}

/// Writes `file`, tolerating EINVAL when `retry_later` (the value may only fit once the
/// quota is written); returns whether it still has to be written.
fn write_or_defer(dir: &Path, file: &str, value: &str, retry_later: bool) -> Result<bool> {
    match fsutil::write(dir, file, value) {
        Ok(()) => Ok(false),
        Err(e) if retry_later && e.raw_os_error() == Some(libc::EINVAL) => Ok(true),
        Err(e) => Err(e),
    }
}

fn v1(dir: &Path, c: &LinuxCpu, quota: i64, period: u64) -> Result<()> {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        fsutil::write(dir, "cpu.shares", &s.to_string())?;
        let got = fsutil::read_u64(dir, "cpu.shares")?;
        if got != s {
            let which = if s > got { "maximum" } else { "minimum" };
            return Err(Error::invalid(
                "cpu.shares",
                format!("{s} is out of range: the {which} allowed cpu-shares is {got}"),
            ));
        }
    }
    // runc's order: period, burst, quota, then the deferred ones again.
    let period_s = period.to_string();
    let defer_period =
        period != 0 && write_or_defer(dir, "cpu.cfs_period_us", &period_s, quota != 0)?;
    let burst_s = c.burst().map(|b| b.to_string());
    let mut defer_burst = false;
    if let Some(b) = &burst_s {
        require(dir, "cpu.cfs_burst_us", "cpu.burst")?;
        defer_burst = write_or_defer(dir, "cpu.cfs_burst_us", b, quota != 0)?;
    }
    if quota != 0 {
        fsutil::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if defer_period {
            fsutil::write(dir, "cpu.cfs_period_us", &period_s)?;
        }
        if let (true, Some(b)) = (defer_burst, &burst_s) {
            fsutil::write(dir, "cpu.cfs_burst_us", b)?;
        }
    }
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        require(dir, "cpu.rt_period_us", "cpu.realtimePeriod")?;
        fsutil::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
        require(dir, "cpu.rt_runtime_us", "cpu.realtimeRuntime")?;
        fsutil::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    if let Some(i) = c.idle() {
        require(dir, "cpu.idle", "cpu.idle")?;
        fsutil::write(dir, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

fn require(dir: &Path, file: &str, field: &str) -> Result<()> {
    if fsutil::exists(dir, file) {
        Ok(())
    } else {
        Err(Error::unsupported(
            field,
            format!(
                "{} does not exist (kernel without this feature)",
                dir.join(file).display()
            ),
        ))
    }
}

fn v2(dir: &Path, c: &LinuxCpu, quota: i64, period: u64) -> Result<()> {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        fsutil::write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if let Some(i) = c.idle() {
        require(dir, "cpu.idle", "cpu.idle")?;
        fsutil::write(dir, "cpu.idle", &i.to_string())?;
    }
    let max = cpu_max(quota, period);
    let burst_s = c.burst().map(|b| b.to_string());
    let mut defer_burst = false;
    if let Some(b) = &burst_s {
        require(dir, "cpu.max.burst", "cpu.burst")?;
        defer_burst = write_or_defer(dir, "cpu.max.burst", b, max.is_some())?;
    }
    if let Some(m) = max {
        fsutil::write(dir, "cpu.max", &m)?;
        if let (true, Some(b)) = (defer_burst, &burst_s) {
            fsutil::write(dir, "cpu.max.burst", b)?;
        }
    }
    Ok(())
}
