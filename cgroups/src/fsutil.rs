//! Reading and writing cgroup files: one `write(2)` per value, no create, no truncate, and every
//! error naming the file.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `value` to `dir/file` in a single `write(2)`, as the kernel parses each write whole.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    let err = |source| Error::Write {
        path: path.clone(),
        value: value.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&path)
        .map_err(err)?;
    let n = f.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        )));
    }
    Ok(())
}

/// Reads `dir/file` whole.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| Error::Io {
        op: "read",
        path,
        source,
    })
}

/// Reads `dir/file`, `None` when it does not exist.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `dir/file` exists.
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Parses a single number; `max` reads as `u64::MAX`.
pub(crate) fn parse_u64(dir: &Path, file: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| Error::Parse {
        path: dir.join(file),
        reason: format!("expected a number, found {t:?}"),
    })
}

/// Reads a single number; `max` reads as `u64::MAX`.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let text = read(dir, file)?;
    parse_u64(dir, file, &text)
}

/// Reads a single number, `None` when the file does not exist.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    match read_opt(dir, file)? {
        Some(text) => parse_u64(dir, file, &text).map(Some),
        None => Ok(None),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events, ...). Values that are not
/// numbers are skipped.
pub(crate) fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let key = it.next()?;
            let value = it.next()?;
            let value = if value == "max" {
                u64::MAX
            } else {
                value.parse().ok()?
            };
            Some((key.to_owned(), value))
        })
        .collect()
}

/// Reads a keyed file; an absent file reads as empty.
pub(crate) fn read_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    Ok(read_opt(dir, file)?
        .map(|t| parse_keyed(&t))
        .unwrap_or_default())
}

/// The pids in `dir/cgroup.procs`.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>> {
    let text = read(dir, "cgroup.procs")?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| Error::Parse {
                path: dir.join("cgroup.procs"),
                reason: format!("not a pid: {l:?}"),
            })
        })
        .collect()
}

/// The pids in `dir` and every cgroup below it (a container may create sub-cgroups).
pub(crate) fn read_procs_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut out = read_procs(dir)?;
    for sub in subdirs(dir)? {
        match read_procs_recursive(&sub) {
            Ok(p) => out.extend(p),
            // A sub-cgroup removed while we walk.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The child cgroup directories of `dir`.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let rd = berth_sys::fs::read_dir_if_exists(dir).map_err(|source| Error::Io {
        op: "read directory",
        path: dir.to_owned(),
        source,
    })?;
    let Some(rd) = rd else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_parsing_skips_junk_and_reads_max() {
        let m = parse_keyed("anon 10\nfile 20\nbogus\nlimit max\nname text\n");
        assert_eq!(m.get("anon"), Some(&10));
        assert_eq!(m.get("file"), Some(&20));
        assert_eq!(m.get("limit"), Some(&u64::MAX));
        assert!(!m.contains_key("bogus"));
        assert!(!m.contains_key("name"));
    }

    #[test]
    fn numbers_and_max() {
        let d = Path::new("/x");
        assert_eq!(parse_u64(d, "f", "12\n").unwrap(), 12);
        assert_eq!(parse_u64(d, "f", "max\n").unwrap(), u64::MAX);
        let e = parse_u64(d, "f", "x").unwrap_err().to_string();
        assert!(e.contains("/x/f"), "{e}");
    }
}
