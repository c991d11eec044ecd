#!/usr/bin/env bash
# `docker run --rm busybox true` through berthd vs dockerd (containerd + runc) vs
# `podman run --rm busybox true`, interleaved, on the default network and with --network none.
# Run as root from anywhere:
#
#   bash benches/e2e/daemon.sh
#
# Knobs (env vars): N=100 iterations; WARMUP=2 untimed runs per engine and mode; ENGINES="berthd
# dockerd podman"; NETWORKS="bridge none"; CLIENT_FLOOR=1 (0 skips the `docker version` rows);
# PODMAN_RUNTIME=runc; BERTHD=/path/to/berthd (default: build it, with berth and berth-monitor
# beside it, in ${CARGO_TARGET_DIR:-target}/release); OUT=results dir.
# Writes $OUT/daemon.json (raw samples) and $OUT/daemon.md (the report, also printed).
# See README.md beside this file.
#
# Everything runs inside a network namespace made here (`ip netns add`, entered with nsenter)
# and a private mount namespace (unshare -m): the engines' bridges, veths, iptables rules and
# ip_forward stay in the netns, their mounts in the mount namespace; both are gone at the end.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
N="${N:-100}"
WARMUP="${WARMUP:-2}"
ENGINES="${ENGINES:-berthd dockerd podman}"
NETWORKS="${NETWORKS:-bridge none}"
CLIENT_FLOOR="${CLIENT_FLOOR:-1}"
PODMAN_RUNTIME="${PODMAN_RUNTIME:-runc}"
OUT="${OUT:-$HERE/results}"
BERTHD="${BERTHD:-}"
NS="berth-dbench-$$"
# Host paths the engines write to whatever they are told (CNI's result cache, containerd's shim
# sockets, containers/image's blob-info cache): the driver covers each with a tmpfs in its
# private mount namespace. Those missing are made for the run and removed after it.
SHADOW=(/var/lib/cni /run/containerd /var/lib/containers/cache)
CREATED=()
TMP=""
DRIVER_PID=""
NETNS_MADE=0
NOTES=()

log() { printf '[dbench] %s\n' "$*" >&2; }

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

need() {
  command -v "$1" >/dev/null && return 0
  log "installing $2 (for $1)"
  apt_install "$2" && command -v "$1" >/dev/null
}

install_deps() {
  need python3 python3 || { log "python3 is required"; exit 1; }
  need unshare util-linux && need nsenter util-linux || { log "unshare/nsenter are required"; exit 1; }
  need ip iproute2 || { log "ip (iproute2) is required"; exit 1; }
  need skopeo skopeo || { log "skopeo is required (docker-archive of the image)"; exit 1; }
  [ -x /bin/busybox ] || apt_install busybox-static || { log "busybox is required"; exit 1; }
  need docker docker.io || { log "the docker CLI is required"; exit 1; }
  case " $ENGINES " in *" dockerd "*)
    need dockerd docker.io || { NOTES+=("dockerd: not installable here, skipped"); ENGINES="${ENGINES/dockerd/}"; }
    need iptables iptables || NOTES+=("iptables missing: dockerd's bridge may fail") ;;
  esac
  case " $ENGINES " in *" podman "*)
    need podman podman || { NOTES+=("podman: not installable here, skipped"); ENGINES="${ENGINES/podman/}"; } ;;
  esac
}

build_berthd() {
  if [ -n "$BERTHD" ]; then NOTES+=("berthd binary given: $BERTHD"); return; fi
  local target="${CARGO_TARGET_DIR:-$REPO/target}"
  BERTHD="$target/release/berthd"
  log "building berth, berth-monitor, berthd (cargo build --release)"
  if ! (cd "$REPO" && cargo build --release -p berth -p berth-monitor -p berthd >&2); then
    [ -x "$BERTHD" ] || { log "berthd did not build and there is no binary"; exit 1; }
    log "BUILD FAILED: measuring the existing $BERTHD"
    NOTES+=("**berthd did not build from the work tree: measured the existing binary from $(date -r "$BERTHD" '+%Y-%m-%d %H:%M')**")
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    # the driver removes its containers and stops its daemons on SIGTERM
    kill -TERM "$DRIVER_PID" 2>/dev/null || true
    wait "$DRIVER_PID" 2>/dev/null || true
  fi
  if [ "$NETNS_MADE" = 1 ]; then
    # Anything still in the netns was started by this run (nothing else enters it): by pid.
    local pid
    for pid in $(ip netns pids "$NS" 2>/dev/null); do
      log "killing leftover process $pid ($(cat /proc/$pid/comm 2>/dev/null))"
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || log "could not delete netns $NS"
  fi
  local i
  for ((i = ${#CREATED[@]} - 1; i >= 0; i--)); do rmdir "${CREATED[$i]}" 2>/dev/null || true; done
  [ -n "$TMP" ] && [ -d "$TMP" ] && rm -rf "$TMP"
  exit "$rc"
}

# mkdir_tracked DIR: makes DIR and any missing parents, remembering each one made.
mkdir_tracked() {
  local d="$1" missing=()
  while [ ! -e "$d" ]; do missing=("$d" "${missing[@]}"); d="$(dirname "$d")"; done
  local m
  for m in "${missing[@]}"; do mkdir "$m" && CREATED+=("$m"); done
}

env_summary() {
  local s="" v
  for v in N WARMUP ENGINES NETWORKS CLIENT_FLOOR PODMAN_RUNTIME; do
    if [ -n "${!v+x}" ] && printenv "$v" >/dev/null; then s+=" $v='${!v}'"; fi
  done
  [ -n "$s" ] && printf ' (env:%s)' "$s"
  return 0
}

main() {
  [ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
  install_deps
  build_berthd
  TMP="$(mktemp -d /tmp/berth-dbench.XXXXXX)"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "image: busybox OCI layout (the driver makes the docker-archive from it)"
  python3 "$REPO/scripts/busybox-image.py" "$TMP/oci" >/dev/null
  local p shadow_args=()
  for p in "${SHADOW[@]}"; do mkdir_tracked "$p"; shadow_args+=(--shadow "$p"); done
  ip netns add "$NS"
  NETNS_MADE=1
  mkdir -p "$TMP/tmp"
  local engines networks notes=() n
  engines="$(echo $ENGINES | tr ' ' ',')"
  networks="$(echo $NETWORKS | tr ' ' ',')"
  for n in "${NOTES[@]}"; do notes+=(--note "$n"); done
  log "netns $NS; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  # unshare and nsenter exec, so $! is the driver's pid. TMPDIR: podman's image spool.
  TMPDIR="$TMP/tmp" unshare --mount --propagation private -- \
    nsenter --net="/run/netns/$NS" -- \
    python3 "$HERE/daemon.py" --tmp "$TMP" --out "$OUT" --repo "$REPO" --berthd "$BERTHD" \
      --oci "$TMP/oci" --archive "$TMP/busybox.tar" --engines "$engines" \
      --networks "$networks" --n "$N" --warmup "$WARMUP" --client-floor "$CLIENT_FLOOR" \
      --podman-runtime "$PODMAN_RUNTIME" "${shadow_args[@]}" \
      --command "bash benches/e2e/daemon.sh$(env_summary)" "${notes[@]+"${notes[@]}"}" &
  DRIVER_PID=$!
  wait "$DRIVER_PID"
  DRIVER_PID=""
}

main "$@"
