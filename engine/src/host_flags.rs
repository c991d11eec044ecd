//! Docker's command-line spellings of [`HostOptions`](crate::host::HostOptions): `-v SRC:DST[:ro]`, `--mount
//! type=bind|volume|tmpfs,...`, `-m 512m`, `--cpus 1.5`, and where the `--init` binary is.
//! Shared by the command line (`berth run`) and berthd (a `HostConfig.Binds` entry is a `-v`).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::{Bind, Tmpfs};

/// A `--mount`: a bind (of a host path or a named volume) or a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountFlag {
    /// `type=bind` or `type=volume`.
    Bind(Bind),
    /// `type=tmpfs`.
    Tmpfs(Tmpfs),
}

fn flag_error(flag: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::Flag {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Whether `name` is a volume name docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A bind's host side: an absolute path (made when missing, as docker does for `-v`; `..`
/// refused) or, for anything else, the named volume's directory from `volume`.
fn bind_source(
    flag: &str,
    spec: &str,
    src: &str,
    make_missing: bool,
    volume: &dyn Fn(&str) -> Result<PathBuf>,
) -> Result<PathBuf> {
    if !src.starts_with('/') {
        if !valid_volume_name(src) {
            return Err(flag_error(
                flag,
                spec,
                format!("{src:?} is neither an absolute path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"),
            ));
        }
        return volume(src);
    }
    let p = Path::new(src);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(flag_error(flag, spec, "\"..\" is not allowed in a source"));
    }
    if !p.exists() {
        if !make_missing {
            return Err(flag_error(
                flag,
                spec,
                format!("bind source path does not exist: {src}"),
            ));
        }
        std::fs::create_dir_all(p).map_err(|source| Error::Io {
            op: "creating the bind source",
            path: p.to_path_buf(),
            source,
        })?;
    }
    Ok(p.to_path_buf())
}

fn absolute_destination<'a>(flag: &str, spec: &str, dst: &'a str) -> Result<&'a str> {
    if dst.starts_with('/') {
        Ok(dst)
    } else {
        Err(flag_error(
            flag,
            spec,
            format!("destination {dst:?} must be an absolute path"),
        ))
    }
}

/// `-v SRC:DST[:OPTS]` (and a `HostConfig.Binds` entry): OPTS a comma list in which `ro`
/// makes the bind read-only. A missing absolute SRC is made; any other SRC names a volume,
/// whose directory `volume` gives.
pub fn parse_volume(spec: &str, volume: &dyn Fn(&str) -> Result<PathBuf>) -> Result<Bind> {
    let flag = "--volume";
    let (src, dst, opts) = match spec.split(':').collect::<Vec<_>>().as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => return Err(flag_error(flag, spec, "expected SRC:DST[:ro|rw]")),
    };
    let destination = absolute_destination(flag, spec, dst)?.to_string();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        // Every option docker takes; those berth has no use for (SELinux labels, propagation
        // other than private, macOS consistency, `nocopy`) are accepted and ignored.
        if !matches!(
            o,
            "ro" | "rw"
                | "z"
                | "Z"
                | "nocopy"
                | "private"
                | "rprivate"
                | "shared"
                | "rshared"
                | "slave"
                | "rslave"
                | "consistent"
                | "cached"
                | "delegated"
        ) {
            return Err(flag_error(flag, spec, format!("unknown option {o:?}")));
        }
    }
    Ok(Bind {
        source: bind_source(flag, spec, src, true, volume)?,
        destination,
        readonly: opts.split(',').any(|o| o == "ro"),
    })
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=N]
/// [,tmpfs-mode=OCTAL]` (`src`, `dst`/`destination`, `ro` as docker also takes them). A
/// bind's source must exist; a volume without a source is given `anonymous` as name.
pub fn parse_mount(spec: &str, volume: &dyn Fn(&str) -> Result<PathBuf>) -> Result<MountFlag> {
    let flag = "--mount";
    let (mut typ, mut source, mut target) = ("volume", None, None);
    let mut readonly = false;
    let mut tmpfs_options = Vec::new();
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => typ = value,
            "source" | "src" => source = Some(value),
            "target" | "dst" | "destination" => target = Some(value),
            "readonly" | "ro" => readonly = matches!(value, "" | "true" | "1"),
            "tmpfs-size" => tmpfs_options.push(format!("size={}", parse_bytes(flag, spec, value)?)),
            "tmpfs-mode" => {
                u32::from_str_radix(value, 8).map_err(|_| {
                    flag_error(flag, spec, format!("tmpfs-mode {value:?} is not octal"))
                })?;
                tmpfs_options.push(format!("mode={value}"));
            }
            _ => return Err(flag_error(flag, spec, format!("unknown field {key:?}"))),
        }
    }
    let target = target.ok_or_else(|| flag_error(flag, spec, "target is required"))?;
    let destination = absolute_destination(flag, spec, target)?.to_string();
    // A bind's source is an absolute path; a volume's, a name (`anonymous` when none).
    let (src, wrong) = match typ {
        "bind" => (
            source.ok_or_else(|| flag_error(flag, spec, "source is required for a bind"))?,
            !source.is_some_and(|s| s.starts_with('/')),
        ),
        "volume" => {
            let name = source.filter(|s| !s.is_empty()).unwrap_or("anonymous");
            (name, name.starts_with('/'))
        }
        _ => ("", false),
    };
    if wrong {
        return Err(flag_error(
            flag,
            spec,
            format!(
                "a {typ}'s source is {}",
                if typ == "bind" {
                    "an absolute path"
                } else {
                    "a name, not a path"
                }
            ),
        ));
    }
    match typ {
        "bind" | "volume" => Ok(MountFlag::Bind(Bind {
            source: bind_source(flag, spec, src, false, volume)?,
            destination,
            readonly,
        })),
        "tmpfs" => Ok(MountFlag::Tmpfs(Tmpfs {
            destination,
            options: tmpfs_options,
        })),
        other => Err(flag_error(
            flag,
            spec,
            format!("type {other:?}: bind, volume or tmpfs"),
        )),
    }
}

