#!/usr/bin/env python3
"""`docker run --rm busybox true` end to end: the docker CLI against berthd and against dockerd
(containerd + runc), and `podman run --rm busybox true`, interleaved, in both network modes.

daemon.sh runs this as root inside a network namespace it created (entered with nsenter) and a
private mount namespace (unshare -m): the daemons' bridges, veths, iptables/nft rules and
ip_forward stay in that network namespace, and their mounts (overlay rootfs, pinned namespaces,
the tmpfs shadows below) in that mount namespace, so both disappear with it. This script checks
that it is not in the host's network namespace before starting anything.

Every iteration runs every (engine, network) pair once, in a rotating order, so background
load and drift spread over all engines; each command is timed with a monotonic clock
(perf_counter_ns) around posix_spawn + wait4 (driver.py's Spawner), stdio to /dev/null. Raw
samples go to a JSON file and a Markdown report is written beside it. Nothing here judges the
numbers.

Also measured once: each daemon's RSS (VmRSS) right after it answers /_ping and again after the
timed loop, and the RSS of the per-container process that stays beside a running `sleep`
container (berth-monitor, containerd-shim-runc-v2, conmon).

Only the standard library is used.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from driver import Spawner, loadavg, progress  # noqa: E402
from report import git_rev, median, ms, p90, ratio, cell_text  # noqa: E402

IMAGE = "busybox"
# Processes that stay beside a running container, by comm (15 characters at most).
MONITORS = ("berth-monitor", "containerd-shim", "conmon")
NETWORK_TITLES = {"bridge": "default network (a bridge inside the benchmark's netns)",
                  "none": "`--network none`"}


# --- small helpers -------------------------------------------------------------------------------

def sh(argv, timeout=120, check=False):
    """Runs a setup/cleanup command (untimed), returns (rc, stdout, stderr)."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout} s: {' '.join(argv)}"
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[-600:]}")
    return p.returncode, p.stdout, p.stderr


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def rss_kb(pid):
    v = proc_status(pid, "VmRSS")
    return int(v.split()[0]) if v else None


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def exe_name(pid):
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def ppid(pid):
    v = proc_status(pid, "PPid")
    return int(v) if v else None


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and ppid(int(d)) == pid:
            out.append(int(d))
    return out


def ns_of(pid, kind):
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def same_mount_ns_pids():
    """Every other process in this (private) mount namespace: all of them were started by this
    script, directly or through a daemon (daemon.sh entered the namespace with exec's only)."""
    mine, me = ns_of("self", "mnt"), os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != me and ns_of(d, "mnt") == mine:
            out.append(int(d))
    return out


def ping(sock_path):
    """GET /_ping over the daemon's unix socket; True on a 200."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            head = s.recv(4096).split(b"\r\n", 1)[0]
            return b" 200 " in head + b" "
    except OSError:
        return False


def first_line(text):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[0] if lines else ""


def error_text(text, rc):
    """The last meaningful line of a CLI's stderr, shortened for a table cell."""
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    lines = [l for l in lines if "level=warning" not in l and not l.startswith("WARNING")] or lines
    t = lines[-1] if lines else f"exit code {rc}, no stderr"
    m = re.search(r'msg="(.*)"', t)
    return (m.group(1) if m else t)[:300]


ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LEVEL = re.compile(r"(?:^\S+\s+|level=)(ERROR|WARN|error|warning|fatal)\b")
LOG_STAMP = re.compile(r'^\S+Z\s+|time="[^"]*"\s*')


# --- engines -------------------------------------------------------------------------------------

