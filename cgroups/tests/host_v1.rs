//! cgroup v1 (legacy or hybrid hosts, such as the machines berth is built on): real limits on
//! real processes. Every cgroup is `berth-test-*` and removed even when a test fails. Skipped
//! (passing) on a cgroup v2-only host or without root.

mod common;

use std::path::Path;
use std::time::Duration;

use berth_cgroups::{Cgroup, Error, Mode};
use common::{eventually, resources, unique, Action, Child, TestCg};

fn v1_host() -> bool {
    match common::host_mode() {
        Some(Mode::Legacy | Mode::Hybrid) => true,
        Some(Mode::Unified) => {
            eprintln!("skipped: cgroup v2-only host");
            false
        }
        None => false,
    }
}

fn mounted(cg: &Cgroup, controller: &str) -> bool {
    cg.controller_dir(controller).is_some()
}

/// A fresh container cgroup (`<berth-test-tag-…>/c`) on a v1 or hybrid host; `None` (the test
/// is skipped) elsewhere.
fn v1_cgroup(tag: &str) -> Option<TestCg> {
    v1_host().then(|| TestCg::create(&unique(tag), "c"))
}

/// [`v1_cgroup`] where `controller` is mounted too; `None` (the test is skipped, saying so)
/// otherwise.
fn v1_cgroup_with(tag: &str, controller: &str) -> Option<TestCg> {
    let t = v1_cgroup(tag)?;
    if !mounted(&t.cg, controller) {
        eprintln!("skipped: no {controller} hierarchy");
        return None;
    }
    Some(t)
}

/// Asserts each `(controller, file, value)` whose controller is mounted (the others are not
/// checked: not every v1 host mounts every controller).
fn assert_files(t: &TestCg, want: &[(&str, &str, &str)]) {
    for &(controller, file, value) in want {
        if mounted(&t.cg, controller) {
            assert_eq!(t.read(controller, file), value, "{controller}: {file}");
        }
    }
}

#[test]
fn limits_are_written_and_read_back() {
    let Some(t) = v1_cgroup("limits") else {
        return;
    };
    let r = resources(
        r#"{
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42}
    }"#,
    );
    t.cg.apply(&r).expect("apply");
    assert_files(
        &t,
        &[
            ("memory", "memory.limit_in_bytes", "67108864"),
            ("memory", "memory.soft_limit_in_bytes", "33554432"),
            ("memory", "memory.memsw.limit_in_bytes", "134217728"),
            ("memory", "memory.swappiness", "10"),
            ("cpu", "cpu.shares", "512"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
            ("cpu", "cpu.cfs_period_us", "100000"),
            ("cpuset", "cpuset.cpus", "0"),
            ("cpuset", "cpuset.mems", "0"),
            ("pids", "pids.max", "42"),
        ],
    );
}

