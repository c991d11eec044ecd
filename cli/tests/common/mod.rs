//! Shared helpers for berth's integration tests: a busybox root filesystem, bundles made from
//! `berth spec`, a per-test `--root`, the `berth` binary driven as an engine drives it, and a
//! guard that force-deletes every container a test created, even when the test fails.
//!
//! Every `berth` command runs with `BERTH_TEST_TAG=<tag>` in its environment, and every config
//! puts the same variable into `process.env`, so [`Berth::assert_clean`] can find any process a
//! test left behind by scanning `/proc/*/environ`.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod engines;
pub mod registry;

/// The debug `berth` binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The host's static busybox.
pub const BUSYBOX: &str = "/bin/busybox";

/// The repository's test fixtures, `tests/fixtures` at the workspace root: the engines'
/// example documents and the runtime-spec's schemas (see its README.md).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// An engine's captured document, `tests/fixtures/engines/<engine>.example.<kind>.json`
/// (`kind`: `config`, `exec-process` or `update-resources`).
pub fn engine_fixture(engine: &str, kind: &str) -> PathBuf {
    fixtures_dir()
        .join("engines")
        .join(format!("{engine}.example.{kind}.json"))
}

/// How long one `berth` command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a container may take to reach a status after a signal.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// A long-running container process that exits 0 on SIGTERM (pid 1 of a pid namespace ignores
/// signals it has no handler for).
pub const SLEEPER: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];

static TAGS: AtomicUsize = AtomicUsize::new(0);

/// Makes the test process a child subreaper, as conmon and containerd's shim are: a container
/// init outlives `berth create`, and is reparented to us.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
}

