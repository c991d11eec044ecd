//! Where a request may go: API paths and `Location`s resolved against the registry, never
//! from HTTPS down to plain HTTP without `--insecure`; the Authorization header only for
//! URLs of the registry's origin (scheme, host and port); and which token endpoints may
//! receive the credentials.

use url::Url;

use super::Client;
use crate::error::{Error, Result};
use crate::reference::url_is_loopback;

/// Whether two URLs have the same origin: scheme, host and port (default ports included).
pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// Whether `url` (a response's final URL, as ureq reports it) is of `base`'s origin.
pub(super) fn from_origin(url: &str, base: &Url) -> bool {
    Url::parse(url).is_ok_and(|u| same_origin(&u, base))
}

/// The URL `path_or_url` (an API path, or an absolute, scheme-relative or relative
/// `Location`) names, resolved against the registry's `base`. HTTP(S) only, and no HTTPS
/// registry's request goes over plain HTTP unless `insecure`.
pub(super) fn resolve_target(base: &Url, path_or_url: &str, insecure: bool) -> Result<Url> {
    let url = base
        .join(path_or_url)
        .map_err(|e| Error::protocol(format!("URL {path_or_url:?}"), e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if base.scheme() == "http" || insecure => {}
        "http" => {
            let registry = base.host_str().unwrap_or_default();
            return Err(Error::protocol(
                format!("URL {url}"),
                format!(
                    "the registry {registry} is HTTPS and this URL is plain HTTP \
                     (use --insecure to allow it)"
                ),
            ));
        }
        other => {
            return Err(Error::protocol(
                format!("URL {url}"),
                format!("unsupported scheme {other:?}"),
            ))
        }
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(Error::protocol(
            format!("URL {path_or_url:?}"),
            "no host, or user info in the URL",
        ));
    }
    Ok(url)
}

/// Redirects followed for one request.
pub(super) const MAX_REDIRECTS: u32 = 5;

/// Where the answer `resp` to `method url` redirects to, when it is a redirect berth follows
/// (301, 302, 303, 307 or 308 to a GET or HEAD, with a `Location`), checked as
/// [`resolve_target`] checks any URL. ureq does not follow redirects itself: ureq 2 panics on
/// a `Location` without a host (`sha256:...`, `file:///x`), which any registry or CDN could
/// send.
pub(super) fn redirect(
    method: &str,
    url: &str,
    resp: &ureq::Response,
    insecure: bool,
) -> Option<Result<Url>> {
    if !matches!(resp.status(), 301 | 302 | 303 | 307 | 308) || !matches!(method, "GET" | "HEAD") {
        return None;
    }
    let location = resp.header("location")?;
    Some(
        Url::parse(url)
            .map_err(|e| Error::protocol(format!("URL {url:?}"), e.to_string()))
            .and_then(|base| resolve_target(&base, location, insecure)),
    )
}

/// The error of a request redirected more than [`MAX_REDIRECTS`] times.
pub(super) fn too_many_redirects(method: &str, url: &str) -> Error {
    Error::protocol(
        format!("{method} {url}"),
        format!("more than {MAX_REDIRECTS} redirects"),
    )
}

/// Whether a token endpoint (a Bearer challenge's `realm`) may receive the credentials of
/// the registry at `registry` (its base URL): an `http(s)` URL without user info; plain HTTP
/// or a loopback host only when the registry itself is on loopback, or with `insecure`.
/// Gives the parsed realm, or why it is refused.
pub(super) fn token_realm(realm: &str, registry: &Url, insecure: bool) -> Result<Url, String> {
    let url = Url::parse(realm).map_err(|e| format!("the token endpoint {realm:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "the token endpoint {realm:?} is not an http(s) URL with a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the token endpoint {realm:?} carries user info in its URL"
        ));
    }
    let local_registry = url_is_loopback(registry);
    if url.scheme() == "http" && !local_registry && !insecure {
        return Err(format!(
            "the token endpoint {url} is plain HTTP; use --insecure to allow it"
        ));
    }
    if url_is_loopback(&url) && !local_registry && !insecure {
        return Err(format!(
            "the token endpoint {url} is on this machine while the registry is not; \
             use --insecure to allow it"
        ));
    }
    Ok(url)
}

impl Client {
    /// The URL of an API path (`/v2/...`) or of a `Location` (absolute or relative), with
    /// whether it is of the registry's origin (and so may carry its credentials).
    pub(super) fn target(&self, path_or_url: &str) -> Result<(Url, bool)> {
        let base = self.base_url()?;
        let url = resolve_target(&base, path_or_url, self.0.opts.insecure)?;
        let ours = same_origin(&url, &base);
        Ok((url, ours))
    }
}