#[test]
fn blkio_throttle_is_written_and_weight_reported() {
    let Some(t) = v1_cgroup_with("blkio", "blkio") else {
        return;
    };
    // A block device every Linux machine has: the first loop device (7:0), if any.
    if !Path::new("/sys/block/loop0").exists() {
        return;
    }
    let r = resources(
        r#"{"blockIO": {"throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1048576}],
                       "throttleWriteIOPSDevice": [{"major": 7, "minor": 0, "rate": 100}]}}"#,
    );
    t.cg.apply(&r).expect("apply throttles");
    assert_eq!(
        t.read("blkio", "blkio.throttle.read_bps_device"),
        "7:0 1048576"
    );
    assert_eq!(
        t.read("blkio", "blkio.throttle.write_iops_device"),
        "7:0 100"
    );
    let has_weight = ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .any(|f| t.dir("blkio").join(f).exists());
    let r = resources(r#"{"blockIO": {"weight": 500}}"#);
    match t.cg.apply(&r) {
        Ok(()) => assert!(has_weight),
        Err(e) => {
            assert!(!has_weight);
            assert!(matches!(e, Error::UnsupportedResource { .. }), "{e}");
            assert!(e.to_string().contains("blockIO.weight"), "{e}");
        }
    }
    let e = t.refused(r#"{"blockIO": {"weight": 5000}}"#, "blockIO.weight");
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn unmounted_controllers_are_reported_by_field() {
    let Some(t) = v1_cgroup("unsup") else {
        return;
    };
    let cases = [
        (
            "hugetlb",
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}"#,
            "hugepageLimits",
        ),
        (
            "net_cls",
            r#"{"network": {"classID": 1048577}}"#,
            "network.classID",
        ),
        (
            "net_prio",
            r#"{"network": {"priorities": [{"name": "lo", "priority": 5}]}}"#,
            "network.priorities[0]",
        ),
        ("rdma", r#"{"rdma": {"mlx5_1": {"hcaHandles": 3}}}"#, "rdma"),
    ];
    for (controller, json, field) in cases {
        if mounted(&t.cg, controller) {
            continue;
        }
        let e = t.refused(json, field);
        assert!(matches!(e, Error::UnsupportedResource { .. }), "{e}");
        assert!(e.to_string().contains(controller), "{e}");
    }
    t.refused(r#"{"unified": {"memory.high": "1G"}}"#, "unified");
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(t) = v1_cgroup_with("pids", "pids") else {
        return;
    };
    t.assert_pids_limit_stops_a_fork_loop(20);
    // Its 4 orphans are still in the cgroup; delete must kill them.
    assert!(!t.cg.pids().unwrap().is_empty());
}

#[test]
fn memory_limit_oom_kills() {
    let Some(t) = v1_cgroup_with("oom", "memory") else {
        return;
    };
    let stats = t.assert_oom_killed(256 << 20, Duration::from_secs(30));
    // The peak reached the limit (failcnt is not kept by every kernel).
    assert_eq!(
        stats.memory.usage.max, 33_554_432,
        "{:?}",
        stats.memory.usage
    );
    assert_eq!(stats.memory.usage.limit, 33_554_432);
}

#[test]
fn freezer_pauses_and_resumes() {
    let Some(t) = v1_cgroup("freeze") else {
        return;
    };
    let _spinner = t.freeze_and_thaw(Duration::from_millis(200), || {});
    // kill --all of a paused container still kills it.
    t.cg.freeze().unwrap();
    t.cg.signal_all(libc::SIGKILL).unwrap();
    eventually("the cgroup to empty", || t.cg.pids().unwrap().is_empty());
}

#[test]
fn update_changes_limits() {
    let Some(t) = v1_cgroup("update") else {
        return;
    };
    let _child = t.run(&Action::Sleep);
    t.apply(r#"{"memory": {"limit": 104857600, "swap": 104857600}, "cpu": {"shares": 256}, "pids": {"limit": 10}}"#);
    // Raising memory above the current memory+swap needs swap written first.
    t.apply(r#"{"memory": {"limit": 209715200, "swap": 314572800}, "cpu": {"quota": 20000, "period": 50000}, "pids": {"limit": 20}}"#);
    if mounted(&t.cg, "cpu") {
        assert_eq!(t.read("cpu", "cpu.shares"), "256", "absent fields stay");
    }
    assert_files(
        &t,
        &[
            ("memory", "memory.limit_in_bytes", "209715200"),
            ("memory", "memory.memsw.limit_in_bytes", "314572800"),
            ("cpu", "cpu.cfs_quota_us", "20000"),
            ("cpu", "cpu.cfs_period_us", "50000"),
            ("pids", "pids.max", "20"),
        ],
    );
    // Lowering both again: memory first.
    t.apply(r#"{"memory": {"limit": 52428800, "swap": 52428800}, "pids": {"limit": -1}}"#);
    assert_files(
        &t,
        &[
            ("memory", "memory.limit_in_bytes", "52428800"),
            ("pids", "pids.max", "max"),
        ],
    );
    for (json, field) in [
        (r#"{"cpu": {"shares": 1000000}}"#, "cpu.shares"),
        (r#"{"cpu": {"quota": 10}}"#, "cpu.quota"),
        (r#"{"cpu": {"cpus": "0-x"}}"#, "cpu.cpus"),
    ] {
        t.refused(json, field);
    }
}

#[test]
fn stats_are_real_numbers() {
    let Some(t) = v1_cgroup("stats") else {
        return;
    };
    t.apply(r#"{"pids": {"limit": 50}, "memory": {"limit": 268435456}}"#);
    let child = t.run(&Action::Burn(300));
    eventually("the burn to finish", || child.state() == 'S');
    let s = t.cg.stats().unwrap();
    if mounted(&t.cg, "cpuacct") {
        assert!(
            s.cpu.usage.total >= 100_000_000,
            "cpu total {}",
            s.cpu.usage.total
        );
        assert!(s.cpu.usage.user + s.cpu.usage.kernel > 0);
        assert!(!s.cpu.usage.percpu.is_empty());
    }
    if mounted(&t.cg, "memory") {
        assert!(s.memory.usage.usage > 0);
        assert_eq!(s.memory.usage.limit, 268_435_456);
        assert!(!s.memory.raw.is_empty());
    }
    if mounted(&t.cg, "pids") {
        assert_eq!(s.pids.current, 1);
        assert_eq!(s.pids.limit, 50);
    }
    if mounted(&t.cg, "cpuset") {
        assert!(!s.cpuset.cpus.is_empty());
    }
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["cpu"]["usage"]["total"].as_u64().is_some());
}

#[test]
fn delete_leaves_no_cgroup_behind() {
    let Some(t) = v1_cgroup("delete") else {
        return;
    };
    // The child exits after forking; its 3 orphans stay in the cgroup.
    t.run_orphans(3);
    let dirs: Vec<_> = t.cg.dirs().map(Path::to_owned).collect();
    t.cg.destroy().expect("destroy with live processes");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
        assert!(
            !d.parent().unwrap().exists(),
            "our parent {} left behind",
            d.parent().unwrap().display()
        );
    }
    t.cg.destroy().expect("destroy is idempotent");
}

#[test]
fn a_parent_we_did_not_create_is_kept() {
    if !v1_host() {
        return;
    }
    let parent = unique("keep");
    let first = TestCg::create(&parent, "a");
    let second = TestCg::create(&parent, "b");
    second.cg.destroy().unwrap();
    for d in first.cg.dirs() {
        assert!(d.exists(), "{} removed by the other container", d.display());
    }
    first.cg.destroy().unwrap();
    for d in first.cg.dirs() {
        assert!(
            !d.parent().unwrap().exists(),
            "the creator removes the parent"
        );
    }
}

#[test]
fn concurrent_containers_do_not_collide() {
    if !v1_host() {
        return;
    }
    let parent = unique("conc");
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let parent = parent.clone();
            std::thread::spawn(move || {
                for round in 0..3 {
                    let t = TestCg::create(&parent, &format!("c{i}-{round}"));
                    t.apply(&format!(r#"{{"pids": {{"limit": {}}}}}"#, 10 + i));
                    let child = t.run(&Action::Sleep);
                    assert_eq!(t.cg.pids().unwrap(), vec![child.pid]);
                    if t.cg.controller_dir("pids").is_some() {
                        assert_eq!(t.read("pids", "pids.max"), (10 + i).to_string());
                    }
                    t.cg.destroy().unwrap();
                    drop(child);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    for m in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = m.path().join(&parent);
        let _ = std::fs::remove_dir(&p);
        assert!(!p.exists());
    }
}

#[test]
fn kill_all_signals_every_process() {
    let Some(t) = v1_cgroup("kill") else {
        return;
    };
    t.run_orphans(5);
    t.cg.signal_all(libc::SIGTERM).unwrap();
    eventually("all gone", || t.cg.pids().unwrap().is_empty());
}

#[test]
fn devices_v1_allow_list() {
    let Some(t) = v1_cgroup_with("dev", "devices") else {
        return;
    };
    let kmsg = std::ffi::CString::new("/dev/kmsg").unwrap();
    let null = std::ffi::CString::new("/dev/null").unwrap();
    // Default deny, nothing configured: only the default devices.
    t.apply(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#);
    let list = t.read("devices", "devices.list");
    assert!(
        list.contains("c 1:3 rwm") && !list.contains("a *:*"),
        "{list}"
    );
    let open =
        |path: &std::ffi::CString| t.run_to_exit(&Action::Open(path.clone(), libc::O_RDONLY));
    assert_eq!(open(&kmsg), libc::EPERM);
    assert_eq!(open(&null), 0);
    // update: allow reading /dev/kmsg (1:11).
    t.apply(r#"{"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}]}"#);
    assert_eq!(open(&kmsg), 0);
    assert!(t.read("devices", "devices.list").contains("c 1:11 r"));
    // ... and take it away again: the stale exception is removed.
    t.apply(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#);
    assert_eq!(open(&kmsg), libc::EPERM);
    assert!(!t.read("devices", "devices.list").contains("1:11"));
    t.refused(
        r#"{"devices": [{"allow": true, "type": "p"}]}"#,
        "devices[0].type",
    );
}

/// Without a systemd driver, `slice:prefix:name` is one relative component, as runc takes it:
/// below our own cgroup in each v1 hierarchy, at the root of the hybrid host's unified one.
#[test]
fn systemd_paths_are_relative_and_dotdot_is_refused() {
    let name = "system.slice:berth:abc";
    let cg = Cgroup::resolve(Some(Path::new(name)), "abc").unwrap();
    assert_eq!(cg.path(), Path::new(name));
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let memory = own
        .lines()
        .find_map(|l| {
            l.split_once(":memory:")
                .map(|(_, p)| p.trim_end_matches('/'))
        })
        .expect("a memory hierarchy on this v1 host");
    assert_eq!(
        cg.controller_dir("memory"),
        Some(Path::new(&format!("/sys/fs/cgroup/memory{memory}/{name}")))
    );
    if cg.mode() == Mode::Hybrid {
        assert!(
            cg.dirs()
                .any(|d| d == Path::new(&format!("/sys/fs/cgroup/unified/{name}"))),
            "{:?}",
            cg.dirs().collect::<Vec<_>>()
        );
    }
    let e = Cgroup::resolve(Some(Path::new("/a/../../b")), "abc").unwrap_err();
    assert!(e.to_string().contains("linux.cgroupsPath"), "{e}");
}

#[test]
fn state_json_round_trip_controls_the_same_cgroup() {
    let Some(t) = v1_cgroup("state") else {
        return;
    };
    let json = serde_json::to_string(&t.cg).unwrap();
    let again: Cgroup = serde_json::from_str(&json).unwrap();
    let child = Child::spawn(&Action::Sleep);
    again.add_pid(child.pid).unwrap();
    child.go();
    assert_eq!(t.cg.pids().unwrap(), vec![child.pid]);
    again.destroy().unwrap();
    assert!(t.cg.dirs().all(|d| !d.exists()));
}

#[test]
fn delete_kills_a_process_that_joined_only_one_hierarchy() {
    let Some(t) = v1_cgroup("stray") else {
        return;
    };
    let Some(mem) = t.cg.controller_dir("memory") else {
        return;
    };
    let mut child = Child::spawn(&Action::Sleep);
    std::fs::write(mem.join("cgroup.procs"), child.pid.to_string()).unwrap();
    child.go();
    assert_eq!(t.cg.pids().unwrap(), vec![child.pid]);
    t.cg.destroy().unwrap();
    let st = child.wait_timeout(Duration::from_secs(10)).expect("killed");
    assert!(libc::WIFSIGNALED(st));
    assert!(t.cg.dirs().all(|d| !d.exists()));
}
