#!/usr/bin/env bash
# Checks the dependency graph against deny.toml: licenses, duplicate versions and sources
# always; RustSec advisories when github.com (where the advisory database lives) can be
# reached, with a clear note when it cannot (crates.io may be reachable where GitHub is not).
set -uo pipefail
cd "$(dirname "$0")/.."
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH" ;;
esac
command -v cargo-deny >/dev/null || {
  echo "deny.sh: no cargo-deny; run scripts/setup.sh (it installs it) or cargo install cargo-deny --locked" >&2
  exit 1
}
cargo deny --locked check bans licenses sources || exit 1
out=$(cargo deny --locked check advisories 2>&1)
rc=$?
if [ "$rc" -ne 0 ] && grep -q "failed to fetch advisory database" <<<"$out"; then
  echo "deny.sh: advisories not checked: the RustSec database (github.com/RustSec/advisory-db) cannot be fetched from this machine"
  exit 0
fi
printf '%s\n' "$out"
exit "$rc"
