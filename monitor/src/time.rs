//! Timestamps as docker writes them: UTC RFC 3339 with nine fractional digits
//! (`2026-12-06T21:00:00.123456789Z`), and serde helpers for [`SystemTime`] fields.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serializer};

/// `time` as UTC RFC 3339 with nanoseconds.
pub(crate) fn format(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Parses a UTC RFC 3339 timestamp (any number of fractional digits, `Z`).
pub(crate) fn parse(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(s).map_err(|e| format!("time {s:?}: {e}"))
}

/// serde `with` module for a [`SystemTime`] field written as [`format`] does.
pub(crate) mod rfc3339 {
    use super::{Deserialize, Deserializer, Serializer, SystemTime};

    /// Serializes as [`super::format`].
    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*t))
    }

    /// Deserializes with [`super::parse`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nine_digits_utc_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_796_590_800, 123_456_789);
        let s = format(t);
        assert_eq!(s, "2026-12-06T21:00:00.123456789Z");
        assert_eq!(parse(&s).unwrap(), t);
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_590_800);
        assert_eq!(format(whole), "2026-12-06T21:00:00.000000000Z");
        assert!(parse("yesterday").is_err());
    }
}
