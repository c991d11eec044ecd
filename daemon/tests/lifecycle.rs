//! A detached container's life through the docker CLI: ps, logs (tail, follow), exec,
//! stop, start, restart, inspect, rm; restart policies; the event stream.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{poll_until, Daemon, OutputExt, IMAGE, STATE_TIMEOUT};

/// Prints line1..line5, then waits; exits 0 on SIGTERM, saying bye.
const SERVICE: &str =
    "trap 'echo bye; exit 0' TERM; for i in 1 2 3 4 5; do echo line$i; done; while :; do sleep 0.1; done";

#[test]
fn detached_container_ps_logs_exec_stop_start_restart_rm() {
    let d = Daemon::with_image();
    let id = d
        .docker_ok(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", SERVICE])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.docker_ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&format!("{} web Up", &id[..12]))),
        "{ps}"
    );

    d.wait_logs("web", "line5");
    assert_eq!(
        d.docker_ok(&["logs", "web"]),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(
        d.docker_ok(&["logs", "--tail", "2", "web"]),
        "line4\nline5\n"
    );
    let ts = d.docker_ok(&["logs", "--timestamps", "--tail", "1", "web"]);
    assert!(ts.ends_with(" line5\n") && ts.contains('T'), "{ts}");

    assert_eq!(
        d.docker_ok(&["exec", "web", "echo", "from-exec"]),
        "from-exec\n"
    );
    let five = d.docker(&["exec", "web", "sh", "-c", "exit 5"]);
    assert_eq!(five.code(), 5, "{}", five.err());
    let six = d.docker(&["exec", "web", "sh", "-c", "echo some; exit 6"]);
    assert_eq!((six.code(), six.out().as_str()), (6, "some\n"));
    let piped = d
        .docker_stdin(
            &["exec", "-i", "web", "sh", "-c", "cat; echo done"],
            b"in\n",
        )
        .ok("exec -i");
    assert_eq!(piped.out(), "in\ndone\n");
    let missing = d.docker(&["exec", "web", "nosuchcmd"]);
    assert_eq!(missing.code(), 127, "{}", missing.err());
    assert!(
        missing
            .out()
            .contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{}",
        missing.out()
    );
    let denied = d.docker(&["exec", "web", "/etc/passwd"]);
    assert_eq!(denied.code(), 126, "{}{}", denied.out(), denied.err());
    // exec output is not the container's log.
    assert!(!d.docker_ok(&["logs", "web"]).contains("from-exec"));

    let state = "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.Name}}";
    assert_eq!(d.inspect("web", state), "running true 0 /web");
    assert_eq!(
        d.inspect("web", "{{json .Config.Cmd}}"),
        serde_json::json!(["sh", "-c", SERVICE]).to_string()
    );
    assert_eq!(d.inspect("web", "{{.Id}}"), id);
    assert_ne!(d.inspect("web", "{{.State.Pid}}"), "0");
    let first_start = d.inspect("web", "{{.State.StartedAt}}");

    assert_eq!(d.docker_ok(&["stop", "web"]).trim(), "web");
    assert_eq!(d.inspect("web", state), "exited false 0 /web");
    assert_eq!(d.inspect("web", "{{.State.Pid}}"), "0");
    assert!(d.docker_ok(&["logs", "web"]).ends_with("bye\n"));
    assert!(d.docker_ok(&["ps", "-q"]).trim().is_empty());
    let ps = d.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("web Exited (0)"), "{ps}");

    d.docker_ok(&["start", "web"]);
    assert_eq!(d.inspect("web", state), "running true 0 /web");
    let second_start = d.inspect("web", "{{.State.StartedAt}}");
    assert_ne!(first_start, second_start);
    d.docker_ok(&["restart", "web"]);
    assert_eq!(d.inspect("web", state), "running true 0 /web");
    assert_ne!(d.inspect("web", "{{.State.StartedAt}}"), second_start);
    // Every run's output stays in the log: three runs, three times line1.
    d.wait_logs(
        "web",
        "line5\nbye\nline1\nline2\nline3\nline4\nline5\nbye\nline1",
    );

    let running = d.docker(&["rm", "web"]);
    assert_ne!(running.code(), 0);
    assert!(
        running.err().contains("cannot remove a running container"),
        "{}",
        running.err()
    );
    assert_eq!(d.docker_ok(&["rm", "-f", "web"]).trim(), "web");
    let gone = d.docker(&["inspect", "web"]);
    assert_ne!(gone.code(), 0);
    assert!(gone.err().contains("No such"), "{}", gone.err());
    d.finish();
}

