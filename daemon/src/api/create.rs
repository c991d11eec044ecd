//! `POST /containers/create`: Docker's container config and host config translated into the
//! engine's request (process overrides, network, host options), the bundle made, the
//! container recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::{
    Bind, ContainerRequest, HostOptions, NetworkChoice, NetworkMode, ProcessOverrides, Tmpfs,
};
use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, HostConfig, MountType};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;

use crate::http::body::{json_body, Resp};
use crate::http::{ApiError, ApiResult, Ctx};
use crate::state::record::{self, ContainerRecord, NetRecord, RunState};
use crate::state::Daemon;

/// Where named volumes live.
pub fn volumes_dir(d: &Daemon) -> PathBuf {
    d.config.data_root.join("berthd").join("volumes")
}

/// A named volume's data directory, made on first use.
pub fn volume_path(d: &Daemon, name: &str) -> ApiResult<PathBuf> {
    record::validate_name(name).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ))
    })?;
    let p = volumes_dir(d).join(name).join("_data");
    std::fs::create_dir_all(&p).map_err(|e| ApiError::internal(format!("{}: {e}", p.display())))?;
    Ok(p)
}

/// `HostConfig.Binds` entries: `SRC:DST[:ro|rw[,...]]`, as `-v` spells them (see
/// [`berth_engine::host_flags::parse_volume`]); a name is one of berthd's volumes.
fn parse_bind(d: &Daemon, spec: &str) -> ApiResult<Bind> {
    let volume = |name: &str| {
        volume_path(d, name).map_err(|e| berth_engine::Error::Flag {
            flag: "volume".into(),
            value: name.into(),
            reason: e.to_string(),
        })
    };
    berth_engine::host_flags::parse_volume(spec, &volume)
        .map_err(|e| ApiError::bad_request(format!("invalid volume specification: {e}")))
}

fn host_options(d: &Daemon, hc: &HostConfig) -> ApiResult<HostOptions> {
    let mut h = HostOptions::default();
    for b in hc.binds.iter().flatten() {
        h.binds.push(parse_bind(d, b)?);
    }
    for m in hc.mounts.iter().flatten() {
        let target = m
            .target
            .clone()
            .filter(|t| t.starts_with('/'))
            .ok_or_else(|| {
                ApiError::bad_request("invalid mount config: Target must be an absolute path")
            })?;
        match m.typ {
            Some(MountType::BIND) => {
                let src = m
                    .source
                    .clone()
                    .filter(|s| s.starts_with('/'))
                    .ok_or_else(|| ApiError::bad_request("invalid mount config for type \"bind\": Source must be an absolute path"))?;
                if !Path::new(&src).exists() {
                    return Err(ApiError::bad_request(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                    )));
                }
                h.binds.push(Bind {
                    source: src.into(),
                    destination: target,
                    readonly: m.read_only.unwrap_or(false),
                });
            }
            Some(MountType::VOLUME) => {
                let name = m
                    .source
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(record::new_id);
                h.binds.push(Bind {
                    source: volume_path(d, &name)?,
                    destination: target,
                    readonly: m.read_only.unwrap_or(false),
                });
            }
            Some(MountType::TMPFS) => {
                let mut options = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if let Some(s) = t.size_bytes {
                        options.push(format!("size={s}"));
                    }
                    if let Some(mode) = t.mode {
                        options.push(format!("mode={mode:o}"));
                    }
                }
                h.tmpfs.push(Tmpfs {
                    destination: target,
                    options,
                });
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "mount type {:?} is not supported by berthd",
                    other.map(|t| t.to_string())
                )))
            }
        }
    }
    for (dst, opts) in hc.tmpfs.iter().flatten() {
        h.tmpfs.push(Tmpfs {
            destination: dst.clone(),
            options: opts
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    if hc.init.unwrap_or(false) {
        h.init = Some(d.config.init.clone().ok_or_else(|| {
            ApiError::bad_request(
                "--init: no init binary found (install catatonit or tini, or start berthd with --init-path)",
            )
        })?);
    }
    h.readonly_rootfs = hc.readonly_rootfs.unwrap_or(false);
    h.console_size = hc
        .console_size
        .as_deref()
        .and_then(|s| <[usize; 2]>::try_from(s).ok())
        .map(|[r, c]| {
            (
                r.min(u16::MAX as usize) as u32,
                c.min(u16::MAX as usize) as u32,
            )
        });
    h.privileged = hc.privileged.unwrap_or(false);
    h.cap_add = hc.cap_add.clone().unwrap_or_default();
    h.cap_drop = hc.cap_drop.clone().unwrap_or_default();
    h.memory = hc.memory.filter(|m| *m > 0);
    h.nano_cpus = hc.nano_cpus.filter(|n| *n > 0);
    h.cpu_shares = hc.cpu_shares.filter(|s| *s > 0).map(|s| s as u64);
    h.pids_limit = hc.pids_limit.filter(|p| *p > 0);
    h.shm_size = hc.shm_size.filter(|s| *s > 0);
    h.sysctls = hc
        .sysctls
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    for opt in hc.security_opt.iter().flatten() {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt, "true"));
        match k {
            "no-new-privileges" => h.no_new_privileges = v != "false",
            "seccomp" | "apparmor" | "label" => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid --security-opt: {opt:?}"
                )))
            }
        }
    }
    if hc.oom_score_adj.is_some_and(|v| v < 0) {
        return Err(ApiError::bad_request(
            "OomScoreAdj below 0 needs CAP_SYS_RESOURCE, which this host does not give",
        ));
    }
    Ok(h)
}

