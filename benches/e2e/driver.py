#!/usr/bin/env python3
"""Measures container start latency for one cgroup mode and writes the raw samples as JSON.

start.sh runs this once per mode (on the host's cgroups as they are, and again inside a private
mount namespace with a cgroup2 mount on /sys/fs/cgroup); report.py turns the JSON into tables and
a plot. Only the standard library is used, so a fresh machine needs nothing but python3.

Why not hyperfine: it runs one command's samples back to back, so a burst of background load
lands on one runtime. Here every iteration runs every runtime once, in a rotating order, and
each invocation is timed with a monotonic clock (perf_counter_ns) around posix_spawn + wait4,
which also gives its CPU time. Peak RSS comes from a few separate runs through the small rss
helper (rss.c explains why wait4 from Python cannot give it).
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36

# A foreground `run` removes its container when the init exits (runc, crun and berth alike), so
# the `delete` that follows is expected to report that the container is gone.
GONE = re.compile(r"does not exist|not exist|no such file|not found", re.I)
# crun 1.8 only accepts configs whose ociVersion contains "1.0".
CRUN_OLD_VERSION = re.compile(r"unknown version specified")
PHASE_LINE = re.compile(r"(create|start) phase (.+?): (\d+) us")


def become_subreaper():
    """Orphans (the container init once `create` exits) are reparented to us, as to an engine's
    shim, so we can waitpid() on the init instead of polling `state`."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(err))


def reap_strays():
    """Collects exited orphans (intermediate runtime processes) so zombies do not pile up.
    Only called when no container init we still want to wait for is alive."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Invocation:
    """One finished process: exit code, wall time, peak RSS, CPU time, and its stderr."""

    def __init__(self, rc, ns, maxrss_kb, cpu_ns, err_path):
        self.rc, self.ns, self.maxrss_kb, self.cpu_ns = rc, ns, maxrss_kb, cpu_ns
        self._err_path = err_path

    def stderr(self):
        with open(self._err_path, errors="replace") as f:
            return f.read()

    def error_text(self):
        """The last meaningful stderr line, shortened for a table cell."""
        lines = [l.strip() for l in self.stderr().splitlines() if l.strip()]
        lines = [l for l in lines if "level=warning" not in l] or lines
        text = lines[-1] if lines else f"exit code {self.rc}, no stderr"
        m = re.search(r'msg="(.*)"', text)
        return (m.group(1) if m else text)[:160]


class Spawner:
    """posix_spawn + wait4: cheaper and steadier than subprocess, and gives rusage.
    With rss=True the command runs under the rss helper, whose report replaces ru_maxrss."""

    def __init__(self, tmp, rss_helper):
        self.err_path = os.path.join(tmp, "stderr.txt")
        self.rss_path = os.path.join(tmp, "maxrss.txt")
        self.rss_helper = rss_helper

    def run(self, argv, rss=False):
        if rss:
            argv = [self.rss_helper, self.rss_path, *argv]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, self.err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        _, status, ru = os.wait4(pid, 0)
        t1 = time.perf_counter_ns()
        cpu_ns = int((ru.ru_utime + ru.ru_stime) * 1e9)
        maxrss = None
        if rss:
            try:
                with open(self.rss_path) as f:
                    maxrss = int(f.read())
                os.unlink(self.rss_path)
            except (OSError, ValueError):
                pass
        return Invocation(os.waitstatus_to_exitcode(status), t1 - t0, maxrss, cpu_ns,
                          self.err_path)


def wait_exit(pid):
    """Waits for the container init to exit. It is our child once `create` has exited (we are
    a subreaper); if some runtime keeps it parented elsewhere, poll /proc instead."""
    try:
        os.waitpid(pid, 0)
        return "waitpid"
    except ChildProcessError:
        pass
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return "poll"
        except (FileNotFoundError, ProcessLookupError):
            return "poll"
        time.sleep(0.0001)


class Subject:
    """Something we time: a runtime, or the no-runtime floor. Holds its samples and errors."""

    def __init__(self, name):
        self.name = name
        self.samples = {}    # scenario -> [ns]
        self.rss_kb = {}     # invocation kind -> [KiB]
        self.cpu_ns = {}     # invocation kind -> [ns]
        self.errors = {}     # scenario -> error text (scenario stops being measured)
        self.notes = []
        self.counts = {}     # misc counters (how delete-after-run ended, how exits were waited)
        self.version = ""

    def add(self, scenario, ns):
        self.samples.setdefault(scenario, []).append(ns)

    def add_usage(self, kind, inv):
        if inv.maxrss_kb is not None:
            self.rss_kb.setdefault(kind, []).append(inv.maxrss_kb)
        self.cpu_ns.setdefault(kind, []).append(inv.cpu_ns)

    def count(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1

    def fail(self, scenario, text):
        self.errors.setdefault(scenario, text)

    def scenario_version(self, i):
        """(e) exec + exit of the binary alone (`--version`; the floor runs /bin/true): what
        every invocation costs before doing any work, and the harness's own overhead."""
        if "version" in self.errors:
            return
        inv = self.spawner.run(self.version_argv)
        if inv.rc != 0:
            self.fail("version", inv.error_text())
            return
        self.add("version", inv.ns)

    def to_json(self):
        return {k: getattr(self, k) for k in
                ("name", "version", "samples", "rss_kb", "cpu_ns", "errors", "notes", "counts")}


