#!/usr/bin/env bash
# End-to-end container start benchmark: berth vs runc vs crun (vs youki when on PATH) vs a
# no-runtime floor, on one busybox bundle running /bin/true. Run as root from anywhere:
#
#   bash benches/e2e/start.sh
#
# Knobs (env vars): N=200 iterations of (a)/(b)/(d); SEQ_ROUNDS=5 rounds of SEQ_LEN=100
# containers for (c); IDLE_RUNS=50 runs of (f) after IDLE_MS=50 ms idle; PHASE_RUNS=50 berth
# --debug runs; MODES="host cgroup2ns";
# RUNTIMES="berth runc crun youki"; STRACE=1 (0 skips the syscall counts); RSS_RUNS=5 runs
# per runtime for peak RSS (0 skips); CG2_OVERMOUNT=1 (cgroup2 mounted over the hybrid tree
# instead of replacing it);
# BERTH=/path/to/berth (default: build target/release/berth); OUT=results dir; README_UPDATE=0
# leaves README.md's goals table alone (by default it is rewritten from the cgroup2 mode).
# Writes $OUT/start.md and $OUT/start.png and prints the table. See README.md beside this file.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
N="${N:-200}"
SEQ_ROUNDS="${SEQ_ROUNDS:-5}"
SEQ_LEN="${SEQ_LEN:-100}"
PHASE_RUNS="${PHASE_RUNS:-50}"
IDLE_RUNS="${IDLE_RUNS:-50}"
IDLE_MS="${IDLE_MS:-50}"
MODES="${MODES:-host cgroup2ns}"
RUNTIMES="${RUNTIMES:-berth runc crun youki}"
STRACE="${STRACE:-1}"
RSS_RUNS="${RSS_RUNS:-5}"
CG2_OVERMOUNT="${CG2_OVERMOUNT:-0}"
OUT="${OUT:-$HERE/results}"
BERTH="${BERTH:-}"
PREFIX="e2e$$"          # every container id and cgroup we create starts with this
TMP=""
DRIVER_PID=""
NOTES=()

log() { printf '[e2e] %s\n' "$*" >&2; }

# --- dependencies: a fresh machine gets what it lacks from Debian's packages -------------------

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

# need CMD PACKAGE: install PACKAGE unless CMD exists; fails if it still does not.
need() {
  command -v "$1" >/dev/null && return 0
  log "installing $2 (for $1)"
  apt_install "$2" && command -v "$1" >/dev/null
}

install_deps() {
  need python3 python3 || { log "python3 is required"; exit 1; }
  need unshare util-linux || { log "unshare is required"; exit 1; }
  [ -x /bin/busybox ] || apt_install busybox || { log "busybox is required"; exit 1; }
  # The other runtimes and the tools for extras are optional: what is missing is reported.
  for rt in runc crun; do
    case " $RUNTIMES " in *" $rt "*) need "$rt" "$rt" || NOTES+=("$rt: not installable here, skipped") ;; esac
  done
  if [ "$STRACE" = 1 ]; then need strace strace || NOTES+=("strace unavailable: syscall counts skipped"); fi
  need gnuplot gnuplot-nox || NOTES+=("gnuplot unavailable: no plot")
  if [ "$RSS_RUNS" != 0 ]; then need cc gcc || NOTES+=("no C compiler: peak RSS skipped"); fi
  case " $RUNTIMES " in
    *" youki "*)
      # youki is not packaged for Debian; `cargo install youki` builds hundreds of crates and
      # needs libseccomp/systemd headers, far too slow for a benchmark run, so it is not installed.
      command -v youki >/dev/null ||
        NOTES+=("youki: not on PATH, skipped (not installed: cargo install youki is a long build)") ;;
  esac
}

build_berth() {
  if [ -n "$BERTH" ]; then NOTES+=("berth binary given: $BERTH"); return; fi
  log "building berth (cargo build --release -p berth)"
  BERTH="$REPO/target/release/berth"
  if ! (cd "$REPO" && cargo build --release -p berth >&2); then
    # A work tree that does not build right now should not block a measurement, but the
    # report must say loudly that it measured an older binary.
    [ -x "$BERTH" ] || { log "berth did not build and there is no binary"; exit 1; }
    log "BUILD FAILED: measuring the existing $BERTH"
    NOTES+=("**berth did not build from the work tree: measured the existing binary from $(date -r "$BERTH" '+%Y-%m-%d %H:%M')**")
  fi
}

