//! Network endpoints: list, inspect, create (a bridge with a subnet), remove, prune, connect
//! and disconnect. Docker's default network `bridge` is berth's default network; `host` and
//! `none` are modes, listed as docker lists them. Containers on a user-defined network find
//! each other by name through their hosts files ([`crate::state::dns`]).
//!
//! A container connected to a further network gets one more interface (`eth1`, `eth2`, ...)
//! in the namespace it already has ([`berth_netns::connect`]), whether it runs or not, so a
//! created container has it from its start and a restart (of it or of berthd) keeps it; its
//! record lists the network ([`crate::state::record::Endpoint`]) for inspect, name
//! resolution and removal (which detaches every network).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_netns::{network, NetworkOptions, Subnet};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::body::{json_body, no_content, ok_json, Resp};
use crate::http::query::labels_match;
use crate::http::{no_route, ApiError, ApiResult, Ctx};
use crate::state::record::{Endpoint, Status};
use crate::state::{Container, Daemon};

/// The names docker predefines.
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// A network's ID: stable, derived from its name.
pub fn network_id(name: &str) -> String {
    crate::state::record::hex(&Sha256::digest(format!("berthd-network:{name}").as_bytes()))
}

/// berth's name for a docker network name (`bridge` is berth's default network).
pub fn berth_name(docker: &str) -> &str {
    if docker == "bridge" {
        network::DEFAULT_NETWORK
    } else {
        docker
    }
}

fn docker_name(berth: &str) -> &str {
    if berth == network::DEFAULT_NETWORK {
        "bridge"
    } else {
        berth
    }
}

fn net_error(e: berth_netns::Error) -> ApiError {
    let message = crate::http::error::chain(&e);
    match e {
        berth_netns::Error::NetworkNotFound(n) => {
            ApiError::not_found(format!("network {n} not found"))
        }
        berth_netns::Error::NetworkExists(n) => {
            ApiError::conflict(format!("network with name {n} already exists"))
        }
        berth_netns::Error::NetworkInUse { .. } => ApiError::new(StatusCode::FORBIDDEN, message),
        berth_netns::Error::InvalidName { .. }
        | berth_netns::Error::InvalidConfig { .. }
        | berth_netns::Error::AddressInUse { .. } => ApiError::bad_request(message),
        _ => ApiError::internal(message),
    }
}

/// Routes `/networks/...`.
pub async fn route(
    d: &Arc<Daemon>,
    ctx: &Ctx,
    rest: &[&str],
    req: Request<Incoming>,
) -> ApiResult<Resp> {
    let m = &ctx.method;
    match rest {
        [] if m == hyper::Method::GET => list(d, ctx),
        ["create"] if m == hyper::Method::POST => create(d, req).await,
        ["prune"] if m == hyper::Method::POST => prune(d).await,
        [id] if m == hyper::Method::GET => inspect(d, id),
        [id] if m == hyper::Method::DELETE => remove(d, id).await,
        [id, "connect"] if m == hyper::Method::POST => connect(d, id, req).await,
        [id, "disconnect"] if m == hyper::Method::POST => disconnect(d, id, req).await,
        _ => Err(no_route(ctx)),
    }
}

