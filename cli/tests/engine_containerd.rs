//! containerd (Debian's containerd and containerd-shim-runc-v2, driven by ctr) runs its tasks
//! through berth: `ctr run --runc-binary <berth> --runc-root <temp>`. The daemon is started by
//! the test with a config whose root, state and sockets live in a temporary directory, the
//! CRI plugin disabled; the image is imported from an OCI archive. Each test uses its own
//! containerd namespace, which is also the cgroup parent of its containers.
//!
//! Skipped (with a message) when containerd, its shim or ctr is not installed.

mod common;

use std::fs;
use std::path::PathBuf;

use common::engines::{engine_test, v1_cgroup_dir, wait_for, Engine, EngineEnv, Out, USR1_LOOP};

/// The name `ctr images import` gives the busybox layout (its image-name annotation).
const IMAGE: &str = "busybox:latest";

/// A containerd of the test's own.
struct Containerd {
    env: EngineEnv,
    socket: PathBuf,
    runc_root: PathBuf,
    namespace: String,
}

impl Engine for Containerd {
    /// Starts containerd and imports the busybox image; `None` (after printing "skipped")
    /// when containerd is not installed.
    fn start() -> Option<Containerd> {
        let env = EngineEnv::if_available(
            "containerd",
            &[
                "containerd",
                "containerd-shim-runc-v2",
                "ctr",
                "python3",
                "tar",
            ],
            "ctd",
        )?;
        let d = env.path().to_path_buf();
        let socket = d.join("containerd.sock");
        let config = d.join("config.toml");
        fs::write(
            &config,
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
                d = d.display(),
                sock = socket.display()
            ),
        )
        .unwrap();
        let runc_root = d.join("berth-state");
        let namespace = format!("berth{}", env.tag);
        env.cgroup_parent(&namespace);
        let c = Containerd {
            env,
            socket,
            runc_root,
            namespace,
        };
        c.env.start_daemon(
            "containerd",
            "containerd",
            &["--config", config.to_str().unwrap()],
            || c.socket.exists() && c.ctr(&["version"]).code == 0,
        );
        let layout = c.env.path().join("busybox-oci");
        c.env.busybox_layout(&layout);
        let archive = c.env.oci_archive(&layout);
        c.ctr(&["images", "import", archive.to_str().unwrap()]).ok();
        // The shim runs berth with `--root <runc root>/<namespace>`.
        c.env.berth_root(&c.runc_root.join(&c.namespace));
        Some(c)
    }

    /// Removes every task and container, stops containerd, asserts nothing is left.
    fn finish(self) {
        self.remove_all();
        assert_eq!(self.ctr(&["containers", "ls", "-q"]).ok().trimmed(), "");
        self.env.finish(|_| false);
    }
}

impl Containerd {
    /// `ctr --address <socket> --namespace <ns> args`.
    fn ctr(&self, args: &[&str]) -> Out {
        let all = self.args(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.env.run("ctr", &all, |_| {})
    }

    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--address".to_string(),
            self.socket.display().to_string(),
            "--namespace".to_string(),
            self.namespace.clone(),
        ];
        all.extend(args.iter().map(|s| (*s).to_string()));
        all
    }

    /// `ctr run --runc-binary <berth> --runc-root <temp> FLAGS IMAGE ID CMD...`.
    fn run_args(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let mut all = vec![
            "run".to_string(),
            "--runc-binary".to_string(),
            common::BERTH.to_string(),
            "--runc-root".to_string(),
            self.runc_root.display().to_string(),
            "--fifo-dir".to_string(),
            self.fifo_dir(),
        ];
        all.extend(flags.iter().map(|s| (*s).to_string()));
        all.push(IMAGE.to_string());
        all.push(id.to_string());
        all.extend(cmd.iter().map(|s| (*s).to_string()));
        all
    }

    fn run(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Out {
        let args = self.run_args(flags, id, cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&args)
    }

    /// Where ctr makes the stdio fifos of its tasks (default: /run/containerd/fifo).
    fn fifo_dir(&self) -> String {
        self.env.path().join("fifo").display().to_string()
    }

    /// The STATUS column of `ctr task ls` for `id` ("" when there is no task).
    fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]).ok();
        out.out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_default()
            .to_string()
    }

    /// The task's pids from `ctr task ps` (berth's `ps --format json`).
    fn task_pids(&self, id: &str) -> Vec<i32> {
        self.ctr(&["task", "ps", id])
            .ok()
            .out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    fn remove_all(&self) {
        let Ok(ids) = std::panic::catch_unwind(|| self.ctr(&["containers", "ls", "-q"]).out) else {
            return;
        };
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["task", "rm", "--force", id]);
            let _ = self.ctr(&["containers", "rm", id]);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // A failing test still removes its tasks through containerd (shims, mounts, cgroups).
        self.remove_all();
    }
}

