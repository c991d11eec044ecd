//! The berthd test fixture: a real berthd driven by real clients (the docker CLI 28 and
//! 20.10, docker-py, raw HTTP on its socket).
//!
//! [`Daemon::start`] makes, for one test:
//!
//! - a network namespace `berthd-t-<pid>-<n>` (loopback up). berthd and the registry run
//!   inside it, so the bridge, veths and nft tables berthd makes for containers never touch
//!   the host's network; the docker CLI talks over the unix socket from outside;
//! - a temporary directory holding everything else: berthd's data root, exec root, socket,
//!   pidfile and log, the docker CLI's config, the registry's storage;
//! - Debian's `docker-registry` on 127.0.0.1:5000 inside the namespace, seeded with the
//!   busybox image of `scripts/busybox-image.py` as [`IMAGE`];
//! - berthd itself, with `berth` and `berth-monitor` found beside it (build them first:
//!   `cargo build -p berth -p berth-monitor -p berthd`).
//!
//! Dropping it removes every container (`docker rm -f`), stops berthd and the registry (by
//! pid), kills any monitor of this daemon still alive and force-deletes what the runtime
//! still holds, unmounts what is left under the directory, and deletes the namespace.
//! [`Daemon::finish`] does the same and then asserts nothing is left behind.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The berthd binary under test.
pub const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

/// The docker CLI 28 (API 1.50, negotiated down to berthd's 1.47).
pub const DOCKER: &str = "/usr/local/bin/docker";

/// The docker CLI 20.10 (API 1.41).
pub const DOCKER20: &str = "/usr/bin/docker";

/// The test image, as pulled from the namespace's registry.
pub const IMAGE: &str = "127.0.0.1:5000/busybox";

/// How long one client command may take before the test gives up on it (and kills it).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a container may take to reach a state it is on its way to.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(30);

static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// Tests of one binary run one at a time: each starts a daemon, a registry and containers,
/// and the machine's few cores are shared.
static SERIAL: Mutex<()> = Mutex::new(());

/// Convenience accessors on a command's output.
pub trait OutputExt {
    /// Standard output, lossily decoded.
    fn out(&self) -> String;
    /// Standard error, lossily decoded.
    fn err(&self) -> String;
    /// The exit code (128+N for a death by signal N).
    fn code(&self) -> i32;
    /// Panics with both streams unless the command succeeded; returns it.
    fn ok(self, what: &str) -> Self;
}

impl OutputExt for Output {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        code_of(self.status)
    }
    fn ok(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.out(),
            self.err()
        );
        self
    }
}

fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub use berth_test_support::poll_until;

/// Runs `cmd` with `stdin` (or `/dev/null`), capturing its output; kills it and panics
/// with what it printed if it takes longer than `timeout`.
pub fn run_with_timeout(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    match try_run(cmd, stdin, timeout) {
        Ok(out) => out,
        Err(Some(out)) => panic!(
            "{what} did not finish within {timeout:?}:\nstdout: {}\nstderr: {}",
            out.out(),
            out.err()
        ),
        Err(None) => panic!("{what} could not be started"),
    }
}

/// [`run_with_timeout`] without panics: `Err(Some(output so far))` on a timeout (the
/// command killed), `Err(None)` if it could not be started.
pub fn try_run(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, Option<Output>> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|_| None)?;
    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let readers = [
        read_all(child.stdout.take().expect("piped")),
        read_all(child.stderr.take().expect("piped")),
    ];
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break (s, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait().map_err(|_| None)?, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
    let out = Output {
        status,
        stdout,
        stderr,
    };
    if timed_out {
        Err(Some(out))
    } else {
        Ok(out)
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// An HTTP response read off berthd's socket.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The head: status line and headers.
    pub head: String,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.text()))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Asserts the status and docker's error shape (`{"message": "..."}`, not empty);
    /// returns the message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got:\n{}\n{}",
            self.head,
            self.text()
        );
        let v = self.json();
        let msg = v["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"message\" in {v}"))
            .to_string();
        assert!(!msg.is_empty(), "an empty message: {v}");
        msg
    }
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = data.get(end + 2..).unwrap_or(&[]);
    }
    out
}

/// Sends raw bytes on a new connection to the unix socket `sock` and reads the whole
/// response (the request should say `Connection: close`).
pub fn raw_request(sock: &Path, request: &[u8]) -> HttpResponse {
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", sock.display()));
    s.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
    // The server may answer (413) and close before reading everything we send.
    let _ = s.write_all(request);
    let mut data = Vec::new();
    let _ = s.read_to_end(&mut data);
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no HTTP response head in {:?}",
                String::from_utf8_lossy(&data)
            )
        });
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let raw = &data[end + 4..];
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    HttpResponse {
        status,
        body: if chunked {
            decode_chunked(raw)
        } else {
            raw.to_vec()
        },
        head,
    }
}

