//! What a container gets of the host beyond its image: bind mounts and tmpfs, a read-only
//! root, resource limits, capabilities, sysctls, `/dev/shm`'s size — applied to the typed
//! spec before `config.json` is written. Docker's `HostConfig` maps onto [`HostOptions`]
//! (berthd), and so can the command line's flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_runtime::oci::{
    Capabilities, Capability, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, MountBuilder, Spec,
};

use crate::error::{Error, Result};

/// A host path (or named volume directory) bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host path (absolute).
    pub source: PathBuf,
    /// Where in the container (absolute).
    pub destination: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// A tmpfs mounted in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where in the container (absolute).
    pub destination: String,
    /// Mount options (`size=64m`, `mode=1777`, ...).
    pub options: Vec<String>,
}

/// What a container gets of the host (everything off or unset by default: the template's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOptions {
    /// Bind mounts, after the image's volumes.
    pub binds: Vec<Bind>,
    /// tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// The root filesystem is read-only.
    pub readonly_rootfs: bool,
    /// Every capability, no masked or read-only paths.
    pub privileged: bool,
    /// Capabilities added (`NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`).
    pub cap_add: Vec<String>,
    /// Capabilities dropped (same names).
    pub cap_drop: Vec<String>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU quota in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Relative CPU weight (cgroup v1 shares).
    pub cpu_shares: Option<u64>,
    /// Most processes at once.
    pub pids_limit: Option<i64>,
    /// Namespaced sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// Size of `/dev/shm` in bytes.
    pub shm_size: Option<i64>,
    /// `no-new-privileges` for the process.
    pub no_new_privileges: bool,
    /// The terminal's first size (rows, columns), for a process with a terminal.
    pub console_size: Option<(u32, u32)>,
    /// An init (a static binary on the host, as tini or catatonit) bound read-only at
    /// [`INIT_PATH`] and run as pid 1 in front of the process: it reaps zombies and passes
    /// signals on (`docker run --init`).
    pub init: Option<PathBuf>,
}

/// Where [`HostOptions::init`] appears in the container (docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

fn spec_error(field: &str, reason: impl std::fmt::Display) -> Error {
    Error::Spec {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses a capability name as docker takes it: `NET_ADMIN`, `CAP_NET_ADMIN`, any case.
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| spec_error("capabilities", format!("unknown capability {name:?}")))
}

/// Every capability this kernel knows.
fn all_capabilities() -> Capabilities {
    caps::runtime::thread_all_supported()
        .into_iter()
        .filter_map(|c| parse_capability(&c.to_string()).ok())
        .collect()
}

/// The capability set after `add` and `drop` (`ALL` in either means every one).
fn adjust_capabilities(
    set: &Capabilities,
    add: &[String],
    drop: &[String],
) -> Result<Capabilities> {
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let mut out = if add.iter().any(is_all) {
        all_capabilities()
    } else {
        set.clone()
    };
    for a in add.iter().filter(|a| !is_all(a)) {
        out.insert(parse_capability(a)?);
    }
    if drop.iter().any(is_all) {
        out.clear();
        for a in add.iter().filter(|a| !is_all(a)) {
            out.insert(parse_capability(a)?);
        }
    } else {
        for d in drop {
            out.remove(&parse_capability(d)?);
        }
    }
    Ok(out)
}

