//! Build steps: the container of one Dockerfile `RUN`, over a root filesystem its caller
//! mounted (an overlay of the parent's layers with a fresh upper directory).
//!
//! [`Engine::prepare_step`] writes the step's `config.json` (the same confined template as
//! every image container: docker's default capabilities, seccomp, masked paths), attaches the
//! network the build asked for and writes the network files; the caller runs the runtime on
//! the bundle (as a child process, so that it owns the step's stdio) and then calls
//! [`Engine::release_step`], which deletes what the runtime left and detaches the network.
//!
//! A builder killed mid-step (`kill -9`) cannot release it: before anything is attached,
//! `prepare_step` writes the step's marker ([`RECLAIM_MARKER`]) into the bundle, a scratch
//! directory of the store, naming the container, the runtime's state root and the network.
//! `Store::open` leaves such a directory alone once its process is gone, and
//! [`Engine::reclaim_steps`] (at the start of every build, and in `image prune`) deletes the
//! container, detaches the network, then removes the directory (its mounts detached first).
//! `release_step` removes the marker last.

use std::fs;
use std::path::PathBuf;

use berth_image::bundle::resolve_user;
use berth_image::store::RECLAIM_MARKER;
use berth_image::Store;
use berth_runtime::oci::UserBuilder;
use berth_runtime::StateRoot;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::{self, NetworkChoice};
use crate::spec::{self, spec_error};
use crate::Engine;

/// The process and surroundings of one build step's container.
#[derive(Debug, Clone)]
pub struct StepRequest {
    /// The container's ID (unique among the runtime's containers).
    pub id: String,
    /// The bundle directory: a scratch directory of the store (`Store::scratch_dir`), where
    /// the caller has mounted the step's root filesystem at `bundle/rootfs`.
    pub bundle: PathBuf,
    /// The command, as exec'd.
    pub args: Vec<String>,
    /// The environment (`KEY=VALUE`), over the template's defaults.
    pub env: Vec<String>,
    /// The working directory (absolute; created if missing, as docker does).
    pub cwd: String,
    /// `user[:group]`, resolved in the root filesystem (empty: root).
    pub user: String,
    /// The network.
    pub network: NetworkChoice,
    /// The container's hostname.
    pub hostname: String,
}

/// A step container ready for the runtime: release it with [`Engine::release_step`].
#[derive(Debug, Clone)]
pub struct PreparedStep {
    /// The container's ID.
    pub id: String,
    /// The bundle directory holding `config.json`.
    pub bundle: PathBuf,
    attached: Option<PathBuf>,
}

/// What a killed builder's step left to undo (`<bundle>/reclaim.json`).
#[derive(Debug, Serialize, Deserialize)]
struct StepMarker {
    /// The step container's ID.
    id: String,
    /// The runtime's state root it was run under.
    root: PathBuf,
    /// The network state it is attached in, if any.
    network: Option<PathBuf>,
}

impl Engine {
    /// Writes the step's `config.json` into its bundle and attaches its network (see the
    /// module's documentation). Nothing is left attached when it fails.
    pub fn prepare_step(&self, req: &StepRequest) -> Result<PreparedStep> {
        req.network.validate()?;
        let rootfs = req.bundle.join("rootfs");
        let mut s = spec::template(false, Some(&req.hostname))?;
        let user = resolve_user(&rootfs, &req.user)?;
        let process = s
            .process_mut()
            .as_mut()
            .ok_or_else(|| spec_error("process", "missing from the template"))?;
        let mut env: Vec<String> = process.env().clone().unwrap_or_default();
        for e in &req.env {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            env.retain(|d| d.split_once('=').map_or(d.as_str(), |(k, _)| k) != key);
            env.push(e.clone());
        }
        process.set_env(Some(env));
        process.set_args(Some(req.args.clone()));
        process.set_cwd(PathBuf::from(&req.cwd));
        let gids = (!user.additional_gids.is_empty()).then(|| user.additional_gids.clone());
        process.set_user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(gids.unwrap_or_default())
                .build()
                .map_err(|e| spec_error("process.user", e))?,
        );
        if let Some(root) = s.root_mut() {
            root.set_path(rootfs);
        }
        let marker = StepMarker {
            id: req.id.clone(),
            root: self.root().path().to_path_buf(),
            network: req.network.mode.attaches().then(|| self.network_state()),
        };
        let marker_path = req.bundle.join(RECLAIM_MARKER);
        let data = serde_json::to_vec(&marker).map_err(|e| spec_error("(reclaim.json)", e))?;
        fs::write(&marker_path, data).map_err(|source| Error::Io {
            path: marker_path,
            op: "write",
            source,
        })?;
        let setup = network::attach(
            &self.network_state(),
            &req.bundle,
            &req.id,
            &req.hostname,
            &req.network,
        )?;
        let prepared = PreparedStep {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            attached: setup.attached.clone(),
        };
        let written = setup.apply(&mut s).and_then(|()| {
            let data = serde_json::to_vec(&s).map_err(|e| spec_error("(config.json)", e))?;
            let p = req.bundle.join("config.json");
            fs::write(&p, data).map_err(|source| Error::Io {
                path: p,
                op: "write",
                source,
            })
        });
        if let Err(e) = written {
            let _ = self.release_step(&prepared);
            return Err(e);
        }
        Ok(prepared)
    }

    /// Deletes the step's container if the runtime left it, detaches its network and
    /// removes its marker (idempotent).
    pub fn release_step(&self, step: &PreparedStep) -> Result<()> {
        undo_step(self.root(), &step.id, step.attached.as_deref())?;
        let marker = step.bundle.join(RECLAIM_MARKER);
        match fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                path: marker,
                op: "remove",
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Undoes the steps of killed builds: for each scratch directory of the store whose
    /// process is gone and that holds a step's marker, the container is deleted (its
    /// processes killed, its state and cgroup removed), its network detached, and the
    /// directory removed, its mounts detached first. Returns the containers reclaimed.
    pub fn reclaim_steps(&self, store: &Store) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for dir in store.dead_scratch()? {
            let Ok(data) = fs::read(dir.join(RECLAIM_MARKER)) else {
                continue;
            };
            // Unreadable: the builder died writing it, before attaching anything.
            if let Ok(m) = serde_json::from_slice::<StepMarker>(&data) {
                if berth_runtime::state::validate_id(&m.id).is_ok() {
                    undo_step(&StateRoot::new(m.root), &m.id, m.network.as_deref())?;
                    done.push(m.id);
                }
            }
            store.remove_scratch(&dir)?;
        }
        Ok(done)
    }
}

/// Deletes step container `id` under `root` (killing what still runs in it) and detaches
/// its network from `network`; both may be gone already.
fn undo_step(root: &StateRoot, id: &str, network: Option<&std::path::Path>) -> Result<()> {
    if root.read(id).is_ok() {
        if let Err(e) = berth_runtime::delete(root, id, true) {
            // Gone meanwhile (its own `run` deleted it) is what was wanted.
            if root.read(id).is_ok() {
                return Err(e.into());
            }
        }
    }
    if let Some(state) = network {
        network::detach(state, id)?;
    }
    Ok(())
}
