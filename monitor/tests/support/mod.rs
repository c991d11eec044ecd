//! Helpers for the monitor's integration tests: a busybox bundle, the real `berth` runtime
//! (built beside `berth-monitor`: `cargo build -p berth`), the monitor spawned as berthd
//! spawns it, attach and control clients, and a guard that deletes every container a test
//! made and kills (only) the monitors it started.
//!
//! The test process is a child subreaper, so detached monitors are reparented to it when the
//! process that spawned them exits; their zombies are reaped by [`reap_monitors`] (only
//! zombies named `berth-monitor`, never `waitpid(-1)`, which would steal the statuses of
//! other tests' commands) and their statuses kept for [`Env::wait_monitor`].

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_monitor::frame::{Demuxer, MAX_PAYLOAD};
use berth_monitor::{
    ControlRequest, ControlResponse, ExitRecord, Ready, Stream, ATTACH_SOCKET, CONTROL_SOCKET,
};
use serde_json::{json, Value};

/// The monitor under test.
pub const MONITOR: &str = env!("CARGO_BIN_EXE_berth-monitor");

/// The host's static busybox.
pub const BUSYBOX: &str = "/usr/bin/busybox";

/// How long anything may take before a test gives up.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The applets the tests' containers use.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "stty", "ls", "dd", "head", "kill",
];

/// The `berth` runtime binary: beside the monitor in the target directory.
pub fn berth() -> PathBuf {
    let path = Path::new(MONITOR).with_file_name("berth");
    assert!(
        path.is_file(),
        "{} is missing: build the runtime first (cargo build -p berth, same CARGO_TARGET_DIR)",
        path.display()
    );
    path
}

/// Makes the test process a child subreaper (once).
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// Exit statuses of reaped monitors, by pid.
static REAPED: Mutex<Option<HashMap<i32, i32>>> = Mutex::new(None);

/// `/proc/<pid>/stat`'s (state, ppid, comm, session) of `pid`.
fn stat(pid: i32) -> Option<(char, i32, String, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let mut rest = s[close + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let _pgrp = rest.next()?;
    let session = rest.next()?.parse().ok()?;
    Some((state, ppid, comm, session))
}

/// Reaps every zombie detached monitor (named `berth-monitor`, leader of its own session:
/// not the intermediate process a test waits for itself) that is a child of the test
/// process, keeping its status.
pub fn reap_monitors() {
    let me = std::process::id() as i32;
    let mut reaped = REAPED.lock().unwrap();
    let map = reaped.get_or_insert_with(HashMap::new);
    for pid in fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
    {
        if let Some(('Z', ppid, comm, session)) = stat(pid) {
            if ppid == me && comm == "berth-monitor" && session == pid {
                let mut status = 0;
                // SAFETY: waitpid on one zombie child with a live status pointer.
                if unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) } == pid {
                    map.insert(pid, status);
                }
            }
        }
    }
}

/// The status of monitor `pid` once it has exited (reaped here), or `None` meanwhile.
fn monitor_status(pid: i32) -> Option<i32> {
    reap_monitors();
    REAPED.lock().unwrap().as_ref()?.get(&pid).copied()
}

/// Polls `cond` every 20 ms until it holds or [`TIMEOUT`] passes.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A monitor that reported ready.
pub struct Monitor {
    /// Its directory.
    pub dir: PathBuf,
    /// The monitor's pid.
    pub pid: i32,
    /// The container process's pid.
    pub init: i32,
}

impl Monitor {
    /// Waits for the monitor to exit; returns its exit record, asserting it exited 0 and
    /// removed its sockets.
    pub fn wait(&self) -> ExitRecord {
        let mut status = None;
        wait_for("the monitor to exit", || {
            status = monitor_status(self.pid);
            status.is_some()
        });
        let status = status.unwrap();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "monitor exit status {status:#x}"
        );
        for s in [ATTACH_SOCKET, CONTROL_SOCKET, berth_monitor::CONSOLE_SOCKET] {
            assert!(!self.dir.join(s).exists(), "{s} left behind");
        }
        ExitRecord::read(&self.dir)
            .unwrap()
            .expect("exit.json written")
    }
}