class Engine:
    """One thing the CLI talks to. `cli` is the argv prefix of every command."""

    kind = ""
    daemon_name = None

    def __init__(self, name, tmp):
        self.name, self.tmp = name, tmp
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None          # the daemon's Popen, if any
        self.cli = []
        self.version = ""
        self.ready_ms = None      # daemon start until /_ping answers
        self.rss = {}             # what -> KiB
        self.notes = []

    # the timed command
    def run_argv(self, network):
        return [*self.cli, "run", "--rm", *(["--network", "none"] if network == "none" else []),
                IMAGE, "true"]

    def start_daemon(self, argv, sock, timeout=90):
        log = open(os.path.join(self.dir, "daemon.log"), "wb")
        t0 = time.perf_counter_ns()
        # A new session: a Ctrl-C on the terminal reaches this script, whose cleanup removes the
        # containers before it stops the daemon, rather than the daemon directly.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at startup: "
                                   + self.log_tail())
            if ping(sock):
                self.ready_ms = (time.perf_counter_ns() - t0) / 1e6
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not answer /_ping within {timeout} s: "
                           + self.log_tail())

    def log_tail(self, n=5):
        try:
            with open(os.path.join(self.dir, "daemon.log"), errors="replace") as f:
                return " | ".join(l.strip() for l in f.readlines()[-n:])
        except OSError:
            return ""

    def log_summary(self):
        """Error and warning lines in the daemon's log (berthd's tracing, dockerd's logrus),
        counted, with the first few distinct messages (timestamps and colours stripped)."""
        path = os.path.join(self.dir, "daemon.log")
        if not self.proc or not os.path.exists(path):
            return None
        out = {"error": 0, "warn": 0, "examples": []}
        with open(path, errors="replace") as f:
            for line in f:
                line = ANSI.sub("", line).strip()
                m = LOG_LEVEL.search(line)
                if not m:
                    continue
                level = "error" if m.group(1).lower() in ("error", "fatal") else "warn"
                out[level] += 1
                msg = LOG_STAMP.sub("", line)[:300]
                if len(out["examples"]) < 4 and msg not in out["examples"]:
                    out["examples"].append(msg)
        return out

    def daemon_rss(self):
        """The daemon's VmRSS; for dockerd also its containerd (dockerd starts and owns it)."""
        if not self.proc or self.proc.poll() is not None:
            return {}
        out = {self.daemon_name: rss_kb(self.proc.pid)}
        for c in children(self.proc.pid):
            if comm(c) == "containerd":
                out["containerd"] = rss_kb(c)
        return out

    def monitor_rss(self):
        """Starts a detached `sleep` container, finds the process that stays beside it (the
        nearest ancestor of its init whose comm is a known monitor), reads its VmRSS, removes
        the container."""
        rc, out, err = sh([*self.cli, "run", "-d", "--network", "none", IMAGE, "sleep", "300"])
        if rc != 0:
            return {"error": error_text(err, rc)}
        cid = first_line(out)
        try:
            time.sleep(0.5)
            rc, out, err = sh([*self.cli, "inspect", "-f", "{{.State.Pid}}", cid])
            if rc != 0:
                return {"error": "inspect: " + error_text(err, rc)}
            pid = int(first_line(out) or 0)
            res = {"container_init_pid": pid}
            p = pid
            while p and p > 1:
                p = ppid(p)
                c = comm(p) if p else None
                if c and any(c.startswith(m) for m in MONITORS):
                    res.update(process=exe_name(p) or c, pid=p, rss_kb=rss_kb(p))
                    break
            else:
                res["error"] = f"no {'/'.join(MONITORS)} among the ancestors of {pid}"
            return res
        finally:
            sh([*self.cli, "rm", "-f", cid])

    def containers(self):
        rc, out, err = sh([*self.cli, "ps", "-aq"])
        return out.split() if rc == 0 else None

    def remove_all(self):
        ids = self.containers() or []
        if ids:
            sh([*self.cli, "rm", "-f", *ids], timeout=300)

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.notes.append(f"{self.name} did not exit within 30 s of SIGTERM: killed")
            self.proc.kill()
            self.proc.wait()


class Berthd(Engine):
    kind = "docker CLI → berthd (berth-monitor, berth)"
    daemon_name = "berthd"

    def __init__(self, tmp, berthd, docker):
        super().__init__("berthd", tmp)
        self.berthd, self.docker = berthd, docker
        self.berth = os.path.join(os.path.dirname(berthd), "berth")
        self.sock = os.path.join(self.dir, "d.sock")
        self.data, self.exec_root = os.path.join(self.dir, "data"), os.path.join(self.dir, "exec")
        self.cli = [docker, "-H", "unix://" + self.sock]

    def setup(self, oci_dir, archive):
        # The data root is berth's store: import the image offline, before the daemon starts.
        sh([self.berth, "--store", self.data, "image", "import", oci_dir], check=True)
        self.start_daemon([self.berthd, "-H", "unix://" + self.sock, "--data-root", self.data,
                           "--exec-root", self.exec_root, "--pidfile",
                           os.path.join(self.dir, "d.pid")], self.sock)
        self.rss["idle"] = self.daemon_rss()
        v = sh([self.berthd, "--version"])[1].strip()
        sv = sh([*self.cli, "version", "-f", "{{.Server.Version}} (API {{.Server.APIVersion}})"])
        self.version = f"{v}; server {sv[1].strip() or error_text(sv[2], sv[0])}"


