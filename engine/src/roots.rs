//! Where containers' state and the image store live by default, and the store opened with an
//! error that names it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use berth_image::Store;

use crate::error::{Error, Result};

/// The store's root: `flag`, else `$BERTH_STORE` (either made absolute: the path goes into
/// config.json mounts and the run record), else `/var/lib/berth` for root and
/// `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`) for other users; see
/// [`default_store_root`].
pub fn store_root(flag: Option<&Path>) -> PathBuf {
    let given = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("BERTH_STORE").map(PathBuf::from));
    if let Some(p) = given {
        return std::path::absolute(&p).unwrap_or(p);
    }
    default_store_root(
        nix::unistd::geteuid().is_root(),
        std::env::var_os("XDG_DATA_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// Where the store lives when nobody said: `/var/lib/berth` for root; for other users
/// `$XDG_DATA_HOME/berth`, else `$HOME/.local/share/berth`. As the XDG base directory
/// specification says, an empty or relative `XDG_DATA_HOME` is ignored (and so is an empty
/// or relative `HOME`); with neither, `/var/lib/berth`. The directories need not exist:
/// [`open_store`] makes them.
pub fn default_store_root(
    root: bool,
    xdg_data_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> PathBuf {
    fn absolute(v: Option<&OsStr>) -> Option<&Path> {
        v.map(Path::new).filter(|p| p.is_absolute())
    }
    if root {
        return PathBuf::from(berth_image::store::DEFAULT_ROOT);
    }
    if let Some(d) = absolute(xdg_data_home) {
        return d.join("berth");
    }
    match absolute(home) {
        Some(h) => h.join(".local/share/berth"),
        None => PathBuf::from(berth_image::store::DEFAULT_ROOT),
    }
}

/// Opens (creating if need be, with its missing parents) the store at `root`.
pub fn open_store(root: &Path) -> Result<Store> {
    Store::open(root).map_err(|source| Error::Store {
        path: root.to_path_buf(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(root: bool, xdg: Option<&str>, home: Option<&str>) -> PathBuf {
        default_store_root(root, xdg.map(OsStr::new), home.map(OsStr::new))
    }

    #[test]
    fn default_store_roots_follow_xdg() {
        assert_eq!(
            at(true, Some("/x"), Some("/h")),
            Path::new("/var/lib/berth")
        );
        assert_eq!(
            at(false, Some("/x/data"), Some("/h")),
            Path::new("/x/data/berth")
        );
        assert_eq!(
            at(false, None, Some("/home/u")),
            Path::new("/home/u/.local/share/berth")
        );
        // Empty or relative values are not base directories.
        for bad in ["", "rel/data"] {
            assert_eq!(
                at(false, Some(bad), Some("/home/u")),
                Path::new("/home/u/.local/share/berth")
            );
        }
        assert_eq!(at(false, None, Some("")), Path::new("/var/lib/berth"));
        assert_eq!(at(false, None, None), Path::new("/var/lib/berth"));
    }

    #[test]
    fn a_store_is_made_with_its_missing_parents() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("fresh-home");
        std::fs::create_dir(&home).unwrap();
        let root = at(false, None, home.to_str());
        open_store(&root).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(root.join("blobs/sha256").is_dir());
    }
}
