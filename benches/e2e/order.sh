#!/usr/bin/env bash
# Writes cli/berth.order: the functions of the lean `berth` in the order the commands engines
# call first execute them, for the linker to lay out together (cli/build.rs says why). Run as
# root after changing what a container start runs, then rebuild:
#
#   bash benches/e2e/order.sh && cargo build --release -p berth
#
# It builds target/release/berth with a link map, runs `run` (under a private cgroup2 mount,
# as start.sh measures, and on the host's hierarchy), `create`/`start`/`state`/`exec`/`kill`/
# `delete`, `ps`, `list`, `pause`/`resume` and `--version` of one busybox
# bundle under text-trace.c (ptrace single-stepping), and maps the addresses to symbols.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TMP="$(mktemp -d /tmp/berth-order.XXXXXX)"
ROOT="$TMP/state"
trap 'for id in o-run o-run2 o-life o-exec; do "$REPO/target/release/berth" --root "$ROOT" delete --force "$id" >/dev/null 2>&1 || true; done; rm -rf "$TMP"' EXIT

log() { printf '[order] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root (containers are started)"; exit 1; }
[ -x /bin/busybox ] || { log "needs /bin/busybox (Debian's busybox-static)"; exit 1; }
command -v cc >/dev/null || { log "needs a C compiler"; exit 1; }

log "building target/release/berth with a link map"
(cd "$REPO" && BERTH_LINK_MAP="$TMP/berth.map" cargo build --release --locked -p berth --bin berth)
BERTH="$REPO/target/release/berth"
[ -s "$TMP/berth.map" ] || { log "the link wrote no map (is the linker LLD? see cli/build.rs)"; exit 1; }
cc -O2 -o "$TMP/text-trace" "$HERE/text-trace.c"

B="$TMP/bundle"
mkdir -p "$B/rootfs/bin"
cp /bin/busybox "$B/rootfs/bin/busybox"
for app in true sleep sh; do ln -s busybox "$B/rootfs/bin/$app"; done
(cd "$B" && "$BERTH" spec)
python3 - "$B/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
cfg = json.load(open(p))
cfg["process"]["args"] = ["/bin/true"]
cfg["process"]["terminal"] = False
json.dump(cfg, open(p, "w"), indent=2)
EOF
BS="$TMP/bundle-sleep"
mkdir -p "$BS"
ln -s "$B/rootfs" "$BS/rootfs"
python3 - "$B/config.json" "$BS/config.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["process"]["args"] = ["/bin/sleep", "600"]
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
EOF

# The text segment's bounds.
read -r LO HI < <(readelf -lW "$BERTH" | python3 -c '
import sys
for l in sys.stdin:
    f = l.split()
    if f and f[0] == "LOAD" and "E" in f[6:-1]:
        print(f"{int(f[2], 16):x} {int(f[2], 16) + int(f[5], 16):x}")
')
n=0
trace() {
  n=$((n + 1))
  "$TMP/text-trace" "$TMP/trace.$n" "$LO" "$HI" "$BERTH" --root "$ROOT" "$@" >/dev/null
}
log "tracing (single-stepping is slow: a few minutes)"
unshare --mount --propagation private -- sh -c \
  'umount -R /sys/fs/cgroup 2>/dev/null; mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh \
  "$TMP/text-trace" "$TMP/trace.0" "$LO" "$HI" "$BERTH" --root "$ROOT" run -b "$B" o-run >/dev/null
trace run -b "$B" o-run2
# The created init stays traced (by create's tracer) until start makes it exec: trace create in
# the background, go on once its pid file shows create has returned, and collect it after start.
n=$((n + 1))
"$TMP/text-trace" "$TMP/trace.$n" "$LO" "$HI" "$BERTH" --root "$ROOT" create -b "$BS" \
  --pid-file "$TMP/o-life.pid" o-life >/dev/null &
create_tracer=$!
for _ in $(seq 600); do [ -s "$TMP/o-life.pid" ] && break; sleep 0.5; done
sleep 2
trace state o-life
trace start o-life
wait "$create_tracer"
trace exec o-life /bin/true
trace ps o-life
trace list
trace pause o-life
trace resume o-life
trace kill o-life KILL
sleep 0.2
trace delete o-life
"$TMP/text-trace" "$TMP/trace.$((n + 1))" "$LO" "$HI" "$BERTH" --version >/dev/null

python3 - "$TMP" "$REPO/cli/berth.order" <<'EOF'
import bisect, glob, os, re, sys
tmp, out = sys.argv[1], sys.argv[2]
# lld's map: fixed columns "VMA LMA Size Align", then the output section (indented 1), an
# input section "file:(name)" (9) or a symbol (17).
sections, in_text = [], False
for line in open(os.path.join(tmp, "berth.map")):
    head, rest = line[:48].split(), line[48:].rstrip("\n")
    if len(head) != 4:
        continue
    depth, text = len(rest) - len(rest.lstrip(" ")), rest.strip()
    if depth == 1:
        in_text = text == ".text"
    elif in_text and depth == 9:
        # A function section is named after its function (".text.<symbol>", rustc and gcc
        # with -ffunction-sections); the symbol lines name the rest (glibc's ".text").
        name = text[text.rfind(":(") + 2:-1]
        sym = re.sub(r"^\.text\.((unlikely|hot|startup|exit)\.)?", "", name) if name.startswith(".text.") else None
        sections.append([int(head[0], 16), int(head[2], 16), [sym] if sym else []])
    elif in_text and depth == 17 and sections:
        sections[-1][2].append(text)
starts = [s[0] for s in sections]
seen, order = set(), []
for path in sorted(glob.glob(os.path.join(tmp, "trace.*")), key=lambda p: int(p.rsplit(".", 1)[1])):
    for line in open(path):
        addr = int(line, 16)
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or addr >= sections[i][0] + sections[i][1] or not sections[i][2]:
            continue
        sym = sections[i][2][0]
        if sym not in seen:
            seen.add(sym)
            order.append(sym)
with open(out, "w") as f:
    f.write("\n".join(order) + "\n")
size = sum(s[1] for s in sections if s[2] and s[2][0] in seen)
print(f"[order] {len(order)} functions, {size // 1024} KiB of {sum(s[1] for s in sections) // 1024} KiB of text -> {out}", file=sys.stderr)
EOF