class Dockerd(Engine):
    kind = "docker CLI → dockerd (containerd, containerd-shim-runc-v2, runc)"
    daemon_name = "dockerd"

    def __init__(self, tmp, dockerd, docker):
        super().__init__("dockerd", tmp)
        self.dockerd, self.docker = dockerd, docker
        self.sock = os.path.join(self.dir, "d.sock")
        self.cli = [docker, "-H", "unix://" + self.sock]

    def setup(self, oci_dir, archive):
        # Its own config file (empty): nothing from /etc/docker, and the trust key that dockerd
        # 20.10 keeps beside the config file lands here too.
        cfg = os.path.join(self.dir, "daemon.json")
        with open(cfg, "w") as f:
            f.write("{}\n")
        self.start_daemon([self.dockerd, "-H", "unix://" + self.sock, "--config-file", cfg,
                           "--data-root", os.path.join(self.dir, "data"),
                           "--exec-root", os.path.join(self.dir, "exec"),
                           "--pidfile", os.path.join(self.dir, "d.pid"),
                           "--exec-opt", "native.cgroupdriver=cgroupfs"], self.sock)
        self.rss["idle"] = self.daemon_rss()
        sh([*self.cli, "load", "-i", archive], check=True, timeout=300)
        sv = sh([*self.cli, "version", "-f", "{{.Server.Version}} (API {{.Server.APIVersion}})"])
        info = sh([*self.cli, "info", "-f",
                   "{{.Driver}} storage, {{.CgroupDriver}} cgroups v{{.CgroupVersion}}, "
                   "runtime {{.DefaultRuntime}}, iptables {{.BridgeNfIptables}}"])
        self.version = (f"dockerd {sv[1].strip() or error_text(sv[2], sv[0])}; "
                        f"{info[1].strip()}; containerd {version_line(['containerd', '--version'])}"
                        f"; {version_line(['runc', '--version'])}")


class Podman(Engine):
    kind = "podman (conmon, runc), no daemon"

    def __init__(self, tmp, podman, runtime):
        super().__init__("podman", tmp)
        d = self.dir
        self.netdir = os.path.join(d, "net")
        os.makedirs(self.netdir, exist_ok=True)
        self.cli = [podman, "--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"),
                    "--tmpdir", os.path.join(d, "tmp"), "--cgroup-manager", "cgroupfs",
                    "--network-config-dir", self.netdir, "--runtime", runtime,
                    "--storage-driver", "overlay", "--events-backend", "none"]

    def setup(self, oci_dir, archive):
        if not has_cap(CAP_SYS_RESOURCE):
            # Rootful podman asks for RLIMIT_NOFILE 1048576 and a large RLIMIT_NPROC; without
            # CAP_SYS_RESOURCE (as in this project's VMs) runc cannot raise the limits and every
            # container fails ("error setting rlimits for ready process ... operation not
            # permitted"). nofile: our own hard limit, which dockerd's containers inherit here;
            # nproc: 4096 (runc was refused even values below our own limit, e.g. 65536).
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            conf = os.path.join(self.dir, "containers.conf")
            with open(conf, "w") as f:
                f.write('[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n'
                        % (nofile, nofile, PODMAN_NPROC, PODMAN_NPROC))
            os.environ["CONTAINERS_CONF"] = conf
            self.notes.append(f"podman: no CAP_SYS_RESOURCE here, so its containers get "
                              f"nofile={nofile} nproc={PODMAN_NPROC} (containers.conf "
                              "default_ulimits) instead of podman's raised defaults, which runc "
                              "cannot set")
        # podman's default network, with its address allocations kept in our temp dir (the
        # packaged conflist leaves host-local's dataDir at /var/lib/cni/networks).
        src = "/etc/cni/net.d/87-podman-bridge.conflist"
        if os.path.exists(src):
            with open(src) as f:
                conf = json.load(f)
            for p in conf.get("plugins", []):
                if p.get("type") == "bridge" and "ipam" in p:
                    p["ipam"]["dataDir"] = os.path.join(self.dir, "ipam")
            with open(os.path.join(self.netdir, os.path.basename(src)), "w") as f:
                json.dump(conf, f, indent=1)
        sh([*self.cli, "load", "-i", archive], check=True, timeout=300)
        self.version = (version_line([self.cli[0], "--version"]) + "; runtime "
                        + version_line([self.cli[self.cli.index("--runtime") + 1], "--version"])
                        + "; " + version_line(["conmon", "--version"]))

    def remove_all(self):
        sh([*self.cli, "rm", "-fa"], timeout=300)


