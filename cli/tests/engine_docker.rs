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
use std::time::{Duration, Instant};

use common::engines::{
    engine_test, v1_cgroup_dir, v1_cgroup_value, wait_for, which, Client, DockerCli, Engine,
    EngineEnv, USR1_LOOP,
};

const IMAGE: &str = "busybox:latest";

/// A dockerd of the test's own.
struct Docker {
    env: EngineEnv,
    /// The docker client matching the daemon (Debian's /usr/bin/docker when present).
    client: String,
    host: String,
    cgroup_parent: String,
}

impl Engine for Docker {
    /// Starts dockerd with berth as a runtime and loads busybox; `None` (after printing
    /// "skipped") when docker is not installed.
    fn start() -> Option<Docker> {
        let env = EngineEnv::if_available(
            "docker",
            &[
                "dockerd",
                "docker",
                "containerd",
                "containerd-shim-runc-v2",
                "skopeo",
                "python3",
            ],
            "dk",
        )?;
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
            dk.cli(&["version", "--format", "{{.Server.Version}}"]).code == 0
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
        dk.cli(&["load", "--quiet", "--input", archive.to_str().unwrap()])
            .ok();
        Some(dk)
    }

    /// Removes every container, stops dockerd, asserts nothing is left. dockerd keeps a bind
    /// mount of its data-root and its `netns/default` after it exits: those are its own.
    fn finish(self) {
        self.remove_all();
        assert_eq!(self.cli(&["ps", "-aq"]).ok().trimmed(), "");
        let d = self.env.path().to_path_buf();
        self.env.finish(|m| {
            m == d.join("data").to_str().unwrap()
                || m == d.join("exec/netns/default").to_str().unwrap()
        });
    }
}

impl DockerCli for Docker {
    fn engine_env(&self) -> &EngineEnv {
        &self.env
    }

    /// `docker --host <socket>`, its config in the temporary directory.
    fn client(&self) -> Client {
        Client {
            program: self.client.clone(),
            flags: vec!["--host".to_string(), self.host.clone()],
            vars: vec![("DOCKER_CONFIG", self.env.path().join("client"))],
        }
    }

    /// berth as the runtime.
    fn run_flags(&self) -> Vec<String> {
        vec!["--runtime=berth".to_string()]
    }

    fn image(&self) -> &'static str {
        IMAGE
    }
}

impl Docker {
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

    fn remove_all(&self) {
        let Ok(ids) = std::panic::catch_unwind(|| self.cli(&["ps", "-aq"]).out) else {
            return;
        };
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = self.cli(&["rm", "--force", id]);
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
    engine_test("docker run modes", |dk: &Docker| {
        dk.assert_attached_runs(&["--rm", "--network=none"]);

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
        dk.cli(&["rm", "--force", "n1"]).ok();

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
    });
}

/// A detached container through its life: exec (plain, exit code, `-t`, `-d`), top (berth's
/// `ps --format json`), stats, pause/unpause, update (`--resources -`), kill -s, stop (TERM
/// ignored by pid 1, then KILL), start, restart, `--restart on-failure`, rm -f.
#[test]
fn docker_detached_lifecycle() {
    engine_test("docker lifecycle", |dk: &Docker| {
        dk.run(&["-d", "--name=c1", "--network=none"], USR1_LOOP)
            .ok();
        assert_eq!(dk.inspect("c1", "{{.State.Status}}"), "running");
        dk.assert_prestart_hook_ran("c1");
        dk.assert_exec_basics("c1", 9);
        dk.cli(&["exec", "-d", "c1", "sleep", "500"]).ok();
        let pid = dk.pid("c1");
        let cg = v1_cgroup_dir(pid, "pids").unwrap();
        assert!(cg.to_string_lossy().contains(&dk.cgroup_parent), "{cg:?}");
        wait_for("docker top", "true", || {
            let top = dk.cli(&["top", "c1"]).ok();
            top.out.contains("sleep 500").to_string()
        });
        let stats = dk
            .cli(&["stats", "--no-stream", "--format", "{{.PIDs}}", "c1"])
            .ok();
        let pids: u32 = stats.trimmed().parse().unwrap();
        assert!(pids >= 2, "stats counts the exec'd process: {stats:?}");

        dk.assert_pause_unpause("c1");

        dk.cli(&[
            "update",
            "--memory=64m",
            "--memory-swap=128m",
            "--cpus=0.5",
            "--pids-limit=50",
            "c1",
        ])
        .ok();
        assert_eq!(
            v1_cgroup_value(pid, "memory", "memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(v1_cgroup_value(pid, "pids", "pids.max"), "50");
        assert_eq!(v1_cgroup_value(pid, "cpu", "cpu.cfs_quota_us"), "50000");

        dk.assert_usr1_trap("c1");
        let restarted = dk.assert_stop_start_restart("c1", pid);
        dk.assert_prestart_hook_ran("c1");
        dk.cli(&["rm", "--force", "c1"]).ok();
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
        dk.cli(&["rm", "rf"]).ok();
    });
}
