//! The monitor against the real `berth` runtime, as root: busybox containers created (and
//! exec'd into) through `berth-monitor`, as berthd drives it.

mod support;

use std::fs::File;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_monitor::{ControlRequest, LogReader, LogStream, Ready, Stream};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{control, control_raw, wait_for, AttachClient, Env};

/// Output to the log and to a client attached before `start`, stderr as stream 2, the exit
/// code, the runtime state deleted, and no descriptor of the spawner in the container.
#[test]
fn output_log_attach_and_exit_code() {
    let env = Env::new();
    let (bundle, id) = env.bundle(&env.config(
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; printf partial; ls /proc/self/fd >&2; exit 3",
        ],
        false,
    ));
    let log = env.path().join("ctr.log");
    let dir = env.monitor_dir();
    let args = env.monitor_args(
        &id,
        &dir,
        &["--log", log.to_str().unwrap()],
        &["create", "--bundle", bundle.to_str().unwrap()],
    );
    // A descriptor of "berthd" that is not close-on-exec: fd 9 in the monitor.
    let secret = env.path().join("berthd-secret");
    std::fs::write(&secret, "").unwrap();
    let leak = File::open(&secret).unwrap();
    let leak_fd = leak.as_raw_fd();
    let ready = env.spawn_monitor_with(&args, |cmd| {
        // SAFETY: dup2 is async-signal-safe; the descriptor is open in the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(leak_fd, 9) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let Ready::Running { monitor_pid, pid } = ready else {
        panic!("not ready: {ready:?}")
    };
    env.track_monitor(monitor_pid);
    let m = support::Monitor {
        dir: dir.clone(),
        pid: monitor_pid,
        init: pid,
    };
    for fd in std::fs::read_dir(format!("/proc/{monitor_pid}/fd")).unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap_or_default();
        assert_ne!(target, secret, "the monitor kept berthd's descriptor");
    }

    let client = AttachClient::connect(&dir);
    // Control requests: no terminal to resize, malformed lines refused.
    let r = control(
        &dir,
        ControlRequest::Resize {
            height: 1,
            width: 1,
        },
    );
    assert!(r.into_result().unwrap_err().contains("no terminal"));
    assert!(control_raw(&dir, "{\"bogus\":1}\n").into_result().is_err());

    env.berth_ok(&["start", &id]);
    let frames = client.frames();
    let record = m.wait();
    assert_eq!((record.exit_code, record.signal), (3, None));
    assert!(record.started_at <= record.finished_at);

    let stdout: Vec<u8> = frames
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .flat_map(|(_, p)| p.clone())
        .collect();
    let stderr: String = frames
        .iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(String::from_utf8_lossy(&stdout), "out\npartial");
    assert!(stderr.starts_with("err\n"), "stderr: {stderr:?}");
    // The shell's ls sees its stdio and its own directory descriptor, nothing of berthd's.
    let listed: Vec<&str> = stderr["err\n".len()..].lines().collect();
    assert_eq!(listed, ["0", "1", "2", "3"], "descriptors in the container");

    let entries: Vec<_> = LogReader::new(BufReader::new(File::open(&log).unwrap()))
        .map(Result::unwrap)
        .collect();
    // Lines of one stream keep their order; the two streams interleave as they were read.
    let lines = |stream| {
        entries
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.log.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(LogStream::Stdout), ["out\n", "partial"]);
    assert_eq!(
        lines(LogStream::Stderr),
        ["err\n", "0\n", "1\n", "2\n", "3\n"]
    );
    assert!(entries.windows(2).all(|w| w[0].time <= w[1].time));
    env.assert_no_state(&id);
}

