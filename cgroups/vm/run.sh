#!/usr/bin/env bash
# Runs one program inside a throwaway cgroup v2-only VM and exits with its status.
#
#   cgroups/vm/run.sh PROGRAM [ARGS...]
#
# Usable as a cargo runner, which is how cgroups/vm/test-v2.sh runs the v2 suite:
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=cgroups/vm/run.sh cargo test -p berth-cgroups --test v2
#
# The guest is Debian's kernel (linux-image-amd64) under qemu TCG, booted from the
# uncompressed vmlinux (PVH entry, about twice as fast as the bzImage under TCG) with
# cgroup_no_v1=all. Its root is the host's / shared read-only over virtio-9p with a tmpfs
# overlay on top, so PROGRAM and its libraries run unchanged. The program's output comes back
# on the second serial port, its exit status through a small writable 9p directory.
#
# Needs: qemu-system-x86 linux-image-amd64 busybox-static (apt-get install them).
# Environment: BERTH_VM_KERNEL (a /boot/vmlinuz-*), BERTH_VM_CACHE (default
# ${CARGO_TARGET_DIR:-/tmp}/berth-vm), BERTH_VM_TIMEOUT (seconds, default 1200),
# BERTH_VM_MEM (MiB, default 2048), BERTH_VM_CPUS (default 2).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 PROGRAM [ARGS...]" >&2; exit 2; }

need() { command -v "$1" >/dev/null || { echo "berth-vm: $1 not found; apt-get install $2" >&2; exit 2; }; }
need qemu-system-x86_64 qemu-system-x86
need busybox busybox-static
need python3 python3

kernel=${BERTH_VM_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n1 || true)}
[ -n "$kernel" ] && [ -r "$kernel" ] || { echo "berth-vm: no /boot/vmlinuz-*; apt-get install linux-image-amd64" >&2; exit 2; }
kver=${kernel##*/vmlinuz-}
[ -d "/lib/modules/$kver" ] || { echo "berth-vm: no /lib/modules/$kver for $kernel" >&2; exit 2; }

cache=${BERTH_VM_CACHE:-${CARGO_TARGET_DIR:-/tmp}/berth-vm}
mkdir -p "$cache"
lock="$cache/.lock"

# The uncompressed kernel and the initramfs are built once per kernel version.
build() {
    local vmlinux="$cache/vmlinux-$kver" initrd="$cache/initramfs-$kver.cpio"
    if [ ! -s "$vmlinux" ]; then
        python3 "$here/extract-vmlinux.py" "$kernel" "$vmlinux.tmp" && mv "$vmlinux.tmp" "$vmlinux"
    fi
    if [ ! -s "$initrd" ] || [ "$here/init.sh" -nt "$initrd" ]; then
        local root; root=$(mktemp -d)
        mkdir -p "$root/bin" "$root/modules" "$root/proc" "$root/sys" "$root/dev" "$root/lower" "$root/upper" "$root/newroot"
        cp /usr/bin/busybox "$root/bin/busybox"
        cp "$here/init.sh" "$root/init"
        chmod 755 "$root/init"
        : > "$root/modules/order"
        # Dependencies first, each module once.
        for m in virtio_pci 9pnet_virtio 9p overlay; do
            modprobe -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
        done | awk '!seen[$0]++' | while read -r ko; do
            local name; name=$(basename "$ko")
            case "$ko" in
                *.xz) xz -dc "$ko" > "$root/modules/${name%.xz}"; name=${name%.xz} ;;
                *.zst) zstd -dqc "$ko" > "$root/modules/${name%.zst}"; name=${name%.zst} ;;
                *) cp "$ko" "$root/modules/$name" ;;
            esac
            echo "$name" >> "$root/modules/order"
        done
        (cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) > "$initrd.tmp"
        mv "$initrd.tmp" "$initrd"
        rm -rf "$root"
    fi
}
(flock 9; build) 9>"$lock"

xfer=$(mktemp -d "${TMPDIR:-/tmp}/berth-vm-xfer.XXXXXX")
cleanup() { rm -rf "$xfer"; }
trap cleanup EXIT
cp "$here/guest.sh" "$xfer/guest.sh"
{
    printf 'cd %q\n' "$PWD"
    # What the program needs from the environment cargo gave it.
    for v in $(compgen -e); do
        case "$v" in
            CARGO*|RUST*|PATH|HOME|TERM|BERTH_*|PROPTEST_*) printf 'export %s=%q\n' "$v" "${!v}" ;;
        esac
    done
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
} > "$xfer/cmd"
: > "$xfer/out"

timeout_s=${BERTH_VM_TIMEOUT:-1200}
start=$(date +%s)
tail -n +1 -f "$xfer/out" &
tailpid=$!
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
    -accel tcg -cpu max -m "${BERTH_VM_MEM:-2048}" -smp "${BERTH_VM_CPUS:-2}" \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$cache/vmlinux-$kver" -initrd "$cache/initramfs-$kver.cpio" \
    -append "console=ttyS0 quiet panic=-1 cryptomgr.notests tsc=reliable cgroup_no_v1=all" \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=xfer,path="$xfer",security_model=none \
    -device virtio-9p-pci,fsdev=xfer,mount_tag=xfer \
    -serial file:"$xfer/console" -serial file:"$xfer/out"
qrc=$?
set -e
sleep 0.3
kill "$tailpid" 2>/dev/null || true
wait "$tailpid" 2>/dev/null || true
echo "berth-vm: guest ran $(( $(date +%s) - start ))s" >&2
if [ -s "$xfer/status" ]; then
    exit "$(cat "$xfer/status")"
fi
echo "berth-vm: no exit status from the guest (qemu exit $qrc); guest console:" >&2
tail -n 50 "$xfer/console" >&2 || true
exit 125
