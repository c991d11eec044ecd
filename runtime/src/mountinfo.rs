//! `/proc/self/mountinfo` parsing, used to find the host's cgroup hierarchies.

use std::io;
use std::path::PathBuf;

/// One line of mountinfo, with the fields berth uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount point (octal escapes decoded).
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Super-block options minus `rw`/`ro` (for cgroup v1: the controllers, e.g. `cpu` or `name=systemd`).
    pub options: String,
}

/// Parses one mountinfo line; `None` for a malformed one.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut r = right.split(' ');
    let fstype = r.next()?.to_string();
    let _source = r.next()?;
    let super_opts = r.next().unwrap_or_default();
    let options = super_opts
        .split(',')
        .filter(|o| !matches!(*o, "rw" | "ro" | ""))
        .collect::<Vec<_>>()
        .join(",");
    Some(MountInfo {
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype,
        options,
    })
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        let value = octal.map(|d| d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')));
        if let (b'\\', Some(v @ 0..=255)) = (b[i], value) {
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a whole mountinfo document, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// The cgroup (v1 and v2) mounts of this mount namespace.
pub fn cgroup_hierarchies() -> io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse(&text)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect())
}

/// Where the cgroup2 hierarchy is mounted, if anywhere.
pub fn cgroup2_mount_point() -> Option<PathBuf> {
    cgroup_hierarchies()
        .ok()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.mount_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_lines() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    50 1 0:40 / /mnt/with\\040space rw shared:1 - tmpfs tmpfs rw\n\
                    garbage\n";
        let m = parse(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].options, "cpu");
        assert_eq!(m[1].options, "name=systemd");
        assert_eq!(m[2].fstype, "cgroup2");
        assert_eq!(m[3].mount_point, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn out_of_range_octal_escapes_stay_literal() {
        // Found by the mountinfo fuzz target: "\\777" overflowed a u8.
        let m = parse_line("1 2 0:1 / /a\\777b rw - tmpfs tmpfs rw").unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/a\\777b"));
        let _ = parse("\\777 \\ \\9 - x");
    }

    #[test]
    fn reads_this_host() {
        assert!(!parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()).is_empty());
    }
}