CAP_SYS_RESOURCE = 24
PODMAN_NPROC = 4096


def has_cap(bit):
    v = proc_status("self", "CapEff")
    return bool(v and int(v, 16) >> bit & 1)


def version_line(argv):
    try:
        return first_line(sh(argv)[1]) or "?"
    except OSError:
        return "?"


# --- the measurement -------------------------------------------------------------------------------

class Subject:
    """One (engine, scenario) pair that the loop times."""

    def __init__(self, engine, scenario, argv):
        self.engine, self.scenario, self.argv = engine, scenario, argv
        self.samples, self.cpu_ns = [], []
        self.failures, self.errors = 0, []

    @property
    def key(self):
        return f"{self.engine.name}/{self.scenario}"

    def to_json(self):
        return {"engine": self.engine.name, "scenario": self.scenario, "argv": self.argv,
                "samples_ns": self.samples, "client_cpu_ns": self.cpu_ns,
                "failures": self.failures, "errors": self.errors}


def timed(spawner, s):
    inv = spawner.run(s.argv)
    if inv.rc != 0:
        s.failures += 1
        if len(s.errors) < 5:
            s.errors.append(error_text(inv.stderr(), inv.rc))
        return False
    s.samples.append(inv.ns)
    s.cpu_ns.append(inv.cpu_ns)
    return True


def probe(spawner, s, warmup):
    """Untimed runs first: the first run of an engine pays one-off costs (a network's bridge,
    the image's first mount). A pair that cannot run is left out and its error reported."""
    for _ in range(warmup):
        inv = spawner.run(s.argv)
        if inv.rc != 0:
            return error_text(inv.stderr(), inv.rc)
    return None


def measure(args, spawner, subjects, result):
    live = []
    for s in subjects:
        err = probe(spawner, s, args.warmup)
        if err:
            result["left_out"][s.key] = err
            print(f"[dbench] {s.key}: left out: {err}", file=sys.stderr)
        else:
            live.append(s)
    t0 = time.monotonic()
    for i in range(args.n):
        k = i % len(live) if live else 0
        for s in live[k:] + live[:k]:
            timed(spawner, s)
        progress(f"iteration {i + 1}/{args.n} ({time.monotonic() - t0:.0f} s)",
                 every=(i + 1) % 10 == 0)
    progress("")
    result["loop_seconds"] = time.monotonic() - t0


# --- setup, cleanup ----------------------------------------------------------------------------------

def check_netns():
    """Refuses to run in the host's network namespace (pid 1's)."""
    if ns_of("self", "net") == ns_of(1, "net"):
        sys.exit("daemon.py must run inside its own network namespace (use daemon.sh)")
    if ns_of("self", "mnt") == ns_of(1, "mnt"):
        sys.exit("daemon.py must run inside a private mount namespace (use daemon.sh)")


def shadow(paths, tmp):
    """A tmpfs (in this private mount namespace only) over host paths the engines write to no
    matter what they are told: CNI's result cache (/var/lib/cni), containerd's shim sockets
    (/run/containerd/s) and the containers/image blob-info cache. daemon.sh made any that were
    missing and removes those afterwards."""
    done = []
    for p in paths:
        if os.path.isdir(p):
            rc, _, err = sh(["mount", "-t", "tmpfs", "-o", "mode=0700", "dbench", p])
            if rc == 0:
                done.append(p)
            else:
                print(f"[dbench] could not shadow {p}: {err.strip()}", file=sys.stderr)
    return done