/// Every process's pid and NUL-separated command line.
fn processes() -> Vec<(i32, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)))
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// Where container `id`'s cgroups may be: `/berth-<id>` (what the engine asks for) or
/// `/berth/<id>` (the runtime's default), in the v2 root and in each v1 hierarchy.
pub fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    dirs.iter()
        .flat_map(|d| [d.join(format!("berth-{id}")), d.join("berth").join(id)])
        .collect()
}

/// Runs `f` on a thread that has entered the network namespace at `ns_path` (the test's
/// own threads stay in the host's).
pub fn in_netns<T: Send>(ns_path: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(ns_path)
                .unwrap_or_else(|e| panic!("{}: {e}", ns_path.display()));
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("the namespace thread panicked")
    })
}

/// One test's berthd, in its own network namespace, with a registry beside it.
pub struct Daemon {
    /// Everything of the test lives here (mode 0711, so other users can reach the socket
    /// and be refused by its own mode).
    pub dir: tempfile::TempDir,
    /// The network namespace's name.
    pub netns: String,
    /// The API socket.
    pub sock: PathBuf,
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `--exec-root`.
    pub exec_root: PathBuf,
    berthd: Option<Child>,
    registry: Option<Child>,
    _serial: MutexGuard<'static, ()>,
}

fn sibling(name: &str) -> PathBuf {
    let p = Path::new(BERTHD).with_file_name(name);
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build -p berth -p berth-monitor -p berthd)",
        p.display()
    );
    p
}

fn ip(args: &[&str]) -> Output {
    run_with_timeout(
        {
            let mut c = Command::new("ip");
            c.args(args);
            c
        },
        None,
        COMMAND_TIMEOUT,
    )
}

