//! The run record: what an image run made for its container, kept in the bundle
//! (`berth-run.json`) so that `delete`, `bundle rm` and the reclaiming of killed runs undo
//! exactly that: the network attachment, the bundle and the store hold.
//!
//! The record is written before anything it lists is made, so a run killed at any point
//! leaves a record of what there may be to undo (every undo step is idempotent). It is only
//! trusted for the container it names, in the place an image run puts that container's
//! bundle ([`RunRecord::belongs_to`]): a record copied elsewhere or edited to name another
//! container removes nothing.
//!
//! Records written before the format had a version (the untyped marker) read as version 0:
//! the fields are the same.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The record's file name in the bundle directory.
pub const FILE: &str = "berth-run.json";

/// The format this build writes (and the newest it reads).
pub const VERSION: u32 = 1;

/// What an image run made for container `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The format (0: written before the format had a version).
    #[serde(default)]
    pub version: u32,
    /// The container.
    pub id: String,
    /// The image store holding the image's layers for the bundle.
    pub store: PathBuf,
    /// The store hold of the bundle (released when the bundle goes).
    pub holder: String,
    /// The image.
    pub image: String,
    /// The network state directory the container is (or is being) attached in; `None` for
    /// no network of berth's (`none`, `host`).
    #[serde(default)]
    pub net: Option<PathBuf>,
}

impl RunRecord {
    /// A record of this build's format.
    pub fn new(id: &str, store: &Path, holder: &str, image: &str, net: Option<PathBuf>) -> Self {
        RunRecord {
            version: VERSION,
            id: id.to_string(),
            store: store.to_path_buf(),
            holder: holder.to_string(),
            image: image.to_string(),
            net,
        }
    }

    /// The record's path in `bundle_dir`.
    pub fn path(bundle_dir: &Path) -> PathBuf {
        bundle_dir.join(FILE)
    }

    /// Writes the record into `bundle_dir` (through a temporary file and a rename, so a
    /// reader never sees half of it).
    pub fn write(&self, bundle_dir: &Path) -> Result<()> {
        let path = Self::path(bundle_dir);
        let tmp = bundle_dir.join(format!(".{FILE}.tmp"));
        let text = serde_json::to_vec(self).map_err(|e| Error::Record {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("writing", &path, e))
    }

    /// Reads the record of `bundle_dir`: `None` when there is none; an error naming the file
    /// when it is malformed or of a newer format.
    pub fn read(bundle_dir: &Path) -> Result<Option<RunRecord>> {
        let path = Self::path(bundle_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
        let bad = |reason: String| Error::Record {
            path: path.clone(),
            reason,
        };
        let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if record.version > VERSION {
            return Err(bad(format!(
                "format version {} is newer than this berth's ({VERSION})",
                record.version
            )));
        }
        if record.holder.is_empty() || record.store.as_os_str().is_empty() {
            return Err(bad("no store or holder".into()));
        }
        Ok(Some(record))
    }

    /// Whether the record is container `id`'s, in the bundle directory an image run makes
    /// for `id` in its store (and so may be acted on for `id`).
    pub fn belongs_to(&self, bundle_dir: &Path, id: &str) -> bool {
        self.id == id && bundle_dir == crate::names::bundle_dir(&self.store, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_then_read() {
        let tmp = tempfile::tempdir().unwrap();
        let r = RunRecord::new("c1", tmp.path(), "container:c1", "busybox:latest", None);
        r.write(tmp.path()).unwrap();
        assert_eq!(RunRecord::read(tmp.path()).unwrap(), Some(r));
        assert!(!tmp.path().join(format!(".{FILE}.tmp")).exists());
    }

    #[test]
    fn none_without_a_record() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(RunRecord::read(tmp.path()).unwrap(), None);
    }

    #[test]
    fn the_untyped_marker_reads_as_version_0() {
        let tmp = tempfile::tempdir().unwrap();
        let doc = serde_json::json!({
            "store": "/var/lib/berth", "holder": "container:web", "image": "busybox:latest",
            "net": "/var/lib/berth/net", "id": "web",
        });
        std::fs::write(tmp.path().join(FILE), doc.to_string()).unwrap();
        let r = RunRecord::read(tmp.path()).unwrap().unwrap();
        assert_eq!(r.version, 0);
        assert_eq!(r.net.as_deref(), Some(Path::new("/var/lib/berth/net")));
        assert!(r.belongs_to(Path::new("/var/lib/berth/bundles/web"), "web"));
        assert!(!r.belongs_to(Path::new("/tmp/forged"), "web"));
        assert!(!r.belongs_to(Path::new("/var/lib/berth/bundles/web"), "other"));
    }

    #[test]
    fn malformed_or_newer_records_are_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        for doc in [
            "not json".to_string(),
            r#"{"id": "x"}"#.to_string(),
            r#"{"id": "x", "store": "/s", "holder": "", "image": "i"}"#.to_string(),
            format!(
                r#"{{"version": {}, "id": "x", "store": "/s", "holder": "h", "image": "i"}}"#,
                VERSION + 1
            ),
        ] {
            std::fs::write(tmp.path().join(FILE), &doc).unwrap();
            let e = RunRecord::read(tmp.path()).unwrap_err();
            assert!(matches!(e, Error::Record { .. }), "{doc}: {e}");
            assert!(e.to_string().contains(FILE), "{doc}: {e}");
        }
    }
}
