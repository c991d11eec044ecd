//! Loading `config.json` from a bundle: parse with field-precise errors, then validate.
//!
//! The fast path is a single streaming parse. Only when it fails inside a capability list
//! (an unknown capability name, which the spec says to warn about) is the document re-read
//! through a `serde_json::Value` with the unknown names dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::Value;

use crate::error::{Context, Error, Result};

/// Oldest and newest runtime-spec minor versions (major 1) that berth accepts.
const SUPPORTED_MINOR: std::ops::RangeInclusive<u64> = 0..=3;

/// Reads and validates `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
    parse(&bytes)
}

/// Parses and validates a config document.
pub fn parse(bytes: &[u8]) -> Result<Spec> {
    let spec = deserialize(bytes)?;
    validate(&spec)?;
    Ok(spec)
}

fn deserialize(bytes: &[u8]) -> Result<Spec> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, Spec>(&mut de) {
        Ok(spec) => {
            de.end()
                .map_err(|e| Error::config("(document)", e.to_string()))?;
            Ok(spec)
        }
        Err(e) if e.path().to_string().contains("capabilities") => {
            let mut value: Value = serde_json::from_slice(bytes)
                .map_err(|e| Error::config("(document)", e.to_string()))?;
            drop_unknown_capabilities(&mut value);
            serde_path_to_error::deserialize(value).map_err(path_error)
        }
        Err(e) => Err(path_error(e)),
    }
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let field = e.path().to_string();
    let inner = e.into_inner();
    let field = if field == "." {
        "(document)".into()
    } else {
        field
    };
    Error::config(field, inner.to_string())
}

/// Removes capability names that this build does not know, warning about each.
fn drop_unknown_capabilities(value: &mut Value) {
    let Some(caps) = value
        .pointer_mut("/process/capabilities")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut unknown: Vec<String> = Vec::new();
    for names in caps.values_mut() {
        if let Some(list) = names.as_array_mut() {
            list.retain(|name| {
                let known = name.as_str().is_some_and(|n| {
                    serde_json::from_value::<oci_spec::runtime::Capability>(Value::String(n.into()))
                        .is_ok()
                });
                if !known {
                    let name = name
                        .as_str()
                        .map_or_else(|| name.to_string(), str::to_owned);
                    if !unknown.contains(&name) {
                        unknown.push(name);
                    }
                }
                known
            });
        }
    }
    if !unknown.is_empty() {
        // runc's wording, which engines and test suites look for.
        tracing::warn!(
            "process.capabilities: ignoring unknown or unavailable capabilities: [{}]",
            unknown.join(" ")
        );
    }
}

/// Parses and validates an `exec --process` document (a runtime-spec `process` object).
pub fn parse_process(bytes: &[u8]) -> Result<oci_spec::runtime::Process> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let p: oci_spec::runtime::Process =
        serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    if p.args().as_ref().is_none_or(Vec::is_empty) {
        return Err(Error::config("args", "must name at least the program"));
    }
    if !p.cwd().is_absolute() {
        return Err(Error::config(
            "cwd",
            format!("{:?} is not an absolute path", p.cwd()),
        ));
    }
    Ok(p)
}

/// Parses an `update --resources` document (a runtime-spec `linux.resources` object).
pub fn parse_resources(bytes: &[u8]) -> Result<oci_spec::runtime::LinuxResources> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(path_error)
}

