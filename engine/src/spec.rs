//! The container's runtime spec, typed from start to `config.json`: `berth spec`'s default
//! made into an image container's template ([`template`]), the caller's process overrides as
//! the bundle's options ([`ProcessOverrides`]), then — once the image config is applied by
//! `berth_image::bundle` — the network namespace and the network files ([`set_network`],
//! [`add_binds`]). Nothing is written until the spec is complete; the bundle writes it once.

use std::path::{Path, PathBuf};

use berth_image::BundleOptions;
use berth_runtime::oci::{
    Capabilities, Capability, LinuxCapabilities, LinuxNamespaceBuilder, LinuxNamespaceType,
    MountBuilder, Spec,
};

use crate::error::{Error, Result};

/// The capabilities docker and podman give a container by default (ping needs NET_RAW,
/// package managers CHOWN and FOWNER).
pub const DOCKER_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

pub(crate) fn spec_error(field: &str, reason: impl std::fmt::Display) -> Error {
    Error::Spec {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// The base of every image container's spec: `berth spec`'s config (rootless when not root)
/// with a writable root (a container's writable layer is the point of an image root, as with
/// docker and podman), docker's default capabilities (bounding, effective and permitted; no
/// inheritable or ambient ones), `terminal` and, if given, the hostname.
pub fn template(terminal: bool, hostname: Option<&str>) -> Result<Spec> {
    let doc = berth_runtime::spec_template::default_config(
        !nix::unistd::geteuid().is_root(),
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let mut spec: Spec = serde_json::from_value(doc).map_err(|e| spec_error("(template)", e))?;
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(false));
    }
    let process = spec
        .process_mut()
        .as_mut()
        .ok_or_else(|| spec_error("process", "missing from the template"))?;
    process.set_terminal(Some(terminal));
    let set: Capabilities = DOCKER_CAPS.into_iter().collect();
    // Not LinuxCapabilitiesBuilder: its unset sets default to oci-spec's three capabilities,
    // which would grant inheritable and ambient ones.
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    process.set_capabilities(Some(caps));
    if let Some(h) = hostname {
        spec.set_hostname(Some(h.to_string()));
    }
    Ok(spec)
}

/// What the caller changes of the image's process.
#[derive(Debug, Clone, Default)]
pub struct ProcessOverrides {
    /// Command and arguments: replace the image's Cmd (empty: the image's).
    pub command: Vec<String>,
    /// Replaces the image's Entrypoint (and its Cmd, unless `command` is given); an empty
    /// list clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries that override the image's.
    pub env: Vec<String>,
    /// Replaces the image's WorkingDir.
    pub workdir: Option<String>,
    /// Replaces the image's User: name|uid[:group|gid], resolved in the image.
    pub user: Option<String>,
}

impl ProcessOverrides {
    /// The bundle options for these overrides; `flat` for a flattened copy of the layers
    /// instead of an overlay mount (always, when not root: an unprivileged user cannot mount
    /// an overlay on the host).
    pub fn bundle_options(&self, flat: bool) -> BundleOptions {
        let rootless = !nix::unistd::geteuid().is_root();
        if rootless && !flat {
            tracing::info!("not root: a flattened rootfs instead of an overlay mount");
        }
        BundleOptions {
            flat: flat || rootless,
            entrypoint: self.entrypoint.clone(),
            cmd: (!self.command.is_empty()).then(|| self.command.clone()),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            holder: None,
            inspect: false,
            limits: None,
        }
    }
}

/// The network namespace a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNamespace {
    /// The host's (no network namespace of its own).
    Host,
    /// A new, empty one (loopback only).
    New,
    /// An existing one, pinned at this path.
    Path(PathBuf),
}

/// Sets the spec's network namespace (replacing the template's).
pub fn set_network(spec: &mut Spec, ns: &NetNamespace) -> Result<()> {
    let list = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut())
        .ok_or_else(|| spec_error("linux.namespaces", "missing"))?;
    list.retain(|n| n.typ() != LinuxNamespaceType::Network);
    let entry = match ns {
        NetNamespace::Host => return Ok(()),
        NetNamespace::New => LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network),
        NetNamespace::Path(p) => LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(p.clone()),
    };
    list.push(
        entry
            .build()
            .map_err(|e| spec_error("linux.namespaces", e))?,
    );
    Ok(())
}

/// Appends read-write bind mounts (`destination`, host `source`) to the spec's mounts.
pub fn add_binds(spec: &mut Spec, binds: &[(&str, &Path)]) -> Result<()> {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (dest, src) in binds {
        let m = MountBuilder::default()
            .destination(dest)
            .typ("bind")
            .source(src)
            .options(vec!["rbind".to_string(), "rw".to_string()])
            .build()
            .map_err(|e| spec_error("mounts", e))?;
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_writable_with_docker_caps_and_nothing_inheritable() {
        let spec = template(true, Some("web")).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
        assert_eq!(spec.hostname().as_deref(), Some("web"));
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.terminal(), Some(true));
        let caps = p.capabilities().as_ref().unwrap();
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            assert_eq!(set.as_ref().unwrap().len(), DOCKER_CAPS.len());
        }
        assert!(caps.inheritable().is_none() && caps.ambient().is_none());
        // What the runtime reads back is what was built.
        let text = serde_json::to_vec(&spec).unwrap();
        let back = berth_runtime::config::parse(&text).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn network_namespace_and_binds() {
        let mut spec = template(false, None).unwrap();
        let count = |s: &Spec| {
            s.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .filter(|n| n.typ() == LinuxNamespaceType::Network)
                .cloned()
                .collect::<Vec<_>>()
        };
        set_network(&mut spec, &NetNamespace::Host).unwrap();
        assert!(count(&spec).is_empty());
        set_network(&mut spec, &NetNamespace::New).unwrap();
        assert_eq!(count(&spec).len(), 1);
        set_network(&mut spec, &NetNamespace::Path("/run/ns/x".into())).unwrap();
        let ns = count(&spec);
        assert_eq!(ns.len(), 1);
        assert_eq!(ns[0].path().as_deref(), Some(Path::new("/run/ns/x")));
        let before = spec.mounts().as_ref().unwrap().len();
        add_binds(&mut spec, &[("/etc/hosts", Path::new("/b/net/hosts"))]).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        assert_eq!(mounts.len(), before + 1);
        let m = mounts.last().unwrap();
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.source().as_deref(), Some(Path::new("/b/net/hosts")));
    }
}
