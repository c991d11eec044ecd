//! The registry's catalog (`GET /v2/_catalog`): the repositories it holds, for `docker
//! search` against a private registry (Docker Hub's search API is not the distribution API and
//! is not spoken here).

use crate::client::{read_document, Body, Client, Within};
use crate::error::{Error, Result};

/// The most repositories asked for at once.
pub const MAX_ENTRIES: usize = 1000;

/// The repositories the registry lists (at most `n`, at most [`MAX_ENTRIES`]).
pub fn catalog(client: &Client, n: usize) -> Result<Vec<String>> {
    let n = n.clamp(1, MAX_ENTRIES);
    let path = format!("/v2/_catalog?n={n}");
    let what = format!("catalog of {}", client.host());
    let within = Within {
        deadline: Some(client.document_deadline()),
        retry_until: None,
    };
    let scopes = ["registry:catalog:*".to_string()];
    let resp = client.send_with("GET", &path, &scopes, &[], &Body::Empty, within)?;
    let bytes = read_document(resp, &what, || client.timeout(&what))?;
    #[derive(serde::Deserialize)]
    struct Catalog {
        #[serde(default)]
        repositories: Vec<String>,
    }
    let c: Catalog =
        serde_json::from_slice(&bytes).map_err(|e| Error::protocol(&what, e.to_string()))?;
    Ok(c.repositories.into_iter().take(n).collect())
}
