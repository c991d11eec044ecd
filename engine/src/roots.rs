//! Where containers' state and the image store live by default, and the store opened with an
//! error that names it.

use std::path::{Path, PathBuf};

use berth_image::Store;

use crate::error::{Error, Result};

/// The store's root: `flag`, else `$BERTH_STORE` (either made absolute: the path goes into
/// config.json mounts and the run record), else `/var/lib/berth` for root and
/// `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`) for other users.
pub fn store_root(flag: Option<&Path>) -> PathBuf {
    let given = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("BERTH_STORE").map(PathBuf::from));
    if let Some(p) = given {
        return std::path::absolute(&p).unwrap_or(p);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(berth_image::store::DEFAULT_ROOT);
    }
    match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
        (Some(d), _) => PathBuf::from(d).join("berth"),
        (None, Some(h)) => PathBuf::from(h).join(".local/share/berth"),
        (None, None) => PathBuf::from(berth_image::store::DEFAULT_ROOT),
    }
}

/// Opens (creating if need be) the store at `root`.
pub fn open_store(root: &Path) -> Result<Store> {
    Store::open(root).map_err(|source| Error::Store {
        path: root.to_path_buf(),
        source: Box::new(source),
    })
}
