//! A harness for the tests in which real engines (podman, containerd through ctr, dockerd)
//! drive berth: a temporary directory holding every byte of state, commands run with a
//! deadline and their output captured in files, daemons started and stopped by the test, a
//! pty for the engines' `-t` clients, and a cleanup that leaves nothing behind.
//!
//! Everything a test starts carries `BERTH_TEST_TAG=<tag>` in its environment (the daemons,
//! and through them conmon, the shims and every berth they run), and every path holds the
//! temporary directory's name. [`EngineEnv::finish`] (and, for a failing test, the guard's
//! `Drop`) kills only processes with that tag or that path in their command line, force-deletes
//! every container left in the berth state roots the test used, unmounts what the engines
//! mounted under the temporary directory and removes the test's own cgroup parents.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{is_alive, poll_until, proc_pids, reap, tagged_processes, wait_with_timeout, BERTH};

/// How long one engine command may take before the test gives up on it (and kills it).
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of one engine command.
#[derive(Debug)]
#[allow(clippy::struct_field_names)]
pub struct Out {
    /// The command line, for messages.
    pub what: String,
    /// Exit code (128+N for a signal death).
    pub code: i32,
    /// Standard output, lossily decoded.
    pub out: String,
    /// Standard error, lossily decoded.
    pub err: String,
}

impl Out {
    /// Panics with both streams unless the command exited 0; returns itself.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "{} failed ({}):\nstdout: {}\nstderr: {}",
            self.what, self.code, self.out, self.err
        );
        self
    }

    /// Panics unless the command exited `code`.
    #[track_caller]
    pub fn code_is(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "{}: exit code {} instead of {code}:\nstdout: {}\nstderr: {}",
            self.what, self.code, self.out, self.err
        );
        self
    }

    /// Standard output without surrounding whitespace.
    pub fn trimmed(&self) -> &str {
        self.out.trim()
    }
}

/// Finds `name` on `PATH` (or takes it as is when it holds a slash).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// True when every program is installed and the test runs as root; otherwise prints why the
/// suite is skipped (the engines' Debian packages may be absent on a developer's machine).
pub fn available(suite: &str, programs: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: {suite} needs root");
        return false;
    }
    let missing: Vec<_> = programs.iter().filter(|p| which(p).is_none()).collect();
    if !missing.is_empty() {
        println!("skipped: {suite}: not installed: {missing:?}");
        return false;
    }
    true
}

/// A daemon the test started: stopped with SIGTERM (then SIGKILL) at cleanup.
struct Daemon {
    name: String,
    child: Child,
}

/// One test's world for an engine: the temporary directory and everything to undo.
pub struct EngineEnv {
    /// Every file of the test lives here (short path: unix socket names are limited).
    pub tmp: tempfile::TempDir,
    /// Unique tag: in `BERTH_TEST_TAG`, in cgroup parents and namespaces.
    pub tag: String,
    daemons: Mutex<Vec<Daemon>>,
    berth_roots: Mutex<Vec<PathBuf>>,
    cgroup_parents: Mutex<Vec<String>>,
    /// Engine default cgroup parents that existed before the test (left alone at the end).
    defaults_before: Vec<PathBuf>,
    outputs: AtomicUsize,
    finished: Mutex<bool>,
}

static TAGS: AtomicUsize = AtomicUsize::new(0);

