#!/usr/bin/env bash
# Builds a busybox bundle and runs a container in it with berth (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
berth="$(pwd)/target/release/berth"
bundle="$(mktemp -d /tmp/berth-demo.XXXXXX)"
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for app in $("$bundle/rootfs/bin/busybox" --list); do
  [ -e "$bundle/rootfs/bin/$app" ] || ln -s busybox "$bundle/rootfs/bin/$app"
done
cd "$bundle"
"$berth" spec
jq '.process.terminal = false | .process.args = ["sh", "-c", "echo hello from $(hostname), pid $$ in its own namespaces; uname -a"]' \
  config.json > config.json.new && mv config.json.new config.json
"$berth" --root "$bundle/state" run "demo-$$"