# --- the bundle: busybox rootfs, config from `berth spec`, /bin/true, no terminal ---------------

make_bundle() {
  local b="$TMP/bundle"
  mkdir -p "$b/rootfs/bin"
  cp /bin/busybox "$b/rootfs/bin/busybox"
  local app
  for app in $("$b/rootfs/bin/busybox" --list); do
    [ -e "$b/rootfs/bin/$app" ] || ln -s busybox "$b/rootfs/bin/$app"
  done
  (cd "$b" && "$BERTH" spec)
  python3 - "$b" <<'EOF'
import json, os, sys
b = sys.argv[1]
cfg = json.load(open(os.path.join(b, "config.json")))
cfg["process"]["terminal"] = False
cfg["process"]["args"] = ["/bin/true"]
json.dump(cfg, open(os.path.join(b, "config.json"), "w"), indent=2)
# Old crun (1.8) rejects any ociVersion without "1.0"; the driver uses this copy only for a
# runtime that refuses the original, and says so. Same rootfs (absolute root.path).
cfg["ociVersion"] = "1.0.2-dev"
cfg["root"]["path"] = os.path.join(b, "rootfs")
os.makedirs(b + "-oci10", exist_ok=True)
json.dump(cfg, open(os.path.join(b + "-oci10", "config.json"), "w"), indent=2)
EOF
}

# The peak-RSS helper (rss.c says why it exists). Static when libc.a is there: a smaller floor.
build_rss_helper() {
  RSS_HELPER=""
  [ "$RSS_RUNS" != 0 ] && command -v cc >/dev/null || return 0
  if cc -O2 -static -o "$TMP/rss" "$HERE/rss.c" 2>/dev/null || cc -O2 -o "$TMP/rss" "$HERE/rss.c"; then
    RSS_HELPER="$TMP/rss"
  else
    NOTES+=("rss helper did not compile: peak RSS skipped")
  fi
}

# --- running one mode --------------------------------------------------------------------------

# The driver runs in the background so that the trap can stop it by pid at once.
run_bg() {
  "$@" &
  DRIVER_PID=$!
  wait "$DRIVER_PID"
  DRIVER_PID=""
}

# "${IN_CGROUP2_NS[@]}" CMD...: CMD in a private mount namespace (unshare -m makes every mount
# private, so nothing reaches the host) where /sys/fs/cgroup is a plain cgroup2 mount. crun has
# no hybrid support; all runtimes run there for a like-for-like row. The hybrid tree is unmounted
# first (in that namespace only) so that mountinfo shows a clean cgroup2 host; CG2_OVERMOUNT=1
# mounts cgroup2 over it instead, leaving the shadowed v1 mounts listed in mountinfo.
# unshare and sh exec, so the pid of this command line is the driver's.
if [ "$CG2_OVERMOUNT" = 1 ]; then CG2_SETUP='mount -t cgroup2 none /sys/fs/cgroup'
else CG2_SETUP='umount -R /sys/fs/cgroup 2>/dev/null; mount -t cgroup2 none /sys/fs/cgroup'; fi
IN_CGROUP2_NS=(unshare --mount --propagation private -- sh -c "$CG2_SETUP"' && exec "$@"' sh)

run_mode() {
  local mode="$1" strace=0 rts
  rts="$(echo $RUNTIMES | tr ' ' ',')"
  # strace once, in the like-for-like mode (or the only mode run).
  if [ "$STRACE" = 1 ] && { [ "$mode" = cgroup2ns ] || [ "$MODES" = "$mode" ]; }; then strace=1; fi
  local cmd=(python3 "$HERE/driver.py" --mode "$mode" --bundle "$TMP/bundle"
             --adapted-bundle "$TMP/bundle-oci10" --tmp "$TMP" --out "$TMP/$mode.json"
             --berth "$BERTH" --runtimes "$rts" --n "$N" --seq-rounds "$SEQ_ROUNDS"
             --seq-len "$SEQ_LEN" --phase-runs "$PHASE_RUNS" --strace "$strace"
             --idle-runs "$IDLE_RUNS" --idle-ms "$IDLE_MS"
             --rss-helper "$RSS_HELPER" --rss-runs "$RSS_RUNS"
             --id-prefix "$PREFIX")
  log "mode $mode: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  case "$mode" in
    host) run_bg "${cmd[@]}" ;;
    cgroup2ns) run_bg "${IN_CGROUP2_NS[@]}" "${cmd[@]}" ;;
    *) log "unknown mode $mode"; return 1 ;;
  esac
}