impl EngineEnv {
    /// A fresh environment under `/tmp` (the engines' socket paths must stay short).
    pub fn new(engine: &str) -> EngineEnv {
        super::become_subreaper();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("berth-{engine}-"))
            .tempdir_in("/tmp")
            .unwrap();
        fs::create_dir(tmp.path().join("out")).unwrap();
        let tag = format!(
            "{}e{}",
            std::process::id(),
            TAGS.fetch_add(1, Ordering::Relaxed)
        );
        EngineEnv {
            tmp,
            tag,
            daemons: Mutex::new(Vec::new()),
            berth_roots: Mutex::new(Vec::new()),
            cgroup_parents: Mutex::new(Vec::new()),
            defaults_before: engine_default_cgroups(),
            outputs: AtomicUsize::new(0),
            finished: Mutex::new(false),
        }
    }

    /// [`available`]`(suite, programs)` then [`EngineEnv::new`]`(engine)`: `None` (after
    /// printing why) when the suite is skipped.
    pub fn if_available(suite: &str, programs: &[&str], engine: &str) -> Option<EngineEnv> {
        available(suite, programs).then(|| EngineEnv::new(engine))
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A directory under the temporary one, created.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.path().join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Registers a berth `--root` whose containers cleanup force-deletes.
    pub fn berth_root(&self, root: &Path) {
        self.berth_roots.lock().unwrap().push(root.to_path_buf());
    }

    /// Registers a cgroup path (relative to each hierarchy's root) that belongs to this test
    /// alone: cleanup removes it and everything below it.
    pub fn cgroup_parent(&self, rel: &str) {
        self.cgroup_parents
            .lock()
            .unwrap()
            .push(rel.trim_matches('/').to_string());
    }

    /// Builds the busybox OCI image layout (`scripts/busybox-image.py`) in `dir`.
    pub fn busybox_layout(&self, dir: &Path) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.py");
        self.run(
            "python3",
            &[
                script.to_str().unwrap(),
                dir.to_str().unwrap(),
                "busybox:latest",
            ],
            |_| {},
        )
        .ok();
    }

    /// The layout `dir` as an OCI archive (a tar of the directory), next to it.
    pub fn oci_archive(&self, dir: &Path) -> PathBuf {
        let tar = dir.with_extension("tar");
        self.run(
            "tar",
            &[
                "-C",
                dir.to_str().unwrap(),
                "-cf",
                tar.to_str().unwrap(),
                ".",
            ],
            |_| {},
        )
        .ok();
        tar
    }

    /// A shell script that runs the berth under test with a fixed `--root` (for engines that
    /// pass none, so its state stays in the temporary directory).
    pub fn berth_wrapper(&self, root: &Path) -> PathBuf {
        let path = self.path().join("berth-runtime");
        fs::write(
            &path,
            format!("#!/bin/sh\nexec {BERTH} --root {} \"$@\"\n", root.display()),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        self.berth_root(root);
        path
    }

    /// A command with the test's tag in its environment, stdin from /dev/null.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("BERTH_TEST_TAG", &self.tag).stdin(Stdio::null());
        c
    }

    /// Runs `program args` to completion (killed after [`ENGINE_TIMEOUT`]); `adjust` may add
    /// environment or stdin. Output goes to files: a detached container or a daemonized
    /// conmon would hold a pipe open.
    pub fn run(&self, program: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Out {
        let n = self.outputs.fetch_add(1, Ordering::Relaxed);
        let out_path = self.path().join(format!("out/{n}.stdout"));
        let err_path = self.path().join(format!("out/{n}.stderr"));
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap());
        adjust(&mut cmd);
        let what = format!("{program} {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let status = wait_with_timeout(&mut child, ENGINE_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "{what} did not finish in {ENGINE_TIMEOUT:?}\nstdout: {}\nstderr: {}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            )
        });
        Out {
            what,
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            out: String::from_utf8_lossy(&fs::read(out_path).unwrap()).into_owned(),
            err: String::from_utf8_lossy(&fs::read(err_path).unwrap()).into_owned(),
        }
    }

    /// Runs `program args` with a new pty as its stdin, stdout and stderr (the engines' `-t`
    /// clients insist on a terminal), typing `input` into it; returns the exit code and
    /// everything the pty showed.
    pub fn run_in_pty(&self, program: &str, args: &[&str], input: &[u8]) -> Out {
        let (master, slave) = openpty();
        let mut cmd = self.command(program);
        cmd.args(args);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe; the child makes the pty (already its
        // stdin) its controlling terminal, as a login shell's child would have one.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let what = format!("{program} {} (in a pty)", args.join(" "));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        // The command keeps its copies of the slave until dropped: the reader below sees EOF
        // only once the child and its descendants hold the last ones.
        drop(cmd);
        drop(slave);
        let mut reader = File::from(master.try_clone().unwrap());
        let collected = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            // EIO once the last slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        let mut writer = File::from(master);
        if !input.is_empty() {
            // Give the engine a moment to attach before typing.
            std::thread::sleep(Duration::from_millis(500));
            writer.write_all(input).unwrap();
        }
        let status = wait_with_timeout(&mut child, ENGINE_TIMEOUT)
            .unwrap_or_else(|| panic!("{what} did not finish in {ENGINE_TIMEOUT:?}"));
        drop(writer);
        // The reader ends when every holder of the slave is gone; do not wait forever on a
        // stray holder.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !collected.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = if collected.is_finished() {
            collected.join().unwrap()
        } else {
            b"<pty output still open>".to_vec()
        };
        Out {
            what,
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            out: String::from_utf8_lossy(&out).into_owned(),
            err: String::new(),
        }
    }

    /// Starts a daemon (output in `<tmp>/<name>.log`) and waits until `ready` holds.
    pub fn start_daemon(
        &self,
        name: &str,
        program: &str,
        args: &[&str],
        ready: impl FnMut() -> bool,
    ) {
        let log = self.path().join(format!("{name}.log"));
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(&log).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.daemons.lock().unwrap().push(Daemon {
            name: name.to_string(),
            child,
        });
        assert!(
            poll_until(Duration::from_secs(60), ready),
            "{name} did not become ready:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops every daemon: SIGTERM, up to 20 s to exit (dockerd stops its containers and its
    /// containerd), then SIGKILL.
    fn stop_daemons(&self) {
        let mut daemons = std::mem::take(&mut *self.daemons.lock().unwrap());
        // Last started, first stopped.
        while let Some(mut d) = daemons.pop() {
            if d.child.try_wait().ok().flatten().is_some() {
                continue;
            }
            // SAFETY: kill with integer arguments, to the daemon this test spawned.
            unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while d.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if d.child.try_wait().ok().flatten().is_none() {
                eprintln!("{}: did not stop on SIGTERM; killing it", d.name);
                let _ = d.child.kill();
                let _ = d.child.wait();
            }
        }
    }

    /// Processes of this test still alive: tagged, or with the temporary directory in their
    /// command line (shims and conmon name their daemon's socket or state there).
    pub fn own_processes(&self) -> Vec<(i32, String)> {
        let needle = self.path().to_str().unwrap().as_bytes().to_vec();
        let mut found = tagged_processes(&self.tag);
        for pid in proc_pids() {
            if found.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if cmdline.windows(needle.len()).any(|w| w == needle) && is_alive(pid) {
                found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
            }
        }
        found
    }

    /// Mount points under the temporary directory, innermost (last mounted) first.
    pub fn own_mounts(&self) -> Vec<String> {
        let prefix = self.path().to_str().unwrap();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut out: Vec<String> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mount_path)
            .filter(|p| p == prefix || p.starts_with(&format!("{prefix}/")))
            .collect();
        out.reverse();
        out
    }

    /// The test's cgroup parents that still exist, as absolute directories.
    pub fn own_cgroups(&self) -> Vec<PathBuf> {
        let parents = self.cgroup_parents.lock().unwrap().clone();
        let mut out = Vec::new();
        for mnt in cgroup_mounts() {
            for rel in &parents {
                let d = mnt.join(rel);
                if d.is_dir() {
                    out.push(d);
                }
            }
        }
        out
    }

    /// Undoes everything; `strict` asserts that nothing had to be forced out after the
    /// engines' own shutdown (containers, processes, mounts, cgroups).
    fn cleanup(&self, strict: bool) {
        let mut problems = Vec::new();
        self.stop_daemons();
        // Containers berth still knows about: an engine that shut down cleanly leaves none.
        for root in self.berth_roots.lock().unwrap().iter() {
            let ids = Command::new(BERTH)
                .arg("--root")
                .arg(root)
                .args(["list", "-q"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in ids.lines().filter(|l| !l.is_empty()) {
                problems.push(format!("container {id} left in {}", root.display()));
                let _ = Command::new(BERTH)
                    .arg("--root")
                    .arg(root)
                    .args(["delete", "--force", id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // Shims and conmon exit once their containers are gone; give them a moment.
        poll_until(Duration::from_secs(10), || self.own_processes().is_empty());
        let left = self.own_processes();
        for (pid, cmdline) in &left {
            problems.push(format!("process {pid} left: {cmdline}"));
            // SAFETY: kill with integer arguments; the process carries this test's tag or
            // names its temporary directory.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        poll_until(Duration::from_secs(10), || {
            left.iter().all(|(pid, _)| reap(*pid))
        });
        for m in self.own_mounts() {
            problems.push(format!("mount left: {m}"));
            let c = std::ffi::CString::new(m.as_str()).unwrap();
            // SAFETY: umount2 with a valid C string and integer flags.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for dir in self.own_cgroups() {
            if let Err(e) = remove_cgroup_tree(&dir) {
                problems.push(format!("cgroup {} not removed: {e}", dir.display()));
            }
        }
        // The engines' own default parents (podman's build makes `libpod_parent/conmon`,
        // dockerd may make `docker`): removed when the test made them and no process is in
        // them (rmdir refuses a populated cgroup).
        for dir in engine_default_cgroups() {
            if !self.defaults_before.contains(&dir) {
                let _ = remove_cgroup_tree(&dir);
            }
        }
        *self.finished.lock().unwrap() = true;
        assert!(
            !strict || problems.is_empty(),
            "the engine left things behind:\n{}",
            problems.join("\n")
        );
    }

    /// Stops the daemons and asserts that the engine, through berth, left nothing behind.
    /// Mounts the engines themselves keep (dockerd's data-root bind, its `netns/default`)
    /// are unmounted first by `allow_mounts`.
    pub fn finish(&self, mut allow_mounts: impl FnMut(&str) -> bool) {
        self.stop_daemons();
        for m in self.own_mounts() {
            if allow_mounts(&m) {
                let c = std::ffi::CString::new(m.as_str()).unwrap();
                // SAFETY: umount2 with a valid C string and integer flags.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        self.cleanup(true);
    }
}

impl Drop for EngineEnv {
    fn drop(&mut self) {
        if !*self.finished.lock().unwrap() {
            self.cleanup(false);
        }
    }
}

/// The engines' default cgroup parents that exist now, in every hierarchy.
fn engine_default_cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for mnt in cgroup_mounts() {
        for name in ["docker", "libpod_parent"] {
            let d = mnt.join(name);
            if d.is_dir() {
                out.push(d);
            }
        }
    }
    out
}

/// Mount points of the cgroup hierarchies (v1 controllers and cgroup2).
fn cgroup_mounts() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let point = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| PathBuf::from(unescape_mount_path(point)))
        })
        .collect()
}

/// Removes a cgroup directory and its descendants, deepest first.
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// A new pty pair (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: out pointers to two ints; null name, termios and winsize are allowed.
    let rc = unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two new descriptors that nothing else owns.
    let pair = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&pair.0, &pair.1] {
        // SAFETY: fcntl on a valid descriptor with integer arguments.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    pair
}

/// The host pid's cgroup directory in the v1 `controller` hierarchy (from /proc/PID/cgroup).
pub fn v1_cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'))
        })
    })
}

