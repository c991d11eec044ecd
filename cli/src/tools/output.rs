//! Small formatting helpers shared by the commands' output.

/// A byte count as people read it: `12.3 MB`, `4.0 kB`, `512 B` (decimal units).
pub fn human_size(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// The first 12 hex digits of a digest (`sha256:` dropped), as docker shows IDs.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..12.min(hex.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(4_000), "4.0 kB");
        assert_eq!(human_size(12_345_678), "12.3 MB");
        assert_eq!(human_size(2_000_000_000), "2.0 GB");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }
}
