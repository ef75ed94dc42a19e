#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# demo-steps.sh - what the demo shows, on a host (or lab guest) where sluice_blk.ko is loaded and /dev/kvm works.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "sluice demo on Linux $(uname -r)"
step grep -E '^(sluice_blk|kvm_amd|kvm_intel|kvm) ' /proc/modules
step ls -l /dev/sluice-blk /dev/kvm
step sh -c "dmesg | grep -E 'sluice_blk: ABI' | tail -n 1"
echo
echo "The module's ABI, exercised from userspace:"
step "$B/tests/kmod/kmod_abi"
echo
echo "A tiny guest under KVM, and every exit it made to userspace, traced with BPF:"
step "$B/bpf/sluice-trace" exits -- "$B/tests/kvm/kvm_smoke"
echo
echo "A Linux guest with two virtio-blk disks (virtio-pci, MSI-X): 'fast' on the kernel dataplane (sluice_blk.ko"
echo "serves its 2 queues; no request visits userspace), 'slow' on the user dataplane (an IOThread). The guest"
echo "writes, reads back and checks data, flushes, discards and zeroes on both; sluice-trace measures every request."
D=${SLUICE_LAB_SCRATCH:-$B}
IMG=$D/demo-fast.img IMG2=$D/demo-slow.img CTL=$D/demo.sock
head -c 32M /dev/zero | tr '\0' '\377' >"$IMG"
cp "$IMG" "$IMG2"
"$B/bpf/sluice-trace" latency -D -Q >"$D/demo-trace.txt" 2>&1 &
TRACE=$!
sleep 2
"$B/user/vmm/sluice" --kernel "/boot/vmlinuz-$(uname -r)" --initrd "$B/tests/vmm/initramfs.cpio.gz" \
	--append "console=ttyS0 reboot=k panic=-1 quiet sluice.blk=verify" --cpus 2 --iothread id=io0 \
	--control "$CTL" --drive file="$IMG",format=raw,id=fast,queues=2,dataplane=kernel \
	--drive file="$IMG2",format=raw,id=slow,queues=1 </dev/null >"$D/demo-console.txt" 2>&1 &
VMM=$!
# While the guest runs: the control socket's and sysfs's view, the last answers kept.
while kill -0 $VMM 2>/dev/null; do
	"$B/user/tools/sluice-ctl" "$CTL" query-block >"$D/demo-qb.tmp" 2>/dev/null &&
		python3 -m json.tool "$D/demo-qb.tmp" >"$D/demo-qb.txt" 2>/dev/null
	grep -H . /sys/class/sluice_blk/fast/queues/*/completed /sys/class/sluice_blk/fast/queues/*/cpu \
		>"$D/demo-sysfs.tmp" 2>/dev/null && mv "$D/demo-sysfs.tmp" "$D/demo-sysfs.txt"
	sleep 0.5
done
wait $VMM
echo "The guest's own report (serial console):"
tr -d '\r' <"$D/demo-console.txt" | grep -E '^SLUICE-(BLK|PCI|IRQ)' || true
step cat "$D/demo-qb.txt"
step cat "$D/demo-sysfs.txt"
kill -INT $TRACE 2>/dev/null || true
wait $TRACE || true
step cat "$D/demo-trace.txt"
step sh -c "dd if='$IMG' bs=64k skip=16 count=32 status=none | md5sum   # the host's view of what the guest wrote"
rm -f "$IMG" "$IMG2" "$D"/demo-*.txt "$D"/demo-*.tmp
