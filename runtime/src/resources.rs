//! The container's cgroups as `create` sets them up: resolved from `linux.cgroupsPath` and
//! created before the init is cloned into them, then configured with `linux.resources` while
//! the init builds its root filesystem; the device filter is put in force once the init has
//! made its device nodes (before any hook), as runc sets its device rules after them. The
//! init runs only berth's own code until `create` has done both: the user's program cannot
//! start before.

use std::path::PathBuf;

use berth_cgroups::Cgroup;
use oci_spec::runtime::Linux;

use crate::error::Result;

/// Creates the container's cgroups (configured later by [`apply`]). Returns `None` when berth
/// runs without the right to manage cgroups (rootless), after saying so: the spec lets such a
/// runtime go on.
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
    Ok(Some(cg))
}

/// Configures the cgroups [`setup`] made with `linux.resources`: the limits, and the device
/// filter prepared (on v2 the program is loaded, the costly part) for the caller to enforce
/// once the init has made its device nodes. On failure the caller destroys the cgroups (with
/// the init already in them).
pub fn apply(cg: &Cgroup, linux: &Linux) -> Result<berth_cgroups::devices::DeviceFilter> {
    let res = linux.resources().clone().unwrap_or_default();
    // runc reads a missing device list as an empty one: deny all but the defaults.
    let filter = cg.prepare_devices(res.devices().as_deref().unwrap_or_default())?;
    cg.apply_limits(&res)?;
    Ok(filter)
}
