//! Errors as engines see them. Exec errors: a program missing from `$PATH`, a missing path and
//! a non-executable file fail `create` (and `start`, if the program vanished) in runc's wording, and `run` exits 127 / 126; a config
//! without `process` creates but cannot start. Config errors: each bad config makes `create`
//! fail with one line naming the field, and leaves no state entry and no process; with
//! `--log F --log-format json` the error is a JSON line.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{berth_test, Berth, OutputExt};
use serde_json::{json, Value};

/// A program that disappears between `create` and `start` fails `start` with `needle`; the
/// init exits and the container can be deleted without `--force`.
fn start_fails_after_removal(b: &Berth, name: &str, program: &str, needle: &str) {
    let id = b.id(name);
    let path = b.rootfs.join(program.trim_start_matches('/'));
    fs::write(&path, "#!/bin/sh\necho no\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    b.create(&id, &b.config(&[program]));
    fs::remove_file(&path).unwrap();
    b.cmd(&["start", &id]).fails_with(needle);
    b.wait_status(&id, "stopped");
    b.delete(&id);
}

/// Programs that cannot be executed, as (container name, program, `run`'s exit code, runc's
/// wording): one missing from `$PATH`, a missing path and a file without the execute bit (see
/// [`add_non_executable_file`]).
const EXEC_ERRORS: [(&str, &str, i32, &str); 3] = [
    (
        "nocmd",
        "nonexistent-cmd",
        127,
        "executable file not found in $PATH",
    ),
    ("nopath", "/nonexistent", 127, "no such file or directory"),
    ("noexec", "/etc/not-executable", 126, "permission denied"),
];

/// Puts `/etc/not-executable`, a script without the execute bit, into the shared rootfs.
fn add_non_executable_file(b: &Berth) {
    let path = b.rootfs.join("etc/not-executable");
    fs::write(&path, "#!/bin/sh\necho no\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn exec_errors_use_runc_wording() {
    berth_test(|b| {
        add_non_executable_file(b);
        // `create` fails (runc looks the program up at create, and podman maps that message to
        // exit 127 / 126), leaving nothing behind.
        for (name, program, _, needle) in EXEC_ERRORS {
            b.assert_create_fails(&b.id(name), &b.config(&[program]), needle);
        }
        start_fails_after_removal(b, "gone", "/bin/vanishing", "no such file or directory");
    });
}

#[test]
fn run_exit_codes_for_start_errors() {
    berth_test(|b| {
        add_non_executable_file(b);
        for (name, program, code, needle) in EXEC_ERRORS {
            let out = b.run(&b.id(name), &b.config(&[program]));
            assert_eq!(out.code(), code, "{program}: {}", out.err());
            assert!(out.err().contains(needle), "{program}: {}", out.err());
        }
    });
}

#[test]
fn config_without_process_creates_but_cannot_start() {
    berth_test(|b| {
        let id = b.id("noproc");
        let mut c = b.config(&["true"]);
        c.as_object_mut().unwrap().remove("process");
        b.create(&id, &c);
        assert_eq!(b.status(&id), "created");
        let err = b.cmd(&["start", &id]).fails_with("process");
        assert!(err.contains("without a process"), "{err}");
        b.delete_force(&id);
    });
}

/// Writes `config` as the bundle of a new container and expects `create` to fail with exactly
/// one line of error that contains `needle`, leaving nothing behind.
fn create_fails(b: &Berth, name: &str, config: &[u8], needle: &str) {
    let id = b.id(name);
    let bundle = b.bundle(&id, &json!({}));
    fs::write(bundle.join("config.json"), config).unwrap();
    let out = b.cmd(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let err = out.fails_with(needle);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{name}: want one line of error, got:\n{err}"
    );
    b.assert_no_state(&id);
    b.assert_no_processes();
}

fn edited(b: &Berth, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut c = b.config(&["true"]);
    edit(&mut c);
    serde_json::to_vec(&c).unwrap()
}

#[test]
fn config_errors_name_the_field_and_leave_nothing() {
    berth_test(|b| {
        create_fails(b, "badjson", b"{\"ociVersion\": ", "config.json");
        create_fails(
            b,
            "noroot",
            &edited(b, |c| {
                c.as_object_mut().unwrap().remove("root");
            }),
            "root",
        );
        let n = b.config(&["true"])["mounts"].as_array().unwrap().len();
        create_fails(
            b,
            "reldest",
            &edited(b, |c| {
                c["mounts"].as_array_mut().unwrap().push(
                    json!({"destination": "relative/dir", "type": "tmpfs", "source": "tmpfs"}),
                );
            }),
            &format!("mounts[{n}].destination"),
        );
        let ns = b.config(&["true"])["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .len();
        create_fails(
            b,
            "badns",
            &edited(b, |c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "bogus"}));
            }),
            &format!("linux.namespaces[{ns}].type"),
        );
        create_fails(
            b,
            "version",
            &edited(b, |c| c["ociVersion"] = json!("2.0.0")),
            "ociVersion",
        );
        create_fails(
            b,
            "rlimit",
            &edited(b, |c| {
                c["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]);
            }),
            "process.rlimits[0]",
        );
        create_fails(
            b,
            "norootfs",
            &edited(b, |c| {
                c["root"]["path"] = json!(b.path().join("no-such-rootfs"));
            }),
            "root.path",
        );
    });
}

