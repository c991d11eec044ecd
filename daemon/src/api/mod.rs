//! The endpoints, one module per family; [`route`] sends each request to its handler.

pub mod archive;
pub mod archive_tree;
pub mod attach;
pub mod build;
pub mod containers;
pub mod create;
pub mod exec;
pub mod image_archive;
pub mod images;
pub mod logs;
pub mod networks;
pub mod stats;
pub mod system;
pub mod volumes;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request};

use crate::http::{no_route, ApiResult, Ctx, Resp};
use crate::state::Daemon;

/// Serves one request.
pub async fn route(d: Arc<Daemon>, ctx: Ctx, req: Request<Incoming>) -> ApiResult<Resp> {
    let parts = ctx.parts();
    let m = &ctx.method;
    let (get, post, delete, head) = (
        m == Method::GET,
        m == Method::POST,
        m == Method::DELETE,
        m == Method::HEAD,
    );
    match parts.as_slice() {
        ["_ping"] if get || head => Ok(system::ping(head)),
        ["version"] if get => Ok(system::version()),
        ["info"] if get => system::info(&d),
        ["events"] if get => system::events(&d, &ctx),
        ["system", "df"] if get => system::df(&d),
        ["auth"] if post => system::auth(req).await,
        ["build"] if post => build::build(&d, &ctx, req).await,
        ["build", "prune"] if post => build::prune(&d).await,
        ["containers", "create"] if post => containers::create(&d, &ctx, req).await,
        ["containers", "json"] if get => containers::list(&d, &ctx),
        ["containers", "prune"] if post => containers::prune(&d, &ctx).await,
        ["containers", id, "json"] if get => containers::inspect(&d, id),
        ["containers", id, action] if post => containers::action(&d, &ctx, id, action, req).await,
        ["containers", id, "archive"] if get || head => archive::get(&d, &ctx, id, head),
        ["containers", id, "archive"] if m == Method::PUT => archive::put(&d, &ctx, id, req).await,
        ["containers", id, "logs"] if get => containers::logs(&d, &ctx, id),
        ["containers", id, "top"] if get => containers::top(&d, &ctx, id).await,
        ["containers", id, "stats"] if get => containers::stats(&d, &ctx, id).await,
        ["containers", id] if delete => containers::remove(&d, &ctx, id).await,
        ["exec", id, "start"] if post => exec::start(&d, id, req).await,
        ["exec", id, "resize"] if post => exec::resize(&d, &ctx, id).await,
        ["exec", id, "json"] if get => exec::inspect(&d, id),
        ["volumes", rest @ ..] => volumes::route(&d, &ctx, rest, req).await,
        ["networks", rest @ ..] => networks::route(&d, &ctx, rest, req).await,
        ["images", rest @ ..] => images::route(&d, &ctx, rest, req).await,
        _ => Err(no_route(&ctx)),
    }
}
