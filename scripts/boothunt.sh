#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# boothunt.sh - boot many guests in a row under L1 KVM tracing and keep the evidence of any that does not reach /init cleanly.
#
# usage: [CPUS=N] [BOOTHUNT_KVER=6.1|6.12] scripts/boothunt.sh [BOOTS]      (default: 1 vCPU, 100 boots, 6.12 lab)
#
# In the lab (re-runs itself there when started on the host), it boots the test initramfs BOOTS times,
# as boot.sh does (console=ttyS0 reboot=k panic=-1 quiet, one shared --kernel-cache), with the lab
# kernel's kvm tracepoints on (kvm_exit, kvm_entry, kvm_inj_exception, kvm_page_fault, kvm_inj_virq,
# kvm_pio, kvm_msr, kvm_cr, kvm_userspace_exit) in an 8 MiB per-CPU ring.  Tracing stops when a guest
# ends.  A guest that exits non-zero, never prints the /init marker, or leaves "triple fault" or
# "error" on sluice's stderr gets its console, stderr, the last 3000 trace lines (the kvm_exit before a
# shutdown still has the faulting rip: SVM resets the vCPU only after it) and the lab's dmesg saved as
# failN.{out,err,trace,dmesg} in the results directory.  One line per boot on stdout; exit status 1
# when any boot failed.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
BOOTS=${1:-100}

if [ -z "${SLUICE_LAB_OUT:-}" ]; then
	exec "$REPO/tests/lab/lab.sh" --kver "${BOOTHUNT_KVER:-6.12}" --timeout $((BOOTS * 30 + 300)) -- \
		"BUILD=$BUILD CPUS=${CPUS:-1} scripts/boothunt.sh $BOOTS"
fi

SLUICE=$BUILD/user/vmm/sluice
INITRD=$BUILD/tests/vmm/initramfs.cpio.gz
KERNEL=/boot/vmlinuz-$(uname -r)
O=$SLUICE_LAB_OUT
T=/sys/kernel/tracing
W=$(mktemp -d)
trap 'echo 0 >$T/tracing_on; rm -rf "$W"' EXIT
[ -d $T/events/kvm ] || mount -t tracefs nodev $T 2>/dev/null
[ -d $T/events/kvm/kvm_exit ] || { echo "boothunt: no kvm tracepoints" >&2; exit 1; }
echo 8192 >$T/buffer_size_kb
for e in kvm_exit kvm_entry kvm_inj_exception kvm_page_fault kvm_inj_virq kvm_pio kvm_msr kvm_cr kvm_userspace_exit; do
	[ -e $T/events/kvm/$e/enable ] && echo 1 >$T/events/kvm/$e/enable
done
mkdir -m 700 "$W/kc"
failed=0
for i in $(seq "$BOOTS"); do
	echo >$T/trace
	echo 1 >$T/tracing_on
	start=$EPOCHREALTIME
	timeout -k 5 150 "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --cpus "${CPUS:-1}" --kernel-cache "$W/kc" \
		--append "console=ttyS0 reboot=k panic=-1 quiet" >"$W/o" 2>"$W/e" </dev/null
	rc=$?
	echo 0 >$T/tracing_on
	init=$(grep -c 'SLUICE-MARKER: init is running' "$W/o")
	printf 'boot %d rc=%d init=%d %.1f s %s\n' "$i" "$rc" "$init" \
		"$(awk "BEGIN { print $EPOCHREALTIME - $start }")" "$(tr '\n' ' ' <"$W/e" | cut -c1-200)"
	if [ "$rc" != 0 ] || [ "$init" = 0 ] || grep -q 'triple fault\|error' "$W/e"; then
		failed=$((failed + 1))
		cp "$W/o" "$O/fail$i.out"
		cp "$W/e" "$O/fail$i.err"
		tail -n 3000 $T/trace >"$O/fail$i.trace"
		dmesg | tail -n 50 >"$O/fail$i.dmesg"
	fi
done
if [ "$failed" = 0 ]; then
	echo "$BOOTS clean, 0 failed"
else
	echo "$((BOOTS - failed)) clean, $failed failed (evidence in $O)"
fi
[ "$failed" = 0 ]
