#!/bin/busybox sh
# PID 1 of the VM's initramfs: load the 9p/overlay modules, mount the host's / read-only with
# a tmpfs overlay, and switch into it (pivot_root cannot leave an initramfs root; switch_root
# deletes the initramfs and chroots) to run guest.sh from the transfer directory.
/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
    insmod "/modules/$m" || echo "berth-vm init: insmod $m failed" > /dev/ttyS0
done
fail() { echo "berth-vm init: $*" > /dev/ttyS0; exit 1; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower || fail "mount hostroot"
mount -t tmpfs -o mode=755 tmpfs /upper || fail "mount tmpfs"
mkdir -p /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /newroot || fail "mount overlay"
mkdir -p /newroot/run/berth-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 xfer /newroot/run/berth-vm || fail "mount xfer"
for d in proc sys dev; do
    mkdir -p "/newroot/$d"
    mount --move "/$d" "/newroot/$d"
done
exec switch_root /newroot /bin/sh /run/berth-vm/guest.sh
