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

/// The time a closure took, printed for the report.
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    println!("{what}: {:?}", t.elapsed());
    v
}
