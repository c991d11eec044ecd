//! Resource limits in real containers on this hybrid (v1) host: a pids limit stops a fork loop,
//! a memory limit OOM-kills, pause/resume freeze and thaw (state says "paused"), update changes
//! limits (flags and the engines' JSON), `events --stats` shows real numbers, `kill --all`
//! reaches every process, and delete leaves no cgroup behind.

mod common;

use std::path::PathBuf;

use common::{
    berth_test, engine_fixture, forks_under_pids_limit, read_trimmed, OutputExt, SLEEPER,
};
use serde_json::json;

/// The container's directory in a v1 hierarchy (berth's default path is `/berth-<id>`).
fn v1_dir(controller: &str, id: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/cgroup/{controller}/berth-{id}"))
}

fn no_cgroup_left(id: &str) {
    for c in ["memory", "pids", "cpu", "freezer", "devices", "unified"] {
        assert!(!v1_dir(c, id).exists(), "{c} cgroup of {id} left behind");
    }
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    berth_test(|b| {
        let n = forks_under_pids_limit(b, "pids", 10);
        assert!(n > 0 && n < 10, "{n} children despite pids.max=10");
        no_cgroup_left(&b.id("pids"));
    });
}

#[test]
fn memory_limit_oom_kills() {
    berth_test(|b| {
        // Grow a shell variable well past the limit: the kernel's OOM killer ends the shell.
        let mut c = b.config(&[
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ]);
        c["linux"]["resources"] = json!({"memory": {"limit": 16_777_216, "swap": 16_777_216}});
        let out = b.run(&b.id("oom"), &c);
        assert_eq!(
            out.code(),
            137,
            "expected SIGKILL from the OOM killer: {}",
            out.err()
        );
    });
}

#[test]
fn pause_update_stats_kill_all_and_delete() {
    berth_test(|b| {
        let id = b.id("life");
        let mut c = b.config(SLEEPER);
        c["linux"]["resources"] = json!({"memory": {"limit": 67_108_864}, "pids": {"limit": 50}});
        b.create_and_start(&id, &c);
        let memory = v1_dir("memory", &id);
        assert_eq!(read_trimmed(&memory, "memory.limit_in_bytes"), "67108864");

        b.cmd(&["pause", &id]).ok();
        assert_eq!(b.status(&id), "paused");
        assert_eq!(
            read_trimmed(&v1_dir("freezer", &id), "freezer.state"),
            "FROZEN"
        );
        b.cmd(&["pause", &id]).fails_with("already paused");
        b.cmd(&["resume", &id]).ok();
        assert_eq!(b.status(&id), "running");

        b.cmd(&["update", "--memory", "128m", "--pids-limit", "70", &id])
            .ok();
        assert_eq!(read_trimmed(&memory, "memory.limit_in_bytes"), "134217728");
        assert_eq!(read_trimmed(&v1_dir("pids", &id), "pids.max"), "70");
        for engine in ["podman", "docker"] {
            let file = engine_fixture(engine, "update-resources");
            b.cmd(&["update", "--resources", file.to_str().unwrap(), &id])
                .ok();
        }
        assert_eq!(read_trimmed(&memory, "memory.limit_in_bytes"), "134217728");

        let stats = b.stats(&id);
        assert_eq!(stats["type"], "stats");
        assert!(
            stats["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
            "{stats}"
        );
        assert!(
            stats["data"]["pids"]["current"].as_u64().unwrap() >= 1,
            "{stats}"
        );

        let pids = b.ps(&id);
        assert!(pids.len() >= 2, "the shell and its sleep: {pids:?}");
        b.kill_all_and_wait(&id, "KILL");
        b.delete(&id);
        no_cgroup_left(&id);
    });
}

#[test]
fn failed_create_leaves_no_cgroup() {
    berth_test(|b| {
        let id = b.id("badres");
        let mut c = b.config(&["true"]);
        c["linux"]["resources"] = json!({"cpu": {"cpus": "999"}});
        let out = b.try_create(&id, &c);
        assert!(
            !out.status.success(),
            "an impossible cpuset must fail create"
        );
        no_cgroup_left(&id);
        b.assert_no_state(&id);
    });
}

/// A systemd-form `linux.cgroupsPath` (`slice:prefix:name`, which containerd 1.6 passes for a
/// `.slice` cgroup parent, without `--systemd-cgroup`) is a relative path of one component, as
/// runc 1.1 takes it: below the caller's own cgroup in each v1 hierarchy, at the root of the
/// hybrid host's unified one. Limits land there and delete removes every directory.
#[test]
fn systemd_form_cgroups_path_is_a_relative_path() {
    berth_test(|b| {
        let id = b.id("sdpath");
        let name = format!("berth-test.slice:cri-containerd:{id}");
        let mut c = b.config(SLEEPER);
        c["linux"]["cgroupsPath"] = json!(name);
        c["linux"]["resources"] = json!({"memory": {"limit": 67_108_864}, "pids": {"limit": 40}});
        let pid = b.create_and_start(&id, &c);

        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let mut dirs = Vec::new();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (num, ctrls, path) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let want = if num == "0" {
                format!("/{name}")
            } else {
                format!("{}/{name}", path.trim_end_matches('/'))
            };
            assert!(
                theirs.lines().any(|l| l == format!("{num}:{ctrls}:{want}")),
                "{num}:{ctrls}: wanted {want}, the init is in\n{theirs}"
            );
            let ctrl = match ctrls {
                "" => "unified",
                "name=systemd" => "systemd",
                c => c.split(',').next().unwrap(),
            };
            dirs.push(PathBuf::from(format!("/sys/fs/cgroup/{ctrl}{want}")));
        }
        let dir_of = |c: &str| {
            dirs.iter()
                .find(|d| d.starts_with(format!("/sys/fs/cgroup/{c}/")))
                .unwrap()
        };
        assert_eq!(
            read_trimmed(dir_of("memory"), "memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(read_trimmed(dir_of("pids"), "pids.max"), "40");
        assert_eq!(b.state(&id)["status"], "running");

        b.kill_all_and_wait(&id, "KILL");
        b.delete(&id);
        for d in &dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    });
}

/// The device filter comes into force once the init has made its device nodes (as runc sets
/// its device rules after them): a `linux.devices` node that `resources.devices` does not
/// allow is made, and cannot be opened.
#[test]
fn a_device_node_the_rules_deny_is_made_but_cannot_be_opened() {
    berth_test(|b| {
        let out = b.run_script(
            "denied-node",
            "test -c /dev/denied && echo made; head -c1 /dev/denied >/dev/null 2>&1 || echo refused",
            |c| {
                c["linux"]["devices"] = json!([{
                    "path": "/dev/denied", "type": "c", "major": 1, "minor": 11, "fileMode": 438
                }]);
            },
        );
        assert!(out.contains("made") && out.contains("refused"), "{out}");
    });
}