/// Reaps `pid` if it is our child and has exited; true if it is gone (reaped or not ours).
///
/// Only known container inits are reaped: `waitpid(-1)` would steal the exit status of
/// `std::process::Command` children of tests running on other threads.
pub fn reap(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one pid with a valid status pointer; WNOHANG never blocks.
    match unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) } {
        0 => false,
        rc if rc == pid => true,
        // Not our child (ECHILD): nothing to reap, gone once it no longer runs.
        _ => !is_alive(pid),
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

pub use berth_test_support::poll_until;

/// Fills `dir` with a busybox root filesystem: `/bin/busybox`, every applet as a symlink to
/// it, and the usual empty directories (mount points must exist for user-namespaced inits).
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.is_empty() {
            symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    for d in [
        "proc", "sys", "dev", "tmp", "etc", "root", "run", "mnt", "var",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// Convenience accessors on a command's output.
pub trait OutputExt {
    /// Standard output, lossily decoded.
    fn out(&self) -> String;
    /// Standard error, lossily decoded.
    fn err(&self) -> String;
    /// Exit code; 128+N for a signal death.
    fn code(&self) -> i32;
    /// Panics with both streams unless the command (berth) succeeded.
    fn ok(self) -> Self;
    /// Panics with both streams unless the command, called `what` in the message, succeeded.
    fn succeeded(self, what: &str) -> Self;
    /// Panics unless the command failed with `needle` in its standard error; returns stderr.
    fn fails_with(&self, needle: &str) -> String;
}

impl OutputExt for Output {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }
    fn ok(self) -> Self {
        self.succeeded("berth")
    }
    fn succeeded(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.out(),
            self.err()
        );
        self
    }
    fn fails_with(&self, needle: &str) -> String {
        let err = self.err();
        assert!(
            !self.status.success(),
            "expected a failure with {needle:?}, but berth succeeded:\nstdout: {}\nstderr: {err}",
            self.out()
        );
        assert!(
            err.contains(needle),
            "expected {needle:?} in stderr, got:\n{err}"
        );
        err
    }
}

/// One test's berth: a temporary directory holding the rootfs, the bundles, the state root and
/// the captured output of every command. Dropping it force-deletes every container created and
/// kills any process still carrying the tag.
pub struct Berth {
    /// Everything of this test lives here.
    pub tmp: tempfile::TempDir,
    /// The `--root` state directory.
    pub root: PathBuf,
    /// The shared busybox rootfs.
    pub rootfs: PathBuf,
    /// Unique tag of this test (in container IDs and in `BERTH_TEST_TAG`).
    pub tag: String,
    template: Value,
    ids: Mutex<Vec<String>>,
    pids: Mutex<Vec<i32>>,
    outputs: AtomicUsize,
}

impl Berth {
    /// A fresh test environment; makes the test process a subreaper.
    pub fn new() -> Berth {
        become_subreaper();
        let tmp = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .unwrap();
        let rootfs = tmp.path().join("rootfs");
        busybox_rootfs(&rootfs);
        let spec_dir = tmp.path().join("spec");
        fs::create_dir(&spec_dir).unwrap();
        fs::create_dir(tmp.path().join("out")).unwrap();
        let tag = format!(
            "{}x{}",
            std::process::id(),
            TAGS.fetch_add(1, Ordering::Relaxed)
        );
        let mut b = Berth {
            root: tmp.path().join("state"),
            rootfs,
            tag,
            template: Value::Null,
            ids: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
            outputs: AtomicUsize::new(0),
            tmp,
        };
        b.cmd(&["spec", "--bundle", spec_dir.to_str().unwrap()])
            .ok();
        b.template =
            serde_json::from_slice(&fs::read(spec_dir.join("config.json")).unwrap()).unwrap();
        b
    }

    /// The temporary directory's path.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A container ID unique to this test.
    pub fn id(&self, name: &str) -> String {
        format!("{name}-{}", self.tag)
    }

    /// `berth spec`'s config, made to run `args` without a terminal on the shared rootfs.
    pub fn config(&self, args: &[&str]) -> Value {
        let mut c = self.template.clone();
        c["root"]["path"] = json!(self.rootfs);
        self.set_process(&mut c, args);
        c
    }

    /// Makes `config`'s process run `args` without a terminal, with this test's tag in its
    /// environment (so [`Berth::assert_clean`] finds it if it is left behind).
    pub fn set_process(&self, config: &mut Value, args: &[&str]) {
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        add_env(config, &format!("BERTH_TEST_TAG={}", self.tag));
    }

    /// A new directory `<tmp>/<name>` (with its parents), for files of the test's own.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Binds a console socket at `<tmp>/console.sock` (for `create --console-socket`), as
    /// conmon and containerd's shim do; returns its path and the listener.
    pub fn console_socket(&self) -> (PathBuf, std::os::unix::net::UnixListener) {
        let socket = self.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        (socket, listener)
    }

    /// Another busybox root filesystem, at `<tmp>/<name>`, for a test that changes what the
    /// image holds without touching the shared one; returns its path.
    pub fn new_rootfs(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        busybox_rootfs(&dir);
        dir
    }

    /// Runs `script` with `sh -c` in a container configured by `edit`; asserts exit 0 and
    /// returns its standard output.
    pub fn run_script(&self, name: &str, script: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = self.config(&["sh", "-c", script]);
        edit(&mut c);
        self.run_ok(name, &c).out()
    }

    /// `berth run` of `config` as the container `name` (made unique by [`Berth::id`]);
    /// asserts exit 0, with both streams in the message, and returns the output.
    #[track_caller]
    pub fn run_ok(&self, name: &str, config: &Value) -> Output {
        let out = self.run(&self.id(name), config);
        assert_eq!(
            out.code(),
            0,
            "{name}: exit {}\nstdout: {}\nstderr: {}",
            out.code(),
            out.out(),
            out.err()
        );
        out
    }

    /// Writes `config` as the bundle of `id` and returns the bundle directory.
    pub fn bundle(&self, id: &str, config: &Value) -> PathBuf {
        let dir = self.path().join("bundles").join(id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(config).unwrap(),
        )
        .unwrap();
        dir
    }

    /// Runs `berth --root <state> args...` to completion.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_with(args, |_| {})
    }

    /// Like [`Berth::cmd`], letting the caller adjust the command first (fds, env).
    ///
    /// Standard output and error go to files, not pipes: a created container inherits them and
    /// would keep a pipe open long after `berth` exits. `create` and `run` register their ID
    /// with the cleanup guard.
    pub fn cmd_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
        if matches!(args.first(), Some(&"create" | &"run")) {
            self.track(args.last().unwrap());
        }
        let n = self.outputs.fetch_add(1, Ordering::Relaxed);
        let out_path = self.path().join(format!("out/{n}.stdout"));
        let err_path = self.path().join(format!("out/{n}.stderr"));
        let mut cmd = Command::new(BERTH);
        cmd.arg("--root")
            .arg(&self.root)
            .args(args)
            .env("BERTH_TEST_TAG", &self.tag)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap());
        adjust(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let status = wait_with_timeout(&mut child, COMMAND_TIMEOUT)
            .unwrap_or_else(|| panic!("berth {args:?} did not finish in {COMMAND_TIMEOUT:?}"));
        Output {
            status,
            stdout: fs::read(out_path).unwrap(),
            stderr: fs::read(err_path).unwrap(),
        }
    }

    /// Registers a container ID for the cleanup guard.
    pub fn track(&self, id: &str) {
        let mut ids = self.ids.lock().unwrap();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    /// `berth create` of `config` as `id`, without checking the outcome.
    pub fn try_create(&self, id: &str, config: &Value) -> Output {
        let bundle = self.bundle(id, config);
        self.cmd(&["create", "--bundle", bundle.to_str().unwrap(), id])
    }

    /// `berth create --pid-file`: asserts success and returns the init's host pid.
    pub fn create(&self, id: &str, config: &Value) -> i32 {
        let bundle = self.bundle(id, config);
        let pid_file = bundle.join("pid");
        self.cmd(&create_args(&bundle, &pid_file, id)).ok();
        self.track_pid_file(&pid_file)
    }

    /// `berth create` of `config` as `id`, expected to fail with `needle` in its error:
    /// asserts that, and that no state of `id` is left; returns the error text.
    pub fn assert_create_fails(&self, id: &str, config: &Value, needle: &str) -> String {
        let err = self.try_create(id, config).fails_with(needle);
        self.assert_no_state(id);
        err
    }

    /// `berth start`, asserting success.
    pub fn start(&self, id: &str) {
        self.cmd(&["start", id]).ok();
    }

    /// [`Berth::create`] then [`Berth::start`]: a running container; returns the init's pid.
    pub fn create_and_start(&self, id: &str, config: &Value) -> i32 {
        let pid = self.create(id, config);
        self.start(id);
        pid
    }

    /// `berth kill <id> <signal>`, asserting success, then waits for the status `stopped`.
    pub fn kill_and_wait(&self, id: &str, signal: &str) {
        self.cmd(&["kill", id, signal]).ok();
        self.wait_status(id, "stopped");
    }

    /// `berth kill --all <id> <signal>` (every process of the container), asserting success,
    /// then waits for the status `stopped`.
    pub fn kill_all_and_wait(&self, id: &str, signal: &str) {
        self.cmd(&["kill", "--all", id, signal]).ok();
        self.wait_status(id, "stopped");
    }

    /// `berth delete` (without `--force`), asserting success.
    pub fn delete(&self, id: &str) {
        self.cmd(&["delete", id]).ok();
    }

    /// `berth ps --format json`: the host pids of the container's processes.
    pub fn ps(&self, id: &str) -> Vec<i32> {
        let out = self.cmd(&["ps", "--format", "json", id]).ok().out();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ps of {id} is not JSON ({e}): {out}"))
    }

    /// `berth events --stats`: one stats document of the container.
    pub fn stats(&self, id: &str) -> Value {
        let out = self.cmd(&["events", "--stats", id]).ok().out();
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("stats of {id} are not JSON ({e}): {out}"))
    }

    /// `berth exec --detach --pid-file <tmp>/<name>.pid [flags...] <id> args...`, asserting
    /// success; returns the new process's host pid, recorded for reaping (it is reparented
    /// to the test process, the subreaper).
    pub fn exec_detached(&self, id: &str, flags: &[&str], args: &[&str]) -> i32 {
        let n = self.outputs.fetch_add(1, Ordering::Relaxed);
        let pid_file = self.path().join(format!("out/{n}.exec-pid"));
        let mut all = vec!["exec", "--detach", "--pid-file", pid_file.to_str().unwrap()];
        all.extend_from_slice(flags);
        all.push(id);
        all.extend_from_slice(args);
        self.cmd(&all).ok();
        self.track_pid_file(&pid_file)
    }

    /// Asserts that `berth state` no longer knows `id`.
    pub fn assert_gone(&self, id: &str) {
        self.cmd(&["state", id])
            .fails_with("container does not exist");
    }

    /// `berth run` in the foreground: the container's output and exit status.
    pub fn run(&self, id: &str, config: &Value) -> Output {
        let bundle = self.bundle(id, config);
        self.cmd(&["run", "--bundle", bundle.to_str().unwrap(), id])
    }

    /// `berth state`, parsed.
    pub fn state(&self, id: &str) -> Value {
        let out = self.cmd(&["state", id]).ok();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("state of {id} is not JSON ({e}): {}", out.out()))
    }

    /// The status field of `berth state`.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// Polls `berth state` until the status is `want`, reaping exited inits meanwhile.
    pub fn wait_status(&self, id: &str, want: &str) {
        let mut last = String::new();
        let reached = poll_until(STATUS_TIMEOUT, || {
            self.reap_all();
            last = self.status(id);
            last == want
        });
        assert!(reached, "{id}: status stayed {last:?}, wanted {want:?}");
    }

    /// `berth delete --force`, asserting success.
    pub fn delete_force(&self, id: &str) {
        self.cmd(&["delete", "--force", id]).ok();
        self.reap_all();
    }

    /// Reaps every tracked init that has exited.
    pub fn reap_all(&self) {
        self.pids.lock().unwrap().retain(|&pid| !reap(pid));
    }

    /// Records a host pid (for example one read from `berth state`) for reaping.
    pub fn track_pid(&self, pid: i32) {
        self.pids.lock().unwrap().push(pid);
    }

    /// Reads the pid that `--pid-file` wrote to `pid_file`, records it for reaping and
    /// returns it.
    pub fn track_pid_file(&self, pid_file: &Path) -> i32 {
        let pid = read_pid_file(pid_file);
        self.track_pid(pid);
        pid
    }

    /// Asserts that nothing of this test is left: no container in the state directory (entries
    /// starting with '.' are berth's own caches, such as compiled seccomp filters; the tests
    /// use no such IDs), no process carrying the tag, no mount under the temporary directory.
    pub fn assert_clean(&self) {
        self.reap_all();
        let entries: Vec<_> = match fs::read_dir(&self.root) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name())
                .filter(|name| !name.to_string_lossy().starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        };
        assert!(entries.is_empty(), "state dir not empty: {entries:?}");
        self.assert_no_processes();
        self.assert_no_mounts();
        self.assert_no_cgroups();
    }

    /// Asserts that no top-level cgroup (berth's default `berth-<id>`) of this test's
    /// containers is left in any hierarchy.
    pub fn assert_no_cgroups(&self) {
        let mut left = Vec::new();
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for e in fs::read_dir(hierarchy.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_name().to_string_lossy().contains(&self.tag) {
                    left.push(e.path());
                }
            }
        }
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }

    /// Asserts that the state directory has no entry for `id`.
    pub fn assert_no_state(&self, id: &str) {
        assert!(
            !self.root.join(id).exists(),
            "state directory of {id} left behind"
        );
    }

    /// Asserts that no live process carries this test's tag (polls briefly: a killed process
    /// may take a moment to die).
    pub fn assert_no_processes(&self) {
        let mut left = Vec::new();
        let gone = poll_until(Duration::from_secs(5), || {
            self.reap_all();
            left = tagged_processes(&self.tag);
            left.is_empty()
        });
        assert!(gone, "processes left behind: {left:?}");
    }

    /// Asserts that the host's mount table has no entry under the temporary directory.
    pub fn assert_no_mounts(&self) {
        let needle = self.path().to_str().unwrap();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let leaked: Vec<_> = mountinfo.lines().filter(|l| l.contains(needle)).collect();
        assert!(leaked.is_empty(), "mounts left behind: {leaked:#?}");
    }
}

