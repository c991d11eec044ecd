#!/bin/sh
# Runs in the VM's overlay root: mount cgroup2 with every controller enabled for children,
# add a ram disk (brd) for the io tests, run the command from the host, hand back its status.
# When this script (PID 1) exits the kernel panics, and panic=-1 with -no-reboot ends qemu.
x=/run/berth-vm
# Scratch space for the tests (TMPDIR), not over /tmp: the workspace and its target dir may live
# under the host's /tmp (CI clones there), and they must stay visible.
mkdir -p /var/tmp/berth-vm && mount -t tmpfs tmpfs /var/tmp/berth-vm
export TMPDIR=/var/tmp/berth-vm
mount -t tmpfs tmpfs /run/lock 2>/dev/null || true
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control
done
modprobe brd rd_nr=1 rd_size=65536 2>/dev/null || echo "berth-vm: no brd" > /dev/ttyS1
hostname berth-vm
# Through a pipe, so the program sees no terminal (no colour codes in CI logs).
{
    echo "berth-vm: $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
    sh "$x/cmd"
    echo $? > "$x/status.tmp"
} 2>&1 | cat > /dev/ttyS1
mv "$x/status.tmp" "$x/status"
sync
