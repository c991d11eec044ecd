//! A pod's life through the CRI with berth as containerd's runtime handler (issue 18).
//!
//! The test plays kubelet: a gRPC client on the CRI v1 protobufs talks to Debian's containerd,
//! started by the test with its root, state, socket, CNI configuration and runtime state in a
//! temporary directory and a runtime handler `berth` (the runc shim, `io.containerd.runc.v2`,
//! with `BinaryName` = the berth under test). containerd runs inside a network namespace the
//! test creates (`ip netns add`, entered with `nsenter --net` so the host's mounts stay
//! visible), so the CNI bridge and the pod's veth never appear in the host's namespace. The
//! pause image and the test image are built offline from busybox-static
//! (`scripts/busybox-image.py`) and imported with `ctr -n k8s.io images import`.
//!
//! The pod: a sandbox with sysctls, a hostname, a cgroupfs-style cgroup parent and a shared pid
//! namespace (`shareProcessNamespace`), and two containers: `writer` writes to /dev/shm, logs
//! on stdout and stderr and serves HTTP; `reader` traps TERM. Checked: ExecSync (output, exit
//! code, stderr), the sysctls and hostname seen inside, the shared /dev/shm and pid namespace,
//! ContainerStatus (running; exited with the trap's code after StopContainer), ContainerStats
//! (memory and CPU), the log file in the CRI format, the pod IP reachable from the test's
//! namespace, then StopPodSandbox and RemovePodSandbox. A second pod has a `.slice` cgroup
//! parent, which containerd 1.6 passes in the systemd form (`<slice>:cri-containerd:<id>`)
//! without `--systemd-cgroup`: berth takes it as runc does, a path relative to its own cgroup
//! (containerd runs in a cgroup of the test's own). Afterwards no container, process, mount,
//! cgroup, veth, network namespace pin, IPAM reservation, CNI cache entry or shim socket is
//! left.
//!
//! Skipped (with a message) when not root or when containerd, its shim, ctr or the CNI plugins
//! are not installed (`scripts/setup.sh` installs them). The berth under test is the
//! `target/<profile>/berth` next to this test's binary (or `$BERTH_BIN`): `cargo test
//! --workspace` builds it; alone, run `cargo build -p berth` first.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatsRequest,
    ContainerStatusRequest, ContainerStatusResponse, CreateContainerRequest, ExecSyncRequest,
    ExecSyncResponse, ImageSpec, ImageStatusRequest, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListContainersRequest, ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// The images, as the test names them (fully qualified: the CRI does not rewrite them).
const PAUSE_IMAGE: &str = "berth.test/pause:1";
const BUSYBOX_IMAGE: &str = "berth.test/busybox:1";
/// The pause container: sleeps until TERM (a busybox stand-in for Kubernetes' pause).
const PAUSE_CMD: &str = r#"["sh","-c","trap exit TERM; while :; do sleep 1000 & wait; done"]"#;
/// The runtime handler's name (a RuntimeClass's `handler`).
const HANDLER: &str = "berth";
/// The CNI bridge (inside the test's network namespace only) and its subnet.
const BRIDGE: &str = "berthcri0";
const SUBNET_PREFIX: &str = "10.88.77.";
/// Where libcni caches each attachment's result (containerd 1.6 has no setting for it): the
/// test removes its own entries, and the directory when the test made it.
const CNI_CACHE: &str = "/var/lib/cni";
/// How long one CRI call or command may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The writer container: a file in the shared /dev/shm, a line on stdout and one on stderr,
/// then an HTTP server on port 8080.
const WRITER: &str = "echo shm-from-writer > /dev/shm/shared; echo hello from writer; \
    echo oops from writer >&2; mkdir -p /tmp/www; echo served-by-pod > /tmp/www/index.html; \
    exec httpd -f -p 8080 -h /tmp/www";
/// The reader container: exits 7 on TERM.
const READER: &str = "trap 'exit 7' TERM; while :; do sleep 1; done";