/// The network, and the host ports chosen for `-p PORT` and `-P` written back into
/// `hc.PortBindings` (so inspect and `docker port` show them).
fn network_choice(hc: &mut HostConfig, exposed: &[String]) -> ApiResult<NetworkChoice> {
    let mode = match hc.network_mode.as_deref().unwrap_or("default") {
        "" | "default" | "bridge" => NetworkMode::Bridge,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        m if m.starts_with("container:") => {
            return Err(ApiError::bad_request(
                "network mode container:<id> is not supported by berthd",
            ))
        }
        name => NetworkMode::Named(name.to_string()),
    };
    let mut specs = Vec::new();
    if hc.publish_all_ports.unwrap_or(false) {
        let bindings = hc.port_bindings.get_or_insert_with(Default::default);
        for port in exposed {
            bindings.entry(port.clone()).or_insert_with(|| {
                Some(vec![bollard_stubs::models::PortBinding {
                    host_ip: None,
                    host_port: None,
                }])
            });
        }
    }
    for (port, bindings) in hc.port_bindings.iter_mut().flatten() {
        let (cport, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        for b in bindings.iter_mut().flatten() {
            let host_port = b.host_port.clone().filter(|p| !p.is_empty());
            let host_port = match host_port {
                Some(p) => p,
                None => {
                    let p = free_port()?.to_string();
                    b.host_port = Some(p.clone());
                    p
                }
            };
            let ip = b
                .host_ip
                .clone()
                .filter(|i| !i.is_empty() && i != "0.0.0.0" && i != "::");
            specs.push(match ip {
                Some(ip) => format!("{ip}:{host_port}:{cport}/{proto}"),
                None => format!("{host_port}:{cport}/{proto}"),
            });
        }
    }
    let publish = berth_engine::network::parse_publish(&specs).map_err(ApiError::from)?;
    let choice = NetworkChoice { mode, publish };
    choice.validate().map_err(ApiError::from)?;
    Ok(choice)
}

/// `HostConfig.LogConfig`: the json-file driver (`max-size`, `max-file`) or `none`.
fn check_log_config(hc: &HostConfig) -> ApiResult<()> {
    let Some(lc) = &hc.log_config else {
        return Ok(());
    };
    match lc.typ.as_deref().unwrap_or("") {
        "" | "json-file" | "none" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "logging driver {other:?} is not supported by berthd (json-file or none)"
            )))
        }
    }
    for (k, v) in lc.config.iter().flatten() {
        let ok = match k.as_str() {
            "max-size" => berth_image::extract::parse_size(v).is_some_and(|n| n > 0),
            "max-file" => v.parse::<u32>().is_ok_and(|n| n > 0),
            _ => false,
        };
        if !ok {
            return Err(ApiError::bad_request(format!(
                "invalid log option {k}={v:?}"
            )));
        }
    }
    Ok(())
}

/// A free port on the host (for `-p 80` and `-P`).
fn free_port() -> ApiResult<u16> {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ApiError::internal(format!("finding a free port: {e}")))
}