/// A container killed by SIGKILL is recorded as 137, signal 9.
#[test]
fn killed_by_sigkill_is_137() {
    let env = Env::new();
    let (bundle, id) = env.bundle(&env.config(&["sleep", "100"], false));
    let m = env.start_monitor(&id, &[], &["create", "--bundle", bundle.to_str().unwrap()]);
    env.berth_ok(&["start", &id]);
    // SIGTERM, SIGINT and SIGHUP to the monitor change nothing: the container is berthd's.
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        kill(Pid::from_raw(m.pid), sig).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(std::path::Path::new(&format!("/proc/{}/exe", m.pid)).exists());
    assert!(std::path::Path::new(&format!("/proc/{}/exe", m.init)).exists());
    env.berth_ok(&["kill", &id, "KILL"]);
    let record = m.wait();
    assert_eq!((record.exit_code, record.signal), (137, Some(9)));
    env.assert_no_state(&id);
}

/// Input through an attach client reaches `cat`, and the client's EOF closes its stdin
/// (--stdin-once), so `cat` exits.
#[test]
fn stdin_once_through_attach() {
    let env = Env::new();
    let (bundle, id) = env.bundle(&env.config(&["cat"], false));
    let m = env.start_monitor(
        &id,
        &["--stdin", "--stdin-once"],
        &["create", "--bundle", bundle.to_str().unwrap()],
    );
    let mut client = AttachClient::connect(&m.dir);
    env.berth_ok(&["start", &id]);
    client.send(b"hello\n");
    client.send(b"world\n");
    client.close_input();
    let (out, err) = client.output();
    assert_eq!(out, "hello\nworld\n");
    assert_eq!(err, "");
    let record = m.wait();
    assert_eq!(record.exit_code, 0);
}

/// `close_stdin` on the control socket closes the container's stdin (without --stdin-once, a
/// client's EOF does not).
#[test]
fn close_stdin_through_control() {
    let env = Env::new();
    let (bundle, id) = env.bundle(&env.config(&["cat"], false));
    let m = env.start_monitor(
        &id,
        &["--stdin"],
        &["create", "--bundle", bundle.to_str().unwrap()],
    );
    let mut client = AttachClient::connect(&m.dir);
    env.berth_ok(&["start", &id]);
    client.send(b"kept open\n");
    client.close_input();
    std::thread::sleep(Duration::from_millis(300));
    let state = env.berth(&["state", &id]);
    assert!(String::from_utf8_lossy(&state.stdout).contains("\"running\""));
    assert_eq!(
        control(&m.dir, ControlRequest::CloseStdin).into_result(),
        Ok(())
    );
    let (out, _) = client.output();
    assert_eq!(out, "kept open\n");
    assert_eq!(m.wait().exit_code, 0);
}

/// With --tty the pty carries input and output (all stream 1), and a resize through the
/// control socket is what `stty size` prints.
#[test]
fn tty_resize_and_io() {
    let env = Env::new();
    let (bundle, id) = env.bundle(&env.config(
        &["sh", "-c", "read line; echo \"got $line\"; stty size"],
        true,
    ));
    let m = env.start_monitor(
        &id,
        &["--tty", "--stdin"],
        &["create", "--bundle", bundle.to_str().unwrap()],
    );
    let mut client = AttachClient::connect(&m.dir);
    let r = control(
        &m.dir,
        ControlRequest::Resize {
            height: 42,
            width: 123,
        },
    );
    assert_eq!(r.into_result(), Ok(()));
    env.berth_ok(&["start", &id]);
    client.send(b"ping\n");
    let frames = client.frames();
    assert!(frames.iter().all(|(s, _)| *s == Stream::Stdout));
    let out: String = frames
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(out.contains("got ping\r\n"), "output: {out:?}");
    assert!(out.contains("42 123\r\n"), "output: {out:?}");
    let record = m.wait();
    assert_eq!(record.exit_code, 0);
    env.assert_no_state(&id);
}

