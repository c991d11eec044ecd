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

fn read(t: &TestCg, file: &str) -> String {
    t.read("memory", file)
}

fn controllers(t: &TestCg) -> Vec<String> {
    read(t, "cgroup.controllers")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_controller_is_enabled_in_nested_parents() {
    if !v2_host() {
        return;
    }
    let parent = unique("nest");
    let t = TestCg::create(&format!("{parent}/mid"), "c");
    let c = controllers(&t);
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
    if !v2_host() {
        return;
    }
    let t = TestCg::create(&unique("limits"), "c");
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
    assert_eq!(read(&t, "memory.max"), "67108864");
    assert_eq!(read(&t, "memory.low"), "33554432");
    if Path::new(t.dir("memory")).join("memory.swap.max").exists() {
        assert_eq!(
            read(&t, "memory.swap.max"),
            "67108864",
            "swap.max = swap - limit"
        );
    }
    assert_eq!(
        read(&t, "memory.high"),
        "59998208",
        "unified written (page-rounded)"
    );
    assert_eq!(read(&t, "cpu.weight"), "100", "1024 shares = weight 100");
    assert_eq!(read(&t, "cpu.max"), "50000 100000");
    assert_eq!(read(&t, "cpu.max.burst"), "1000");
    assert_eq!(read(&t, "cpuset.cpus"), "0");
    assert_eq!(read(&t, "cpuset.mems"), "0");
    assert_eq!(read(&t, "pids.max"), "42");
    let w = if Path::new(t.dir("memory")).join("io.bfq.weight").exists() {
        read(&t, "io.bfq.weight")
    } else {
        read(&t, "io.weight")
    };
    assert!(w.contains("500") || w.contains("4950"), "io weight: {w}");
    if controllers(&t).iter().any(|c| c == "hugetlb") {
        t.cg.apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
        ))
        .unwrap();
        assert_eq!(read(&t, "hugetlb.2MB.max"), "4194304");
    }
    // update: absent fields stay, checkBeforeUpdate refuses a limit below usage.
    t.cg.apply(&resources(
        r#"{"memory": {"limit": 134217728}, "cpu": {"shares": 2}}"#,
    ))
    .unwrap();
    assert_eq!(read(&t, "memory.max"), "134217728");
    assert_eq!(read(&t, "memory.low"), "33554432");
    assert_eq!(read(&t, "cpu.weight"), "1");
    let child = t.run(&Action::Burn(1));
    eventually("the child's memory", || child.state() == 'S');
    let e =
        t.cg.apply(&resources(
            r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("checkBeforeUpdate"), "{e}");
    let e =
        t.cg.apply(&resources(r#"{"unified": {"nosuch.file": "1"}}"#))
            .unwrap_err();
    assert!(matches!(e, Error::UnsupportedResource { .. }), "{e}");
    let e =
        t.cg.apply(&resources(r#"{"cpu": {"realtimeRuntime": 5}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("realtime"), "{e}");
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if !v2_host() {
        return;
    }
    let t = TestCg::create(&unique("pids"), "c");
    t.cg.apply(&resources(r#"{"pids": {"limit": 5}}"#)).unwrap();
    let mut child = t.run(&Action::ForkLoop(12));
    assert_eq!(child.exit_code(), 4);
    assert!(!read(&t, "pids.events").ends_with(" 0"));
}

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    if !v2_host() {
        return;
    }
    let t = TestCg::create(&unique("oom"), "c");
    t.cg.apply(&resources(
        r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#,
    ))
    .unwrap();
    let mut child = t.run(&Action::Alloc(128 << 20));
    let st = child
        .wait_timeout(Duration::from_secs(120))
        .expect("child ended");
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
        "{st:#x}"
    );
    assert!(t.cg.oom_kills().unwrap() >= 1);
    let s = t.cg.stats().unwrap();
    assert_eq!(s.memory.usage.limit, 33_554_432);
    assert!(s.memory.usage.failcnt >= 1);
}

#[test]
fn freeze_kill_stats_and_delete() {
    if !v2_host() {
        return;
    }
    let parent = unique("life");
    let t = TestCg::create(&parent, "c");
    t.cg.apply(&resources(r#"{"pids": {"limit": 20}}"#))
        .unwrap();
    let (_spinner, count) = t.spinner();
    let a = t.freeze_and_assert_still(&count, Duration::from_millis(300));
    t.cg.thaw().unwrap();
    eventually("progress", || count() > a);
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

fn ram_disk() -> Option<&'static str> {
    Path::new("/dev/ram0").exists().then_some("/dev/ram0")
}

#[test]
fn device_program_blocks_disks_and_allows_configured_ones() {
    if !v2_host() {
        return;
    }
    let Some(disk) = ram_disk() else {
        eprintln!("skipped: no /dev/ram0 (modprobe brd)");
        return;
    };
    let t = TestCg::create(&unique("dev"), "c");
    let open =
        |path: &str| t.run_to_exit(&Action::Open(CString::new(path).unwrap(), libc::O_RDONLY));
    t.cg.apply(&resources(
        r#"{"devices": [{"allow": false, "access": "rwm"}]}"#,
    ))
    .unwrap();
    assert_eq!(open(disk), libc::EPERM);
    assert_eq!(open("/dev/null"), 0);
    t.cg.apply(&resources(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "b", "major": 1, "minor": 0, "access": "r"}]}"#,
    ))
    .unwrap();
    assert_eq!(open(disk), 0);
    assert_eq!(devices::attached_programs(t.dir("memory")).unwrap(), 1);
}

#[test]
fn io_max_throttles_a_ram_disk() {
    if !v2_host() {
        return;
    }
    let Some(disk) = ram_disk() else {
        eprintln!("skipped: no /dev/ram0 (modprobe brd)");
        return;
    };
    let t = TestCg::create(&unique("io"), "c");
    let timed = |bytes: usize| {
        let mut c = Child::spawn(&Action::ReadDirect(CString::new(disk).unwrap(), bytes));
        t.cg.add_pid(c.pid).unwrap();
        let start = Instant::now();
        c.go();
        assert_eq!(c.exit_code(), 0);
        start.elapsed()
    };
    let unthrottled = timed(2 << 20);
    t.cg.apply(&resources(
        r#"{"blockIO": {"throttleReadBpsDevice": [{"major": 1, "minor": 0, "rate": 1048576}]}}"#,
    ))
    .unwrap();
    let io_max = read(&t, "io.max");
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