/// `POST /containers/create?name=`.
pub async fn create(d: &Arc<Daemon>, ctx: &Ctx, req: Request<Incoming>) -> ApiResult<Resp> {
    let name = match ctx.query.get("name").filter(|n| !n.is_empty()) {
        Some(n) => {
            let n = n.strip_prefix('/').unwrap_or(n).to_string();
            record::validate_name(&n).map_err(ApiError::bad_request)?;
            n
        }
        None => loop {
            let n = record::generate_name();
            if d.name_taken(&n).is_none() {
                break n;
            }
        },
    };
    let body: Option<ContainerCreateBody> = json_body(req.into_body()).await?;
    let body = body.ok_or_else(|| {
        ApiError::bad_request("Config cannot be empty in order to create a container")
    })?;
    let image = body
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::bad_request("No image specified"))?;
    let store = d.engine.open_store()?;
    let (img, _) = super::images::find(&store, &image).map_err(|e| {
        if e.status == hyper::StatusCode::NOT_FOUND {
            let n = berth_image::store::normalize_name(&image).unwrap_or(image.clone());
            ApiError::not_found(format!("No such image: {n}"))
        } else {
            e
        }
    })?;
    let image_cfg = store.image_config(&img).map_err(ApiError::from)?;
    let mut hc = body.host_config.clone().unwrap_or_default();
    if let Some(id) = d.name_taken(&name) {
        return Err(ApiError::conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    let mut exposed = body.exposed_ports.clone().unwrap_or_default();
    if let Some(img_ports) = image_cfg
        .config()
        .as_ref()
        .and_then(|c| c.exposed_ports().clone())
    {
        exposed.extend(img_ports);
    }
    check_log_config(&hc)?;
    let network = network_choice(&mut hc, &exposed)?;
    let host = host_options(d, &hc)?;
    let id = record::new_id();
    let hostname = body
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| id[..12].to_string());
    let process = ProcessOverrides {
        command: body.cmd.clone().unwrap_or_default(),
        entrypoint: body.entrypoint.clone(),
        env: body.env.clone().unwrap_or_default(),
        workdir: body.working_dir.clone().filter(|w| !w.is_empty()),
        user: body.user.clone().filter(|u| !u.is_empty()),
    };
    if let Some(w) = &process.workdir {
        if !w.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
    }
    let holder = format!("berthd:{id}");
    let vols = volumes_dir(d);
    let volume_binds: Vec<(String, PathBuf)> = host
        .binds
        .iter()
        .filter(|b| b.source.starts_with(&vols))
        .map(|b| (b.destination.clone(), b.source.clone()))
        .collect();
    let request = ContainerRequest {
        id: id.clone(),
        image: img.name.clone(),
        hostname: hostname.clone(),
        tty: body.tty.unwrap_or(false),
        process,
        network: network.clone(),
        host,
        holder: holder.clone(),
    };
    let dir = d.config.container_dir(&id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let engine = d.engine.clone();
    let bundle = dir.join("bundle");
    let made = tokio::task::spawn_blocking(move || {
        let made = engine.make_container(&bundle, &request)?;
        // A named volume's first use: seeded with what the image has at its path.
        let store = engine.open_store()?;
        let mut budget = berth_image::volume::SeedBudget::new(store.limits());
        for (dest, source) in &volume_binds {
            if let Err(e) =
                berth_image::volume::seed(&made.bundle.join("rootfs"), dest, source, &mut budget)
            {
                tracing::warn!("seeding volume {}: {e}", source.display());
            }
        }
        Ok::<_, berth_engine::Error>(made)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let made = match made {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::from(e));
        }
    };
    // The config as it runs: the image's defaults where the client gave none.
    let img_conf = image_cfg.config().clone().unwrap_or_default();
    let mut config: ContainerConfig = serde_json::to_value(&body)
        .and_then(serde_json::from_value)
        .unwrap_or_default();
    let spec_process = std::fs::read(made.bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<berth_runtime::oci::Spec>(&b).ok())
        .and_then(|s| s.process().clone());
    if let Some(p) = &spec_process {
        config.env = p.env().clone();
    }
    if config.cmd.is_none() && body.entrypoint.is_none() {
        config.cmd = img_conf.cmd().clone();
    }
    if config.entrypoint.is_none() {
        config.entrypoint = img_conf.entrypoint().clone();
    }
    if config.working_dir.as_deref().unwrap_or("").is_empty() {
        config.working_dir = img_conf.working_dir().clone();
    }
    if config.user.as_deref().unwrap_or("").is_empty() {
        config.user = img_conf.user().clone();
    }
    config.hostname = Some(hostname);
    config.image = Some(image.clone());
    if config.stop_signal.is_none() {
        config.stop_signal = img_conf.stop_signal().clone();
    }
    let mut labels: std::collections::HashMap<String, String> = img_conf
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(body.labels.clone().unwrap_or_default());
    config.labels = Some(labels);
    config.exposed_ports = (!exposed.is_empty()).then_some(exposed);
    let r = ContainerRecord {
        id: id.clone(),
        name,
        created: crate::time::now_rfc3339(),
        image,
        image_id: img.config.clone(),
        config,
        host_config: hc,
        network: NetRecord {
            mode: network.mode.as_str().to_string(),
            state: made.network_state.clone(),
            ip: made.ip.map(|i| i.to_string()),
            connected: Vec::new(),
        },
        state: RunState {
            started_at: crate::time::ZERO.into(),
            finished_at: crate::time::ZERO.into(),
            ..RunState::default()
        },
        restart_count: 0,
        holder,
        path: spec_process
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default(),
    };
    if let Err(e) = r.save(&dir) {
        let engine = d.engine.clone();
        let (id2, holder2, net) = (r.id.clone(), r.holder.clone(), r.network.state.clone());
        let bundle = dir.join("bundle");
        let _ = tokio::task::spawn_blocking(move || {
            engine.remove_container(&id2, &bundle, &holder2, net.as_deref())
        })
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ApiError::internal(format!("saving the container: {e}")));
    }
    let name = r.name.clone();
    let (holder, net) = (r.holder.clone(), r.network.state.clone());
    let c = match d.insert(r) {
        Ok(c) => c,
        Err(other) => {
            // Another create took the name meanwhile: this one's bundle, network and
            // directory go.
            let engine = d.engine.clone();
            let (id2, bundle) = (id.clone(), dir.join("bundle"));
            let _ = tokio::task::spawn_blocking(move || {
                engine.remove_container(&id2, &bundle, &holder, net.as_deref())
            })
            .await;
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
    };
    d.container_event(&c.snapshot(), "create", &[]);
    Ok(super::images::created(&json!({"Id": id, "Warnings": []})))
}
