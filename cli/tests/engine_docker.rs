//! dockerd (Debian's docker.io, with the containerd it starts itself) runs containers through
//! berth: `--add-runtime berth=<berth>` and `docker run --runtime berth`. The daemon is
//! started by the test with its data-root, exec-root, pid file and socket in a temporary
//! directory, no bridge, no iptables, the cgroupfs driver and a cgroup parent of the test's
//! own; the image is loaded from a docker-archive that skopeo makes of the busybox layout.
//!
//! Docker adds a `prestart` hook (libnetwork-setkey, `/proc/<dockerd>/exe`) to every container
//! that does not share the host's network; the tests check that berth ran it: the network
//! namespace docker bind-mounted at the container's SandboxKey is the container's own.
//!
//! Skipped (with a message) when dockerd, docker, containerd or skopeo is not installed.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::engines::{available, v1_cgroup_dir, wait_for, which, EngineEnv, Out};

const IMAGE: &str = "busybox:latest";

/// A dockerd of the test's own.
struct Docker {
    env: EngineEnv,
    /// The docker client matching the daemon (Debian's /usr/bin/docker when present).
    client: String,
    host: String,
    cgroup_parent: String,
}

impl Docker {
    /// Starts dockerd with berth as a runtime and loads busybox; `None` (after printing
    /// "skipped") when docker is not installed.
    fn new() -> Option<Docker> {
        if !available(
            "docker",
            &[
                "dockerd",
                "docker",
                "containerd",
                "containerd-shim-runc-v2",
                "skopeo",
                "python3",
            ],
        ) {
            return None;
        }
        let env = EngineEnv::new("dk");
        let d = env.path().to_path_buf();
        let host = format!("unix://{}/docker.sock", d.display());
        let cgroup_parent = format!("berth-{}", env.tag);
        env.cgroup_parent(&cgroup_parent);
        fs::write(d.join("daemon.json"), "{}").unwrap();
        fs::create_dir(d.join("client")).unwrap();
        let client = which("/usr/bin/docker")
            .or_else(|| which("docker"))
            .unwrap()
            .display()
            .to_string();
        let dk = Docker {
            env,
            client,
            host,
            cgroup_parent,
        };
        let data_root = d.join("data");
        let exec_root = d.join("exec");
        let args = [
            format!("--data-root={}", data_root.display()),
            format!("--exec-root={}", exec_root.display()),
            format!("--pidfile={}/dockerd.pid", d.display()),
            format!("--host={}", dk.host),
            format!("--config-file={}/daemon.json", d.display()),
            "--bridge=none".to_string(),
            "--iptables=false".to_string(),
            "--ip6tables=false".to_string(),
            "--ip-masq=false".to_string(),
            // dockerd would otherwise turn on the host's net.ipv4.ip_forward.
            "--ip-forward=false".to_string(),
            "--storage-driver=overlay2".to_string(),
            "--exec-opt=native.cgroupdriver=cgroupfs".to_string(),
            format!("--cgroup-parent=/{}", dk.cgroup_parent),
            format!("--add-runtime=berth={}", common::BERTH),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dk.env.start_daemon("dockerd", "dockerd", &args, || {
            dk.docker(&["version", "--format", "{{.Server.Version}}"])
                .code
                == 0
        });
        // containerd-shim runs berth with `--root <exec-root>/runtime-runc/moby` (docker 20.10
        // names it after runc whatever the runtime; later ones after the runtime).
        dk.env.berth_root(&exec_root.join("runtime-runc/moby"));
        dk.env.berth_root(&exec_root.join("runtime-berth/moby"));
        let layout = dk.env.path().join("busybox-oci");
        dk.env.busybox_layout(&layout);
        let archive = dk.env.path().join("busybox-docker.tar");
        dk.env
            .run(
                "skopeo",
                &[
                    "copy",
                    "--quiet",
                    &format!("oci:{}", layout.display()),
                    &format!("docker-archive:{}:{IMAGE}", archive.display()),
                ],
                |_| {},
            )
            .ok();
        dk.docker(&["load", "--quiet", "--input", archive.to_str().unwrap()])
            .ok();
        Some(dk)
    }

    /// `docker --host <socket> args` (client config in the temporary directory).
    fn docker(&self, args: &[&str]) -> Out {
        self.docker_with(args, |_| {})
    }

    fn docker_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Out {
        let all = self.args(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let config = self.env.path().join("client");
        self.env.run(&self.client, &all, |c| {
            c.env("DOCKER_CONFIG", &config);
            adjust(c);
        })
    }

    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["--host".to_string(), self.host.clone()];
        all.extend(args.iter().map(|s| (*s).to_string()));
        all
    }

    /// `docker run --runtime berth FLAGS IMAGE CMD...`.
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Out {
        let mut args = vec!["run", "--runtime=berth"];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.docker(&["inspect", "--format", format, name])
            .ok()
            .trimmed()
            .to_string()
    }

    fn pid(&self, name: &str) -> i32 {
        self.inspect(name, "{{.State.Pid}}").parse().unwrap()
    }

    /// Asserts that berth ran docker's prestart hook for the running container `name`: the
    /// hook makes dockerd bind-mount the container's network namespace at its SandboxKey.
    fn assert_prestart_hook_ran(&self, name: &str) {
        let key = self.inspect(name, "{{.NetworkSettings.SandboxKey}}");
        let pid = self.pid(name);
        let ours = fs::metadata(format!("/proc/{pid}/ns/net")).unwrap().ino();
        let bound = fs::metadata(&key)
            .unwrap_or_else(|e| panic!("{name}: SandboxKey {key}: {e}"))
            .ino();
        assert_eq!(
            bound, ours,
            "{name}: the netns at {key} is not the container's: the prestart hook did not run"
        );
    }

    /// Removes every container, stops dockerd, asserts nothing is left. dockerd keeps a bind
    /// mount of its data-root and its `netns/default` after it exits: those are its own.
    fn finish(self) {
        self.remove_all();
        assert_eq!(self.docker(&["ps", "-aq"]).ok().trimmed(), "");
        let d = self.env.path().to_path_buf();
        self.env.finish(|m| {
            m == d.join("data").to_str().unwrap()
                || m == d.join("exec/netns/default").to_str().unwrap()
        });
    }

    fn remove_all(&self) {
        let Ok(ids) = std::panic::catch_unwind(|| self.docker(&["ps", "-aq"]).out) else {
            return;
        };
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = self.docker(&["rm", "--force", id]);
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.remove_all();
        }
    }
}

