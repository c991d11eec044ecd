//! Helpers shared by the host and VM suites: unique test cgroups that are always removed, and
//! child processes that wait to be moved into a cgroup before they act.

#![allow(dead_code)]

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use berth_cgroups::{Cgroup, Error, Mode, Stats};

/// Whether we run as root (the suites skip otherwise).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A name no other test (or test run) uses: `berth-test-<tag>-<pid>-<n>`.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "berth-test-{tag}-{}-{}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1000
    )
}

/// The host's mode, or `None` when cgroups cannot be used here (not root).
pub fn host_mode() -> Option<Mode> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    Cgroup::resolve(None, "probe").ok().map(|c| c.mode())
}

/// A container cgroup for a test, removed (with its `berth-test-*` parent) on drop, even when
/// the test fails.
pub struct TestCg {
    /// The cgroup.
    pub cg: Cgroup,
}

impl TestCg {
    /// `/<parent>/<leaf>` in the real host view, created.
    pub fn create(parent: &str, leaf: &str) -> TestCg {
        let mut cg =
            Cgroup::resolve(Some(Path::new(&format!("/{parent}/{leaf}"))), leaf).expect("resolve");
        let res = cg.create();
        let t = TestCg { cg };
        res.expect("create");
        t
    }

    /// A cgroup resolved from a chosen view (mountinfo, /proc/self/cgroup), created.
    pub fn create_in(mountinfo: &str, proc_cgroup: &str, path: &str) -> TestCg {
        let mut cg = Cgroup::resolve_in(mountinfo, proc_cgroup, Some(Path::new(path)), "t")
            .expect("resolve");
        let res = cg.create();
        let t = TestCg { cg };
        res.expect("create");
        t
    }

    /// The directory of `controller`.
    pub fn dir(&self, controller: &str) -> &Path {
        self.cg
            .controller_dir(controller)
            .expect("controller mounted")
    }

    /// Forks a child doing `action`, moves it into this cgroup and releases it.
    pub fn run(&self, action: &Action) -> Child {
        let child = Child::spawn(action);
        self.cg.add_pid(child.pid).unwrap();
        child.go();
        child
    }

    /// [`TestCg::run`] of `action`, waiting for the child's exit code.
    pub fn run_to_exit(&self, action: &Action) -> i32 {
        self.run(action).exit_code()
    }

    /// Runs a child that forks `n` sleeping children and exits (checked), and waits until its
    /// `n` orphans are in the cgroup.
    pub fn run_orphans(&self, n: u32) {
        let mut child = self.run(&Action::ForkLoop(n));
        assert_eq!(child.exit_code(), n as i32, "forks that worked");
        eventually(&format!("{n} orphans"), || {
            self.cg.pids().unwrap().len() == n as usize
        });
    }

    /// Runs an [`Action::Spin`] child in this cgroup and waits until it counts; returns the
    /// child and a reader of its counter.
    pub fn spinner(&self) -> (Child, impl Fn() -> u64) {
        let counter = shared_counter();
        let child = self.run(&Action::Spin(counter));
        // SAFETY: counter points to a live shared page (never unmapped); volatile reads of a
        // u64.
        let read = move || unsafe { std::ptr::read_volatile(counter) };
        eventually("the child to spin", || read() > 0);
        (child, read)
    }

    /// Freezes the cgroup, asserts that it reports frozen and that `read` (a
    /// [`TestCg::spinner`]'s counter) stands still for `hold`; returns the frozen count.
    pub fn freeze_and_assert_still(&self, read: impl Fn() -> u64, hold: Duration) -> u64 {
        self.cg.freeze().unwrap();
        assert!(self.cg.is_frozen().unwrap());
        let frozen = read();
        std::thread::sleep(hold);
        assert_eq!(read(), frozen, "a frozen process made progress");
        frozen
    }

    /// Applies `linux.resources` given as JSON; panics naming the JSON when that fails.
    pub fn apply(&self, json: &str) {
        if let Err(e) = self.cg.apply(&resources(json)) {
            panic!("apply {json}: {e}");
        }
    }

    /// Applies `linux.resources` given as JSON, which must be refused; the error.
    pub fn apply_err(&self, json: &str) -> Error {
        match self.cg.apply(&resources(json)) {
            Ok(()) => panic!("{json} was accepted"),
            Err(e) => e,
        }
    }

    /// [`TestCg::apply_err`], asserting that the error's message contains `names` (the field
    /// or controller at fault); the error.
    pub fn refused(&self, json: &str, names: &str) -> Error {
        let e = self.apply_err(json);
        assert!(
            e.to_string().contains(names),
            "refusing {json}: {e:?} does not name {names:?}"
        );
        e
    }

