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

#[test]
fn limits_are_written_and_read_back() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("limits"), "c");
    let r = resources(
        r#"{
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42}
    }"#,
    );
    t.cg.apply(&r).expect("apply");
    if mounted(&t.cg, "memory") {
        assert_eq!(t.read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(t.read("memory", "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(t.read("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(t.read("memory", "memory.swappiness"), "10");
    }
    if mounted(&t.cg, "cpu") {
        assert_eq!(t.read("cpu", "cpu.shares"), "512");
        assert_eq!(t.read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(t.read("cpu", "cpu.cfs_period_us"), "100000");
    }
    if mounted(&t.cg, "cpuset") {
        assert_eq!(t.read("cpuset", "cpuset.cpus"), "0");
        assert_eq!(t.read("cpuset", "cpuset.mems"), "0");
    }
    if mounted(&t.cg, "pids") {
        assert_eq!(t.read("pids", "pids.max"), "42");
    }
}

#[test]
fn blkio_throttle_is_written_and_weight_reported() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("blkio"), "c");
    if !mounted(&t.cg, "blkio") {
        return;
    }
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
    let r = resources(r#"{"blockIO": {"weight": 5000}}"#);
    let e = t.cg.apply(&r).unwrap_err().to_string();
    assert!(
        e.contains("blockIO.weight") && e.contains("out of range"),
        "{e}"
    );
}

#[test]
fn unmounted_controllers_are_reported_by_field() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("unsup"), "c");
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
        let e = t.cg.apply(&resources(json)).unwrap_err();
        assert!(matches!(e, Error::UnsupportedResource { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains(controller), "{msg}");
    }
    let e =
        t.cg.apply(&resources(r#"{"unified": {"memory.high": "1G"}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("unified"), "{e}");
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("pids"), "c");
    if !mounted(&t.cg, "pids") {
        return;
    }
    t.cg.apply(&resources(r#"{"pids": {"limit": 5}}"#)).unwrap();
    let mut child = t.run(&Action::ForkLoop(20));
    let forked = child.exit_code();
    assert_eq!(forked, 4, "the child plus 4 forks fill pids.max=5");
    let events = t.read("pids", "pids.events");
    assert!(
        events.contains("max") && !events.ends_with(" 0"),
        "pids.events: {events}"
    );
    // Its 4 orphans are still in the cgroup; delete must kill them.
    assert!(!t.cg.pids().unwrap().is_empty());
}

#[test]
fn memory_limit_oom_kills() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("oom"), "c");
    if !mounted(&t.cg, "memory") {
        return;
    }
    t.cg.apply(&resources(
        r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#,
    ))
    .unwrap();
    let mut child = t.run(&Action::Alloc(256 << 20));
    let st = child
        .wait_timeout(Duration::from_secs(30))
        .expect("child ended");
    assert!(libc::WIFSIGNALED(st), "status {st:#x}");
    assert_eq!(libc::WTERMSIG(st), libc::SIGKILL);
    assert!(t.cg.oom_kills().unwrap() >= 1);
    let stats = t.cg.stats().unwrap();
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
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("freeze"), "c");
    let (_child, read) = t.spinner();
    let a = t.freeze_and_assert_still(&read, Duration::from_millis(200));
    t.cg.thaw().unwrap();
    assert!(!t.cg.is_frozen().unwrap());
    eventually("progress after thaw", || read() > a);
    // kill --all of a paused container still kills it.
    t.cg.freeze().unwrap();
    t.cg.signal_all(libc::SIGKILL).unwrap();
    eventually("the cgroup to empty", || t.cg.pids().unwrap().is_empty());
}

#[test]
fn update_changes_limits() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("update"), "c");
    let _child = t.run(&Action::Sleep);
    t.cg
        .apply(&resources(r#"{"memory": {"limit": 104857600, "swap": 104857600}, "cpu": {"shares": 256}, "pids": {"limit": 10}}"#))
        .unwrap();
    // Raising memory above the current memory+swap needs swap written first.
    t.cg
        .apply(&resources(r#"{"memory": {"limit": 209715200, "swap": 314572800}, "cpu": {"quota": 20000, "period": 50000}, "pids": {"limit": 20}}"#))
        .unwrap();
    if mounted(&t.cg, "memory") {
        assert_eq!(t.read("memory", "memory.limit_in_bytes"), "209715200");
        assert_eq!(t.read("memory", "memory.memsw.limit_in_bytes"), "314572800");
    }
    if mounted(&t.cg, "cpu") {
        assert_eq!(t.read("cpu", "cpu.shares"), "256", "absent fields stay");
        assert_eq!(t.read("cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(t.read("cpu", "cpu.cfs_period_us"), "50000");
    }
    if mounted(&t.cg, "pids") {
        assert_eq!(t.read("pids", "pids.max"), "20");
    }
    // Lowering both again: memory first.
    t.cg.apply(&resources(
        r#"{"memory": {"limit": 52428800, "swap": 52428800}, "pids": {"limit": -1}}"#,
    ))
    .unwrap();
    if mounted(&t.cg, "memory") {
        assert_eq!(t.read("memory", "memory.limit_in_bytes"), "52428800");
    }
    if mounted(&t.cg, "pids") {
        assert_eq!(t.read("pids", "pids.max"), "max");
    }
    let e =
        t.cg.apply(&resources(r#"{"cpu": {"shares": 1000000}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("cpu.shares"), "{e}");
    let e =
        t.cg.apply(&resources(r#"{"cpu": {"quota": 10}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("cpu.quota"), "{e}");
    let e =
        t.cg.apply(&resources(r#"{"cpu": {"cpus": "0-x"}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("cpu.cpus"), "{e}");
}

#[test]
fn stats_are_real_numbers() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("stats"), "c");
    t.cg.apply(&resources(
        r#"{"pids": {"limit": 50}, "memory": {"limit": 268435456}}"#,
    ))
    .unwrap();
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
    if !v1_host() {
        return;
    }
    let parent = unique("delete");
    let t = TestCg::create(&parent, "c");
    let child = t.run(&Action::ForkLoop(3));
    // The child exits after forking; its 3 orphans stay in the cgroup.
    eventually("3 orphans", || t.cg.pids().unwrap().len() == 3);
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
    drop(child);
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
                    t.cg.apply(&resources(&format!(
                        r#"{{"pids": {{"limit": {}}}}}"#,
                        10 + i
                    )))
                    .unwrap();
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
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("kill"), "c");
    let mut child = t.run(&Action::ForkLoop(5));
    assert_eq!(child.exit_code(), 5);
    eventually("5 orphans", || t.cg.pids().unwrap().len() == 5);
    t.cg.signal_all(libc::SIGTERM).unwrap();
    eventually("all gone", || t.cg.pids().unwrap().is_empty());
}

#[test]
fn devices_v1_allow_list() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("dev"), "c");
    if !mounted(&t.cg, "devices") {
        return;
    }
    let kmsg = std::ffi::CString::new("/dev/kmsg").unwrap();
    let null = std::ffi::CString::new("/dev/null").unwrap();
    // Default deny, nothing configured: only the default devices.
    t.cg.apply(&resources(
        r#"{"devices": [{"allow": false, "access": "rwm"}]}"#,
    ))
    .unwrap();
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
    t.cg.apply(&resources(r#"{"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}]}"#)).unwrap();
    assert_eq!(open(&kmsg), 0);
    assert!(t.read("devices", "devices.list").contains("c 1:11 r"));
    // ... and take it away again: the stale exception is removed.
    t.cg.apply(&resources(
        r#"{"devices": [{"allow": false, "access": "rwm"}]}"#,
    ))
    .unwrap();
    assert_eq!(open(&kmsg), libc::EPERM);
    assert!(!t.read("devices", "devices.list").contains("1:11"));
    let e =
        t.cg.apply(&resources(r#"{"devices": [{"allow": true, "type": "p"}]}"#))
            .unwrap_err();
    assert!(e.to_string().contains("devices[0].type"), "{e}");
}

#[test]
fn systemd_paths_and_dotdot_are_refused() {
    let e = Cgroup::resolve(Some(Path::new("system.slice:berth:abc")), "abc").unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    let e = Cgroup::resolve(Some(Path::new("/a/../../b")), "abc").unwrap_err();
    assert!(e.to_string().contains("linux.cgroupsPath"), "{e}");
}

#[test]
fn state_json_round_trip_controls_the_same_cgroup() {
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("state"), "c");
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
    if !v1_host() {
        return;
    }
    let t = TestCg::create(&unique("stray"), "c");
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
