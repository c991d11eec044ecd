//! The container's cgroup: where it lives in every hierarchy, creating it, joining it and
//! removing what we created.

use std::fs::{self, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::hierarchy::{self, Kind, Mode};
use crate::path;

/// Where a container's cgroups live. Serialisable, so that later commands (delete, pause,
/// update, kill --all, ps, events) rebuild it from the container's state file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// The host's layout when the cgroup was resolved.
    pub(crate) mode: Mode,
    /// `linux.cgroupsPath` as resolved (absolute, or relative to the runtime's own cgroup).
    pub(crate) path: PathBuf,
    /// One entry per hierarchy the container joins.
    pub(crate) hierarchies: Vec<Hierarchy>,
}

/// The container's directory in one hierarchy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// v1 (with its controllers) or v2.
    pub kind: Kind,
    /// Where the hierarchy is mounted.
    pub mount_point: PathBuf,
    /// The container's cgroup directory.
    pub dir: PathBuf,
    /// The directories `create` made, outermost first (the leaf last, if we made it).
    #[serde(default)]
    pub created: Vec<PathBuf>,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        match &self.kind {
            Kind::V1 { controllers } => controllers.iter().any(|c| c == controller),
            Kind::V2 => false,
        }
    }
}

/// How long `destroy` waits for a cgroup to empty before giving up.
const DESTROY_ATTEMPTS: u32 = 40;

impl Cgroup {
    /// Resolves `linux.cgroupsPath` for this host: absolute, or relative to berth's own
    /// cgroup (per hierarchy, placed as runc's cgroupfs drivers do: see
    /// [`path::relative_base`]); `None` or empty gives `/berth/<id>`. A systemd
    /// `slice:prefix:name` path is a relative path of one component, as with runc without
    /// `--systemd-cgroup`. The layout (v1, hybrid or v2) comes from `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`. Nothing is created.
    pub fn resolve(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
        let read = |p: &str| {
            fs::read_to_string(p).map_err(|source| Error::Io {
                op: "read",
                path: p.into(),
                source,
            })
        };
        Self::resolve_in(
            &read("/proc/self/mountinfo")?,
            &read("/proc/self/cgroup")?,
            cgroups_path,
            id,
        )
    }

    /// [`Cgroup::resolve`] from given texts of `/proc/self/mountinfo` and `/proc/self/cgroup`
    /// (for tests and harnesses that present a chosen view of the host).
    pub fn resolve_in(
        mountinfo: &str,
        proc_self_cgroup: &str,
        cgroups_path: Option<&Path>,
        id: &str,
    ) -> Result<Cgroup> {
        let requested = path::parse(cgroups_path, id)?;
        let (mode, found) = hierarchy::discover(mountinfo, proc_self_cgroup)?;
        let hierarchies = found
            .into_iter()
            .map(|f| {
                let cg = requested.in_hierarchy(&path::relative_base(&f.kind, mode, &f.own));
                Hierarchy {
                    dir: f.dir_of(&cg),
                    kind: f.kind,
                    mount_point: f.mount_point,
                    created: Vec::new(),
                }
            })
            .collect();
        Ok(Cgroup {
            mode,
            path: requested.as_path().to_owned(),
            hierarchies,
        })
    }

