//! Timestamps as the Engine API writes them: RFC 3339 in UTC with nanoseconds, and Unix
//! seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as RFC 3339 with nanoseconds (`2026-12-06T21:00:00.123456789Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Docker's zero time, for a container never started or never finished.
pub const ZERO: &str = "0001-01-01T00:00:00Z";

/// Parses an RFC 3339 time (as [`rfc3339`] writes it).
pub fn parse(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// Seconds since the epoch of an RFC 3339 time (0 for [`ZERO`] or nonsense).
pub fn unix_seconds(s: &str) -> i64 {
    parse(s)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Parses a `since`/`until` query value as docker takes it: Unix seconds (with an optional
/// fraction), an RFC 3339 time, or a duration before now (`10m`, `1h30m`).
pub fn parse_query_time(s: &str) -> Option<SystemTime> {
    if let Ok(secs) = s.parse::<f64>() {
        // try_from: a number too large for a Duration (1e300) is refused, never a panic.
        return std::time::Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d));
    }
    if let Some(t) = parse(s) {
        return Some(t);
    }
    humantime::parse_duration(s)
        .ok()
        .and_then(|d| SystemTime::now().checked_sub(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_query_times() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_800_000_000, 5);
        let s = rfc3339(t);
        assert!(s.ends_with('Z') && s.contains(".000000005"), "{s}");
        assert_eq!(parse(&s), Some(t));
        assert_eq!(unix_seconds(&s), 1_800_000_000);
        assert_eq!(unix_seconds(ZERO), 0);
        assert_eq!(
            parse_query_time("1800000000"),
            Some(UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000))
        );
        assert!(parse_query_time("10m").unwrap() < SystemTime::now());
        assert!(parse_query_time("-5").is_none());
        assert!(parse_query_time("1e300").is_none());
        assert!(parse_query_time("NaN").is_none());
        assert!(parse_query_time("99999999999999999999").is_none());
        assert!(parse_query_time("soon").is_none());
    }
}
