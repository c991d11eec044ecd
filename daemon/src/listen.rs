//! Listeners: unix sockets (mode 0600, or 0660 with `--group`; a stale socket replaced, a
//! live one refused) and TCP: plain only on loopback (whoever reaches the API is root on this
//! host), any address with TLS, and with `--tlsverify` only for clients whose certificate the
//! CA signed.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio::net::{TcpListener, UnixListener};

/// A bound listener.
pub enum Listener {
    /// A unix socket.
    Unix(UnixListener, PathBuf),
    /// A TCP socket, with TLS when configured.
    Tcp(TcpListener, SocketAddr, Option<tokio_rustls::TlsAcceptor>),
}

fn group_id(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let g = nix::unistd::Group::from_name(group)
        .with_context(|| format!("--group {group}"))?
        .with_context(|| format!("--group {group}: no such group"))?;
    Ok(g.gid.as_raw())
}

fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{}: another daemon is listening there", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Bound under a umask that leaves the socket private from its first moment.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.with_context(|| format!("binding {}", path.display()))?;
    match group {
        Some(g) => {
            let gid = group_id(g)?;
            nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
                .with_context(|| format!("chown {}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?,
    }
    Ok(l)
}

/// Binds `host` (`unix:///path`, `/path`, `tcp://addr:port`, `fd://` refused); `tls`: the
/// TLS configuration for TCP listeners.
pub async fn bind(
    host: &str,
    group: Option<&str>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    verify: bool,
) -> Result<Listener> {
    if let Some(path) = host.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        return Ok(Listener::Unix(bind_unix(&path, group)?, path));
    }
    if host.starts_with('/') {
        let path = PathBuf::from(host);
        return Ok(Listener::Unix(bind_unix(&path, group)?, path));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("-H {host}: expected tcp://ADDR:PORT"))?;
        let mutual_tls = tls.is_some() && verify;
        if !(addr.ip().is_loopback() || mutual_tls) {
            bail!("-H {host}: TCP beyond loopback is served only with mutual TLS (--tlsverify --tlscacert --tlscert --tlskey): whoever reaches the API is root on this host");
        }
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        return Ok(Listener::Tcp(
            l,
            addr,
            tls.map(tokio_rustls::TlsAcceptor::from),
        ));
    }
    bail!("-H {host}: expected unix:///PATH or tcp://ADDR:PORT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(host: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(bind(host, None, None, false)) {
            Ok(_) => panic!("{host} was bound"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn plain_tcp_beyond_loopback_and_unknown_schemes_are_refused() {
        assert!(refused("tcp://0.0.0.0:2375").contains("mutual TLS"));
        assert!(refused("tcp://not-an-address").contains("tcp://ADDR:PORT"));
        assert!(refused("fd://").contains("unix:///PATH"));
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_new_one_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let host = format!("unix://{}", path.display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = rt.block_on(bind(&host, None, None, false)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = format!(
            "{:#}",
            rt.block_on(bind(&host, None, None, false)).err().unwrap()
        );
        assert!(err.contains("another daemon"), "{err}");
        drop(first);
    }
}
