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
echo "A Linux guest with a virtio-blk disk (virtio-pci, MSI-X, user dataplane on an IOThread): it writes,"
echo "reads back and checks 2 MiB, discards, zeroes; meanwhile the control socket is asked about the disk."
IMG=${SLUICE_LAB_SCRATCH:-$B}/demo-disk.img
CTL=${SLUICE_LAB_SCRATCH:-$B}/demo.sock
head -c 32M /dev/zero | tr '\0' '\377' >"$IMG"
"$B/user/vmm/sluice" --kernel "/boot/vmlinuz-$(uname -r)" --initrd "$B/tests/vmm/initramfs.cpio.gz" \
	--append "console=ttyS0 reboot=k panic=-1 quiet sluice.blk=verify" --cpus 2 --iothread id=io0 \
	--iothread id=io1 --control "$CTL" --drive file="$IMG",format=raw,id=demo,queues=2 </dev/null |
	tr -d '\r' | grep -E '^SLUICE-(BLK|PCI|IRQ)' &
for _ in $(seq 100); do [ -S "$CTL" ] && break; sleep 0.1; done
sleep 20
step "$B/user/tools/sluice-ctl" "$CTL" query-block || true
wait
step sh -c "dd if='$IMG' bs=64k skip=16 count=32 status=none | md5sum   # the host's view of what the guest wrote"
rm -f "$IMG"
