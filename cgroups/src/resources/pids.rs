//! `linux.resources.pids`: `pids.max` on v1 and v2.

use oci_spec::runtime::LinuxPids;

use super::Target;
use crate::error::Result;
use crate::fsutil;

pub(crate) fn apply(t: &Target<'_>, p: LinuxPids) -> Result<()> {
    let limit = p.limit();
    // As runc: 0 leaves the limit alone, a negative one means unlimited.
    if limit == 0 {
        return Ok(());
    }
    let dir = t.dir("pids", "pids.limit")?;
    let value = if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    };
    fsutil::write(dir, "pids.max", &value)
}
