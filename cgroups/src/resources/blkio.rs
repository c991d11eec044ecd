//! `linux.resources.blockIO`: v1 `blkio.*` (weights need the BFQ or CFQ scheduler's files),
//! v2 `io.weight`/`io.bfq.weight` and `io.max`.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice, LinuxWeightDevice};

use super::{dev_number, Target};
use crate::convert::blkio_weight_to_io_weight;
use crate::error::{Error, Result};
use crate::fsutil;

type Throttles<'a> = [(
    &'static str,
    &'static str,
    &'static str,
    &'a Option<Vec<LinuxThrottleDevice>>,
); 4];

pub(crate) fn apply(t: &Target<'_>, b: &LinuxBlockIo) -> Result<()> {
    let throttles: Throttles<'_> = [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
            b.throttle_read_bps_device(),
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
            b.throttle_write_bps_device(),
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
            b.throttle_read_iops_device(),
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
            b.throttle_write_iops_device(),
        ),
    ];
    let any = b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || throttles
            .iter()
            .any(|(_, _, _, v)| v.as_ref().is_some_and(|v| !v.is_empty()));
    if !any {
        return Ok(());
    }
    for (field, w) in [
        ("blockIO.weight", b.weight()),
        ("blockIO.leafWeight", b.leaf_weight()),
    ] {
        if let Some(w) = w.filter(|&w| w != 0) {
            check_weight(field, w)?;
        }
    }
    let controller = if t.v2() { "io" } else { "blkio" };
    let dir = t.dir(controller, "blockIO")?;
    if t.v2() {
        v2(dir, b, &throttles)
    } else {
        v1(dir, b, &throttles)
    }
}

fn check_weight(field: &str, w: u16) -> Result<()> {
    if (10..=1000).contains(&w) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{w} is out of range (10 to 1000)"),
        ))
    }
}

/// The weight file v1 offers: BFQ's, else CFQ's, else none (then weights cannot be set).
fn v1_weight_file(dir: &Path, field: &str, bfq: &str, cfq: &str) -> Result<&'static str> {
    if fsutil::exists(dir, bfq) {
        return Ok(if bfq.ends_with("_device") {
            "blkio.bfq.weight_device"
        } else {
            "blkio.bfq.weight"
        });
    }
    if fsutil::exists(dir, cfq) {
        return Ok(if cfq.ends_with("_device") {
            "blkio.weight_device"
        } else {
            "blkio.weight"
        });
    }
    Err(Error::unsupported(
        field,
        format!(
            "neither {bfq} nor {cfq} exists in {} (the block devices' I/O schedulers take no \
             cgroup weights; only the throttle limits work here)",
            dir.display()
        ),
    ))
}

fn v1(dir: &Path, b: &LinuxBlockIo, throttles: &Throttles<'_>) -> Result<()> {
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        let file = v1_weight_file(dir, "blockIO.weight", "blkio.bfq.weight", "blkio.weight")?;
        fsutil::write(dir, file, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        if !fsutil::exists(dir, "blkio.leaf_weight") {
            return Err(Error::unsupported(
                "blockIO.leafWeight",
                format!(
                    "{} does not exist (CFQ only)",
                    dir.join("blkio.leaf_weight").display()
                ),
            ));
        }
        fsutil::write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for_each_weight_device(b, |field, dev, wd| {
        if let Some(w) = wd.weight() {
            check_weight(field, w)?;
            let file =
                v1_weight_file(dir, field, "blkio.bfq.weight_device", "blkio.weight_device")?;
            fsutil::write(dir, file, &format!("{dev} {w}"))?;
        }
        if let Some(w) = wd.leaf_weight() {
            check_weight(field, w)?;
            if !fsutil::exists(dir, "blkio.leaf_weight_device") {
                return Err(Error::unsupported(
                    field,
                    "no blkio.leaf_weight_device (CFQ only)",
                ));
            }
            fsutil::write(dir, "blkio.leaf_weight_device", &format!("{dev} {w}"))?;
        }
        Ok(())
    })?;
    for (name, file, _, list) in throttles {
        for_each_device(name, list.as_deref(), throttle_number, |field, dev, td| {
            fsutil::write(dir, file, &format!("{dev} {}", td.rate()))
                .map_err(|e| device_error(field, e))
        })?;
    }
    Ok(())
}

/// Calls `f` for each entry of the per-device list `blockIO.<name>`, with the entry's field name
/// (`blockIO.<name>[i]`, for errors) and its `major:minor` (from `number`), both numbers checked
/// first.
fn for_each_device<D>(
    name: &str,
    list: Option<&[D]>,
    number: impl Fn(&D) -> (i64, i64),
    mut f: impl FnMut(&str, &str, &D) -> Result<()>,
) -> Result<()> {
    for (i, d) in list.into_iter().flatten().enumerate() {
        let field = format!("blockIO.{name}[{i}]");
        let (major, minor) = number(d);
        let dev = format!(
            "{}:{}",
            dev_number(&field, major)?,
            dev_number(&field, minor)?
        );
        f(&field, &dev, d)?;
    }
    Ok(())
}

/// [`for_each_device`] of `blockIO.weightDevice`.
fn for_each_weight_device(
    b: &LinuxBlockIo,
    f: impl FnMut(&str, &str, &LinuxWeightDevice) -> Result<()>,
) -> Result<()> {
    for_each_device(
        "weightDevice",
        b.weight_device().as_deref(),
        weight_number,
        f,
    )
}

/// A weight device's `(major, minor)`.
fn weight_number(d: &LinuxWeightDevice) -> (i64, i64) {
    (d.major(), d.minor())
}

/// A throttle device's `(major, minor)`.
fn throttle_number(d: &LinuxThrottleDevice) -> (i64, i64) {
    (d.major(), d.minor())
}

/// ENODEV from a per-device file: the config names a device that is not a block device here.
fn device_error(field: &str, e: Error) -> Error {
    if e.raw_os_error() == Some(libc::ENODEV) {
        Error::invalid(field, format!("no such block device ({e})"))
    } else {
        e
    }
}

fn v2(dir: &Path, b: &LinuxBlockIo, throttles: &Throttles<'_>) -> Result<()> {
    let bfq = fsutil::exists(dir, "io.bfq.weight");
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        if bfq {
            fsutil::write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            fsutil::write(dir, "io.weight", &blkio_weight_to_io_weight(w).to_string())?;
        }
    }
    if b.leaf_weight().is_some() {
        tracing::warn!("linux.resources.blockIO.leafWeight is ignored on cgroup v2");
    }
    for_each_weight_device(b, |field, dev, wd| {
        if let Some(w) = wd.weight() {
            check_weight(field, w)?;
            let r = if bfq {
                fsutil::write(dir, "io.bfq.weight", &format!("{dev} {w}"))
            } else {
                let w = blkio_weight_to_io_weight(w);
                fsutil::write(dir, "io.weight", &format!("{dev} {w}"))
            };
            r.map_err(|e| device_error(field, e))?;
        }
        Ok(())
    })?;
    for (name, _, key, list) in throttles {
        for_each_device(name, list.as_deref(), throttle_number, |field, dev, td| {
            let rate = if td.rate() == 0 {
                "max".to_owned()
            } else {
                td.rate().to_string()
            };
            fsutil::write(dir, "io.max", &format!("{dev} {key}={rate}"))
                .map_err(|e| device_error(field, e))
        })?;
    }
    Ok(())
}
