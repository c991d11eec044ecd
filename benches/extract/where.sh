#!/usr/bin/env bash
# Where layer extraction's time goes: the same gzip layer extracted by berth and by GNU tar,
# interleaved (the order alternates each round), into (1) tmpfs, (2) ext4 on a RAM-backed loop
# device (the filesystem's cost without a disk) and (3) WORKDIR on the real disk. Each run
# prints wall, user and sys seconds (/usr/bin/time; tar's include its gzip child). Before each
# run, 1.5 GiB of /dev/shm is written and freed: in a VM whose free memory goes back to the host
# (free page reporting), first touches fault in the host and otherwise land on whichever run
# allocates first. Run as root; the loop mount lives in a private mount namespace and is gone,
# with its image, when the script ends.
#
#   benches/extract/where.sh BERTH_EXTRACT LAYER.tar.gz [ROUNDS] [WORKDIR]
#
# BERTH_EXTRACT is target/release/examples/berth-extract (compare.sh builds it and the layer).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "where.sh: run as root (loop device, private mount)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "where.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
exec unshare --mount --propagation private -- bash -s "$1" "$2" "${3:-4}" "${4:-/var/tmp/berth-where}" <<'IN'
set -euo pipefail
bin=$1 layer=$2 rounds=$3 disk=$4
ram=/dev/shm/berth-where
mkdir -p "$ram/tmpfs" "$ram/ext4" "$disk"
truncate -s 6G "$ram/img"
mkfs.ext4 -q -F -N 1500000 "$ram/img"
loop=$(losetup -f --show "$ram/img")
trap 'umount "$ram/ext4" 2>/dev/null; losetup -d "$loop"; rm -rf "$ram" "$disk"' EXIT
mount "$loop" "$ram/ext4"
for fs in "$ram/tmpfs" "$ram/ext4" "$disk"; do
  mkdir -p "$fs/trash"
  for r in $(seq "$rounds"); do
    if ((r % 2)); then order="berth tar"; else order="tar berth"; fi
    for t in $order; do
      # On the disk, earlier outputs are moved aside, not deleted: ext4 skips recently freed
      # inodes, so a mass delete right before a run slows its file creation.
      [ -e "$fs/out" ] && mv "$fs/out" "$fs/trash/$(date +%s%N)"
      [ "$fs" = "$disk" ] || rm -rf "${fs:?}/trash"/*
      mkdir "$fs/out"
      sync
      head -c 1536M /dev/zero > "$ram/warm"; rm -f "$ram/warm"
      if [ "$t" = berth ]; then cmd=("$bin" "$layer" "$fs/out"); else cmd=(tar -xzf "$layer" -C "$fs/out"); fi
      /usr/bin/time -f "$(basename "$fs") $t wall %e user %U sys %S" "${cmd[@]}" >/dev/null
    done
  done
done
IN
