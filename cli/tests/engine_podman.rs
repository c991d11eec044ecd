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

use common::engines::{
    engine_test, v1_cgroup_dir, v1_cgroup_value, Client, DockerCli, Engine, EngineEnv, USR1_LOOP,
};

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

impl Engine for Podman {
    /// A podman whose default runtime is berth, with the busybox image loaded; `None` (after
    /// printing "skipped") when podman is not installed.
    fn start() -> Option<Podman> {
        let env = EngineEnv::if_available("podman", &["podman", "conmon", "python3"], "podman")?;
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
        let loaded = p.cli(&["load", "-q", "-i", archive.to_str().unwrap()]).ok();
        assert!(loaded.out.contains(IMAGE), "{loaded:?}");
        Some(p)
    }

    /// Removes every container, then asserts that nothing is left behind.
    fn finish(self) {
        self.cli(&["rm", "--all", "--force", "--time=0"]).ok();
        let left = self.cli(&["ps", "--all", "--quiet"]).ok();
        assert_eq!(left.trimmed(), "", "containers left");
        self.env.finish(|_| false);
    }
}

impl DockerCli for Podman {
    fn engine_env(&self) -> &EngineEnv {
        &self.env
    }

    /// `podman` with its storage, run and temporary directories in the test's, and the
    /// test's configuration files in its environment.
    fn client(&self) -> Client {
        let d = self.env.path();
        Client {
            program: "podman".to_string(),
            flags: vec![
                format!("--root={}/storage", d.display()),
                format!("--runroot={}/run", d.display()),
                format!("--tmpdir={}/tmp", d.display()),
            ],
            vars: vec![
                ("CONTAINERS_CONF", self.conf.clone()),
                ("CONTAINERS_STORAGE_CONF", self.storage_conf.clone()),
                ("CONTAINERS_REGISTRIES_CONF", self.registries_conf.clone()),
            ],
        }
    }

    /// The local image only, in the test's cgroup parent.
    fn run_flags(&self) -> Vec<String> {
        vec![
            "--pull=never".to_string(),
            format!("--cgroup-parent=/{}", self.cgroup_parent),
        ]
    }

    fn image(&self) -> &'static str {
        IMAGE
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // A failing test still removes its containers (their conmons, mounts and cgroups).
        let _ = self
            .client()
            .command(&self.env, &["rm", "--all", "--force", "--time=0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Attached runs: output, exit codes, berth's exec errors mapped to 127 and 126, a terminal
/// (`-t`), stdin (`-i`) and both (`-it` from a pty).
#[test]
fn podman_run_attached_tty_stdin_and_exit_codes() {
    engine_test("podman run modes", |p: &Podman| {
        p.assert_attached_runs(&["--rm"]);
    });
}

/// A detached container through its whole life: exec (plain, exit code, `-t`, `-d`, which
/// must land in the container's cgroup), pause and unpause, update, kill -s, stop (TERM
/// ignored by pid 1, then KILL), start, restart, rm -f; and `--pid=host`, which podman stops
/// with `kill --all`.
#[test]
fn podman_detached_lifecycle() {
    engine_test("podman lifecycle", |p: &Podman| {
        p.run(&["-d", "--name", "c1"], USR1_LOOP).ok();
        assert_eq!(p.inspect("c1", "{{.State.Status}}"), "running");
        p.assert_exec_basics("c1", 7);
        p.cli(&["exec", "c1", "/nonexistent"]).code_is(127);
        p.cli(&["exec", "-d", "c1", "sleep", "500"]).ok();
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

        p.assert_pause_unpause("c1");

        p.cli(&["update", "--memory=64m", "--cpus=0.5", "c1"]).ok();
        assert_eq!(
            v1_cgroup_value(pid, "memory", "memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(v1_cgroup_value(pid, "cpu", "cpu.cfs_quota_us"), "50000");

        p.assert_usr1_trap("c1");
        // The loop ignores TERM (no trap for it; pid 1): stop resorts to KILL after 1 s.
        let again = p.assert_stop_start_restart("c1", pid);
        p.cli(&["rm", "--force", "--time=1", "c1"]).ok();
        assert!(!common::is_alive(again));

        // A container that exits 0 on TERM stops cleanly.
        p.run(&["-d", "--name", "c2"], SLEEPER).ok();
        p.cli(&["stop", "--time=10", "c2"]).ok();
        assert_eq!(
            p.inspect("c2", "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 0"
        );
        p.cli(&["rm", "c2"]).ok();

        // --pid=host: no pid namespace, so stop signals every process (`kill --all`).
        p.run(&["-d", "--name", "h1", "--pid=host"], &["sleep", "1000"])
            .ok();
        let host_pid = p.pid("h1");
        let seen = p.cli(&["exec", "h1", "ls", "/proc/1"]).ok();
        assert!(!seen.out.is_empty());
        p.cli(&["stop", "--time=5", "h1"]).ok();
        assert!(!common::is_alive(host_pid));
        p.cli(&["rm", "h1"]).ok();
    });
}

/// `--init` (catatonit as pid 1), the six OCI hook stages from a hooks directory (selected
/// by an annotation), and `podman build`, whose RUN steps buildah runs through berth
/// (create, start, state, delete; no conmon).
#[test]
fn podman_init_hooks_and_build() {
    engine_test("podman init, hooks, build", |p: &Podman| {
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
            .cli(&[
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
        let built = p.cli(&[
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
            .cli(&["run", "--pull=never", &parent, "--rm", "localhost/built:1"])
            .ok();
        assert_eq!(out.out, "built\nsecond\n");
    });
}
