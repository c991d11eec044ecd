//! Interpreting `linux.cgroupsPath`: absolute, relative to the runtime's own cgroup, and the
//! default when absent. Without a systemd cgroup driver a systemd-form `slice:prefix:name`
//! is one relative path component, colons and all, as runc, crun and youki take it (containerd
//! 1.6 passes `test.slice:cri-containerd:<id>` this way for a `.slice` cgroup parent).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::hierarchy::{Kind, Mode};

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
    /// The cgroup path in a hierarchy where a relative path starts at `base` (see
    /// [`relative_base`]).
    pub fn in_hierarchy(&self, base: &Path) -> PathBuf {
        match self {
            Requested::Absolute(p) => p.clone(),
            Requested::Relative(p) => base.join(p),
        }
    }

    /// The path as recorded in the state (absolute or relative as configured).
    pub fn as_path(&self) -> &Path {
        match self {
            Requested::Absolute(p) | Requested::Relative(p) => p,
        }
    }
}

/// Where a relative `linux.cgroupsPath` starts in one hierarchy, as runc 1.1's cgroupfs
/// drivers place it: in a v1 hierarchy below this process's own cgroup `own`; in the cgroup2
/// hierarchy of a hybrid host at its root (runc's fs driver joins `/sys/fs/cgroup/unified`
/// plus the path); on a pure v2 host below the *parent* of `own` (the runtime's own cgroup
/// holds processes, so v2 would not let a child of it have controllers).
pub(crate) fn relative_base(kind: &Kind, mode: Mode, own: &Path) -> PathBuf {
    match (kind, mode) {
        (Kind::V1 { .. }, _) => own.to_owned(),
        (Kind::V2, Mode::Unified) => own.parent().unwrap_or(own).to_owned(),
        (Kind::V2, Mode::Hybrid | Mode::Legacy) => PathBuf::from("/"),
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
    fn systemd_form_is_one_relative_component() {
        let rel = parse(Some(Path::new("test.slice:cri-containerd:c1")), "c1").unwrap();
        assert_eq!(
            rel,
            Requested::Relative("test.slice:cri-containerd:c1".into())
        );
        let v1 = Kind::V1 {
            controllers: vec!["memory".into()],
        };
        let own = Path::new("/system.slice/containerd.service");
        assert_eq!(
            rel.in_hierarchy(&relative_base(&v1, Mode::Hybrid, own)),
            Path::new("/system.slice/containerd.service/test.slice:cri-containerd:c1")
        );
        assert_eq!(
            rel.in_hierarchy(&relative_base(&Kind::V2, Mode::Hybrid, own)),
            Path::new("/test.slice:cri-containerd:c1")
        );
        assert_eq!(
            rel.in_hierarchy(&relative_base(&Kind::V2, Mode::Unified, own)),
            Path::new("/system.slice/test.slice:cri-containerd:c1")
        );
        assert_eq!(
            relative_base(&Kind::V2, Mode::Unified, Path::new("/")),
            Path::new("/")
        );
    }

    #[test]
    fn refused_paths() {
        for p in ["/a/../b", "..", "/", "/./"] {
            let e = parse(Some(Path::new(p)), "c1").unwrap_err();
            assert!(e.to_string().contains("linux.cgroupsPath"), "{e}");
        }
        assert!(parse(None, "a/b").is_err());
        assert!(parse(None, "..").is_err());
    }
}
