//! Writing `linux.resources`: one module per controller, each with a v1 and a v2 writer. The
//! mapping follows runc and crun; a field this host cannot honour is an error naming the field
//! and the missing controller or file, except where runc/crun only warn (noted per field).

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuset;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub(crate) mod network;
pub(crate) mod pids;
pub(crate) mod rdma;
pub(crate) mod unified;

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::hierarchy::Mode;

/// Where one controller's files are, for the writers.
pub(crate) struct Target<'a> {
    cg: &'a Cgroup,
    /// The v2 leaf's `cgroup.controllers`, read once.
    v2_controllers: Vec<String>,
}

impl<'a> Target<'a> {
    /// The directory for `controller`, or an error naming `field` when the controller is not
    /// mounted (v1) or not enabled for the container's cgroup (v2).
    pub fn dir(&self, controller: &str, field: &str) -> Result<&'a Path> {
        let dir = self.cg.controller_dir(controller);
        match (self.cg.mode, dir) {
            (Mode::Unified, Some(d)) => {
                if self.v2_controllers.iter().any(|c| c == controller) {
                    Ok(d)
                } else {
                    Err(Error::unsupported(
                        field,
                        format!(
                            "the {controller} controller is not enabled in {}",
                            d.join("cgroup.controllers").display()
                        ),
                    ))
                }
            }
            (_, Some(d)) => Ok(d),
            (_, None) => Err(Error::unsupported(
                field,
                format!(
                    "the {controller} controller is not mounted as a cgroup v1 hierarchy (on a \
                     hybrid host berth, like runc, sets no limits in the cgroup2 hierarchy)"
                ),
            )),
        }
    }

    /// The container's v2 directory.
    pub fn unified_dir(&self) -> Result<&'a Path> {
        self.cg
            .unified()
            .map(|h| h.dir.as_path())
            .ok_or_else(|| Error::unsupported("unified", "there is no cgroup2 hierarchy"))
    }

    /// Whether the host is cgroup v2 only.
    pub fn v2(&self) -> bool {
        self.cg.mode == Mode::Unified
    }

    /// The v2 leaf's enabled controllers.
    pub fn v2_controllers(&self) -> &[String] {
        &self.v2_controllers
    }
}

impl Cgroup {
    /// Writes every field of `resources` into the container's cgroup (at create, and again for
    /// `update`: fields that are absent are left as they are). On a v2 host everything goes to
    /// the unified directory (shares become `cpu.weight`, swap becomes `memory.swap.max`, blkio
    /// throttles become `io.max`, devices become a BPF program, `unified` keys are written
    /// last so they win); on v1 and hybrid hosts to each controller's hierarchy.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        if let Some(d) = resources.devices() {
            crate::devices::apply(self, d)?;
        }
        self.apply_limits(resources)
    }

    /// The device filter of `config` prepared but not in force (see
    /// [`crate::devices::DeviceFilter`]): `create` enforces it once the init has made the
    /// container's device nodes, as runc sets its device rules after them.
    pub fn prepare_devices(
        &self,
        config: &[oci_spec::runtime::LinuxDeviceCgroup],
    ) -> Result<crate::devices::DeviceFilter> {
        crate::devices::prepare(self, config)
    }

    /// Every field of `resources` but `devices` (see [`Cgroup::apply`]).
    pub fn apply_limits(&self, resources: &LinuxResources) -> Result<()> {
        let v2_controllers = match (self.mode, self.unified()) {
            (Mode::Unified, Some(h)) => fsutil::read(&h.dir, "cgroup.controllers")?
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let t = Target {
            cg: self,
            v2_controllers,
        };
        let r = resources;
        if let Some(c) = r.cpu() {
            cpuset::apply(&t, c)?;
        }
        if let Some(m) = r.memory() {
            memory::apply(&t, m)?;
        }
        if let Some(c) = r.cpu() {
            cpu::apply(&t, c)?;
        }
        if let Some(p) = r.pids() {
            pids::apply(&t, *p)?;
        }
        if let Some(b) = r.block_io() {
            blkio::apply(&t, b)?;
        }
        if let Some(h) = r.hugepage_limits() {
            hugetlb::apply(&t, h)?;
        }
        if let Some(n) = r.network() {
            network::apply(&t, n)?;
        }
        if let Some(rd) = r.rdma() {
            rdma::apply(&t, rd)?;
        }
        if let Some(u) = r.unified() {
            unified::apply(&t, u)?;
        }
        Ok(())
    }
}

/// A device number from the config: non-negative and within 32 bits.
pub(crate) fn dev_number(field: &str, v: i64) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::invalid(field, format!("device number {v} is out of range")))
}

/// A memory-style limit from the config: -1 (unlimited), 0 (unset) or positive.
pub(crate) fn check_limit(field: &str, v: i64) -> Result<i64> {
    if v < -1 {
        return Err(Error::invalid(
            field,
            format!("{v} is negative (use -1 for unlimited)"),
        ));
    }
    Ok(v)
}
