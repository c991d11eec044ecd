//! `docker run` in the foreground: output, exit codes, commands that cannot run, piped
//! stdin, and a terminal.

mod common;

use std::process::Command;

use common::{run_with_timeout, Daemon, OutputExt, COMMAND_TIMEOUT, DOCKER, IMAGE};

#[test]
fn run_rm_prints_output_and_propagates_the_exit_code() {
    let d = Daemon::with_image();
    let hi = d
        .docker(&["run", "--rm", IMAGE, "echo", "hi"])
        .ok("run echo");
    assert_eq!(hi.out(), "hi\n");
    let three = d.docker(&["run", "--rm", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(three.code(), 3, "{}", three.err());
    let split = d.docker(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 1",
    ]);
    assert_eq!(split.code(), 1);
    assert_eq!(split.out(), "to-out\n");
    assert_eq!(split.err(), "to-err\n");
    // --rm removed them all.
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
    d.finish();
}

#[test]
fn short_runs_never_lose_their_output() {
    let d = Daemon::with_image();
    // The container may end before berthd's attach has been taken in by its monitor: its
    // output must still reach the client.
    for i in 0..20 {
        let word = format!("word{i}");
        let out = d
            .docker(&["run", "--rm", IMAGE, "echo", &word])
            .ok("run echo");
        assert_eq!(out.out(), format!("{word}\n"), "run {i}: {}", out.err());
    }
    d.finish();
}

#[test]
fn run_of_a_missing_command_exits_127_with_dockers_message() {
    let d = Daemon::with_image();
    let out = d.docker(&["run", "--rm", IMAGE, "nosuchcmd"]);
    assert_eq!(out.code(), 127, "{}", out.err());
    let err = out.err();
    assert!(err.contains("Error response from daemon"), "{err}");
    assert!(
        err.contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{err}"
    );
    assert!(
        !err.contains("level=error msg="),
        "a log line as message: {err}"
    );
    // --rm: removed although it never ran.
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");

    // Without --rm it stays, created, with the exit code docker gives it.
    let out = d.docker(&["run", "--name", "nocmd", IMAGE, "nosuchcmd"]);
    assert_eq!(out.code(), 127, "{}", out.err());
    assert_eq!(d.inspect("nocmd", "{{.State.ExitCode}}"), "127");
    // Not executable: 126.
    let out = d.docker(&["run", "--rm", IMAGE, "/etc/passwd"]);
    assert_eq!(out.code(), 126, "{}", out.err());
    assert!(out.err().contains("permission denied"), "{}", out.err());
    d.finish();
}

#[test]
fn run_interactive_takes_piped_stdin() {
    let d = Daemon::with_image();
    let out = d
        .docker_stdin(&["run", "-i", "--rm", IMAGE, "cat"], b"x\n")
        .ok("run -i cat");
    assert_eq!(out.out(), "x\n");
    let out = d.docker_stdin(
        &["run", "-i", "--rm", IMAGE, "sh", "-c", "cat; exit 4"],
        b"a\nb\n",
    );
    assert_eq!(out.code(), 4, "{}", out.err());
    assert_eq!(out.out(), "a\nb\n");
    // More than any pipe or socket buffer holds.
    let big = vec![b'z'; 3 << 20];
    let out = d
        .docker_stdin(&["run", "-i", "--rm", IMAGE, "wc", "-c"], &big)
        .ok("run -i wc -c");
    assert_eq!(out.out().trim(), (3 << 20).to_string());
    // Without -i the container's stdin is empty.
    let out = d
        .docker_stdin(&["run", "--rm", IMAGE, "wc", "-c"], b"ignored\n")
        .ok("run wc -c");
    assert_eq!(out.out().trim(), "0", "stderr: {}", out.err());
    d.finish();
}

/// Runs `command` under `script`, which gives it a pty for stdin, stdout and stderr.
fn in_pty(d: &Daemon, command: &str, input: &[u8]) -> std::process::Output {
    let mut c = Command::new("script");
    c.args(["-qec", command, "/dev/null"]);
    let env = d.docker_cmd(&[]);
    for (k, v) in env.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    run_with_timeout(c, Some(input), COMMAND_TIMEOUT)
}

#[test]
fn run_with_a_terminal() {
    let d = Daemon::with_image();
    let out = in_pty(
        &d,
        &format!("{DOCKER} run -t --rm {IMAGE} sh -c 'tty; echo out; exit 9'"),
        b"",
    );
    assert_eq!(out.code(), 9, "{}{}", out.out(), out.err());
    let text = out.out();
    assert!(text.contains("/dev/pts/"), "{text:?}");
    // The container's terminal turns \n into \r\n (and without -i the CLI leaves its own
    // terminal cooked, which adds another \r, as with dockerd).
    assert!(text.contains("out\r"), "{text:?}");

    // Typed input reaches an interactive shell through the terminal.
    let out = in_pty(
        &d,
        &format!("{DOCKER} run -it --rm {IMAGE} sh"),
        b"echo typed-$((6*7))\nexit 5\n",
    );
    assert_eq!(out.code(), 5, "{}{}", out.out(), out.err());
    assert!(out.out().contains("typed-42"), "{:?}", out.out());
    d.finish();
}

#[test]

fn runtime_warnings_stay_out_of_the_containers_output() {
    let d = Daemon::with_image();
    // --privileged asks for every capability: where berth lacks one it warns.
    d.docker(&["run", "--name", "priv", "--privileged", IMAGE, "true"])
        .ok("run --privileged");
    let logs = d.docker(&["logs", "priv"]).ok("logs");
    assert!(!logs.err().contains("level="), "{}", logs.err());
    d.finish();
}

#[test]

fn the_environment_is_dockers() {
    let d = Daemon::with_image();
    let env = d.docker_ok(&["run", "--rm", "-h", "box", IMAGE, "env"]);
    assert!(env.lines().any(|l| l == "HOSTNAME=box"), "{env}");
    assert!(!env.lines().any(|l| l.starts_with("TERM=")), "{env}");
    let env = d.docker_ok(&["run", "--rm", "-t", IMAGE, "env"]);
    assert!(env.lines().any(|l| l.trim_end() == "TERM=xterm"), "{env}");
    d.finish();
}
