//! Resource limits in real containers under pure cgroup v2. This host is hybrid, so these
//! tests run inside the VM of cgroups/vm (`cgroups/vm/test-containers-v2.sh`, part of the
//! test command); elsewhere they skip. Covered: pids and memory limits enforced, cpu.max
//! written, the device filter denying a device node, pause/resume via cgroup.freeze, update,
//! stats, and no cgroup left after delete.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{berth_test, forks_under_pids_limit, read_trimmed, OutputExt, SLEEPER};
use serde_json::json;

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
    berth_test(|b| {
        let n = forks_under_pids_limit(b, "pids", 10);
        assert!(n > 0 && n < 10, "{n} children despite pids.max=10");

        let mut c = b.config(&[
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ]);
        c["linux"]["resources"] = json!({"memory": {"limit": 16_777_216, "swap": 16_777_216}});
        assert_eq!(b.run(&b.id("oom"), &c).code(), 137, "expected an OOM kill");
    });
}

#[test]
fn limits_devices_pause_update_stats_delete() {
    if !unified() {
        return;
    }
    berth_test(|b| {
        let id = b.id("v2life");
        let mut c = b.config(SLEEPER);
        c["linux"]["resources"] = json!({
            "memory": {"limit": 67_108_864},
            "cpu": {"quota": 20_000, "period": 100_000, "shares": 1024},
            "pids": {"limit": 50},
        });
        b.create_and_start(&id, &c);
        let d = dir(&id);
        assert_eq!(read_trimmed(&d, "memory.max"), "67108864");
        assert_eq!(read_trimmed(&d, "cpu.max"), "20000 100000");
        assert_eq!(read_trimmed(&d, "pids.max"), "50");

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
        assert_eq!(read_trimmed(&d, "memory.max"), "134217728");
        assert_eq!(read_trimmed(&d, "cpu.max"), "50000 100000");
        let stats = b.stats(&id);
        assert!(
            stats["data"]["pids"]["current"].as_u64().unwrap() >= 1,
            "{stats}"
        );
        b.kill_all_and_wait(&id, "KILL");
        b.delete(&id);
        assert!(!d.exists(), "cgroup left behind");
    });
}
