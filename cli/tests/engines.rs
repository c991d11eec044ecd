//! The config.json files that podman, docker and containerd wrote on this kind of machine
//! (tests/fixtures/engines): each runs under berth with only host-specific parts rewritten —
//! the rootfs, bind sources that do not exist here, and docker's `/proc/<pid>/exe` prestart
//! hook. `linux.cgroupsPath` and `linux.resources` are kept. Each engine's own call sequence
//! (tests/fixtures/engines/runtime-calls.txt) is replayed too: flags, `--log-format json`, pid file, delete then
//! delete --force.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{berth_test, Berth, OutputExt};
use serde_json::{json, Value};

/// Loads `<engine>.example.config.json` and adapts it to this host; returns the config and
/// whether its `root.path` is relative to the bundle (then the bundle needs a `rootfs`).
fn engine_config(b: &Berth, engine: &str, args: &[&str]) -> (Value, bool) {
    let path = common::engine_fixture(engine, "config");
    let mut c: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let relative = !Path::new(c["root"]["path"].as_str().unwrap()).is_absolute();
    // The engine's cgroup path, made unique to this test: containers running at the same time
    // cannot share a cgroup.
    let cgroup = format!("{}-{}", c["linux"]["cgroupsPath"].as_str().unwrap(), b.tag);
    c["linux"]["cgroupsPath"] = json!(cgroup);
    if !relative {
        c["root"]["path"] = json!(b.rootfs);
    }
    let host = b.dir(&format!("{engine}-host"));
    for (i, m) in c["mounts"].as_array_mut().unwrap().iter_mut().enumerate() {
        let is_bind = m["type"] == "bind"
            || m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
        let source = m["source"].as_str().unwrap_or_default();
        if !is_bind || Path::new(source).exists() {
            continue;
        }
        let replacement = host.join(format!("mount{i}"));
        if m["destination"] == "/dev/shm" {
            fs::create_dir(&replacement).unwrap();
        } else {
            fs::write(&replacement, format!("{engine} {i}\n")).unwrap();
        }
        m["source"] = json!(replacement);
    }
    if let Some(hooks) = c["hooks"].as_object_mut() {
        for list in hooks.values_mut() {
            list.as_array_mut().unwrap().retain(|h| {
                let p = h["path"].as_str().unwrap();
                // docker's libnetwork-setkey is /proc/<dockerd pid>/exe: not here.
                Path::new(p).exists() && !p.starts_with("/proc/")
            });
        }
    }
    b.set_process(&mut c, args);
    (c, relative)
}

/// Writes the bundle; a relative `root.path` ("rootfs", as containerd writes it) gets a
/// `rootfs` symlink to the shared busybox rootfs.
fn engine_bundle(b: &Berth, id: &str, config: &Value, relative: bool) -> PathBuf {
    let bundle = b.bundle(id, config);
    if relative {
        let root = config["root"]["path"].as_str().unwrap();
        symlink(&b.rootfs, bundle.join(root)).unwrap();
    }
    bundle
}