# --- cleanup: no containers, cgroups, mounts or state dirs left behind -------------------------

# force_delete_all MODE RUNTIME: delete --force every container of ours in that state dir.
force_delete_all() {
  local mode="$1" rt="$2" dir="$TMP/state/$1/$2" exe id flags=()
  [ -d "$dir" ] || return 0
  exe="$([ "$rt" = berth ] && echo "$BERTH" || command -v "$rt")" || return 0
  [ "$mode" = cgroup2ns ] && [ "$rt" = crun ] && flags=(--cgroup-manager=disabled)
  for id in $(ls "$dir"); do
    case "$id" in "$PREFIX"*) ;; *) continue ;; esac
    if [ "$mode" = cgroup2ns ]; then
      "${IN_CGROUP2_NS[@]}" "$exe" "${flags[@]}" --root "$dir" delete --force "$id" >/dev/null 2>&1 || true
    else
      "$exe" "${flags[@]}" --root "$dir" delete --force "$id" >/dev/null 2>&1 || true
    fi
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    # the driver deletes its own containers on SIGTERM; give it a moment
    kill -TERM "$DRIVER_PID" 2>/dev/null || true
    wait "$DRIVER_PID" 2>/dev/null || true
  fi
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    local mode rt
    for mode in $MODES; do for rt in $RUNTIMES; do force_delete_all "$mode" "$rt"; done; done
    rm -rf "$TMP"
  fi
  # runc's cgroups (v1 hierarchies, or the cgroup2 tree seen as /sys/fs/cgroup/unified here).
  find /sys/fs/cgroup -depth -type d -name "*$PREFIX*" -exec rmdir {} \; 2>/dev/null || true
  exit "$rc"
}

main() {
  [ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
  install_deps
  build_berth
  TMP="$(mktemp -d /tmp/berth-e2e.XXXXXX)"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_bundle
  build_rss_helper
  NOTES+=("same bundle for all (busybox rootfs, \`berth spec\` config, args [/bin/true], terminal false, no cgroupsPath); per-runtime adaptations are listed under each table")
  NOTES+=("host mode: the host's cgroups as they are; cgroup2 mode: the same runs in a private mount namespace where the hybrid tree is $([ "$CG2_OVERMOUNT" = 1 ] && echo "covered by" || echo "unmounted and replaced by") a cgroup2 mount on /sys/fs/cgroup, crun with --cgroup-manager=disabled, the others with their default cgroup handling; what each runtime's \`create\` made is listed under each table")
  NOTES+=("a foreground \`run\` removes its container itself (all runtimes), so the \`delete\` after it only finds the container gone: (a) run + delete adds that call's cost")
  NOTES+=("the floor has no cgroup namespace and no rootfs mounts (no /proc, /dev, pivot_root): it bounds namespace creation + exec only")
  local mode
  for mode in $MODES; do run_mode "$mode"; done
  local jsons=() notes=()
  for mode in $MODES; do jsons+=("$TMP/$mode.json"); done
  for n in "${NOTES[@]}"; do notes+=(--note "$n"); done
  local readme=()
  [ "${README_UPDATE:-1}" = 1 ] && readme=(--readme "$REPO/README.md")
  python3 "$HERE/report.py" --outdir "$OUT" --tmp "$TMP" --repo "$REPO" "${readme[@]}" \
    --command "bash benches/e2e/start.sh$(env_summary)" "${notes[@]}" "${jsons[@]}"
}

# Non-default knobs, so the report shows the command that produced it.
env_summary() {
  local s="" v
  for v in N SEQ_ROUNDS SEQ_LEN IDLE_RUNS IDLE_MS PHASE_RUNS MODES RUNTIMES STRACE RSS_RUNS CG2_OVERMOUNT; do
    if [ -n "${!v+x}" ] && printenv "$v" >/dev/null; then s+=" $v='${!v}'"; fi
  done
  [ -n "$s" ] && printf ' (env:%s)' "$s"
  return 0
}

main "$@"
