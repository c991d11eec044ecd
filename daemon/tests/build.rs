//! `docker build` against berthd (docker's classic builder protocol, `POST /build`): the
//! docker CLI 28 and 20.10 with `DOCKER_BUILDKIT=0`, a base image pulled from the registry
//! on first use, the cache across builds, a failing step, `.dockerignore` applied by the
//! client, and a hostile context tar.

mod common;

use std::fs;
use std::path::Path;

use common::{Daemon, OutputExt, IMAGE};

fn context(d: &Daemon, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = d.dir.path().join(name);
    for (f, content) in files {
        let p = dir.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    dir
}

fn classic_build(d: &Daemon, cli20: bool, args: &[&str], ctx: &Path) -> std::process::Output {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let mut cmd = if cli20 {
        d.docker20_cmd(&all)
    } else {
        d.docker_cmd(&all)
    };
    cmd.env("DOCKER_BUILDKIT", "0");
    common::run_with_timeout(cmd, None, common::COMMAND_TIMEOUT)
}

#[test]
fn docker_build_builds_caches_and_runs() {
    // No pull first: the build pulls its base image.
    let d = Daemon::start();
    let dockerfile = format!(
        "FROM {IMAGE}\nARG WHO=world\nENV GREETING=hello\nWORKDIR /app\nCOPY . .\n\
         RUN echo \"$GREETING $WHO\" > /app/out && cat /app/out\nCMD [\"cat\", \"/app/out\", \"/app/data.txt\"]\n"
    );
    let ctx = context(
        &d,
        "ctx",
        &[
            ("Dockerfile", &dockerfile),
            ("data.txt", "data\n"),
            ("ignored.log", "no\n"),
            (".dockerignore", "*.log\n"),
        ],
    );
    let out = classic_build(
        &d,
        false,
        &["-t", "built:1", "--build-arg", "WHO=berth"],
        &ctx,
    );
    let text = out.ok("docker build").out();
    assert!(text.contains("hello berth"), "{text}");
    assert!(text.contains("Successfully tagged built:1"), "{text}");
    assert_eq!(
        d.docker_ok(&["run", "--rm", "built:1"]),
        "hello berth\ndata\n"
    );
    assert_eq!(
        d.docker_ok(&["run", "--rm", "built:1", "ls", "-A", "/app"]),
        ".dockerignore\nDockerfile\ndata.txt\nout\n"
    );
    let id = d.inspect("built:1", "{{.Id}}");
    // The same build with the 20.10 CLI: every step from the cache, the same image.
    let again = classic_build(
        &d,
        true,
        &["-t", "built:2", "--build-arg", "WHO=berth"],
        &ctx,
    );
    let text = again.ok("docker(20.10) build").out();
    assert!(text.contains("Using cache"), "{text}");
    assert_eq!(d.inspect("built:2", "{{.Id}}"), id);
    // A failing step: the CLI exits non-zero with the step's command and status.
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN exit 7\n"),
    )
    .unwrap();
    let failed = classic_build(&d, false, &["-t", "broken"], &ctx);
    assert!(!failed.status.success());
    let err = format!("{}{}", failed.out(), failed.err());
    assert!(
        err.contains("returned a non-zero code: 7") && err.contains("exit 7"),
        "{err}"
    );
    assert!(!d.docker(&["image", "inspect", "broken"]).status.success());
    d.docker_ok(&["rmi", "built:1", "built:2"]);
    d.finish();
}

#[test]
fn hostile_build_requests_get_docker_errors() {
    let d = Daemon::with_image();
    // A context tar with an entry escaping upwards.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let body = format!("FROM {IMAGE}\n");
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "Dockerfile", body.as_bytes())
        .unwrap();
    let ok_tar = tar.into_inner().unwrap();
    let resp = d.request("POST", "/build?t=fine:1", Some(&ok_tar));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("\"aux\""), "{}", resp.text());
    let resp = d.request("POST", "/build?dockerfile=nosuch", Some(&ok_tar));
    assert!(
        resp.text().contains("Cannot locate specified Dockerfile"),
        "{}",
        resp.text()
    );
    let resp = d.request("POST", "/build?buildargs=%7Bnot-json", Some(&ok_tar));
    assert_eq!(resp.status, 400, "{}", resp.text());
    let resp = d.request("POST", "/build?t=BAD%20NAME", Some(&ok_tar));
    assert_eq!(resp.status, 400, "{}", resp.text());
    let resp = d.request("POST", "/build?version=2", Some(&ok_tar));
    assert_eq!(resp.status, 400, "{}", resp.text());
    let resp = d.request(
        "POST",
        "/build",
        Some(b"this is not a tar at all, not even close......"),
    );
    assert!(resp.text().contains("error"), "{}", resp.text());
    let resp = d.request("POST", "/build/prune", None);
    assert_eq!(resp.status, 200, "{}", resp.text());
    d.docker_ok(&["rmi", "fine:1"]);
    d.finish();
}
