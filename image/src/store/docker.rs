//! docker-archives (`docker save`): `manifest.json` lists each image's config, `RepoTags`
//! and layer files; blobs are copied in and a Docker v2 manifest is generated for them.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::blobs::{NoSource, MAX_DOCUMENT};
use super::import::ImportOptions;
use super::layout::io_at;
use super::records::{normalize_name, ImageRecord};
use super::Store;
use crate::error::{Error, Result};
use crate::extract::Compression;
use crate::image::media;

impl Store {
    pub(super) fn import_docker_dir(
        &self,
        dir: &Path,
        opts: &ImportOptions,
    ) -> Result<Vec<ImageRecord>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let mpath = dir.join("manifest.json");
        let bytes = fs::read(&mpath).map_err(io_at(&mpath, "read"))?;
        let entries: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "docker-archive manifest.json".into(),
            source,
        })?;
        // Paths inside the archive must stay inside it.
        let inside = |p: &str, field: &str| -> Result<PathBuf> {
            let rel = Path::new(p);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(Error::invalid(
                    format!("manifest.json: {field}"),
                    format!("path {p:?} leaves the archive"),
                ));
            }
            let full = dir.join(rel);
            let meta = fs::symlink_metadata(&full).map_err(io_at(&full, "stat"))?;
            if !meta.is_file() {
                return Err(Error::invalid(
                    format!("manifest.json: {field}"),
                    format!("{p:?} is not a regular file"),
                ));
            }
            Ok(full)
        };
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let names: Vec<String> = match (&opts.name, &e.repo_tags) {
                (Some(n), _) => vec![normalize_name(n)?],
                (None, Some(tags)) if !tags.is_empty() => tags
                    .iter()
                    .map(|t| normalize_name(t))
                    .collect::<Result<_>>()?,
                _ => {
                    return Err(Error::invalid(
                        format!("manifest.json[{i}]"),
                        "the image has no RepoTags; give a name",
                    ))
                }
            };
            let cfg_path = inside(&e.config, &format!("[{i}].Config"))?;
            let cfg_bytes = fs::read(&cfg_path).map_err(io_at(&cfg_path, "read"))?;
            if cfg_bytes.len() as u64 > MAX_DOCUMENT {
                return Err(Error::invalid(
                    cfg_path.display().to_string(),
                    "larger than 4 MiB",
                ));
            }
            let cfg_digest =
                self.put_blob(&mut &cfg_bytes[..], None, None, "docker-archive config")?;
            let mut layer_descs = Vec::new();
            for (j, l) in e.layers.iter().enumerate() {
                let p = inside(l, &format!("[{i}].Layers[{j}]"))?;
                let mut f = File::open(&p).map_err(io_at(&p, "open"))?;
                let mut head = [0u8; 4];
                let n = f.read(&mut head).map_err(io_at(&p, "read"))?;
                let media_type = match Compression::sniff(&head[..n]) {
                    Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
                    Compression::Gzip => media::DOCKER_LAYER_GZIP,
                    Compression::Zstd => media::OCI_LAYER_ZSTD,
                };
                let mut f = File::open(&p).map_err(io_at(&p, "open"))?;
                let size = f.metadata().map_err(io_at(&p, "stat"))?.len();
                let digest = self.put_blob(
                    &mut f,
                    None,
                    Some(size),
                    &format!("docker-archive layer {l}"),
                )?;
                layer_descs.push(serde_json::json!({
                    "mediaType": media_type, "size": size, "digest": digest.as_str(),
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media::DOCKER_MANIFEST,
                "config": {
                    "mediaType": media::DOCKER_CONFIG,
                    "size": cfg_bytes.len(),
                    "digest": cfg_digest.as_str(),
                },
                "layers": layer_descs,
            });
            let mbytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
                what: "generated manifest".into(),
                source,
            })?;
            let mdigest = self.put_blob(&mut &mbytes[..], None, None, "generated manifest")?;
            for name in names {
                out.push(self.import_image(
                    &NoSource,
                    &name,
                    &mdigest,
                    Some(mbytes.len() as u64),
                    opts,
                    false,
                )?);
            }
        }
        Ok(out)
    }
}
