//! berthd killed with SIGKILL while containers run: they keep running (their monitors hold
//! their stdio and logs), and a restarted berthd picks them up — status, logs, exec, stop,
//! and the exit code of one that ended while berthd was down.

mod common;

use std::path::Path;

use common::{cgroups_of, poll_until, Daemon, OutputExt, IMAGE, STATE_TIMEOUT};

/// Counts n1, n2, ... every 0.1 s; says `term` and exits 0 on SIGTERM.
const COUNTER: &str =
    "trap 'echo term; exit 0' TERM; i=0; while :; do i=$((i+1)); echo n$i; sleep 0.1; done";

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|st| st != 'Z' && st != 'X')
    })
}

/// The counter's numbers in `logs`, which must be 1, 2, 3, ... without a gap.
fn counted(logs: &str) -> usize {
    let nums: Vec<usize> = logs
        .lines()
        .filter_map(|l| l.strip_prefix('n')?.parse().ok())
        .collect();
    for (i, n) in nums.iter().enumerate() {
        assert_eq!(*n, i + 1, "a gap in the log:\n{logs}");
    }
    nums.len()
}

#[test]
fn containers_outlive_a_killed_berthd_and_are_picked_up_again() {
    let mut d = Daemon::with_image();
    let keep = d
        .docker_ok(&["run", "-d", "--name", "keep", IMAGE, "sh", "-c", COUNTER])
        .trim()
        .to_string();
    // Exits 7 once /tmp/go exists: triggered while berthd is down.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "quick",
        IMAGE,
        "sh",
        "-c",
        "echo waiting; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo going; exit 7",
    ]);
    d.wait_logs("keep", "n3");
    d.wait_logs("quick", "waiting");
    let keep_pid: i32 = d.inspect("keep", "{{.State.Pid}}").parse().unwrap();
    let quick_pid: i32 = d.inspect("quick", "{{.State.Pid}}").parse().unwrap();
    assert!(
        cgroups_of(&keep).iter().any(|p| p.exists()),
        "no cgroup of {keep} where the fixture looks: {}",
        std::fs::read_to_string(format!("/proc/{keep_pid}/cgroup")).unwrap_or_default()
    );
    let monitors = d.monitors();
    assert_eq!(monitors.len(), 2, "{monitors:?}");

    d.kill9();
    let down = d.docker(&["ps"]);
    assert_ne!(down.code(), 0, "berthd still answers");
    // The containers and their monitors live on.
    assert!(alive(keep_pid) && alive(quick_pid));
    assert!(monitors.iter().all(|m| alive(*m)), "{monitors:?}");
    // quick ends while nobody watches.
    let go = Path::new(&format!("/proc/{quick_pid}/root/tmp/go")).to_path_buf();
    std::fs::write(&go, b"").unwrap();
    assert!(
        poll_until(STATE_TIMEOUT, || !alive(quick_pid)),
        "quick did not exit"
    );

    d.restart();
    // Its monitor may still be recording the exit when berthd comes back: berthd then
    // watches it as running, and records the exit when the monitor ends.
    d.wait_inspect("quick", "{{.State.Status}} {{.State.ExitCode}}", "exited 7");
    let ps = d.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.lines().any(|l| l.starts_with("keep Up")),
        "keep not up:\n{ps}"
    );
    assert!(
        ps.lines().any(|l| l.starts_with("quick Exited (7)")),
        "{ps}"
    );
    assert_eq!(d.docker_ok(&["logs", "quick"]), "waiting\ngoing\n");
    assert_eq!(
        d.inspect("keep", "{{.State.Status}} {{.State.Pid}}"),
        format!("running {keep_pid}")
    );

    // Nothing the counter printed while berthd was down is lost, and it keeps logging.
    let before = counted(&d.docker_ok(&["logs", "keep"]));
    let grew = poll_until(STATE_TIMEOUT, || {
        counted(&d.docker_ok(&["logs", "keep"])) > before
    });
    assert!(grew, "keep's log stopped at n{before}");

    assert_eq!(d.docker_ok(&["exec", "keep", "echo", "still"]), "still\n");
    let three = d.docker(&["exec", "keep", "sh", "-c", "exit 3"]);
    assert_eq!(three.code(), 3);

    d.docker_ok(&["stop", "keep"]);
    assert_eq!(
        d.inspect("keep", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    let logs = d.docker_ok(&["logs", "keep"]);
    assert!(logs.ends_with("term\n"), "{logs}");
    counted(&logs);
    assert!(!alive(keep_pid));
    assert!(
        poll_until(STATE_TIMEOUT, || d.monitors().is_empty()),
        "monitors left: {:?}",
        d.monitors()
    );
    // It starts again under the new berthd.
    d.docker_ok(&["start", "keep"]);
    d.wait_logs("keep", "term\nn1\n");
    d.finish();
}

#[test]
fn a_restarted_berthd_applies_restart_policies_to_exits_it_missed() {
    let mut d = Daemon::with_image();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "phoenix",
        "--restart",
        "on-failure:1",
        IMAGE,
        "sh",
        "-c",
        "echo up; while [ ! -e /tmp/die ]; do sleep 0.1; done; exit 3",
    ]);
    d.wait_logs("phoenix", "up");
    let pid: i32 = d.inspect("phoenix", "{{.State.Pid}}").parse().unwrap();
    d.kill9();
    std::fs::write(format!("/proc/{pid}/root/tmp/die"), b"").unwrap();
    assert!(poll_until(STATE_TIMEOUT, || !alive(pid)));
    d.restart();
    // Its exit is recorded, and on-failure:1 starts it once more; its writable layer still
    // holds /tmp/die, so it exits 3 again and stays down.
    d.wait_inspect(
        "phoenix",
        "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
        "exited 1 3",
    );
    assert_eq!(d.docker_ok(&["logs", "phoenix"]), "up\nup\n");
    d.finish();
}

#[test]
fn dropping_the_fixture_after_kill9_leaves_nothing() {
    let mut d = Daemon::with_image();
    d.docker_ok(&["run", "-d", "--name", "orphan", IMAGE, "sleep", "1000"]);
    let id = d.inspect("orphan", "{{.Id}}");
    let pid: i32 = d.inspect("orphan", "{{.State.Pid}}").parse().unwrap();
    let monitors = d.monitors();
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    d.kill9();
    let dir = d.dir.path().to_path_buf();
    let ns = d.netns_path();
    // No API to remove it through: the fixture kills the monitor by pid and force-deletes
    // the container through the runtime.
    drop(d);
    assert!(!alive(pid), "the container's process {pid} survived");
    assert!(!alive(monitors[0]), "the monitor survived");
    assert!(!ns.exists(), "{} survived", ns.display());
    assert!(!dir.exists(), "{} survived", dir.display());
    let cgroups: Vec<_> = cgroups_of(&id).into_iter().filter(|p| p.exists()).collect();
    assert!(cgroups.is_empty(), "{cgroups:?}");
    assert!(common::mounts_under(&dir).is_empty());
}