CGROUP_ROOTS = ("docker", "libpod_parent", "berth")


def cgroup_dirs():
    """Every cgroup directory under the parents the three engines use, in every hierarchy."""
    out = set()
    base = "/sys/fs/cgroup"
    for h in os.listdir(base):
        for r in CGROUP_ROOTS:
            top = os.path.join(base, h, r)
            if os.path.isdir(top):
                for d, _, _ in os.walk(top):
                    out.add(d)
    return out


def cgroup_cleanup(before):
    """Removes (rmdir, deepest first) the cgroup directories this run made under a parent that
    did not exist before it (dockerd's /docker and podman's /libpod_parent on a fresh host);
    under parents that existed, new leftovers are only reported, since other engines on the host
    may own them."""
    after = cgroup_dirs()
    new = sorted(after - before, key=lambda d: -d.count("/"))
    removed, left = 0, []
    for d in new:
        parts = d.split("/")
        top = "/".join(parts[:6])  # /sys/fs/cgroup/<hierarchy>/<root>
        if top in before:
            left.append(d)
            continue
        try:
            os.rmdir(d)
            removed += 1
        except OSError as e:
            left.append(f"{d} ({e.strerror})")
    return removed, left


def mounts_under(prefix):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
                out.append(mnt)
    return out


def cleanup(engines, tmp, shadows, notes):
    for e in engines:
        try:
            e.remove_all()
        except Exception as ex:  # keep cleaning up
            notes.append(f"cleanup: removing {e.name}'s containers: {ex}")
    for e in engines:
        e.stop()
    # Whatever the daemons left running (shims, monitors, a containerd): by pid, and only
    # processes in this private mount namespace, which only this script's children entered.
    strays = same_mount_ns_pids()
    for pid in strays:
        try:
            c = comm(pid)
            os.kill(pid, signal.SIGKILL)
            notes.append(f"cleanup: killed leftover process {pid} ({c})")
        except ProcessLookupError:
            pass
    for m in reversed(mounts_under(tmp)):
        sh(["umount", "-l", m])
    for p in reversed(shadows):
        sh(["umount", "-l", p])


# --- report ----------------------------------------------------------------------------------------

