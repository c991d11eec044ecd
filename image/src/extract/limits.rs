//! Bounds on what a layer may make the extractor do: decompression bombs (the uncompressed
//! stream per layer and per image), floods of entries or of metadata (PAX and GNU extension
//! headers, names kept in memory), and a disk that fills up (a reserve of free space and
//! inodes on the destination's filesystem, checked while the stream is read).
//!
//! Every byte written to a file is a byte of the uncompressed stream, so the stream's length
//! bounds the data written (sparse data included), the time spent decompressing and the
//! time spent skipping data nothing uses. Exceeding a bound is an [`Error::Limit`] naming the
//! layer, entry or path, the limit and its value; the caller removes what was extracted
//! (the store and bundles do).
//!
//! The defaults are sized for real images (docker sets no limit; the largest public images
//! have layers of tens of GiB and a few hundred thousand files) and can be changed with
//! environment variables, read by [`Limits::from_env`] (the store and `berth` use it): a
//! number of bytes or entries, with an optional binary suffix `K`, `M`, `G` or `T`.
//!
//! | Field | Variable | Default |
//! |---|---|---|
//! | [`Limits::max_layer_bytes`] | `BERTH_MAX_LAYER_BYTES` | 100 GiB |
//! | [`Limits::max_image_bytes`] | `BERTH_MAX_IMAGE_BYTES` | 200 GiB |
//! | [`Limits::max_entries`] | `BERTH_MAX_ENTRIES` | 10 million |
//! | [`Limits::max_entry_meta`] | `BERTH_MAX_ENTRY_META` | 4 MiB |
//! | [`Limits::max_layer_meta`] | `BERTH_MAX_LAYER_META` | 2 GiB |
//! | [`Limits::max_file_size`] | `BERTH_MAX_FILE_SIZE` | 1 TiB |
//! | [`Limits::max_total_size`] | `BERTH_MAX_TOTAL_SIZE` | 4 TiB |
//! | [`Limits::max_volume_bytes`] | `BERTH_MAX_VOLUME_BYTES` | 100 GiB |
//! | [`Limits::min_free_bytes`] | `BERTH_MIN_FREE_BYTES` | 1 GiB |
//! | [`Limits::min_free_inodes`] | `BERTH_MIN_FREE_INODES` | 65536 |

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Bounds on what one layer (and one image) may contain; exceeding one is an
/// [`Error::Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of one layer's uncompressed tar stream (headers, data, padding and anything
    /// after the archive's end): bounds the data written and the time a decompression bomb
    /// may take.
    pub max_layer_bytes: u64,
    /// Most bytes of uncompressed stream over the layers of one image that one import or
    /// bundle extracts (layers already in the store cost nothing). Applies through an
    /// [`ImageBudget`] in [`super::ExtractOptions::budget`].
    pub max_image_bytes: u64,
    /// Most entries (of any type) in one layer.
    pub max_entries: u64,
    /// Most bytes of extension headers (PAX `x`, GNU long names, volume labels, ...: 512 per
    /// header plus its payload) before one entry, global PAX headers so far included: bounds
    /// the memory one entry's metadata takes.
    pub max_entry_meta: u64,
    /// Most bytes of metadata in one layer: every extension header (512 plus its payload) and
    /// every entry's name and link target. Bounds the names the extractor keeps in memory
    /// and the time spent on metadata.
    pub max_layer_meta: u64,
    /// Largest single file (its real size, holes included).
    pub max_file_size: u64,
    /// Largest total of file sizes in one layer (real sizes, holes included).
    pub max_total_size: u64,
    /// Most bytes of data (holes not counted) copied from the image into the volumes of one
    /// bundle ([`crate::volume::seed`]).
    pub max_volume_bytes: u64,
    /// Extraction stops when the destination's filesystem has fewer free bytes than this (or
    /// than a twentieth of its size, if less), checked while the stream is read.
    pub min_free_bytes: u64,
    /// Extraction stops when the destination's filesystem has fewer free inodes than this (or
    /// than a twentieth of its inodes, if less); filesystems without an inode count (btrfs)
    /// are not checked.
    pub min_free_inodes: u64,
}