/// Parses "MAJOR.MINOR.PATCH[-pre]" and checks it is a version this runtime implements.
pub fn check_version(version: &str) -> Result<()> {
    let bad = || {
        Error::config(
            "ociVersion",
            format!("unsupported version {version:?}: berth supports 1.0.0 to 1.3.x"),
        )
    };
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(str::parse::<u64>);
    let (Some(Ok(major)), Some(Ok(minor)), Some(Ok(_patch)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if major != 1 || !SUPPORTED_MINOR.contains(&minor) {
        return Err(bad());
    }
    Ok(())
}

/// Checks what the schema alone cannot: required fields, absolute paths, coherent namespaces.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::config("root", "required on Linux"))?;
    if root.path().as_os_str().is_empty() {
        return Err(Error::config("root.path", "must not be empty"));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(Error::config(
                format!("mounts[{i}].destination"),
                format!("{:?} is not an absolute path", m.destination()),
            ));
        }
    }
    if let Some(process) = spec.process() {
        if process.args().as_ref().is_none_or(Vec::is_empty) {
            return Err(Error::config(
                "process.args",
                "must name at least the program",
            ));
        }
        if !process.cwd().is_absolute() {
            return Err(Error::config(
                "process.cwd",
                format!("{:?} is not an absolute path", process.cwd()),
            ));
        }
        let mut seen = Vec::new();
        for (i, r) in process.rlimits().iter().flatten().enumerate() {
            if seen.contains(&r.typ()) {
                return Err(Error::config(
                    format!("process.rlimits[{i}].type"),
                    format!("{:?} is given twice", r.typ()),
                ));
            }
            seen.push(r.typ());
            if r.soft() > r.hard() {
                return Err(Error::config(
                    format!("process.rlimits[{i}]"),
                    "soft limit is greater than the hard limit",
                ));
            }
        }
    }
    validate_hooks(spec)?;
    validate_lsm(spec)?;
    validate_linux(spec)
}

/// AppArmor and SELinux: this host has neither LSM. Like runc, a profile that cannot be applied
/// is an error (the container would run unconfined); a label on a host without SELinux is
/// ignored with a warning, as runc ignores it.
fn validate_lsm(spec: &Spec) -> Result<()> {
    match spec.process() {
        Some(p) => validate_process_lsm(p),
        None => Ok(()),
    }
}

/// [`validate`]'s LSM check for one process (also `exec`'s `--apparmor`/`--process-label`).
pub fn validate_process_lsm(p: &oci_spec::runtime::Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_ref().filter(|s| !s.is_empty()) {
        if !apparmor_enabled() {
            return Err(Error::config(
                "process.apparmorProfile",
                format!("profile {profile:?} given but AppArmor is not enabled on this host"),
            ));
        }
        return Err(Error::Unsupported(format!(
            "process.apparmorProfile: applying AppArmor profile {profile:?} is not implemented"
        )));
    }
    if let Some(label) = p.selinux_label().as_ref().filter(|s| !s.is_empty()) {
        tracing::warn!(
            "process.selinuxLabel {label:?} ignored: SELinux is not enabled on this host"
        );
    }
    Ok(())
}

/// Whether the AppArmor LSM is active.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn validate_hooks(spec: &Spec) -> Result<()> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let stages = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (stage, list) in stages {
        for (i, hook) in list.iter().flatten().enumerate() {
            if !hook.path().is_absolute() {
                return Err(Error::config(
                    format!("hooks.{stage}[{i}].path"),
                    format!("{:?} is not an absolute path", hook.path()),
                ));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(Error::config(
                    format!("hooks.{stage}[{i}].timeout"),
                    "must be greater than zero",
                ));
            }
        }
    }
    Ok(())
}

fn validate_linux(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(Error::config(
                format!("linux.namespaces[{i}].type"),
                format!("namespace {:?} is listed twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::config(
                    format!("linux.namespaces[{i}].path"),
                    format!("{p:?} is not an absolute path"),
                ));
            }
        }
    }
    let new_or_joined = |t| seen.contains(&t);
    let has_user = new_or_joined(LinuxNamespaceType::User);
    if !has_user
        && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
    {
        return Err(Error::config(
            "linux.uidMappings",
            "id mappings need a user namespace in linux.namespaces",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !new_or_joined(LinuxNamespaceType::Uts)
    {
        return Err(Error::config(
            "hostname",
            "setting the hostname needs a uts namespace in linux.namespaces",
        ));
    }
    if linux.time_offsets().is_some() && !new_or_joined(LinuxNamespaceType::Time) {
        return Err(Error::config(
            "linux.timeOffsets",
            "time offsets need a time namespace in linux.namespaces",
        ));
    }
    for (i, dev) in linux.devices().iter().flatten().enumerate() {
        if !dev.path().is_absolute() {
            return Err(Error::config(
                format!("linux.devices[{i}].path"),
                format!("{:?} is not an absolute path", dev.path()),
            ));
        }
    }
    for (key, list) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in list.iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(Error::config(
                    format!("{key}[{i}]"),
                    format!("{p:?} is not an absolute path"),
                ));
            }
        }
    }
    for (i, h) in linux
        .resources()
        .as_ref()
        .and_then(|r| r.hugepage_limits().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !valid_page_size(h.page_size()) {
            return Err(Error::config(
                format!("linux.resources.hugepageLimits[{i}].pageSize"),
                format!(
                    "{:?} is not a page size such as \"2MB\" or \"1GB\"",
                    h.page_size()
                ),
            ));
        }
    }
    Ok(())
}

