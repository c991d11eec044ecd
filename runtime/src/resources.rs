//! The container's cgroups as `create` sets them up: resolved from `linux.cgroupsPath`,
//! created, and configured with `linux.resources` before the init is cloned into them.

use std::path::PathBuf;

use berth_cgroups::Cgroup;
use oci_spec::runtime::Linux;

use crate::error::Result;

/// Creates and configures the container's cgroups. Returns `None` when berth runs without
/// the right to manage cgroups (rootless), after saying so: the spec lets such a runtime go on.
pub fn setup(linux: &Linux, id: &str) -> Result<Option<Cgroup>> {
    // Without a cgroupsPath each container gets its own top-level cgroup, so deleting one
    // container never leaves a shared parent behind.
    let path = linux
        .cgroups_path()
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/berth-{id}")));
    let mut cg = Cgroup::resolve(Some(&path), id)?;
    if let Err(e) = cg.create() {
        let denied = matches!(
            e.raw_os_error(),
            Some(libc::EACCES | libc::EPERM | libc::EROFS)
        );
        if denied && !nix::unistd::geteuid().is_root() {
            tracing::warn!("cgroups skipped: {e} (rootless; no resource limits are applied)");
            return Ok(None);
        }
        return Err(e.into());
    }
    let mut res = linux.resources().clone().unwrap_or_default();
    if res.devices().is_none() {
        // runc reads a missing device list as an empty one: deny all but the defaults.
        res.set_devices(Some(Vec::new()));
    }
    if let Err(e) = cg.apply(&res) {
        let _ = cg.destroy();
        return Err(e.into());
    }
    Ok(Some(cg))
}