const GIB: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: 100 * GIB,
            max_image_bytes: 200 * GIB,
            max_entries: 10_000_000,
            max_entry_meta: 4 << 20,
            max_layer_meta: 2 * GIB,
            max_file_size: 1 << 40,
            max_total_size: 4 << 40,
            max_volume_bytes: 100 * GIB,
            min_free_bytes: GIB,
            min_free_inodes: 65536,
        }
    }
}

/// One of the limits, as a field of [`Limits`] to set.
type Field = fn(&mut Limits) -> &mut u64;

/// The environment variable that sets each limit, and the field it sets.
const KNOBS: &[(&str, Field)] = &[
    ("BERTH_MAX_LAYER_BYTES", |l| &mut l.max_layer_bytes),
    ("BERTH_MAX_IMAGE_BYTES", |l| &mut l.max_image_bytes),
    ("BERTH_MAX_ENTRIES", |l| &mut l.max_entries),
    ("BERTH_MAX_ENTRY_META", |l| &mut l.max_entry_meta),
    ("BERTH_MAX_LAYER_META", |l| &mut l.max_layer_meta),
    ("BERTH_MAX_FILE_SIZE", |l| &mut l.max_file_size),
    ("BERTH_MAX_TOTAL_SIZE", |l| &mut l.max_total_size),
    ("BERTH_MAX_VOLUME_BYTES", |l| &mut l.max_volume_bytes),
    ("BERTH_MIN_FREE_BYTES", |l| &mut l.min_free_bytes),
    ("BERTH_MIN_FREE_INODES", |l| &mut l.min_free_inodes),
];