fn runs_echo_ok(engine: &str) {
    berth_test(|b| {
        let (c, relative) = engine_config(b, engine, &["sh", "-c", "echo ok"]);
        assert!(
            c["linux"]["cgroupsPath"].is_string() && c["linux"]["resources"].is_object(),
            "the fixture keeps its cgroup settings"
        );
        let id = b.id(engine);
        let bundle = engine_bundle(b, &id, &c, relative);
        let out = b.cmd(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        assert_eq!(out.code(), 0, "{engine}: {}", out.err());
        assert_eq!(out.out(), "ok\n", "{engine}: {}", out.err());
    });
}

#[test]
fn podman_config_runs() {
    runs_echo_ok("podman");
}

#[test]
fn docker_config_runs() {
    runs_echo_ok("docker");
}

#[test]
fn containerd_config_runs() {
    runs_echo_ok("containerd");
}

/// The process writes `ok` to a bind-mounted results directory (a created container's stdout
/// is the creating command's).
fn results_mount(b: &Berth, c: &mut Value) -> PathBuf {
    let results = b.dir("results");
    common::bind_mount(c, &results, "/results");
    results.join("out")
}

/// conmon: `--log-format=json --log L create --bundle B --pid-file P ID`, `start`,
/// `delete --force`; no `--root` (here: a per-test one all the same).
#[test]
fn podman_call_sequence() {
    berth_test(|b| {
        let (mut c, relative) = engine_config(b, "podman", &["sh", "-c", "echo ok > /results/out"]);
        let result = results_mount(b, &mut c);
        let id = b.id("podman-seq");
        let bundle = engine_bundle(b, &id, &c, relative);
        let log = bundle.join("oci-log");
        let pid_file = bundle.join("pidfile");
        let mut create = vec!["--log-format=json", "--log", log.to_str().unwrap()];
        create.extend(common::create_args(&bundle, &pid_file, &id));
        b.cmd(&create).ok();
        b.track_pid_file(&pid_file);
        b.start(&id);
        b.wait_status(&id, "stopped");
        assert_eq!(fs::read_to_string(&result).unwrap(), "ok\n");
        b.delete_force(&id);
        for line in fs::read_to_string(&log).unwrap_or_default().lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_ne!(v["level"], "error", "{line}");
        }
    });
}

/// containerd-shim: every call has `--log L --log-format json`; after the init exits it
/// calls `delete` and then `delete --force`, which must succeed on the missing container.
#[test]
fn containerd_call_sequence() {
    berth_test(|b| {
        let (mut c, relative) =
            engine_config(b, "containerd", &["sh", "-c", "echo ok > /results/out"]);
        let result = results_mount(b, &mut c);
        let id = b.id("w0");
        let bundle = engine_bundle(b, &id, &c, relative);
        let log = bundle.join("log.json");
        let pid_file = bundle.join("init.pid");
        let shim = |args: &[&str]| {
            let mut all = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
            all.extend_from_slice(args);
            b.cmd(&all)
        };
        shim(&common::create_args(&bundle, &pid_file, &id)).ok();
        b.track_pid_file(&pid_file);
        shim(&["start", &id]).ok();
        b.wait_status(&id, "stopped");
        assert_eq!(fs::read_to_string(&result).unwrap(), "ok\n");
        shim(&["delete", &id]).ok();
        shim(&["delete", "--force", &id]).ok();
    });
}

/// dockerd (through containerd's shim) stops a container with `kill ID 15` then `kill ID 9`;
/// the second may find it already gone and must say so in the words containerd matches.
#[test]
fn docker_stop_sequence() {
    berth_test(|b| {
        let (c, relative) = engine_config(b, "docker", common::SLEEPER);
        let id = b.id("docker-stop");
        let bundle = engine_bundle(b, &id, &c, relative);
        let pid_file = bundle.join("init.pid");
        b.cmd(&common::create_args(&bundle, &pid_file, &id)).ok();
        b.track_pid_file(&pid_file);
        b.start(&id);
        assert_eq!(b.status(&id), "running");
        b.kill_and_wait(&id, "15");
        let err = b.cmd(&["kill", &id, "9"]).fails_with("not running");
        assert!(err.contains("container not running"), "{err}");
        b.delete(&id);
    });
}

/// runtime-calls.txt ("error path: missing binary" / "not executable"): runc fails `create`
/// with the exec error in its `--log` JSON, and podman maps that text to exit 127 / 126 without
/// ever calling `start`. If `create` succeeds, podman's `start` error carries no such mapping.
#[test]
fn podman_missing_binary_fails_create_with_the_error_in_the_json_log() {
    for (name, program, needle) in [
        ("missing", "/nonexistent", "no such file or directory"),
        ("notexec", "/etc/passwd", "permission denied"),
    ] {
        // A fresh environment per case: the engine fixture's host files have fixed names.
        berth_test(|b| {
            let (c, relative) = engine_config(b, "podman", &[program]);
            let id = b.id(name);
            let bundle = engine_bundle(b, &id, &c, relative);
            let log = bundle.join("oci-log");
            let pid_file = bundle.join("pidfile");
            let mut create = vec!["--log-format=json", "--log", log.to_str().unwrap()];
            create.extend(common::create_args(&bundle, &pid_file, &id));
            let out = b.cmd(&create);
            if out.status.success() {
                b.delete_force(&id);
            }
            assert!(!out.status.success(), "{program}: create succeeded");
            let text = fs::read_to_string(&log).unwrap_or_default();
            let last: Value = serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap();
            assert_eq!(last["level"], "error", "{text}");
            assert!(last["msg"].as_str().unwrap().contains(needle), "{text}");
            b.assert_no_state(&id);
        });
    }
}

