#!/usr/bin/env bash
# Pull + unpack of a multi-layer image from a local registry (Debian's docker-registry on
# 127.0.0.1, plain HTTP): `berth pull` (download, verify and extract, layers concurrently and
# pipelined) against `skopeo copy` + `umoci unpack` and `podman pull` (its own --root), in one
# hyperfine run. Every run starts from an empty store.
#
#   benches/registry/compare.sh [WORKDIR]     (default: $TMPDIR/berth-registry-compare)
#
# RUNS (default 5) sets hyperfine's runs; LAYERS (default 4) extra layers of MB_PER_LAYER
# (default 8) MB of files each on top of busybox. As root (podman and the overlay layers).
# Results: WORKDIR/results.md, and the berth / podman ratio on the last line.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-${TMPDIR:-/tmp}/berth-registry-compare}"
runs="${RUNS:-5}"
layers="${LAYERS:-4}"
mb="${MB_PER_LAYER:-8}"
for tool in hyperfine python3 docker-registry skopeo umoci podman; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 1; }
done
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
cargo build --release -q -p berth
bin="$target/release/berth"
rm -rf "$work"
mkdir -p "$work"

echo "== $layers layers of $mb MB on top of busybox"
python3 - "$work" "$layers" "$mb" <<'PY'
import base64, io, os, random, sys, tarfile
work, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(7)
for i in range(n):
    with tarfile.open(os.path.join(work, f"layer{i}.tar"), "w") as t:
        for j in range(mb * 16):
            # Half-compressible text, as real layers are.
            raw = bytes(rnd.getrandbits(8) for _ in range(24 * 1024))
            data = base64.b64encode(raw)[: 64 * 1024 - 1] + b"\n"
            ti = tarfile.TarInfo(f"data{i}/f{j:05d}.txt")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            t.addfile(ti, io.BytesIO(data))
PY
extra=()
for i in $(seq 0 $((layers - 1))); do extra+=("$work/layer$i.tar"); done
python3 scripts/busybox-image.py "$work/layout" bench:latest "${extra[@]}" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
cleanup() {
  kill "$registry_pid" 2>/dev/null || true
  wait "$registry_pid" 2>/dev/null || true
  podman --root "$work/podman-root" --runroot "$work/podman-run" rmi -af >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done
image="127.0.0.1:$port/bench:latest"
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://$image"
size=$(du -sb "$work/registry" | cut -f1)
echo "== registry holds $size bytes"

podman_args="--root $work/podman-root --runroot $work/podman-run --storage-driver overlay"
hyperfine --runs "$runs" --warmup 1 --export-markdown "$work/results.md" \
  --prepare "rm -rf $work/berth-store" \
  -n "berth pull" "$bin --store $work/berth-store pull -q $image" \
  --prepare "rm -rf $work/oci $work/bundle" \
  -n "skopeo copy + umoci unpack" \
  "skopeo copy -q --src-tls-verify=false docker://$image oci:$work/oci:latest && umoci unpack --image $work/oci:latest $work/bundle" \
  --prepare "podman $podman_args rmi -af >/dev/null 2>&1 || true" \
  -n "podman pull" "podman $podman_args pull -q --tls-verify=false $image"
cat "$work/results.md"
python3 - "$work/results.md" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) > 1 and cells[0].startswith("`"):
        rows[cells[0].strip("`")] = float(cells[1].split()[0])
b, p, s = rows["berth pull"], rows["podman pull"], rows["skopeo copy + umoci unpack"]
print(f"berth pull / podman pull = {b / p:.2f}x; berth / (skopeo + umoci) = {b / s:.2f}x")
PY
