//! The daemon's state: its containers (in memory, each persisted as `container.json` and
//! recovered at start), exec instances, the event stream, and where everything lives.

pub mod dns;
pub mod events;
pub mod exec;
pub mod health;
pub mod lifecycle;
pub mod monitor;
pub mod record;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use berth_engine::Engine;
use berth_runtime::StateRoot;
use tokio::sync::watch;

use crate::http::{ApiError, ApiResult};
use events::Events;
use record::{ContainerRecord, Status};

/// Where berthd keeps things and which binaries it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store (images) and berthd's containers, volumes.
    pub data_root: PathBuf,
    /// Runtime state: the runtime's root, monitors' sockets.
    pub exec_root: PathBuf,
    /// The `berth` runtime binary.
    pub runtime: PathBuf,
    /// The `berth-monitor` binary.
    pub monitor: PathBuf,
    /// The static init `--init` binds into containers (catatonit, docker-init).
    pub init: Option<PathBuf>,
}

impl Config {
    /// The runtime's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }

    /// Where containers' records, logs and bundles live.
    pub fn containers_dir(&self) -> PathBuf {
        self.data_root.join("berthd").join("containers")
    }

    /// Container `id`'s directory.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// Container `id`'s monitor directory (short: unix socket paths are at most 107 bytes).
    pub fn monitor_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("m").join(&id[..16.min(id.len())])
    }

    /// Exec `id`'s monitor directory.
    pub fn exec_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("x").join(&id[..16.min(id.len())])
    }
}

/// A container: its record, and who waits for it to change.
pub struct Container {
    /// Its ID.
    pub id: String,
    record: Mutex<ContainerRecord>,
    changed: watch::Sender<u64>,
    /// Serialises start, stop, restart and remove of this container.
    pub op: tokio::sync::Mutex<()>,
    /// Where attach clients connect (the running monitor's directory), or who waits for it.
    pub attach: Mutex<lifecycle::AttachHub>,
    /// Its health, while a health check runs.
    pub health: Mutex<Option<health::Health>>,
}

impl Container {
    fn new(record: ContainerRecord) -> Arc<Container> {
        Arc::new(Container {
            id: record.id.clone(),
            record: Mutex::new(record),
            changed: watch::channel(0).0,
            op: tokio::sync::Mutex::new(()),
            attach: Mutex::new(lifecycle::AttachHub::default()),
            health: Mutex::new(None),
        })
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> ContainerRecord {
        self.record.lock().expect("container lock").clone()
    }

    /// Changes the record, persists it, and wakes the waiters.
    pub fn update<R>(&self, dir: &Path, f: impl FnOnce(&mut ContainerRecord) -> R) -> R {
        let out = {
            let mut r = self.record.lock().expect("container lock");
            let out = f(&mut r);
            if let Err(e) = r.save(dir) {
                tracing::error!("saving container {}: {e}", r.id);
            }
            out
        };
        self.changed.send_modify(|n| *n += 1);
        out
    }

    /// A receiver that sees every change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.record.lock().expect("container lock").state.status
    }
}

/// berthd.
pub struct Daemon {
    /// Paths and binaries.
    pub config: Config,
    /// The engine over the runtime root and the store.
    pub engine: Engine,
    containers: RwLock<BTreeMap<String, Arc<Container>>>,
    /// Removed containers' IDs (for `wait?condition=removed`).
    removed: watch::Sender<Vec<String>>,
    /// Exec instances by ID.
    pub execs: Mutex<HashMap<String, Arc<exec::Exec>>>,
    /// The event stream.
    pub events: Events,
    /// When berthd started.
    pub started: std::time::SystemTime,
    labels_lock: Mutex<()>,
}

impl Daemon {
    /// A daemon over `config`, its containers loaded from disk (not yet recovered: see
    /// [`lifecycle::recover`]).
    pub fn new(config: Config) -> std::io::Result<Arc<Daemon>> {
        for dir in [
            config.containers_dir(),
            config.runtime_root(),
            config.exec_root.clone(),
        ] {
            std::fs::create_dir_all(&dir)?;
        }
        let engine = Engine::new(StateRoot::new(config.runtime_root()), &config.data_root);
        let mut map = BTreeMap::new();
        for entry in std::fs::read_dir(config.containers_dir())?.flatten() {
            match ContainerRecord::load(&entry.path()) {
                Ok(r) if r.id == entry.file_name().to_string_lossy() => {
                    map.insert(r.id.clone(), Container::new(r));
                }
                Ok(_) => tracing::warn!("{}: record of another container", entry.path().display()),
                Err(e) => tracing::warn!("{}: {e}", entry.path().display()),
            }
        }
        Ok(Arc::new(Daemon {
            config,
            engine,
            containers: RwLock::new(map),
            removed: watch::channel(Vec::new()).0,
            execs: Mutex::new(HashMap::new()),
            events: Events::default(),
            started: std::time::SystemTime::now(),
            labels_lock: Mutex::new(()),
        }))
    }

