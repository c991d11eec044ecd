//! `linux.resources.rdma`: `rdma.max` lines (`<device> hca_handle=N hca_object=M`), v1 and v2.

use std::collections::HashMap;
use std::fmt::Write as _;

use oci_spec::runtime::LinuxRdma;

use super::Target;
use crate::error::{Error, Result};
use crate::fsutil;

pub(crate) fn apply(t: &Target<'_>, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
    let mut devices: Vec<(&String, &LinuxRdma)> = rdma.iter().collect();
    devices.sort_by_key(|(d, _)| d.as_str());
    for (dev, l) in devices {
        let field = format!("rdma.{dev:?}");
        if dev.is_empty() || dev.contains(char::is_whitespace) {
            return Err(Error::invalid(field, "bad device name"));
        }
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            let _ = write!(line, " hca_handle={h}");
        }
        if let Some(o) = l.hca_objects() {
            let _ = write!(line, " hca_object={o}");
        }
        if line == *dev {
            continue;
        }
        let dir = t.dir("rdma", &field)?;
        fsutil::write(dir, "rdma.max", &line)?;
    }
    Ok(())
}