/// Attached runs: output, exit codes, 127/126 from berth's create errors, `-t`, `-i`, `-it`
/// (from a pty), the prestart hook (`--network none`), host network with `--read-only` and
/// `--user`, and `--init` (docker-init as pid 1).
#[test]
fn docker_run_modes_prestart_hook_and_init() {
    let Some(dk) = Docker::new() else { return };
    let t = Instant::now();
    assert_eq!(
        dk.run(&["--rm", "--network=none"], &["echo", "hello"])
            .ok()
            .out,
        "hello\n"
    );
    dk.run(&["--rm", "--network=none"], &["sh", "-c", "exit 3"])
        .code_is(3);
    let missing = dk
        .run(&["--rm", "--network=none"], &["/nonexistent"])
        .code_is(127);
    assert!(
        missing.err.contains("no such file or directory"),
        "{missing:?}"
    );
    let denied = dk
        .run(&["--rm", "--network=none"], &["/etc/passwd"])
        .code_is(126);
    assert!(denied.err.contains("permission denied"), "{denied:?}");
    let tty = dk
        .run(
            &["--rm", "--network=none", "-t"],
            &["sh", "-c", "tty; exit 2"],
        )
        .code_is(2);
    assert!(tty.out.contains("/dev/pts/0"), "{tty:?}");
    let input = dk.env.path().join("stdin");
    fs::write(&input, "from stdin\n").unwrap();
    let cat = dk.docker_with(
        &[
            "run",
            "--runtime=berth",
            "--rm",
            "-i",
            "--network=none",
            IMAGE,
            "cat",
        ],
        |c| {
            c.stdin(fs::File::open(&input).unwrap());
        },
    );
    assert_eq!(cat.ok().out, "from stdin\n");
    let mut args = vec![format!(
        "DOCKER_CONFIG={}",
        dk.env.path().join("client").display()
    )];
    args.push(dk.client.clone());
    args.extend(dk.args(&[
        "run",
        "--runtime=berth",
        "--rm",
        "-it",
        "--network=none",
        IMAGE,
        "sh",
        "-c",
        "tty; read x; echo got-$x",
    ]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let it = dk.env.run_in_pty("env", &args, b"typed\n");
    assert_eq!(it.code, 0, "{it:?}");
    assert!(it.out.contains("got-typed"), "{it:?}");

    // The prestart hook, on a container with its own network namespace.
    dk.run(&["-d", "--name=n1", "--network=none"], &["sleep", "1000"])
        .ok();
    let config = fs::read_to_string(
        dk.env
            .path()
            .join("exec/containerd/daemon/io.containerd.runtime.v2.task/moby")
            .join(dk.inspect("n1", "{{.Id}}"))
            .join("config.json"),
    )
    .unwrap();
    assert!(
        config.contains("libnetwork-setkey"),
        "no prestart hook in {config}"
    );
    dk.assert_prestart_hook_ran("n1");
    dk.docker(&["rm", "--force", "n1"]).ok();

    // Host network (no hook), read-only root, another user.
    let host = dk
        .run(
            &["--rm", "--network=host", "--read-only", "--user=1000:1000"],
            &["sh", "-c", "id -u; id -g; touch /x 2>/dev/null && echo writable; ls /sys/class/net | grep -c ."],
        )
        .ok();
    let lines: Vec<&str> = host.out.lines().collect();
    assert_eq!(&lines[..2], ["1000", "1000"], "{host:?}");
    assert!(!host.out.contains("writable"), "{host:?}");
    let host_links = fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(lines[2], host_links.to_string(), "host network: {host:?}");

    let init = dk
        .run(
            &["--rm", "--network=none", "--init"],
            &["cat", "/proc/1/cmdline"],
        )
        .ok();
    assert!(init.out.starts_with("/sbin/docker-init\0"), "{init:?}");
    println!("docker run modes: {:?}", t.elapsed());
    dk.finish();
}

/// A detached container through its life: exec (plain, exit code, `-t`, `-d`), top (berth's
/// `ps --format json`), stats, pause/unpause, update (`--resources -`), kill -s, stop (TERM
/// ignored by pid 1, then KILL), start, restart, `--restart on-failure`, rm -f.
#[test]
fn docker_detached_lifecycle() {
    let Some(dk) = Docker::new() else { return };
    let t = Instant::now();
    dk.run(
        &["-d", "--name=c1", "--network=none"],
        &[
            "sh",
            "-c",
            "trap 'echo usr1 > /tmp/usr1' USR1; while :; do sleep 0.1; done",
        ],
    )
    .ok();
    assert_eq!(dk.inspect("c1", "{{.State.Status}}"), "running");
    dk.assert_prestart_hook_ran("c1");
    assert_eq!(
        dk.docker(&["exec", "c1", "sh", "-c", "echo in-exec"])
            .ok()
            .out,
        "in-exec\n"
    );
    dk.docker(&["exec", "c1", "sh", "-c", "exit 9"]).code_is(9);
    let tty = dk.docker(&["exec", "-t", "c1", "tty"]).ok();
    assert!(tty.out.starts_with("/dev/pts/"), "{tty:?}");
    dk.docker(&["exec", "-d", "c1", "sleep", "500"]).ok();
    let pid = dk.pid("c1");
    let cg = v1_cgroup_dir(pid, "pids").unwrap();
    assert!(cg.to_string_lossy().contains(&dk.cgroup_parent), "{cg:?}");
    wait_for("docker top", "true", || {
        let top = dk.docker(&["top", "c1"]).ok();
        top.out.contains("sleep 500").to_string()
    });
    let stats = dk
        .docker(&["stats", "--no-stream", "--format", "{{.PIDs}}", "c1"])
        .ok();
    let pids: u32 = stats.trimmed().parse().unwrap();
    assert!(pids >= 2, "stats counts the exec'd process: {stats:?}");

    dk.docker(&["pause", "c1"]).ok();
    assert_eq!(dk.inspect("c1", "{{.State.Status}}"), "paused");
    dk.docker(&["unpause", "c1"]).ok();
    assert_eq!(dk.inspect("c1", "{{.State.Status}}"), "running");

    dk.docker(&[
        "update",
        "--memory=64m",
        "--memory-swap=128m",
        "--cpus=0.5",
        "--pids-limit=50",
        "c1",
    ])
    .ok();
    let read = |ctrl: &str, file: &str| {
        fs::read_to_string(v1_cgroup_dir(pid, ctrl).unwrap().join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("pids", "pids.max"), "50");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");

    dk.docker(&["kill", "--signal=USR1", "c1"]).ok();
    wait_for("the USR1 trap", "usr1", || {
        dk.docker(&["exec", "c1", "cat", "/tmp/usr1"])
            .out
            .trim()
            .to_string()
    });
    dk.docker(&["stop", "--time=1", "c1"]).ok();
    assert_eq!(
        dk.inspect("c1", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    assert!(!common::is_alive(pid));
    dk.docker(&["start", "c1"]).ok();
    let started = dk.pid("c1");
    assert_ne!(started, pid);
    dk.docker(&["restart", "--time=1", "c1"]).ok();
    assert_eq!(dk.inspect("c1", "{{.State.Status}}"), "running");
    let restarted = dk.pid("c1");
    assert_ne!(restarted, started);
    dk.assert_prestart_hook_ran("c1");
    dk.docker(&["rm", "--force", "c1"]).ok();
    assert!(!common::is_alive(restarted));

    // The daemon restarts a failing container through berth (create, start, delete again).
    dk.run(
        &[
            "-d",
            "--name=rf",
            "--network=none",
            "--restart=on-failure:2",
        ],
        &["sh", "-c", "exit 3"],
    )
    .ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = dk.inspect(
            "rf",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
        );
        if s == "exited 2 3" || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, "exited 2 3");
    dk.docker(&["rm", "rf"]).ok();
    println!("docker lifecycle: {:?}", t.elapsed());
    dk.finish();
}