    /// With `pids.max` 5, a child that tries `forks` forks manages 4 (it counts too), and
    /// `pids.events` counts the refusals.
    pub fn assert_pids_limit_stops_a_fork_loop(&self, forks: u32) {
        self.apply(r#"{"pids": {"limit": 5}}"#);
        let mut child = self.run(&Action::ForkLoop(forks));
        let forked = child.exit_code();
        assert_eq!(forked, 4, "the child plus 4 forks fill pids.max=5");
        let events = self.read("pids", "pids.events");
        assert!(
            events.contains("max") && !events.ends_with(" 0"),
            "pids.events: {events}"
        );
    }

    /// With a 32 MiB memory limit (and no swap beyond it), a child touching `bytes` is
    /// SIGKILLed within `timeout` and counted as an OOM kill; the stats afterwards.
    pub fn assert_oom_killed(&self, bytes: usize, timeout: Duration) -> Stats {
        self.apply(r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#);
        let mut child = self.run(&Action::Alloc(bytes));
        let st = child.wait_timeout(timeout).expect("child ended");
        assert!(
            libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
            "not SIGKILLed: status {st:#x}"
        );
        assert!(self.cg.oom_kills().unwrap() >= 1);
        self.cg.stats().unwrap()
    }

    /// Freezes a [`TestCg::spinner`] (checked still for `hold`, and `while_frozen`), thaws it
    /// and waits for progress; returns the spinner and its counter.
    pub fn freeze_and_thaw(
        &self,
        hold: Duration,
        while_frozen: impl FnOnce(),
    ) -> (Child, impl Fn() -> u64) {
        let (child, read) = self.spinner();
        let frozen = self.freeze_and_assert_still(&read, hold);
        while_frozen();
        self.cg.thaw().unwrap();
        assert!(!self.cg.is_frozen().unwrap());
        eventually("progress after thaw", || read() > frozen);
        (child, read)
    }

    /// The container's v2 directory, on a v2-only host or view (every controller's files are
    /// there).
    pub fn leaf(&self) -> &Path {
        assert_eq!(self.cg.mode(), Mode::Unified, "not a v2-only cgroup");
        self.cg.dirs().next().expect("a v2 directory")
    }

    /// Reads a file of [`TestCg::leaf`], trimmed.
    pub fn read_leaf(&self, file: &str) -> String {
        std::fs::read_to_string(self.leaf().join(file))
            .unwrap_or_else(|e| panic!("read {file}: {e}"))
            .trim()
            .to_owned()
    }

    /// The controllers enabled for the v2 leaf (its `cgroup.controllers`).
    pub fn controllers(&self) -> Vec<String> {
        self.read_leaf("cgroup.controllers")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// Reads a file of `controller`'s directory, trimmed.
    pub fn read(&self, controller: &str, file: &str) -> String {
        std::fs::read_to_string(self.dir(controller).join(file))
            .unwrap_or_else(|e| panic!("read {file}: {e}"))
            .trim()
            .to_owned()
    }
}

impl Drop for TestCg {
    fn drop(&mut self) {
        if let Err(e) = self.cg.destroy() {
            eprintln!("destroy: {e}");
        }
        for d in self.cg.dirs() {
            if let Some(p) = d.parent() {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("berth-test-"))
                {
                    let _ = std::fs::remove_dir(p);
                }
            }
        }
    }
}

/// What a child does once released.
pub enum Action {
    /// Sleep until killed.
    Sleep,
    /// Fork this many sleeping children; exit with the number of forks that worked.
    ForkLoop(u32),
    /// Touch this many bytes of fresh memory, then exit 0.
    Alloc(usize),
    /// Increment the shared counter forever.
    Spin(*mut u64),
    /// open(2) the path with the flags; exit 0 or with the errno.
    Open(CString, i32),
    /// Read this many bytes of a block device with O_DIRECT, 64 KiB at a time; exit 0, or
    /// with the errno.
    ReadDirect(CString, usize),
    /// Touch 8 MiB, burn CPU for this many milliseconds, then sleep.
    Burn(u64),
}

/// A forked child that waits for [`Child::go`]; killed and reaped on drop.
pub struct Child {
    /// Its pid.
    pub pid: i32,
    go: i32,
    reaped: bool,
}

/// A page of memory shared with children (for [`Action::Spin`]).
pub fn shared_counter() -> *mut u64 {
    // Never unmapped (the tests are short-lived).
    let p = map_anonymous(4096, libc::MAP_SHARED);
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

/// A fresh anonymous read-write mapping of `len` bytes, `sharing` being `MAP_SHARED` or
/// `MAP_PRIVATE`; `MAP_FAILED` on failure. Async-signal-safe (one system call), so forked
/// children may use it.
fn map_anonymous(len: usize, sharing: i32) -> *mut libc::c_void {
    // SAFETY: an anonymous mapping at an address the kernel picks aliases nothing.
    unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            sharing | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    }
}

/// Writes one byte in every page of `len` bytes at `p`, so that the memory is charged.
///
/// # Safety
///
/// `p` must be valid for writes of `len` bytes.
unsafe fn touch_pages(p: *mut u8, len: usize) {
    let mut i = 0;
    while i < len {
        // SAFETY: i < len, and the caller vouches for p..p+len.
        unsafe { std::ptr::write_volatile(p.add(i), 1) };
        i += 4096;
    }
}

fn child_main(read_fd: i32, action: &Action) -> ! {
    // Only async-signal-safe calls from here on: the test binary is multi-threaded.
    // SAFETY: plain syscalls on our own fds and memory; _exit never returns.
    unsafe {
        let mut b = 0u8;
        libc::read(read_fd, (&raw mut b).cast(), 1);
        let code = match action {
            Action::Sleep => loop {
                libc::pause();
            },
            Action::ForkLoop(n) => {
                let mut ok = 0;
                for _ in 0..*n {
                    match libc::fork() {
                        0 => loop {
                            libc::pause();
                        },
                        p if p > 0 => ok += 1,
                        _ => {}
                    }
                }
                ok
            }
            Action::Alloc(bytes) => {
                let p = map_anonymous(*bytes, libc::MAP_PRIVATE);
                if p == libc::MAP_FAILED {
                    libc::_exit(2);
                }
                touch_pages(p.cast(), *bytes);
                0
            }
            Action::Spin(c) => loop {
                std::ptr::write_volatile(*c, std::ptr::read_volatile(*c) + 1);
            },
            Action::Open(path, flags) => {
                let fd = libc::open(path.as_ptr(), *flags);
                if fd < 0 {
                    *libc::__errno_location()
                } else {
                    0
                }
            }
            Action::ReadDirect(path, bytes) => {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECT);
                if fd < 0 {
                    libc::_exit(*libc::__errno_location());
                }
                let chunk = 64 << 10;
                let buf = map_anonymous(chunk, libc::MAP_PRIVATE);
                let mut off = 0;
                let mut code = 0;
                while off < *bytes {
                    let n = libc::pread(fd, buf, chunk, off as libc::off_t);
                    if n <= 0 {
                        code = if n < 0 {
                            *libc::__errno_location()
                        } else {
                            200
                        };
                        break;
                    }
                    off += n as usize;
                }
                code
            }
            Action::Burn(ms) => {
                let len = 8 << 20;
                let p = map_anonymous(len, libc::MAP_PRIVATE);
                if p != libc::MAP_FAILED {
                    touch_pages(p.cast(), len);
                }
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts);
                let start = ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000;
                loop {
                    libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts);
                    if ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000 - start >= *ms as i64 {
                        break;
                    }
                }
                loop {
                    libc::pause();
                }
            }
        };
        libc::_exit(code)
    }
}

