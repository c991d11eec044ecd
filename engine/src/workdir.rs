//! The process's working directory is made in the root filesystem when the image lacks it,
//! as docker does for `-w` and an image's `WorkingDir`: created inside the root (symlinks
//! resolved within it, never out of it), mode 0755, owned by root.

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use berth_runtime::oci::Spec;
use berth_sys::in_root::{self, Leaf};

use crate::error::{Error, Result};

/// Creates `spec`'s `process.cwd` in its root filesystem (a relative `root.path` is taken
/// from `bundle`) if it is missing.
pub fn ensure_workdir(spec: &Spec, bundle: &Path) -> Result<()> {
    let (Some(process), Some(root)) = (spec.process().as_ref(), spec.root().as_ref()) else {
        return Ok(());
    };
    let cwd = process.cwd();
    if cwd == Path::new("/") {
        return Ok(());
    }
    let rootfs: PathBuf = bundle.join(root.path());
    let io = |op: &'static str, path: PathBuf| {
        move |source: std::io::Error| Error::Io { op, path, source }
    };
    let dir = std::fs::File::open(&rootfs).map_err(io("opening", rootfs.clone()))?;
    in_root::ensure(dir.as_fd(), cwd, Leaf::Dir).map_err(io(
        "creating the working directory",
        rootfs.join(cwd.strip_prefix("/").unwrap_or(cwd)),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_cwd(cwd: &str) -> Spec {
        let mut spec = Spec::default();
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_cwd(cwd.into());
        spec.set_process(Some(p));
        let mut root = berth_runtime::oci::Root::default();
        root.set_path("rootfs".into());
        spec.set_root(Some(root));
        spec
    }

    #[test]
    fn a_missing_workdir_is_made_inside_the_root() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::create_dir(bundle.path().join("rootfs")).unwrap();
        // A symlink that points out of the root is resolved inside it.
        std::os::unix::fs::symlink("/", bundle.path().join("rootfs/escape")).unwrap();
        ensure_workdir(&spec_with_cwd("/srv/app"), bundle.path()).unwrap();
        assert!(bundle.path().join("rootfs/srv/app").is_dir());
        ensure_workdir(&spec_with_cwd("/escape/berth-workdir-test"), bundle.path()).unwrap();
        assert!(bundle.path().join("rootfs/berth-workdir-test").is_dir());
        assert!(!Path::new("/berth-workdir-test").exists());
        // Already there: nothing to do.
        ensure_workdir(&spec_with_cwd("/srv/app"), bundle.path()).unwrap();
    }
}
