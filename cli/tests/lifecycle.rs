//! The container lifecycle through the `berth` binary, as an engine drives it: create (pid file,
//! "created"), start ("running"), kill by every signal spelling ("stopped"), delete with and
//! without `--force`, the errors engines match on ("container does not exist", "container not
//! running", "already exists"), `list`, `run` in the foreground (exit codes, 128+N for a
//! signal) and detached, and many concurrent creates. Each test ends with nothing left behind.

mod common;

use std::path::Path;

use common::{berth_test, OutputExt, SLEEPER};
use serde_json::Value;

#[test]
fn create_start_kill_delete_with_each_signal_spelling() {
    berth_test(|b| {
        for (i, signal) in ["TERM", "SIGTERM", "15", "KILL", "SIGKILL", "9"]
            .into_iter()
            .enumerate()
        {
            let id = b.id(&format!("sig{i}"));
            let pid = b.create(&id, &b.config(SLEEPER));
            assert!(Path::new(&format!("/proc/{pid}")).exists(), "init {pid}");
            let state = b.state(&id);
            assert_eq!(state["status"], "created", "{state}");
            assert_eq!(state["pid"], pid, "{state}");
            assert_eq!(state["id"], id.as_str());

            b.start(&id);
            assert_eq!(b.status(&id), "running");
            assert_eq!(b.state(&id)["pid"], pid);
            // The leak check below can see this container's processes.
            assert!(!common::tagged_processes(&b.tag).is_empty());

            b.cmd(&["kill", &id, signal]).ok();
            b.wait_status(&id, "stopped");
            assert_eq!(b.state(&id)["pid"], 0, "a stopped container has no pid");

            b.delete(&id);
            b.assert_gone(&id);
        }
    });
}

#[test]
fn delete_without_force_refuses_created_and_running() {
    berth_test(|b| {
        let id = b.id("busy");
        b.create(&id, &b.config(SLEEPER));
        b.cmd(&["delete", &id]).fails_with("not stopped");
        assert_eq!(b.status(&id), "created");

        b.start(&id);
        b.cmd(&["delete", &id]).fails_with("not stopped");
        assert_eq!(b.status(&id), "running");

        b.delete_force(&id);
        b.assert_gone(&id);
    });
}

#[test]
fn delete_force_of_a_created_container() {
    berth_test(|b| {
        let id = b.id("created");
        let pid = b.create(&id, &b.config(SLEEPER));
        b.delete_force(&id);
        assert!(
            common::poll_until(common::STATUS_TIMEOUT, || {
                b.reap_all();
                !common::is_alive(pid)
            }),
            "init {pid} survived delete --force"
        );
    });
}

#[test]
fn missing_container_errors() {
    berth_test(|b| {
        let id = b.id("ghost");
        b.delete_force(&id);
        b.assert_gone(&id);
        b.cmd(&["delete", &id])
            .fails_with("container does not exist");
        b.cmd(&["kill", &id, "KILL"])
            .fails_with("container does not exist");
        b.cmd(&["start", &id])
            .fails_with("container does not exist");
    });
}

/// `kill --all` of a stopped container is what containerd's shim sends after every exit: as
/// with runc 1.1 it kills what the init left in the cgroup (a child, in the host's pid
/// namespace) and succeeds, also when nothing is left.
#[test]
fn kill_all_of_a_stopped_container_kills_leftovers_and_succeeds() {
    berth_test(|b| {
        let id = b.id("leftover");
        let mut c = b.config(&["sh", "-c", "sleep 1000 & exit 0"]);
        common::remove_namespace(&mut c, "pid");
        b.create_and_start(&id, &c);
        b.wait_status(&id, "stopped");
        let mut left = Vec::new();
        assert!(
            common::poll_until(common::STATUS_TIMEOUT, || {
                left = common::tagged_processes(&b.tag);
                !left.is_empty()
            }),
            "the init's child is gone already"
        );
        for &(pid, _) in &left {
            // Reparented to the test, a subreaper: reaped by the cleanup once killed.
            b.track_pid(pid);
        }
        b.cmd(&["kill", &id, "KILL"])
            .fails_with("container not running");
        b.cmd(&["kill", "--all", &id, "KILL"]).ok();
        b.assert_no_processes();
        // Nothing left in the cgroup: still no error.
        b.cmd(&["kill", "--all", &id, "TERM"]).ok();
        assert_eq!(b.status(&id), "stopped");
        b.delete(&id);
        b.cmd(&["kill", "--all", &id, "KILL"])
            .fails_with("container does not exist");
    });
}