/// `ctr run --rm` attached: output, exit codes, a missing program (berth's create error in
/// the shim's JSON log), and a terminal (`-t`: the pty master over `--console-socket`).
#[test]
fn containerd_ctr_run_exit_codes_and_tty() {
    engine_test("containerd run modes", |c: &Containerd| {
        assert_eq!(
            c.run(&["--rm"], "r1", &["echo", "hello"]).ok().out,
            "hello\n"
        );
        c.run(&["--rm"], "r2", &["sh", "-c", "exit 5"]).code_is(5);
        let missing = c.run(&["--rm"], "r3", &["/nonexistent"]);
        assert_ne!(missing.code, 0);
        assert!(
            missing.err.contains("no such file or directory"),
            "{missing:?}"
        );
        // A failed create leaves a container record (as with runc): remove it.
        let _ = c.ctr(&["containers", "rm", "r3"]);
        let args = c.args(&[]);
        let mut args: Vec<String> = args;
        args.extend(c.run_args(
            &["--rm", "-t"],
            "r4",
            &["sh", "-c", "tty; read x; echo got-$x; exit 4"],
        ));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let tty = c.env.run_in_pty("ctr", &args, b"typed\n");
        assert_eq!(tty.code, 4, "{tty:?}");
        assert!(tty.out.contains("/dev/pts/0"), "{tty:?}");
        assert!(tty.out.contains("got-typed"), "{tty:?}");
    });
}

/// A detached task through its life: exec (plain, exit code, `-t`), ps, pause/resume,
/// metrics, kill -s USR1, kill TERM (ignored by pid 1) then KILL, rm of the stopped task, a
/// new task for the same container, kill --all, rm -f of a running task.
#[test]
fn containerd_ctr_task_lifecycle() {
    engine_test("containerd task lifecycle", |c: &Containerd| {
        c.run(&["-d"], "d1", USR1_LOOP).ok();
        assert_eq!(c.task_status("d1"), "RUNNING");
        let exec = |id: &str, cmd: &[&str]| {
            let fifo = c.fifo_dir();
            let mut args = vec!["task", "exec", "--fifo-dir", &fifo, "--exec-id", id, "d1"];
            args.extend_from_slice(cmd);
            c.ctr(&args)
        };
        assert_eq!(
            exec("e1", &["sh", "-c", "echo in-exec"]).ok().out,
            "in-exec\n"
        );
        exec("e2", &["sh", "-c", "exit 6"]).code_is(6);
        let fifo = c.fifo_dir();
        let args = c.args(&[
            "task",
            "exec",
            "--fifo-dir",
            &fifo,
            "-t",
            "--exec-id",
            "e3",
            "d1",
            "tty",
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let tty = c.env.run_in_pty("ctr", &args, b"");
        assert_eq!(tty.code, 0, "{tty:?}");
        assert!(tty.out.contains("/dev/pts/"), "{tty:?}");

        // ps: the init and an exec'd process, both in the container's cgroup.
        let init = c.task_pids("d1")[0];
        exec("e4", &["sh", "-c", "sleep 300 & echo started"]).ok();
        wait_for("task ps", "true", || {
            let pids = c.task_pids("d1");
            (pids.len() >= 2 && pids.contains(&init)).to_string()
        });
        let cg = v1_cgroup_dir(init, "pids").unwrap();
        assert!(cg.to_string_lossy().contains(&c.namespace), "{cg:?}");

        c.ctr(&["task", "pause", "d1"]).ok();
        assert_eq!(c.task_status("d1"), "PAUSED");
        c.ctr(&["task", "resume", "d1"]).ok();
        assert_eq!(c.task_status("d1"), "RUNNING");
        let metrics = c.ctr(&["task", "metrics", "d1"]).ok();
        assert!(metrics.out.contains("memory.usage_in_bytes"), "{metrics:?}");

        c.ctr(&["task", "kill", "--signal", "USR1", "d1"]).ok();
        wait_for("the USR1 trap", "usr1", || {
            exec("e5", &["cat", "/tmp/usr1"]).out.trim().to_string()
        });
        // pid 1 has no TERM handler: TERM does nothing, KILL stops it.
        c.ctr(&["task", "kill", "--signal", "TERM", "d1"]).ok();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(c.task_status("d1"), "RUNNING");
        c.ctr(&["task", "kill", "--signal", "KILL", "d1"]).ok();
        wait_for("task after KILL", "STOPPED", || c.task_status("d1"));
        assert!(!common::is_alive(init));
        c.ctr(&["task", "rm", "d1"]).ok();
        assert_eq!(c.task_status("d1"), "");

        // A new task for the same container: several processes, then kill --all.
        c.ctr(&["task", "start", "--fifo-dir", &fifo, "-d", "d1"])
            .ok();
        wait_for("restarted task", "RUNNING", || c.task_status("d1"));
        let second = c.task_pids("d1")[0];
        assert_ne!(second, init);
        c.ctr(&["task", "kill", "--all", "--signal", "KILL", "d1"])
            .ok();
        wait_for("task after kill --all", "STOPPED", || c.task_status("d1"));
        c.ctr(&["task", "rm", "d1"]).ok();

        // rm -f of a running task.
        c.ctr(&["task", "start", "--fifo-dir", &fifo, "-d", "d1"])
            .ok();
        wait_for("third task", "RUNNING", || c.task_status("d1"));
        let third = c.task_pids("d1")[0];
        c.ctr(&["task", "rm", "--force", "d1"]).ok();
        assert_eq!(c.task_status("d1"), "");
        assert!(!common::is_alive(third));
        c.ctr(&["containers", "rm", "d1"]).ok();
    });
}
