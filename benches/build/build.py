#!/usr/bin/env python3
"""`berth build` vs `podman build`, interleaved: a cold build and an unchanged rebuild.

build.sh runs this as root in a private mount namespace, with a busybox OCI layout in
TMP/busybox-oci. Every iteration runs the four commands (berth cold, podman cold, berth
rebuild, podman rebuild) in a rotating order, so background load spreads over both builders;
each is timed with a monotonic clock around posix_spawn + wait4 (../e2e/driver.py's Spawner),
stdout to /dev/null. The cache is checked untimed before and after the loop: the rebuilds must
run no step. Raw samples go to build.json, the report to build.md. Only the standard library.

Goals (issue 17): cold build <= 0.5x podman's; an unchanged rebuild under 0.3 s.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from driver import Spawner, loadavg  # noqa: E402
from report import git_rev, median, ms, p90, ratio  # noqa: E402

# A FROM, three RUN steps (files, a loop, a listing and a whiteout), a COPY of a small tree,
# ENV, WORKDIR and CMD.
DOCKERFILE = """FROM busybox
ENV APP=/srv/app MODE=bench
RUN mkdir -p /srv/data && echo one > /srv/data/one
RUN for i in 1 2 3 4 5 6 7 8 9 10; do echo "$i $MODE" > /srv/data/f$i; done
COPY tree/ /srv/app/
WORKDIR /srv/app
RUN ls -R /srv > /srv/listing && rm /bin/vi
CMD ["sh", "-c", "cat /srv/listing"]
"""

SCENARIOS = ("cold", "rebuild")
BUILDERS = ("berth", "podman")


def write_context(ctx):
    """The Dockerfile and a tree of 4 directories x 10 files of about 1 KiB."""
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    for d in range(4):
        sub = os.path.join(ctx, "tree", f"d{d}")
        os.makedirs(sub)
        for i in range(10):
            with open(os.path.join(sub, f"f{i}.txt"), "w") as f:
                f.write(f"{d}/{i}\n" * 256)


class Builders:
    """Both builders' command lines, with every path in TMP."""

    def __init__(self, berth, tmp):
        self.tmp = tmp
        self.berth = [berth, "--root", f"{tmp}/berth-state", "--store", f"{tmp}/berth-store"]
        pd = f"{tmp}/podman"
        for d in ("storage", "run", "tmp", "vartmp", "net"):
            os.makedirs(f"{pd}/{d}", exist_ok=True)
        with open(f"{pd}/containers.conf", "w") as f:
            f.write(f"""[containers]
netns = "none"
cgroupns = "host"
default_ulimits = ["nofile=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{pd}/events.log"
static_dir = "{pd}/static"
tmp_dir = "{pd}/tmp"
volume_path = "{pd}/volumes"
lock_type = "file"
""")
        with open(f"{pd}/storage.conf", "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{pd}/storage"\n'
                    f'runroot = "{pd}/run"\n')
        with open(f"{pd}/registries.conf", "w") as f:
            f.write("unqualified-search-registries = []\n")
        # Inherited by every spawned command (berth ignores them).
        os.environ.update({
            "CONTAINERS_CONF": f"{pd}/containers.conf",
            "CONTAINERS_STORAGE_CONF": f"{pd}/storage.conf",
            "CONTAINERS_REGISTRIES_CONF": f"{pd}/registries.conf",
            "TMPDIR": f"{pd}/vartmp",
        })
        self.podman = [shutil.which("podman"), f"--root={pd}/storage", f"--runroot={pd}/run",
                       f"--tmpdir={pd}/tmp", f"--network-config-dir={pd}/net"]

    def build(self, builder, ctx, cold):
        if builder == "berth":
            argv = self.berth + ["build", "--network", "none", "-t", "bench:1"]
        else:
            # podman's default OCI format: with `--format docker`, podman 4.3.1 never finds
            # its own cache (every rebuild runs every step).
            argv = self.podman + ["build", "--pull=never", "--network=none",
                                  "-t", "localhost/bench:1"]
        return argv + (["--no-cache"] if cold else []) + [ctx]

    def setup(self):
        layout = f"{self.tmp}/busybox-oci"
        subprocess.run(self.berth + ["image", "import", layout], check=True,
                       stdout=subprocess.DEVNULL)
        archive = f"{self.tmp}/busybox-oci.tar"
        subprocess.run(["tar", "-C", layout, "-cf", archive, "."], check=True)
        subprocess.run(self.podman + ["load", "-q", "-i", archive], check=True,
                       stdout=subprocess.DEVNULL)

    def teardown(self):
        subprocess.run(self.podman + ["image", "unmount", "--all", "--force"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(self.podman + ["rmi", "--all", "--force"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cache_check(b, ctx):
    """Untimed: each builder's unchanged rebuild runs no step (berth prints `Running in` for
    each step it runs; podman prints `Using cache` for each step it does not)."""
    berth = subprocess.run(b.build("berth", ctx, False), capture_output=True, text=True)
    podman = subprocess.run(b.build("podman", ctx, False), capture_output=True, text=True)
    return {
        "berth_ok": berth.returncode == 0 and "Running in" not in berth.stdout
        and "Using cache" in berth.stdout,
        "berth_cached_steps": berth.stdout.count("Using cache"),
        "podman_ok": podman.returncode == 0 and podman.stdout.count("Using cache") >= 5,
        "podman_cached_steps": podman.stdout.count("Using cache"),
    }


def version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        return out.splitlines()[0] if out else "?"
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--n", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repo", required=True)
    args = ap.parse_args()

    b = Builders(os.path.abspath(args.berth), args.tmp)
    ctx = os.path.join(args.tmp, "ctx")
    write_context(ctx)
    spawner = Spawner(args.tmp, None)
    samples = {s: {k: [] for k in BUILDERS} for s in SCENARIOS}
    failures = []
    load_before = loadavg()
    try:
        b.setup()
        runs = [(s, k) for s in SCENARIOS for k in BUILDERS]
        for i in range(args.warmup):
            for s, k in runs:
                spawner.run(b.build(k, ctx, s == "cold"))
        checks = {"before": cache_check(b, ctx)}
        t0 = time.monotonic()
        for i in range(args.n):
            # Rotate the order: every command goes first in some iterations.
            order = runs[i % len(runs):] + runs[:i % len(runs)]
            for s, k in order:
                inv = spawner.run(b.build(k, ctx, s == "cold"))
                if inv.rc != 0:
                    failures.append(f"{k} {s} #{i}: exit {inv.rc}: {inv.error_text()}")
                else:
                    samples[s][k].append(inv.ns)
            print(f"[bbench] {i + 1}/{args.n}", file=sys.stderr)
        loop_s = time.monotonic() - t0
        checks["after"] = cache_check(b, ctx)
    finally:
        b.teardown()

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "berth_rev": git_rev(args.repo),
        "berth": version([args.berth, "--version"]),
        "podman": version(["podman", "--version"]),
        "runc": version(["runc", "--version"]),
        "n": args.n,
        "warmup": args.warmup,
        "load_before": load_before,
        "load_after": loadavg(),
        "loop_seconds": round(loop_s, 1),
        "cache_checks": checks,
        "failures": failures,
        "dockerfile": DOCKERFILE,
    }
    with open(os.path.join(args.out, "build.json"), "w") as f:
        json.dump({"meta": meta, "samples_ns": samples}, f, indent=1)
    report = render(meta, samples)
    with open(os.path.join(args.out, "build.md"), "w") as f:
        f.write(report)
    print(report)


def render(meta, samples):
    med = {s: {k: median(samples[s][k]) for k in BUILDERS} for s in SCENARIOS}
    lines = [
        "# `berth build` vs `podman build`",
        "",
        f"`bash benches/build/build.sh` — {meta['date']}; kernel {meta['kernel']}, "
        f"{meta['cpus']} CPUs; berth {meta['berth_rev']}; {meta['podman']} (runtime "
        f"{meta['runc']}, overlay storage).",
        "",
        f"{meta['n']} iterations, each running the four commands once in a rotating order "
        f"({meta['warmup']} untimed round first). Wall time of the whole command, "
        "perf_counter_ns around posix_spawn + wait4. RUN steps with `--network none`; podman "
        "with `--pull=never` and its default OCI format (with `--format docker` podman 4.3.1 "
        f"never hits its cache). Load average {meta['load_before']} before, "
        f"{meta['load_after']} after; the timed loop took {meta['loop_seconds']} s.",
        "",
        "| build | berth median | berth p90 | podman median | podman p90 | berth/podman |",
        "|---|---|---|---|---|---|",
    ]
    titles = {"cold": "cold (`--no-cache`)", "rebuild": "unchanged rebuild (all cached)"}
    for s in SCENARIOS:
        bs, ps = samples[s]["berth"], samples[s]["podman"]
        lines.append(f"| {titles[s]} | **{ms(median(bs))}** | {ms(p90(bs))} | "
                     f"{ms(median(ps))} | {ms(p90(ps))} | "
                     f"**{ratio(med[s]['berth'], med[s]['podman'])}** |")
    lines.append("")
    lines.append("Times in ms.")
    cold = med["cold"]
    if cold["berth"] and cold["podman"]:
        r = cold["berth"] / cold["podman"]
        lines.append(f"Goal cold build ≤ 0.5× podman: {'met' if r <= 0.5 else 'NOT met'} "
                     f"({r:.2f}×).")
    reb = med["rebuild"]["berth"]
    if reb:
        lines.append(f"Goal unchanged rebuild < 0.3 s: {'met' if reb < 3e8 else 'NOT met'} "
                     f"({reb / 1e9:.3f} s).")
    c = meta["cache_checks"]
    lines += ["", "Cache check (untimed, before and after the loop): "
              + "; ".join(f"{when}: berth {'ok' if v['berth_ok'] else 'FAILED'} "
                          f"({v['berth_cached_steps']} steps from the cache), podman "
                          f"{'ok' if v['podman_ok'] else 'FAILED'} "
                          f"({v['podman_cached_steps']})" for when, v in c.items()) + "."]
    if meta["failures"]:
        lines += ["", "Failures:", ""] + [f"- {x}" for x in meta["failures"]]
    lines += ["", "The Dockerfile (plus a `tree/` of 4 directories × 10 files of about 1 KiB):",
              "", "```dockerfile", meta["dockerfile"].rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
