#!/usr/bin/env bash
# Installs what berth's build, demo and tests need on a fresh Debian machine (run as root),
# then builds berth.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v busybox >/dev/null || ! dpkg -s busybox-static >/dev/null 2>&1 || ! command -v jq >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq busybox-static jq iproute2 >/dev/null
fi
cargo build --release --locked -p berth
echo "built: $(pwd)/target/release/berth"