/// The content of `file`, trimmed, in the host pid's cgroup of the v1 `controller`
/// hierarchy (see [`v1_cgroup_dir`]).
pub fn v1_cgroup_value(pid: i32, controller: &str, file: &str) -> String {
    let dir = v1_cgroup_dir(pid, controller)
        .unwrap_or_else(|| panic!("{pid} has no cgroup in the v1 {controller} hierarchy"));
    super::read_trimmed(&dir, file)
}

/// Polls `f` until it returns `want` (20 s), returning the last value.
pub fn wait_for(what: &str, want: &str, mut f: impl FnMut() -> String) -> String {
    let mut last = String::new();
    let reached = poll_until(Duration::from_secs(20), || {
        last = f();
        last == want
    });
    assert!(reached, "{what}: stayed {last:?}, wanted {want:?}");
    last
}

/// A container command that loops until it is killed and writes `usr1` to `/tmp/usr1` when
/// it gets SIGUSR1; as pid 1 without a handler for TERM, it ignores TERM.
pub const USR1_LOOP: &[&str] = &[
    "sh",
    "-c",
    "trap 'echo usr1 > /tmp/usr1' USR1; while :; do sleep 0.1; done",
];

/// How an engine's client is run: the program, the global flags that go in front of every
/// command's own, and the environment variables that point it at the test's configuration.
pub struct Client {
    /// The client program.
    pub program: String,
    /// Its global flags.
    pub flags: Vec<String>,
    /// Its environment.
    pub vars: Vec<(&'static str, PathBuf)>,
}

impl Client {
    /// The client with its global flags, `args` and its environment, as a command of `env`
    /// (stdin from /dev/null, the test's tag in its environment).
    pub fn command(&self, env: &EngineEnv, args: &[&str]) -> Command {
        let mut c = env.command(&self.program);
        c.args(&self.flags)
            .args(args)
            .envs(self.vars.iter().cloned());
        c
    }
}

/// An engine driven through docker's command line (dockerd's client, podman): the steps its
/// tests share.
pub trait DockerCli {
    /// The test's engine environment.
    fn engine_env(&self) -> &EngineEnv;