#[test]
fn kill_of_a_stopped_container_fails() {
    berth_test(|b| {
        let id = b.id("dead");
        b.create_and_start(&id, &b.config(SLEEPER));
        b.kill_and_wait(&id, "KILL");
        b.cmd(&["kill", &id, "TERM"])
            .fails_with("container not running");
        b.delete(&id);
    });
}

#[test]
fn start_twice_fails() {
    berth_test(|b| {
        let id = b.id("twice");
        b.create_and_start(&id, &b.config(SLEEPER));
        let err = b.cmd(&["start", &id]).fails_with("running");
        assert!(err.contains("cannot start"), "{err}");
        assert_eq!(b.status(&id), "running");

        b.kill_and_wait(&id, "KILL");
        b.cmd(&["start", &id]).fails_with("stopped");
        b.delete_force(&id);
    });
}

#[test]
fn same_id_twice_fails_and_leaves_the_first_alone() {
    berth_test(|b| {
        let id = b.id("dup");
        let pid = b.create(&id, &b.config(SLEEPER));
        b.try_create(&id, &b.config(SLEEPER))
            .fails_with("already exists");
        let state = b.state(&id);
        assert_eq!(state["status"], "created", "{state}");
        assert_eq!(state["pid"], pid);
        b.start(&id);
        assert_eq!(b.status(&id), "running");
        b.delete_force(&id);
    });
}

#[test]
fn list_shows_containers() {
    berth_test(|b| {
        let empty = b.cmd(&["list", "--format", "json"]).ok();
        let docs: Value = serde_json::from_slice(&empty.stdout).unwrap();
        assert_eq!(docs, serde_json::json!([]));

        let a = b.id("list-a");
        let c = b.id("list-b");
        b.create(&a, &b.config(SLEEPER));
        b.create_and_start(&c, &b.config(SLEEPER));

        let table = b.cmd(&["list"]).ok().out();
        let row = |id: &str| {
            table
                .lines()
                .find(|l| l.starts_with(id))
                .unwrap_or_else(|| panic!("{id} missing from:\n{table}"))
                .to_string()
        };
        assert!(table.lines().next().unwrap().contains("STATUS"), "{table}");
        assert!(row(&a).contains("created"), "{table}");
        assert!(row(&c).contains("running"), "{table}");

        let json = b.cmd(&["list", "--format", "json"]).ok();
        let docs: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
        let status_of = |id: &str| {
            docs.iter()
                .find(|d| d["id"] == id)
                .unwrap_or_else(|| panic!("{id} missing from {docs:?}"))["status"]
                .clone()
        };
        assert_eq!(docs.len(), 2);
        assert_eq!(status_of(&a), "created");
        assert_eq!(status_of(&c), "running");

        let quiet = b.cmd(&["list", "-q"]).ok().out();
        let mut ids: Vec<&str> = quiet.lines().collect();
        ids.sort_unstable();
        let mut want = vec![a.as_str(), c.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want);

        b.delete_force(&a);
        b.delete_force(&c);
    });
}

