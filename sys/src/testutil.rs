//! Scratch directories for the unit tests, each removed when its [`TempDir`] drops.

use std::path::PathBuf;

use tempfile::TempDir;

/// A fresh temporary directory, and the path of `name` in it (not created).
pub(crate) fn scratch(name: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("create a temporary directory");
    let path = tmp.path().join(name);
    (tmp, path)
}

/// A fresh temporary directory with the directories `names` created in it, and their paths.
pub(crate) fn scratch_dirs<const N: usize>(names: [&str; N]) -> (TempDir, [PathBuf; N]) {
    let tmp = tempfile::tempdir().expect("create a temporary directory");
    let dirs = names.map(|name| {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        dir
    });
    (tmp, dirs)
}