/// Exec mode: a process in a running container, its stdin and output through attach, its
/// own exit record; the container is untouched by the exec's end.
#[test]
fn exec_into_a_running_container() {
    let env = Env::new();
    let (bundle, id) = env.bundle(&env.config(
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        false,
    ));
    let init = env.start_monitor(&id, &[], &["create", "--bundle", bundle.to_str().unwrap()]);
    env.berth_ok(&["start", &id]);

    let process = env.process_file(&[
        "sh",
        "-c",
        "read x; echo \"exec got $x\"; echo e >&2; exit 5",
    ]);
    let exec = env.start_monitor(
        &id,
        &["--stdin", "--stdin-once"],
        &["exec", "--process", process.to_str().unwrap()],
    );
    assert_ne!(exec.init, init.init);
    let mut client = AttachClient::connect(&exec.dir);
    client.send(b"hi\n");
    client.close_input();
    let (out, err) = client.output();
    assert_eq!(out, "exec got hi\n");
    assert_eq!(err, "e\n");
    let record = exec.wait();
    assert_eq!(record.exit_code, 5);
    // The container still runs, then stops on TERM.
    let state = env.berth(&["state", &id]);
    assert!(String::from_utf8_lossy(&state.stdout).contains("\"running\""));
    env.berth_ok(&["kill", &id, "TERM"]);
    let record = init.wait();
    assert_eq!(record.exit_code, 0);
    env.assert_no_state(&id);
}

/// A bundle the runtime refuses: ready:false with the runtime's message, and no runtime state
/// of the container left.
#[test]
fn create_failure_reports_the_runtime_error() {
    let env = Env::new();
    let mut config = env.config(&["true"], false);
    config["root"]["path"] = serde_json::json!("/nonexistent/rootfs");
    let (bundle, id) = env.bundle(&config);
    let dir = env.monitor_dir();
    let args = env.monitor_args(
        &id,
        &dir,
        &[],
        &["create", "--bundle", bundle.to_str().unwrap()],
    );
    let ready = env.spawn_monitor_with(&args, |_| {});
    let Ready::Failed { error } = ready else {
        panic!("a bad bundle was ready: {ready:?}")
    };
    assert!(error.contains("/nonexistent/rootfs"), "error: {error}");
    assert!(error.len() <= berth_monitor::ready::MAX_ERROR_LEN);
    env.assert_no_state(&id);
    for s in ["attach.sock", "control.sock", "exit.json"] {
        assert!(!dir.join(s).exists(), "{s} left after a failed create");
    }
    // A failed exec (no such container) likewise.
    let process = env.process_file(&["true"]);
    let dir = env.monitor_dir();
    let args = env.monitor_args(
        "nosuch",
        &dir,
        &[],
        &["exec", "--process", process.to_str().unwrap()],
    );
    let Ready::Failed { error } = env.spawn_monitor_with(&args, |_| {}) else {
        panic!("exec into nothing was ready")
    };
    assert!(error.contains("nosuch"), "error: {error}");
}

/// The monitor outlives the process that spawned it: that process is SIGKILLed, the container
/// keeps running and logging, and its exit is recorded when it is stopped.
#[test]
fn survives_its_spawner_being_killed() {
    let env = Env::new();
    let (bundle, id) = env.bundle(&env.config(
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; while true; do echo tick; sleep 0.1; done",
        ],
        false,
    ));
    let dir = env.monitor_dir();
    let log = env.path().join("ctr.log");
    let ready_file = env.path().join("ready");
    let mut args = vec![
        "-c".to_string(),
        "\"$0\" \"$@\" >\"$READY\" 2>>\"$READY.err\"; exec sleep 1000".to_string(),
        support::MONITOR.to_string(),
    ];
    args.extend(env.monitor_args(
        &id,
        &dir,
        &["--log", log.to_str().unwrap()],
        &["create", "--bundle", bundle.to_str().unwrap()],
    ));
    let mut spawner = Command::new("/bin/sh")
        .args(&args)
        .env("READY", &ready_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = None;
    wait_for("the ready line", || {
        ready = std::fs::read_to_string(&ready_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
            .map(|s| Ready::parse(&s).unwrap());
        ready.is_some()
    });
    let Some(Ready::Running { monitor_pid, pid }) = ready else {
        panic!("not ready: {ready:?}")
    };
    env.track_monitor(monitor_pid);
    spawner.kill().unwrap();
    spawner.wait().unwrap();
    let m = support::Monitor {
        dir,
        pid: monitor_pid,
        init: pid,
    };
    assert!(std::path::Path::new(&format!("/proc/{monitor_pid}")).exists());
    env.berth_ok(&["start", &id]);
    let ticks = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("tick")
            .count()
    };
    wait_for("ticks in the log", || ticks() >= 3);
    env.berth_ok(&["kill", &id, "TERM"]);
    let record = m.wait();
    assert_eq!((record.exit_code, record.signal), (0, None));
    assert!(std::fs::read_to_string(&log).unwrap().contains("bye"));
    env.assert_no_state(&id);
}

