//! The monitor's listening sockets in DIR: created mode 0600 (root's berthd is the only
//! client), non-blocking, removed when the monitor is done.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::sys::stat::{umask, Mode};

/// Binds a listening socket at `path` (a stale one is replaced), mode 0600 from birth: the
/// umask is narrowed around `bind`, so the socket never exists with wider permissions.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener =
        bound.map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Removes the socket files the monitor made in `dir` (missing ones are fine).
pub fn remove_all(dir: &Path) {
    for name in [
        berth_monitor::ATTACH_SOCKET,
        berth_monitor::CONTROL_SOCKET,
        berth_monitor::CONSOLE_SOCKET,
    ] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn sockets_are_private_and_replace_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(berth_monitor::ATTACH_SOCKET);
        std::fs::write(&path, "stale").unwrap();
        let _l = listen(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        remove_all(dir.path());
        assert!(!path.exists());
    }
}
