//! The five capability sets of `process.capabilities`, mapped to kernel capabilities and
//! applied around the uid switch (bounding first, then permitted/effective/inheritable, then
//! ambient).

use std::collections::HashSet;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use crate::error::{Error, Result};

/// The sets to apply, already intersected with what berth itself holds.
#[derive(Debug, Clone, Default)]
pub struct CapsPlan {
    /// Bounding set.
    pub bounding: CapsHashSet,
    /// Effective set.
    pub effective: CapsHashSet,
    /// Permitted set.
    pub permitted: CapsHashSet,
    /// Inheritable set.
    pub inheritable: CapsHashSet,
    /// Ambient set.
    pub ambient: CapsHashSet,
}

fn convert(
    set: &str,
    list: Option<&HashSet<oci_spec::runtime::Capability>>,
    held: &CapsHashSet,
) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for cap in list.into_iter().flatten() {
        let name = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        match name.parse::<Capability>() {
            Ok(c) if held.contains(&c) => {
                out.insert(c);
            }
            Ok(c) => {
                tracing::warn!("process.capabilities.{set}: {c} is not held by berth on this host; not granted");
            }
            Err(_) => {
                tracing::warn!("process.capabilities.{set}: unknown capability {name} ignored");
            }
        }
    }
    out
}

/// Builds the plan from the config, warning about capabilities that cannot be granted here.
pub fn plan(c: &LinuxCapabilities) -> Result<CapsPlan> {
    let held = caps::read(None, CapSet::Bounding)
        .map_err(|e| Error::Init(format!("reading capabilities: {e}")))?;
    let plan = CapsPlan {
        bounding: convert("bounding", c.bounding().as_ref(), &held),
        effective: convert("effective", c.effective().as_ref(), &held),
        permitted: convert("permitted", c.permitted().as_ref(), &held),
        inheritable: convert("inheritable", c.inheritable().as_ref(), &held),
        ambient: convert("ambient", c.ambient().as_ref(), &held),
    };
    let inherited = caps::read(None, CapSet::Inheritable)
        .map_err(|e| Error::Init(format!("reading capabilities: {e}")))?;
    check_capset(&plan, &inherited)?;
    Ok(plan)
}

/// The kernel's capset(2) rules, checked at `create` rather than met as EPERM at `start`:
/// effective within permitted, inheritable within the bounding set (plus what is already
/// inheritable).
fn check_capset(p: &CapsPlan, inherited: &CapsHashSet) -> Result<()> {
    check_within("effective", &p.effective, "permitted", |c| {
        p.permitted.contains(c)
    })?;
    check_within("inheritable", &p.inheritable, "bounding", |c| {
        p.bounding.contains(c) || inherited.contains(c)
    })
}

/// A [`check_capset`] rule: every capability of `process.capabilities.<field>` (`set`) must be
/// `allowed` by the `within` set, else the error lists those outside it, sorted.
fn check_within(
    field: &str,
    set: &CapsHashSet,
    within: &str,
    allowed: impl Fn(&Capability) -> bool,
) -> Result<()> {
    let mut bad: Vec<String> = set
        .iter()
        .filter(|c| !allowed(c))
        .map(ToString::to_string)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort();
    Err(Error::config(
        format!("process.capabilities.{field}"),
        format!(
            "{} not in the {within} set: capset would fail (operation not permitted)",
            bad.join(", ")
        ),
    ))
}

fn err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> Error + '_ {
    move |e| Error::Init(format!("capabilities: {what}: {e}"))
}

fn bits(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |acc, c| acc | c.bitmask())
}

/// Sets the three per-thread sets in one capset(2) call, so no ordering constraint between
/// them can fail half-way.
fn capset(
    effective: &CapsHashSet,
    permitted: &CapsHashSet,
    inheritable: &CapsHashSet,
) -> Result<()> {
    let (e, p, i) = (bits(effective), bits(permitted), bits(inheritable));
    if let Err(err) = berth_sys::security::set_capabilities(e, p, i) {
        return Err(Error::Init(format!(
            "capabilities: capset(effective={e:#x}, permitted={p:#x}, inheritable={i:#x}): {}",
            crate::error::describe(&err)
        )));
    }
    Ok(())
}

/// Drops every capability not in the bounding set (needs CAP_SETPCAP: call before the uid switch).
pub fn apply_bounding(p: &CapsPlan) -> Result<()> {
    for cap in caps::all() {
        if !p.bounding.contains(&cap) {
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                // Capabilities newer than the kernel do not exist in its bounding set.
                Err(_) if !caps::runtime::thread_all_supported().contains(&cap) => {}
                Err(e) => return Err(err("dropping from the bounding set")(e)),
            }
        }
    }
    Ok(())
}

/// Sets permitted, inheritable and effective, then raises the ambient set (after the uid switch).
///
/// The kernel only lets a capability into the ambient set when it is both permitted and
/// inheritable. Like runc (1.2 and later), an ambient capability that cannot be raised is a
/// warning, not an error: buildah's `RUN` configs list ambient capabilities that their
/// inheritable set lacks.
pub fn apply_sets(p: &CapsPlan) -> Result<()> {
    capset(&p.effective, &p.permitted, &p.inheritable)?;
    let mut skipped: Vec<String> = Vec::new();
    for cap in &p.ambient {
        if !p.permitted.contains(cap) || !p.inheritable.contains(cap) {
            skipped.push(cap.to_string());
            continue;
        }
        if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
            tracing::warn!("process.capabilities.ambient: raising {cap}: {e}");
        }
    }
    if !skipped.is_empty() {
        skipped.sort();
        tracing::warn!(
            "process.capabilities.ambient: not raised (not both permitted and inheritable): {}",
            skipped.join(", ")
        );
    }
    Ok(())
}
