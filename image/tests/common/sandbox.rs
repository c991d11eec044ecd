//! A destination directory for extraction tests, beside a sentinel directory that must stay
//! untouched. Shared by the integration tests (through `common`) and the extractor's unit
//! tests (`src/extract/tests.rs` includes this file by path), so it uses nothing but std and
//! tempfile.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// The names in `dir`, sorted.
pub fn sorted_names(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

/// A destination inside a base directory that also holds a sentinel directory; `check`
/// asserts nothing appeared anywhere but in the destination.
pub struct Sandbox {
    _tmp: tempfile::TempDir,
    pub base: PathBuf,
    pub dest: PathBuf,
    pub outside: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let dest = base.join("dest");
        let outside = base.join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"keep").unwrap();
        Sandbox {
            _tmp: tmp,
            base,
            dest,
            outside,
        }
    }

    /// Asserts that nothing but the destination changed: the base holds only `dest` and
    /// `outside`, and the sentinel directory only its untouched sentinel.
    pub fn check(&self) {
        assert_eq!(
            sorted_names(&self.base),
            ["dest", "outside"],
            "something was created beside the destination"
        );
        assert_eq!(
            sorted_names(&self.outside),
            ["sentinel"],
            "something was written to the sentinel directory"
        );
        assert_eq!(fs::read(self.outside.join("sentinel")).unwrap(), b"keep");
    }
}