/// Every network as docker shows it, by docker name.
fn all(d: &Daemon) -> ApiResult<BTreeMap<String, Value>> {
    let state = d.engine.network_state();
    let mut out = BTreeMap::new();
    let nets = if state.exists() {
        network::list(&state).map_err(net_error)?
    } else {
        Vec::new()
    };
    let containers: Vec<_> = d.containers().iter().map(|c| c.snapshot()).collect();
    let mut has_default = false;
    for n in nets {
        let name = docker_name(&n.name).to_string();
        has_default |= name == "bridge";
        let members: serde_json::Map<String, Value> = containers
            .iter()
            .filter(|c| c.state.status.is_live())
            .filter_map(|c| {
                let (_, ip, _) = c.network.endpoints().find(|(m, _, _)| berth_name(m) == n.name)?;
                let ip: Option<std::net::Ipv4Addr> = ip.and_then(|ip| ip.parse().ok());
                Some((
                    c.id.clone(),
                    json!({"Name": c.name, "EndpointID": c.id,
                           "MacAddress": ip.map(|ip| berth_netns::MacAddr::from_ip(ip).to_string()).unwrap_or_default(),
                           "IPv4Address": ip.map(|ip| format!("{ip}/{}", n.subnet.prefix())).unwrap_or_default(),
                           "IPv6Address": ""}),
                ))
            })
            .collect();
        let labels = d.network_labels(&n.name);
        out.insert(
            name.clone(),
            json!({
                "Name": name, "Id": network_id(&name), "Created": crate::time::ZERO,
                "Scope": "local", "Driver": "bridge", "EnableIPv6": false,
                "IPAM": {"Driver": "default", "Options": null,
                         "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]},
                "Internal": false, "Attachable": false, "Ingress": false,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
                "Containers": members,
                "Options": {"com.docker.network.bridge.name": n.bridge, "com.docker.network.driver.mtu": n.mtu.to_string()},
                "Labels": labels,
            }),
        );
    }
    if !has_default {
        out.insert(
            "bridge".into(),
            json!({"Name": "bridge", "Id": network_id("bridge"), "Created": crate::time::ZERO, "Scope": "local",
                   "Driver": "bridge", "EnableIPv6": false, "IPAM": {"Driver": "default", "Config": []},
                   "Internal": false, "Attachable": false, "Ingress": false, "Containers": {}, "Options": {}, "Labels": {}}),
        );
    }
    for special in ["host", "none"] {
        out.insert(
            special.into(),
            json!({"Name": special, "Id": network_id(special), "Created": crate::time::ZERO, "Scope": "local",
                   "Driver": if special == "host" { "host" } else { "null" }, "EnableIPv6": false,
                   "IPAM": {"Driver": "default", "Config": []}, "Internal": false, "Attachable": false,
                   "Ingress": false, "Containers": {}, "Options": {}, "Labels": {}}),
        );
    }
    Ok(out)
}

fn find(d: &Daemon, key: &str) -> ApiResult<Value> {
    let nets = all(d)?;
    if let Some(n) = nets.get(key) {
        return Ok(n.clone());
    }
    let hits: Vec<&Value> = nets
        .values()
        .filter(|n| {
            n["Id"]
                .as_str()
                .is_some_and(|id| !key.is_empty() && id.starts_with(key))
        })
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ApiError::not_found(format!("network {key} not found"))),
        _ => Err(ApiError::bad_request(format!("network {key} is ambiguous"))),
    }
}

fn list(d: &Daemon, ctx: &Ctx) -> ApiResult<Resp> {
    let f = ctx.query.filters()?;
    let out: Vec<Value> = all(d)?
        .into_values()
        .filter(|n| {
            let name = n["Name"].as_str().unwrap_or("");
            let id = n["Id"].as_str().unwrap_or("");
            let labels: BTreeMap<String, String> =
                serde_json::from_value(n["Labels"].clone()).unwrap_or_default();
            f.get("name")
                .is_none_or(|v| v.iter().any(|x| name.contains(x.as_str())))
                && f.get("id")
                    .is_none_or(|v| v.iter().any(|x| id.starts_with(x.as_str())))
                && f.get("driver")
                    .is_none_or(|v| v.iter().any(|x| n["Driver"] == json!(x)))
                && f.get("type").is_none_or(|v| {
                    v.iter()
                        .any(|x| (x == "builtin") == PREDEFINED.contains(&name))
                })
                && labels_match(&f, &labels)
        })
        .collect();
    Ok(ok_json(&out))
}

fn inspect(d: &Daemon, key: &str) -> ApiResult<Resp> {
    Ok(ok_json(&find(d, key)?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    name: String,
    #[serde(default)]
    driver: Option<String>,
    #[serde(default, rename = "IPAM")]
    ipam: Option<Ipam>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    internal: bool,
    #[serde(default, rename = "EnableIPv6")]
    enable_ipv6: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Ipam {
    #[serde(default)]
    config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamConfig {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

async fn create(d: &Arc<Daemon>, req: Request<Incoming>) -> ApiResult<Resp> {
    let body: CreateBody = json_body(req.into_body()).await?;
    if PREDEFINED.contains(&body.name.as_str()) || body.name == network::DEFAULT_NETWORK {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a pre-defined network and cannot be created",
                body.name
            ),
        ));
    }
    if let Some(driver) = body
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "bridge")
    {
        return Err(ApiError::bad_request(format!(
            "network driver {driver:?} is not supported by berthd (bridge only)"
        )));
    }
    if body.internal || body.enable_ipv6 {
        return Err(ApiError::bad_request(
            "internal and IPv6 networks are not supported by berthd",
        ));
    }
    let mut opts = NetworkOptions::default();
    if let Some(cfg) = body
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .and_then(|c| c.first())
    {
        if let Some(s) = cfg.subnet.as_deref().filter(|s| !s.is_empty()) {
            opts.subnet = Some(
                s.parse::<Subnet>()
                    .map_err(|e| ApiError::bad_request(format!("invalid subnet {s:?}: {e}")))?,
            );
        }
        if let Some(g) = cfg.gateway.as_deref().filter(|g| !g.is_empty()) {
            opts.gateway = Some(
                g.parse()
                    .map_err(|e| ApiError::bad_request(format!("invalid gateway {g:?}: {e}")))?,
            );
        }
    }
    let state = d.engine.network_state();
    let name = body.name.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&state)
            .map_err(|e| ApiError::internal(format!("{}: {e}", state.display())))?;
        network::create(&state, &name, &opts).map_err(net_error)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    d.set_network_labels(&body.name, body.labels.unwrap_or_default());
    let id = network_id(&body.name);
    d.events.emit(
        "network",
        "create",
        &id,
        BTreeMap::from([
            ("name".to_string(), body.name.clone()),
            ("type".to_string(), "bridge".to_string()),
        ]),
    );
    Ok(super::images::created(&json!({"Id": id, "Warning": ""})))
}

