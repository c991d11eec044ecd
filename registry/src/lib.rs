//! berth's OCI distribution client: pull images from and push them to any registry that
//! speaks the OCI distribution API (docker.io, a CNCF distribution registry, quay...).
//!
//! It is its own crate because it is the only part of berth that talks to the network: it
//! brings an HTTP client and a TLS stack that neither the runtime nor the image store need,
//! and it treats every byte it receives as hostile until the store has verified it. The
//! store ([`berth_image::store`]) stays a local, offline component; this crate feeds it
//! through [`berth_image::store::BlobSource`].
//!
//! - [`reference`](mod@reference): docker-style references (default registry, `library/`, tags, digests).
//! - [`auth`]: docker's `config.json` credentials and `WWW-Authenticate` challenges.
//! - [`client`]: HTTP(S), Basic and Bearer auth, retries, redirects, resumable downloads.
//! - [`pull`]: manifests by tag or digest, platform selection, concurrent verified layers.
//! - [`push`]: `HEAD` before upload, cross-repository mounts, monolithic or chunked uploads.
//! - [`progress`]: events for progress bars or lines.
//! - [`limits`]: what a registry may make a pull do, and the variables that change it.
//!
//! A hostile registry is bounded ([`Limits`], [`limits`] has the details): documents
//! (manifests, indexes, configs, tokens) are at most 4 MiB and must arrive whole within
//! `BERTH_REGISTRY_TIMEOUT` (60 s); an image of more than `BERTH_PULL_MAX_LAYERS` (128)
//! layers is refused before any blob is requested; a blob declared larger than
//! `BERTH_PULL_MAX_BLOB_SIZE` (64 GiB), or than the store's free space less
//! `BERTH_PULL_DISK_RESERVE` (1 GiB), is not requested, and no more than its declared size is
//! ever written; a download that receives nothing for `BERTH_REGISTRY_IDLE_TIMEOUT` (30 s),
//! or whose average rate falls below `BERTH_REGISTRY_MIN_RATE` (64 KiB/s) after a grace
//! period, fails. Each failure is an [`Error`] naming the digest or reference, the limit and
//! its variable, and leaves nothing in the store.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_registry::{client::{Client, ClientOptions}, pull, progress::Silent, Reference};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = berth_image::Store::open_default()?;
//! let r = Reference::parse("localhost:5000/busybox:latest")?;
//! let client = Client::new(r.api_host(), ClientOptions::default())?;
//! let report = pull::pull(&client, &store, &r, &pull::PullOptions::default(), Arc::new(Silent))?;
//! println!("{} {}", report.record.name, report.digest);
//! # Ok(()) }
//! ```

pub mod auth;
pub mod catalog;
pub mod client;
pub mod error;
#[cfg(test)]
mod hostile;
pub mod limits;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
#[cfg(test)]
mod test_server;

pub use auth::{Credentials, DockerConfig};
pub use client::{Client, ClientOptions};
pub use error::{Error, Result};
pub use limits::Limits;
pub use reference::Reference;

/// A client for `reference`'s registry with the credentials stored for it in docker's
/// config.json (when `opts` carries none and the file has some).
pub fn client_for(reference: &Reference, mut opts: ClientOptions) -> Result<Client> {
    if opts.credentials.is_none() {
        if let Ok(cfg) = DockerConfig::load_default() {
            opts.credentials = cfg.get(&reference.registry);
        }
    }
    Client::new(reference.api_host(), opts)
}

/// Checks credentials against a registry (`berth login`): `GET /v2/` and, for Bearer
/// registries, a token without scopes.
pub fn check_login(registry: &str, opts: ClientOptions) -> Result<()> {
    let host = if registry == reference::DOCKER_HUB {
        reference::DOCKER_HUB_API
    } else {
        registry
    };
    let client = Client::new(host, opts)?;
    let within = client::Within {
        deadline: Some(client.document_deadline()),
        retry_until: None,
    };
    client.send_with("GET", "/v2/", &[], &[], &client::Body::Empty, within)?;
    Ok(())
}