#[test]
fn run_returns_the_exit_code() {
    berth_test(|b| {
        let out = b.run(&b.id("echo"), &b.config(&["sh", "-c", "echo hello"]));
        assert_eq!(out.code(), 0, "{}", out.err());
        assert_eq!(out.out(), "hello\n");

        let out = b.run(&b.id("seven"), &b.config(&["sh", "-c", "exit 7"]));
        assert_eq!(out.code(), 7, "{}", out.err());

        // Pid 1 of a pid namespace cannot signal itself: share the host's pid namespace so that
        // `kill $$` is a real signal death.
        let mut c = b.config(&["sh", "-c", "kill -9 $$"]);
        common::remove_namespace(&mut c, "pid");
        let out = b.run(&b.id("nine"), &c);
        assert_eq!(out.code(), 137, "{}", out.err());

        let mut c = b.config(&["sh", "-c", "kill -15 $$"]);
        common::remove_namespace(&mut c, "pid");
        let out = b.run(&b.id("term"), &c);
        assert_eq!(out.code(), 128 + 15, "{}", out.err());
    });
}

#[test]
fn run_detached() {
    berth_test(|b| {
        let id = b.id("detached");
        let bundle = b.bundle(&id, &b.config(SLEEPER));
        b.cmd(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id])
            .ok();
        let state = b.state(&id);
        assert_eq!(state["status"], "running", "{state}");
        let pid = i32::try_from(state["pid"].as_i64().unwrap()).unwrap();
        b.track_pid(pid);
        assert!(common::is_alive(pid));
        b.kill_and_wait(&id, "TERM");
        b.delete(&id);
    });
}

#[test]
fn twenty_concurrent_creates() {
    berth_test(|b| {
        let ids: Vec<String> = (0..20).map(|i| b.id(&format!("many{i}"))).collect();
        std::thread::scope(|s| {
            for id in &ids {
                s.spawn(move || b.create(id, &b.config(SLEEPER)));
            }
        });
        let json = b.cmd(&["list", "--format", "json"]).ok();
        let docs: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(docs.len(), 20, "{docs:?}");
        assert!(docs.iter().all(|d| d["status"] == "created"), "{docs:?}");
        std::thread::scope(|s| {
            for id in &ids {
                s.spawn(move || b.delete_force(id));
            }
        });
    });
}

/// Without a pid namespace, killing the init does not end its children: `kill --all` (what
/// podman sends for `--pid=host`) and `delete --force` must reach every process.
#[test]
fn kill_all_and_delete_force_without_a_pid_namespace() {
    berth_test(|b| {
        let script = "sleep 1000 & sleep 1000 & wait";
        for (name, how) in [("killall", "kill --all"), ("forcedel", "delete --force")] {
            let id = b.id(name);
            let mut c = b.config(&["sh", "-c", script]);
            common::remove_namespace(&mut c, "pid");
            b.create_and_start(&id, &c);
            let mut procs = Vec::new();
            assert!(
                common::poll_until(common::STATUS_TIMEOUT, || {
                    procs = common::tagged_processes(&b.tag);
                    procs.len() == 3
                }),
                "{name}: want sh and two sleeps, got {procs:?}"
            );
            // The children are reparented to this test process (the subreaper): reap them too.
            for (pid, _) in &procs {
                b.track_pid(*pid);
            }
            if how == "kill --all" {
                b.kill_all_and_wait(&id, "KILL");
                b.assert_no_processes();
                b.delete(&id);
            } else {
                b.delete_force(&id);
                b.assert_no_processes();
            }
        }
    });
}

/// Commands that need a live container refuse a stopped one clearly.
#[test]
fn exec_pause_update_refuse_a_stopped_container() {
    berth_test(|b| {
        let id = b.id("stopped");
        b.create_and_start(&id, &b.config(&["true"]));
        b.wait_status(&id, "stopped");
        b.cmd(&["exec", &id, "true"])
            .fails_with("stopped container");
        b.cmd(&["pause", &id]).fails_with("stopped");
        b.cmd(&["resume", &id]).fails_with("not paused");
        b.cmd(&["update", "--pids-limit", "5", &id])
            .fails_with("not running");
        b.delete(&id);
    });
}
