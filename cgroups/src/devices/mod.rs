//! `linux.resources.devices`: the config's rules plus the defaults every container gets,
//! folded from deny-all; written as v1 `devices.allow`/`devices.deny` lines, or on a v2 host
//! compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the container's cgroup.

pub mod bpf;
pub(crate) mod load;
pub mod rules;

use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::hierarchy::Mode;
use rules::{default_rules, DevKind, DeviceState, Rule};

/// The device list the container ends up with: deny-all, then the configured rules in order,
/// then [`rules::default_rules`] (as runc appends its `AllowedDevices`).
pub fn effective(config: &[LinuxDeviceCgroup]) -> Result<DeviceState> {
    let mut list = config
        .iter()
        .enumerate()
        .map(|(i, d)| Rule::from_oci(i, d))
        .collect::<Result<Vec<_>>>()?;
    list.extend(default_rules());
    Ok(DeviceState::from_rules(&list))
}

pub(crate) fn apply(cg: &Cgroup, config: &[LinuxDeviceCgroup]) -> Result<()> {
    prepare(cg, config)?.enforce()
}

/// A device filter computed (on cgroup v2 also loaded into the kernel, the costly part) but
/// not yet in force on the cgroup: [`DeviceFilter::enforce`] puts it there.
#[derive(Debug)]
pub struct DeviceFilter(Pending);

#[derive(Debug)]
enum Pending {
    Bpf {
        dir: std::path::PathBuf,
        prog: std::os::fd::OwnedFd,
    },
    V1 {
        dir: std::path::PathBuf,
        state: DeviceState,
    },
}

impl DeviceFilter {
    /// Attaches the program (v2) or writes the rules (v1).
    pub fn enforce(self) -> Result<()> {
        match self.0 {
            Pending::Bpf { dir, prog } => load::attach_replacing(&dir, &prog),
            Pending::V1 { dir, state } => write_v1(&dir, &state),
        }
    }
}

/// The device filter of `config` for `cg`, ready to be enforced.
pub(crate) fn prepare(cg: &Cgroup, config: &[LinuxDeviceCgroup]) -> Result<DeviceFilter> {
    let state = effective(config)?;
    if cg.mode() == Mode::Unified {
        let dir = cg
            .unified()
            .map(|h| h.dir.clone())
            .ok_or_else(|| Error::unsupported("devices", "no cgroup2 hierarchy"))?;
        let prog = load::load(&bpf::program(&state))?;
        return Ok(DeviceFilter(Pending::Bpf { dir, prog }));
    }
    let dir = cg.controller_dir("devices").ok_or_else(|| {
        Error::unsupported(
            "devices",
            "the devices controller is not mounted as a cgroup v1 hierarchy",
        )
    })?;
    Ok(DeviceFilter(Pending::V1 {
        dir: dir.to_path_buf(),
        state,
    }))
}

/// Loads the program for `state` and attaches it to the cgroup at `dir`, replacing the one
/// attached before.
pub fn apply_bpf(dir: &Path, state: &DeviceState) -> Result<()> {
    let prog = bpf::program(state);
    let fd = load::load(&prog)?;
    load::attach_replacing(dir, &fd)
}

/// How many device programs are attached directly to the cgroup at `dir`.
pub fn attached_programs(dir: &Path) -> Result<usize> {
    load::count_attached(dir)
}

/// Brings v1 `devices.list` from what it is to `target` without opening a window where more
/// is allowed than either: when both deny by default, the new exceptions are added first and
/// the stale ones removed after; otherwise the list is reset and rebuilt.
fn write_v1(dir: &Path, target: &DeviceState) -> Result<()> {
    let current: Vec<Rule> = fsutil::read(dir, "devices.list")?
        .lines()
        .filter_map(Rule::parse_v1)
        .collect();
    let current_allows_all = current.iter().any(|r| r.kind == DevKind::All);
    if target.default_allow {
        fsutil::write(dir, "devices.allow", "a")?;
        for e in &target.exceptions {
            fsutil::write(dir, "devices.deny", &e.to_string())?;
        }
        return Ok(());
    }
    if current_allows_all {
        fsutil::write(dir, "devices.deny", "a")?;
    }
    for e in &target.exceptions {
        fsutil::write(dir, "devices.allow", &e.to_string())?;
    }
    if !current_allows_all {
        for c in &current {
            let kept = target
                .exceptions
                .iter()
                .find(|e| e.kind == c.kind && e.major == c.major && e.minor == c.minor)
                .map_or(0, |e| e.access);
            let stale = c.access & !kept;
            if stale != 0 {
                let r = Rule {
                    access: stale,
                    ..*c
                };
                fsutil::write(dir, "devices.deny", &r.to_string())?;
            }
        }
    }
    Ok(())
}
