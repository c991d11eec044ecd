//! `linux.resources.network`: v1 `net_cls.classid` and `net_prio.ifpriomap`; cgroup v2 has no
//! such controllers.

use oci_spec::runtime::LinuxNetwork;

use super::Target;
use crate::error::{Error, Result};
use crate::fsutil;

pub(crate) fn apply(t: &Target<'_>, n: &LinuxNetwork) -> Result<()> {
    let prios = n.priorities().as_deref().unwrap_or_default();
    if n.class_id().is_none() && prios.is_empty() {
        return Ok(());
    }
    if t.v2() {
        return Err(Error::unsupported(
            "network",
            "cgroup v2 has no net_cls/net_prio controllers",
        ));
    }
    if let Some(id) = n.class_id() {
        let dir = t.dir("net_cls", "network.classID")?;
        fsutil::write(dir, "net_cls.classid", &id.to_string())?;
    }
    for (i, p) in prios.iter().enumerate() {
        let field = format!("network.priorities[{i}]");
        let name = p.name();
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
            return Err(Error::invalid(
                field,
                format!("bad interface name {name:?}"),
            ));
        }
        let dir = t.dir("net_prio", &field)?;
        fsutil::write(
            dir,
            "net_prio.ifpriomap",
            &format!("{name} {}", p.priority()),
        )?;
    }
    Ok(())
}
