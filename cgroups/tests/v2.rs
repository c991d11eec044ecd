//! The cgroup v2 suite: every v2 controller on real processes. It needs a v2-only host, which
//! the machines berth is built on are not, so `cgroups/vm/test-v2.sh` runs it in a VM (see
//! `cgroups/vm/README.md`); elsewhere it is skipped (passing). Kept focused: processes run
//! 15-25 times slower under TCG.

mod common;

use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_cgroups::{devices, Error, Mode};
use common::{eventually, resources, unique, Action, Child, TestCg};

fn v2_host() -> bool {
    match common::host_mode() {
        Some(Mode::Unified) => true,
        Some(_) => {
            eprintln!("skipped: not a cgroup v2-only host (run cgroups/vm/test-v2.sh)");
            false
        }
        None => false,
    }
}

/// A fresh container cgroup (`<berth-test-tag-…>/c`) on a v2-only host; `None` (the test is
/// skipped) elsewhere.
fn v2_cgroup(tag: &str) -> Option<TestCg> {
    v2_host().then(|| TestCg::create(&unique(tag), "c"))
}

#[test]
fn every_controller_is_enabled_in_nested_parents() {
    if !v2_host() {
        return;
    }
    let parent = unique("nest");
    let t = TestCg::create(&format!("{parent}/mid"), "c");
    let c = t.controllers();
    for want in ["cpu", "memory", "pids", "io", "cpuset"] {
        assert!(c.iter().any(|x| x == want), "{want} not enabled: {c:?}");
    }
    assert!(t.cg.unified_dir_fd().unwrap().is_some());
    // The mid level we created goes too; the default parent layout is /berth/<id>.
    t.cg.destroy().unwrap();
    assert!(!Path::new("/sys/fs/cgroup").join(&parent).exists());
}

