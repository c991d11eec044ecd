//! Resource limits in real containers under pure cgroup v2. This host is hybrid, so these
//! tests run inside the VM of cgroups/vm (`cgroups/vm/test-containers-v2.sh`, part of the
//! test command); elsewhere they skip. Covered: pids and memory limits enforced, cpu.max
//! written, the device filter denying a device node, pause/resume via cgroup.freeze, update,
//! stats, and no cgroup left after delete.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{forks_under_pids_limit, Berth, OutputExt, SLEEPER};
use serde_json::{json, Value};

/// True on a cgroup v2-only host (the VM); tests skip with a note elsewhere.
fn unified() -> bool {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !v2 {
        eprintln!("skipped: not a cgroup v2-only host (run cgroups/vm/test-containers-v2.sh)");
    }
    v2
}

fn dir(id: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/cgroup/berth-{id}"))
}

#[test]
fn pids_and_memory_limits_are_enforced() {
    if !unified() {
        return;
    }
    let b = Berth::new();
    let n = forks_under_pids_limit(&b, "pids", 10);
    assert!(n > 0 && n < 10, "{n} children despite pids.max=10");

    let mut c = b.config(&[
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
    ]);
    c["linux"]["resources"] = json!({"memory": {"limit": 16_777_216, "swap": 16_777_216}});
    assert_eq!(b.run(&b.id("oom"), &c).code(), 137, "expected an OOM kill");
    b.assert_clean();
}

#[test]
fn limits_devices_pause_update_stats_delete() {
    if !unified() {
        return;
    }
    let b = Berth::new();
    let id = b.id("v2life");
    let mut c = b.config(SLEEPER);
    c["linux"]["resources"] = json!({
        "memory": {"limit": 67_108_864},
        "cpu": {"quota": 20_000, "period": 100_000, "shares": 1024},
        "pids": {"limit": 50},
    });
    b.create_and_start(&id, &c);
    let d = dir(&id);
    assert_eq!(
        fs::read_to_string(d.join("memory.max")).unwrap().trim(),
        "67108864"
    );
    assert_eq!(
        fs::read_to_string(d.join("cpu.max")).unwrap().trim(),
        "20000 100000"
    );
    assert_eq!(fs::read_to_string(d.join("pids.max")).unwrap().trim(), "50");

    // Default device rules: /dev/kmsg is not in the allow list, so the BPF filter denies it.
    let out = b.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mknod /dev/probe c 1 11 && head -c1 /dev/probe; echo rc=$?",
    ]);
    assert!(
        out.out().contains("rc=1"),
        "opening a denied device must fail: {}",
        out.out()
    );

    b.cmd(&["pause", &id]).ok();
    assert_eq!(b.status(&id), "paused");
    assert!(fs::read_to_string(d.join("cgroup.events"))
        .unwrap()
        .contains("frozen 1"));
    b.cmd(&["resume", &id]).ok();
    b.cmd(&["update", "--memory", "128m", "--cpu-quota", "50000", &id])
        .ok();
    assert_eq!(
        fs::read_to_string(d.join("memory.max")).unwrap().trim(),
        "134217728"
    );
    assert_eq!(
        fs::read_to_string(d.join("cpu.max")).unwrap().trim(),
        "50000 100000"
    );
    let stats: Value =
        serde_json::from_str(&b.cmd(&["events", "--stats", &id]).ok().out()).unwrap();
    assert!(
        stats["data"]["pids"]["current"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    b.cmd(&["kill", "--all", &id, "KILL"]).ok();
    b.wait_status(&id, "stopped");
    b.cmd(&["delete", &id]).ok();
    assert!(!d.exists(), "cgroup left behind");
    b.assert_clean();
}
