#!/usr/bin/env bash
# The test command: formatting, lints, and every test (integration tests start real
# containers, so run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo bench --workspace --locked --no-run
cargo test --workspace --locked -- --test-threads 2
# The cgroup v2 suite, in a VM with every v2 controller (this host is hybrid).
bash cgroups/vm/test-v2.sh
bash cgroups/vm/test-containers-v2.sh