impl Default for Berth {
    fn default() -> Self {
        Berth::new()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap());
        for id in ids {
            let _ = Command::new(BERTH)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Last resort for a failed test: whatever still carries the tag is killed (and reaped,
        // if it was reparented to us), so a failure leaks nothing into later tests.
        for (pid, _) in tagged_processes(&self.tag) {
            // SAFETY: kill with integer arguments; the pid carries this test's tag.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            self.track_pid(pid);
        }
        poll_until(Duration::from_secs(5), || {
            self.reap_all();
            self.pids.lock().unwrap().is_empty()
        });
    }
}

/// Adds a new namespace of type `typ` to `config`'s `linux.namespaces`.
pub fn add_namespace(config: &mut Value, typ: &str) {
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": typ }));
}

/// Adds a user namespace to `config` that maps the container's uids and gids 0 to 65535 to
/// the host's `host_id` and up.
pub fn user_namespace(config: &mut Value, host_id: u32) {
    add_namespace(config, "user");
    let map = json!([{"containerID": 0, "hostID": host_id, "size": 65536}]);
    config["linux"]["uidMappings"] = map.clone();
    config["linux"]["gidMappings"] = map;
}

/// Adds the capability `cap` to the bounding, effective and permitted sets of `config`'s
/// process.
pub fn add_capability(config: &mut Value, cap: &str) {
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!(cap));
    }
}