    /// How the engine's client is run.
    fn client(&self) -> Client;

    /// The flags that every container of the test is run with (runtime, pull policy,
    /// cgroup parent).
    fn run_flags(&self) -> Vec<String>;

    /// The busybox image as the engine names it.
    fn image(&self) -> &'static str;

    /// The arguments of `run` with [`DockerCli::run_flags`], then `flags`, the image and
    /// `cmd`.
    fn run_args(&self, flags: &[&str], cmd: &[&str]) -> Vec<String> {
        let mut args = vec!["run".to_string()];
        args.extend(self.run_flags());
        args.extend(flags.iter().map(|f| (*f).to_string()));
        args.push(self.image().to_string());
        args.extend(cmd.iter().map(|c| (*c).to_string()));
        args
    }

    /// Runs the client with its global flags and `args` (see [`EngineEnv::run`]), letting
    /// `adjust` change the command (stdin) first.
    fn cli_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Out {
        let client = self.client();
        let all: Vec<&str> = client
            .flags
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        self.engine_env().run(&client.program, &all, |c| {
            c.envs(client.vars.iter().cloned());
            adjust(c);
        })
    }

    /// [`DockerCli::cli_with`] without adjusting the command.
    fn cli(&self, args: &[&str]) -> Out {
        self.cli_with(args, |_| {})
    }