#[test]
fn limits_are_written_and_read_back() {
    let Some(t) = v2_cgroup("limits") else {
        return;
    };
    t.cg.apply(&resources(
        r#"{
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0,
                "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "blockIO": {"weight": 500},
        "unified": {"memory.high": "60000000"}
    }"#,
    ))
    .expect("apply");
    assert_eq!(t.read_leaf("memory.max"), "67108864");
    assert_eq!(t.read_leaf("memory.low"), "33554432");
    if Path::new(t.dir("memory")).join("memory.swap.max").exists() {
        assert_eq!(
            t.read_leaf("memory.swap.max"),
            "67108864",
            "swap.max = swap - limit"
        );
    }
    assert_eq!(
        t.read_leaf("memory.high"),
        "59998208",
        "unified written (page-rounded)"
    );
    assert_eq!(t.read_leaf("cpu.weight"), "100", "1024 shares = weight 100");
    assert_eq!(t.read_leaf("cpu.max"), "50000 100000");
    assert_eq!(t.read_leaf("cpu.max.burst"), "1000");
    assert_eq!(t.read_leaf("cpuset.cpus"), "0");
    assert_eq!(t.read_leaf("cpuset.mems"), "0");
    assert_eq!(t.read_leaf("pids.max"), "42");
    let w = if Path::new(t.dir("memory")).join("io.bfq.weight").exists() {
        t.read_leaf("io.bfq.weight")
    } else {
        t.read_leaf("io.weight")
    };
    assert!(w.contains("500") || w.contains("4950"), "io weight: {w}");
    if t.controllers().iter().any(|c| c == "hugetlb") {
        t.apply(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#);
        assert_eq!(t.read_leaf("hugetlb.2MB.max"), "4194304");
    }
    // update: absent fields stay, checkBeforeUpdate refuses a limit below usage.
    t.apply(r#"{"memory": {"limit": 134217728}, "cpu": {"shares": 2}}"#);
    assert_eq!(t.read_leaf("memory.max"), "134217728");
    assert_eq!(t.read_leaf("memory.low"), "33554432");
    assert_eq!(t.read_leaf("cpu.weight"), "1");
    let child = t.run(&Action::Burn(1));
    eventually("the child's memory", || child.state() == 'S');
    t.refused(
        r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
        "checkBeforeUpdate",
    );
    let e = t.apply_err(r#"{"unified": {"nosuch.file": "1"}}"#);
    assert!(matches!(e, Error::UnsupportedResource { .. }), "{e}");
    t.refused(r#"{"cpu": {"realtimeRuntime": 5}}"#, "realtime");
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(t) = v2_cgroup("pids") else {
        return;
    };
    t.assert_pids_limit_stops_a_fork_loop(12);
}

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    let Some(t) = v2_cgroup("oom") else {
        return;
    };
    let s = t.assert_oom_killed(128 << 20, Duration::from_secs(120));
    assert_eq!(s.memory.usage.limit, 33_554_432);
    assert!(s.memory.usage.failcnt >= 1);
}

#[test]
fn freeze_kill_stats_and_delete() {
    let Some(t) = v2_cgroup("life") else {
        return;
    };
    t.apply(r#"{"pids": {"limit": 20}}"#);
    let _spinner = t.freeze_and_thaw(Duration::from_millis(300), || {});
    // Memory is charged where it is touched: a child that allocates after joining.
    let toucher = t.run(&Action::Burn(1));
    eventually("the allocation", || toucher.state() == 'S');
    let s = t.cg.stats().unwrap();
    assert!(
        s.cpu.usage.total > 0 && s.memory.usage.usage >= 8 << 20,
        "{s:?}"
    );
    assert_eq!(s.pids.current, 2);
    assert_eq!(s.pids.limit, 20);
    let _forker = t.run(&Action::ForkLoop(4));
    eventually("6 processes", || t.cg.pids().unwrap().len() >= 6);
    t.cg.signal_all(libc::SIGKILL).unwrap();
    eventually("cgroup.kill emptied it", || t.cg.pids().unwrap().is_empty());
    let dir = t.dir("memory").to_owned();
    t.cg.destroy().unwrap();
    assert!(!dir.exists() && !dir.parent().unwrap().exists());
}

/// `/dev/ram0` (block device 1:0) and a fresh container cgroup, on a v2-only host that has
/// that RAM disk; `None` (the test is skipped, saying why) otherwise.
fn ram_disk_cgroup(tag: &str) -> Option<(&'static str, TestCg)> {
    if !v2_host() {
        return None;
    }
    if !Path::new("/dev/ram0").exists() {
        eprintln!("skipped: no /dev/ram0 (modprobe brd)");
        return None;
    }
    Some(("/dev/ram0", TestCg::create(&unique(tag), "c")))
}

#[test]
fn device_program_blocks_disks_and_allows_configured_ones() {
    let Some((disk, t)) = ram_disk_cgroup("dev") else {
        return;
    };
    let open =
        |path: &str| t.run_to_exit(&Action::Open(CString::new(path).unwrap(), libc::O_RDONLY));
    t.apply(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#);
    assert_eq!(open(disk), libc::EPERM);
    assert_eq!(open("/dev/null"), 0);
    t.apply(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "b", "major": 1, "minor": 0, "access": "r"}]}"#,
    );
    assert_eq!(open(disk), 0);
    assert_eq!(devices::attached_programs(t.dir("memory")).unwrap(), 1);
}

#[test]
fn io_max_throttles_a_ram_disk() {
    let Some((disk, t)) = ram_disk_cgroup("io") else {
        return;
    };
    let timed = |bytes: usize| {
        let mut c = Child::spawn(&Action::ReadDirect(CString::new(disk).unwrap(), bytes));
        t.cg.add_pid(c.pid).unwrap();
        let start = Instant::now();
        c.go();
        assert_eq!(c.exit_code(), 0);
        start.elapsed()
    };
    let unthrottled = timed(2 << 20);
    t.apply(
        r#"{"blockIO": {"throttleReadBpsDevice": [{"major": 1, "minor": 0, "rate": 1048576}]}}"#,
    );
    let io_max = t.read_leaf("io.max");
    assert!(io_max.contains("1:0 rbps=1048576"), "{io_max}");
    let throttled = timed(4 << 20);
    assert!(
        throttled >= Duration::from_millis(2500) && throttled > unthrottled * 2,
        "4 MiB at 1 MiB/s took {throttled:?} (unthrottled 2 MiB: {unthrottled:?})"
    );
    let s = t.cg.stats().unwrap();
    assert!(
        s.blkio
            .io_service_bytes_recursive
            .iter()
            .any(|e| e.op == "Read" && e.value >= 4 << 20),
        "{:?}",
        s.blkio
    );
}
