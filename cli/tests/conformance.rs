//! What the public OCI suites (runtime-tools validation, youki's contest) found berth doing
//! differently from runc, each reproduced with a real container: fd hygiene under a seccomp
//! profile that denies `close_range`, an inherited or joined mount namespace, unbindable
//! root propagation, `exec`'s runc flags, clearing atime options recursively, a time
//! namespace inside a user namespace, `linux.memoryPolicy`, the seccomp agent's listener
//! during `create`, symlinked `/proc`, the environment of `startContainer` hooks, signals to
//! a created container, `delete` right after `kill KILL`, and a read-only cgroup mount in a
//! user namespace on a hybrid host.

mod common;

use std::fs;
use std::time::Duration;

use common::{
    add_capability, add_env, add_namespace, berth_test, remove_namespace, user_namespace, Berth,
    OutputExt,
};
use serde_json::{json, Value};

/// `berth spec`'s config running `script` with `sh -c`, edited by `edit`.
fn script_config(b: &Berth, script: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = b.config(&["sh", "-c", script]);
    edit(&mut c);
    c
}

#[test]
fn a_profile_that_denies_close_range_or_getcwd_still_starts() {
    berth_test(|b| {
        // berth's own fd hygiene and cwd check come before the filter.
        let out = b.run_script("noclose", "echo started", |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["close_range", "getcwd"], "action": "SCMP_ACT_ERRNO"}],
            });
        });
        assert_eq!(out.trim(), "started");
        // And no host descriptor got through: only stdio is open in the container.
        let out = b.run_script("noclose-fds", "ls /proc/self/fd | wc -l", |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_KILL"}],
            });
        });
        // 0, 1, 2 and the directory ls reads.
        assert_eq!(out.trim(), "4", "{out}");
    });
}

#[test]
fn without_a_mount_namespace_the_hosts_is_inherited() {
    berth_test(|b| {
        let host = fs::read_link("/proc/self/ns/mnt").unwrap();
        let mut c = b.config(&["/bin/sleep", "30"]);
        remove_namespace(&mut c, "mount");
        c.as_object_mut().unwrap().remove("mounts");
        for field in ["maskedPaths", "readonlyPaths"] {
            c["linux"].as_object_mut().unwrap().remove(field);
        }
        c["root"]["readonly"] = json!(false);
        let id = b.id("inherit-mnt");
        let pid = b.create(&id, &c);
        assert_eq!(fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(), host);
        // The init is chrooted into root.path, nothing was mounted.
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/root")).unwrap(),
            fs::canonicalize(b.path().join("rootfs")).unwrap()
        );
        b.delete_force(&id);
        // Mounts and masks are skipped with a warning (nothing lands on the host's mount table);
        // what cannot be honoured without mounting is refused, naming the field.
        let before = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .count();
        let mut c = b.config(&["/bin/sleep", "30"]);
        remove_namespace(&mut c, "mount");
        c["root"]["readonly"] = json!(false);
        let id = b.id("inherit-mnt-skip");
        let out = b.try_create(&id, &c).ok();
        assert!(
            out.err().contains("linux.maskedPaths skipped"),
            "{}",
            out.err()
        );
        b.track(&id);
        b.track_pid(b.state(&id)["pid"].as_i64().unwrap() as i32);
        assert_eq!(
            fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .count(),
            before,
            "the host's mount table changed"
        );
        b.delete_force(&id);
        c["root"]["readonly"] = json!(true);
        b.try_create(&b.id("inherit-mnt-ro"), &c)
            .fails_with("root.readonly: needs a mount namespace");
    });
}

#[test]
fn a_mount_namespace_joined_by_path_is_used() {
    berth_test(|b| {
        let mut holder = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "60"])
            .spawn()
            .unwrap();
        let ns = format!("/proc/{}/ns/mnt", holder.id());
        assert!(common::poll_until(Duration::from_secs(5), || {
            fs::read_link(&ns).ok() != fs::read_link("/proc/self/ns/mnt").ok()
        }));
        let mut c = b.config(&["/bin/sleep", "30"]);
        remove_namespace(&mut c, "mount");
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "mount", "path": ns}));
        let id = b.id("join-mnt");
        let pid = b.create(&id, &c);
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
            fs::read_link(&ns).unwrap()
        );
        b.delete_force(&id);
        let _ = holder.kill();
        let _ = holder.wait();
    });
}

