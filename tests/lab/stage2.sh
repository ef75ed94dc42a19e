#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# stage2.sh - runs in the lab guest, chrooted into the host's root: load kvm + sluice_blk, prepare scratch, run the command.
set -u
# shellcheck disable=SC1091
. "$LAB_OUT/lab.env" || { echo "lab: error: cannot read $LAB_OUT/lab.env"; exit 1; }
: "${LAB_REPO:?}" "${LAB_OUT:?}" "${LAB_KVER:?}" "${LAB_CMD:?}"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8
export SLUICE_LAB=1 SLUICE_LAB_OUT=$LAB_OUT SLUICE_LAB_KVER=$LAB_KVER SLUICE_LAB_SCRATCH=/run/scratch
export SLUICE_LAB_KMOD=$LAB_KMOD
err() { echo "lab: error: $*" | tee -a "$LAB_OUT/lab-error" >&2; }

# halt_poll_ns=0: a nested vCPU that halts would make the lab's (TCG) vCPU spin for nothing.
for m in kvm kvm_amd; do
	modprobe "$m" $([ "$m" = kvm ] && echo halt_poll_ns=0) || err "modprobe $m failed: /dev/kvm will be missing"
done

# Hold one idle VM (in-kernel irqchip, one vCPU that never runs) for the whole run.  Creating the
# first VM and destroying the last flip static keys (the scheduler's preempt-notifier key, KVM's
# LAPIC keys), and multi-threaded TCG sometimes runs a stale int3 of that live patching on the other
# vCPU: the lab kernel dies with "Oops: int3" in __schedule (seen on 6.12).  With a VM always
# present those keys never flip again.
if [ -c /dev/kvm ]; then
	python3 -c '
import fcntl, os, signal, time
kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
vm = fcntl.ioctl(kvm, 0xAE01, 0)        # KVM_CREATE_VM
fcntl.ioctl(vm, 0xAE60, 0)              # KVM_CREATE_IRQCHIP
fcntl.ioctl(vm, 0xAE41, 0)              # KVM_CREATE_VCPU 0
os.write(1, b"ready\n")
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True:
    time.sleep(3600)
' >"$LAB_OUT/kvm-hold.out" 2>&1 </dev/null &
	hold_pid=$!
	for _ in $(seq 50); do grep -q ready "$LAB_OUT/kvm-hold.out" 2>/dev/null && break; sleep 0.1; done
	grep -q ready "$LAB_OUT/kvm-hold.out" || err "could not create the idle VM: $(cat "$LAB_OUT/kvm-hold.out")"
fi

dev=
for s in /sys/block/vd*; do
	[ "$(cat "$s/serial" 2>/dev/null)" = sluice-scratch ] && dev=/dev/${s##*/}
done
mkdir -p /run/scratch
if [ -n "$dev" ] && modprobe ext4 && mkfs.ext4 -q -F -O ^has_journal "$dev" && mount "$dev" /run/scratch; then
	:
else
	err "the scratch disk could not be prepared"
fi

if [ -n "$LAB_KMOD" ]; then
	insmod "$LAB_KMOD" || err "insmod $LAB_KMOD failed"
fi

cd "$LAB_REPO" || exit 1
ulimit -l unlimited
bash -c "$LAB_CMD" </dev/null
rc=$?
[ -n "${hold_pid:-}" ] && kill "$hold_pid" 2>/dev/null
dmesg >"$LAB_OUT/dmesg" 2>/dev/null
echo "$rc" >"$LAB_OUT/rc"
sync
