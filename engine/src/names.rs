//! Container names of image runs: generated (`berth-<12 hex>`), checked (a name becomes a
//! path component of the bundle and of the pinned network namespace), and claimed atomically
//! as the bundle directory `<store>/bundles/<name>`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A fresh name: `berth-` and 12 random hex digits.
pub fn generate() -> String {
    format!("berth-{}", random_hex(6))
}

/// `bytes` random bytes (from the kernel) as hex digits: for names of containers, build
/// steps and the like.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    let mut out = String::with_capacity(bytes * 2);
    for x in b {
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{x:02x}"));
    }
    out
}

/// Checks `name` with the runtime's rule for container IDs and the network's (no `+`, at most
/// 128 bytes).
pub fn validate(name: &str) -> Result<()> {
    let bad = |reason: String| Error::Name {
        name: name.to_string(),
        reason,
    };
    berth_runtime::state::validate_id(name).map_err(|e| bad(e.to_string()))?;
    if name.len() > 128 || name.contains('+') {
        return Err(bad(
            "at most 128 bytes of [A-Za-z0-9_.-] for a networked container".into(),
        ));
    }
    Ok(())
}

/// The holder name of container `id`'s image bundle in the store.
pub fn holder(id: &str) -> String {
    format!("container:{id}")
}

/// The container a holder name is of, if it is a container's.
pub fn holder_container(holder: &str) -> Option<&str> {
    holder.strip_prefix("container:")
}

/// Where an image run makes container `id`'s bundle.
pub fn bundle_dir(store_root: &Path, id: &str) -> PathBuf {
    store_root.join("bundles").join(id)
}

/// Claims name `id` by creating its bundle directory: a concurrent run of the same name
/// fails here.
pub(crate) fn claim(store_root: &Path, id: &str) -> Result<PathBuf> {
    let bundles = store_root.join("bundles");
    std::fs::create_dir_all(&bundles).map_err(|e| Error::io("creating", &bundles, e))?;
    let dir = bundle_dir(store_root, id);
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::NameTaken { dir }),
        Err(e) => Err(Error::io("creating", &dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_and_differ() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), "berth-".len() + 12);
        assert_ne!(a, b);
        validate(&a).unwrap();
    }

    #[test]
    fn names_that_are_paths_or_too_long_are_refused() {
        for name in ["../escape", "/abs", "a/b", "", ".hidden", "x+y"] {
            let e = validate(name).unwrap_err();
            assert!(matches!(e, Error::Name { .. }), "{name}: {e}");
        }
        assert!(validate(&"a".repeat(129)).is_err());
        validate(&"a".repeat(128)).unwrap();
    }

    #[test]
    fn a_name_is_claimed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = claim(tmp.path(), "c1").unwrap();
        assert_eq!(dir, tmp.path().join("bundles/c1"));
        let e = claim(tmp.path(), "c1").unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
    }
}