/// Adds `var` (`NAME=value`) to the environment of `config`'s process.
pub fn add_env(config: &mut Value, var: &str) {
    config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!(var));
}

/// Appends `mount` (a runtime-spec mount object) to `config`'s mounts.
pub fn add_mount(config: &mut Value, mount: Value) {
    config["mounts"].as_array_mut().unwrap().push(mount);
}

/// The content of the file `name` in the directory `dir` (a cgroup's, say), without the
/// surrounding whitespace.
pub fn read_trimmed(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Runs `python3 args...` (scripts/setup.sh installs it); panics with its standard error
/// unless it exits 0.
pub fn python3<S: AsRef<OsStr>>(args: &[S]) {
    Command::new("python3")
        .args(args)
        .output()
        .expect("python3 (scripts/setup.sh installs it)")
        .succeeded("python3");
}

/// Builds a busybox OCI image layout in `dir` with scripts/busybox-image.py: the image
/// `name` (`busybox:latest` by default), with `extra` layers (uncompressed tars) stacked on
/// top.
pub fn busybox_layout(dir: &Path, name: &str, extra: &[&Path]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.py");
    let mut args = vec![script.as_os_str(), dir.as_os_str(), OsStr::new(name)];
    args.extend(extra.iter().map(|p| p.as_os_str()));
    python3(&args);
}

/// A [`Berth`] with an image store of its own (`--store`) holding the busybox image
/// `busybox:latest`, for the tests of `berth run IMAGE` and of the image commands.
pub struct ImageStore {
    /// The test's berth (state root, cleanup guard).
    pub b: Berth,
    /// The `--store` directory.
    pub store: PathBuf,
    /// Flags that every [`ImageStore::run`] passes in front of the caller's.
    run_flags: &'static [&'static str],
}