/// One test's world: rootfs, runtime root, bundles, monitor directories.
pub struct Env {
    /// Everything lives here.
    pub tmp: tempfile::TempDir,
    /// The runtime's --root.
    pub root: PathBuf,
    template: Value,
    ids: Mutex<Vec<String>>,
    monitors: Mutex<Vec<i32>>,
}

/// Makes names unique across the tests of this process (container IDs name cgroups, which
/// are global).
static NAMES: AtomicUsize = AtomicUsize::new(0);

/// A name unique in this process.
fn unique(prefix: &str) -> String {
    let n = NAMES.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

impl Env {
    /// A fresh environment with a busybox rootfs and `berth spec`'s config.
    pub fn new() -> Env {
        become_subreaper();
        let tmp = tempfile::Builder::new()
            .prefix("berth-monitor-test-")
            .tempdir()
            .unwrap();
        let rootfs = tmp.path().join("rootfs");
        let bin = rootfs.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for a in APPLETS {
            symlink("busybox", bin.join(a)).unwrap();
        }
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let spec = tmp.path().join("spec");
        fs::create_dir(&spec).unwrap();
        let mut env = Env {
            root: tmp.path().join("state"),
            tmp,
            template: Value::Null,
            ids: Mutex::new(Vec::new()),
            monitors: Mutex::new(Vec::new()),
        };
        let out = env.berth(&["spec", "--bundle", spec.to_str().unwrap()]);
        assert!(out.status.success(), "berth spec: {out:?}");
        let mut template: Value =
            serde_json::from_slice(&fs::read(spec.join("config.json")).unwrap()).unwrap();
        template["root"]["path"] = json!(rootfs);
        template["root"]["readonly"] = json!(true);
        env.template = template;
        env
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The config of a container running `args` (with a terminal when `tty`).
    pub fn config(&self, args: &[&str], tty: bool) -> Value {
        let mut c = self.template.clone();
        c["process"]["args"] = json!(args);
        c["process"]["terminal"] = json!(tty);
        c
    }

    /// Writes `config` into a new bundle; returns the bundle and a fresh container ID.
    pub fn bundle(&self, config: &Value) -> (PathBuf, String) {
        let id = unique("mon");
        let dir = self.path().join("bundles").join(&id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(config).unwrap(),
        )
        .unwrap();
        self.ids.lock().unwrap().push(id.clone());
        (dir, id)
    }

    /// A process JSON for `exec` (the template's process running `args`).
    pub fn process_file(&self, args: &[&str]) -> PathBuf {
        let mut p = self.template["process"].clone();
        p["args"] = json!(args);
        p["terminal"] = json!(false);
        let path = self.path().join(format!("{}.json", unique("process")));
        fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
        path
    }

    /// A new monitor directory (not created: the monitor makes it).
    pub fn monitor_dir(&self) -> PathBuf {
        self.path().join(unique("m"))
    }

    /// `berth --root ROOT args...`.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(berth())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `berth args...`, asserting success.
    pub fn berth_ok(&self, args: &[&str]) {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The monitor's arguments for `id` in `dir` with `flags` and the mode's arguments.
    pub fn monitor_args(&self, id: &str, dir: &Path, flags: &[&str], mode: &[&str]) -> Vec<String> {
        let mut a = vec![
            "--runtime".to_string(),
            berth().to_string_lossy().into_owned(),
            "--runtime-root".into(),
            self.root.to_string_lossy().into_owned(),
            "--id".into(),
            id.into(),
            "--dir".into(),
            dir.to_string_lossy().into_owned(),
        ];
        a.extend(flags.iter().map(ToString::to_string));
        a.extend(mode.iter().map(ToString::to_string));
        a
    }

    /// Spawns the monitor as berthd does (stdin /dev/null, stdout a pipe, stderr a file),
    /// letting `adjust` change the command; returns the ready line.
    pub fn spawn_monitor_with(&self, args: &[String], adjust: impl FnOnce(&mut Command)) -> Ready {
        let stderr = self.path().join(format!("{}.stderr", unique("monitor")));
        let mut cmd = Command::new(MONITOR);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap());
        adjust(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "the spawned monitor process exited {status}"
        );
        let ready = Ready::parse(&out).unwrap_or_else(|e| {
            panic!(
                "no ready line ({e}): {out:?}; stderr: {}",
                fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        if let Ready::Running { monitor_pid, .. } = ready {
            self.monitors.lock().unwrap().push(monitor_pid);
        }
        ready
    }

    /// Spawns a monitor expected to be ready.
    pub fn start_monitor(&self, id: &str, flags: &[&str], mode: &[&str]) -> Monitor {
        let dir = self.monitor_dir();
        let args = self.monitor_args(id, &dir, flags, mode);
        match self.spawn_monitor_with(&args, |_| {}) {
            Ready::Running { monitor_pid, pid } => Monitor {
                dir,
                pid: monitor_pid,
                init: pid,
            },
            Ready::Failed { error } => panic!("monitor not ready: {error}"),
        }
    }

    /// Tracks a monitor started some other way.
    pub fn track_monitor(&self, pid: i32) {
        self.monitors.lock().unwrap().push(pid);
    }

    /// Asserts the runtime no longer knows `id`.
    pub fn assert_no_state(&self, id: &str) {
        let out = self.berth(&["state", id]);
        assert!(!out.status.success(), "{id} still has runtime state");
        assert!(
            !self.root.join(id).exists(),
            "{id}'s state directory is left"
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let _ = self.berth(&["delete", "--force", id]);
        }
        let me = std::process::id() as i32;
        for &pid in self.monitors.lock().unwrap().iter() {
            // Only a monitor that is still ours (reparented to this subreaper) is killed.
            if matches!(stat(pid), Some((state, ppid, comm, session)) if state != 'Z' && ppid == me && comm == "berth-monitor" && session == pid)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let deadline = Instant::now() + Duration::from_secs(5);
                while monitor_status(pid).is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        reap_monitors();
    }
}

/// An attach client reading frames in a thread until EOF.
pub struct AttachClient {
    /// For writing input.
    pub sock: UnixStream,
    reader: JoinHandle<Vec<(Stream, Vec<u8>)>>,
}

impl AttachClient {
    /// Connects to `dir`'s attach socket.
    pub fn connect(dir: &Path) -> AttachClient {
        let sock = UnixStream::connect(dir.join(ATTACH_SOCKET)).unwrap();
        let mut r = sock.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut d = Demuxer::new(MAX_PAYLOAD);
            let mut frames = Vec::new();
            let mut buf = vec![0; 64 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => return frames,
                    Ok(n) => d.push(&buf[..n]),
                }
                while let Some(f) = d.next_frame().expect("well-formed frames") {
                    frames.push(f);
                }
            }
        });
        AttachClient { sock, reader }
    }

    /// Sends input.
    pub fn send(&mut self, data: &[u8]) {
        self.sock.write_all(data).unwrap();
    }

    /// Shuts down the write half (the client's EOF).
    pub fn close_input(&self) {
        self.sock.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Waits for EOF; returns the frames.
    pub fn frames(self) -> Vec<(Stream, Vec<u8>)> {
        self.reader.join().unwrap()
    }

    /// Waits for EOF; returns each stream's bytes concatenated (stdout, stderr).
    pub fn output(self) -> (String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        for (s, p) in self.frames() {
            match s {
                Stream::Stdout => out.extend(p),
                Stream::Stderr => err.extend(p),
                Stream::Stdin => panic!("a stdin frame from the monitor"),
            }
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }
}

/// Sends one control request line (raw) and returns the reply.
pub fn control_raw(dir: &Path, line: &str) -> ControlResponse {
    let mut sock = UnixStream::connect(dir.join(CONTROL_SOCKET)).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    sock.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(&sock).read_line(&mut reply).unwrap();
    ControlResponse::parse(&reply).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"))
}

/// Sends a control request and returns the reply.
pub fn control(dir: &Path, req: ControlRequest) -> ControlResponse {
    control_raw(dir, &req.to_line())
}
