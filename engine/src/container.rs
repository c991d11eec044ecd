//! Containers whose life a front-end manages itself (berthd): the bundle is made from the
//! image — rootfs, image config, process overrides, host options, network attached — and
//! nothing runs. The front-end creates and starts it with the runtime, as often as it restarts
//! it (the writable layer and the network stay until [`Engine::remove_container`]).
//!
//! Unlike an image run (`run IMAGE`), whose bundle lives in `<store>/bundles/<name>` under a
//! `container:<name>` hold that `image prune` reclaims once the runtime state is gone, a managed
//! container outlives its runtime state between runs: its bundle is wherever the front-end puts
//! it, and its hold is named by the front-end (berthd: `berthd:<id>`), which `image prune`
//! leaves alone.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_image::bundle;

use crate::error::{Error, Result};
use crate::host::HostOptions;
use crate::images::find_image;
use crate::network::{self, NetworkChoice};
use crate::spec::{self, ProcessOverrides};
use crate::Engine;

/// A container to make from an image.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    /// Its runtime ID (also the network attachment's key).
    pub id: String,
    /// Image name or ID prefix.
    pub image: String,
    /// Its hostname (at most 63 bytes are used).
    pub hostname: String,
    /// Give the process a terminal.
    pub tty: bool,
    /// Changes to the image's process.
    pub process: ProcessOverrides,
    /// The network.
    pub network: NetworkChoice,
    /// What it gets of the host.
    pub host: HostOptions,
    /// Who holds the image's layers in the store (the front-end's name for the container).
    pub holder: String,
}

/// A container made by [`Engine::make_container`].
#[derive(Debug, Clone)]
pub struct MadeContainer {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The image as the store names it.
    pub image: String,
    /// The network state directory the container is attached in (detached by
    /// [`Engine::remove_container`]); `None` when not on a bridge.
    pub network_state: Option<PathBuf>,
    /// Its address on a bridge network.
    pub ip: Option<Ipv4Addr>,
}

/// The environment docker gives a container: `HOSTNAME` (unless the image or the caller set
/// it), and `TERM=xterm` only with a terminal.
fn docker_environment(spec: &mut berth_runtime::oci::Spec, hostname: &str, tty: bool) {
    let Some(p) = spec.process_mut().as_mut() else {
        return;
    };
    let mut env = p.env().clone().unwrap_or_default();
    if !tty {
        env.retain(|e| e != "TERM=xterm");
    } else if !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(0, format!("HOSTNAME={hostname}"));
    }
    p.set_env(Some(env));
}

impl Engine {
    /// Makes container `req.id`'s bundle in `dir` (which must not hold one): on any error,
    /// whatever was made is undone.
    pub fn make_container(&self, dir: &Path, req: &ContainerRequest) -> Result<MadeContainer> {
        req.network.validate()?;
        let store = self.open_store()?;
        let image = find_image(&store, &req.image)?;
        let hostname: String = req.hostname.chars().take(63).collect();
        let template = spec::template(req.tty, Some(&hostname))?;
        let net_state = self.network_state();
        let mut opts = req.process.bundle_options(false);
        opts.holder = Some(req.holder.clone());
        let mut attached: Option<PathBuf> = None;
        let mut ip = None;
        let made = bundle::create_bundle_with(&store, &image.name, dir, template, &opts, |s| {
            req.host.apply(s)?;
            crate::workdir::ensure_workdir(s, dir)?;
            docker_environment(s, &hostname, req.tty);
            let setup = network::attach(&net_state, dir, &req.id, &hostname, &req.network)?;
            attached.clone_from(&setup.attached);
            ip = setup.ip;
            setup.apply(s)
        });
        match made {
            Ok(b) => Ok(MadeContainer {
                bundle: b.dir,
                image: image.name,
                network_state: attached,
                ip,
            }),
            Err(e) => {
                if let Some(net) = &attached {
                    let _ = network::detach(net, &req.id);
                }
                let _ = bundle::remove_bundle(&store, dir, Some(&req.holder));
                Err(match e {
                    Error::Image(source) => Error::Unpack {
                        image: image.name,
                        source,
                    },
                    e => e,
                })
            }
        }
    }

    /// Removes a container made by [`Engine::make_container`] whose runtime state is gone:
    /// network detached, bundle unmounted and removed, hold released. Every step runs even
    /// if an earlier one fails; the first error is returned.
    pub fn remove_container(
        &self,
        id: &str,
        dir: &Path,
        holder: &str,
        network_state: Option<&Path>,
    ) -> Result<()> {
        let mut first: Option<Error> = None;
        if let Some(net) = network_state {
            if let Err(e) = network::detach(net, id) {
                first.get_or_insert(e);
            }
        }
        let res = self.open_store().and_then(|store| {
            bundle::remove_bundle(&store, dir, Some(holder)).map_err(|source| Error::RemoveBundle {
                what: "removing bundle",
                dir: dir.to_path_buf(),
                source: Box::new(source),
            })
        });
        if let Err(e) = res {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}
