//! Other clients than the docker CLI 28: the CLI 20.10 (API 1.41) and docker-py.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run_with_timeout, Daemon, OutputExt, IMAGE};

#[test]
fn cli_versions_negotiate_their_api() {
    let d = Daemon::start();
    let v = d.docker_ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(v.trim(), "1.47 1.47 linux");
    let v = d.docker20_ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]);
    assert_eq!(v.trim(), "1.47 1.41");
    d.finish();
}

#[test]
fn cli_20_10_pull_run_logs_exec_rm() {
    let d = Daemon::start();
    let out = d.docker20_ok(&["pull", IMAGE]);
    assert!(out.contains("Pull complete"), "{out}");
    let images = d.docker20_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains(&format!("{IMAGE}:latest")), "{images}");

    let hi = d.docker20(&["run", "--rm", IMAGE, "echo", "hi"]).ok("run");
    assert_eq!(hi.out(), "hi\n");
    let three = d.docker20(&["run", "--rm", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(three.code(), 3, "{}", three.err());
    let missing = d.docker20(&["run", "--rm", IMAGE, "nosuchcmd"]);
    assert_eq!(missing.code(), 127, "{}", missing.err());
    let piped = run_with_timeout(
        d.docker20_cmd(&["run", "-i", "--rm", IMAGE, "cat"]),
        Some(b"in20\n"),
        common::COMMAND_TIMEOUT,
    )
    .ok("run -i");
    assert_eq!(piped.out(), "in20\n");

    d.docker20_ok(&[
        "run",
        "-d",
        "--name",
        "old",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo l1; while :; do sleep 0.1; done",
    ]);
    let ok = common::poll_until(common::STATE_TIMEOUT, || {
        d.docker20_ok(&["logs", "old"]) == "l1\n"
    });
    assert!(ok, "{}", d.docker20_ok(&["logs", "old"]));
    let ps = d.docker20_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("old Up"), "{ps}");
    assert_eq!(d.docker20_ok(&["exec", "old", "echo", "ex"]), "ex\n");
    let four = d.docker20(&["exec", "old", "sh", "-c", "exit 4"]);
    assert_eq!(four.code(), 4);
    assert_eq!(
        d.docker20_ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "old"])
            .trim(),
        "running /old"
    );
    d.docker20_ok(&["stop", "old"]);
    assert_eq!(
        d.docker20_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "old"
        ])
        .trim(),
        "exited 0"
    );
    d.docker20_ok(&["rm", "old"]);
    assert!(d.docker20_ok(&["ps", "-aq"]).trim().is_empty());
    d.docker20_ok(&["rmi", IMAGE]);
    d.finish();
}

#[test]
fn docker_py_flows() {
    let d = Daemon::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker_py_flows.py");
    let mut c = Command::new("python3");
    c.arg(&script)
        .arg(format!("unix://{}", d.sock.display()))
        .arg(IMAGE);
    let out = run_with_timeout(c, None, common::COMMAND_TIMEOUT);
    assert!(
        out.status.success() && out.out().contains("all flows ok"),
        "docker-py flows failed:\n{}\n{}",
        out.out(),
        out.err()
    );
    d.finish();
}
