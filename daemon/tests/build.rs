//! `docker build` against berthd (docker's classic builder protocol, `POST /build`): the
//! docker CLI 28 and 20.10 with `DOCKER_BUILDKIT=0`, a base image pulled from the registry
//! on first use, the cache across builds, a failing step, `.dockerignore` applied by the
//! client, a hostile context tar, and a client that goes away mid-build.

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

/// The step containers (`berth-build-*`) in berthd's runtime root.
fn step_containers(d: &Daemon) -> Vec<String> {
    fs::read_dir(d.exec_root.join("runtime"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("berth-build-"))
        .collect()
}

/// Processes whose cgroup path names container `id`.
fn processes_in_cgroup_of(id: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(id))
        })
        .collect()
}

#[test]
fn a_client_gone_mid_build_kills_the_step_and_leaves_nothing() {
    let d = Daemon::with_image();
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM {IMAGE}\nRUN echo started; sleep 60\n"),
        )],
    );
    let out = d.dir.path().join("build.out");
    let mut cmd = d.docker_cmd(&["build", "-t", "cancelled", ctx.to_str().unwrap()]);
    cmd.env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null());
    let mut client = cmd.spawn().unwrap();
    // The step runs (its output relayed) in a container on the bridge network.
    let mut step = Vec::new();
    let started = common::poll_until(common::STATE_TIMEOUT, || {
        step = step_containers(&d);
        !step.is_empty()
            && fs::read_to_string(&out)
                .unwrap_or_default()
                .contains("started")
    });
    assert!(
        started,
        "the step did not start: {}",
        fs::read_to_string(&out).unwrap_or_default()
    );
    let id = step[0].clone();
    let links =
        String::from_utf8_lossy(&d.nsenter(&["ip", "-o", "link", "show"]).stdout).into_owned();
    assert!(links.contains(" bv"), "the step has no veth: {links}");
    // The client goes away (as a Ctrl-C would end it).
    client.kill().unwrap();
    client.wait().unwrap();
    let tmp = d.data_root.join("tmp");
    let leases = d.data_root.join("net/ipam/berth.json");
    let mut left = String::new();
    let clean = common::poll_until(std::time::Duration::from_secs(10), || {
        let links =
            String::from_utf8_lossy(&d.nsenter(&["ip", "-o", "link", "show"]).stdout).into_owned();
        let lease = fs::read_to_string(&leases).unwrap_or_default();
        left = format!(
            "steps {:?}, mounts {:?}, cgroups {:?}, veth {}, lease {}, tmp {:?}",
            step_containers(&d),
            common::mounts_under(&tmp),
            common::cgroups_of(&id)
                .into_iter()
                .filter(|p| p.exists())
                .collect::<Vec<_>>(),
            links.contains(" bv"),
            lease.contains(&id),
            fs::read_dir(&tmp)
                .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        left == "steps [], mounts [], cgroups [], veth false, lease false, tmp []"
    });
    assert!(clean, "left after the client went away: {left}");
    // No process of the step either, and berthd still serves.
    let sleeping = processes_in_cgroup_of(&id);
    assert!(
        sleeping.is_empty(),
        "the step's process runs on: {sleeping:?}"
    );
    assert!(!d
        .docker(&["image", "inspect", "cancelled"])
        .status
        .success());
    assert_eq!(
        d.docker_ok(&["run", "--rm", IMAGE, "echo", "served"]),
        "served\n"
    );
    d.finish();
}