impl ImageStore {
    /// A fresh store into which busybox, built in `<tmp>/layout` with `extra` layers on top
    /// (see [`busybox_layout`]), is imported; `run_flags` go in front of every `run`'s own.
    pub fn new(extra: &[&Path], run_flags: &'static [&'static str]) -> ImageStore {
        let b = Berth::new();
        let store = b.path().join("store");
        let layout = b.path().join("layout");
        busybox_layout(&layout, "busybox:latest", extra);
        let s = ImageStore {
            b,
            store,
            run_flags,
        };
        let out = s.cmd(&["image", "import", layout.to_str().unwrap()]).ok();
        assert!(
            out.out().starts_with("busybox:latest sha256:"),
            "{}",
            out.out()
        );
        s
    }

    /// `berth --store <store> args...` to completion.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_with(args, |_| {})
    }

    /// Like [`ImageStore::cmd`], letting the caller adjust the command first (see
    /// [`Berth::cmd_with`]).
    pub fn cmd_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
        let mut all = vec!["--store", self.store.to_str().unwrap()];
        all.extend_from_slice(args);
        self.b.cmd_with(&all, adjust)
    }

    /// The arguments of `run <run flags> --name ID -e BERTH_TEST_TAG=<tag> args...` (the tag
    /// lets the cleanup guard find strays).
    pub fn run_args(&self, id: &str, args: &[&str]) -> Vec<String> {
        let mut all = vec!["run"];
        all.extend_from_slice(self.run_flags);
        let tag = format!("BERTH_TEST_TAG={}", self.b.tag);
        all.extend(["--name", id, "-e", &tag]);
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect()
    }

    /// `berth run` of [`ImageStore::run_args`], with `id` registered for the cleanup guard.
    pub fn run(&self, id: &str, args: &[&str]) -> Output {
        self.run_with(id, args, |_| {})
    }

    /// Like [`ImageStore::run`], letting the caller adjust the command first (see
    /// [`Berth::cmd_with`]).
    pub fn run_with(&self, id: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
        self.b.track(id);
        let all = self.run_args(id, args);
        self.cmd_with(&all.iter().map(String::as_str).collect::<Vec<_>>(), adjust)
    }

    /// [`ImageStore::run`] as the container `name` (made unique by [`Berth::id`]) with
    /// `args`, asserting success; returns its standard output.
    pub fn run_ok(&self, name: &str, args: &[&str]) -> String {
        self.run(&self.b.id(name), args).ok().out()
    }

    /// `run -d <flags> busybox sleep 1000` as the container `name` (made unique by
    /// [`Berth::id`]), asserting success; returns the container's ID.
    pub fn run_sleeper(&self, name: &str, flags: &[&str]) -> String {
        let id = self.b.id(name);
        let mut args = vec!["-d"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "sleep", "1000"]);
        self.run(&id, &args).ok();
        id
    }

    /// Runs `berth --store <store> args...` as a debug berth that kills itself with SIGKILL
    /// at `point` (`BERTH_FAILPOINT`), and asserts that it was killed there.
    pub fn killed_at<S: AsRef<str>>(&self, point: &str, args: &[S]) {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let out = self.cmd_with(&args, |c| {
            c.env("BERTH_FAILPOINT", point);
        });
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "berth was not killed at {point}: {}",
            out.err()
        );
    }

    /// The names in the store's `bundles` directory (those of `run IMAGE`).
    pub fn bundles(&self) -> Vec<String> {
        fs::read_dir(self.store.join("bundles"))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many holds on layers the store records (one per container or unpacked bundle).
    pub fn holds(&self) -> usize {
        let state: Value =
            serde_json::from_slice(&fs::read(self.store.join("state.json")).unwrap()).unwrap();
        state["holds"].as_object().map_or(0, serde_json::Map::len)
    }

    /// Nothing left: no container, process, mount, bundle or hold ([`Berth::assert_clean`]
    /// and the store's own).
    pub fn assert_clean(&self) {
        self.b.assert_clean();
        assert!(
            self.bundles().is_empty(),
            "bundles left: {:?}",
            self.bundles()
        );
        assert_eq!(self.holds(), 0, "holds left in the store");
    }
}

