//! Interpreting `linux.cgroupsPath`: absolute, relative to the runtime's own cgroup, the
//! default when absent, and the systemd `slice:prefix:name` form (refused).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The parent of every container cgroup when `linux.cgroupsPath` is absent.
pub const DEFAULT_PARENT: &str = "/berth";

/// A validated cgroups path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Requested {
    /// From the root of each hierarchy (of the cgroup namespace).
    Absolute(PathBuf),
    /// Below the runtime's own cgroup in each hierarchy.
    Relative(PathBuf),
}

/// Validates `linux.cgroupsPath` (or picks the default `/berth/<id>`), normalising `.` and
/// repeated slashes. `..` is refused rather than resolved: a hostile config must not name a
/// cgroup outside the one it appears to name.
pub(crate) fn parse(cgroups_path: Option<&Path>, id: &str) -> Result<Requested> {
    let raw = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => {
            if id.is_empty() || id.contains('/') || id == "." || id == ".." {
                return Err(Error::InvalidPath {
                    path: format!("{DEFAULT_PARENT}/{id}"),
                    reason: "the container id cannot name a cgroup".to_owned(),
                });
            }
            return Ok(Requested::Absolute(Path::new(DEFAULT_PARENT).join(id)));
        }
    };
    let text = raw.to_string_lossy();
    let bad = |reason: &str| Error::InvalidPath {
        path: text.clone().into_owned(),
        reason: reason.to_owned(),
    };
    if !raw.is_absolute() && text.split(':').count() == 3 && !text.contains('/') {
        return Err(Error::Unsupported(format!(
            "linux.cgroupsPath {text:?}: systemd cgroup paths (slice:prefix:name) need a systemd \
             cgroup driver, which berth does not have yet; use a filesystem path such as \
             \"/berth/<id>\""
        )));
    }
    let mut clean = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => return Err(bad("\"..\" is not allowed")),
            Component::Prefix(_) => return Err(bad("not a Unix path")),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(bad(
            "names the root cgroup, which cannot hold a container's limits",
        ));
    }
    if raw.is_absolute() {
        Ok(Requested::Absolute(Path::new("/").join(clean)))
    } else {
        Ok(Requested::Relative(clean))
    }
}

impl Requested {
    /// The cgroup path in a hierarchy where this process's own cgroup is `own`.
    pub fn in_hierarchy(&self, own: &Path) -> PathBuf {
        match self {
            Requested::Absolute(p) => p.clone(),
            Requested::Relative(p) => own.join(p),
        }
    }

    /// The path as recorded in the state (absolute or relative as configured).
    pub fn as_path(&self) -> &Path {
        match self {
            Requested::Absolute(p) | Requested::Relative(p) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_absolute_relative() {
        assert_eq!(
            parse(None, "c1").unwrap(),
            Requested::Absolute("/berth/c1".into())
        );
        assert_eq!(
            parse(Some(Path::new("")), "c1").unwrap(),
            Requested::Absolute("/berth/c1".into())
        );
        assert_eq!(
            parse(Some(Path::new("//a/./b/")), "c1").unwrap(),
            Requested::Absolute("/a/b".into())
        );
        let rel = parse(Some(Path::new("x/y")), "c1").unwrap();
        assert_eq!(rel, Requested::Relative("x/y".into()));
        assert_eq!(
            rel.in_hierarchy(Path::new("/user.slice/me")),
            Path::new("/user.slice/me/x/y")
        );
    }

    #[test]
    fn refused_paths() {
        let e = parse(Some(Path::new("system.slice:berth:c1")), "c1").unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("systemd"));
        for p in ["/a/../b", "..", "/", "/./"] {
            let e = parse(Some(Path::new(p)), "c1").unwrap_err();
            assert!(e.to_string().contains("linux.cgroupsPath"), "{e}");
        }
        assert!(parse(None, "a/b").is_err());
        assert!(parse(None, "..").is_err());
    }
}