#[test]
fn logs_follow_ends_when_the_container_stops() {
    let d = Daemon::with_image();
    // Ends by itself: follow gets every line, then ends.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "short",
        IMAGE,
        "sh",
        "-c",
        "echo a; sleep 1; echo b",
    ]);
    let out = d.docker(&["logs", "-f", "short"]).ok("logs -f");
    assert_eq!(out.out(), "a\nb\n");

    // Stopped while followed.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "long",
        IMAGE,
        "sh",
        "-c",
        "echo first; exec sleep 1000",
    ]);
    d.wait_logs("long", "first");
    let mut follower = d
        .docker_cmd(&["logs", "-f", "long"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    d.docker_ok(&["stop", "-t", "1", "long"]);
    let ended = poll_until(STATE_TIMEOUT, || follower.try_wait().unwrap().is_some());
    if !ended {
        let _ = follower.kill();
        let _ = follower.wait();
        panic!("logs -f still follows a stopped container");
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    assert!(follower.wait().unwrap().success());
    assert_eq!(d.inspect("long", "{{.State.Status}}"), "exited");
    d.finish();
}

#[test]
fn restart_on_failure_stops_after_its_maximum() {
    let d = Daemon::with_image();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    d.wait_inspect("flaky", "{{.State.Status}} {{.RestartCount}}", "exited 2");
    assert_eq!(d.inspect("flaky", "{{.State.ExitCode}}"), "1");
    assert_eq!(
        d.inspect(
            "flaky",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:2"
    );
    // The first run and two restarts.
    assert_eq!(d.docker_ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    d.finish();
}

#[test]
fn restart_always_restarts_until_stopped() {
    let d = Daemon::with_image();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "always",
        IMAGE,
        "sh",
        "-c",
        "echo run; sleep 0.2",
    ]);
    let mut count = 0;
    let restarted = poll_until(STATE_TIMEOUT, || {
        count = d.inspect("again", "{{.RestartCount}}").parse().unwrap();
        count >= 3
    });
    assert!(restarted, "RestartCount {count}");
    d.docker_ok(&["stop", "again"]);
    assert_eq!(d.inspect("again", "{{.State.Status}}"), "exited");
    let stopped_at = d.inspect("again", "{{.RestartCount}}");
    // Stopped for good: it does not come back (its back-off is far below this).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.inspect("again", "{{.State.Status}}"), "exited");
    assert_eq!(d.inspect("again", "{{.RestartCount}}"), stopped_at);
    assert!(d.docker_ok(&["ps", "-q"]).trim().is_empty());
    d.finish();
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `docker events` between `since` and `until` (Unix seconds) with one filter, formatted.
fn events(d: &Daemon, since: &str, until: &str, filter: &str, format: &str) -> String {
    d.docker_ok(&[
        "events", "--since", since, "--until", until, "--filter", filter, "--format", format,
    ])
}

#[test]
fn events_list_create_start_die_destroy_of_a_run() {
    let d = Daemon::with_image();
    let since = unix_now().to_string();
    let id = d
        .docker_ok(&["run", "-d", "--name", "ev", IMAGE, "sh", "-c", "exit 2"])
        .trim()
        .to_string();
    d.wait_inspect("ev", "{{.State.Status}}", "exited");
    d.docker_ok(&["rm", "ev"]);
    let until = (unix_now() + 1).to_string();
    let out = events(
        &d,
        &since,
        &until,
        "type=container",
        "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    );
    let actions: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&id))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{out}");
    assert!(out.lines().any(|l| l == format!("die {id} ev 2")), "{out}");
    // Filtered by the container's name.
    let by_name = events(&d, &since, &until, "container=ev", "{{.Action}}");
    assert_eq!(by_name, "create\nstart\ndie\ndestroy\n");

    // docker stop: die, then stop (dockerd also sends a kill event first).
    let since = unix_now().to_string();
    d.docker_ok(&["run", "-d", "--name", "ev2", IMAGE, "sleep", "1000"]);
    d.docker_ok(&["stop", "-t", "1", "ev2"]);
    d.docker_ok(&["rm", "ev2"]);
    let until = (unix_now() + 1).to_string();
    let out = events(&d, &since, &until, "container=ev2", "{{.Action}}");
    let actions: Vec<&str> = out.lines().filter(|a| *a != "kill").collect();
    assert_eq!(
        actions,
        ["create", "start", "die", "stop", "destroy"],
        "{out}"
    );
    d.finish();
}

#[test]
fn kill_returns_once_the_container_is_dead() {
    let d = Daemon::with_image();
    for i in 0..3 {
        let name = format!("victim{i}");
        d.docker_ok(&["run", "-d", "--name", &name, IMAGE, "sleep", "1000"]);
        d.docker_ok(&["kill", &name]);
        // No race with the exit: it is recorded when kill returns.
        assert_eq!(
            d.inspect(&name, "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 137"
        );
        d.docker_ok(&["rm", &name]);
    }
    // Another signal is only sent.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hup",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-hup' HUP; while :; do sleep 0.1; done",
    ]);
    d.docker_ok(&["kill", "-s", "HUP", "hup"]);
    d.wait_logs("hup", "got-hup");
    assert_eq!(d.inspect("hup", "{{.State.Status}}"), "running");
    let stopped = d.docker(&["kill", "-s", "HUP", "nosuch"]);
    assert!(
        stopped.err().contains("No such container"),
        "{}",
        stopped.err()
    );
    d.finish();
}

#[test]
fn a_published_port_reaches_the_container() {
    let d = Daemon::with_image();
    // busybox httpd serves /etc.
    d.docker_ok(&[
        "run", "-d", "--name", "web", "-p", "8080:80", IMAGE, "httpd", "-f", "-p", "80", "-h",
        "/etc",
    ]);
    let port = d.docker_ok(&["port", "web", "80"]);
    assert!(port.contains(":8080"), "{port}");
    // A host address of the namespace (features.rs checks the loopback).
    let addrs = d
        .nsenter(&["ip", "-4", "-o", "addr", "show"])
        .ok("ip addr")
        .out();
    let host_ip = addrs
        .split_whitespace()
        .filter_map(|w| w.split_once('/').map(|(ip, _)| ip.to_string()))
        .find(|ip| {
            ip.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| !a.is_loopback())
        })
        .unwrap_or_else(|| panic!("no host address in the namespace:\n{addrs}"));
    let (served, page) = d.http_get_until(&host_ip, 8080, "group", "root:x:0:");
    assert!(served, "{host_ip}:8080 did not serve /etc/group: {page:?}");
    d.finish();
}

#[test]

fn a_port_published_on_a_free_host_port_is_reported() {
    let d = Daemon::with_image();
    d.docker_ok(&[
        "run", "-d", "--name", "web", "-p", "80", IMAGE, "httpd", "-f", "-p", "80",
    ]);
    let port = d.docker_ok(&["port", "web", "80"]);
    let host_port = port.trim().rsplit(':').next().unwrap_or("");
    assert!(host_port.parse::<u16>().is_ok_and(|p| p > 0), "{port:?}");
    d.finish();
}