/// One test of the runtime: runs `body` with a fresh [`Berth`], then asserts that the test
/// left nothing behind ([`Berth::assert_clean`]). A failing body leaves the cleanup to the
/// guard's `Drop`.
pub fn berth_test(body: impl FnOnce(&Berth)) {
    let b = Berth::new();
    body(&b);
    b.assert_clean();
}

/// Drops the namespace of type `typ` from `config`'s `linux.namespaces`.
pub fn remove_namespace(config: &mut Value, typ: &str) {
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|ns| ns["type"] != typ);
}

/// Waits for `child` to exit; after `timeout` kills (and reaps) it and returns `None`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The arguments of `berth create --bundle <bundle> --pid-file <pid_file> <id>`, for callers
/// that add global options in front (as engines do) or run it their own way.
pub fn create_args<'a>(bundle: &'a Path, pid_file: &'a Path, id: &'a str) -> [&'a str; 6] {
    [
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        id,
    ]
}

/// The pid written by `--pid-file` to `pid_file`.
pub fn read_pid_file(pid_file: &Path) -> i32 {
    let text = fs::read_to_string(pid_file)
        .unwrap_or_else(|e| panic!("pid file {}: {e}", pid_file.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {}: {e}: {text:?}", pid_file.display()))
}

/// Adds a read-write bind mount (`rbind`) of the host's `source` at `destination` to
/// `config`'s mounts.
pub fn bind_mount(config: &mut Value, source: &Path, destination: &str) {
    add_mount(
        config,
        json!({"destination": destination, "type": "bind", "source": source, "options": ["rbind"]}),
    );
}

/// The pids of every process now listed in `/proc`.
pub fn proc_pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
}

/// Pids of live processes whose environment holds `BERTH_TEST_TAG=<tag>`.
pub fn tagged_processes(tag: &str) -> Vec<(i32, String)> {
    let needle = format!("BERTH_TEST_TAG={tag}");
    let mut out = Vec::new();
    for pid in proc_pids() {
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) && is_alive(pid) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

/// Makes the spawned command (berth) inherit `from` as descriptor `to`, without `FD_CLOEXEC`,
/// as a careless engine would. Done in the child only: other test threads are unaffected.
pub fn inherit_fd(cmd: &mut Command, from: std::os::fd::RawFd, to: std::os::fd::RawFd) {
    // SAFETY: the closure only calls dup2 and fcntl, which are async-signal-safe, between fork
    // and exec; `from` is kept open by the caller until the command has been spawned.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep FD_CLOEXEC: clear the flag instead.
            let rc = if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// [`inherit_fd`] of `from` as each descriptor in `targets`.
pub fn inherit_fds(cmd: &mut Command, from: std::os::fd::RawFd, targets: &[std::os::fd::RawFd]) {
    for &to in targets {
        inherit_fd(cmd, from, to);
    }
}

/// Runs a container with `pids.max` = `limit` whose shell forks 20 sleepers, and returns how
/// many forks succeeded (each successful fork prints a new `$!`; a failed one repeats the last).
pub fn forks_under_pids_limit(b: &Berth, name: &str, limit: i64) -> usize {
    let mut c = b.config(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 5 & echo $!; done 2>/dev/null",
    ]);
    c["linux"]["resources"] = json!({"pids": {"limit": limit}});
    let out = b.run(&b.id(name), &c);
    out.out()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// A seccomp agent on a socket at `sock`: a thread that accepts one connection, receives the
/// listener fd and the container state ([`recv_agent_message`]) and hands them to `answer`.
pub fn spawn_seccomp_agent<T: Send + 'static>(
    sock: &std::path::Path,
    answer: impl FnOnce(Option<std::os::fd::OwnedFd>, Value) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (fd, state) = recv_agent_message(&conn);
        answer(fd, state)
    })
}

/// What a seccomp agent receives from the runtime on `listenerPath`: the listener descriptor
/// (if one came) and the container process state document.
pub fn recv_agent_message(
    conn: &std::os::unix::net::UnixStream,
) -> (Option<std::os::fd::OwnedFd>, Value) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
                fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    let n = msg.bytes;
    (fd, serde_json::from_slice(&buf[..n]).unwrap())
}