impl HostOptions {
    /// Applies these options to `spec`; an error names the field at fault.
    pub fn apply(&self, spec: &mut Spec) -> Result<()> {
        self.apply_mounts(spec)?;
        self.apply_init(spec)?;
        if self.readonly_rootfs {
            if let Some(root) = spec.root_mut() {
                root.set_readonly(Some(true));
            }
        }
        self.apply_process(spec)?;
        self.apply_resources(spec)?;
        if !self.sysctls.is_empty() || self.privileged {
            let linux = spec
                .linux_mut()
                .as_mut()
                .ok_or_else(|| spec_error("linux", "missing"))?;
            if !self.sysctls.is_empty() {
                let mut sysctl = linux.sysctl().clone().unwrap_or_default();
                sysctl.extend(self.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
                linux.set_sysctl(Some(sysctl));
            }
            if self.privileged {
                linux.set_masked_paths(None);
                linux.set_readonly_paths(None);
                linux.set_seccomp(None);
            }
        }
        Ok(())
    }

    fn apply_mounts(&self, spec: &mut Spec) -> Result<()> {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        if let Some(size) = self.shm_size {
            if size <= 0 {
                return Err(spec_error("ShmSize", "must be positive"));
            }
            for m in mounts
                .iter_mut()
                .filter(|m| m.destination().as_os_str() == "/dev/shm")
            {
                let mut opts: Vec<String> = m
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| !o.starts_with("size="))
                    .collect();
                opts.push(format!("size={size}"));
                m.set_options(Some(opts));
            }
        }
        for b in &self.binds {
            if !b.destination.starts_with('/') {
                return Err(spec_error(
                    "Binds",
                    format!("destination {:?} is not absolute", b.destination),
                ));
            }
            let opts = vec![
                "rbind".to_string(),
                if b.readonly { "ro" } else { "rw" }.to_string(),
            ];
            mounts.retain(|m| m.destination().as_os_str() != b.destination.as_str());
            mounts.push(
                MountBuilder::default()
                    .destination(&b.destination)
                    .typ("bind")
                    .source(&b.source)
                    .options(opts)
                    .build()
                    .map_err(|e| spec_error("Binds", e))?,
            );
        }
        for t in &self.tmpfs {
            if !t.destination.starts_with('/') {
                return Err(spec_error(
                    "Tmpfs",
                    format!("destination {:?} is not absolute", t.destination),
                ));
            }
            let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
            opts.extend(t.options.iter().cloned());
            mounts.retain(|m| m.destination().as_os_str() != t.destination.as_str());
            mounts.push(
                MountBuilder::default()
                    .destination(&t.destination)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(opts)
                    .build()
                    .map_err(|e| spec_error("Tmpfs", e))?,
            );
        }
        spec.set_mounts(Some(mounts));
        Ok(())
    }

