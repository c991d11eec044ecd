#!/usr/bin/env bash
# Installs what berth's build, demo and tests need on a fresh Debian machine (run as root),
# then builds berth.
set -euo pipefail
cd "$(dirname "$0")/.."
# busybox-static: test and demo rootfs (python3 builds the busybox image); jq: scripts;
# procps: `berth ps`; qemu-system-x86 and linux-image-amd64: the pure cgroup v2 VM harness
# (cgroups/vm); tar, zstd, umoci, podman: extraction compared with GNU tar, umoci and podman;
# podman, containerd, docker.io: the engines that drive berth in the tests; docker-registry,
# skopeo, apache2-utils (htpasswd): the registry tests; runc, crun, hyperfine: the peers and
# the tool of the benchmarks; nftables: NAT and published ports (netns).
packages=(busybox-static python3 jq iproute2 procps qemu-system-x86 linux-image-amd64 tar zstd
  umoci podman containerd docker.io docker-registry skopeo apache2-utils runc crun hyperfine
  nftables)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --locked -p berth
echo "built: $(pwd)/target/release/berth"
