//! podman (Debian's podman and conmon) drives berth: `[engine.runtimes] berth` in a
//! containers.conf of the test's own, with berth in `runtime_supports_json`, the cgroupfs
//! manager, no network namespace setup and ulimits below this machine's hard limits. Storage,
//! run state, events and berth's own state live in a temporary directory.
//!
//! podman passes berth no `--root`: the runtime path is a two-line script running the berth
//! under test with the test's `--root`, so nothing lands in `/run/berth`.
//!
//! Skipped (with a message) when podman or conmon is not installed.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::engines::{available, v1_cgroup_dir, wait_for, EngineEnv, Out};

/// The image every test runs, imported from the busybox OCI layout.
const IMAGE: &str = "localhost/busybox:latest";

/// A container that exits 0 on SIGTERM (pid 1 ignores signals it has no handler for).
const SLEEPER: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];

/// podman with every path in one test's temporary directory.
struct Podman {
    env: EngineEnv,
    conf: PathBuf,
    storage_conf: PathBuf,
    registries_conf: PathBuf,
    cgroup_parent: String,
}

impl Podman {
    /// A podman whose default runtime is berth, with the busybox image loaded; `None` (after
    /// printing "skipped") when podman is not installed.
    fn new() -> Option<Podman> {
        if !available("podman", &["podman", "conmon", "python3"]) {
            return None;
        }
        let env = EngineEnv::new("podman");
        let dir = env.path().to_path_buf();
        let runtime = env.berth_wrapper(&dir.join("berth-state"));
        let cgroup_parent = format!("berth-{}", env.tag);
        env.cgroup_parent(&cgroup_parent);
        let conf = dir.join("containers.conf");
        fs::write(
            &conf,
            format!(
                r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"
log_driver = "k8s-file"
cgroupns = "host"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
hooks_dir = ["{d}/no-hooks"]
runtime = "berth"
runtime_supports_json = ["berth", "crun", "runc"]
static_dir = "{d}/static"
tmp_dir = "{d}/tmp"
volume_path = "{d}/volumes"
lock_type = "file"

[engine.runtimes]
berth = ["{runtime}"]
"#,
                d = dir.display(),
                runtime = runtime.display()
            ),
        )
        .unwrap();
        let storage_conf = dir.join("storage.conf");
        fs::write(
            &storage_conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/run\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let registries_conf = dir.join("registries.conf");
        fs::write(&registries_conf, "unqualified-search-registries = []\n").unwrap();
        let p = Podman {
            env,
            conf,
            storage_conf,
            registries_conf,
            cgroup_parent,
        };
        let layout = p.env.path().join("busybox-oci");
        p.env.busybox_layout(&layout);
        // An OCI archive: podman names it from the index's image-name annotation.
        let archive = p.env.oci_archive(&layout);
        let loaded = p
            .podman(&["load", "-q", "-i", archive.to_str().unwrap()])
            .ok();
        assert!(loaded.out.contains(IMAGE), "{loaded:?}");
        Some(p)
    }

    /// `podman <global flags> args`.
    fn podman(&self, args: &[&str]) -> Out {
        self.podman_with(args, |_| {})
    }

    /// [`Podman::podman`], letting the caller adjust the command (stdin).
    fn podman_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Out {
        let all = self.args(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.env.run("podman", &all, |c| {
            self.environment(c);
            adjust(c);
        })
    }

    fn args(&self, args: &[&str]) -> Vec<String> {
        let d = self.env.path();
        let mut all = vec![
            format!("--root={}/storage", d.display()),
            format!("--runroot={}/run", d.display()),
            format!("--tmpdir={}/tmp", d.display()),
        ];
        all.extend(args.iter().map(|s| (*s).to_string()));
        all
    }

    fn environment(&self, c: &mut Command) {
        c.env("CONTAINERS_CONF", &self.conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf);
    }

    /// `podman run --pull never --cgroup-parent <test's> FLAGS... IMAGE CMD...`.
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Out {
        let parent = format!("--cgroup-parent=/{}", self.cgroup_parent);
        let mut args = vec!["run", "--pull=never", parent.as_str()];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.podman(&args)
    }

    /// `podman inspect -f FORMAT name`, trimmed.
    fn inspect(&self, name: &str, format: &str) -> String {
        self.podman(&["inspect", "-f", format, name])
            .ok()
            .trimmed()
            .to_string()
    }

    /// The container's init pid on the host.
    fn pid(&self, name: &str) -> i32 {
        self.inspect(name, "{{.State.Pid}}").parse().unwrap()
    }

    /// Removes every container, then asserts that nothing is left behind.
    fn finish(self) {
        self.podman(&["rm", "--all", "--force", "--time=0"]).ok();
        let left = self.podman(&["ps", "--all", "--quiet"]).ok();
        assert_eq!(left.trimmed(), "", "containers left");
        self.env.finish(|_| false);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // A failing test still removes its containers (their conmons, mounts and cgroups).
        let all = self.args(&["rm", "--all", "--force", "--time=0"]);
        let mut c = self.env.command("podman");
        c.args(&all)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.environment(&mut c);
        let _ = c.status();
    }
}

/// Attached runs: output, exit codes, berth's exec errors mapped to 127 and 126, a terminal
/// (`-t`), stdin (`-i`) and both (`-it` from a pty).
#[test]
fn podman_run_attached_tty_stdin_and_exit_codes() {
    let Some(p) = Podman::new() else { return };
    let t = Instant::now();
    assert_eq!(p.run(&["--rm"], &["echo", "hello"]).ok().out, "hello\n");
    p.run(&["--rm"], &["sh", "-c", "exit 3"]).code_is(3);
    let missing = p.run(&["--rm"], &["/nonexistent"]).code_is(127);
    assert!(
        missing.err.contains("no such file or directory"),
        "{}",
        missing.err
    );
    let denied = p.run(&["--rm"], &["/etc/passwd"]).code_is(126);
    assert!(denied.err.contains("permission denied"), "{}", denied.err);
    let tty = p
        .run(&["--rm", "-t"], &["sh", "-c", "tty; exit 4"])
        .code_is(4);
    assert!(tty.out.contains("/dev/pts/0"), "{tty:?}");
    let input = p.env.path().join("stdin");
    fs::write(&input, "from stdin\n").unwrap();
    let cat = p.podman_with(&["run", "--pull=never", "--rm", "-i", IMAGE, "cat"], |c| {
        c.stdin(fs::File::open(&input).unwrap());
    });
    assert_eq!(cat.ok().out, "from stdin\n");
    let args = p.args(&[
        "run",
        "--pull=never",
        "--rm",
        "-it",
        IMAGE,
        "sh",
        "-c",
        "tty; read x; echo got-$x",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // run_in_pty sets no environment of its own: pass podman's through `env`.
    let mut env_args = vec![
        format!("CONTAINERS_CONF={}", p.conf.display()),
        format!("CONTAINERS_STORAGE_CONF={}", p.storage_conf.display()),
        format!("CONTAINERS_REGISTRIES_CONF={}", p.registries_conf.display()),
        "podman".to_string(),
    ];
    env_args.extend(args.iter().map(|s| (*s).to_string()));
    let env_args: Vec<&str> = env_args.iter().map(String::as_str).collect();
    let it = p.env.run_in_pty("env", &env_args, b"typed\n");
    assert_eq!(it.code, 0, "{it:?}");
    assert!(it.out.contains("/dev/pts/0"), "{it:?}");
    assert!(it.out.contains("got-typed"), "{it:?}");
    println!("podman run modes: {:?}", t.elapsed());
    p.finish();
}

/// A detached container through its whole life: exec (plain, exit code, `-t`, `-d`, which
/// must land in the container's cgroup), pause and unpause, update, kill -s, stop (TERM
/// ignored by pid 1, then KILL), start, restart, rm -f; and `--pid=host`, which podman stops
/// with `kill --all`.
#[test]
fn podman_detached_lifecycle() {
    let Some(p) = Podman::new() else { return };
    let t = Instant::now();
    p.run(
        &["-d", "--name", "c1"],
        &[
            "sh",
            "-c",
            "trap 'echo usr1 > /tmp/usr1' USR1; while :; do sleep 0.1; done",
        ],
    )
    .ok();
    assert_eq!(p.inspect("c1", "{{.State.Status}}"), "running");
    assert_eq!(
        p.podman(&["exec", "c1", "sh", "-c", "echo in-exec"])
            .ok()
            .out,
        "in-exec\n"
    );
    p.podman(&["exec", "c1", "sh", "-c", "exit 7"]).code_is(7);
    p.podman(&["exec", "c1", "/nonexistent"]).code_is(127);
    let tty = p.podman(&["exec", "-t", "c1", "tty"]).ok();
    assert!(tty.out.starts_with("/dev/pts/"), "{tty:?}");
    p.podman(&["exec", "-d", "c1", "sleep", "500"]).ok();
    let pid = p.pid("c1");
    let pids_dir = v1_cgroup_dir(pid, "pids").expect("the container's pids cgroup");
    assert!(
        pids_dir.to_string_lossy().contains(&p.cgroup_parent),
        "{pids_dir:?}"
    );
    let procs = fs::read_to_string(pids_dir.join("cgroup.procs")).unwrap();
    let in_cgroup: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(
        in_cgroup
            .iter()
            .any(|&q| fs::read_to_string(format!("/proc/{q}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\x00500"))),
        "the exec'd process is not in the container's cgroup: {in_cgroup:?}"
    );

    p.podman(&["pause", "c1"]).ok();
    assert_eq!(p.inspect("c1", "{{.State.Status}}"), "paused");
    p.podman(&["unpause", "c1"]).ok();
    assert_eq!(p.inspect("c1", "{{.State.Status}}"), "running");

    p.podman(&["update", "--memory=64m", "--cpus=0.5", "c1"])
        .ok();
    let mem = v1_cgroup_dir(pid, "memory").unwrap();
    assert_eq!(
        fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "67108864"
    );
    let cpu = v1_cgroup_dir(pid, "cpu").unwrap();
    assert_eq!(
        fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "50000"
    );

    p.podman(&["kill", "--signal=USR1", "c1"]).ok();
    wait_for("the USR1 trap", "usr1", || {
        p.podman(&["exec", "c1", "cat", "/tmp/usr1"])
            .out
            .trim()
            .to_string()
    });

    // The loop ignores TERM (no trap for it; pid 1): stop resorts to KILL after 1 s.
    p.podman(&["stop", "--time=1", "c1"]).ok();
    assert_eq!(
        p.inspect("c1", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    assert!(!common::is_alive(pid), "the init survived stop");
    p.podman(&["start", "c1"]).ok();
    let restarted = p.pid("c1");
    assert_ne!(restarted, pid);
    p.podman(&["restart", "--time=1", "c1"]).ok();
    assert_eq!(p.inspect("c1", "{{.State.Status}}"), "running");
    let again = p.pid("c1");
    assert_ne!(again, restarted);
    p.podman(&["rm", "--force", "--time=1", "c1"]).ok();
    assert!(!common::is_alive(again));

    // A container that exits 0 on TERM stops cleanly.
    p.run(&["-d", "--name", "c2"], SLEEPER).ok();
    p.podman(&["stop", "--time=10", "c2"]).ok();
    assert_eq!(
        p.inspect("c2", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    p.podman(&["rm", "c2"]).ok();

    // --pid=host: no pid namespace, so stop signals every process (`kill --all`).
    p.run(&["-d", "--name", "h1", "--pid=host"], &["sleep", "1000"])
        .ok();
    let host_pid = p.pid("h1");
    let seen = p.podman(&["exec", "h1", "ls", "/proc/1"]).ok();
    assert!(!seen.out.is_empty());
    p.podman(&["stop", "--time=5", "h1"]).ok();
    assert!(!common::is_alive(host_pid));
    p.podman(&["rm", "h1"]).ok();
    println!("podman lifecycle: {:?}", t.elapsed());
    p.finish();
}

/// `--init` (catatonit as pid 1), the six OCI hook stages from a hooks directory (selected
/// by an annotation), and `podman build`, whose RUN steps buildah runs through berth
/// (create, start, state, delete; no conmon).
#[test]
fn podman_init_hooks_and_build() {
    let Some(p) = Podman::new() else { return };
    let t = Instant::now();
    let init = p.run(&["--rm", "--init"], &["cat", "/proc/1/cmdline"]).ok();
    assert!(init.out.starts_with("/run/podman-init\0"), "{init:?}");

    // Hooks: every stage but startContainer runs in the host's namespaces and appends its
    // name and the state's status to a host file; startContainer runs in the container's
    // mount namespace, so it writes through a bind mount.
    let hooks = p.env.dir("hooks");
    let out = p.env.dir("hook-out");
    let stages = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    for stage in stages {
        let script = if stage == "startContainer" {
            format!("cat >/dev/null; echo {stage} >> /hook-out/log")
        } else {
            format!(
                "s=$(cat); case \"$s\" in *'\"status\":\"'*) ;; *) exit 1;; esac; echo {stage} >> {}/log",
                out.display()
            )
        };
        let hook = serde_json::json!({
            "version": "1.0.0",
            "hook": {"path": "/bin/sh", "args": ["sh", "-c", script]},
            "when": {"annotations": {"berth.test": "hooks"}},
            "stages": [stage],
        });
        fs::write(
            hooks.join(format!("{stage}.json")),
            serde_json::to_vec(&hook).unwrap(),
        )
        .unwrap();
    }
    let hooks_flag = format!("--hooks-dir={}", hooks.display());
    let volume = format!("--volume={}:/hook-out", out.display());
    let parent = format!("--cgroup-parent=/{}", p.cgroup_parent);
    let ran = p
        .podman(&[
            &hooks_flag,
            "run",
            "--pull=never",
            &parent,
            "--rm",
            &volume,
            "--annotation=berth.test=hooks",
            IMAGE,
            "echo",
            "hooked",
        ])
        .ok();
    assert_eq!(ran.out, "hooked\n");
    let log = fs::read_to_string(out.join("log")).unwrap_or_default();
    let ran_stages: Vec<&str> = log.lines().collect();
    assert_eq!(ran_stages, stages, "hook stages run, in order");

    // podman build: two RUN steps, then the result runs.
    let ctx = p.env.dir("build");
    fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {IMAGE}\nRUN echo built > /built && test -d /proc/self\nRUN cat /built && echo second >> /built\nCMD [\"cat\", \"/built\"]\n"
        ),
    )
    .unwrap();
    // No --cgroup-parent: buildah would put every RUN container into that very cgroup, where
    // a v1 device rule reset is refused once conmon's cgroup exists below it (runc too).
    let built = p.podman(&[
        "build",
        "--pull=never",
        // RUN steps get no network: netavark would otherwise set up a bridge and NAT on the
        // host (tests stay off the host's network).
        "--network=none",
        "-t",
        "localhost/built:1",
        ctx.to_str().unwrap(),
    ]);
    let built = built.ok();
    assert!(built.out.contains("built\n"), "{built:?}");
    let parent = format!("--cgroup-parent=/{}", p.cgroup_parent);
    let out = p
        .podman(&["run", "--pull=never", &parent, "--rm", "localhost/built:1"])
        .ok();
    assert_eq!(out.out, "built\nsecond\n");
    println!("podman init, hooks, build: {:?}", t.elapsed());
    p.finish();
}
