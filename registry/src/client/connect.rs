//! How a registry is reached: the TLS configuration (the system's CA bundle, the webpki
//! roots and an extra CA file), and the scheme, found by the first request (`GET /v2/`):
//! HTTPS, or plain HTTP for a loopback registry or with `--insecure`.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::CertificateDer;
use url::Url;

use super::origin::from_origin;
use super::Client;
use crate::error::{Error, Result};
use crate::reference::url_is_loopback;

pub(super) fn tls_config(extra_ca: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut add_pem = |path: &std::path::Path, required: bool| -> Result<()> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if !required => {
                tracing::debug!("{}: {e}", path.display());
                return Ok(());
            }
            Err(e) => return Err(Error::io(path, "open CA file", e)),
        };
        let mut n = 0;
        for cert in CertificateDer::pem_reader_iter(f) {
            let cert = cert.map_err(|e| Error::io(path, "parse CA file", pem_error(e)))?;
            if roots.add(cert).is_ok() {
                n += 1;
            }
        }
        if required && n == 0 {
            return Err(Error::io(
                path,
                "parse CA file",
                io::Error::other("no PEM certificate in it"),
            ));
        }
        Ok(())
    };
    for system in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        add_pem(std::path::Path::new(system), false)?;
    }
    if let Some(p) = extra_ca {
        add_pem(p, true)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::protocol("TLS configuration", e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A PEM parsing error as the `io::Error` of reading the file (with the messages
/// rustls-pemfile gave).
fn pem_error(e: pem::Error) -> io::Error {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    match e {
        pem::Error::Io(e) => e,
        pem::Error::MissingSectionEnd { end_marker } => invalid(format!(
            "section end {:?} missing",
            String::from_utf8_lossy(&end_marker)
        )),
        pem::Error::IllegalSectionStart { line } => invalid(format!(
            "illegal section start: {:?}",
            String::from_utf8_lossy(&line)
        )),
        other => invalid(other.to_string()),
    }
}

impl Client {
    /// `https://host` or, for a loopback or `--insecure` registry that does not speak TLS,
    /// `http://host`: found by the first request (`GET /v2/`), which also learns how the
    /// registry wants to be authenticated.
    pub fn base(&self) -> Result<String> {
        Ok(self.base_url()?.as_str().trim_end_matches('/').to_string())
    }

    /// [`Client::base`] as a URL (`https://host/`).
    pub(super) fn base_url(&self) -> Result<Url> {
        if let Some(b) = self.0.base.lock().expect("lock").clone() {
            return Ok(b);
        }
        // Parsed from the host again rather than given another scheme: `host:80` stays on
        // port 80 over TLS.
        let https = Url::parse(&format!("https://{}/", self.0.host))
            .map_err(|e| Error::protocol(&self.0.host, e.to_string()))?;
        let chosen = match self.ping(&https) {
            Ok(()) => https,
            Err(e) => {
                let http_ok = self.0.opts.insecure || url_is_loopback(&self.0.host_url);
                let reason = match &e {
                    Error::Transport { reason, .. } => reason.clone(),
                    Error::Timeout { .. } => e.to_string(),
                    _ => return Err(e),
                };
                if !http_ok {
                    return Err(Error::Insecure {
                        registry: self.0.host.clone(),
                        reason,
                    });
                }
                let http = Url::parse(&format!("http://{}/", self.0.host))
                    .map_err(|e| Error::protocol(&self.0.host, e.to_string()))?;
                tracing::debug!("{https}: {reason}; trying plain HTTP");
                self.ping(&http)?;
                http
            }
        };
        *self.0.base.lock().expect("lock") = Some(chosen.clone());
        Ok(chosen)
    }

    /// `GET /v2/`: any HTTP answer means the scheme works; a 401 tells the auth scheme (when
    /// it came from the registry, not from where a redirect led).
    fn ping(&self, base: &Url) -> Result<()> {
        let url = format!("{base}v2/");
        self.0.stats.requests.fetch_add(1, Ordering::Relaxed);
        let deadline = self.document_deadline();
        let res = self
            .0
            .agent
            .get(&url)
            .timeout(self.0.limits.request_timeout)
            .call();
        match res {
            Err(ureq::Error::Status(401, resp)) => {
                if from_origin(resp.get_url(), base) {
                    self.learn_challenge(resp.header("www-authenticate").unwrap_or(""));
                } else {
                    tracing::debug!("ignoring the challenge of {}", resp.get_url());
                }
                Ok(())
            }
            Ok(_) | Err(ureq::Error::Status(_, _)) => Ok(()),
            Err(ureq::Error::Transport(_)) if Instant::now() >= deadline => {
                Err(self.timeout(format!("GET {url}")))
            }
            Err(ureq::Error::Transport(t)) => Err(Error::Transport {
                method: "GET".into(),
                url,
                reason: crate::error::transport_reason(&t),
            }),
        }
    }
}
