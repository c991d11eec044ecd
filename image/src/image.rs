//! Image documents: OCI and Docker v2 schema 2 manifests, image indexes and manifest lists,
//! image configs; digests and platform selection.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::extract::Compression;

pub use oci_spec::image::{
    Config as ImageConfigBody, Descriptor as OciDescriptor, ImageConfiguration as ImageConfig,
    ImageIndex as Index, ImageManifest as Manifest,
};

/// Media types berth reads.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker v2 schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// A validated `sha256:<64 lowercase hex>` digest (the only algorithm the store accepts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Digest> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            Error::invalid(format!("digest {s:?}"), "only sha256 digests are supported")
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::invalid(
                format!("digest {s:?}"),
                "not 64 lowercase hex characters",
            ));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(crate::extract::hex_digest(Sha256::new_with_prefix(data)))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The whole `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// ChainID of this layer on top of `parent` (image-spec config.md): the first layer's
    /// ChainID is its DiffID, the next is `sha256(parent + " " + diff_id)`.
    pub fn chain(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
        match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{} {}", p.0, diff_id.0).as_bytes()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

/// An os/architecture[/variant] platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// GOARCH spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v7` for arm, `v8` for arm64.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this build (linux and the GOARCH name of the target architecture).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(String::from),
        }
    }

    /// Parses `os/arch[/variant]` (as `--platform` takes it).
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::invalid(format!("platform {s:?}"), "expected os/arch[/variant]");
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: Some((*variant).into()),
            }),
            _ => Err(bad()),
        }
    }

    fn normalized_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None | Some("v8")) => None,
            (_, v) => v,
        }
    }

    /// Whether a descriptor's platform matches (variant compared only when asked for).
    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if os != self.os || arch != self.architecture {
            return false;
        }
        let theirs = Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(String::from),
        };
        match self.normalized_variant() {
            None => self.variant.is_none() || theirs.normalized_variant().is_none(),
            Some(v) => theirs.normalized_variant() == Some(v),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What a JSON document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An image manifest (OCI or Docker v2 schema 2).
    Manifest(Box<ImageManifest>),
    /// An image index or Docker manifest list.
    Index(Box<ImageIndex>),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}

/// Parses a manifest or index, told apart by `mediaType` (or, without it, by which of
/// `manifests`/`layers` it has). `what` names the document in errors.
pub fn parse_document(bytes: &[u8], what: &str) -> Result<Document> {
    let probe: Probe = json(bytes, what)?;
    if probe.schema_version != Some(2) {
        return Err(Error::invalid(what, "schemaVersion must be 2"));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(media::OCI_INDEX | media::DOCKER_LIST) => true,
        Some(media::OCI_MANIFEST | media::DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(Error::invalid(
                what,
                format!("unsupported mediaType {other:?}"),
            ))
        }
        None => probe.manifests.is_some() && probe.layers.is_none(),
    };
    if is_index {
        Ok(Document::Index(Box::new(parse_index(bytes, what)?)))
    } else {
        Ok(Document::Manifest(Box::new(parse_manifest(bytes, what)?)))
    }
}

fn check_descriptor(d: &Descriptor, what: &str) -> Result<Digest> {
    Digest::parse(d.digest().as_ref()).map_err(|e| Error::invalid(what, e.to_string()))
}

/// Parses and validates an image manifest: sha256 digests, a config, layers of layer media
/// types.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    let m: ImageManifest = json(bytes, what)?;
    check_descriptor(m.config(), &format!("{what}: config"))?;
    for (i, l) in m.layers().iter().enumerate() {
        let w = format!("{what}: layers[{i}]");
        check_descriptor(l, &w)?;
        if Compression::from_media_type(l.media_type().as_ref()).is_none() {
            return Err(Error::invalid(
                w,
                format!("unsupported layer media type {:?}", l.media_type().as_ref()),
            ));
        }
    }
    Ok(m)
}

/// Parses and validates an image index / manifest list.
pub fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex> {
    let idx: ImageIndex = json(bytes, what)?;
    for (i, d) in idx.manifests().iter().enumerate() {
        check_descriptor(d, &format!("{what}: manifests[{i}]"))?;
    }
    Ok(idx)
}

/// Parses an image config and checks it describes a layered filesystem.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfiguration> {
    let c: ImageConfiguration = json(bytes, what)?;
    if c.rootfs().typ() != "layers" {
        return Err(Error::invalid(
            format!("{what}: rootfs.type"),
            format!("{:?} is not \"layers\"", c.rootfs().typ()),
        ));
    }
    for (i, d) in c.rootfs().diff_ids().iter().enumerate() {
        Digest::parse(d)
            .map_err(|e| Error::invalid(format!("{what}: rootfs.diff_ids[{i}]"), e.to_string()))?;
    }
    Ok(c)
}

/// Picks the manifest for `platform` from an index. Entries for `unknown` platforms
/// (attestations) are ignored; an index whose only manifest has no platform yields it.
pub fn select_manifest<'a>(
    index: &'a ImageIndex,
    platform: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            matches!(
                d.media_type().as_ref(),
                media::OCI_MANIFEST
                    | media::DOCKER_MANIFEST
                    | media::OCI_INDEX
                    | media::DOCKER_LIST
            )
        })
        .collect();
    let with_platform = |d: &&Descriptor| {
        d.platform().as_ref().is_some_and(|p| {
            platform.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
    };
    // Exact variant first, then any matching one.
    if let Some(d) = candidates.iter().find(|d| {
        with_platform(d)
            && d.platform().as_ref().and_then(|p| p.variant().clone()) == platform.variant
    }) {
        return Ok(d);
    }
    if let Some(d) = candidates.iter().find(|d| with_platform(d)) {
        return Ok(d);
    }
    let unplatformed: Vec<_> = candidates
        .iter()
        .filter(|d| d.platform().is_none())
        .collect();
    if candidates.len() == 1 && unplatformed.len() == 1 {
        return Ok(candidates[0]);
    }
    let available: Vec<String> = candidates
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    Err(Error::invalid(
        what,
        format!(
            "no manifest for platform {platform} (available: {})",
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        ),
    ))
}