async fn remove(d: &Arc<Daemon>, key: &str) -> ApiResult<Resp> {
    let n = find(d, key)?;
    let name = n["Name"].as_str().unwrap_or("").to_string();
    if PREDEFINED.contains(&name.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{name} is a pre-defined network and cannot be removed"),
        ));
    }
    if let Some(c) = d
        .containers()
        .iter()
        .map(|c| c.snapshot())
        .find(|c| c.network.is_on(&name))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("error while removing network: network {name} id {} has active endpoints (container {})", network_id(&name), c.name),
        ));
    }
    let state = d.engine.network_state();
    let n2 = name.clone();
    tokio::task::spawn_blocking(move || network::remove(&state, &n2).map_err(net_error))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    d.set_network_labels(&name, BTreeMap::new());
    d.events.emit(
        "network",
        "destroy",
        &network_id(&name),
        BTreeMap::from([("name".to_string(), name)]),
    );
    Ok(no_content(StatusCode::NO_CONTENT))
}

async fn prune(d: &Arc<Daemon>) -> ApiResult<Resp> {
    let used: Vec<String> = d
        .containers()
        .iter()
        .flat_map(|c| c.snapshot().network.names())
        .collect();
    let mut deleted = Vec::new();
    for name in all(d)?.into_keys() {
        if PREDEFINED.contains(&name.as_str()) || used.contains(&name) {
            continue;
        }
        if remove(d, &name).await.is_ok() {
            deleted.push(name);
        }
    }
    Ok(ok_json(&json!({"NetworksDeleted": deleted})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConnectBody {
    container: String,
    #[serde(default)]
    endpoint_config: Option<EndpointConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointConfig {
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default, rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
}

#[derive(Debug, Default, Deserialize)]
struct EndpointIpam {
    #[serde(default, rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DisconnectBody {
    container: String,
    #[serde(default)]
    force: bool,
}

/// dockerd's refusals for a container that shares a namespace (`host`, `container:...`) or
/// has none of its own (`none`), and for the `host` and `none` networks themselves.
fn refuse_mode(mode: &str, network: &str) -> ApiResult<()> {
    if network == "host" {
        return Err(ApiError::bad_request(
            "container cannot be disconnected from host network or connected to host network",
        ));
    }
    if mode == "host" || mode.starts_with("container:") {
        return Err(ApiError::bad_request(
            "container sharing network namespace with another container or host cannot be connected to any other network",
        ));
    }
    if mode == "none" || network == "none" {
        return Err(ApiError::bad_request(
            "container cannot be connected to multiple networks with one of the networks in private (none) mode",
        ));
    }
    Ok(())
}

/// The network (docker's name) and the container a connect or disconnect names.
fn network_and_container(
    d: &Daemon,
    network: &str,
    container: &str,
) -> ApiResult<(String, Arc<Container>)> {
    let name = find(d, network)?["Name"].as_str().unwrap_or("").to_string();
    Ok((name, d.find(container)?))
}

/// After a connect or disconnect: records the container's further networks as `change`
/// leaves them, refreshes the names on `network` (and the container's own, if it runs) and
/// announces `action`.
fn record_change(
    d: &Daemon,
    c: &Container,
    network: &str,
    action: &str,
    change: impl FnOnce(&mut Vec<Endpoint>),
) -> Resp {
    let rec = c.update(&d.config.container_dir(&c.id), |r| {
        change(&mut r.network.connected);
        r.clone()
    });
    crate::state::dns::refresh(
        d,
        &[network.to_string()],
        rec.state.status.is_live().then_some(rec.id.as_str()),
    );
    d.events.emit(
        "network",
        action,
        &network_id(network),
        BTreeMap::from([
            ("container".to_string(), rec.id.clone()),
            ("name".to_string(), network.to_string()),
            ("type".to_string(), "bridge".to_string()),
        ]),
    );
    no_content(StatusCode::OK)
}

/// `POST /networks/{id}/connect`: one more interface in the container's namespace, on that
/// network, with an address from its pool (or the one asked for) and the aliases given.
async fn connect(d: &Arc<Daemon>, key: &str, req: Request<Incoming>) -> ApiResult<Resp> {
    let body: ConnectBody = json_body(req.into_body()).await?;
    let (name, c) = network_and_container(d, key, &body.container)?;
    let _op = c.op.lock().await;
    let r = c.snapshot();
    refuse_mode(&r.network.mode, &name)?;
    if r.network.is_on(&name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "endpoint with name {} already exists in network {name}",
                r.name
            ),
        ));
    }
    let cfg = body.endpoint_config.unwrap_or_default();
    let mut aliases = cfg.aliases.unwrap_or_default();
    aliases.retain(|a| !a.is_empty() && *a != r.name);
    aliases.dedup();
    if !aliases.is_empty() && name == "bridge" {
        return Err(ApiError::bad_request(
            "network-scoped alias is supported only for containers in user defined networks",
        ));
    }
    if let Some(bad) = aliases.iter().find(|a| {
        !a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    }) {
        return Err(ApiError::bad_request(format!("invalid alias {bad:?}")));
    }
    let ip = match cfg
        .ipam_config
        .and_then(|i| i.ipv4_address)
        .filter(|a| !a.is_empty())
    {
        Some(a) => Some(
            a.parse::<std::net::Ipv4Addr>()
                .map_err(|e| ApiError::bad_request(format!("invalid IPv4 address {a:?}: {e}")))?,
        ),
        None => None,
    };
    if matches!(r.state.status, Status::Removing | Status::Dead) {
        return Err(ApiError::conflict(format!(
            "container {} is marked for removal and cannot be connected or disconnected to the network",
            r.id
        )));
    }
    let Some(state) = r.network.state.clone() else {
        return Err(ApiError::internal(format!(
            "container {} has no network namespace of berth's",
            r.id
        )));
    };
    let opts = berth_netns::AttachOptions {
        ip,
        hostname: r.config.hostname.clone(),
        ..Default::default()
    };
    let (id, net) = (r.id.clone(), berth_name(&name).to_string());
    let made = tokio::task::spawn_blocking(move || {
        if net == network::DEFAULT_NETWORK {
            network::ensure_default(&state)?;
        }
        berth_netns::connect(&state, &net, &id, &opts)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| match e {
        berth_netns::Error::AlreadyAttached { .. } => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "endpoint with name {} already exists in network {name}",
                r.name
            ),
        ),
        e => net_error(e),
    })?;
    let endpoint = Endpoint {
        network: name.clone(),
        ip: made.ip.to_string(),
        aliases,
    };
    Ok(record_change(d, &c, &name, "connect", |e| e.push(endpoint)))
}