#[test]
fn root_propagation_unbindable_is_applied() {
    berth_test(|b| {
        let script = "mkdir -p /tmp/t && if mount --bind / /tmp/t 2>/dev/null; then echo bindable; else echo unbindable; fi";
        for (prop, want) in [("unbindable", "unbindable"), ("private", "bindable")] {
            let out = b.run_script(&format!("prop-{prop}"), script, |c| {
                c["linux"]["rootfsPropagation"] = json!(prop);
                c["root"]["readonly"] = json!(false);
                add_capability(c, "CAP_SYS_ADMIN");
            });
            assert_eq!(out.trim(), want, "{prop}");
        }
    });
}

#[test]
fn clearing_an_atime_option_recursively_works() {
    berth_test(|b| {
        let src = b.dir("atime-src");
        for opt in ["ratime", "rnostrictatime", "rnorelatime"] {
            let out = b.run_script(
                &format!("atime-{opt}"),
                "grep ' /mnt ' /proc/self/mountinfo",
                |c| {
                    common::add_mount(
                        c,
                        json!({"destination": "/mnt", "type": "bind", "source": src,
                            "options": ["rbind", "noatime", opt]}),
                    );
                },
            );
            assert!(!out.contains("noatime"), "{opt}: {out}");
        }
    });
}

#[test]
fn exec_takes_runcs_flags_and_env_overrides() {
    berth_test(|b| {
        let mut c = b.config(&["/bin/sleep", "60"]);
        add_env(&mut c, "GREETING=old");
        let id = b.id("execflags");
        b.create_and_start(&id, &c);
        let out = b
            .cmd(&[
                "exec",
                "--env",
                "GREETING=new",
                &id,
                "sh",
                "-c",
                "env | grep GREETING",
            ])
            .ok();
        assert_eq!(out.out().trim(), "GREETING=new");
        // --cap adds to bounding, effective and permitted.
        let out = b
            .cmd(&[
                "exec",
                "--cap",
                "CAP_SYS_TIME",
                &id,
                "grep",
                "CapEff",
                "/proc/self/status",
            ])
            .ok();
        let eff = u64::from_str_radix(out.out().split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_ne!(
            eff & (1 << 25),
            0,
            "CAP_SYS_TIME not effective: {}",
            out.out()
        );
        b.cmd(&["exec", "--cap", "CAP_NOPE", &id, "true"])
            .fails_with("--cap CAP_NOPE");
        // --process-label is ignored without SELinux; --apparmor is refused without AppArmor.
        b.cmd(&[
            "exec",
            "--process-label",
            "system_u:system_r:container_t:s0",
            &id,
            "true",
        ])
        .ok();
        b.cmd(&["exec", "--apparmor", "unconfined", &id, "true"])
            .fails_with("AppArmor");
        // --cgroup joins an existing sub-cgroup (here of the v1 pids hierarchy); a missing one
        // fails.
        let pid = b.state(&id)["pid"].as_i64().unwrap();
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let pids_path = own
            .lines()
            .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
            .expect("a v1 pids hierarchy");
        let sub = format!("/sys/fs/cgroup/pids{pids_path}/sub");
        fs::create_dir(&sub).unwrap();
        let out = b
            .cmd(&[
                "exec",
                "--cgroup",
                "pids:sub",
                &id,
                "cat",
                "/proc/self/cgroup",
            ])
            .ok();
        // The container has its own cgroup namespace: the path it sees ends in the sub-cgroup.
        assert!(
            out.out()
                .lines()
                .any(|l| l.contains(":pids:") && l.ends_with("/sub")),
            "{}",
            out.out()
        );
        fs::remove_dir(&sub).unwrap();
        b.cmd(&["exec", "--cgroup", "missing-sub", &id, "true"])
            .fails_with("missing-sub");
        // --ignore-paused: refused without it, runs (frozen until resume) with it.
        b.cmd(&["pause", &id]).ok();
        b.cmd(&["exec", &id, "true"]).fails_with("--ignore-paused");
        let exec_pid = b.exec_detached(&id, &["--ignore-paused"], &["true"]);
        b.cmd(&["resume", &id]).ok();
        // The detached process is ours to reap (we are the subreaper): until it is, the
        // container's pid namespace cannot end.
        assert!(common::poll_until(
            Duration::from_secs(10),
            || common::reap(exec_pid)
        ));
        b.delete_force(&id);
    });
}

#[test]
fn time_namespace_inside_a_user_namespace() {
    berth_test(|b| {
        let out = b.run_script("timens-userns", "cut -d. -f1 /proc/uptime", |c| {
            user_namespace(c, 0);
            add_namespace(c, "time");
            c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864_000, "nanosecs": 0}});
        });
        let inside: u64 = out.trim().parse().unwrap();
        assert!(inside >= 864_000, "boottime offset not applied: {inside}");
    });
}