    fn apply_init(&self, spec: &mut Spec) -> Result<()> {
        let Some(init) = &self.init else {
            return Ok(());
        };
        if !init.is_absolute() || !init.is_file() {
            return Err(spec_error(
                "Init",
                format!("{} is not an executable file on the host", init.display()),
            ));
        }
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .typ("bind")
                .source(init)
                .options(vec!["bind".to_string(), "ro".to_string()])
                .build()
                .map_err(|e| spec_error("Init", e))?,
        );
        spec.set_mounts(Some(mounts));
        let process = spec
            .process_mut()
            .as_mut()
            .ok_or_else(|| spec_error("process", "missing"))?;
        let mut args = vec![INIT_PATH.to_string(), "--".to_string()];
        args.extend(process.args().clone().unwrap_or_default());
        process.set_args(Some(args));
        Ok(())
    }

    fn apply_process(&self, spec: &mut Spec) -> Result<()> {
        if let Some((rows, cols)) = self.console_size.filter(|(r, c)| *r > 0 && *c > 0) {
            if let Some(p) = spec
                .process_mut()
                .as_mut()
                .filter(|p| p.terminal() == Some(true))
            {
                p.set_console_size(Some(
                    berth_runtime::oci::BoxBuilder::default()
                        .height(rows)
                        .width(cols)
                        .build()
                        .map_err(|e| spec_error("ConsoleSize", e))?,
                ));
            }
        }
        if !self.privileged
            && self.cap_add.is_empty()
            && self.cap_drop.is_empty()
            && !self.no_new_privileges
        {
            return Ok(());
        }
        let process = spec
            .process_mut()
            .as_mut()
            .ok_or_else(|| spec_error("process", "missing"))?;
        if self.no_new_privileges {
            process.set_no_new_privileges(Some(true));
        }
        let mut caps = process.capabilities().clone().unwrap_or_default();
        let base = caps.bounding().clone().unwrap_or_default();
        let set = if self.privileged {
            all_capabilities()
        } else {
            adjust_capabilities(&base, &self.cap_add, &self.cap_drop)?
        };
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        process.set_capabilities(Some(caps));
        Ok(())
    }

    fn apply_resources(&self, spec: &mut Spec) -> Result<()> {
        if self.memory.is_none()
            && self.nano_cpus.is_none()
            && self.cpu_shares.is_none()
            && self.pids_limit.is_none()
        {
            return Ok(());
        }
        let linux = spec
            .linux_mut()
            .as_mut()
            .ok_or_else(|| spec_error("linux", "missing"))?;
        let mut res: LinuxResources = linux.resources().clone().unwrap_or_default();
        if let Some(m) = self.memory {
            if m < 6 * 1024 * 1024 {
                return Err(spec_error(
                    "Memory",
                    "the minimum memory limit allowed is 6MB",
                ));
            }
            res.set_memory(Some(
                LinuxMemoryBuilder::default()
                    .limit(m)
                    .build()
                    .map_err(|e| spec_error("Memory", e))?,
            ));
        }
        if self.nano_cpus.is_some() || self.cpu_shares.is_some() {
            let mut cpu = LinuxCpuBuilder::default();
            if let Some(n) = self.nano_cpus {
                if n < 10_000_000 {
                    return Err(spec_error("NanoCpus", "the minimum is 0.01 CPUs"));
                }
                let period: u64 = 100_000;
                cpu = cpu.period(period).quota(n * period as i64 / 1_000_000_000);
            }
            if let Some(s) = self.cpu_shares {
                cpu = cpu.shares(s);
            }
            res.set_cpu(Some(cpu.build().map_err(|e| spec_error("NanoCpus", e))?));
        }
        if let Some(p) = self.pids_limit {
            res.set_pids(Some(
                LinuxPidsBuilder::default()
                    .limit(p)
                    .build()
                    .map_err(|e| spec_error("PidsLimit", e))?,
            ));
        }
        linux.set_resources(Some(res));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_as_docker_takes_them() {
        assert_eq!(parse_capability("net_admin").unwrap(), Capability::NetAdmin);
        assert_eq!(parse_capability("CAP_KILL").unwrap(), Capability::Kill);
        assert!(parse_capability("NOPE")
            .unwrap_err()
            .to_string()
            .contains("NOPE"));
        let base: Capabilities = [Capability::Kill, Capability::Chown].into_iter().collect();
        let out = adjust_capabilities(&base, &["NET_ADMIN".into()], &["kill".into()]).unwrap();
        assert!(out.contains(&Capability::NetAdmin) && !out.contains(&Capability::Kill));
        let none = adjust_capabilities(&base, &["CHOWN".into()], &["ALL".into()]).unwrap();
        assert_eq!(
            none.into_iter().collect::<Vec<_>>(),
            vec![Capability::Chown]
        );
    }

    #[test]
    fn limits_binds_and_readonly_root() {
        let mut spec = crate::spec::template(false, None).unwrap();
        let opts = HostOptions {
            binds: vec![Bind {
                source: "/srv/data".into(),
                destination: "/data".into(),
                readonly: true,
            }],
            readonly_rootfs: true,
            memory: Some(64 << 20),
            pids_limit: Some(10),
            nano_cpus: Some(500_000_000),
            shm_size: Some(1 << 20),
            ..HostOptions::default()
        };
        opts.apply(&mut spec).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(res.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().unwrap().limit(), 10);
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        let mounts = spec.mounts().as_ref().unwrap();
        let data = mounts
            .iter()
            .find(|m| m.destination().as_os_str() == "/data")
            .unwrap();
        assert!(data.options().as_ref().unwrap().contains(&"ro".to_string()));
        let bad = HostOptions {
            memory: Some(1024),
            ..HostOptions::default()
        };
        let err = bad.apply(&mut spec).unwrap_err().to_string();
        assert!(err.contains("Memory"), "{err}");
    }
}
