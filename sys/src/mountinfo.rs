//! The one parser of `/proc/<pid>/mountinfo` (proc(5)): every field of a line, octal escapes
//! decoded. It never panics: a malformed line is skipped (or `None` from [`parse_line`]).
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```

use std::io;
use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// (1) Unique id of the mount.
    pub mount_id: u32,
    /// (2) Id of the parent mount (itself for the root of the namespace's tree).
    pub parent_id: u32,
    /// (3) Major device number of the filesystem.
    pub major: u32,
    /// (3) Minor device number of the filesystem.
    pub minor: u32,
    /// (4) The directory of the filesystem that forms the root of this mount (for a cgroup
    /// mount: the cgroup path it shows).
    pub root: PathBuf,
    /// (5) Mount point, relative to the process's root.
    pub mount_point: PathBuf,
    /// (6) Per-mount options (`rw,nosuid,relatime`).
    pub mount_options: String,
    /// (7) Optional fields (`shared:1`, `master:2`, ...), possibly none.
    pub optional_fields: Vec<String>,
    /// (9) Filesystem type (`ext4`, `cgroup2`, `fuse.sshfs`).
    pub fstype: String,
    /// (10) Mount source (device or `none`).
    pub source: String,
    /// (11) Per-superblock options (for cgroup v1: the controllers, e.g. `rw,cpu`); may be
    /// empty.
    pub super_options: String,
}

impl MountInfo {
    /// The superblock options without `rw`/`ro` (cgroup v1: the controllers, such as `cpu`
    /// or `name=systemd`), comma-separated.
    pub fn fs_options(&self) -> String {
        self.super_options
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro" | ""))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether the superblock options include `opt` (e.g. a cgroup v1 controller).
    pub fn has_super_option(&self, opt: &str) -> bool {
        self.super_options.split(',').any(|o| o == opt)
    }
}

/// Parses one mountinfo line; `None` for a malformed one.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let mut fields = line.split(' ');
    let mount_id = fields.next()?.parse().ok()?;
    let parent_id = fields.next()?.parse().ok()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let (major, minor) = (major.parse().ok()?, minor.parse().ok()?);
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let mount_options = fields.next()?.to_owned();
    let mut optional_fields = Vec::new();
    loop {
        match fields.next()? {
            "-" => break,
            f => optional_fields.push(f.to_owned()),
        }
    }
    let fstype = unescape(fields.next()?);
    let source = unescape(fields.next()?);
    let super_options = fields.next().map(unescape).unwrap_or_default();
    Some(MountInfo {
        mount_id,
        parent_id,
        major,
        minor,
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        mount_options,
        optional_fields,
        fstype,
        source,
        super_options,
    })
}

/// Parses a whole mountinfo document, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read_self() -> io::Result<Vec<MountInfo>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a backslash). A
/// backslash not followed by three octal digits of a byte value stays literal.
pub fn unescape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_field() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!((m.mount_id, m.parent_id, m.major, m.minor), (36, 35, 98, 0));
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert_eq!(m.mount_options, "rw,noatime");
        assert_eq!(m.optional_fields, ["master:1", "shared:7"]);
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(m.super_options, "rw,errors=continue");
        assert_eq!(m.fs_options(), "errors=continue");
        assert!(m.has_super_option("rw") && !m.has_super_option("errors"));
    }

    #[test]
    fn parses_cgroup_lines() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    50 1 0:40 / /mnt/with\\040space rw shared:1 - tmpfs tmpfs rw\n\
                    51 1 0:41 / /no/super/options rw - tmpfs tmpfs\n\
                    garbage\n";
        let m = parse(text);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].fs_options(), "cpu");
        assert_eq!(m[1].fs_options(), "name=systemd");
        assert_eq!(m[2].fstype, "cgroup2");
        assert_eq!(m[3].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[4].super_options, "");
    }

    #[test]
    fn out_of_range_octal_escapes_stay_literal() {
        // Found by the mountinfo fuzz target: "\\777" overflowed a u8.
        let m = parse_line("1 2 0:1 / /a\\777b rw - tmpfs tmpfs rw").unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/a\\777b"));
        assert_eq!(unescape("\\134\\12\\"), "\\\\12\\");
        let _ = parse("\\777 \\ \\9 - x");
    }

    #[test]
    fn short_and_garbage_lines_are_skipped() {
        for line in [
            "",
            "-",
            " - ",
            "x - y",
            "1 2 - cgroup2 cgroup2 rw",
            "1 2 0:1 / /p - cgroup2 cgroup2 rw",
            "1 2 0:1 / /p rw",
            "1 2 0:1 / /p rw shared:1",
            "1 2 0:1 / /p rw -",
            "1 2 0:1 / /p rw - tmpfs",
            "a 2 0:1 / /p rw - tmpfs tmpfs rw",
            "1 2 01 / /p rw - tmpfs tmpfs rw",
            "1 2 0:x / /p rw - tmpfs tmpfs rw",
            "99999999999 2 0:1 / /p rw - tmpfs tmpfs rw",
            "\u{0}\u{ffff} \\\\\\ - -",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn reads_this_host() {
        let all = read_self().unwrap();
        assert!(!all.is_empty());
        assert!(all.iter().any(|m| m.mount_point == Path::new("/")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_on_near_mountinfo(
            fields in proptest::collection::vec("[0-9:/ \\\\a-z,-]{0,12}", 0..14)
        ) {
            let _ = parse(&fields.join(" "));
        }
    }
}