#[test]
fn memory_policy_is_applied_or_refused_clearly() {
    berth_test(|b| {
        let out = b.run_script(
            "mempolicy",
            "grep -m1 -o 'bind:0' /proc/self/numa_maps",
            |c| {
                c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
            },
        );
        assert_eq!(out.trim(), "bind:0");
        let c = script_config(b, "true", |c| {
            c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0-9876543210"});
        });
        b.try_create(&b.id("mempolicy-bad"), &c)
            .fails_with("linux.memoryPolicy.nodes");
        let c = script_config(b, "true", |c| {
            c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_NOPE"});
        });
        b.try_create(&b.id("mempolicy-mode"), &c)
            .fails_with("linux.memoryPolicy");
        let features: Value = serde_json::from_str(&b.cmd(&["features"]).ok().out()).unwrap();
        assert!(features["linux"]["memoryPolicy"]["modes"]
            .as_array()
            .unwrap()
            .contains(&json!("MPOL_BIND")));
    });
}

#[test]
fn the_seccomp_agent_gets_its_listener_during_create() {
    berth_test(|b| {
        let sock = b.path().join("agent.sock");
        // Dropping the listener ends the agent's part (notified calls then fail with ENOSYS).
        let agent = common::spawn_seccomp_agent(&sock, |fd, state| (fd.is_some(), state));
        let mut c = b.config(&["/bin/sleep", "30"]);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}],
        });
        let id = b.id("notify-create");
        let pid = b.create(&id, &c);
        // Before `start`: the agent already has the listener and the state.
        let (got_fd, state) = agent.join().unwrap();
        assert!(got_fd);
        assert_eq!(state["state"]["pid"], json!(pid));
        assert_eq!(state["state"]["id"], json!(id));
        b.start(&id);
        assert_eq!(b.status(&id), "running");
        b.delete_force(&id);
    });
}

#[test]
fn a_symlinked_proc_in_the_rootfs_is_refused() {
    berth_test(|b| {
        let rootfs = b.new_rootfs("symlinked-proc");
        let _ = fs::remove_dir(rootfs.join("proc"));
        fs::create_dir_all(rootfs.join("decoy")).unwrap();
        std::os::unix::fs::symlink("decoy", rootfs.join("proc")).unwrap();
        let mut c = b.config(&["true"]);
        c["root"]["path"] = json!(rootfs);
        let out = b.try_create(&b.id("symproc"), &c);
        let err = out.fails_with("is a symlink");
        assert!(err.contains("/proc"), "{err}");
    });
}

#[test]
fn start_container_hooks_inherit_the_process_env() {
    berth_test(|b| {
        let out_file = b.path().join("out").join("hook-env");
        let mut c = b.config(&["true"]);
        add_env(&mut c, "FROM_PROCESS=yes");
        common::bind_mount(&mut c, &b.path().join("out"), "/out");
        c["hooks"] = json!({"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "env > /out/hook-env"]},
        ]});
        b.run_ok("hookenv", &c);
        let env = fs::read_to_string(out_file).unwrap();
        assert!(env.contains("FROM_PROCESS=yes"), "{env}");
    });
}

#[test]
fn kill_term_ends_a_created_container() {
    berth_test(|b| {
        let id = b.id("killcreated");
        b.create(&id, &b.config(&["/bin/sleep", "60"]));
        b.kill_and_wait(&id, "TERM");
        b.delete(&id);
    });
}

#[test]
fn delete_right_after_kill_or_a_failed_start_never_races() {
    berth_test(|b| {
        for i in 0..20 {
            let id = b.id(&format!("killdel{i}"));
            b.create_and_start(&id, &b.config(&["/bin/sleep", "60"]));
            b.cmd(&["kill", &id, "KILL"]).ok();
            b.delete(&id);
        }
        for i in 0..10 {
            let id = b.id(&format!("faildel{i}"));
            let mut c = b.config(&["/bin/sleep", "60"]);
            c["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
            b.create(&id, &c);
            b.cmd(&["start", &id]).fails_with("startContainer");
            b.delete(&id);
        }
    });
}

#[test]
fn read_only_cgroup_mount_in_a_user_namespace() {
    berth_test(|b| {
        let out = b.run_script("userns-cgroup-ro",
            "ls /sys/fs/cgroup | head -1 >/dev/null; if touch /sys/fs/cgroup/x 2>/dev/null; then echo writable; else echo ro; fi",
            |c| {
                user_namespace(c, 0);
                let mounts = c["mounts"].as_array_mut().unwrap();
                mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
                mounts.push(json!({
                    "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                    "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
                }));
            },
        );
        assert_eq!(out.trim(), "ro");
    });
}
