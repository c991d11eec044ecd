//! The run of an image: image → typed spec → bundle → network → runtime, with the run record
//! written first and everything undone if the container does not start.
//!
//! 1. The image is found, the name checked and claimed (`<store>/bundles/<name>`, made
//!    atomically).
//! 2. The run record is written: what the run is about to make (store hold, network), so a
//!    run killed from here on is undone by `delete -f NAME`, `bundle rm` or `image prune`.
//! 3. The bundle is made from the typed template: rootfs (overlay or flat), image config
//!    applied, volumes seeded; then, with the image's layers held, the network is attached
//!    and its namespace and files put in the spec, and `config.json` is written, once.
//! 4. The runtime creates and starts the container (foreground or detached); a container
//!    that exits under `remove`, or fails to start, takes its bundle and network with it.

use std::path::PathBuf;

use berth_image::bundle;
use berth_runtime::{CreateOptions, RunOutcome};

use crate::error::{Error, Result};
use crate::host::HostOptions;
use crate::images::find_image;
use crate::network::{self, NetworkChoice};
use crate::record::RunRecord;
use crate::spec::{self, ProcessOverrides};
use crate::teardown::remove_run_bundle;
use crate::workdir::ensure_workdir;
use crate::{names, Engine};

/// A container to run from an image.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Image name or ID prefix.
    pub image: String,
    /// The container's name (default: `berth-<12 hex>`); also its hostname (at most 63
    /// bytes of it) unless `hostname` is given.
    pub name: Option<String>,
    /// The container's hostname (default: its name).
    pub hostname: Option<String>,
    /// Changes to the image's process.
    pub process: ProcessOverrides,
    /// A flattened copy of the layers instead of an overlay mount.
    pub flat: bool,
    /// Remove the container and its bundle when it exits (foreground only).
    pub remove: bool,
    /// Return once the container has started.
    pub detach: bool,
    /// Give the process a terminal.
    pub tty: bool,
    /// File to write the container init's pid to.
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    pub console_socket: Option<PathBuf>,
    /// The network.
    pub network: NetworkChoice,
    /// What it gets of the host (mounts, limits, capabilities, the terminal's size...).
    pub host: HostOptions,
}

/// A container run from an image.
#[derive(Debug)]
pub struct ImageRun {
    /// Its name.
    pub id: String,
    /// How it ended (or that it runs on, detached).
    pub outcome: RunOutcome,
}

impl Engine {
    /// Runs a container of an image (see the module's documentation for the steps). Without
    /// `remove`, a container that exits is kept, stopped, until [`Engine::delete`], which
    /// removes its bundle too.
    pub fn run_image(&self, req: &RunRequest) -> Result<ImageRun> {
        if req.remove && req.detach {
            return Err(Error::RemoveDetached);
        }
        req.network.validate()?;
        let store = self.open_store()?;
        let image = find_image(&store, &req.image)?;
        let id = req.name.clone().unwrap_or_else(names::generate);
        names::validate(&id)?;
        if self.root().read(&id).is_ok() {
            return Err(Error::Exists(id));
        }
        // As docker does: the container's name (at most 63 bytes) is its hostname.
        let hostname: String = req
            .hostname
            .as_deref()
            .unwrap_or(&id)
            .chars()
            .take(63)
            .collect();
        let template = spec::template(req.tty, Some(&hostname))?;
        let dir = names::claim(self.store_root(), &id)?;
        let holder = names::holder(&id);
        let net_state = self.network_state();
        let record = RunRecord::new(
            &id,
            self.store_root(),
            &holder,
            &image.name,
            req.network.mode.attaches().then(|| net_state.clone()),
        );
        let mut attached: Option<PathBuf> = None;
        // Nothing was started (or it was deleted): the bundle and network go too.
        let discard = |attached: &Option<PathBuf>| {
            // A detached run whose start failed leaves a created container: it goes first.
            let _ = berth_runtime::delete(self.root(), &id, true);
            if let Some(net) = attached {
                let _ = network::detach(net, &id);
            }
            let _ = bundle::remove_bundle(&store, &dir, Some(&holder));
        };
        if let Err(e) = record.write(&dir) {
            discard(&None);
            return Err(e);
        }
        let mut opts = req.process.bundle_options(req.flat);
        opts.holder = Some(holder.clone());
        let made = bundle::create_bundle_with(&store, &image.name, &dir, template, &opts, |s| {
            req.host.apply(s)?;
            ensure_workdir(s, &dir)?;
            let setup = network::attach(&net_state, &dir, &id, &hostname, &req.network)?;
            attached.clone_from(&setup.attached);
            setup.apply(s)
        });
        let b = match made {
            Ok(b) => b,
            Err(e) => {
                discard(&attached);
                return Err(match e {
                    Error::Image(source) => Error::Unpack {
                        image: image.name,
                        source,
                    },
                    e => e,
                });
            }
        };
        berth_runtime::failpoint::hit("run:attached");
        let co = CreateOptions {
            id: id.clone(),
            bundle: b.dir,
            pid_file: req.pid_file.clone(),
            console_socket: req.console_socket.clone(),
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
            foreground: false,
        };
        let go = || {
            if req.detach || req.remove {
                berth_runtime::run(self.root(), &co, req.detach).map_err(Error::from)
            } else {
                berth_runtime::run_and_keep(self.root(), &co).map_err(Error::from)
            }
        };
        let res = if req.detach && !req.tty && req.console_socket.is_none() {
            // Its output goes to its log (`berth logs`), as docker keeps it.
            crate::logs::with_output_to(&dir.join(crate::logs::LOG_FILE), go)
        } else {
            go()
        };
        let outcome = match res {
            Ok(o) => o,
            Err(e) => {
                discard(&attached);
                return Err(e);
            }
        };
        match outcome {
            RunOutcome::Exited(_) if req.remove => remove_run_bundle(&dir, &id)?,
            // The runtime deleted the container: its bundle and network go with it.
            RunOutcome::StartFailed { .. } => discard(&attached),
            _ => {}
        }
        Ok(ImageRun { id, outcome })
    }
}
