//! Blobs: copied into `blobs/sha256/` from a [`BlobSource`], hashed and size-checked while
//! streaming into a temporary file that is renamed into place only once it matches its
//! digest; documents (manifests, indexes, configs) read back and re-verified.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::layout::{create_new, fsync_dir, io_at};
use super::Store;
use crate::error::{Error, Result};
use crate::extract;
use crate::image::Digest;

/// Largest manifest, index or config accepted (4 MiB).
pub(super) const MAX_DOCUMENT: u64 = 4 << 20;

/// Where an import reads blobs from: a layout directory, an archive, or a registry (the
/// `berth-registry` crate implements it for pulls through [`Store::import_from`]).
///
/// Everything a source returns is verified by the store against the digest it was asked for
/// (and the size its descriptor declares) while it is copied in; a source need not check.
pub trait BlobSource: Sync {
    /// Opens the blob for `digest` (a config or layer).
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;

    /// Opens the manifest or index for `digest` (registries serve them apart from blobs).
    fn open_manifest(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        self.open(digest)
    }
}

/// Blobs already in the store.
pub(super) struct NoSource;

impl BlobSource for NoSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Err(Error::invalid(
            format!("blob {digest}"),
            "not in the store and no source to import it from",
        ))
    }
}

/// A layer blob on its way in: what the extractor reads is hashed and written to a temporary
/// blob file, and more bytes than the descriptor declares is an error.
pub(super) struct BlobTee<'a> {
    pub(super) inner: Box<dyn Read + Send>,
    pub(super) file: File,
    pub(super) path: &'a Path,
    pub(super) hasher: Sha256,
    pub(super) total: u64,
    pub(super) size: u64,
}

impl Read for BlobTee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        if self.total > self.size {
            return Err(io::Error::other(format!(
                "larger than its declared size {}",
                self.size
            )));
        }
        self.hasher.update(&buf[..n]);
        self.file.write_all(&buf[..n]).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: write: {e}", self.path.display()))
        })?;
        Ok(n)
    }
}

/// Checks a blob copied into the temporary file `file` (at `path`): its `total` bytes
/// against the `size` its descriptor declares and the digest of what `hasher` saw against
/// `expected`, then makes the file durable. Returns the digest.
pub(super) fn finish_blob(
    hasher: Sha256,
    total: u64,
    size: Option<u64>,
    expected: Option<&Digest>,
    what: &str,
    file: &File,
    path: &Path,
) -> Result<Digest> {
    if let Some(s) = size {
        if total != s {
            return Err(Error::invalid(
                what,
                format!("{total} bytes, but its descriptor says {s}"),
            ));
        }
    }
    let actual = Digest::parse(&extract::hex_digest(hasher))?;
    if let Some(d) = expected {
        if *d != actual {
            return Err(Error::DigestMismatch {
                what: what.to_string(),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    file.sync_all().map_err(io_at(path, "fsync"))?;
    Ok(actual)
}

impl Store {
    /// Copies a blob into the store, hashing while streaming; the digest must match
    /// `expected` (and the size `size`, when given). Returns the digest. An existing blob is
    /// kept (it was verified when written).
    pub(super) fn put_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
        what: &str,
    ) -> Result<Digest> {
        if let Some(d) = expected {
            if self.blob_path(d).exists() {
                return Ok(d.clone());
            }
        }
        let tmp = self.tmp_path("blob");
        let mut f = create_new(&tmp)?;
        let res = (|| {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(what, "read", e)),
                };
                total += n as u64;
                if size.is_some_and(|s| total > s) {
                    return Err(Error::invalid(
                        what,
                        format!("larger than its declared size {}", size.unwrap_or(0)),
                    ));
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_at(&tmp, "write"))?;
            }
            finish_blob(hasher, total, size, expected, what, &f, &tmp)
        })();
        drop(f);
        match res {
            Ok(d) => {
                let dest = self.blob_path(&d);
                fs::rename(&tmp, &dest).map_err(io_at(&dest, "rename into place"))?;
                fsync_dir(&self.root.join("blobs/sha256"))?;
                Ok(d)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Reads a small document blob from the store, re-verifying its digest.
    pub(super) fn read_document(&self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let f = File::open(&p).map_err(io_at(&p, "open"))?;
        let mut data = Vec::new();
        f.take(MAX_DOCUMENT + 1)
            .read_to_end(&mut data)
            .map_err(io_at(&p, "read"))?;
        if data.len() as u64 > MAX_DOCUMENT {
            return Err(Error::invalid(what, "document larger than 4 MiB"));
        }
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what: what.into(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// Imports a document blob from `src` and returns its bytes.
    pub(super) fn fetch_document(
        &self,
        src: &dyn BlobSource,
        digest: &Digest,
        size: Option<u64>,
        what: &str,
        manifest: bool,
    ) -> Result<Vec<u8>> {
        if size.is_some_and(|s| s > MAX_DOCUMENT) {
            return Err(Error::invalid(what, "document larger than 4 MiB"));
        }
        if !self.blob_path(digest).exists() {
            let mut r = if manifest {
                src.open_manifest(digest)?
            } else {
                src.open(digest)?
            };
            self.put_blob(&mut r, Some(digest), size, what)?;
        }
        self.read_document(digest, what)
    }

    /// Copies a blob into the store from a reader, verifying `expected` when given.
    pub fn put_blob_from(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        self.put_blob(reader, expected, None, "blob")
    }

    /// Whether a blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob of the store for reading (it was verified when written).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(io_at(&p, "open blob"))
    }

    /// Reads a manifest, index or config blob (at most 4 MiB), re-verifying its digest.
    pub fn read_blob_document(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.read_document(digest, &format!("blob {digest}"))
    }
}