/// A client that never reads does not stall the container (it is dropped), while another
/// client gets every byte of a 20 MiB flood.
#[test]
fn flood_with_a_client_that_never_reads() {
    let env = Env::new();
    const BLOCKS: usize = 320;
    let (bundle, id) = env.bundle(&env.config(
        &[
            "sh",
            "-c",
            &format!("dd if=/dev/zero bs=65536 count={BLOCKS} 2>/dev/null; echo done >&2"),
        ],
        false,
    ));
    let m = env.start_monitor(&id, &[], &["create", "--bundle", bundle.to_str().unwrap()]);
    let stuck = std::os::unix::net::UnixStream::connect(m.dir.join("attach.sock")).unwrap();
    let reader = AttachClient::connect(&m.dir);
    let t0 = Instant::now();
    env.berth_ok(&["start", &id]);
    let (out, err) = reader.output();
    let record = m.wait();
    assert_eq!(record.exit_code, 0);
    assert_eq!(out.len(), BLOCKS * 65536);
    assert_eq!(err, "done\n");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    // The stuck client was cut off: what it can read ends (EOF) well short of the flood.
    let mut n = 0;
    let mut buf = vec![0; 65536];
    let mut s = &stuck;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => panic!("the stuck client was not closed: {e}"),
        }
    }
    assert!(n < 4 * 1024 * 1024, "the stuck client got {n} bytes");
}

/// The container's processes start with no signal blocked or ignored, whatever the monitor
/// does with its own (it blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP and ignores SIGPIPE).
///
/// Signals 32 and 33 (glibc's internal SIGCANCEL and SIGSETXID) are left out: when the
/// process that spawned the monitor used `posix_spawn` (as this test's std `Command` does,
/// and berthd's will), glibc leaves them ignored, and glibc's `signal`/`sigaction` refuse to
/// reset them (the runtime's init tries, in `reset_signals`); only a raw `rt_sigaction` can.
#[test]
fn container_starts_with_default_signals() {
    let env = Env::new();
    // `; true`: the shell forks cat (an exec'd last command would keep the shell's own
    // dispositions as pid 1).
    let (bundle, id) = env.bundle(&env.config(&["sh", "-c", "cat /proc/self/status; true"], false));
    let m = env.start_monitor(&id, &[], &["create", "--bundle", bundle.to_str().unwrap()]);
    let client = AttachClient::connect(&m.dir);
    env.berth_ok(&["start", &id]);
    let (out, _) = client.output();
    assert_eq!(m.wait().exit_code, 0);
    let mask = |field: &str| {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
            .unwrap_or_else(|| panic!("no {field} in {out}"));
        u64::from_str_radix(line, 16).unwrap()
    };
    const GLIBC_INTERNAL: u64 = (1 << 31) | (1 << 32);
    assert_eq!(mask("SigBlk"), 0, "blocked signals");
    assert_eq!(mask("SigIgn") & !GLIBC_INTERNAL, 0, "ignored signals");
}
