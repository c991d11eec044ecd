#!/usr/bin/env bash
# Interleaved timing of layer extraction commands, for noisy shared machines: each round runs
# every command once (the order alternates between rounds, so that no command always runs
# after another), each into a fresh directory after `sync`; with DROP=1 (as root) dentries
# and inodes are also dropped from the kernel's caches before each run. Runs wait for an idle
# CPU (other users' builds) first. WARM=MIB writes and frees that much of /dev/shm just
# before each run: in a VM whose free memory goes back to the host (virtio-balloon free page
# reporting), the first touch of a page costs a fault in the host, which otherwise lands on
# whichever run allocates the page cache for its files first. Prints each run, then the mean
# and the median of every command and their ratio to the first one.
#
#   benches/extract/interleave.sh WORKDIR ROUNDS NAME CMD [NAME CMD]...
#
# CMD is run by bash with $OUT set to its (fresh, empty) destination; for example
#   benches/extract/interleave.sh /var/tmp/x 8 \
#     berth 'target/release/examples/berth-extract /var/tmp/x/small.tar.gz $OUT' \
#     tar 'tar -xzf /var/tmp/x/small.tar.gz -C $OUT'
# Outputs are moved aside to WORKDIR/trash and left there: on ext4 without a journal, inodes
# freed in the last minutes are skipped (and scanned) by the allocator, so deleting 100,000
# files slows every run of the next few minutes. Remove the trash once done measuring.
set -euo pipefail
work="$1"
rounds="$2"
shift 2
names=()
cmds=()
while [ $# -ge 2 ]; do
  names+=("$1")
  cmds+=("$2")
  shift 2
done
n=${#cmds[@]}
mkdir -p "$work/trash"

idle_pct() {
  local a b ta=0 tb=0 v
  read -ra a < /proc/stat
  sleep 0.5
  read -ra b < /proc/stat
  for v in "${a[@]:1}"; do ta=$((ta + v)); done
  for v in "${b[@]:1}"; do tb=$((tb + v)); done
  echo $((100 * ((b[4] + b[5]) - (a[4] + a[5])) / (tb - ta + 1)))
}

declare -A times
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < n; k++)); do
    if ((r % 2)); then i=$((n - 1 - k)); else i=$k; fi
    if [ -e "$work/out" ]; then mv "$work/out" "$work/trash/$(date +%s%N)"; fi
    mkdir "$work/out"
    sync
    if [ "${DROP:-0}" = 1 ]; then echo 2 > /proc/sys/vm/drop_caches; fi
    for _ in $(seq 60); do [ "$(idle_pct)" -ge 90 ] && break; done
    if [ -n "${WARM:-}" ]; then
      head -c "${WARM}M" /dev/zero > /dev/shm/berth-warm
      rm -f /dev/shm/berth-warm
    fi
    t0=$(date +%s%N)
    OUT="$work/out" bash -c "${cmds[$i]}" > /dev/null 2>&1
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    printf '%-24s round %d: %6d ms\n' "${names[$i]}" "$r" "$ms"
    times[$i]="${times[$i]:-} $ms"
  done
done
echo
echo "(outputs left in $work/trash: remove them when done measuring)"

first_mean=""
for ((i = 0; i < n; i++)); do
  read -r mean median < <(echo "${times[$i]}" | tr ' ' '\n' | grep . | sort -n |
    awk '{v[NR] = $1; s += $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%d %d\n", s / NR, m}')
  first_mean=${first_mean:-$mean}
  printf '%-24s mean %6d ms  median %6d ms  x%s of the first\n' "${names[$i]}" "$mean" "$median" \
    "$(echo "scale=2; $mean / $first_mean" | bc)"
done
