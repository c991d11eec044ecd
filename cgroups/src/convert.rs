//! Pure mappings from `linux.resources` values to cgroup file contents, as runc and crun map
//! them. Everything here is property-tested; nothing touches the filesystem.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The largest `cpu.shares` value (v1); the kernel clamps to it.
pub const MAX_SHARES: u64 = 262_144;
/// The smallest `cpu.shares` value (v1).
pub const MIN_SHARES: u64 = 2;
/// The largest `cpu.weight` value (v2).
pub const MAX_WEIGHT: u64 = 10_000;

/// Converts v1 `cpu.shares` to v2 `cpu.weight` with the mapping crun 1.23 and runc 1.3 use:
/// a quadratic in log space through (2, 1), (1024, 100) and (262144, 10000), so the default
/// 1024 shares map to the default weight 100. 0 means "unset" and stays 0.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= MIN_SHARES {
        return 1;
    }
    if shares >= MAX_SHARES {
        return MAX_WEIGHT;
    }
    #[allow(clippy::cast_precision_loss)]
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    // The fit is exact at 1024 (exponent 2) but floating point lands a hair above; do not let
    // ceil turn 100.00000000000001 into 101.
    let w = 10f64.powf(exponent);
    let rounded = w.round();
    let w = if (w - rounded).abs() < 1e-9 {
        rounded
    } else {
        w.ceil()
    };
    (w as u64).clamp(1, MAX_WEIGHT)
}

/// The inverse of [`shares_to_weight`], for reporting a v2 weight in the spec's `cpu.shares`
/// terms: among the shares values that map to `weight`, the one nearest the exact inverse of
/// the curve (so 100 gives 1024), hence `shares_to_weight(weight_to_shares(w)) == w` for
/// every weight the forward map reaches; an unreachable weight gives the smallest shares
/// reaching a higher one.
pub fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    if weight <= 1 {
        return MIN_SHARES;
    }
    if weight >= MAX_WEIGHT {
        return MAX_SHARES;
    }
    // Solve l^2 + 125 l - 612 (log10(w) + 7/34) = 0 for l; shares = 2^l.
    #[allow(clippy::cast_precision_loss)]
    let e = (weight as f64).log10() + 7.0 / 34.0;
    let l = f64::midpoint(-125.0, (125.0f64 * 125.0 + 4.0 * 612.0 * e).sqrt());
    let exact = 2f64.powf(l).round() as u64;
    // The forward map rounds up, so walk to the interval of shares reaching `weight`.
    let mut lo = exact.saturating_sub(exact / 50 + 2).max(MIN_SHARES);
    while lo < MAX_SHARES && shares_to_weight(lo) < weight {
        lo += 1;
    }
    while lo > MIN_SHARES && shares_to_weight(lo - 1) >= weight {
        lo -= 1;
    }
    let mut hi = lo;
    while hi < MAX_SHARES && shares_to_weight(hi + 1) == weight {
        hi += 1;
    }
    exact.clamp(lo, hi)
}

/// Converts a v1 blkio weight (10..=1000) to a v2 `io.weight` (1..=10000) as runc does.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// A memory-style limit as a cgroup value: 0 is "unset" (nothing to write), -1 is "max".
pub fn limit_value(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".to_owned()),
        n => Some(n.to_string()),
    }
}

/// Maps the spec's `memory.swap` (a memory+swap total, as on v1) to v2 `memory.swap.max` (swap
/// alone), as runc's `ConvertMemorySwapToCgroupV2Value`: 0 is unset, -1 is max, and when the
/// memory limit is unlimited and swap unset, swap becomes unlimited too.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, String> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err("unable to set a swap limit without a memory limit".to_owned());
    }
    if memory < 0 {
        return Err(format!("invalid memory limit {memory}"));
    }
    if swap < memory {
        return Err(format!(
            "memory+swap limit {swap} should be >= the memory limit {memory}"
        ));
    }
    Ok(swap - memory)
}

/// The v2 `cpu.max` value for a quota and period, or `None` when neither is set. A quota of
/// 0 with a period keeps the quota at `max` (runc's behaviour); -1 is `max`.
pub fn cpu_max(quota: i64, period: u64) -> Option<String> {
    if quota == 0 && period == 0 {
        return None;
    }
    let mut s = if quota > 0 {
        quota.to_string()
    } else {
        "max".to_owned()
    };
    if period != 0 {
        let _ = write!(s, " {period}");
    }
    Some(s)
}

/// Checks a CFS quota and period as the kernel would, for a clearer message than EINVAL:
/// a period is 1 ms to 1 s, a positive quota at least 1 ms.
pub fn check_quota_period(quota: i64, period: u64) -> Result<(), String> {
    if period != 0 && !(1_000..=1_000_000).contains(&period) {
        return Err(format!(
            "period {period} is out of range (1000 to 1000000 microseconds)"
        ));
    }
    if quota > 0 && quota < 1_000 {
        return Err(format!(
            "quota {quota} is below the minimum of 1000 microseconds"
        ));
    }
    if quota < -1 {
        return Err(format!("quota {quota} is negative (use -1 for unlimited)"));
    }
    Ok(())
}

