//! Small formatting helpers shared by the commands' output.

/// A byte count as docker shows it: `12.3MB`, `4kB`, `512B` (decimal units, one decimal
/// place at most). Every size berth-tools prints goes through here.
pub fn human_size(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    let (value, unit) = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
        .into_iter()
        .find(|(scale, _)| b >= *scale)
        .map_or((b, "B"), |(scale, unit)| (b / scale, unit));
    let text = format!("{value:.1}");
    format!("{}{unit}", text.strip_suffix(".0").unwrap_or(&text))
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
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_000), "4kB");
        assert_eq!(human_size(4_096), "4.1kB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }
}
