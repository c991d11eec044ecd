#!/usr/bin/env bash
# The test command: formatting, lints, and every test (integration tests start real
# containers, so run as root). Every step runs even when an earlier one fails, and every test
# binary runs even when another fails (--no-fail-fast); the summary at the end names the steps
# that failed, and the exit status is non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
# rustup's toolchain, when it is installed but not on PATH (setup.sh checks the version).
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH" ;;
esac

failed=()
# step NAME COMMAND...: runs COMMAND, remembering NAME if it fails.
step() {
  local name=$1
  shift
  echo "== $name"
  if ! "$@"; then
    echo "== FAILED: $name" >&2
    failed+=("$name")
  fi
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo deny (scripts/deny.sh)" bash scripts/deny.sh
step "cargo bench --no-run" cargo bench --workspace --locked --no-run
# The fuzz targets are their own workspace (cargo-fuzz builds them in scripts/fuzz.sh): check
# that they still compile against the libraries' APIs.
step "fuzz targets compile" cargo check --manifest-path fuzz/Cargo.toml --bins --locked
step "cargo test" cargo test --workspace --locked --no-fail-fast -- --test-threads 2
# The cgroup v2 suite, in a VM with every v2 controller (this host is hybrid).
step "cgroups/vm/test-v2.sh" bash cgroups/vm/test-v2.sh
step "cgroups/vm/test-containers-v2.sh" bash cgroups/vm/test-containers-v2.sh

echo
if [ "${#failed[@]}" -gt 0 ]; then
  echo "test.sh: ${#failed[@]} step(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  echo "(cargo test lists its failing binaries above, after 'targets failed:'; each binary's failing tests follow its 'failures:')" >&2
  exit 1
fi
echo "test.sh: every step passed"