/// `^[1-9][0-9]*[KMG]B$`, the schema's page size pattern.
fn valid_page_size(s: &str) -> bool {
    let Some(num) = s
        .strip_suffix("KB")
        .or_else(|| s.strip_suffix("MB"))
        .or_else(|| s.strip_suffix("GB"))
    else {
        return false;
    };
    !num.is_empty() && !num.starts_with('0') && num.bytes().all(|b| b.is_ascii_digit())
}

/// Resolves `root.path` against the bundle directory.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(extra: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.2.0","root":{{"path":"rootfs"}},"process":{{"cwd":"/","args":["sh"],"user":{{"uid":0,"gid":0}}}}{extra}}}"#
        )
    }

    /// [`minimal`] whose `process` also has `fields` (`"name":value`, comma-separated).
    fn with_process(fields: &str) -> String {
        minimal("").replace(r#""cwd":"/""#, &format!(r#""cwd":"/",{fields}"#))
    }

    /// Asserts that `doc` is refused with an error naming `field`.
    fn assert_rejected(doc: &str, field: &str) {
        let e = parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(field), "{field} not named: {e}");
    }

    #[test]
    fn accepts_supported_versions() {
        for v in [
            "1.0.0",
            "1.0.2-dev",
            "1.1.0",
            "1.2.1",
            "1.3.0",
            "1.3.7-rc.1",
        ] {
            check_version(v).unwrap();
        }
        for v in ["", "0.9.0", "2.0.0", "1.4.0", "1.0", "one", "1.0.0.0"] {
            let e = check_version(v).unwrap_err().to_string();
            assert!(e.contains("ociVersion"), "{e}");
        }
    }

    #[test]
    fn names_the_field_of_a_type_error() {
        assert_rejected(
            &minimal(r#","mounts":[{"destination":"/a","options":[1]}]"#),
            "mounts[0].options[0]",
        );
    }

    #[test]
    fn rejects_relative_mount_destination() {
        assert_rejected(
            &minimal(r#","mounts":[{"destination":"tmp","type":"tmpfs"}]"#),
            "mounts[0].destination",
        );
    }

    #[test]
    fn rejects_unknown_namespace() {
        assert_rejected(
            &minimal(r#","linux":{"namespaces":[{"type":"bogus"}]}"#),
            "linux.namespaces[0]",
        );
    }

    #[test]
    fn rejects_unknown_rlimit() {
        assert_rejected(
            &with_process(r#""rlimits":[{"type":"RLIMIT_BOGUS","hard":1,"soft":1}]"#),
            "process.rlimits[0]",
        );
    }

    #[test]
    fn unknown_capability_is_dropped_not_fatal() {
        let doc = with_process(r#""capabilities":{"bounding":["CAP_CHOWN","CAP_FUTURE"]}"#);
        let spec = parse(doc.as_bytes()).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn rejects_bad_json_and_missing_root() {
        assert!(parse(b"{").unwrap_err().to_string().contains("config.json"));
        let e = parse(br#"{"ociVersion":"1.0.0"}"#).unwrap_err().to_string();
        assert!(e.contains("root"), "{e}");
    }

    #[test]
    fn apparmor_profile_is_a_clear_error_here() {
        assert_rejected(
            &with_process(r#""apparmorProfile":"docker-default""#),
            "process.apparmorProfile",
        );
    }

    #[test]
    fn process_may_be_absent() {
        parse(br#"{"ociVersion":"1.0.0","root":{"path":"r"}}"#).unwrap();
    }
}
