#!/usr/bin/env bash
# `berth build` vs `podman build` (runc, overlay storage of its own), interleaved: a cold build
# (--no-cache) of a multi-step Dockerfile and an unchanged rebuild (every step from the cache),
# RUN steps with --network none on both sides. Run as root from anywhere:
#
#   bash benches/build/build.sh
#
# Knobs (env vars): N=15 iterations; WARMUP=1 untimed rounds; BERTH=/path/to/berth (default:
# `cargo build --release -p berth`, then ${CARGO_TARGET_DIR:-target}/release/berth); OUT=results
# dir. Writes $OUT/build.json (raw samples) and $OUT/build.md (the report, also printed).
#
# Everything runs in a private mount namespace (unshare -m): the overlay mounts of both
# builders' RUN steps and podman's storage mounts go with it. All state (berth's store and
# --root, podman's storage, run root and configuration) is in one temporary directory,
# removed at the end.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
N="${N:-15}"
WARMUP="${WARMUP:-1}"
OUT="${OUT:-$HERE/results}"
BERTH="${BERTH:-}"
TMP=""

log() { printf '[bbench] %s\n' "$*" >&2; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$TMP" ] && [ -d "$TMP" ] && rm -rf "$TMP"
  exit "$rc"
}

[ "$(id -u)" = 0 ] || { log "run as root (RUN steps are containers)"; exit 1; }
for p in python3 podman runc unshare tar; do
  command -v "$p" >/dev/null || { log "$p is required (scripts/setup.sh installs it)"; exit 1; }
done
if [ -z "$BERTH" ]; then
  log "building berth (cargo build --release -p berth)"
  (cd "$REPO" && cargo build --release -p berth >&2)
  BERTH="${CARGO_TARGET_DIR:-$REPO/target}/release/berth"
fi
[ -x "$BERTH" ] || { log "no berth binary at $BERTH"; exit 1; }

trap cleanup EXIT INT TERM
TMP="$(mktemp -d /tmp/berth-bbench-XXXXXX)"
python3 "$REPO/scripts/busybox-image.py" "$TMP/busybox-oci" busybox:latest >/dev/null
mkdir -p "$OUT"
unshare -m --propagation private \
  python3 "$HERE/build.py" --berth "$BERTH" --tmp "$TMP" --n "$N" --warmup "$WARMUP" \
  --out "$OUT" --repo "$REPO"
