//! OCI image layouts (image-layout.md): `oci-layout`, `index.json` and `blobs/`, each index
//! entry imported under the name its annotations give.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::blobs::{BlobSource, MAX_DOCUMENT};
use super::import::ImportOptions;
use super::layout::io_at;
use super::records::{normalize_name, ImageRecord};
use super::Store;
use crate::error::{Error, Result};
use crate::image::{self, Digest};

/// An OCI image layout directory.
pub(super) struct LayoutSource {
    dir: PathBuf,
}

impl BlobSource for LayoutSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let p = self.dir.join("blobs/sha256").join(digest.hex());
        Ok(Box::new(File::open(&p).map_err(io_at(&p, "open blob"))?))
    }
}

impl Store {
    /// Imports the images of an OCI image layout directory (image-layout.md). Each
    /// `index.json` entry is named by its `io.containerd.image.name` or
    /// `org.opencontainers.image.ref.name` annotation (a bare tag is prefixed with the layout
    /// directory's name) unless `opts.name` is given.
    pub fn import_oci_layout(&self, dir: &Path, opts: &ImportOptions) -> Result<Vec<ImageRecord>> {
        let layout = dir.join("oci-layout");
        let text = fs::read(&layout).map_err(io_at(&layout, "read"))?;
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|source| Error::Json {
            what: layout.display().to_string(),
            source,
        })?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(ver) if ver.starts_with("1.") => {}
            other => {
                return Err(Error::invalid(
                    format!("{}: imageLayoutVersion", layout.display()),
                    format!("unsupported version {other:?}"),
                ))
            }
        }
        let index_path = dir.join("index.json");
        let meta = fs::metadata(&index_path).map_err(io_at(&index_path, "stat"))?;
        if meta.len() > MAX_DOCUMENT {
            return Err(Error::invalid(
                index_path.display().to_string(),
                "larger than 4 MiB",
            ));
        }
        let bytes = fs::read(&index_path).map_err(io_at(&index_path, "read"))?;
        let index = image::parse_index(&bytes, &index_path.display().to_string())?;
        let src = LayoutSource {
            dir: dir.to_path_buf(),
        };
        let mut entries = Vec::new();
        for d in index.manifests() {
            let ann = d.annotations().as_ref();
            let full = ann.and_then(|a| a.get("io.containerd.image.name")).cloned();
            let tag = ann
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .cloned();
            entries.push((d, full, tag));
        }
        let chosen: Vec<(&oci_spec::image::Descriptor, String)> = match &opts.name {
            Some(name) if entries.len() == 1 => vec![(entries[0].0, normalize_name(name)?)],
            Some(name) => {
                let want = normalize_name(name)?;
                let hit: Vec<_> = entries
                    .iter()
                    .filter(|(_, full, tag)| {
                        full.as_deref() == Some(name)
                            || full
                                .as_deref()
                                .is_some_and(|f| normalize_name(f).is_ok_and(|f| f == want))
                            || tag.as_deref() == Some(name)
                    })
                    .map(|(d, _, _)| (*d, want.clone()))
                    .collect();
                if hit.is_empty() {
                    return Err(Error::ImageNotFound(format!("{name} in {}", dir.display())));
                }
                hit
            }
            None => {
                let base = dir
                    .file_name()
                    .map_or_else(|| "image".to_string(), |n| n.to_string_lossy().into_owned());
                let mut v = Vec::new();
                for (d, full, tag) in &entries {
                    let name = match (full, tag) {
                        (Some(f), _) => f.clone(),
                        (None, Some(t)) if t.contains(':') || t.contains('/') => t.clone(),
                        (None, Some(t)) => format!("{base}:{t}"),
                        (None, None) => {
                            return Err(Error::invalid(
                                index_path.display().to_string(),
                                format!(
                                    "manifest {} has no name annotation; give a name",
                                    d.digest()
                                ),
                            ))
                        }
                    };
                    v.push((*d, normalize_name(&name)?));
                }
                v
            }
        };
        let mut out = Vec::new();
        for (d, name) in chosen {
            let digest = Digest::parse(d.digest().as_ref())?;
            out.push(self.import_image(&src, &name, &digest, Some(d.size()), opts, false)?);
        }
        Ok(out)
    }
}