    /// `run` of [`DockerCli::run_args`].
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Out {
        let args = self.run_args(flags, cmd);
        self.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `inspect --format FORMAT name`, trimmed.
    fn inspect(&self, name: &str, format: &str) -> String {
        self.cli(&["inspect", "--format", format, name])
            .ok()
            .trimmed()
            .to_string()
    }

    /// The container's init pid on the host.
    fn pid(&self, name: &str) -> i32 {
        self.inspect(name, "{{.State.Pid}}").parse().unwrap()
    }

    /// Attached runs with `flags`: output, an exit code, berth's exec errors mapped to 127
    /// and 126, a terminal (`-t`), stdin (`-i`) and both (`-it`, from a pty).
    fn assert_attached_runs(&self, flags: &[&str]) {
        let with =
            |more: &'static str| -> Vec<&str> { flags.iter().copied().chain([more]).collect() };
        assert_eq!(self.run(flags, &["echo", "hello"]).ok().out, "hello\n");
        self.run(flags, &["sh", "-c", "exit 3"]).code_is(3);
        let missing = self.run(flags, &["/nonexistent"]).code_is(127);
        assert!(
            missing.err.contains("no such file or directory"),
            "{missing:?}"
        );
        let denied = self.run(flags, &["/etc/passwd"]).code_is(126);
        assert!(denied.err.contains("permission denied"), "{denied:?}");
        let tty = self
            .run(&with("-t"), &["sh", "-c", "tty; exit 4"])
            .code_is(4);
        assert!(tty.out.contains("/dev/pts/0"), "{tty:?}");
        let input = self.engine_env().path().join("stdin");
        fs::write(&input, "from stdin\n").unwrap();
        let cat = self.run_args(&with("-i"), &["cat"]);
        let cat = self.cli_with(&cat.iter().map(String::as_str).collect::<Vec<_>>(), |c| {
            c.stdin(File::open(&input).unwrap());
        });
        assert_eq!(cat.ok().out, "from stdin\n");
        // run_in_pty sets no environment of its own: the client's goes through `env`.
        let client = self.client();
        let mut it: Vec<String> = client
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}", v.display()))
            .collect();
        it.push(client.program);
        it.extend(client.flags);
        it.extend(self.run_args(&with("-it"), &["sh", "-c", "tty; read x; echo got-$x"]));
        let it: Vec<&str> = it.iter().map(String::as_str).collect();
        let it = self.engine_env().run_in_pty("env", &it, b"typed\n");
        assert_eq!(it.code, 0, "{it:?}");
        assert!(it.out.contains("/dev/pts/0"), "{it:?}");
        assert!(it.out.contains("got-typed"), "{it:?}");
    }

