#!/usr/bin/env bash
# Real berth containers under pure cgroup v2: cli/tests/cgroups_v2.rs inside the VM (cargo
# builds on the host; the test binary and the berth it drives run in the guest).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$here/run.sh"
exec cargo test -p berth --test cgroups_v2 "$@"
