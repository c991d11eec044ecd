#!/usr/bin/env bash
# End-to-end layer extraction: berth's extractor (image/examples/berth-extract) against
# GNU `tar -xzf` and `umoci raw unpack`, on the same synthetic layer files, with hyperfine.
#
#   benches/extract/compare.sh [WORKDIR]      (default: $TMPDIR/berth-extract-compare)
#
# RUNS (default 5) sets hyperfine's runs; SHAPE=small|large (default small: 100,000 files).
# The destination lives in WORKDIR, so put WORKDIR on the filesystem that matters (ext4 disk,
# or /dev/shm to measure CPU cost alone). Results: WORKDIR/results-SHAPE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-${TMPDIR:-/tmp}/berth-extract-compare}"
runs="${RUNS:-5}"
shape="${SHAPE:-small}"
for tool in hyperfine python3 tar gzip; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is required (apt-get install $tool)" >&2; exit 1; }
done
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p berth-image --example berth-extract
case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
bin="$target/release/examples/berth-extract"
mkdir -p "$work"
layer="$work/$shape.tar"
if [ ! -f "$layer.gz" ]; then
  echo "== generating the $shape layer"
  rm -rf "$work/src-$shape"
  python3 benches/extract/gen.py "$shape" "$work/src-$shape"
  tar -C "$work/src-$shape" -cf "$layer" .
  gzip -6 -k -f "$layer"
  if command -v zstd >/dev/null; then zstd -q -3 -f "$layer" -o "$layer.zst"; fi
  rm -rf "$work/src-$shape"
fi
echo "== $(stat -c %s "$layer") bytes uncompressed, $(stat -c %s "$layer.gz") gzip"

cmds=(-n "berth (gzip)" "$bin $layer.gz $work/out"
      -n "GNU tar -xzf" "tar -xzf $layer.gz -C $work/out")
if command -v umoci >/dev/null; then
  # umoci reads an OCI layout: one image whose single layer is the same gzip file.
  python3 - "$work/layout-$shape" "$layer.gz" "$layer" <<'PY'
import hashlib, json, os, shutil, sys
out, gz, plain = sys.argv[1:4]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def blob(path=None, data=None):
    if data is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        d = h.hexdigest()
        dst = f"{out}/blobs/sha256/{d}"
        if not os.path.exists(dst):
            shutil.copyfile(path, dst)
        return d, os.path.getsize(path)
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return d, len(data)
diff = hashlib.sha256(open(plain, "rb").read()).hexdigest()
ld, ls = blob(gz)
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"]}}).encode()
cd, cs = blob(data=cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{cd}", "size": cs},
                  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{ld}", "size": ls}]}).encode()
md, ms = blob(data=man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": f"sha256:{md}", "size": ms, "annotations": {"org.opencontainers.image.ref.name": "bench"}}]},
          open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
  cmds+=(-n "umoci raw unpack" "umoci raw unpack --image $work/layout-$shape:bench $work/out/rootfs")
else
  echo "(umoci not installed: apt-get install umoci to include it)"
fi
if [ -f "$layer.zst" ]; then
  cmds+=(-n "berth (zstd)" "$bin $layer.zst $work/out")
fi
cmds+=(-n "berth (plain tar)" "$bin $layer $work/out" -n "GNU tar -xf (plain)" "tar -xf $layer -C $work/out")

# Each run gets a fresh, empty directory and starts with no dirty data (sync). On a disk,
# earlier outputs are moved aside rather than deleted (mass deletion right before a run
# slows the next run's file creation on ext4 with discard) and removed at the end; on tmpfs
# they are deleted (they would fill memory).
mkdir -p "$work/trash"
if [ "$(stat -f -c %T "$work")" = tmpfs ]; then
  prepare="rm -rf $work/out; mkdir $work/out"
else
  prepare="mv $work/out $work/trash/\$(date +%s%N) 2>/dev/null; mkdir $work/out; sync"
fi
hyperfine -w 1 -r "$runs" --prepare "$prepare" \
  --export-markdown "$work/results-$shape.md" "${cmds[@]}"
rm -rf "$work/out" "$work/trash"
cat "$work/results-$shape.md"