    /// The host layout this cgroup was resolved for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The resolved `linux.cgroupsPath` (for the state's `cgroupsPath`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container's directory in every hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.hierarchies.iter().map(|h| h.dir.as_path())
    }

    /// The v2 (unified) hierarchy, on hybrid and v2 hosts.
    pub(crate) fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.kind == Kind::V2)
    }

    /// The directory holding `controller`'s files (`"memory"`, `"cpu"`, ...): the unified one
    /// on a v2 host, else the v1 hierarchy the controller is mounted in, if it is.
    pub fn controller_dir(&self, controller: &str) -> Option<&Path> {
        if self.mode == Mode::Unified {
            return self.unified().map(|h| h.dir.as_path());
        }
        self.hierarchies
            .iter()
            .find(|h| h.has(controller))
            .map(|h| h.dir.as_path())
    }

    /// Makes the container's cgroup in every hierarchy, with any missing parents (remembered as
    /// ours, so that [`Cgroup::destroy`] removes them and nothing else). On v2, every
    /// controller a parent offers is enabled in its `cgroup.subtree_control`; on v1, empty
    /// `cpuset.cpus`/`cpuset.mems` of new cpusets are filled from their parent. A pre-existing
    /// leaf is accepted only if empty. On failure, what this call created is removed again.
    pub fn create(&mut self) -> Result<()> {
        let before: Vec<usize> = self.hierarchies.iter().map(|h| h.created.len()).collect();
        let res = self.create_all();
        if res.is_err() {
            for (h, n) in self.hierarchies.iter_mut().zip(before) {
                for d in h.created.drain(n..).rev() {
                    let _ = fs::remove_dir(&d);
                }
            }
        }
        res
    }

    fn create_all(&mut self) -> Result<()> {
        let mode = self.mode;
        for h in &mut self.hierarchies {
            let chain = chain(&h.mount_point, &h.dir);
            mkdir_chain(&chain, &mut h.created)?;
            match &h.kind {
                Kind::V2 if mode == Mode::Unified => {
                    let parents = chain.split_last().map_or(&[][..], |(_, p)| p);
                    for parent in std::iter::once(&h.mount_point).chain(parents) {
                        enable_controllers(parent);
                    }
                    if let Some(t) = fsutil::read_opt(&h.dir, "cgroup.type")? {
                        if t.trim() == "domain invalid" {
                            return Err(Error::InvalidPath {
                                path: h.dir.display().to_string(),
                                reason: "the cgroup is \"domain invalid\" (its parent holds \
                                         processes; v2 forbids controllers there)"
                                    .to_owned(),
                            });
                        }
                    }
                }
                Kind::V1 { controllers } if controllers.iter().any(|c| c == "cpuset") => {
                    for d in &chain {
                        crate::resources::cpuset::inherit_parent(d)?;
                    }
                }
                _ => {}
            }
            if h.created.last().is_none_or(|d| *d != h.dir) {
                let count = fsutil::read_procs(&h.dir)?.len();
                if count > 0 {
                    return Err(Error::NotEmpty {
                        path: h.dir.clone(),
                        count,
                    });
                }
            }
        }
        Ok(())
    }

    /// Moves `pid` into every hierarchy: `cgroup.procs` of each v1 controller's directory and
    /// of the unified one. (After a clone3 `CLONE_INTO_CGROUP` into
    /// [`Cgroup::unified_dir_fd`] on a hybrid host the v1 hierarchies still need this.)
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for h in &self.hierarchies {
            fsutil::write(&h.dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves `pid` into sub-cgroups of the container's (`exec --cgroup`): in each hierarchy,
    /// the sub-path given for one of its v1 controllers, else `default`, else the container's
    /// own directory. Sub-paths are relative, may not climb out (`..`), and must exist.
    pub fn add_pid_to_sub(
        &self,
        pid: i32,
        default: Option<&Path>,
        per_controller: &[(String, PathBuf)],
    ) -> Result<()> {
        let mut used = vec![false; per_controller.len()];
        for h in &self.hierarchies {
            let pick = per_controller
                .iter()
                .enumerate()
                .find(|(_, (c, _))| h.has(c))
                .map(|(i, (_, p))| {
                    used[i] = true;
                    p.as_path()
                });
            let dir = match pick.or(default) {
                Some(sub) => {
                    let clean = sub
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                    if !clean {
                        return Err(Error::InvalidPath {
                            path: sub.display().to_string(),
                            reason: "a sub-cgroup is a relative path without `..`".into(),
                        });
                    }
                    let dir = h.dir.join(sub);
                    if !dir.is_dir() {
                        return Err(Error::Io {
                            op: "find sub-cgroup",
                            path: dir,
                            source: std::io::Error::from_raw_os_error(libc::ENOENT),
                        });
                    }
                    dir
                }
                None => h.dir.clone(),
            };
            fsutil::write(&dir, "cgroup.procs", &pid.to_string())?;
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(Error::InvalidPath {
                path: per_controller[i].1.display().to_string(),
                reason: format!(
                    "no hierarchy of this host has the {} controller",
                    per_controller[i].0
                ),
            });
        }
        Ok(())
    }

    /// [`Cgroup::add_pid`] for a process that clone3 `CLONE_INTO_CGROUP` already put into the
    /// unified directory: only the v1 hierarchies are written. Skipping the redundant v2 write
    /// matters: a cgroup.procs write may wait a whole RCU grace period (over 10 ms on an idle
    /// machine).
    pub fn add_cloned_pid(&self, pid: i32) -> Result<()> {
        let unified = self.unified().map(|h| h.dir.clone());
        for h in self
            .hierarchies
            .iter()
            .filter(|h| Some(&h.dir) != unified.as_ref())
        {
            fsutil::write(&h.dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// An `O_PATH | O_DIRECTORY` descriptor of the unified (v2) directory, for clone3's
    /// `CLONE_INTO_CGROUP`; `None` on a v1-only host.
    pub fn unified_dir_fd(&self) -> Result<Option<OwnedFd>> {
        let Some(h) = self.unified() else {
            return Ok(None);
        };
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&h.dir)
            .map_err(|source| Error::Io {
                op: "open",
                path: h.dir.clone(),
                source,
            })?;
        Ok(Some(f.into()))
    }

    /// The directory whose `cgroup.procs` (with those below it) lists every process of the
    /// container: the unified one where there is one (all processes join it), else pids,
    /// freezer or any v1 hierarchy.
    pub(crate) fn procs_dir(&self) -> Option<&Path> {
        self.unified()
            .or_else(|| self.hierarchies.iter().find(|h| h.has("pids")))
            .or_else(|| self.hierarchies.iter().find(|h| h.has("freezer")))
            .or_else(|| self.hierarchies.first())
            .map(|h| h.dir.as_path())
    }

    /// Every process in the container's cgroup and the cgroups below it, in any hierarchy
    /// (so one that only made it into some v1 hierarchies is still found), sorted; empty once
    /// the cgroup is removed.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut all = Vec::new();
        for h in &self.hierarchies {
            all.extend(procs_of(&h.dir)?);
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    /// Processes in some v1 hierarchy of the container but not in its unified cgroup (which
    /// `cgroup.kill` reaches): normally none.
    pub(crate) fn stray_pids(&self) -> Result<Vec<i32>> {
        let Some(u) = self.unified() else {
            return self.pids();
        };
        let unified = procs_of(&u.dir)?;
        Ok(self
            .pids()?
            .into_iter()
            .filter(|p| !unified.contains(p))
            .collect())
    }

    /// Removes what [`Cgroup::create`] made: thaws and SIGKILLs remaining processes, waits
    /// (bounded retries) for the cgroup to empty, removes the leaf (and any cgroups the
    /// container made below it), then the parents *we* created, innermost first. A parent we
    /// did not create is never removed, and one still used by another container is left.
    /// Calling it again, or on a cgroup that is already gone, succeeds.
    pub fn destroy(&self) -> Result<()> {
        if !self.pids()?.is_empty() {
            if let Err(e) = self.signal_all(libc::SIGKILL) {
                tracing::warn!("destroy {}: {e}", self.path.display());
            }
        } else if self.is_frozen().unwrap_or(false) {
            let _ = self.thaw();
        }
        let mut first_err = None;
        for h in &self.hierarchies {
            let ours = h.created.last().is_some_and(|d| *d == h.dir);
            if !ours {
                continue;
            }
            if let Err(e) = self.remove_leaf(&h.dir) {
                first_err.get_or_insert(e);
                continue;
            }
            for d in h.created.iter().rev().skip(1) {
                match fs::remove_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    // Shared with another container: theirs to remove.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                        break;
                    }
                    Err(source) => {
                        first_err.get_or_insert(Error::Io {
                            op: "rmdir",
                            path: d.clone(),
                            source,
                        });
                        break;
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Removes `dir` and its sub-cgroups, retrying (and re-killing) while processes exit.
    fn remove_leaf(&self, dir: &Path) -> Result<()> {
        let mut delay = Duration::from_millis(5);
        let mut last = None;
        for attempt in 0..DESTROY_ATTEMPTS {
            match remove_tree(dir) {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
            if attempt % 8 == 7 {
                let _ = self.signal_all(libc::SIGKILL);
            }
            sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
        let pids = fsutil::read_procs_recursive(dir).unwrap_or_default();
        Err(last.unwrap_or_else(|| Error::Timeout {
            path: dir.to_owned(),
            what: format!("processes {pids:?} to exit"),
        }))
    }
}

/// The processes of the cgroup at `dir` and below; none when it does not exist.
fn procs_of(dir: &Path) -> Result<Vec<i32>> {
    match fsutil::read_procs_recursive(dir) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Vec::new()),
        r => r,
    }
}

/// The directories from just below `mount_point` down to `dir`.
fn chain(mount_point: &Path, dir: &Path) -> Vec<PathBuf> {
    let rel = dir.strip_prefix(mount_point).unwrap_or(Path::new(""));
    let mut cur = mount_point.to_owned();
    rel.components()
        .map(|c| {
            cur.push(c);
            cur.clone()
        })
        .collect()
}

/// mkdir every missing directory of `chain`, recording the ones made. A parent removed by a
/// concurrent `destroy` between two steps is made again.
fn mkdir_chain(chain: &[PathBuf], created: &mut Vec<PathBuf>) -> Result<()> {
    let mut i = 0;
    let mut retries = 0;
    while i < chain.len() {
        let d = &chain[i];
        match fs::create_dir(d) {
            Ok(()) => created.push(d.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !d.is_dir() {
                    return Err(Error::Io {
                        op: "mkdir",
                        path: d.clone(),
                        source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                    });
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && i > 0 && retries < 10 => {
                retries += 1;
                i -= 1;
                continue;
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "mkdir",
                    path: d.clone(),
                    source,
                })
            }
        }
        i += 1;
    }
    Ok(())
}

/// Enables in `dir/cgroup.subtree_control` every controller `dir/cgroup.controllers` offers
/// that is not enabled yet. Failures are left for `apply` to report for the field that needs
/// the controller.
fn enable_controllers(dir: &Path) {
    let avail = fsutil::read_opt(dir, "cgroup.controllers")
        .ok()
        .flatten()
        .unwrap_or_default();
    let enabled = fsutil::read_opt(dir, "cgroup.subtree_control")
        .ok()
        .flatten()
        .unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in avail.split_whitespace().filter(|c| !enabled.contains(c)) {
        if let Err(e) = fsutil::write(dir, "cgroup.subtree_control", &format!("+{c}")) {
            tracing::debug!("{e}");
        }
    }
}

/// Removes `dir` after its sub-directories, depth first. A missing `dir` is success.
fn remove_tree(dir: &Path) -> Result<()> {
    for sub in fsutil::subdirs(dir)? {
        remove_tree(&sub)?;
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(source) => Err(Error::Io {
            op: "rmdir",
            path: dir.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PC: &str = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n";

    #[test]
    fn resolve_relative_and_absolute() {
        let cg = Cgroup::resolve_in(MI, PC, Some(Path::new("sub/c")), "c").unwrap();
        assert_eq!(cg.mode(), Mode::Hybrid);
        let dirs: Vec<&Path> = cg.dirs().collect();
        assert!(dirs.contains(&Path::new("/sys/fs/cgroup/memory/process_api/abc/sub/c")));
        assert!(dirs.contains(&Path::new("/sys/fs/cgroup/cpu/sub/c")));
        assert!(dirs.contains(&Path::new("/sys/fs/cgroup/unified/sub/c")));
        let cg = Cgroup::resolve_in(MI, PC, None, "c").unwrap();
        assert_eq!(
            cg.controller_dir("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/berth/c"))
        );
        assert_eq!(cg.controller_dir("pids"), None);
        assert_eq!(
            cg.procs_dir(),
            Some(Path::new("/sys/fs/cgroup/unified/berth/c"))
        );
    }

    /// containerd's systemd-form path without `--systemd-cgroup`, placed as runc places it.
    #[test]
    fn systemd_form_path_is_relative() {
        let name = "test.slice:cri-containerd:c";
        let cg = Cgroup::resolve_in(MI, PC, Some(Path::new(name)), "c").unwrap();
        let dirs: Vec<&Path> = cg.dirs().collect();
        assert!(dirs.contains(&Path::new(
            "/sys/fs/cgroup/memory/process_api/abc/test.slice:cri-containerd:c"
        )));
        assert!(dirs.contains(&Path::new("/sys/fs/cgroup/cpu/test.slice:cri-containerd:c")));
        assert!(dirs.contains(&Path::new(
            "/sys/fs/cgroup/unified/test.slice:cri-containerd:c"
        )));
        // v2: next to the runtime's own cgroup (which holds processes), not below it.
        let v2 = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
        let cg = Cgroup::resolve_in(
            v2,
            "0::/system.slice/containerd.service\n",
            Some(Path::new(name)),
            "c",
        )
        .unwrap();
        assert_eq!(cg.mode(), Mode::Unified);
        assert_eq!(
            cg.controller_dir("memory"),
            Some(Path::new(
                "/sys/fs/cgroup/system.slice/test.slice:cri-containerd:c"
            ))
        );
        assert_eq!(cg.path(), Path::new(name));
    }

    #[test]
    fn short_mountinfo_lines_are_skipped_not_a_panic() {
        // A line with the " - " separator but fewer than five fields before it used to leave
        // the list of mount points one short: indexing it panicked (out of bounds).
        for junk in ["x - y\n", "1 2 - cgroup2 cgroup2 rw\n", " - \n", "-\n"] {
            let mi = format!("{junk}{MI}");
            let cg = Cgroup::resolve_in(&mi, PC, None, "c").unwrap();
            assert_eq!(cg.mode(), Mode::Hybrid, "{junk:?}");
            let mi = format!("{MI}{junk}");
            let cg = Cgroup::resolve_in(&mi, PC, None, "c").unwrap();
            assert_eq!(cg.mode(), Mode::Hybrid, "{junk:?}");
        }
    }

    #[test]
    fn state_round_trip() {
        let mut cg = Cgroup::resolve_in(MI, PC, None, "c").unwrap();
        cg.hierarchies[0].created = vec!["/sys/fs/cgroup/cpu/berth".into()];
        let json = serde_json::to_string(&cg).unwrap();
        let back: Cgroup = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cg);
    }

    #[test]
    fn chain_below_mount() {
        assert_eq!(
            chain(Path::new("/m"), Path::new("/m/a/b")),
            vec![PathBuf::from("/m/a"), PathBuf::from("/m/a/b")]
        );
    }
}