impl Child {
    /// Forks a child that will do `action` once released with [`Child::go`].
    pub fn spawn(action: &Action) -> Child {
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only makes async-signal-safe calls (child_main).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            child_main(fds[0], action);
        }
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        Child {
            pid,
            go: fds[1],
            reaped: false,
        }
    }

    /// Releases the child.
    pub fn go(&self) {
        let b = 1u8;
        // SAFETY: writing one byte from a live local to our pipe.
        assert_eq!(unsafe { libc::write(self.go, (&raw const b).cast(), 1) }, 1);
    }

    /// Waits up to `timeout` for the child to end; its raw wait status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pid, &raw mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            sleep(Duration::from_millis(5));
        }
    }

    /// The exit code, panicking if the child was killed or is still running after 30 s.
    pub fn exit_code(&mut self) -> i32 {
        let st = self
            .wait_timeout(Duration::from_secs(30))
            .expect("child still running");
        assert!(
            libc::WIFEXITED(st),
            "child did not exit normally: status {st:#x}"
        );
        libc::WEXITSTATUS(st)
    }

    /// The process state letter from /proc/<pid>/stat (R, S, T, ...).
    pub fn state(&self) -> char {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        s.rsplit(')')
            .next()
            .and_then(|r| r.trim().chars().next())
            .unwrap_or('?')
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: closing our pipe end; signalling and reaping our own child.
        unsafe {
            libc::close(self.go);
            if !self.reaped {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Waits (up to 10 s) until `f` holds.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        sleep(Duration::from_millis(10));
    }
}

/// `linux.resources` from JSON.
pub fn resources(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).expect("resources json")
}