    /// `exec` into the running container `name`: its output, exit code `code`, and `-t`
    /// giving it a pty.
    fn assert_exec_basics(&self, name: &str, code: i32) {
        assert_eq!(
            self.cli(&["exec", name, "sh", "-c", "echo in-exec"])
                .ok()
                .out,
            "in-exec\n"
        );
        let exit = format!("exit {code}");
        self.cli(&["exec", name, "sh", "-c", &exit]).code_is(code);
        let tty = self.cli(&["exec", "-t", name, "tty"]).ok();
        assert!(tty.out.starts_with("/dev/pts/"), "{tty:?}");
    }

    /// `pause` and `unpause` of the running container `name`, with its status after each.
    fn assert_pause_unpause(&self, name: &str) {
        self.cli(&["pause", name]).ok();
        assert_eq!(self.inspect(name, "{{.State.Status}}"), "paused");
        self.cli(&["unpause", name]).ok();
        assert_eq!(self.inspect(name, "{{.State.Status}}"), "running");
    }

    /// `kill --signal=USR1` of the container `name`, which runs [`USR1_LOOP`]: waits until
    /// its trap ran.
    fn assert_usr1_trap(&self, name: &str) {
        self.cli(&["kill", "--signal=USR1", name]).ok();
        wait_for("the USR1 trap", "usr1", || {
            self.cli(&["exec", name, "cat", "/tmp/usr1"])
                .out
                .trim()
                .to_string()
        });
    }

    /// `stop --time=1` of the container `name`, which runs [`USR1_LOOP`] (TERM ignored by
    /// pid 1): KILL ends it (exit 137) and its init `pid`; then `start` and
    /// `restart --time=1` each give it a new init. Returns the last init's pid.
    fn assert_stop_start_restart(&self, name: &str, pid: i32) -> i32 {
        self.cli(&["stop", "--time=1", name]).ok();
        assert_eq!(
            self.inspect(name, "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 137"
        );
        assert!(!is_alive(pid), "the init survived stop");
        self.cli(&["start", name]).ok();
        let started = self.pid(name);
        assert_ne!(started, pid);
        self.cli(&["restart", "--time=1", name]).ok();
        assert_eq!(self.inspect(name, "{{.State.Status}}"), "running");
        let restarted = self.pid(name);
        assert_ne!(restarted, started);
        restarted
    }
}

/// An engine that one test starts for itself and tears down at its end.
pub trait Engine: Sized {
    /// Starts the engine with everything in a temporary directory; `None` (after printing
    /// "skipped") when it is not installed.
    fn start() -> Option<Self>;

    /// Removes every container, stops the engine and asserts that nothing is left behind.
    fn finish(self);
}

/// One engine test: starts `E` (and returns at once when it is skipped), runs `body`, prints
/// how long the body took as `what`, then finishes the engine, asserting that nothing is
/// left. A failing body leaves the cleanup to the engine's and [`EngineEnv`]'s `Drop`.
pub fn engine_test<E: Engine>(what: &str, body: impl FnOnce(&E)) {
    let Some(engine) = E::start() else { return };
    timed(what, || body(&engine));
    engine.finish();
}

/// The time a closure took, printed for the report.
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    println!("{what}: {:?}", t.elapsed());
    v
}