impl Daemon {
    /// Starts the namespace, the seeded registry and berthd.
    pub fn start() -> Daemon {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let berth = sibling("berth");
        sibling("berth-monitor");
        let _ = berth;
        let dir = tempfile::Builder::new().prefix("bd-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let netns = format!(
            "berthd-t-{}-{}",
            std::process::id(),
            NAMESPACES.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &netns]).ok("ip netns add");
        let root = dir.path().to_path_buf();
        let mut d = Daemon {
            sock: root.join("d.sock"),
            data_root: root.join("data"),
            exec_root: root.join("exec"),
            dir,
            netns,
            berthd: None,
            registry: None,
            _serial: serial,
        };
        d.nsenter(&["ip", "link", "set", "lo", "up"])
            .ok("ip link set lo up");
        d.start_registry();
        d.seed_registry();
        d.spawn_berthd();
        d
    }

    /// [`Daemon::start`], then `docker pull` of [`IMAGE`].
    pub fn with_image() -> Daemon {
        let d = Daemon::start();
        d.docker_ok(&["pull", "-q", IMAGE]);
        d
    }

    /// Polls `GET /{path}` on `host:port` from inside the namespace until the answer holds
    /// `needle` (up to [`STATE_TIMEOUT`]); returns whether it did and the last answer.
    pub fn http_get_until(
        &self,
        host: &str,
        port: u16,
        path: &str,
        needle: &str,
    ) -> (bool, String) {
        let mut page = String::new();
        let served = in_netns(&self.netns_path(), || {
            poll_until(STATE_TIMEOUT, || {
                let Ok(mut s) = std::net::TcpStream::connect((host, port)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!("GET /{path} HTTP/1.0\r\n\r\n");
                let _ = std::io::Write::write_all(&mut s, request.as_bytes());
                page.clear();
                let _ = std::io::Read::read_to_string(&mut s, &mut page);
                page.contains(needle)
            })
        });
        (served, page)
    }

    /// `/run/netns/NAME`.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// A command run inside the namespace (`nsenter --net`, which keeps the host's mounts).
    pub fn nsenter_command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .args(args);
        c
    }

    /// Runs `args` inside the namespace.
    pub fn nsenter<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_with_timeout(self.nsenter_command(args), None, COMMAND_TIMEOUT)
    }

    fn start_registry(&mut self) {
        let rdir = self.dir.path().join("registry");
        std::fs::create_dir_all(&rdir).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n",
            rdir.join("data").display()
        );
        let cfg = rdir.join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = self
            .nsenter_command(&[
                OsStr::new("docker-registry"),
                OsStr::new("serve"),
                cfg.as_os_str(),
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(rdir.join("log")).unwrap())
            .stderr(std::fs::File::create(rdir.join("err")).unwrap())
            .spawn()
            .expect("docker-registry");
        self.registry = Some(child);
        let up = in_netns(&self.netns_path(), || {
            poll_until(Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", 5000)).is_ok()
            })
        });
        assert!(
            up,
            "the registry did not listen: {}",
            std::fs::read_to_string(rdir.join("err")).unwrap_or_default()
        );
    }

    fn seed_registry(&self) {
        let layout = self.dir.path().join("busybox-oci");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.py");
        let mut c = Command::new("python3");
        c.arg(&script).arg(&layout);
        run_with_timeout(c, None, COMMAND_TIMEOUT).ok("busybox-image.py");
        let src = format!("oci:{}:latest", layout.display());
        let dst = format!("docker://{IMAGE}:latest");
        self.nsenter(&[
            "skopeo",
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &src,
            &dst,
        ])
        .ok("skopeo copy");
    }

    /// berthd's log (every run of it, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("berthd.log")
    }

    /// What berthd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn_berthd(&mut self) {
        assert!(self.berthd.is_none(), "berthd already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let host = format!("unix://{}", self.sock.display());
        let pidfile = self.dir.path().join("berthd.pid");
        let args: Vec<&OsStr> = vec![
            OsStr::new(BERTHD),
            OsStr::new("-H"),
            OsStr::new(&host),
            OsStr::new("--data-root"),
            self.data_root.as_os_str(),
            OsStr::new("--exec-root"),
            self.exec_root.as_os_str(),
            OsStr::new("--pidfile"),
            pidfile.as_os_str(),
            OsStr::new("--log-level"),
            OsStr::new("debug"),
        ];
        // nsenter execs berthd: the child's pid is berthd's.
        let child = self
            .nsenter_command(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("berthd");
        self.berthd = Some(child);
        let sock = self.sock.clone();
        let up = poll_until(Duration::from_secs(30), || {
            if let Some(Some(status)) = self.berthd.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("berthd exited ({status}):\n{}", self.log());
            }
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        assert!(up, "berthd did not listen:\n{}", self.log());
    }

    /// berthd's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.berthd.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILLs berthd (containers and their monitors keep running).
    pub fn kill9(&mut self) {
        let mut child = self.berthd.take().expect("berthd runs");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts berthd again (after [`Daemon::kill9`]) on the same roots and socket.
    pub fn restart(&mut self) {
        self.spawn_berthd();
    }

    fn docker_command(&self, binary: &str, args: &[&str]) -> Command {
        let mut c = Command::new(binary);
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        c
    }

    /// A `docker` (CLI 28) command with this daemon's environment, to adjust and run.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        self.docker_command(DOCKER, args)
    }

    /// Runs `docker ARGS` (CLI 28).
    pub fn docker(&self, args: &[&str]) -> Output {
        run_with_timeout(self.docker_cmd(args), None, COMMAND_TIMEOUT)
    }

    /// Runs `docker ARGS` (CLI 28) with `stdin` piped in.
    pub fn docker_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_timeout(self.docker_cmd(args), Some(stdin), COMMAND_TIMEOUT)
    }

    /// Runs `docker ARGS` (CLI 28), asserts it succeeded, returns its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        self.docker(args)
            .ok(&format!("docker {}", args.join(" ")))
            .out()
    }

    /// A `docker` (CLI 20.10) command with this daemon's environment.
    pub fn docker20_cmd(&self, args: &[&str]) -> Command {
        self.docker_command(DOCKER20, args)
    }

    /// Runs `docker ARGS` with the 20.10 CLI.
    pub fn docker20(&self, args: &[&str]) -> Output {
        run_with_timeout(self.docker20_cmd(args), None, COMMAND_TIMEOUT)
    }

    /// Runs `docker ARGS` with the 20.10 CLI, asserts it succeeded, returns its stdout.
    pub fn docker20_ok(&self, args: &[&str]) -> String {
        self.docker20(args)
            .ok(&format!("docker(20.10) {}", args.join(" ")))
            .out()
    }

    /// `docker inspect -f FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "-f", format, name])
            .trim()
            .to_string()
    }

    /// Waits until `docker inspect -f FORMAT NAME` prints `want`; panics with the last value.
    pub fn wait_inspect(&self, name: &str, format: &str, want: &str) {
        let mut last = String::new();
        let ok = poll_until(STATE_TIMEOUT, || {
            last = self.inspect(name, format);
            last == want
        });
        assert!(ok, "{name}: {format} is {last:?}, never {want:?}");
    }

    /// Waits until `docker logs NAME` contains `needle`; returns the logs.
    pub fn wait_logs(&self, name: &str, needle: &str) -> String {
        let mut last = String::new();
        let ok = poll_until(STATE_TIMEOUT, || {
            last = self.docker_ok(&["logs", name]);
            last.contains(needle)
        });
        assert!(ok, "{name}: {needle:?} never logged; logs:\n{last}");
        last
    }

    /// A raw HTTP/1.1 request on the API socket: `method path`, JSON `body` when given.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> HttpResponse {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
        if let Some(b) = body {
            let _ = write!(
                req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            );
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        raw_request(&self.sock, &bytes)
    }

    /// berth-monitor processes of this daemon (their runtime root is under its exec root).
    pub fn monitors(&self) -> Vec<i32> {
        let root = self.exec_root.join("runtime");
        let root = root.as_os_str().as_encoded_bytes();
        processes()
            .into_iter()
            .filter(|(_, cmd)| {
                let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
                argv0.ends_with(b"berth-monitor") && contains(cmd, root)
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Processes whose command line names this test's directory (berthd, the registry,
    /// monitors), but not the test itself.
    pub fn processes_of_dir(&self) -> Vec<(i32, String)> {
        let me = std::process::id() as i32;
        let dir = self.dir.path().as_os_str().as_encoded_bytes();
        processes()
            .into_iter()
            .filter(|(pid, cmd)| *pid != me && contains(cmd, dir))
            .map(|(pid, cmd)| (pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
            .collect()
    }

    /// Removes every container through the API (`docker rm -f`), without panicking.
    pub fn remove_all_containers(&self) {
        let Ok(out) = try_run(
            self.docker_cmd(&["ps", "-aq", "--no-trunc"]),
            None,
            COMMAND_TIMEOUT,
        ) else {
            return;
        };
        let ids: Vec<String> = out.out().split_whitespace().map(String::from).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = try_run(self.docker_cmd(&args), None, COMMAND_TIMEOUT);
        }
    }

    fn cleanup(&mut self) {
        if self.berthd.is_some() {
            self.remove_all_containers();
        }
        if let Some(mut child) = self.berthd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Monitors that outlived berthd's removals (a failed test), then what the runtime
        // still holds (container processes, cgroups).
        for pid in self.monitors() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let runtime_root = self.exec_root.join("runtime");
        if let Ok(entries) = std::fs::read_dir(&runtime_root) {
            let berth = Path::new(BERTHD).with_file_name("berth");
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let mut c = Command::new(&berth);
                c.arg("--root")
                    .arg(&runtime_root)
                    .args(["delete", "--force"])
                    .arg(e.file_name());
                let _ = try_run(c, None, COMMAND_TIMEOUT);
            }
        }
        if let Some(mut child) = self.registry.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for m in mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        if self.netns_path().exists() {
            let mut c = Command::new("ip");
            c.args(["netns", "del", &self.netns]);
            let _ = try_run(c, None, COMMAND_TIMEOUT);
        }
    }

    /// Cleans up (as dropping does) and asserts nothing is left: no monitor of this daemon,
    /// no process naming its directory, no mount under it, no namespace.
    pub fn finish(mut self) {
        let dir = self.dir.path().to_path_buf();
        // Through the API first: what a clean `docker rm -f` leaves is what is checked.
        // Every container this berthd (since its last start) made: listed, or in its events.
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let mut ids = self.docker_ok(&["ps", "-aq", "--no-trunc"]);
        ids += &self.docker_ok(&[
            "events",
            "--since",
            "0",
            "--until",
            &until,
            "--filter",
            "type=container",
            "--format",
            "{{.Actor.ID}}",
        ]);
        self.remove_all_containers();
        let cgroups: Vec<PathBuf> = ids
            .split_whitespace()
            .flat_map(cgroups_of)
            .filter(|p| p.exists())
            .collect();
        assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
        let runtime: Vec<_> = std::fs::read_dir(self.exec_root.join("runtime"))
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(runtime.is_empty(), "runtime state left: {runtime:?}");
        let monitors = self.monitors();
        let ok = poll_until(STATE_TIMEOUT, || self.monitors().is_empty());
        assert!(ok, "monitors left after docker rm -f: {monitors:?}");
        let mounts = mounts_under(&dir);
        assert!(
            mounts.is_empty(),
            "mounts left after docker rm -f: {mounts:?}"
        );
        self.cleanup();
        let left = self.processes_of_dir();
        assert!(left.is_empty(), "processes left: {left:?}");
        assert!(!self.netns_path().exists(), "{} left", self.netns);
        assert!(mounts_under(&dir).is_empty());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- berthd log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.cleanup();
    }
}
