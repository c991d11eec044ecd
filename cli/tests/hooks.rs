//! OCI hooks through `berth`: all six stages run in order (prestart, createRuntime,
//! createContainer, startContainer, poststart, poststop), each reading the state JSON with the
//! right id and status on stdin; a failing prestart fails `create` and leaves nothing behind;
//! failing poststart and poststop hooks only warn; a hook that never reads its stdin is fine;
//! a hook that outlives its timeout fails `create` and is killed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{berth_test, Berth, OutputExt, SLEEPER};
use serde_json::{json, Value};

/// A hook running `script` with the host's busybox sh (tagged, so a leftover is found).
fn host_hook(b: &Berth, script: &str) -> Value {
    json!({
        "path": common::BUSYBOX,
        "args": ["busybox", "sh", "-c", script],
        "env": ["PATH=/bin:/usr/bin", format!("BERTH_TEST_TAG={}", b.tag)],
    })
}

/// A hook that appends `<stage> <state JSON from stdin>` to `log`.
fn logging_hook(b: &Berth, stage: &str, log: &Path) -> Value {
    host_hook(b, &format!("echo \"{stage} $(cat)\" >> {}", log.display()))
}

/// The log that [`logging_hook`]s write to: `log` in the test's directory `hooklog`, which a
/// container can bind-mount.
fn hook_log(b: &Berth) -> PathBuf {
    b.dir("hooklog").join("log")
}

/// The logged lines as (stage, state).
fn read_log(log: &Path) -> Vec<(String, Value)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (stage, json) = l.split_once(' ').unwrap();
            let state = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {l}"));
            (stage.to_string(), state)
        })
        .collect()
}

#[test]
fn all_six_stages_run_in_order_with_the_state() {
    berth_test(|b| {
        let log = hook_log(b);
        let id = b.id("hooks");
        let mut c = b.config(SLEEPER);
        common::bind_mount(&mut c, log.parent().unwrap(), "/hooklog");
        c["hooks"] = json!({
            "prestart": [logging_hook(b, "prestart", &log)],
            "createRuntime": [logging_hook(b, "createRuntime", &log)],
            "createContainer": [logging_hook(b, "createContainer", &log)],
            // Runs inside the container: its path and the log are the container's.
            "startContainer": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", "echo \"startContainer $(cat)\" >> /hooklog/log"],
                "env": ["PATH=/bin"],
            }],
            "poststart": [logging_hook(b, "poststart", &log)],
            "poststop": [logging_hook(b, "poststop", &log)],
        });
        let pid = b.create(&id, &c);
        let stages =
            |log: &Path| -> Vec<String> { read_log(log).into_iter().map(|(s, _)| s).collect() };
        assert_eq!(
            stages(&log),
            ["prestart", "createRuntime", "createContainer"],
            "after create"
        );
        b.start(&id);
        assert_eq!(b.status(&id), "running");
        b.kill_and_wait(&id, "KILL");
        b.delete(&id);

        let entries = read_log(&log);
        let want = [
            ("prestart", "creating"),
            ("createRuntime", "creating"),
            ("createContainer", "creating"),
            ("startContainer", "created"),
            ("poststart", "running"),
            ("poststop", "stopped"),
        ];
        assert_eq!(
            entries.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            want.iter().map(|(s, _)| *s).collect::<Vec<_>>()
        );
        let bundle = b.path().join("bundles").join(&id);
        for ((stage, state), (_, status)) in entries.iter().zip(want) {
            assert_eq!(state["id"], id.as_str(), "{stage}: {state}");
            assert_eq!(state["status"], status, "{stage}: {state}");
            assert_eq!(
                state["bundle"],
                bundle.to_str().unwrap(),
                "{stage}: {state}"
            );
            assert!(state["ociVersion"].is_string(), "{stage}: {state}");
            if stage != "poststop" {
                assert_eq!(state["pid"], pid, "{stage}: {state}");
            }
        }
    });
}

#[test]
fn failing_prestart_fails_create_and_leaves_nothing() {
    berth_test(|b| {
        let id = b.id("badhook");
        let mut c = b.config(SLEEPER);
        c["hooks"] = json!({"prestart": [host_hook(b, "exit 3")]});
        let err = b.assert_create_fails(&id, &c, "prestart");
        assert!(err.contains("exit status 3"), "{err}");
    });
}

#[test]
fn failing_poststart_stops_the_container_and_poststop_only_warns() {
    berth_test(|b| {
        // runtime-spec 1.3, lifecycle step 9: a failing poststart hook fails `start` and stops the
        // container (it stays, stopped, for `delete`); poststop failures are warnings.
        let id = b.id("warnhook");
        let mut c = b.config(SLEEPER);
        c["hooks"] = json!({
            "poststart": [host_hook(b, "exit 4")],
            "poststop": [host_hook(b, "exit 5")],
        });
        b.create(&id, &c);
        b.cmd(&["start", &id]).fails_with("poststart hook #0");
        assert_eq!(b.status(&id), "stopped");
        let out = b.cmd(&["delete", &id]).ok();
        assert!(out.err().contains("poststop"), "{}", out.err());
        b.assert_gone(&id);
    });
}

#[test]
fn hook_that_never_reads_stdin_is_fine() {
    berth_test(|b| {
        let id = b.id("noread");
        let mut c = b.config(SLEEPER);
        // A state document larger than a pipe buffer (64 KiB): the writer must not block or fail.
        c["annotations"] = json!({"big": "x".repeat(100 * 1024)});
        let no_read = json!({"path": common::BUSYBOX, "args": ["busybox", "true"]});
        c["hooks"] = json!({
            "prestart": [no_read],
            "createRuntime": [no_read],
            "poststart": [no_read],
        });
        b.create_and_start(&id, &c);
        assert_eq!(b.status(&id), "running");
        b.delete_force(&id);
    });
}

/// A createRuntime hook running `script` with a one-second timeout fails `create` with
/// "timed out", and nothing of the container or the hook (the tagged processes) is left.
fn assert_slow_hook_times_out(name: &str, script: &str) {
    berth_test(|b| {
        let id = b.id(name);
        let mut c = b.config(SLEEPER);
        let mut hook = host_hook(b, script);
        hook["timeout"] = json!(1);
        c["hooks"] = json!({"createRuntime": [hook]});
        let err = b.assert_create_fails(&id, &c, "createRuntime");
        assert!(err.contains("timed out"), "{err}");
    });
}

#[test]
fn hook_timeout_fails_create_and_kills_the_hook() {
    assert_slow_hook_times_out("slowhook", "exec sleep 10");
}

/// A hook that forks (a shell script running a command) must not leave its children running
/// after berth gave up on it.
#[test]
fn hook_timeout_kills_the_hooks_children_too() {
    assert_slow_hook_times_out("slowtree", "sleep 10; echo never");
}

/// Kubernetes allows 256 KiB of annotations per object; they are part of the state document
/// that hooks read.
#[test]
fn hooks_with_kubernetes_sized_annotations() {
    berth_test(|b| {
        let id = b.id("bigstate");
        let log = hook_log(b);
        let mut c = b.config(SLEEPER);
        c["annotations"] = json!({"big": "x".repeat(256 * 1024 - 16)});
        c["hooks"] = json!({"prestart": [logging_hook(b, "prestart", &log)]});
        b.create(&id, &c);
        let entries = read_log(&log);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].1["annotations"], c["annotations"]);
        b.delete_force(&id);
    });
}