#[test]
fn json_log_names_the_field() {
    berth_test(|b| {
        let id = b.id("jsonlog");
        let mut c = b.config(&["true"]);
        c["ociVersion"] = json!("2.0.0");
        let bundle = b.bundle(&id, &c);
        let log = b.path().join("berth.log");
        let out = b.cmd(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            &id,
        ]);
        assert!(!out.status.success());
        let text = fs::read_to_string(&log).unwrap();
        let last = text.lines().last().expect("an error line in the log");
        let line: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in ["level", "msg", "time"] {
            assert!(keys.contains(&key), "{key} missing from {last}");
        }
        assert_eq!(line["level"], "error", "{last}");
        assert!(
            line["msg"].as_str().unwrap().contains("ociVersion"),
            "{last}"
        );
        b.assert_no_state(&id);
    });
}

#[test]
fn invalid_ids_are_refused() {
    berth_test(|b| {
        let bundle = b.bundle("valid", &b.config(&["true"]));
        for id in ["../escape", "a/b", "with space", ".."] {
            b.cmd(&["create", "--bundle", bundle.to_str().unwrap(), id])
                .fails_with("invalid container id");
            b.cmd(&["state", id]).fails_with("invalid container id");
        }
        assert!(!b.path().join("escape").exists());
    });
}

#[test]
fn unwritable_pid_file_fails_create_and_leaves_nothing() {
    berth_test(|b| {
        let id = b.id("pidfile");
        let bundle = b.bundle(&id, &b.config(&["true"]));
        let pid_file = b.path().join("no-such-dir/pid");
        b.cmd(&[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ])
        .fails_with("no-such-dir");
        b.assert_no_state(&id);
    });
}

#[test]
fn uid_or_gid_minus_one_is_refused() {
    berth_test(|b| {
        // 4294967295 is (uid_t)-1: setresuid(-1) would leave the process root.
        for (field, path) in [("process.user.uid", "uid"), ("process.user.gid", "gid")] {
            let mut c = b.config(&["true"]);
            c["process"]["user"][path] = json!(4_294_967_295_u32);
            b.assert_create_fails(&b.id(&format!("minus-one-{path}")), &c, field);
        }
        let mut c = b.config(&["true"]);
        c["process"]["user"]["additionalGids"] = json!([10, 4_294_967_295_u32]);
        b.try_create(&b.id("minus-one-groups"), &c)
            .fails_with("process.user.additionalGids[1]");
    });
}

#[test]
fn an_etc_passwd_that_is_not_a_file_is_not_read() {
    berth_test(|b| {
        // The image controls /etc/passwd: a symlink to /dev/zero (or a FIFO) must not make the
        // init read forever while it looks up HOME.
        let rootfs = b.new_rootfs("zero-passwd");
        let _ = fs::remove_file(rootfs.join("etc/passwd"));
        std::os::unix::fs::symlink("/dev/zero", rootfs.join("etc/passwd")).unwrap();
        let mut c = b.config(&["sh", "-c", "echo HOME=$HOME"]);
        c["root"]["path"] = json!(rootfs);
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .retain(|e| !e.as_str().unwrap_or("").starts_with("HOME="));
        assert_eq!(b.run_ok("zero-passwd", &c).out().trim(), "HOME=/");
    });
}

/// The lean `berth` hands what it does not serve to `berth-tools`: without one beside it (or
/// at `$BERTH_TOOLS`) such a command fails with 127 and says what is missing, while runc's
/// commands keep working; `$BERTH_TOOLS` names another place.
#[test]
fn a_missing_berth_tools_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("berth");
    fs::copy(common::BERTH, &lone).unwrap();
    let run = |args: &[&str], tools: Option<&str>| {
        let mut cmd = std::process::Command::new(&lone);
        cmd.args(args).env_remove("BERTH_TOOLS");
        if let Some(t) = tools {
            cmd.env("BERTH_TOOLS", t);
        }
        cmd.output().unwrap()
    };
    let out = run(&["images"], None);
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("berth-tools") && err.contains("BERTH_TOOLS"),
        "{err}"
    );
    let out = run(&["--version"], None);
    assert!(out.status.success());
    let beside = std::path::Path::new(common::BERTH).with_file_name("berth-tools");
    let out = run(&["--help"], Some(beside.to_str().unwrap()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pull"));
}
