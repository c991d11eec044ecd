//! Images and root filesystems for berth.
//!
//! This crate will own the second hot path after container start: reading OCI image layouts and
//! archives, a sha256-verified content store, hostile-safe layer extraction (gzip, zstd,
//! whiteouts), overlayfs root filesystems and bundles generated from image configs.
//!
//! Nothing is implemented yet.