/// The berth under test: `$BERTH_BIN`, or `berth` in the target directory of this test binary
/// (`target/<profile>/deps/cri-<hash>` → `target/<profile>/berth`).
fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("berth");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo build -p berth` (or set BERTH_BIN)",
        bin.display()
    );
    bin
}

/// Finds `name` on `PATH` (or takes it as is when it holds a slash).
fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when the test can run here; otherwise prints why it is skipped.
fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the CRI test needs root");
        return false;
    }
    let missing: Vec<_> = [
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "ip",
        "nsenter",
        "python3",
        "tar",
        "/bin/busybox",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/loopback",
    ]
    .into_iter()
    .filter(|p| which(p).is_none())
    .collect();
    if !missing.is_empty() {
        println!("skipped: the CRI test: not installed: {missing:?}");
        return false;
    }
    true
}

use berth_test_support::poll_until;

/// Runs a command to completion (killed after [`TIMEOUT`]); panics with its output unless it
/// exits 0. Returns its standard output.
fn run(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {stdout}\nstderr: {}",
        out.status.code().or(out.status.signal().map(|s| 128 + s)),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Whether `pid` exists and is not a zombie.
fn is_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// mountinfo's mount points (unescaped).
fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| {
            p.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\")
        })
        .collect()
}

/// Mount points of the cgroup hierarchies (v1 controllers and cgroup2).
fn cgroup_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let point = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// The directories below `dir` (its child cgroups), empty when it does not exist.
fn child_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The cgroup directories of `pid`, one per hierarchy (from `/proc/<pid>/cgroup`, each line
/// matched to its hierarchy's mount by the controllers in the mount's options).
fn cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<(&str, &str, &str)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split(' ');
            let (fstype, options) = (post.next()?, post.nth(1)?);
            Some((pre.split(' ').nth(4)?, fstype, options))
        })
        .collect();
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let (point, _, _) = mounts.iter().find(|(_, fstype, options)| {
                if ctrls.is_empty() {
                    *fstype == "cgroup2"
                } else {
                    *fstype == "cgroup"
                        && ctrls.split(',').all(|c| options.split(',').any(|o| o == c))
                }
            })?;
            Some(Path::new(point).join(path.trim_start_matches('/')))
        })
        .collect()
}

/// Removes a cgroup directory and its descendants, deepest first.
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for child in child_dirs(dir) {
        remove_cgroup_tree(&child)?;
    }
    fs::remove_dir(dir)
}

/// A CRI node of the test's own: the network namespace, containerd and the clients.
struct Node {
    tmp: tempfile::TempDir,
    /// In `BERTH_TEST_TAG` of containerd (and so of its shims and berth) and of the containers.
    tag: String,
    /// `ip netns` name of the namespace containerd runs in.
    netns: String,
    /// The test's cgroup, relative to each hierarchy's root: `containerd` below it holds the
    /// daemon, `pods` is the cgroupfs-style parent of the pods.
    cgroup_parent: String,
    /// The cgroups of the pods' processes, absolute, as seen while they ran.
    pod_process_cgroups: Vec<PathBuf>,
    containerd: Option<Child>,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// The sandboxes' ids.
    sandboxes: Vec<String>,
    /// Network namespace pins containerd made for sandboxes (from their status).
    sandbox_netns: Vec<String>,
    /// Whether [`CNI_CACHE`] existed before the test.
    cni_cache_existed: bool,
    finished: bool,
}

impl Node {
    /// The network namespace, the CNI configuration, containerd, the images; `None` (after
    /// printing why) when the test is skipped here.
    fn start() -> Option<Node> {
        if !available() {
            return None;
        }
        let berth = berth_bin();
        let tmp = tempfile::Builder::new()
            .prefix("berth-cri-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = tmp.path().to_path_buf();
        let tag = format!("{}cri", std::process::id());
        let netns = format!("berth-cri-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &netns]));
        run(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sock = d.join("containerd.sock");
        let channel = rt.block_on(async {
            let path = sock.clone();
            Endpoint::try_from("http://[::]:0")
                .unwrap()
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
        });
        let mut node = Node {
            tag,
            netns,
            cgroup_parent: format!("berth-cri-{}", std::process::id()),
            containerd: None,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            rt,
            pod_process_cgroups: Vec::new(),
            sandboxes: Vec::new(),
            sandbox_netns: Vec::new(),
            cni_cache_existed: Path::new(CNI_CACHE).exists(),
            finished: false,
            tmp,
        };
        node.write_cni_config();
        let config = node.write_containerd_config(&berth);
        let log = File::create(d.join("containerd.log")).unwrap();
        // containerd (and so its shims and the berth they run) in a cgroup of the test's own
        // in every hierarchy, as a node's containerd has its service's: relative cgroup paths
        // (the systemd form) start there.
        let mut procs = Vec::new();
        for mount in cgroup_mounts() {
            let mut dir = mount.clone();
            for part in [node.cgroup_parent.as_str(), "containerd"] {
                let parent = dir.clone();
                dir.push(part);
                let _ = fs::create_dir(&dir);
                // A new v1 cpuset has no CPUs and memory nodes: no process may join it.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(v) = fs::read_to_string(parent.join(file)) {
                        fs::write(dir.join(file), v.trim()).unwrap();
                    }
                }
            }
            procs.push(dir.join("cgroup.procs").display().to_string());
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"for f in $CGROUP_PROCS; do echo $$ > "$f" || exit 1; done; exec "$@""#)
            .arg("sh")
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", node.netns))
            .arg("containerd")
            .arg("--config")
            .arg(&config)
            .env("CGROUP_PROCS", procs.join(" "))
            .env("BERTH_TEST_TAG", &node.tag)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        node.containerd = Some(child);
        let ready = poll_until(TIMEOUT, || {
            assert!(
                node.containerd
                    .as_mut()
                    .is_some_and(|c| c.try_wait().unwrap().is_none()),
                "containerd exited:\n{}",
                node.log()
            );
            sock.exists()
                && node
                    .rt
                    .block_on(node.runtime.clone().version(VersionRequest::default()))
                    .is_ok()
        });
        assert!(ready, "containerd's CRI did not answer:\n{}", node.log());
        node.import_images();
        Some(node)
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// containerd's log, for messages.
    fn log(&self) -> String {
        fs::read_to_string(self.path().join("containerd.log")).unwrap_or_default()
    }

    /// Where the shim runs berth: `--root <Root>/<containerd namespace>`.
    fn berth_root(&self) -> PathBuf {
        self.path().join("berth/k8s.io")
    }

    /// A bridge network with host-local IPAM whose reservations stay in the temporary
    /// directory.
    fn write_cni_config(&self) {
        let conf = self.path().join("cni");
        fs::create_dir(&conf).unwrap();
        let list = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "berth-cri",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{SUBNET_PREFIX}0/24")}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": self.path().join("ipam"),
                },
            }],
        });
        fs::write(conf.join("10-berth.conflist"), list.to_string()).unwrap();
    }

    /// containerd 1.6's config: everything in the temporary directory, the CRI plugin with a
    /// runtime handler `berth` (the runc shim running berth), CNI from Debian's plugins.
    fn write_containerd_config(&self, berth: &Path) -> PathBuf {
        let d = self.path().display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{HANDLER}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}.options]
        BinaryName = "{berth}"
        Root = "{d}/berth"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
    max_conf_num = 1
"#,
            berth = berth.display()
        );
        let path = self.path().join("config.toml");
        fs::write(&path, config).unwrap();
        path
    }

    /// `ctr --address <socket> -n k8s.io args`.
    fn ctr(&self, args: &[&str]) -> String {
        run(Command::new("ctr")
            .arg("--address")
            .arg(self.path().join("containerd.sock"))
            .args(["-n", "k8s.io"])
            .args(args)
            .env("BERTH_TEST_TAG", &self.tag))
    }

    /// Builds the pause and busybox images offline and imports them; waits until the CRI
    /// knows both.
    fn import_images(&self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.py");
        for (dir, name, cmd) in [
            ("pause-oci", PAUSE_IMAGE, Some(PAUSE_CMD)),
            ("busybox-oci", BUSYBOX_IMAGE, None),
        ] {
            let layout = self.path().join(dir);
            let mut py = Command::new("python3");
            py.arg(&script).arg(&layout).arg(name);
            if let Some(cmd) = cmd {
                py.env("BUSYBOX_IMAGE_CMD", cmd);
            }
            run(&mut py);
            let tar = layout.with_extension("tar");
            run(Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&tar)
                .arg("."));
            self.ctr(&["images", "import", tar.to_str().unwrap()]);
            let known = poll_until(TIMEOUT, || {
                let req = ImageStatusRequest {
                    image: Some(ImageSpec {
                        image: name.to_string(),
                        ..Default::default()
                    }),
                    verbose: false,
                };
                self.rt
                    .block_on(self.images.clone().image_status(req))
                    .is_ok_and(|r| r.into_inner().image.is_some())
            });
            assert!(known, "the CRI does not see the imported {name}");
        }
    }

    /// Runs one CRI call to completion (at most [`TIMEOUT`]); panics with containerd's log
    /// when it fails.
    fn call<T, F>(&self, what: &str, f: impl FnOnce(RuntimeServiceClient<Channel>) -> F) -> T
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match self.try_call(f) {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e}\ncontainerd's log:\n{}", self.log()),
        }
    }

    fn try_call<T, F>(
        &self,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = f(self.runtime.clone());
        self.rt.block_on(async {
            match tokio::time::timeout(TIMEOUT, fut).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                Err(_) => Err(format!("no answer in {TIMEOUT:?}")),
            }
        })
    }

    /// ExecSync of `cmd` in the container `id`.
    fn exec(&self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        let req = ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| (*s).to_string()).collect(),
            timeout: 30,
        };
        self.call("ExecSync", |mut c| async move { c.exec_sync(req).await })
    }

    /// ExecSync that must exit 0: its standard output.
    fn exec_ok(&self, id: &str, cmd: &[&str]) -> String {
        let r = self.exec(id, cmd);
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        assert_eq!(
            r.exit_code,
            0,
            "exec {cmd:?}: exit {}\nstdout: {out}\nstderr: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
        out
    }

    fn container_status(&self, id: &str) -> ContainerStatusResponse {
        let req = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        self.call("ContainerStatus", |mut c| async move {
            c.container_status(req).await
        })
    }

    /// Runs `cmd` in the test's network namespace (where the CNI bridge is).
    fn in_netns(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns)).args(cmd);
        c
    }

    /// The network interfaces of the test's namespace, `ip -o link` lines.
    fn netns_links(&self) -> Vec<String> {
        run(Command::new("ip").args(["-n", &self.netns, "-o", "link"]))
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The test's cgroup in every hierarchy that has it.
    fn test_cgroups(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.cgroup_parent))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Live processes of this test: with its tag in their environment (containerd, the shims,
    /// berth, the containers) or its temporary directory in their command line (the shims).
    fn own_processes(&self) -> Vec<(i32, String)> {
        let own = std::process::id() as i32;
        let tag = format!("BERTH_TEST_TAG={}", self.tag);
        let dir = self.path().to_str().unwrap().as_bytes().to_vec();
        let mut out = Vec::new();
        for pid in fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if pid == own {
                continue;
            }
            let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let tagged = env.split(|b| *b == 0).any(|kv| kv == tag.as_bytes());
            let named = cmdline.windows(dir.len()).any(|w| w == dir);
            if (tagged || named) && is_alive(pid) {
                out.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
            }
        }
        out
    }

    /// Everything that must be gone once the pod is removed, while containerd still runs:
    /// berth's containers, the pod's processes and cgroups, mounts below the temporary
    /// directory, the sandbox's network namespace pin, the veth, the IPAM reservation.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let list = run(Command::new(berth_bin())
            .arg("--root")
            .arg(self.berth_root())
            .args(["list", "-q"]));
        left.extend(list.lines().map(|id| format!("berth container {id}")));
        let containerd = self.containerd.as_ref().map(|c| c.id() as i32);
        // The shims exit once their containers are deleted; give them a moment.
        poll_until(Duration::from_secs(10), || {
            self.own_processes()
                .iter()
                .all(|(pid, _)| Some(*pid) == containerd)
        });
        for (pid, cmd) in self.own_processes() {
            if Some(pid) != containerd {
                left.push(format!("process {pid}: {cmd}"));
            }
        }
        for cg in self.test_cgroups() {
            for child in ["pods", "containerd"]
                .iter()
                .flat_map(|d| child_dirs(&cg.join(d)))
            {
                left.push(format!("cgroup {}", child.display()));
            }
        }
        for cg in &self.pod_process_cgroups {
            if cg.exists() {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
        let prefix = format!("{}/", self.path().display());
        let mounts = mount_points();
        for m in &mounts {
            if m.starts_with(&prefix) {
                left.push(format!("mount {m}"));
            }
        }
        for pin in &self.sandbox_netns {
            if Path::new(pin).exists() || mounts.iter().any(|m| m == pin) {
                left.push(format!("network namespace pin {pin}"));
            }
        }
        for link in self.netns_links() {
            if !link.contains(": lo:") && !link.contains(&format!(": {BRIDGE}:")) {
                left.push(format!("link in the test's namespace: {link}"));
            }
        }
        for entry in self.cni_cache_entries() {
            left.push(format!("CNI cache entry {}", entry.display()));
        }
        for id in &self.sandboxes {
            let socket = self.shim_socket(id);
            if socket.exists() {
                left.push(format!("shim socket {}", socket.display()));
            }
        }
        let ipam = self.path().join("ipam/berth-cri");
        for entry in fs::read_dir(&ipam).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(SUBNET_PREFIX) {
                left.push(format!("IPAM reservation {name}"));
            }
        }
        left
    }

    /// libcni's cached results for the test's sandboxes (`<network>-<sandbox id>-<ifname>`).
    fn cni_cache_entries(&self) -> Vec<PathBuf> {
        fs::read_dir(Path::new(CNI_CACHE).join("results"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                self.sandboxes.iter().any(|id| name.contains(id.as_str()))
            })
            .map(|e| e.path())
            .collect()
    }

    /// The shim's socket for the sandbox `id`: containerd 1.6 puts it in
    /// `/run/containerd/s/<sha256 of "<address>/<namespace>/<id>">` whatever its config says.
    fn shim_socket(&self, id: &str) -> PathBuf {
        let key = format!(
            "{}/k8s.io/{id}",
            self.path().join("containerd.sock").display()
        );
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), key.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let hex = String::from_utf8_lossy(&out.stdout);
        Path::new("/run/containerd/s").join(hex.split_whitespace().next().unwrap())
    }

    /// Stops containerd (TERM, then KILL after 20 s) and waits for it.
    fn stop_containerd(&mut self) {
        let Some(mut child) = self.containerd.take() else {
            return;
        };
        // SAFETY: kill with integer arguments, to the containerd this test spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if !poll_until(Duration::from_secs(20), || {
            child.try_wait().ok().flatten().is_some()
        }) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Undoes what is left: containerd, berth's containers, processes of the test, mounts,
    /// sandbox namespace pins, the test's network namespace and cgroup parent. Returns what
    /// had to be forced.
    fn cleanup(&mut self) -> Vec<String> {
        let mut forced = Vec::new();
        self.stop_containerd();
        let berth = berth_bin();
        let ids = Command::new(&berth)
            .arg("--root")
            .arg(self.berth_root())
            .args(["list", "-q"])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.lines().filter(|l| !l.is_empty()) {
            forced.push(format!("berth container {id}"));
            let _ = Command::new(&berth)
                .arg("--root")
                .arg(self.berth_root())
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        poll_until(Duration::from_secs(10), || self.own_processes().is_empty());
        for (pid, cmd) in self.own_processes() {
            forced.push(format!("process {pid}: {cmd}"));
            // SAFETY: kill with integer arguments; the process carries this test's tag or
            // names its temporary directory.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let prefix = format!("{}/", self.path().display());
        let mut mounts: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&prefix) || self.sandbox_netns.contains(m))
            .collect();
        mounts.reverse();
        for m in mounts {
            forced.push(format!("mount {m}"));
            let c = std::ffi::CString::new(m.as_str()).unwrap();
            // SAFETY: umount2 with a valid C string and integer flags.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for pin in &self.sandbox_netns {
            let _ = fs::remove_file(pin);
        }
        for entry in self.cni_cache_entries() {
            forced.push(format!("CNI cache entry {}", entry.display()));
            let _ = fs::remove_file(entry);
        }
        // A shim killed above leaves its socket.
        for id in &self.sandboxes {
            let socket = self.shim_socket(id);
            if fs::remove_file(&socket).is_ok() {
                forced.push(format!("shim socket {}", socket.display()));
            }
        }
        if !self.cni_cache_existed {
            // Only when empty: another user of CNI may have made entries meanwhile.
            let _ = fs::remove_dir(Path::new(CNI_CACHE).join("results"));
            let _ = fs::remove_dir(CNI_CACHE);
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .stderr(Stdio::null())
            .status();
        for cg in &self.pod_process_cgroups {
            if fs::remove_dir(cg).is_ok() {
                forced.push(format!("cgroup {}", cg.display()));
            }
        }
        for cg in self.test_cgroups() {
            if let Err(e) = remove_cgroup_tree(&cg) {
                forced.push(format!("cgroup {} not removed: {e}", cg.display()));
            }
        }
        self.finished = true;
        forced
    }

    /// Asserts nothing is left while containerd runs, then tears the node down and asserts
    /// that nothing had to be forced.
    fn finish(mut self) {
        let left = self.leftovers();
        let forced = self.cleanup();
        assert!(
            left.is_empty(),
            "left behind after the pod:\n{}",
            left.join("\n")
        );
        assert!(
            forced.is_empty(),
            "forced at teardown:\n{}",
            forced.join("\n")
        );
        assert!(
            !run(Command::new("ip").args(["-o", "link"])).contains(BRIDGE),
            "the CNI bridge is in the host's namespace"
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.finished {
            let forced = self.cleanup();
            if !forced.is_empty() {
                eprintln!("CRI test cleanup forced:\n{}", forced.join("\n"));
            }
        }
    }
}

/// The shared namespace options: network, pid and ipc of the pod (`shareProcessNamespace`).
fn pod_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Pod as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A container of the busybox image running `sh -c script`, logging to `<name>.log`.
fn container(node: &Node, name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_IMAGE.to_string(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        envs: vec![KeyValue {
            key: "BERTH_TEST_TAG".into(),
            value: node.tag.clone(),
        }],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sandbox's network namespace pin, from the runtime spec in its verbose status, as
/// mountinfo shows it (`/var/run` is a link to `/run`).
fn netns_path(info: &HashMap<String, String>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let path = v["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")?["path"]
        .as_str()?;
    Some(fs::canonicalize(path).map_or_else(|_| path.to_string(), |p| p.display().to_string()))
}

/// The `pid` in a verbose status's `info` (of a sandbox or a container).
fn info_pid(info: &HashMap<String, String>) -> i32 {
    let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// The pod steps both pods share.
impl Node {
    /// A pod's sandbox config: `name`, its log directory, a cgroup parent.
    fn pod_config(&self, name: &str, cgroup_parent: String) -> PodSandboxConfig {
        let logs = self.path().join("pods").join(name);
        fs::create_dir_all(&logs).unwrap();
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}-{}", self.tag),
                namespace: "berth-test".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: logs.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent,
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(pod_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with the berth handler; records the sandbox (its id, network namespace
    /// pin and cgroups) for the checks and the cleanup. Returns its id and IP.
    fn run_pod(&mut self, config: &PodSandboxConfig) -> (String, String) {
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: HANDLER.into(),
        };
        let sandbox = self
            .call("RunPodSandbox", |mut c| async move {
                c.run_pod_sandbox(req).await
            })
            .pod_sandbox_id;
        self.sandboxes.push(sandbox.clone());
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: true,
        };
        let status = self.call("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(req).await
        });
        let pin = netns_path(&status.info)
            .unwrap_or_else(|| panic!("no network namespace in the sandbox's spec: {status:?}"));
        self.sandbox_netns.push(pin);
        self.record_cgroups(info_pid(&status.info));
        let st = status.status.unwrap();
        assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
        let ip = st.network.unwrap().ip;
        assert!(ip.starts_with(SUBNET_PREFIX), "pod IP {ip:?}");
        let socket = self.shim_socket(&sandbox);
        assert!(socket.exists(), "no shim socket {}", socket.display());
        (sandbox, ip)
    }

    /// CreateContainer and StartContainer of [`container`]`(name, script)` in the pod; checks
    /// it runs and records its cgroups. Returns its id and host pid.
    fn start_container(
        &mut self,
        sandbox: &str,
        pod: &PodSandboxConfig,
        name: &str,
        script: &str,
    ) -> (String, i32) {
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox.to_string(),
            config: Some(container(self, name, script)),
            sandbox_config: Some(pod.clone()),
        };
        let id = self
            .call("CreateContainer", |mut c| async move {
                c.create_container(req).await
            })
            .container_id;
        let req = StartContainerRequest {
            container_id: id.clone(),
        };
        self.call("StartContainer", |mut c| async move {
            c.start_container(req).await
        });
        let req = ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        };
        let status = self.call("ContainerStatus", |mut c| async move {
            c.container_status(req).await
        });
        let s = status.status.unwrap();
        assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
        let pid = info_pid(&status.info);
        self.record_cgroups(pid);
        (id, pid)
    }

    /// Remembers the cgroups of a pod's process `pid` (each must be gone once the pod is).
    fn record_cgroups(&mut self, pid: i32) {
        let dirs = cgroup_dirs(pid);
        assert!(
            dirs.len() > 1 && dirs.iter().all(|d| d.is_dir()),
            "cgroups of {pid}: {dirs:?}"
        );
        self.pod_process_cgroups.extend(dirs);
    }

    /// StopPodSandbox (its containers exit), RemovePodSandbox (they go).
    fn stop_and_remove_pod(&self, sandbox: &str, containers: &[&str]) {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: sandbox.to_string(),
        };
        self.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(req).await
        });
        for id in containers {
            let s = self.container_status(id).status.unwrap();
            assert_eq!(s.state, ContainerState::ContainerExited as i32, "{s:?}");
        }
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.to_string(),
        };
        self.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(req).await
        });
    }
}

#[test]
fn cri_pod_lifecycle_with_berth_as_the_runtime_handler() {
    let Some(mut node) = Node::start() else {
        return;
    };
    let t = Instant::now();
    let mut pod = node.pod_config("pod", format!("/{}/pods", node.cgroup_parent));
    pod.linux.as_mut().unwrap().sysctls = HashMap::from([
        ("kernel.shm_rmid_forced".into(), "1".into()),
        ("net.ipv4.ip_unprivileged_port_start".into(), "555".into()),
    ]);
    let (sandbox, ip) = node.run_pod(&pod);
    let (writer, writer_pid) = node.start_container(&sandbox, &pod, "writer", WRITER);
    let (reader, _) = node.start_container(&sandbox, &pod, "reader", READER);
    let (writer, reader) = (&writer, &reader);

    // berth runs them (the sandbox and both containers are in its state root), each in a
    // cgroup below the pod's cgroup parent.
    let berth_list = run(Command::new(berth_bin())
        .arg("--root")
        .arg(node.berth_root())
        .args(["list", "-q"]));
    for id in [&sandbox, writer, reader] {
        assert!(
            berth_list.lines().any(|l| l == id),
            "{id} not in berth's list:\n{berth_list}"
        );
    }
    let own = format!("/{}/pods/{writer}", node.cgroup_parent);
    let cgroups = fs::read_to_string(format!("/proc/{writer_pid}/cgroup")).unwrap();
    assert!(
        cgroups.lines().any(|l| l.ends_with(&own)),
        "the writer's cgroups are not {own}:\n{cgroups}"
    );

    // ExecSync: output, exit code, stderr.
    let r = node.exec(reader, &["sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(r.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&r.stderr), "to-stderr\n");
    // The pod's sysctls (ipc and net namespaces of the sandbox) and hostname (uts).
    assert_eq!(
        node.exec_ok(reader, &["cat", "/proc/sys/kernel/shm_rmid_forced"]),
        "1\n"
    );
    assert_eq!(
        node.exec_ok(
            reader,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]
        ),
        "555\n"
    );
    assert_eq!(node.exec_ok(reader, &["hostname"]), "pod\n");
    // The shared /dev/shm: the writer's file, seen by the reader.
    let mut shm = String::new();
    poll_until(Duration::from_secs(20), || {
        shm = String::from_utf8_lossy(&node.exec(reader, &["cat", "/dev/shm/shared"]).stdout)
            .into_owned();
        shm == "shm-from-writer\n"
    });
    assert_eq!(shm, "shm-from-writer\n");
    // The shared pid namespace: pid 1 is the pause process, the writer's httpd is visible.
    let ps = node.exec_ok(reader, &["ps", "-o", "pid,args"]);
    assert!(ps.contains("httpd -f -p 8080"), "{ps}");
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 1000")),
        "pid 1 is not the pause process:\n{ps}"
    );

    // The pod IP, from the test's namespace: the writer's HTTP server answers.
    let mut page = String::new();
    poll_until(Duration::from_secs(20), || {
        page = node
            .in_netns(&[
                "/bin/busybox",
                "timeout",
                "10",
                "/bin/busybox",
                "wget",
                "-q",
                "-O",
                "-",
            ])
            .arg(format!("http://{ip}:8080/"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        page == "served-by-pod\n"
    });
    assert_eq!(
        page, "served-by-pod\n",
        "http://{ip}:8080/ from the test's namespace"
    );
    run(&mut node.in_netns(&["/bin/busybox", "ping", "-c", "1", "-W", "5", &ip]));

    // ContainerStats: memory and CPU of a running container.
    let req = ContainerStatsRequest {
        container_id: writer.clone(),
    };
    let stats = node
        .call("ContainerStats", |mut c| async move {
            c.container_stats(req).await
        })
        .stats
        .unwrap();
    let memory = stats.memory.unwrap().working_set_bytes.unwrap().value;
    assert!(memory > 0, "{memory}");
    assert!(stats.cpu.unwrap().usage_core_nano_seconds.is_some());

    // The writer's log in the CRI format: `<RFC 3339 time> <stream> F <line>`.
    let log = Path::new(&pod.log_directory).join("writer.log");
    let mut text = String::new();
    poll_until(Duration::from_secs(20), || {
        text = fs::read_to_string(&log).unwrap_or_default();
        text.lines().count() >= 2
    });
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    for l in &lines {
        assert_eq!(l.len(), 4, "{text}");
        assert!(
            l[0].len() >= 20 && l[0].as_bytes()[10] == b'T',
            "not an RFC 3339 time: {text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l[1..] == ["stdout", "F", "hello from writer"]),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l[1..] == ["stderr", "F", "oops from writer"]),
        "{text}"
    );

    // StopContainer: TERM, the reader's trap exits 7.
    let req = StopContainerRequest {
        container_id: reader.clone(),
        timeout: 10,
    };
    node.call("StopContainer", |mut c| async move {
        c.stop_container(req).await
    });
    let s = node.container_status(reader).status.unwrap();
    assert_eq!(s.state, ContainerState::ContainerExited as i32, "{s:?}");
    assert_eq!(s.exit_code, 7, "{s:?}");
    assert!(s.finished_at >= s.started_at && s.started_at > 0, "{s:?}");
    // The writer still runs: stopping one container leaves the pod's others alone.
    let s = node.container_status(writer).status.unwrap();
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    // StopPodSandbox stops the writer and the pause container; RemovePodSandbox removes all.
    node.stop_and_remove_pod(&sandbox, &[writer]);

    // A `.slice` cgroup parent (kubelet's systemd cgroup driver): with SystemdCgroup = false
    // containerd 1.6 passes `<slice>:cri-containerd:<id>` without --systemd-cgroup, which
    // berth takes as runc does, a relative path (below containerd's cgroup in v1).
    let slice = format!("berth_cri_{}.slice", std::process::id());
    let pod = node.pod_config("slice-pod", slice.clone());
    let (sandbox, _) = node.run_pod(&pod);
    let (sleeper, pid) = node.start_container(&sandbox, &pod, "sleeper", READER);
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    // v1: below containerd's cgroup; pure v2: beside it (below its parent), as runc.
    let name = format!("/{slice}:cri-containerd:{sleeper}");
    let test_cgroup = format!("/{}/", node.cgroup_parent);
    assert!(
        cgroups
            .lines()
            .any(|l| l.ends_with(&name) && l.contains(&test_cgroup)),
        "the container's cgroups are not {name} in {test_cgroup}:\n{cgroups}"
    );
    assert_eq!(node.exec_ok(&sleeper, &["hostname"]), "slice-pod\n");
    node.stop_and_remove_pod(&sandbox, &[&sleeper]);

    let containers = node.call("ListContainers", |mut c| async move {
        c.list_containers(ListContainersRequest::default()).await
    });
    assert!(containers.containers.is_empty(), "{containers:?}");
    let pods = node.call("ListPodSandbox", |mut c| async move {
        c.list_pod_sandbox(ListPodSandboxRequest::default()).await
    });
    assert!(pods.items.is_empty(), "{pods:?}");
    println!("CRI pods: {:?}", t.elapsed());
    node.finish();
}
