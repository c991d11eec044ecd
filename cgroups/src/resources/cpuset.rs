//! `linux.resources.cpu.cpus` / `.mems`: `cpuset.cpus` and `cpuset.mems` on v1 and v2, and
//! the v1 rule that a new cpuset must be filled from its parent before it can hold tasks.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::Target;
use crate::convert::{format_cpu_list, parse_cpu_list};
use crate::error::{Error, Result};
use crate::fsutil;

pub(crate) fn apply(t: &Target<'_>, c: &LinuxCpu) -> Result<()> {
    for (field, file, value) in [
        ("cpu.cpus", "cpuset.cpus", c.cpus()),
        ("cpu.mems", "cpuset.mems", c.mems()),
    ] {
        let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let set = parse_cpu_list(v).map_err(|r| Error::invalid(field, r))?;
        let dir = t.dir("cpuset", field)?;
        match fsutil::write(dir, file, &format_cpu_list(&set)) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let avail = fsutil::read(dir, &effective(file))
                    .or_else(|_| fsutil::read(dir.parent().unwrap_or(dir), file))
                    .unwrap_or_default();
                return Err(Error::invalid(
                    field,
                    format!("{v:?} is not a subset of the available {:?}", avail.trim()),
                ));
            }
            r => r?,
        }
    }
    Ok(())
}

fn effective(file: &str) -> String {
    file.replace("cpuset.", "cpuset.effective_")
}

/// On v1, copies the parent's `cpuset.cpus` and `cpuset.mems` into `dir` where they are
/// empty (a new cpuset starts empty and cannot take tasks until filled).
pub(crate) fn inherit_parent(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = fsutil::read(dir, file)?;
        if own.trim().is_empty() {
            let p = fsutil::read(parent, file)?;
            if !p.trim().is_empty() {
                fsutil::write(dir, file, p.trim())?;
            }
        }
    }
    Ok(())
}
