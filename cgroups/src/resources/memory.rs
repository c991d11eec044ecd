//! `linux.resources.memory`: v1 `memory.limit_in_bytes` & co, v2 `memory.max`, `memory.low`,
//! `memory.swap.max`.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::{check_limit, Target};
use crate::convert::{limit_value, swap_to_v2};
use crate::error::{Error, Result};
use crate::fsutil;

pub(crate) fn apply(t: &Target<'_>, m: &LinuxMemory) -> Result<()> {
    let any = m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some()
        || m.check_before_update().is_some();
    if !any {
        return Ok(());
    }
    let dir = t.dir("memory", "memory")?;
    if m.kernel().is_some_and(|k| k != 0) {
        tracing::warn!(
            "linux.resources.memory.kernel is deprecated and ignored (kernel memory is \
             accounted with user memory)"
        );
    }
    if t.v2() {
        v2(dir, m)
    } else {
        v1(dir, m)
    }
}

fn v1(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = check_limit("memory.limit", m.limit().unwrap_or(0))?;
    let mut swap = check_limit("memory.swap", m.swap().unwrap_or(0))?;
    // runc's setMemoryAndSwap: unlimited memory with swap unset means unlimited swap too, and
    // the order of the two writes must keep memory <= memory+swap at every step.
    if limit == -1 && swap == 0 && fsutil::exists(dir, "memory.memsw.limit_in_bytes") {
        swap = -1;
    }
    let mut swap_first = false;
    if limit != 0 && swap != 0 {
        let cur = fsutil::read_u64(dir, "memory.limit_in_bytes")?;
        swap_first = swap == -1 || cur < swap as u64;
    }
    if swap_first {
        set_swap_v1(dir, swap)?;
        set_limit_v1(dir, limit)?;
    } else {
        set_limit_v1(dir, limit)?;
        set_swap_v1(dir, swap)?;
    }
    if let Some(r) = m.reservation() {
        if check_limit("memory.reservation", r)? != 0 {
            fsutil::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
    }
    if let Some(k) = m.kernel_tcp() {
        if check_limit("memory.kernelTCP", k)? != 0 {
            optional_file(
                dir,
                "memory.kmem.tcp.limit_in_bytes",
                &k.to_string(),
                "memory.kernelTCP",
            )?;
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::invalid(
                "memory.swappiness",
                format!("{s} is out of range (0 to 100)"),
            ));
        }
        fsutil::write(dir, "memory.swappiness", &s.to_string())?;
    }
    if let Some(d) = m.disable_oom_killer() {
        optional_file(
            dir,
            "memory.oom_control",
            if d { "1" } else { "0" },
            "memory.disableOOMKiller",
        )?;
    }
    if let Some(h) = m.use_hierarchy() {
        if let Err(e) = fsutil::write(dir, "memory.use_hierarchy", if h { "1" } else { "0" }) {
            if h {
                return Err(e);
            }
            tracing::warn!("linux.resources.memory.useHierarchy=false ignored: {e}");
        }
    }
    // checkBeforeUpdate: on v1 the kernel itself refuses (EBUSY) a limit below usage.
    Ok(())
}

fn set_limit_v1(dir: &Path, v: i64) -> Result<()> {
    if v == 0 {
        return Ok(());
    }
    match fsutil::write(dir, "memory.limit_in_bytes", &v.to_string()) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let usage = fsutil::read_u64(dir, "memory.usage_in_bytes").unwrap_or(0);
            let peak = fsutil::read_u64(dir, "memory.max_usage_in_bytes").unwrap_or(0);
            Err(Error::invalid(
                "memory.limit",
                format!(
                    "unable to set memory limit to {v} (current usage: {usage}, peak usage: {peak})"
                ),
            ))
        }
        r => r,
    }
}

fn set_swap_v1(dir: &Path, v: i64) -> Result<()> {
    if v == 0 {
        return Ok(());
    }
    if !fsutil::exists(dir, "memory.memsw.limit_in_bytes") {
        if v == -1 {
            return Ok(());
        }
        return Err(Error::unsupported(
            "memory.swap",
            format!(
                "swap accounting is off (no memory.memsw.limit_in_bytes in {})",
                dir.display()
            ),
        ));
    }
    fsutil::write(dir, "memory.memsw.limit_in_bytes", &v.to_string())
}

fn optional_file(dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
    if !fsutil::exists(dir, file) {
        return Err(Error::unsupported(
            field,
            format!("{} does not exist", dir.join(file).display()),
        ));
    }
    fsutil::write(dir, file, value)
}

fn v2(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = check_limit("memory.limit", m.limit().unwrap_or(0))?;
    let swap = check_limit("memory.swap", m.swap().unwrap_or(0))?;
    let swap2 = swap_to_v2(swap, limit).map_err(|r| Error::invalid("memory.swap", r))?;
    let mut swap_str = limit_value(swap2);
    if swap_str.is_none() && swap2 == 0 && swap > 0 {
        // memory == memory+swap: no swap at all.
        swap_str = Some("0".to_owned());
    }
    if let Some(s) = swap_str {
        match fsutil::write(dir, "memory.swap.max", &s) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // Without swap accounting, "max" and "0" are what the container gets anyway.
                if s != "max" && s != "0" {
                    return Err(Error::unsupported(
                        "memory.swap",
                        format!(
                            "swap accounting is off (no memory.swap.max in {})",
                            dir.display()
                        ),
                    ));
                }
            }
            r => r?,
        }
    }
    if let Some(v) = limit_value(limit) {
        if m.check_before_update() == Some(true) && limit > 0 {
            let usage = fsutil::read_u64(dir, "memory.current")?;
            if usage > limit as u64 {
                return Err(Error::invalid(
                    "memory.limit",
                    format!("rejecting memory limit {limit}: below the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
        fsutil::write(dir, "memory.max", &v)?;
    }
    if let Some(r) = m.reservation() {
        if let Some(v) = limit_value(check_limit("memory.reservation", r)?) {
            fsutil::write(dir, "memory.low", &v)?;
        }
    }
    if m.kernel_tcp().is_some_and(|k| k != 0) {
        tracing::warn!("linux.resources.memory.kernelTCP is ignored on cgroup v2 (no such limit)");
    }
    if m.swappiness().is_some() {
        tracing::warn!("linux.resources.memory.swappiness is ignored on cgroup v2 (no such knob)");
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!(
            "linux.resources.memory.disableOOMKiller is ignored on cgroup v2 (the OOM killer \
             cannot be disabled per cgroup)"
        );
    }
    Ok(())
}
