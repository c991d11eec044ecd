#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS, default 30) and fails on a
# crash. Seeds come from tests/fixtures (the engines' configs and the spec's example documents).
# cargo-fuzz needs nightly features (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 enables them on the
# stable toolchain that scripts/setup.sh checks, so no nightly is needed. libFuzzer is C++: g++
# (setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
fixtures="$(pwd)/tests/fixtures"
export RUSTC_BOOTSTRAP=1
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH" ;;
esac
command -v cargo >/dev/null || { echo "fuzz.sh: no cargo; run scripts/setup.sh first (it checks the Rust toolchain)" >&2; exit 1; }
command -v c++ >/dev/null || { echo "fuzz.sh: libFuzzer needs a C++ compiler: apt-get install g++ (scripts/setup.sh does)" >&2; exit 1; }
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked || {
    echo "fuzz.sh: could not install cargo-fuzz: it needs crates.io and the Rust toolchain scripts/setup.sh checks" >&2
    exit 1
  }
fi

seed() { # seed TARGET FILE...
  local dir="fuzz/corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/$(basename "$f")"; done
  return 0
}
seed config_parse "$fixtures"/engines/*.config.json "$fixtures"/runtime-spec/schema/test/config/*/*.json
if command -v jq >/dev/null; then
  mkdir -p fuzz/corpus/seccomp_compile
  for e in docker podman; do
    jq '.linux.seccomp' "$fixtures/engines/$e.example.config.json" > "fuzz/corpus/seccomp_compile/$e.json"
  done
fi
seed process_parse "$fixtures"/engines/*.exec-process.json
mkdir -p fuzz/corpus/state_parse
printf '%s' '{"ociVersion":"1.3.0","id":"c","status":"created","pid":42,"bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z"}' > fuzz/corpus/state_parse/created
mkdir -p fuzz/corpus/mountinfo && cp /proc/self/mountinfo fuzz/corpus/mountinfo/host
mkdir -p fuzz/corpus/mount_options && printf 'nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5' > fuzz/corpus/mount_options/devpts

cd fuzz
for target in $(cargo fuzz list); do
  # Inputs that once crashed are replayed first: a fixed finding must stay fixed.
  if [ -d "regressions/$target" ]; then
    echo "== replaying regressions/$target"
    cargo fuzz run "$target" "regressions/$target"/* -- -rss_limit_mb=4096
  fi
  echo "== fuzzing $target for ${seconds}s"
  cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096
done
