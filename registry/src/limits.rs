//! Bounds on what a registry may make a pull do: how large a document or blob may be, how
//! many layers an image may have, how much free space must remain in the store, and how long
//! a registry may keep a request waiting.
//!
//! A hostile or broken registry can declare a blob of a TiB and send it forever, trickle a
//! manifest a byte at a time, stall in the middle of a blob, or list twenty thousand layers.
//! Each of these fails with an [`Error`] naming the digest or reference, the limit and the
//! variable that sets it, within the budgets below, and leaves nothing behind (the store
//! removes its temporary files on every error; nothing is recorded or held).
//!
//! | Field | Variable | Default |
//! |---|---|---|
//! | [`MAX_DOCUMENT`] (manifests, indexes, configs, token answers) | fixed | 4 MiB |
//! | [`Limits::max_blob_size`] | `BERTH_PULL_MAX_BLOB_SIZE` | 64 GiB |
//! | [`Limits::max_layers`] | `BERTH_PULL_MAX_LAYERS` | 128 |
//! | [`Limits::disk_reserve`] | `BERTH_PULL_DISK_RESERVE` | 1 GiB |
//! | [`Limits::idle_timeout`] | `BERTH_REGISTRY_IDLE_TIMEOUT` | 30 s |
//! | [`Limits::request_timeout`] | `BERTH_REGISTRY_TIMEOUT` | 60 s |
//! | [`Limits::min_rate`] | `BERTH_REGISTRY_MIN_RATE` | 64 KiB/s |
//! | [`Limits::rate_grace`] | fixed | 10 s |
//!
//! Sizes and rates are a number of bytes with an optional binary suffix `K`, `M`, `G` or `T`
//! (`KiB`, `MiB`... and a trailing `/s` for rates are accepted): `64KiB`, `1G`, `65536`.
//! Durations are a number of seconds or a number with `ms`, `s`, `m` or `h`: `30`, `30s`,
//! `500ms`, `2m`. The variables are read once, by [`Limits::from_env`] (what
//! [`crate::ClientOptions::limits`] `None` means); a value that does not parse is an
//! [`Error::Config`] naming the variable.
//!
//! What they bound:
//!
//! - Documents (manifests, indexes, configs, tokens, the `GET /v2/` ping): at most 4 MiB
//!   read, the whole request (retries, headers and body) within `request_timeout`.
//! - Layers: a manifest with more than `max_layers` layers is refused before any blob is
//!   requested, an index's platform manifest too (docker refuses images deeper than 125
//!   layers; beyond a few hundred, an overlay mount's lower layers no longer fit the kernel's
//!   page-sized mount options, which `run` would report much later).
//! - Blobs: a descriptor size above `max_blob_size`, or above the free space of the store's
//!   `tmp/` minus `disk_reserve` (downloads in flight counted), is refused before the blob is
//!   requested; a `Content-Length` other than the descriptor's size is refused before a byte
//!   is written; at most the declared size is ever handed to the store (one byte more is an
//!   error). The response headers must arrive within `request_timeout`; after them, a read
//!   that receives nothing for `idle_timeout` fails, and once `rate_grace` has passed the
//!   average rate since the download started must stay at or above `min_rate`. A blob of
//!   declared size `S` thus succeeds or fails within about
//!   `request_timeout + max(rate_grace, S / min_rate) + idle_timeout` (each resumption of a
//!   dropped connection adds at most `request_timeout`), and puts at most `S` bytes on disk.
//!   The rate is that of the bytes the store consumes (it extracts while downloading), far
//!   below any extraction's speed. A blob request whose headers are late is abandoned on the
//!   thread that sends it: the pull fails at once, the thread and its connection end when
//!   the registry stops (or at ureq's cap on response headers).
//! - Memory: a document costs at most twice 4 MiB while it is read, plus its parsed form
//!   (a manifest's layers are counted, without being kept, before it is parsed); blobs
//!   stream through the store's buffers.

use std::sync::OnceLock;
use std::time::Duration;

use crate::error::{Error, Result};

/// Largest manifest, index, config or token answer accepted (as the store: 4 MiB).
pub const MAX_DOCUMENT: u64 = 4 << 20;

const KIB: u64 = 1 << 10;
const GIB: u64 = 1 << 30;