/// Parses a size: `123`, `64K`, `64KiB`, `64 kb`, `100G`, `1TB` (binary multiples; an
/// optional `i`/`iB`/`B` after the suffix, a space before it). The one size syntax of berth's
/// limit variables (the registry's `BERTH_PULL_*` use it too).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let suffix = suffix.trim_start();
    let unit = suffix.strip_suffix(['B', 'b']).unwrap_or(suffix);
    let unit = match unit.strip_suffix(['i', 'I']) {
        Some(u) if !u.is_empty() => u,
        _ => unit,
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

impl Limits {
    /// The defaults with the overrides of the `BERTH_MAX_*` and `BERTH_MIN_FREE_*`
    /// environment variables (see the module documentation); a value that does not parse
    /// is an error naming the variable.
    pub fn from_env() -> Result<Limits> {
        let mut limits = Limits::default();
        for &(var, field) in KNOBS {
            if let Some(v) = std::env::var_os(var) {
                let text = v.to_string_lossy();
                let n = parse_size(&text).ok_or_else(|| {
                    Error::invalid(
                        var,
                        format!("{text:?} is not a number with an optional K, M, G or T suffix"),
                    )
                })?;
                *field(&mut limits) = n;
            }
        }
        Ok(limits)
    }
}

/// The uncompressed bytes the layers of one image may still take, shared by the extractions
/// of its layers (they may run in parallel).
#[derive(Debug)]
pub struct ImageBudget {
    max: u64,
    used: AtomicU64,
    /// The image, for error messages.
    what: String,
}

impl ImageBudget {
    /// A budget of `max` bytes for the image named `what`.
    pub fn new(what: impl Into<String>, max: u64) -> ImageBudget {
        ImageBudget {
            max,
            used: AtomicU64::new(0),
            what: what.into(),
        }
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `n` bytes; an error once the total exceeds the budget.
    fn charge(&self, n: u64) -> Result<()> {
        let used = self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if used > self.max {
            return Err(Error::Limit {
                what: format!("image {}", self.what),
                detail: format!("its layers' uncompressed streams exceed {} bytes", self.max),
                limit: "BERTH_MAX_IMAGE_BYTES",
                max: self.max,
            });
        }
        Ok(())
    }
}

/// Free space is checked every this many bytes of stream (an `fstatvfs` per MiB costs
/// nothing next to decompressing it).
const FREE_CHECK_EVERY: u64 = 1 << 20;

/// Watches the uncompressed stream as it is read: its length against the layer's and the
/// image's limits, and the free space left on the destination's filesystem.
pub(crate) struct StreamGuard {
    limits: Limits,
    budget: Option<std::sync::Arc<ImageBudget>>,
    /// The destination, for `fstatvfs`.
    fs: Option<OwnedFd>,
    /// Stream bytes so far.
    total: u64,
    /// `total` at the last free-space check.
    checked: u64,
}

impl StreamGuard {
    /// A guard for a layer extracted beneath `dest` (`None`: no free-space check).
    pub(crate) fn new(opts: &super::ExtractOptions, dest: Option<OwnedFd>) -> StreamGuard {
        StreamGuard {
            limits: opts.limits,
            budget: opts.budget.clone(),
            fs: dest,
            total: 0,
            checked: 0,
        }
    }

    /// Accounts for `n` more bytes of stream.
    pub(crate) fn charge(&mut self, n: usize) -> Result<()> {
        let n = n as u64;
        self.total = self.total.saturating_add(n);
        if self.total > self.limits.max_layer_bytes {
            return Err(Error::Limit {
                what: "layer".into(),
                detail: format!(
                    "its uncompressed stream exceeds {} bytes (a decompression bomb?)",
                    self.limits.max_layer_bytes
                ),
                limit: "BERTH_MAX_LAYER_BYTES",
                max: self.limits.max_layer_bytes,
            });
        }
        if let Some(b) = &self.budget {
            b.charge(n)?;
        }
        if self.total - self.checked >= FREE_CHECK_EVERY || self.checked == 0 {
            self.checked = self.total;
            self.check_free()?;
        }
        Ok(())
    }

    /// Fails when the destination's filesystem is short of free space or inodes.
    fn check_free(&self) -> Result<()> {
        let Some(fd) = &self.fs else {
            return Ok(());
        };
        let Ok(st) = rustix::fs::fstatvfs(fd) else {
            return Ok(());
        };
        let block = st.f_frsize.max(1);
        let free = st.f_bavail.saturating_mul(block);
        let reserve = self
            .limits
            .min_free_bytes
            .min(st.f_blocks.saturating_mul(block) / 20);
        if free < reserve {
            return Err(Error::Limit {
                what: "layer".into(),
                detail: format!(
                    "the destination's filesystem has {free} bytes free, less than the \
                     {reserve} kept in reserve (the layer would fill the disk)"
                ),
                limit: "BERTH_MIN_FREE_BYTES",
                max: self.limits.min_free_bytes,
            });
        }
        if st.f_files > 0 {
            let reserve = self.limits.min_free_inodes.min(st.f_files / 20);
            if st.f_favail < reserve {
                return Err(Error::Limit {
                    what: "layer".into(),
                    detail: format!(
                        "the destination's filesystem has {} inodes free, less than the \
                         {reserve} kept in reserve",
                        st.f_favail
                    ),
                    limit: "BERTH_MIN_FREE_INODES",
                    max: self.limits.min_free_inodes,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let good = [
            ("0", 0),
            ("123", 123),
            ("64K", 64 << 10),
            ("64KiB", 64 << 10),
            ("64 kb", 64 << 10),
            ("100G", 100 << 30),
            ("2GiB", 2 << 30),
            ("1t", 1 << 40),
            ("1T", 1 << 40),
        ];
        for (text, n) in good {
            assert_eq!(parse_size(text), Some(n), "{text:?}");
        }
        let bad = [
            "",
            "K",
            "1X",
            "-1",
            "1.5G",
            "1 GiBs",
            "99999999999T",
            "99999999999999T",
        ];
        for text in bad {
            assert_eq!(parse_size(text), None, "{text:?}");
        }
    }
}