/// Parses a cpuset list such as `0-3,5,7-8` into its members. Empty input is the empty set.
pub fn parse_cpu_list(list: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    let list = list.trim();
    if list.is_empty() {
        return Ok(out);
    }
    for part in list.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("range {part:?} is reversed"));
        }
        if hi - lo > 65_536 {
            return Err(format!("range {part:?} is too large"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

fn num(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a number"));
    }
    s.parse().map_err(|_| format!("{s:?} is too large"))
}

/// Formats a set of CPUs or memory nodes in the kernel's canonical list form (`0-3,5`).
pub fn format_cpu_list(set: &BTreeSet<u32>) -> String {
    let mut out = String::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shares_fixed_points() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        assert_eq!(weight_to_shares(100), 1024);
    }

    #[test]
    fn io_weight_ends() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
    }

    #[test]
    fn swap_mapping() {
        assert_eq!(swap_to_v2(0, -1), Ok(-1));
        assert_eq!(swap_to_v2(-1, 100), Ok(-1));
        assert_eq!(swap_to_v2(300, 100), Ok(200));
        assert_eq!(swap_to_v2(100, 100), Ok(0));
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(50, 0).is_err());
    }

    #[test]
    fn cpu_max_values() {
        assert_eq!(cpu_max(0, 0), None);
        assert_eq!(cpu_max(50_000, 100_000).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(-1, 0).as_deref(), Some("max"));
        assert_eq!(cpu_max(0, 20_000).as_deref(), Some("max 20000"));
        assert_eq!(cpu_max(20_000, 0).as_deref(), Some("20000"));
        assert!(check_quota_period(500, 100_000).is_err());
        assert!(check_quota_period(5_000, 100).is_err());
        assert!(check_quota_period(-1, 100_000).is_ok());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            format_cpu_list(&parse_cpu_list("0-3,5,7-8").unwrap()),
            "0-3,5,7-8"
        );
        assert_eq!(format_cpu_list(&parse_cpu_list("3,2,1,0").unwrap()), "0-3");
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("-1").is_err());
        assert!(parse_cpu_list("").unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn weight_is_monotonic_and_in_range(a in 1u64..400_000, b in 1u64..400_000) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (wl, wh) = (shares_to_weight(lo), shares_to_weight(hi));
            prop_assert!((1..=MAX_WEIGHT).contains(&wl));
            prop_assert!(wl <= wh);
        }

        #[test]
        fn weight_to_shares_inverts(w in 1u64..=MAX_WEIGHT) {
            let s = weight_to_shares(w);
            prop_assert!((MIN_SHARES..=MAX_SHARES).contains(&s));
            // Some weights are skipped by the forward map (it is steeper than 1 at the top);
            // the inverse then lands on the next reachable one.
            let got = shares_to_weight(s);
            prop_assert!(got >= w);
            // Reachable weights come back exactly.
            if (MIN_SHARES..=MAX_SHARES).any(|x| shares_to_weight(x) == w) {
                prop_assert_eq!(got, w);
            } else {
                prop_assert!(s > MIN_SHARES && shares_to_weight(s - 1) < w);
            }
        }

        #[test]
        fn shares_round_trip(s in MIN_SHARES..=MAX_SHARES) {
            let w = shares_to_weight(s);
            prop_assert_eq!(shares_to_weight(weight_to_shares(w)), w);
        }

        #[test]
        fn io_weight_monotonic(a in 10u16..=1000, b in 10u16..=1000) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(blkio_weight_to_io_weight(lo) <= blkio_weight_to_io_weight(hi));
            prop_assert!((1..=10_000).contains(&blkio_weight_to_io_weight(a)));
        }

        #[test]
        fn swap_v2_plus_memory_is_total(mem in 1i64..1 << 40, extra in 0i64..1 << 40) {
            prop_assert_eq!(swap_to_v2(mem + extra, mem), Ok(extra));
        }

        #[test]
        fn quota_period_text_parses_back(quota in prop_oneof![Just(-1i64), Just(0), 1_000i64..10_000_000],
                                         period in prop_oneof![Just(0u64), 1_000u64..=1_000_000]) {
            match cpu_max(quota, period) {
                None => prop_assert!(quota == 0 && period == 0),
                Some(s) => {
                    let mut it = s.split(' ');
                    let q = it.next().unwrap();
                    if quota > 0 { prop_assert_eq!(q.parse::<i64>().unwrap(), quota) } else { prop_assert_eq!(q, "max") }
                    match it.next() {
                        Some(p) => prop_assert_eq!(p.parse::<u64>().unwrap(), period),
                        None => prop_assert_eq!(period, 0),
                    }
                }
            }
        }

        #[test]
        fn cpu_list_round_trip(set in proptest::collection::btree_set(0u32..512, 0..64)) {
            let text = format_cpu_list(&set);
            prop_assert_eq!(parse_cpu_list(&text).unwrap(), set.clone());
            // Canonical: formatting again gives the same text.
            prop_assert_eq!(format_cpu_list(&parse_cpu_list(&text).unwrap()), text);
        }
    }
}