/// What a registry may make a pull do (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest blob (config or layer) a descriptor may declare.
    pub max_blob_size: u64,
    /// Most layers an image's manifest may list.
    pub max_layers: usize,
    /// Free space that must remain in the store's `tmp/` after a blob of the declared size
    /// (and the downloads in flight) is written.
    pub disk_reserve: u64,
    /// Longest time without a byte from the registry (reads and writes of a request).
    pub idle_timeout: Duration,
    /// Deadline of a whole document request (ping, token, manifest, config), retries
    /// included, and of a blob request's response headers.
    pub request_timeout: Duration,
    /// Lowest average rate of a blob download (bytes per second since it started), checked
    /// once `rate_grace` has passed; 0 disables the check.
    pub min_rate: u64,
    /// How long a blob download may run before its average rate is checked.
    pub rate_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blob_size: 64 * GIB,
            max_layers: 128,
            disk_reserve: GIB,
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            min_rate: 64 * KIB,
            rate_grace: Duration::from_secs(10),
        }
    }
}

/// The variable that sets [`Limits::max_blob_size`].
pub const VAR_MAX_BLOB_SIZE: &str = "BERTH_PULL_MAX_BLOB_SIZE";
/// The variable that sets [`Limits::max_layers`].
pub const VAR_MAX_LAYERS: &str = "BERTH_PULL_MAX_LAYERS";
/// The variable that sets [`Limits::disk_reserve`].
pub const VAR_DISK_RESERVE: &str = "BERTH_PULL_DISK_RESERVE";
/// The variable that sets [`Limits::idle_timeout`].
pub const VAR_IDLE_TIMEOUT: &str = "BERTH_REGISTRY_IDLE_TIMEOUT";
/// The variable that sets [`Limits::request_timeout`].
pub const VAR_TIMEOUT: &str = "BERTH_REGISTRY_TIMEOUT";
/// The variable that sets [`Limits::min_rate`].
pub const VAR_MIN_RATE: &str = "BERTH_REGISTRY_MIN_RATE";

/// Parses a size (the image crate's syntax for every limit variable).
pub use berth_image::extract::parse_size;

/// Parses a rate: a size ([`parse_size`]) with an optional `/s`.
pub fn parse_rate(v: &str) -> Option<u64> {
    let v = v.trim();
    parse_size(v.strip_suffix("/s").unwrap_or(v))
}

/// Parses `30` (seconds), `30s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(digits);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// `1 GiB`, `64 KiB`, `1.5 MiB`, `100 bytes`: for error messages.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut i = 0;
    while i + 1 < UNITS.len() && n >= 1 << (10 * (i + 1)) {
        i += 1;
    }
    if i == 0 {
        return format!("{n} bytes");
    }
    let unit = 1u64 << (10 * i);
    if n.is_multiple_of(unit) {
        format!("{} {}", n / unit, UNITS[i])
    } else {
        let tenths = (u128::from(n) * 10 + u128::from(unit / 2)) / u128::from(unit);
        format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[i])
    }
}

/// `1 TiB (1099511627776 bytes)`, `100 bytes`: for error messages.
pub fn exact_size(n: u64) -> String {
    if n < 1 << 10 {
        format!("{n} bytes")
    } else {
        format!("{} ({n} bytes)", human_size(n))
    }
}

/// `30s`, `1.5s`, `200ms`: for error messages.
pub fn human_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A variable's value that does not parse (or is out of range).
#[derive(Debug, Clone)]
struct Bad {
    variable: &'static str,
    value: String,
    reason: &'static str,
}

impl Bad {
    fn error(&self) -> Error {
        Error::Config {
            variable: self.variable,
            value: self.value.clone(),
            reason: self.reason.to_string(),
        }
    }
}

const SIZE: &str = "not a size: a number with an optional K, M, G or T suffix (e.g. 64KiB, 1G)";
const COUNT: &str = "not a number of layers of at least 1";
const DURATION: &str =
    "not a duration above zero: a number of seconds, or with ms, s, m or h (e.g. 30s, 500ms)";
const RATE: &str = "not a rate: bytes per second with an optional K, M, G or T suffix (e.g. 64KiB/s; 0 disables the check)";

impl Limits {
    /// The defaults with the overrides of the `BERTH_PULL_*` and `BERTH_REGISTRY_*`
    /// variables (see the module documentation), read once per process; a value that does
    /// not parse is an [`Error::Config`] naming the variable.
    pub fn from_env() -> Result<Limits> {
        static PARSED: OnceLock<Result<Limits, Bad>> = OnceLock::new();
        PARSED
            .get_or_init(|| Limits::parse_vars(|v| std::env::var(v).ok()))
            .clone()
            .map_err(|b| b.error())
    }

