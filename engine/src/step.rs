//! Build steps: the container of one Dockerfile `RUN`, over a root filesystem its caller
//! mounted (an overlay of the parent's layers with a fresh upper directory).
//!
//! [`Engine::prepare_step`] writes the step's `config.json` (the same confined template as
//! every image container: docker's default capabilities, seccomp, masked paths), attaches the
//! network the build asked for and writes the network files; the caller runs the runtime on
//! the bundle (as a child process, so that it owns the step's stdio) and then calls
//! [`Engine::release_step`], which deletes what the runtime left and detaches the network.

use std::fs;
use std::path::PathBuf;

use berth_image::bundle::resolve_user;
use berth_runtime::oci::UserBuilder;

use crate::error::{Error, Result};
use crate::network::{self, NetworkChoice};
use crate::spec::{self, spec_error};
use crate::Engine;

/// The process and surroundings of one build step's container.
#[derive(Debug, Clone)]
pub struct StepRequest {
    /// The container's ID (unique among the runtime's containers).
    pub id: String,
    /// The bundle directory (created if missing); the caller has mounted the step's root
    /// filesystem at `bundle/rootfs`.
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

    /// Deletes the step's container if the runtime left it, and detaches its network
    /// (idempotent).
    pub fn release_step(&self, step: &PreparedStep) -> Result<()> {
        let _ = berth_runtime::delete(self.root(), &step.id, true);
        if let Some(state) = &step.attached {
            network::detach(state, &step.id)?;
        }
        Ok(())
    }
}