/// containerd's shim (for `ctr run -t`, `docker run -t`) reads `create`'s stdout and stderr
/// pipes to EOF before it calls `start`: with a terminal, the waiting init must not keep
/// them open (they hung forever until berth made the pty its stdio at create, as runc does).
#[test]
fn terminal_create_closes_the_callers_output() {
    use std::io::Read;
    berth_test(|b| {
        let (socket, listener) = b.console_socket();
        let id = b.id("tty-pipes");
        let mut c = b.config(&["true"]);
        c["process"]["terminal"] = json!(true);
        let bundle = b.bundle(&id, &c);
        let pid_file = bundle.join("pid");
        b.track(&id);
        let mut child = std::process::Command::new(common::BERTH)
            .args(["--root", b.root.to_str().unwrap(), "create", "--bundle"])
            .arg(&bundle)
            .arg("--console-socket")
            .arg(&socket)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&id)
            .env("BERTH_TEST_TAG", &b.tag)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _conn = listener.accept().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stdout.read_to_end(&mut all);
            let _ = tx.send(all);
        });
        let status = child.wait().unwrap();
        assert!(status.success(), "create failed");
        b.track_pid_file(&pid_file);
        let eof = rx.recv_timeout(std::time::Duration::from_secs(5));
        b.delete_force(&id);
        assert!(
            eof.is_ok(),
            "the created init still holds create's stdout: a shim would never call start"
        );
    });
}

/// `exec` (docker, podman, ctr) puts the new process into the container's cgroups: it counts
/// against the limits and `ps` (docker top, ctr task ps), `kill --all` and the engines' stats
/// see it. A paused container refuses exec, as runc does (the process would freeze).
#[test]
fn exec_joins_the_container_cgroups() {
    berth_test(|b| {
        let id = b.id("exec-cg");
        let mut c = b.config(common::SLEEPER);
        c["linux"]["resources"] = json!({"pids": {"limit": 50}});
        b.create_and_start(&id, &c);
        let exec_pid = b.exec_detached(&id, &[], &["sleep", "300"]);
        let cgroup = fs::read_to_string(format!("/proc/{exec_pid}/cgroup")).unwrap();
        assert!(
            cgroup
                .lines()
                .any(|l| l.contains(":pids:") && l.ends_with(&format!("berth-{id}"))),
            "{cgroup}"
        );
        let pids = b.ps(&id);
        assert!(pids.contains(&exec_pid), "{pids:?} lacks {exec_pid}");
        b.cmd(&["pause", &id]).ok();
        b.cmd(&["exec", &id, "true"]).fails_with("paused");
        b.cmd(&["resume", &id]).ok();
        b.kill_all_and_wait(&id, "KILL");
        b.delete(&id);
    });
}

/// buildah's RUN configs (podman build) list ambient capabilities that their inheritable set
/// lacks; the kernel cannot raise those, and runc warns instead of failing: so does berth.
#[test]
fn ambient_capabilities_not_inheritable_are_skipped() {
    berth_test(|b| {
        let mut c = b.config(&["sh", "-c", "echo ok"]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_CHOWN", "CAP_KILL"],
        });
        let out = b.run_ok("ambient", &c);
        assert_eq!(out.out(), "ok\n");
        assert!(out.err().contains("CAP_CHOWN"), "{}", out.err());
    });
}
