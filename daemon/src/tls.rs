//! TLS for TCP listeners, as dockerd's `--tlsverify --tlscacert --tlscert --tlskey`: the
//! server's certificate and key, and with `--tlsverify` clients must present a certificate
//! signed by the CA (mutual TLS). rustls with the ring provider (no C toolchain at run time).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The files a TLS listener needs.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// The CA client certificates must chain to (`--tlscacert`).
    pub ca: Option<&'a Path>,
    /// The server's certificate chain (`--tlscert`).
    pub cert: &'a Path,
    /// The server's private key (`--tlskey`).
    pub key: &'a Path,
    /// Require client certificates (`--tlsverify`).
    pub verify: bool,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// The server config for `files`.
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(files.cert).context("--tlscert")?;
    let key = PrivateKeyDer::from_pem_file(files.key)
        .with_context(|| format!("--tlskey {}: not a PEM private key", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if files.verify {
        let ca = files
            .ca
            .context("--tlsverify needs --tlscacert (the CA client certificates must chain to)")?;
        let mut roots = RootCertStore::empty();
        for c in certs(ca).context("--tlscacert")? {
            roots
                .add(c)
                .context("--tlscacert: a certificate rustls does not accept")?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("the client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("--tlscert and --tlskey do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let files = |verify, ca| TlsFiles {
            ca,
            cert: &junk,
            key: &junk,
            verify,
        };
        let err = format!("{:#}", server_config(&files(false, None)).unwrap_err());
        assert!(err.contains("--tlscert"), "{err}");
        let err = format!("{:#}", server_config(&files(true, None)).unwrap_err());
        assert!(
            err.contains("--tlscert") || err.contains("--tlscacert"),
            "{err}"
        );
    }
}
