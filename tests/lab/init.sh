#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# init.sh - /init of the lab initramfs: reach the host's root over virtio-9p, then run stage2.sh inside it.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
	echo "lab(init): $*"
	poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
	insmod "/lib/modules/$m" || fail "insmod $m failed"
done </modules.list

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 labout /out || fail "cannot mount the results share"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot ||
	fail "cannot mount the host root share"
[ -f /out/lab.env ] || fail "no /out/lab.env"
# Plain paths only here (the command itself is read by stage 2, in bash).
LAB_REPO=$(sed -n 's/^LAB_REPO=//p' /out/lab.env)
LAB_OUT=$(sed -n 's/^LAB_OUT=//p' /out/lab.env)
export LAB_REPO LAB_OUT

for d in proc sys dev run tmp; do
	[ -d "/newroot/$d" ] || fail "host root has no /$d"
done
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
ln -sf /proc/self/fd /newroot/dev/fd
ln -sf /proc/self/fd/0 /newroot/dev/stdin
ln -sf /proc/self/fd/1 /newroot/dev/stdout
ln -sf /proc/self/fd/2 /newroot/dev/stderr
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tracefs tracefs /newroot/sys/kernel/tracing
mount -t debugfs debugfs /newroot/sys/kernel/debug
[ -d "/newroot$LAB_OUT" ] || fail "$LAB_OUT is not visible through the host root share"
mount --bind /out "/newroot$LAB_OUT"

chroot /newroot /bin/bash "$LAB_REPO/tests/lab/stage2.sh" || echo "lab(init): stage 2 failed"
sync
umount "/newroot$LAB_OUT" 2>/dev/null
umount /out 2>/dev/null
poweroff -f