    /// The defaults with the overrides `var` gives (an environment, or a test's map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Limits> {
        Limits::parse_vars(var).map_err(|b| b.error())
    }

    fn parse_vars(var: impl Fn(&str) -> Option<String>) -> Result<Limits, Bad> {
        let d = Limits::default();
        let count = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n >= 1);
        let positive = |v: &str| parse_duration(v).filter(|d| !d.is_zero());
        Ok(Limits {
            max_blob_size: setting(&var, VAR_MAX_BLOB_SIZE, SIZE, parse_size, d.max_blob_size)?,
            max_layers: setting(&var, VAR_MAX_LAYERS, COUNT, count, d.max_layers)?,
            disk_reserve: setting(&var, VAR_DISK_RESERVE, SIZE, parse_size, d.disk_reserve)?,
            idle_timeout: setting(&var, VAR_IDLE_TIMEOUT, DURATION, positive, d.idle_timeout)?,
            request_timeout: setting(&var, VAR_TIMEOUT, DURATION, positive, d.request_timeout)?,
            min_rate: setting(&var, VAR_MIN_RATE, RATE, parse_rate, d.min_rate)?,
            rate_grace: d.rate_grace,
        })
    }
}

/// The value of `variable` (as `var` gives it) read with `parse`, or `default` when it is
/// unset; a value `parse` refuses is a [`Bad`] saying it is `reason`.
fn setting<T>(
    var: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    reason: &'static str,
    parse: impl Fn(&str) -> Option<T>,
    default: T,
) -> Result<T, Bad> {
    match var(variable) {
        None => Ok(default),
        Some(value) => parse(&value).ok_or(Bad {
            variable,
            value,
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rates and durations (sizes are the image crate's `parse_size`, tested there).
    #[test]
    fn values_parse() {
        let rates = [("64KiB/s", 64 << 10), ("64K", 64 << 10), ("0", 0)];
        for (text, n) in rates {
            assert_eq!(parse_rate(text), Some(n), "{text:?}");
        }
        for bad in ["", "/s", "fast", "1X/s"] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
        let durations = [
            ("30", Duration::from_secs(30)),
            ("30s", Duration::from_secs(30)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
        ];
        for (text, d) in durations {
            assert_eq!(parse_duration(text), Some(d), "{text:?}");
        }
        for bad in ["", "s", "1.5s", "3d", "-3"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(human_size(1 << 40), "1 TiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(100), "100 bytes");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn variables_override_and_bad_values_name_the_variable() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_string())
            }
        };
        assert_eq!(Limits::from_vars(|_| None).unwrap(), Limits::default());
        let l = Limits::from_vars(vars(&[
            ("BERTH_PULL_MAX_BLOB_SIZE", "1G"),
            ("BERTH_PULL_MAX_LAYERS", "200"),
            ("BERTH_PULL_DISK_RESERVE", "0"),
            ("BERTH_REGISTRY_IDLE_TIMEOUT", "5s"),
            ("BERTH_REGISTRY_TIMEOUT", "2m"),
            ("BERTH_REGISTRY_MIN_RATE", "1MiB/s"),
        ]))
        .unwrap();
        assert_eq!(
            l,
            Limits {
                max_blob_size: 1 << 30,
                max_layers: 200,
                disk_reserve: 0,
                idle_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(120),
                min_rate: 1 << 20,
                rate_grace: Limits::default().rate_grace,
            }
        );
        for (var, value) in [
            ("BERTH_PULL_MAX_BLOB_SIZE", "lots"),
            ("BERTH_PULL_MAX_LAYERS", "0"),
            ("BERTH_PULL_DISK_RESERVE", "1.5G"),
            ("BERTH_REGISTRY_IDLE_TIMEOUT", "0"),
            ("BERTH_REGISTRY_TIMEOUT", "soon"),
            ("BERTH_REGISTRY_MIN_RATE", "fast"),
        ] {
            let e = Limits::from_vars(|k| (k == var).then(|| value.to_string())).unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(&e, Error::Config { variable, .. } if *variable == var),
                "{text}"
            );
            assert!(text.contains(var) && text.contains(value), "{text}");
        }
    }
}