/// `POST /networks/{id}/disconnect`: the interface and the address go, and the names.
async fn disconnect(d: &Arc<Daemon>, key: &str, req: Request<Incoming>) -> ApiResult<Resp> {
    let body: DisconnectBody = json_body(req.into_body()).await?;
    let (name, c) = network_and_container(d, key, &body.container)?;
    let _op = c.op.lock().await;
    let r = c.snapshot();
    if name == "host" || r.network.mode == "host" {
        refuse_mode(&r.network.mode, "host")?;
    }
    if !r.network.is_on(&name) {
        // dockerd answers this with a plain error (500).
        return Err(ApiError::internal(format!(
            "container {} is not connected to network {name}",
            r.id
        )));
    }
    if r.network.mode == name {
        return Err(ApiError::not_implemented(&format!(
            "disconnecting a container from the network it was created on ({name})"
        )));
    }
    if let Some(state) = r.network.state.clone() {
        let (id, net) = (r.id.clone(), berth_name(&name).to_string());
        let res = tokio::task::spawn_blocking(move || berth_netns::disconnect(&state, &net, &id))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        match res {
            Ok(()) | Err(berth_netns::Error::NotAttached { .. }) => {}
            Err(e) if body.force => {
                tracing::warn!(
                    "disconnecting {} from {name}: {}",
                    r.id,
                    crate::http::error::chain(&e)
                );
            }
            Err(e) => return Err(net_error(e)),
        }
    }
    Ok(record_change(d, &c, &name, "disconnect", |e| {
        e.retain(|e| e.network != name);
    }))
}
