#!/usr/bin/env bash
# Installs what berth's build, demo and tests need on a fresh Debian machine (run as root),
# checks the Rust toolchain (installing or updating stable through rustup when rustup is
# there), then builds berth.
set -euo pipefail
cd "$(dirname "$0")/.."
# Installed with --no-install-recommends, so everything the tests use is listed here, including
# what a package only recommends:
# gcc, libc6-dev (gcc only recommends it), g++: the linker and the C/C++ of build scripts (ring,
# zstd-sys; libFuzzer for scripts/fuzz.sh); ca-certificates, curl: crates.io and the rustup
# installer; busybox-static: test and demo rootfs (python3 builds the busybox image); jq:
# scripts; procps: `berth ps`; qemu-system-x86, linux-image-amd64 and xz-utils (compressed
# kernel modules): the pure cgroup v2 VM harness (cgroups/vm); tar, zstd, umoci, podman:
# extraction compared with GNU tar, umoci and podman; podman, containerd, docker.io: the engines
# that drive berth in the tests; catatonit: `podman run --init` (podman only recommends it);
# docker-registry, skopeo, apache2-utils (htpasswd): the registry tests; runc, crun, hyperfine:
# the peers and the tool of the benchmarks; nftables: NAT and published ports (netns);
# bzip2: the bzip2 archive `ADD` unpacks in the build tests; containernetworking-plugins
# (bridge, host-local, loopback in /usr/lib/cni) and protobuf-compiler (protoc, which the
# k8s-cri crate's build script runs): the CRI test (cri-tests), with containerd as its CRI
# server.
packages=(gcc libc6-dev g++ ca-certificates curl busybox-static python3 jq iproute2 procps
  qemu-system-x86 linux-image-amd64 xz-utils tar zstd umoci podman catatonit containerd
  docker.io docker-registry skopeo apache2-utils runc crun hyperfine nftables bzip2
  containernetworking-plugins protobuf-compiler)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# docker-py, a real Docker API client for berthd's tests (daemon/tests), into the python3 on
# PATH (a Debian python3 refuses plain pip installs: then --break-system-packages).
if ! python3 -c 'import docker' 2>/dev/null; then
  python3 -m pip install --quiet 'docker>=7,<8' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'docker>=7,<8' \
    || { apt-get install -y -qq --no-install-recommends python3-pip >/dev/null \
         && python3 -m pip install --quiet --break-system-packages 'docker>=7,<8'; }
fi

# Rust. Cargo.toml's rust-version (1.85) is what berth's own code needs; the dependencies
# pinned in Cargo.lock need more: 1.89 (uuid 1.29, through jsonschema, a dev-dependency).
# Debian bookworm's rustc (1.63) is far too old.
min_rust=1.89
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH" ;;
esac

# version_ge A B: true when version A >= version B (a -nightly/-beta suffix is ignored).
version_ge() {
  [ "$(printf '%s\n%s\n' "${1%%-*}" "$2" | sort -V | head -n1)" = "$2" ]
}

# The toolchain as found, for messages.
rust_found() {
  if command -v rustc >/dev/null; then
    echo "$(command -v rustc): $(rustc --version 2>&1 | head -n1)"
  else
    echo "no rustc on PATH"
  fi
}

# True when cargo, rustc >= min_rust, rustfmt and clippy (test.sh runs both) all work.
rust_ok() {
  command -v cargo >/dev/null && command -v rustc >/dev/null || return 1
  local v
  v=$(rustc --version 2>/dev/null | awk '{print $2}') && [ -n "$v" ] || return 1
  version_ge "$v" "$min_rust" || return 1
  cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1
}

if ! rust_ok; then
  if command -v rustup >/dev/null; then
    echo "setup: Rust >= $min_rust with rustfmt and clippy needed ($(rust_found)); installing stable with rustup"
    rustup toolchain install stable --profile minimal --component rustfmt,clippy
    # A default (or override) older than stable still wins: make stable the default.
    rust_ok || rustup default stable
  fi
  if ! rust_ok; then
    cat >&2 <<EOF
setup: berth needs Rust >= $min_rust with cargo, rustfmt and clippy; found $(rust_found).
Debian's rustc and cargo packages are too old. Install the stable toolchain with rustup
(https://rustup.rs), then run this script again:

  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
  . "\$HOME/.cargo/env"

(With rustup already installed, this script installs or updates stable itself.)
EOF
    exit 1
  fi
fi
echo "setup: $(rustc --version), $(cargo --version)"

# cargo-deny checks the dependency graph in scripts/test.sh (deny.toml).
if ! command -v cargo-deny >/dev/null; then
  echo "setup: installing cargo-deny (cargo install cargo-deny --locked)"
  cargo install cargo-deny --locked
fi

cargo build --release --locked -p berth
echo "built: ${CARGO_TARGET_DIR:-$(pwd)/target}/release/berth"
