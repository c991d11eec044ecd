#!/usr/bin/env bash
# Runs containers with berth (as root): from the default busybox image (built offline from
# Debian's busybox-static as an OCI layout, imported into berth's store), then from a plain
# bundle as runc would.
set -euo pipefail
cd "$(dirname "$0")/.."
berth="$(pwd)/target/release/berth"
work="$(mktemp -d /tmp/berth-demo.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# --network none keeps the demo off the host's network (the default, bridge, makes berth0 with NAT).
echo "== berth run busybox (an overlay root over the image's layers, removed at exit)"
python3 scripts/busybox-image.py "$work/busybox-layout" >/dev/null
"$berth" image import "$work/busybox-layout"
"$berth" images
"$berth" run --rm --network none busybox sh -c 'echo hello from $(hostname), pid $$ in its own namespaces, root on $(grep " / " /proc/mounts | cut -d" " -f3); uname -a'

echo "== berth run ID in a bundle (runc's form)"
bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for app in $("$bundle/rootfs/bin/busybox" --list); do
  [ -e "$bundle/rootfs/bin/$app" ] || ln -s busybox "$bundle/rootfs/bin/$app"
done
cd "$bundle"
"$berth" spec
jq '.process.terminal = false | .process.args = ["sh", "-c", "echo hello from a bundle, pid $$"]' \
  config.json > config.json.new && mv config.json.new config.json
"$berth" --root "$work/state" run "demo-$$"