class Runtime(Subject):
    """An OCI runtime driven through its runc-style command line."""

    def __init__(self, name, exe, global_args, state_root, bundle, spawner, id_prefix, tmp):
        super().__init__(name)
        self.exe, self.global_args = exe, global_args
        self.version_argv = [exe, "--version"]
        self.state_root, self.bundle = state_root, bundle
        self.spawner, self.id_prefix, self.tmp = spawner, id_prefix, tmp
        self.live = set()  # ids that may still exist, for cleanup
        self.pid_file = os.path.join(tmp, f"{name}.pid")
        os.makedirs(state_root, exist_ok=True)

    def cmd(self, *args, debug=False):
        return [self.exe, *self.global_args, *(["--debug"] if debug else []),
                "--root", self.state_root, *args]

    def cid(self, tag):
        return f"{self.id_prefix}-{self.name}-{tag}"

    # -- single operations ------------------------------------------------------------------

    def run(self, cid, rss=False):
        self.live.add(cid)
        return self.spawner.run(self.cmd("run", "--bundle", self.bundle, cid), rss=rss)

    def delete(self, cid, force=False):
        inv = self.spawner.run(self.cmd("delete", *(["--force"] if force else []), cid))
        if inv.rc == 0 or GONE.search(inv.stderr()):
            self.live.discard(cid)
        return inv

    def force_delete(self, cid):
        self.delete(cid, force=True)
        reap_strays()

    def cleanup(self):
        """Force-deletes whatever we may have left (also ids found in the state dir)."""
        ids = set(self.live)
        if os.path.isdir(self.state_root):
            ids |= {d for d in os.listdir(self.state_root) if d.startswith(self.id_prefix)}
        for cid in ids:
            self.force_delete(cid)

    # -- probing ----------------------------------------------------------------------------

    def probe(self, adapted_bundle):
        """Runs one container; if crun rejects berth's ociVersion, switches to the adapted bundle
        (same rootfs, ociVersion 1.0.2-dev) and says so. Returns False if it cannot run at all."""
        self.version = version_of(self.exe)
        inv = self.run(self.cid("probe"))
        if inv.rc != 0 and CRUN_OLD_VERSION.search(inv.stderr()) and adapted_bundle:
            self.force_delete(self.cid("probe"))
            self.bundle = adapted_bundle
            self.notes.append("config adapted: ociVersion 1.3.0 -> 1.0.2-dev (this version rejects "
                              "other versions: 'unknown version specified'); same rootfs")
            inv = self.run(self.cid("probe2"))
        if inv.rc != 0:
            err = inv.error_text()
            self.force_delete(self.cid("probe"))
            self.force_delete(self.cid("probe2"))
            for scenario in ("run", "run+delete", "split", "seq"):
                self.fail(scenario, err)
            return False
        self.delete(self.cid("probe"))
        self.delete(self.cid("probe2"))
        reap_strays()
        self.note_cgroups()
        return True

    def note_cgroups(self):
        """Says which cgroups a `create` leaves for the container (found by its id under
        /sys/fs/cgroup): the runtimes do not get the same cgroup work, and the table should say."""
        cid = self.cid("cg")
        res = self.spawner.run(self.cmd("create", "--bundle", self.bundle, cid))
        self.live.add(cid)
        if res.rc != 0:
            self.notes.append("cgroups: could not check, create failed: " + res.error_text())
        else:
            dirs = cgroup_dirs_named(cid)
            where = sorted({d.split("/")[0] if "/" in d else "(cgroup2 root)" for d in dirs})
            self.notes.append(f"cgroups made by `create`: {len(dirs)} dir(s)"
                              + (f" in {', '.join(where)}" if dirs else " (none)"))
        self.force_delete(cid)

    # -- scenarios --------------------------------------------------------------------------

    def scenario_run(self, i):
        """(a) `run` then `delete`: `run` alone, and the pair."""
        if "run" in self.errors:
            return
        cid = self.cid(f"r{i}")
        inv = self.run(cid)
        if inv.rc != 0:
            self.fail("run", inv.error_text())
            self.force_delete(cid)
            return
        d = self.delete(cid)
        if d.rc == 0:
            self.count("delete after run: deleted")
        elif GONE.search(d.stderr()):
            self.count("delete after run: already gone")
        else:
            self.fail("run+delete", d.error_text())
            self.force_delete(cid)
            return
        self.add("run", inv.ns)
        self.add("delete_after_run", d.ns)
        self.add("run+delete", inv.ns + d.ns)
        self.add_usage("run", inv)
        self.add_usage("delete", d)

    def scenario_idle(self, i):
        """(f) `run` after the machine idled: one-off kernel costs that back-to-back runs
        amortise (an RCU grace period on the first cgroup.procs write, for one) show here."""
        if "run" in self.errors or "run_idle" in self.errors:
            return
        cid = self.cid(f"i{i}")
        inv = self.run(cid)
        if inv.rc != 0:
            self.fail("run_idle", inv.error_text())
            self.force_delete(cid)
            return
        self.delete(cid)
        self.add("run_idle", inv.ns)

    def split_once(self, cid, debug=False, rss=False):
        """create / start / wait for the init to exit / delete. Returns the invocations and
        timings, or an error text."""
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass
        self.live.add(cid)
        t0 = time.perf_counter_ns()
        c = self.spawner.run(self.cmd("create", "--bundle", self.bundle, "--pid-file",
                                      self.pid_file, cid, debug=debug), rss=rss)
        c_err = c.stderr() if debug else ""
        if c.rc != 0:
            return None, "create: " + c.error_text()
        try:
            with open(self.pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            return None, f"create: no usable --pid-file ({e})"
        s = self.spawner.run(self.cmd("start", cid, debug=debug))
        s_err = s.stderr() if debug else ""
        if s.rc != 0:
            return None, "start: " + s.error_text()
        tw = time.perf_counter_ns()
        how = wait_exit(pid)
        tw_end = time.perf_counter_ns()
        d = self.delete(cid)
        t1 = time.perf_counter_ns()
        if d.rc != 0:
            return None, "delete: " + d.error_text()
        reap_strays()
        return {"create": c, "start": s, "delete": d, "wait_ns": tw_end - tw, "total_ns": t1 - t0,
                "how": how, "create_stderr": c_err, "start_stderr": s_err}, None

    def scenario_split(self, i):
        """(b) the split lifecycle an engine uses."""
        if "split" in self.errors:
            return
        cid = self.cid(f"s{i}")
        res, err = self.split_once(cid)
        if err:
            self.fail("split", err)
            self.force_delete(cid)
            return
        self.add("create", res["create"].ns)
        self.add("start", res["start"].ns)
        self.add("wait", res["wait_ns"])
        self.add("delete", res["delete"].ns)
        self.add("split_total", res["total_ns"])
        self.add_usage("create", res["create"])
        self.count("init exit via " + res["how"])

    def seq_round(self, r, length):
        """(c) `length` containers in sequence (run + delete each), one total."""
        if "seq" in self.errors:
            return
        t0 = time.perf_counter_ns()
        for j in range(length):
            cid = self.cid(f"q{r}-{j}")
            inv = self.run(cid)
            if inv.rc != 0:
                self.fail("seq", inv.error_text())
                self.force_delete(cid)
                return
            self.delete(cid)
        self.add("seq", time.perf_counter_ns() - t0)
        reap_strays()

    def rss_pass(self, runs):
        """Peak RSS of `run` and of `create`, through the rss helper (untimed)."""
        for i in range(runs):
            if "run" not in self.errors:
                cid = self.cid(f"m{i}")
                inv = self.run(cid, rss=True)
                self.delete(cid)
                if inv.rc == 0 and inv.maxrss_kb is not None:
                    self.rss_kb.setdefault("run", []).append(inv.maxrss_kb)
            if "split" not in self.errors:
                cid = self.cid(f"n{i}")
                res, err = self.split_once(cid, rss=True)
                if err:
                    self.force_delete(cid)
                elif res["create"].maxrss_kb is not None:
                    self.rss_kb.setdefault("create", []).append(res["create"].maxrss_kb)
        reap_strays()

    def strace_run(self, strace, out):
        """One `run` under strace -f -c (the runtime and every process it forks, including the
        container's /bin/true)."""
        cid = self.cid("strace")
        self.live.add(cid)
        inv = self.spawner.run([strace, "-f", "-c", "-o", out, *self.cmd("run", "--bundle",
                                                                       self.bundle, cid)])
        self.delete(cid)
        return inv


class Floor(Subject):
    """(d) What any runtime must at least pay: new pid/mount/uts/ipc/net namespaces, a chroot
    and an exec of /bin/true, with no runtime in between."""

    def __init__(self, rootfs, spawner):
        super().__init__("floor")
        self.argv = [shutil.which("unshare"), "--pid", "--fork", "--mount", "--uts", "--ipc",
                     "--net", shutil.which("chroot"), rootfs, "/bin/true"]
        self.spawner = spawner
        self.version = "unshare + chroot (util-linux/coreutils)"
        self.version_argv = [shutil.which("true")]

    def probe(self, _adapted):
        inv = self.spawner.run(self.argv)
        if inv.rc != 0:
            for s in ("run", "seq"):
                self.fail(s, inv.error_text())
            return False
        return True

    def scenario_run(self, i):
        if "run" in self.errors:
            return
        inv = self.spawner.run(self.argv)
        if inv.rc != 0:
            self.fail("run", inv.error_text())
            return
        self.add("run", inv.ns)
        self.add_usage("run", inv)

    def scenario_split(self, i):
        pass

    def scenario_idle(self, i):
        if "run" in self.errors:
            return
        inv = self.spawner.run(self.argv)
        if inv.rc == 0:
            self.add("run_idle", inv.ns)

    def seq_round(self, r, length):
        if "seq" in self.errors:
            return
        t0 = time.perf_counter_ns()
        for _ in range(length):
            inv = self.spawner.run(self.argv)
            if inv.rc != 0:
                self.fail("seq", inv.error_text())
                return
        self.add("seq", time.perf_counter_ns() - t0)

    def rss_pass(self, runs):
        for _ in range(runs):
            inv = self.spawner.run(self.argv, rss=True)
            if inv.rc == 0 and inv.maxrss_kb is not None:
                self.rss_kb.setdefault("run", []).append(inv.maxrss_kb)

    def strace_run(self, strace, out):
        return self.spawner.run([strace, "-f", "-c", "-o", out, *self.argv])

    def cleanup(self):
        pass


def cgroup_dirs_named(cid, root="/sys/fs/cgroup", max_depth=6):
    """Directories under /sys/fs/cgroup whose name contains cid, relative to it."""
    found = []
    base_depth = root.rstrip("/").count("/")
    for dirpath, dirnames, _ in os.walk(root):
        if dirpath.count("/") - base_depth >= max_depth:
            dirnames[:] = []
        for d in dirnames:
            if cid in d:
                found.append(os.path.relpath(os.path.join(dirpath, d), root))
    return found


def version_of(exe):
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as e:  # a version string is nice to have, never worth failing over
        return f"unknown ({e})"


def rotated(items, k):
    """Iteration k starts at a different subject, so each one runs in every position equally
    often and slow drift (thermal, page cache, background load) spreads over all of them."""
    k %= len(items)
    return items[k:] + items[:k]


def parse_strace(path):
    """strace -c table -> (total calls, [(syscall, calls)] sorted by calls)."""
    calls = []
    with open(path) as f:
        for line in f:
            tok = line.split()
            if len(tok) < 5 or not tok[0][0].isdigit() or tok[-1] == "total":
                continue
            calls.append((tok[-1], int(tok[3])))
    calls.sort(key=lambda c: -c[1])
    return sum(c for _, c in calls), calls


def measure(args, subjects, berth):
    """The main loops. Scenario order within a subject also alternates between iterations."""
    for i in range(args.n):
        for s in rotated(subjects, i):
            s.scenario_version(i)
            if i % 2:
                s.scenario_split(i)
                s.scenario_run(i)
            else:
                s.scenario_run(i)
                s.scenario_split(i)
        reap_strays()
        progress(f"[{args.mode}] iteration {i + 1}/{args.n}", every=(i + 1) % 25 == 0)
    for i in range(args.idle_runs):
        for s in rotated(subjects, i):
            time.sleep(args.idle_ms / 1000)
            s.scenario_idle(i)
        reap_strays()
    progress(f"[{args.mode}] idle runs done", every=True)
    for r in range(args.seq_rounds):
        for s in rotated(subjects, r):
            s.seq_round(r, args.seq_len)
        progress(f"[{args.mode}] sequence round {r + 1}/{args.seq_rounds}", every=True)
    progress("")
    return collect_phases(args, berth) if berth and "split" not in berth.errors else {}


def collect_phases(args, berth):
    """berth --debug logs one line per phase; run the split lifecycle with --debug (separately,
    so logging never costs the timed runs anything) and keep every phase's samples."""
    phases, walls = {}, {"create": [], "start": []}
    for i in range(args.phase_runs):
        cid = berth.cid(f"p{i}")
        res, err = berth.split_once(cid, debug=True)
        if err:
            berth.force_delete(cid)
            return {"error": err}
        for text in (res["create_stderr"], res["start_stderr"]):
            for m in PHASE_LINE.finditer(text):
                phases.setdefault(f"{m.group(1)}: {m.group(2)}", []).append(int(m.group(3)))
        walls["create"].append(res["create"].ns // 1000)
        walls["start"].append(res["start"].ns // 1000)
    return {"phases_us": phases, "wall_us": walls}


def strace_all(args, subjects):
    strace = shutil.which("strace")
    if not strace:
        return {"skipped": "strace not installed"}
    out = {}
    for s in subjects:
        path = os.path.join(args.tmp, f"strace-{args.mode}-{s.name}.txt")
        if s.errors.get("run"):
            out[s.name] = {"error": s.errors["run"]}
            continue
        inv = s.strace_run(strace, path)
        if inv.rc != 0:
            out[s.name] = {"error": inv.error_text()}
            continue
        total, calls = parse_strace(path)
        out[s.name] = {"total": total, "top": calls[:5], "distinct": len(calls)}
    reap_strays()
    return out


def progress(msg, every=False):
    """A status line on a terminal; in a log, only every 25th iteration and each round."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + msg)
    elif msg and every:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def build_subjects(args, spawner):
    subjects, berth = [], None
    for name in args.runtimes:
        exe = args.berth if name == "berth" else shutil.which(name)
        if not exe:
            continue
        gl = []
        if name == "crun" and args.mode == "cgroup2ns":
            # crun has no hybrid support; in the private cgroup2 mount its cgroup manager must
            # be off, like berth (no cgroups yet) and unlike runc (creates /sys/fs/cgroup/<id>).
            gl = ["--cgroup-manager=disabled"]
        rt = Runtime(name, exe, gl, os.path.join(args.tmp, "state", args.mode, name), args.bundle,
                     spawner, args.id_prefix, args.tmp)
        if gl:
            rt.notes.append("run as `crun --cgroup-manager=disabled`")
        subjects.append(rt)
        if name == "berth":
            berth = rt
    subjects.append(Floor(os.path.join(args.bundle, "rootfs"), spawner))
    return subjects, berth


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--adapted-bundle", default="")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--berth", required=True)
    ap.add_argument("--runtimes", default="berth,runc,crun,youki")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seq-rounds", type=int, default=5)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--phase-runs", type=int, default=50)
    ap.add_argument("--idle-runs", type=int, default=50)
    ap.add_argument("--idle-ms", type=int, default=50)
    ap.add_argument("--strace", type=int, default=1)
    ap.add_argument("--rss-helper", default="", help="compiled rss.c; empty skips peak RSS")
    ap.add_argument("--rss-runs", type=int, default=5)
    ap.add_argument("--id-prefix", required=True)
    args = ap.parse_args()
    args.runtimes = [r for r in args.runtimes.split(",") if r]

    # SIGTERM (e.g. from start.sh's trap) must still run the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    become_subreaper()
    spawner = Spawner(args.tmp, args.rss_helper)
    subjects, berth = build_subjects(args, spawner)
    result = {"mode": args.mode, "load_before": loadavg(), "n": args.n,
              "idle_runs": args.idle_runs, "idle_ms": args.idle_ms,
              "seq_rounds": args.seq_rounds, "seq_len": args.seq_len,
              "cgroup_mount": cgroup_fs_type()}
    try:
        # A subject whose probe failed has its scenarios marked failed (they skip themselves)
        # but still gets (e), which needs no container.
        for s in subjects:
            s.probe(args.adapted_bundle)
        result["phases"] = measure(args, subjects, berth)
        if args.rss_helper:
            for s in subjects:
                s.rss_pass(args.rss_runs)
        result["strace"] = strace_all(args, subjects) if args.strace else {}
    finally:
        for s in subjects:
            s.cleanup()
        reap_strays()
    result["load_after"] = loadavg()
    result["subjects"] = [s.to_json() for s in subjects]
    with open(args.out, "w") as f:
        json.dump(result, f)


def cgroup_fs_type():
    """What /sys/fs/cgroup is in this mount namespace (tmpfs = hybrid v1 layout)."""
    best = ""
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if mnt == "/sys/fs/cgroup":
                best = fstype
    return best


if __name__ == "__main__":
    main()