    /// Every container.
    pub fn containers(&self) -> Vec<Arc<Container>> {
        self.containers
            .read()
            .expect("containers lock")
            .values()
            .cloned()
            .collect()
    }

    /// A container by full ID, name (`web` or `/web`) or unique ID prefix; 404 otherwise.
    pub fn find(&self, key: &str) -> ApiResult<Arc<Container>> {
        let map = self.containers.read().expect("containers lock");
        if let Some(c) = map.get(key) {
            return Ok(c.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(c) = map.values().find(|c| c.snapshot().name == name) {
            return Ok(c.clone());
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = map
                .range(key.to_string()..)
                .take_while(|(k, _)| k.starts_with(key))
                .collect();
            match hits.len() {
                1 => return Ok(hits[0].1.clone()),
                0 => {}
                n => {
                    return Err(ApiError::bad_request(format!(
                        "multiple IDs found with provided prefix: {key} ({n} containers)"
                    )))
                }
            }
        }
        Err(ApiError::not_found(format!("No such container: {key}")))
    }

    /// Whether a container has `name`.
    pub fn name_taken(&self, name: &str) -> Option<String> {
        self.containers
            .read()
            .expect("containers lock")
            .values()
            .find(|c| c.snapshot().name == name)
            .map(|c| c.id.clone())
    }

    /// Adds a made container, unless another took its name meanwhile (then the other's ID).
    pub fn insert(&self, record: ContainerRecord) -> Result<Arc<Container>, String> {
        let mut map = self.containers.write().expect("containers lock");
        if let Some(other) = map.values().find(|c| c.snapshot().name == record.name) {
            return Err(other.id.clone());
        }
        let c = Container::new(record);
        map.insert(c.id.clone(), c.clone());
        Ok(c)
    }

    /// Forgets a removed container and wakes who waits for its removal.
    pub fn forget(&self, id: &str) {
        self.containers.write().expect("containers lock").remove(id);
        self.removed.send_modify(|v| {
            v.push(id.to_string());
            if v.len() > 256 {
                v.remove(0);
            }
        });
        self.execs
            .lock()
            .expect("execs lock")
            .retain(|_, e| e.container != id);
    }

    /// A receiver that sees removals.
    pub fn watch_removed(&self) -> watch::Receiver<Vec<String>> {
        self.removed.subscribe()
    }

    fn network_labels_path(&self) -> PathBuf {
        self.config
            .data_root
            .join("berthd")
            .join("network-labels.json")
    }

    /// The labels given to network `name` when it was created.
    pub fn network_labels(&self, name: &str) -> BTreeMap<String, String> {
        let all: BTreeMap<String, BTreeMap<String, String>> =
            std::fs::read(self.network_labels_path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
        all.get(name).cloned().unwrap_or_default()
    }

    /// Records network `name`'s labels (empty: forgets them).
    pub fn set_network_labels(&self, name: &str, labels: BTreeMap<String, String>) {
        let _guard = self.labels_lock.lock().expect("labels lock");
        let path = self.network_labels_path();
        let mut all: BTreeMap<String, BTreeMap<String, String>> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if labels.is_empty() {
            all.remove(name);
        } else {
            all.insert(name.to_string(), labels);
        }
        if let Ok(bytes) = serde_json::to_vec(&all) {
            let _ = berth_sys::fs::write_atomic(
                &path,
                &bytes,
                0o600,
                berth_sys::fs::Durability::Durable,
            );
        }
    }

    /// Emits a container event with its name and image (and `extra`).
    pub fn container_event(&self, c: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), c.name.clone());
        attrs.insert("image".to_string(), c.image.clone());
        if let Some(labels) = &c.config.labels {
            for (k, v) in labels {
                attrs.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.events.emit("container", action, &c.id, attrs);
    }
}
