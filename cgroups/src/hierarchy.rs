//! Finding the cgroup hierarchies of this process: v1 controllers, named v1 hierarchies and the
//! v2 (unified) hierarchy, from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

use berth_sys::mountinfo::MountInfo;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How this host's cgroups are laid out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// cgroup v1 only.
    Legacy,
    /// v1 controllers plus a cgroup2 hierarchy without them (joined, but no limits are set
    /// there, as runc does).
    Hybrid,
    /// cgroup v2 only: every limit goes to the unified hierarchy.
    Unified,
}

/// What a hierarchy is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A v1 hierarchy with its controllers (`cpu`, `memory`, ... or `name=systemd`).
    V1 {
        /// The controllers mounted together in this hierarchy.
        controllers: Vec<String>,
    },
    /// The v2 unified hierarchy.
    V2,
}

/// One hierarchy this process belongs to, as found in the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub kind: Kind,
    /// Where the hierarchy is mounted.
    pub mount_point: PathBuf,
    /// The cgroup path of the mount's root (field 4 of mountinfo).
    pub mount_root: PathBuf,
    /// This process's own cgroup path in the hierarchy (from /proc/self/cgroup).
    pub own: PathBuf,
}

impl Found {
    /// The directory of cgroup path `cg` (absolute in the hierarchy's namespace).
    pub fn dir_of(&self, cg: &Path) -> PathBuf {
        let rel = cg
            .strip_prefix(&self.mount_root)
            .or_else(|_| cg.strip_prefix("/"))
            .unwrap_or(cg);
        self.mount_point.join(rel)
    }
}

/// The cgroup mounts that are visible: a mount hidden by a later mount on the same point or on
/// one of its ancestors (say a cgroup2 mounted over a hybrid host's /sys/fs/cgroup in a private
/// mount namespace) is not a hierarchy this process can use. Malformed lines are skipped.
fn parse_mounts(mountinfo: &str) -> Vec<MountInfo> {
    let all = berth_sys::mountinfo::parse(mountinfo);
    all.iter()
        .enumerate()
        .filter(|(i, m)| {
            (m.fstype == "cgroup" || m.fstype == "cgroup2")
                && !all[i + 1..]
                    .iter()
                    .any(|later| m.mount_point.starts_with(&later.mount_point))
        })
        .map(|(_, m)| m.clone())
        .collect()
}

/// Picks, among the mounts of one hierarchy, one whose root contains our own cgroup.
fn pick<'a>(candidates: impl Iterator<Item = &'a MountInfo>, own: &Path) -> Option<&'a MountInfo> {
    let all: Vec<&MountInfo> = candidates.collect();
    all.iter()
        .copied()
        .find(|m| own.starts_with(&m.root))
        .or_else(|| all.first().copied())
}

/// Finds the hierarchies of this process and the host's mode from the text of
/// `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub(crate) fn discover(mountinfo: &str, proc_cgroup: &str) -> Result<(Mode, Vec<Found>)> {
    let mounts = parse_mounts(mountinfo);
    let mut found = Vec::new();
    let mut has_v1 = false;
    let mut has_v2 = false;
    for line in proc_cgroup.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Parse {
                path: "/proc/self/cgroup".into(),
                reason: format!("bad line {line:?}"),
            });
        };
        let own = PathBuf::from(path);
        if id == "0" && ctrls.is_empty() {
            if let Some(m) = pick(mounts.iter().filter(|m| m.fstype == "cgroup2"), &own) {
                has_v2 = true;
                found.push(Found {
                    kind: Kind::V2,
                    mount_point: m.mount_point.clone(),
                    mount_root: m.root.clone(),
                    own,
                });
            }
            continue;
        }
        let controllers: Vec<String> = ctrls
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        let m = pick(
            mounts.iter().filter(|m| {
                m.fstype == "cgroup" && controllers.iter().all(|c| m.has_super_option(c))
            }),
            &own,
        );
        if let Some(m) = m {
            if controllers.iter().any(|c| !c.starts_with("name=")) {
                has_v1 = true;
            }
            found.push(Found {
                kind: Kind::V1 { controllers },
                mount_point: m.mount_point.clone(),
                mount_root: m.root.clone(),
                own,
            });
        }
    }
    let mode = match (has_v1, has_v2) {
        (true, true) => Mode::Hybrid,
        (true, false) => Mode::Legacy,
        (false, true) => Mode::Unified,
        (false, false) => return Err(Error::NoCgroupFs),
    };
    if mode == Mode::Unified {
        // Named v1 hierarchies left next to a pure v2 host are not ours to join.
        found.retain(|f| f.kind == Kind::V2);
    }
    Ok((mode, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MI: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_PC: &str = "\
9:name=systemd:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_host() {
        let (mode, found) = discover(HYBRID_MI, HYBRID_PC).unwrap();
        assert_eq!(mode, Mode::Hybrid);
        assert_eq!(found.len(), 5);
        let mem = found
            .iter()
            .find(|f| {
                f.kind
                    == Kind::V1 {
                        controllers: vec!["memory".into()],
                    }
            })
            .unwrap();
        assert_eq!(mem.own, Path::new("/process_api/abc"));
        assert_eq!(
            mem.dir_of(Path::new("/berth/x")),
            Path::new("/sys/fs/cgroup/memory/berth/x")
        );
        assert!(found
            .iter()
            .any(|f| f.kind == Kind::V2 && f.mount_point == Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn comounted_and_unmounted_controllers() {
        let mi = "1 0 0:1 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let pc = "3:cpu,cpuacct:/a\n5:hugetlb:/\n";
        let (mode, found) = discover(mi, pc).unwrap();
        assert_eq!(mode, Mode::Legacy);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].mount_point, Path::new("/cg/cpu,cpuacct"));
    }

    #[test]
    fn unified_host_and_escapes() {
        let mi = "\
1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate
2 0 0:2 / /weird\\040dir rw - cgroup cgroup rw,name=foo
";
        let (mode, found) = discover(mi, "1:name=foo:/\n0::/user.slice/x\n").unwrap();
        assert_eq!(mode, Mode::Unified);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].own, Path::new("/user.slice/x"));
    }

    #[test]
    fn mount_root_prefix_is_stripped() {
        let mi = "1 0 0:1 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let (_, found) = discover(mi, "0::/kubepods/pod1/c\n").unwrap();
        assert_eq!(
            found[0].dir_of(Path::new("/kubepods/pod1/c/sub")),
            Path::new("/sys/fs/cgroup/c/sub")
        );
    }

    #[test]
    fn hierarchies_hidden_by_a_later_mount_are_ignored() {
        // A private mount namespace that mounted cgroup2 over the hybrid host's /sys/fs/cgroup.
        let mi =
            format!("{HYBRID_MI}50 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n");
        let (mode, found) = discover(&mi, HYBRID_PC).unwrap();
        assert_eq!(mode, Mode::Unified);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].mount_point, PathBuf::from("/sys/fs/cgroup"));
    }

    #[test]
    fn nothing_mounted() {
        assert!(matches!(discover("", "0::/\n"), Err(Error::NoCgroupFs)));
    }
}
