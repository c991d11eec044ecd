#!/usr/bin/env bash
# The cgroup v2 suite (cgroups/tests/v2.rs) inside the VM: cargo builds it on the host and
# runs the test binary through cgroups/vm/run.sh.
#   cgroups/vm/test-v2.sh [cargo test args after --, e.g. -- --test-threads 1]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$here/run.sh"
exec cargo test -p berth-cgroups --test v2 "$@"
