#!/usr/bin/env python3
"""Turns the driver's JSON (one file per cgroup mode) into start.md and start.png.

Statistics: medians and p90 (nearest rank) of the per-iteration samples; ratios are ratios of
medians. Nothing here judges the numbers: a runtime that failed shows its error text instead.
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import time

MODE_TITLES = {
    "host": "host cgroups as they are (hybrid: v1 controllers + empty cgroup2)",
    "cgroup2ns": "private mount namespace with cgroup2 on /sys/fs/cgroup (like-for-like)",
}
MODE_SHORT = {"host": "host (hybrid v1+v2)", "cgroup2ns": "private cgroup2 mount"}

# (row label, sample key, which error key blocks it)
ROWS = [
    ("(a) run", "run", "run"),
    ("(a) run + delete", "run+delete", "run+delete"),
    ("(f) run after {idle_ms} ms idle", "run_idle", "run_idle"),
    ("(b) create", "create", "split"),
    ("(b) start", "start", "split"),
    ("(b) wait for init exit", "wait", "split"),
    ("(b) delete", "delete", "split"),
    ("(b) create→start→exit→delete", "split_total", "split"),
    ("(c) {seq}× (run + delete), total", "seq", "seq"),
    ("(d) floor: unshare + chroot + exec /bin/true", "floor", None),
    ("(e) exec + exit only: `--version` (floor: /bin/true)", "version", "version"),
]
RATIO_VS_FLOOR = {"run": "run", "run+delete": "run", "split_total": "run", "seq": "seq",
                  "run_idle": "run_idle"}
COLORS = {"berth": "#d62728", "runc": "#1f77b4", "crun": "#2ca02c", "youki": "#9467bd",
          "floor": "#7f7f7f"}


def median(xs):
    return statistics.median(xs) if xs else None


def p90(xs):
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def ms(ns):
    if ns is None:
        return "–"
    v = ns / 1e6
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


def cell_text(text):
    return text.replace("|", "\\|").replace("\n", " ")


class Mode:
    """One driver JSON, with lookups by subject name."""

    def __init__(self, path):
        with open(path) as f:
            self.d = json.load(f)
        self.name = self.d["mode"]
        self.subjects = {s["name"]: s for s in self.d["subjects"]}
        self.runtimes = [n for n in self.subjects if n != "floor"]

    def samples(self, who, key):
        s = self.subjects.get(who)
        return s["samples"].get(key, []) if s else []

    def med(self, who, key):
        return median(self.samples(who, key))


def timing_table(m):
    """Medians (p90) in ms per scenario and runtime, plus the ratios."""
    seq = m.d["seq_len"]
    cols = m.runtimes + ["floor"]
    out = ["| scenario | " + " | ".join(cols) + " | berth/crun | berth/runc | berth/floor |",
           "|---" * (len(cols) + 4) + "|"]
    seen_err = set()
    for label, key, err_key in ROWS:
        if key == "floor":
            out.append(floor_row(m, label))
            continue
        cells = []
        for who in cols:
            s = m.subjects[who]
            if who == "floor" and key not in ("run", "seq", "version", "run_idle"):
                cells.append("")
                continue
            err = s["errors"].get(err_key) or (s["errors"].get("run")
                                                if err_key not in ("seq", "version") else None)
            if key == "run_idle" and not m.d.get("idle_runs"):
                cells.append("")
                continue
            xs = s["samples"].get(key, [])
            if err and not xs:
                cells.append("same error" if (who, err) in seen_err
                             else "**error:** " + cell_text(err))
                seen_err.add((who, err))
            else:
                cells.append(f"{ms(median(xs))} ({ms(p90(xs))})" if xs else "–")
        b = m.med("berth", key)
        fl = m.med("floor", RATIO_VS_FLOOR[key]) if key in RATIO_VS_FLOOR else None
        out.append(f"| {label.format(seq=seq, idle_ms=m.d.get('idle_ms', 0))} | "
                   + " | ".join(cells) +
                   f" | {ratio(b, m.med('crun', key))} | {ratio(b, m.med('runc', key))} | "
                   f"{ratio(b, fl)} |")
    return out


def floor_row(m, label):
    fl = m.subjects["floor"]
    xs = fl["samples"].get("run", [])
    cell = (f"{ms(median(xs))} ({ms(p90(xs))})" if xs
            else f"**error:** {cell_text(fl['errors'].get('run', '?'))}")
    return f"| {label} | " + " | ".join([""] * len(m.runtimes)) + f" | {cell} | | | |"


def resources_table(m):
    out = ["| runtime | peak RSS `run` (KiB, median / max) | peak RSS `create` (KiB, median) | "
           "CPU user+sys `run` (ms, median) | CPU `create` (ms) | counts |",
           "|---|---|---|---|---|---|"]
    for who in m.runtimes + ["floor"]:
        s = m.subjects[who]
        run_rss, cr_rss = s["rss_kb"].get("run", []), s["rss_kb"].get("create", [])
        run_cpu, cr_cpu = s["cpu_ns"].get("run", []), s["cpu_ns"].get("create", [])
        counts = [f"{k}: {v}" for k, v in sorted(s["counts"].items())]
        out.append(f"| {who} | " + (f"{median(run_rss):.0f} / {max(run_rss)}" if run_rss else "–")
                   + f" | {f'{median(cr_rss):.0f}' if cr_rss else '–'}"
                   + f" | {ms(median(run_cpu))} | {ms(median(cr_cpu))} | "
                   + cell_text("; ".join(counts)) + " |")
    return out


def strace_table(m):
    st = m.d.get("strace", {})
    if "skipped" in st:
        return [f"strace skipped: {st['skipped']}"]
    out = ["| runtime | syscalls (total) | distinct | top 5 (calls) |", "|---|---|---|---|"]
    for who in m.runtimes + ["floor"]:
        e = st.get(who)
        if not e:
            continue
        if "error" in e:
            out.append(f"| {who} | **error:** {cell_text(e['error'])} | | |")
            continue
        top = ", ".join(f"{n} {c}" for n, c in e["top"])
        out.append(f"| {who} | {e['total']} | {e['distinct']} | {top} |")
    return out


def phase_table(modes):
    """berth --debug phase medians per mode, then what the phases do not cover."""
    have = [m for m in modes if m.d.get("phases", {}).get("phases_us")]
    errs = [f"{m.name}: {m.d['phases']['error']}" for m in modes
            if m.d.get("phases", {}).get("error")]
    if not have:
        return ["no phase data" + (": " + "; ".join(errs) if errs else "")]
    names = []
    for m in have:
        for n in m.d["phases"]["phases_us"]:
            if n not in names:
                names.append(n)
    out = ["| phase | " + " | ".join(f"{MODE_SHORT.get(m.name, m.name)} median µs (p90)"
                                     for m in have) + " |", "|---" * (len(have) + 1) + "|"]
    for n in names:
        cells = []
        for m in have:
            xs = m.d["phases"]["phases_us"].get(n, [])
            cells.append(f"{median(xs):.0f} ({p90(xs)})" if xs else "–")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    for what in ("create", "start"):
        sums, walls = [], []
        for m in have:
            ph = m.d["phases"]["phases_us"]
            total = sum(median(v) for k, v in ph.items() if k.startswith(what + ":"))
            wall = median(m.d["phases"]["wall_us"][what])
            sums.append(f"{total:.0f}")
            walls.append(f"{wall:.0f} (outside phases: {wall - total:.0f})")
        out.append(f"| **sum of {what} phases** | " + " | ".join(sums) + " |")
        out.append(f"| **`berth {what}` wall clock** | " + " | ".join(walls) + " |")
    out += [f"", f"Phase errors: {'; '.join(errs)}"] if errs else []
    return out


def notes_for(m):
    out = []
    for who in m.runtimes:
        s = m.subjects[who]
        out += [f"- {who}: {n}" for n in s["notes"]]
    return out


def write_plot(modes, outdir, tmp, title):
    """Bar chart (gnuplot, pngcairo): one panel per scenario, bars = medians, whiskers to p90."""
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not installed: plot skipped"
    who = []
    for m in modes:
        for n in m.runtimes + ["floor"]:
            if n not in who:
                who.append(n)
    panels = [("run", "(a) run, interleaved with the other runtimes", "run", 1),
              ("run_idle", "(f) run after {idle} ms idle", "run_idle", 1),
              ("run+delete", "(a) run + delete", "run", 1),
              ("split_total", "(b) create → start → exit → delete", "run", 1),
              ("seq", "(c) run + delete in a sequence of {seq}, per container", "seq", None),
              ("version", "(e) exec + exit only: --version (floor: /bin/true)", "version", 1)]
    plots = []
    for key, ptitle, floor_key, _ in panels:
        dat = os.path.join(tmp, f"plot-{key.replace('+', '_')}.dat")
        with open(dat, "w") as f:
            for m in modes:
                div = m.d["seq_len"] if key == "seq" else 1
                missing = [n for n in who if not m.samples(n, floor_key if n == "floor" else key)]
                tag = MODE_SHORT.get(m.name, m.name)
                if missing:
                    tag += "\\n(" + ", ".join(missing) + ": error, see table)"
                row = [f'"{tag}"']
                for n in who:
                    xs = m.samples(n, floor_key if n == "floor" else key)
                    if xs:
                        row += [f"{median(xs) / 1e6 / div:.4f}", f"{p90(xs) / 1e6 / div:.4f}"]
                    else:
                        row += ["NaN", "NaN"]
                f.write(" ".join(row) + "\n")
        series = []
        for i, n in enumerate(who):
            c = 2 + 2 * i
            label = "floor (no runtime)" if n == "floor" else n
            series.append(f"'{dat}' using {c}:{c}:{c + 1}{':xtic(1)' if i == 0 else ''} "
                          f"title '{label}' lc rgb '{COLORS.get(n, '#000000')}'")
        seq = modes[0].d["seq_len"]
        plots.append(f"set title \"{ptitle.format(seq=seq, idle=modes[0].d.get('idle_ms', 0))}\"\n"
                     "plot " + ", \\\n  ".join(series))
    os.makedirs(outdir, exist_ok=True)
    png = os.path.join(outdir, "start.png")
    script = "\n".join([
        "set terminal pngcairo size 1800,950 font 'sans,11'",
        f"set output '{png}'",
        f"set multiplot layout 2,3 title \"{title}\" font 'sans,13'",
        "set style data histogram",
        "set style histogram errorbars gap 2 lw 1.5",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set yrange [0:*]",
        "set grid ytics",
        "set key inside top right vertical",
        "set offsets 0, 0, graph 0.3, 0",  # headroom for the key above the tallest whisker
        "set bmargin 4",
        "set ylabel 'ms (median; whisker to p90)'",
        *plots,
        "unset multiplot",
    ])
    gp_file = os.path.join(tmp, "start.gp")
    with open(gp_file, "w") as f:
        f.write(script + "\n")
    r = subprocess.run([gp, gp_file], capture_output=True, text=True)
    if r.returncode != 0:
        return "gnuplot failed: " + r.stderr.strip()[:300]
    return f"plot: {png}"


README_BEGIN = "<!-- e2e-start:begin (written by benches/e2e/report.py) -->"
README_END = "<!-- e2e-start:end -->"


def goals_table(m, stamp, rev):
    """The lean-start goals (issue 19) against this run's like-for-like mode."""
    def cell(who, key):
        xs = m.samples(who, key)
        return f"{ms(median(xs))} ({ms(p90(xs))})" if xs else "–"

    def met(value, goal):
        return "–" if value is None else ("**met**" if value <= goal else "not met")

    def r(a, b):
        return a / b if a is not None and b else None

    b_run, c_run, f_run = m.med("berth", "run"), m.med("crun", "run"), m.med("floor", "run")
    b_cyc, c_cyc = m.med("berth", "split_total"), m.med("crun", "split_total")
    b_ver, c_ver = m.med("berth", "version"), m.med("crun", "version")
    rss = {w: median(m.subjects[w]["rss_kb"].get("run", [])) for w in ("berth", "crun")
           if w in m.subjects}
    rows = [
        ("`run`", cell("berth", "run"), cell("crun", "run"), cell("floor", "run"),
         f"berth/crun {ratio(b_run, c_run)}, berth/floor {ratio(b_run, f_run)}",
         "≤ 0.75× crun, ≤ 2.0× floor",
         met(r(b_run, c_run), 0.75) + " / " + met(r(b_run, f_run), 2.0)),
        ("create→start→exit→delete", cell("berth", "split_total"), cell("crun", "split_total"),
         "", f"berth/crun {ratio(b_cyc, c_cyc)}", "≤ 0.7× crun", met(r(b_cyc, c_cyc), 0.7)),
        ("`--version`", cell("berth", "version"), cell("crun", "version"),
         cell("floor", "version"), f"berth/crun {ratio(b_ver, c_ver)}", "≤ crun",
         met(r(b_ver, c_ver), 1.0)),
        ("peak RSS of `run` (KiB)", f"{rss.get('berth', 0):.0f}", f"{rss.get('crun', 0):.0f}",
         "", f"berth/crun {ratio(rss.get('berth'), rss.get('crun'))}", "≤ crun",
         met(r(rss.get("berth"), rss.get("crun")), 1.0)),
    ]
    out = [README_BEGIN,
           f"Last run: {stamp}, berth {rev}, {m.d['n']} interleaved iterations, "
           f"{MODE_SHORT.get(m.name, m.name)}, load average {m.d['load_before']} before. "
           "Times in ms, median (p90).", "",
           "| measure | berth | crun | floor | ratio | goal | |", "|---|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    out.append(README_END)
    return out


def update_readme(path, lines):
    """Replaces the marked block of the README with `lines`; says so if there is none."""
    with open(path) as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        return f"readme: {path} has no {README_BEGIN} block; not changed"
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    with open(path, "w") as f:
        f.write(head + "\n".join(lines) + tail)
    return f"readme: {path} updated"


def git_rev(repo):
    try:
        rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        # What this report itself rewrites (results, README's table) is not a change measured.
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no",
                                "--", ".", ":!benches/e2e/results", ":!README.md"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--readme", help="README whose marked goals table is rewritten")
    ap.add_argument("json", nargs="+")
    args = ap.parse_args()
    modes = [Mode(p) for p in args.json if os.path.exists(p)]
    if not modes:
        raise SystemExit("no results to report")

    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    first = modes[0]
    md = ["# berth end-to-end start benchmark", "",
          f"`{args.command}` — {stamp}; kernel {platform.release()}, {os.cpu_count()} CPUs; "
          f"berth {git_rev(args.repo)}.", "",
          f"{first.d['n']} iterations of (a), (b), (d) and (e), {first.d.get('idle_runs', 0)} of "
          f"(f), {first.d['seq_rounds']} rounds of (c); each iteration runs every runtime once, in "
          "a rotating order. Times in ms: median (p90). Ratios are of medians; berth/floor "
          f"compares with (d), for (c) with {first.d['seq_len']} floor runs in a row, for (f) with "
          "the floor after the same idle spell.", ""]
    md.append("Versions: " + "; ".join(
        f"{n} = {s['version']}" for n, s in first.subjects.items() if n != "floor") + ".")
    md.append("")
    for m in modes:
        md += [f"## {MODE_TITLES.get(m.name, m.name)}", "",
               f"/sys/fs/cgroup is `{m.d['cgroup_mount']}`; load average "
               f"{m.d['load_before']} before, {m.d['load_after']} after.", ""]
        md += timing_table(m) + [""]
        md += notes_for(m) + ([""] if notes_for(m) else [])
        md += ["Peak RSS: wait4's ru_maxrss of the runtime invocation (a few untimed runs through "
               "the rss helper), i.e. the largest process in the tree it reaped: for `run` that "
               "includes the runtime's own helpers (runc init) and the container's /bin/true "
               "(busybox, ~1 MiB). CPU: user+sys of the timed invocations, children included.",
               ""]
        md += resources_table(m) + [""]
        if m.d.get("strace"):
            md += ["Syscalls of one `run` under `strace -f -c` (every process, container "
                   "included; strace slows it, so these are counts, not timings):", ""]
            md += strace_table(m) + [""]
    md += ["## berth phases (`berth --debug` on create/start, separate untimed runs)", ""]
    md += phase_table(modes) + [""]
    md += ["## Notes", ""] + [f"- {n}" for n in args.note] + [""]
    loads = [float(m.d[k].split()[0]) for m in modes for k in ("load_before", "load_after")]
    plot_msg = write_plot(modes, args.outdir, args.tmp,
                          f"berth e2e start, {stamp} (1-min load {min(loads):.1f}–{max(loads):.1f}"
                          f" on {os.cpu_count()} CPUs)")
    md += [f"![start](start.png)" if plot_msg.startswith("plot:") else plot_msg, ""]
    text = "\n".join(md)
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "start.md"), "w") as f:
        f.write(text)
    print(text)
    print(plot_msg)
    like = [m for m in modes if m.name == "cgroup2ns"]
    if args.readme and like and "crun" in like[0].subjects:
        print(update_readme(args.readme, goals_table(like[0], stamp, git_rev(args.repo))))


if __name__ == "__main__":
    main()