def stats(samples):
    if not samples:
        return None
    s = sorted(samples)
    return {"median": median(s), "p10": s[max(0, -(-len(s) // 10) - 1)], "p90": p90(s),
            "min": s[0], "max": s[-1], "n": len(s)}


def kb(v):
    return f"{v / 1024:.1f} MiB" if isinstance(v, (int, float)) else "–"


def write_report(result, path):
    subj = {(s["engine"], s["scenario"]): s for s in result["subjects"]}
    engines = result["engines"]
    L = []
    L.append("# berthd end-to-end: `docker run --rm busybox true`\n")
    L.append(f"`{result['command']}` — {result['date']}; kernel {result['kernel']}, "
             f"{result['cpus']} CPUs; berth {result['git']}.\n")
    L.append(f"{result['n']} iterations; each runs every engine in every network mode once, in "
             f"a rotating order ({result['warmup']} untimed runs of each first). Wall time of "
             "the whole client command (`docker …` / `podman …`), perf_counter_ns around "
             "posix_spawn + wait4. Times in ms: median (p10–p90); ratios are of medians. "
             f"Load average {result['load_before']} before, {result['load_after']} after; the "
             f"timed loop took {result['loop_seconds']:.0f} s.\n")
    L.append("| engine | what runs |\n|---|---|")
    for e in engines:
        L.append(f"| {e['name']} | {e['kind']}: {cell_text(e['version'])} |")
    L.append("")
    for net in result["networks"]:
        L.append(f"## {NETWORK_TITLES.get(net, net)}\n")
        L.append("| engine | median | p10–p90 | min | n | failed | client CPU |")
        L.append("|---|---|---|---|---|---|---|")
        meds = {}
        for e in engines:
            s = subj.get((e["name"], net))
            key = f"{e['name']}/{net}"
            if s is None:
                continue
            if key in result["left_out"]:
                L.append(f"| {e['name']} | **not run:** {cell_text(result['left_out'][key])} "
                         "| | | | | |")
                continue
            st = stats(s["samples_ns"])
            if not st:
                err = s["errors"][0] if s["errors"] else "no samples"
                L.append(f"| {e['name']} | **failed:** {cell_text(err)} | | | | "
                         f"{s['failures']} | |")
                continue
            meds[e["name"]] = st["median"]
            L.append(f"| {e['name']} | **{ms(st['median'])}** | {ms(st['p10'])}–{ms(st['p90'])} "
                     f"| {ms(st['min'])} | {st['n']} | {s['failures']} "
                     f"| {ms(median(s['client_cpu_ns']))} |")
        L.append("")
        b = meds.get("berthd")
        parts = [f"berthd/{o} = **{ratio(b, meds.get(o))}**" for o in ("dockerd", "podman")
                 if o in meds]
        if b and parts:
            L.append("Ratios: " + ", ".join(parts) + ".")
            if meds.get("dockerd"):
                r = b / meds["dockerd"]
                L.append(f"Goal berthd ≤ 0.5× dockerd: {'met' if r <= 0.5 else 'not met'} "
                         f"({r:.2f}×).")
            L.append("")
        for e in engines:
            s = subj.get((e["name"], net))
            if s and s["failures"] and s["samples_ns"]:
                L.append(f"- {e['name']}: {s['failures']} failed run(s), e.g. "
                         f"`{cell_text(s['errors'][0])}`")
        L.append("")
    floor = [(e, subj.get((e["name"], "version"))) for e in engines]
    floor = [(e, s) for e, s in floor if s and s["samples_ns"]]
    if floor:
        L.append("## client floor: `docker -H … version` (CLI start + two API calls)\n")
        L.append("Interleaved with the runs above; what any `docker` command costs before it "
                 "does work, so the least a `docker run` can take.\n")
        L.append("| engine | median | p10–p90 |\n|---|---|---|")
        for e, s in floor:
            st = stats(s["samples_ns"])
            L.append(f"| {e['name']} | {ms(st['median'])} | {ms(st['p10'])}–{ms(st['p90'])} |")
        L.append("")
    L.append("## memory (VmRSS from /proc/PID/status)\n")
    L.append("| engine | daemon after startup | daemon after the timed loop "
             "| per-container process (a running `sleep`) |")
    L.append("|---|---|---|---|")
    for e in engines:
        def fmt(d):
            if not d:
                return "– (no daemon)"
            parts = [f"{k} {kb(v)}" for k, v in d.items()]
            tot = sum(v for v in d.values() if isinstance(v, int))
            return ", ".join(parts) + (f" (total {kb(tot)})" if len(d) > 1 else "")
        mon = e["rss"].get("monitor", {})
        if "rss_kb" in mon:
            mcell = f"{mon['process']} {kb(mon['rss_kb'])}"
        else:
            mcell = "**error:** " + cell_text(mon.get("error", "not measured"))
        L.append(f"| {e['name']} | {fmt(e['rss'].get('idle'))} | {fmt(e['rss'].get('after'))} "
                 f"| {mcell} |")
    L.append("")
    ready = [f"{e['name']} {e['ready_ms']:.0f} ms" for e in engines if e.get("ready_ms")]
    if ready:
        L.append("Daemon start until `/_ping` answers: " + ", ".join(ready) + ".\n")
    logs = [(e["name"], e["log"]) for e in engines if e.get("log")]
    if logs:
        L.append("Daemon logs over the whole run (setup, loop, RSS, shutdown): "
                 + "; ".join(f"{n} {g['error']} error and {g['warn']} warning line(s)"
                             for n, g in logs) + ".\n")
        for n, g in logs:
            for ex in g["examples"]:
                L.append("- %s: `%s`" % (n, cell_text(ex).replace("`", "'")))
        L.append("")
    L.append("## notes\n")
    for n in result["notes"]:
        L.append(f"- {n}")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


# --- main ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", required=True, help="directory for daemon.json and daemon.md")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--berthd", required=True)
    ap.add_argument("--oci", required=True, help="busybox OCI layout (for berthd)")
    ap.add_argument("--archive", required=True, help="the same image as a docker-archive")
    ap.add_argument("--engines", default="berthd,dockerd,podman")
    ap.add_argument("--networks", default="bridge,none")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--client-floor", type=int, default=1)
    ap.add_argument("--podman-runtime", default="runc")
    ap.add_argument("--shadow", action="append", default=[])
    ap.add_argument("--command", default="bash benches/e2e/daemon.sh")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()
    check_netns()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    sh(["ip", "link", "set", "lo", "up"], check=True)
    # No docker contexts or credentials from the host's ~/.docker.
    os.environ["DOCKER_CONFIG"] = os.path.join(args.tmp, "docker-cli")
    os.makedirs(os.environ["DOCKER_CONFIG"], exist_ok=True)
    with open(os.path.join(os.environ["DOCKER_CONFIG"], "config.json"), "w") as f:
        f.write("{}\n")  # podman reads it too (for registry credentials)
    docker = shutil.which("docker")
    names = [e for e in args.engines.split(",") if e]
    networks = [n for n in args.networks.split(",") if n]
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "kernel": platform.release(), "cpus": os.cpu_count(), "git": git_rev(args.repo),
              "command": args.command, "n": args.n, "warmup": args.warmup,
              "networks": networks, "left_out": {}, "notes": list(args.note),
              "load_before": loadavg(), "loop_seconds": 0}
    cg_before = cgroup_dirs()
    shadows = shadow(args.shadow, args.tmp)
    # The same image for dockerd and podman (skopeo's blob-info cache write lands in a shadow).
    sh(["skopeo", "copy", "-q", f"oci:{args.oci}:latest",
        f"docker-archive:{args.archive}:{IMAGE}:latest"], check=True)
    engines, subjects = [], []
    spawner = Spawner(args.tmp, "")
    try:
        for name in names:
            if name == "berthd":
                e = Berthd(args.tmp, args.berthd, docker)
            elif name == "dockerd":
                e = Dockerd(args.tmp, shutil.which("dockerd") or "/usr/sbin/dockerd", docker)
            elif name == "podman":
                # podman's own default is crun, which refuses this host's hybrid cgroups; runc
                # is what dockerd runs too.
                e = Podman(args.tmp, shutil.which("podman"), args.podman_runtime)
            else:
                sys.exit(f"unknown engine {name}")
            print(f"[dbench] setting up {name}", file=sys.stderr)
            try:
                e.setup(args.oci, args.archive)
            except Exception as ex:  # report it, measure the others
                result["notes"].append(f"**{name} could not be set up:** {cell_text(str(ex))}")
                e.stop()
                continue
            engines.append(e)
        for net in networks:
            for e in engines:
                subjects.append(Subject(e, net, e.run_argv(net)))
        if args.client_floor:
            for e in engines:
                if e.proc:
                    subjects.append(Subject(e, "version", [*e.cli, "version"]))
        measure(args, spawner, subjects, result)
        for e in engines:
            e.rss["after"] = e.daemon_rss()
            e.rss["monitor"] = e.monitor_rss()
            left = e.containers()
            if left:
                result["notes"].append(f"{e.name}: {len(left)} container(s) left after the "
                                       "timed runs (all `--rm`), removed in cleanup")
    finally:
        cleanup(engines, args.tmp, shadows, result["notes"])
        removed, left = cgroup_cleanup(cg_before)
        if left:
            result["notes"].append(f"cgroup dirs left under pre-existing parents: {len(left)} "
                                   f"(e.g. {left[0]})")
        result["cgroups_removed"] = removed
        result["load_after"] = loadavg()
        result["engines"] = [{"name": e.name, "kind": e.kind, "version": e.version,
                              "ready_ms": e.ready_ms, "rss": e.rss, "notes": e.notes,
                              "log": e.log_summary()}
                             for e in engines]
        for e in engines:
            result["notes"].extend(e.notes)
        result["subjects"] = [s.to_json() for s in subjects]
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "daemon.json"), "w") as f:
            json.dump(result, f, indent=1)
    write_report(result, os.path.join(args.out, "daemon.md"))
    with open(os.path.join(args.out, "daemon.md")) as f:
        sys.stdout.write(f.read())


if __name__ == "__main__":
    main()
