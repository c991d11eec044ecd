//! Networking of image containers over `berth_netns`: a container joins a pinned namespace
//! attached to a bridge network (the default one, or one by name), a new empty one (`none`),
//! or the host's (`host`), and gets generated `/etc/resolv.conf`, `/etc/hosts` and
//! `/etc/hostname`. Networks, leases and pinned namespaces live in `<store>/net`.

use std::path::{Path, PathBuf};

use berth_netns::files::{self, ContainerFiles};
use berth_netns::{network, AttachOptions, PortMapping, PruneReport};
use berth_runtime::oci::Spec;

use crate::error::{Error, Result};
use crate::spec::{self, NetNamespace};
use crate::Engine;

/// Where networks, leases and pinned network namespaces of the store at `store_root` live.
pub fn state_dir(store_root: &Path) -> PathBuf {
    store_root.join("net")
}

/// How an image container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// The default bridge network (made on first use).
    Bridge,
    /// Loopback only.
    None,
    /// The host's network namespace.
    Host,
    /// A bridge network by name.
    Named(String),
}

impl NetworkMode {
    /// `bridge`, `none`, `host`, or a network's name.
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "bridge" => NetworkMode::Bridge,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            name => NetworkMode::Named(name.to_string()),
        }
    }

    /// The default: the bridge for root, none for other users (who cannot make veths).
    pub fn default_for_caller() -> NetworkMode {
        if nix::unistd::geteuid().is_root() {
            NetworkMode::Bridge
        } else {
            NetworkMode::None
        }
    }

    /// As [`NetworkMode::parse`] reads it.
    pub fn as_str(&self) -> &str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Named(n) => n,
        }
    }

    /// Whether the container is attached to a bridge network (something to detach later).
    pub fn attaches(&self) -> bool {
        matches!(self, NetworkMode::Bridge | NetworkMode::Named(_))
    }
}

/// An image container's network: the mode and the ports to publish (bridge networks only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkChoice {
    /// The mode.
    pub mode: NetworkMode,
    /// Ports published on the host.
    pub publish: Vec<PortMapping>,
}

impl NetworkChoice {
    /// Checks that ports are published only where there is a bridge.
    pub fn validate(&self) -> Result<()> {
        if !self.publish.is_empty() && !self.mode.attaches() {
            return Err(Error::PublishNeedsBridge {
                mode: self.mode.as_str().to_string(),
            });
        }
        Ok(())
    }
}

/// Parses port mappings, `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`; an error names the one
/// that does not parse.
pub fn parse_publish(specs: &[String]) -> Result<Vec<PortMapping>> {
    specs
        .iter()
        .map(|p| {
            p.parse().map_err(|source| Error::Publish {
                spec: p.clone(),
                source,
            })
        })
        .collect()
}

/// What [`attach`] made: the namespace and files to put in the spec, and the network state
/// directory to detach from later (`None`: nothing to detach).
#[derive(Debug, Clone)]
pub(crate) struct NetworkSetup {
    pub namespace: NetNamespace,
    pub files: ContainerFiles,
    pub attached: Option<PathBuf>,
    pub ip: Option<std::net::Ipv4Addr>,
}

impl NetworkSetup {
    /// Puts the namespace and the three files (bind mounts, after the spec's others) in the
    /// spec.
    pub fn apply(&self, spec: &mut Spec) -> Result<()> {
        spec::set_network(spec, &self.namespace)?;
        spec::add_binds(
            spec,
            &[
                ("/etc/resolv.conf", &self.files.resolv_conf),
                ("/etc/hosts", &self.files.hosts),
                ("/etc/hostname", &self.files.hostname),
            ],
        )
    }
}

/// Networks container `id`, whose bundle is `bundle_dir`: attaches it to its bridge network
/// (if any) in `state`, and writes its network files into `bundle_dir/net`. If writing the
/// files fails, the attachment is undone.
pub(crate) fn attach(
    state: &Path,
    bundle_dir: &Path,
    id: &str,
    hostname: &str,
    choice: &NetworkChoice,
) -> Result<NetworkSetup> {
    let host_resolv = files::host_resolv_conf();
    let (namespace, ip, attached) = match &choice.mode {
        NetworkMode::Host => (NetNamespace::Host, None, None),
        NetworkMode::None => (NetNamespace::New, None, None),
        mode => {
            let net = match mode {
                NetworkMode::Named(name) => network::load(state, name)?,
                _ => network::ensure_default(state)?,
            };
            let a = berth_netns::attach(
                state,
                &net.name,
                id,
                &AttachOptions {
                    publish: choice.publish.clone(),
                    mac: None,
                    hostname: Some(hostname.to_string()),
                    ip: None,
                },
            )?;
            (
                NetNamespace::Path(a.netns_path),
                Some(a.ip),
                Some(state.to_path_buf()),
            )
        }
    };
    let resolv = if namespace == NetNamespace::Host {
        host_resolv
    } else {
        files::resolv_conf(&host_resolv, &[])
    };
    match files::write_files(&bundle_dir.join("net"), hostname, ip, &resolv) {
        Ok(files) => Ok(NetworkSetup {
            namespace,
            files,
            attached,
            ip,
        }),
        Err(e) => {
            if let Some(state) = &attached {
                let _ = berth_netns::detach(state, id);
            }
            Err(e.into())
        }
    }
}

/// Undoes the network attachment of container `id` (idempotent).
pub fn detach(state: &Path, id: &str) -> Result<()> {
    berth_netns::detach(state, id).map_err(|source| Error::Detach {
        id: id.to_string(),
        source,
    })
}

impl Engine {
    /// The network state directory of this engine's store.
    pub fn network_state(&self) -> PathBuf {
        state_dir(self.store_root())
    }

    /// Repairs what crashes left in the networks: detaches every container that no longer
    /// exists and is not being made (see [`Engine::container_in_use`]), and removes leases,
    /// veths, port rules and namespaces of none.
    pub fn prune_networks(&self) -> Result<PruneReport> {
        Ok(berth_netns::prune(&self.network_state(), |id| {
            self.container_in_use(id)
        })?)
    }
}