/// A size as docker takes it: a number with an optional `b`, `k`, `m`, `g` or `t` suffix
/// (binary multiples, either case).
fn parse_bytes(flag: &str, value: &str, s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(['b', 'k', 'm', 'g', 't']);
    let suffix = &lower[digits.len()..];
    let scale: f64 = match suffix {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(flag_error(
                flag,
                value,
                "a size is a number with b, k, m, g or t",
            ))
        }
    };
    let n: f64 = digits
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| flag_error(flag, value, "a size is a number with b, k, m, g or t"))?;
    let bytes = n * scale;
    // 2^63, exactly representable.
    if bytes >= 9_223_372_036_854_775_808.0 {
        return Err(flag_error(flag, value, "too large"));
    }
    Ok(bytes as i64)
}

/// `-m`/`--memory`: bytes.
pub fn parse_memory(s: &str) -> Result<i64> {
    parse_bytes("--memory", s, s)
}

/// `--cpus 1.5`: billionths of a CPU.
pub fn parse_cpus(s: &str) -> Result<i64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0 && *n < 1e6)
        .map(|n| (n * 1e9).round() as i64)
        .ok_or_else(|| flag_error("--cpus", s, "a positive number of CPUs, e.g. 1.5"))
}

/// The init binary for `--init`: `given`, else the first installed of catatonit,
/// docker-init and tini-static.
pub fn init_binary(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p.to_path_buf());
    }
    [
        "/usr/bin/catatonit",
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // the shape parse_volume takes
    fn volumes(name: &str) -> Result<PathBuf> {
        Ok(PathBuf::from("/volumes").join(name))
    }

    #[test]
    fn volumes_and_binds_as_docker_spells_them() {
        let tmp = tempfile::tempdir().unwrap();
        let made = tmp.path().join("made/here");
        let spec = format!("{}:/data:ro", made.display());
        let b = parse_volume(&spec, &volumes).unwrap();
        assert!(made.is_dir(), "a missing -v source is made");
        assert_eq!(b.destination, "/data");
        assert!(b.readonly);
        let b = parse_volume("cache:/cache", &volumes).unwrap();
        assert_eq!(b.source, Path::new("/volumes/cache"));
        assert!(!b.readonly);
        let b = parse_volume("cache:/cache:cached,rslave,nocopy", &volumes).unwrap();
        assert!(!b.readonly, "docker's other options are taken");
        for bad in ["/a", "/a:rel", "/a/../b:/x", "bad name:/x", "/a:/b:nosuch"] {
            let e = parse_volume(bad, &volumes).unwrap_err().to_string();
            assert!(e.contains("--volume") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn mounts_of_each_type() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().display().to_string();
        let m = parse_mount(
            &format!("type=bind,source={src},target=/x,readonly"),
            &volumes,
        );
        assert_eq!(
            m.unwrap(),
            MountFlag::Bind(Bind {
                source: tmp.path().to_path_buf(),
                destination: "/x".into(),
                readonly: true,
            })
        );
        let m = parse_mount("type=volume,src=v1,dst=/v", &volumes).unwrap();
        assert!(matches!(m, MountFlag::Bind(b) if b.source == Path::new("/volumes/v1")));
        let m = parse_mount(
            "type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770",
            &volumes,
        );
        assert_eq!(
            m.unwrap(),
            MountFlag::Tmpfs(Tmpfs {
                destination: "/t".into(),
                options: vec!["size=67108864".into(), "mode=1770".into()],
            })
        );
        for bad in [
            "type=bind,source=/no/such/dir/here,target=/x",
            "type=bind,target=/x",
            "type=tmpfs",
            "type=nfs,target=/x",
            "type=tmpfs,target=/t,color=red",
        ] {
            let e = parse_mount(bad, &volumes).unwrap_err().to_string();
            assert!(e.contains("--mount"), "{bad}: {e}");
        }
    }

    #[test]
    fn memory_and_cpus() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1m").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("two").is_err());
    }
}
