//! The v2 code paths that a hybrid host can run: its cgroup2 hierarchy has no resource
//! controllers, but it has `cgroup.freeze`, `cgroup.kill`, `cpu.stat`, and device BPF programs
//! attached there filter device access. The crate is shown a v2-only view whose cgroup2 mount
//! is a `berth-test-*` directory of the real unified hierarchy, so nothing above it is touched.
//! Skipped (passing) on hosts that are not hybrid, and without root.

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_cgroups::{devices, Error, Mode};
use common::{eventually, unique, Action, TestCg};

/// A `berth-test-*` directory in the real unified hierarchy, removed on drop.
struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The real cgroup2 mount point of a hybrid host.
fn unified_mount() -> Option<PathBuf> {
    if common::host_mode()? != Mode::Hybrid {
        eprintln!("skipped: not a hybrid host");
        return None;
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if !post.starts_with("cgroup2 ") {
            return None;
        }
        pre.split(' ').nth(4).map(PathBuf::from)
    })
}

/// A v2-only view rooted at a fresh `berth-test-*` directory; the container is `/c` in it.
fn view(tag: &str) -> Option<(Root, TestCg)> {
    let mount = unified_mount()?;
    let root = mount.join(unique(tag));
    std::fs::create_dir(&root).expect("mkdir test root");
    let root = Root(root);
    let mi = format!("1 0 0:99 / {} rw - cgroup2 cgroup2 rw\n", root.0.display());
    let t = TestCg::create_in(&mi, "0::/\n", "/c");
    assert_eq!(t.cg.mode(), Mode::Unified);
    Some((root, t))
}

#[test]
fn freeze_via_cgroup_freeze() {
    let Some((_root, t)) = view("v2freeze") else {
        return;
    };
    let _spinner = t.freeze_and_thaw(Duration::from_millis(200), || {
        let events = t.read_leaf("cgroup.events");
        assert!(events.contains("frozen 1"), "{events}");
    });
    // A paused container is still killed by delete.
    t.cg.freeze().unwrap();
    t.cg.destroy().unwrap();
    assert!(!t.leaf().exists());
}

#[test]
fn cgroup_kill_kills_everything() {
    let Some((_root, t)) = view("v2kill") else {
        return;
    };
    t.run_orphans(6);
    assert!(t.leaf().join("cgroup.kill").exists());
    t.cg.signal_all(libc::SIGKILL).unwrap();
    eventually("empty", || t.cg.pids().unwrap().is_empty());
    eventually("populated 0", || {
        t.read_leaf("cgroup.events").contains("populated 0")
    });
}

#[test]
fn delete_with_running_processes_and_subcgroups() {
    let Some((root, t)) = view("v2delete") else {
        return;
    };
    let _child = t.run(&Action::Sleep);
    // The container made a cgroup of its own below ours.
    std::fs::create_dir(t.leaf().join("inner")).unwrap();
    t.cg.destroy().unwrap();
    assert!(!t.leaf().exists());
    assert!(root.0.exists(), "the parent we did not create is kept");
}

fn open_in(t: &TestCg, path: &str, flags: i32) -> i32 {
    t.run_to_exit(&Action::Open(CString::new(path).unwrap(), flags))
}

#[test]
fn device_program_filters_and_is_replaced_on_update() {
    let Some((_root, t)) = view("v2dev") else {
        return;
    };
    // Loads and attaches the device program.
    t.apply(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#);
    assert_eq!(devices::attached_programs(t.leaf()).unwrap(), 1);
    assert_eq!(open_in(&t, "/dev/kmsg", libc::O_RDONLY), libc::EPERM);
    assert_eq!(open_in(&t, "/dev/null", libc::O_RDWR), 0);
    assert_eq!(open_in(&t, "/dev/zero", libc::O_RDONLY), 0);
    // Block devices are denied (e.g. the disk).
    if let Some(disk) = ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/loop0"]
        .into_iter()
        .find(|d| Path::new(d).exists())
    {
        assert_eq!(open_in(&t, disk, libc::O_RDONLY), libc::EPERM, "{disk}");
    }
    // update: read-only /dev/kmsg.
    t.apply(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}]}"#,
    );
    assert_eq!(
        devices::attached_programs(t.leaf()).unwrap(),
        1,
        "old program detached"
    );
    assert_eq!(open_in(&t, "/dev/kmsg", libc::O_RDONLY), 0);
    assert_eq!(open_in(&t, "/dev/kmsg", libc::O_WRONLY), libc::EPERM);
    // Allow-all with one deny.
    t.apply(
        r#"{"devices": [{"allow": true, "access": "rwm"},
                        {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rw"}]}"#,
    );
    assert_eq!(open_in(&t, "/dev/kmsg", libc::O_WRONLY), 0);
    // /dev/zero (1:5) is re-allowed by the defaults appended after the config, as in runc.
    assert_eq!(open_in(&t, "/dev/zero", libc::O_RDONLY), 0);
}

#[test]
fn controllers_not_enabled_are_reported() {
    let Some((_root, t)) = view("v2unsup") else {
        return;
    };
    if t.controllers().iter().any(|c| c == "memory") {
        return;
    }
    let e = t.refused(r#"{"memory": {"limit": 1048576}}"#, "cgroup.controllers");
    assert!(matches!(e, Error::UnsupportedResource { .. }), "{e}");
    assert!(e.to_string().contains("memory"), "{e}");
    t.refused(r#"{"unified": {"memory.high": "10M"}}"#, "unified");
    let e = t.apply_err(r#"{"unified": {"cgroup.procs": "1"}}"#);
    assert!(matches!(e, Error::InvalidResource { .. }), "{e}");
    // A harmless core file is allowed.
    t.apply(r#"{"unified": {"cgroup.max.descendants": "5"}}"#);
    assert_eq!(t.read_leaf("cgroup.max.descendants"), "5");
    t.refused(
        r#"{"cpu": {"realtimeRuntime": 1000}}"#,
        "cpu.realtimeRuntime",
    );
    t.refused(r#"{"network": {"classID": 1}}"#, "network");
}

#[test]
fn hugetlb_v2_when_the_host_offers_it() {
    let Some((_root, t)) = view("v2huge") else {
        return;
    };
    let limits = r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#;
    if t.controllers().iter().any(|c| c == "hugetlb") {
        t.apply(limits);
        assert_eq!(t.read_leaf("hugetlb.2MB.max"), "4194304");
        let stats = t.cg.stats().unwrap();
        assert!(stats.hugetlb.contains_key("2MB"), "{:?}", stats.hugetlb);
        t.refused(
            r#"{"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}"#,
            "hugepageLimits[0]",
        );
    } else {
        t.refused(limits, "hugepageLimits");
    }
}

#[test]
fn stats_from_cpu_stat() {
    let Some((_root, t)) = view("v2stats") else {
        return;
    };
    let child = t.run(&Action::Burn(200));
    eventually("the burn to finish", || child.state() == 'S');
    let s = t.cg.stats().unwrap();
    assert!(s.cpu.usage.total >= 100_000_000, "{:?}", s.cpu);
    assert!(s.cpu.usage.user > 0);
    assert_eq!(t.cg.oom_kills().unwrap(), 0);
    let fd = t.cg.unified_dir_fd().unwrap().expect("a unified dir");
    drop(fd);
}
