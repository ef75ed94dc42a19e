#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# boothunt.sh - boot many guests in a row under L1 KVM tracing and keep the evidence of any that does not reach /init cleanly.
#
# usage: [CPUS=N] [BOOTHUNT_KVER=6.1|6.12] [BOOTHUNT_LOAD=user|kernel [BOOTHUNT_DISK=file|ram]]
#        [BOOTHUNT_VMM=sluice|qemu|alternate] scripts/boothunt.sh [BOOTS]
#        (default: sluice, 1 vCPU, 100 boots, 6.12 lab, no disk)
#
# In the lab (re-runs itself there when started on the host), it boots the test initramfs BOOTS times,
# as boot.sh does (console=ttyS0 reboot=k panic=-1 quiet, one shared --kernel-cache), with the lab
# kernel's kvm tracepoints on (kvm_exit, kvm_entry, kvm_inj_exception, kvm_page_fault, kvm_inj_virq,
# kvm_pio, kvm_msr, kvm_cr, kvm_userspace_exit) in an 8 MiB per-CPU ring.  Tracing stops when a guest
# ends.  A guest that exits non-zero, never prints the /init marker, or leaves "triple fault" or
# "error" on sluice's stderr, or hangs (its console silent for 45 s: it then gets an NMI on the control
# socket and, booted with unknown_nmi_panic, panics with a backtrace of where it hung) gets its
# console, stderr, the last 3000 trace lines (20000 with a load; the kvm_exit before a shutdown
# still has the faulting rip: SVM resets the vCPU only after it) and the lab's dmesg saved as
# failN.{out,err,trace,dmesg} in the results directory.  One line per boot on stdout; exit status 1
# when any boot failed.  With BOOTHUNT_LOAD, each guest also gets a 128 MiB raw disk (cache=none; a file
# on the lab's scratch disk, or a RAM block device of random data with BOOTHUNT_DISK=ram: lab-disk.sh)
# on that dataplane, and runs the bench load on it (sluice.blk=bench: 4k random reads and writes, QD1
# and QD32, 5 s each), as scripts/bench.sh does; a guest that does not finish it (SLUICE-BLK-DONE) failed too.  The ring is then
# 32 MiB per CPU, about the last seconds of exits.  BOOTHUNT_VMM=qemu boots the same guests (and disk)
# under QEMU instead, =alternate under sluice and QEMU in turn: whether a failure is sluice's or the
# lab's shows in how often the peer fails in the same lab (QEMU's hangs get QMP's inject-nmi).
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
BOOTS=${1:-100}

if [ -z "${SLUICE_LAB_OUT:-}" ]; then
	per=30	# s per boot, with a margin
	[ -n "${BOOTHUNT_LOAD:-}" ] && per=70
	exec "$REPO/tests/lab/lab.sh" --kver "${BOOTHUNT_KVER:-6.12}" --timeout $((BOOTS * per + 300)) -- \
		"BUILD=$BUILD CPUS=${CPUS:-1} BOOTHUNT_VMM=${BOOTHUNT_VMM:-sluice} BOOTHUNT_LOAD=${BOOTHUNT_LOAD:-} BOOTHUNT_DISK=${BOOTHUNT_DISK:-file} scripts/boothunt.sh $BOOTS"
fi

SLUICE=$BUILD/user/vmm/sluice
CTL=$BUILD/user/tools/sluice-ctl
INITRD=$BUILD/tests/vmm/initramfs.cpio.gz
KERNEL=/boot/vmlinuz-$(uname -r)
O=$SLUICE_LAB_OUT
T=/sys/kernel/tracing
W=$(mktemp -d)
img=
trap 'echo 0 >$T/tracing_on; rm -rf "$W"; [ -z "$img" ] || [ "$img" = /dev/ram0 ] || rm -f "$img"' EXIT
[ -d $T/events/kvm ] || mount -t tracefs nodev $T 2>/dev/null
[ -d $T/events/kvm/kvm_exit ] || { echo "boothunt: no kvm tracepoints" >&2; exit 1; }
LOAD=${BOOTHUNT_LOAD:-}
drive=() qdrive=() append="console=ttyS0 reboot=k panic=-1 quiet unknown_nmi_panic"
limit=150 ring_kb=8192 keep_lines=3000	# per guest: seconds, trace ring per CPU, trace lines kept
case $LOAD in
'') ;;
user|kernel)
	# shellcheck source=scripts/lab-disk.sh
	. "$REPO/scripts/lab-disk.sh"
	lab_disk boothunt "${BOOTHUNT_DISK:-file}" boothunt
	drive=(--drive file="$img",format=raw,cache=none,queues=1,dataplane=$LOAD)
	[ "$LOAD" = user ] && drive=(--iothread id=io0 "${drive[@]}")
	# The peer's: QEMU's virtio-blk-pci on an IOThread, aio=io_uring.
	qdrive=(-object iothread,id=io0 -drive file="$img",if=none,id=d0,format=raw,cache=none,aio=io_uring
		-device virtio-blk-pci,drive=d0,iothread=io0)
	append="$append sluice.blk=bench"
	limit=300 ring_kb=32768 keep_lines=20000 ;;
*)
	echo "boothunt: BOOTHUNT_LOAD is user or kernel" >&2; exit 2 ;;
esac
echo $ring_kb >$T/buffer_size_kb
for e in kvm_exit kvm_entry kvm_inj_exception kvm_page_fault kvm_inj_virq kvm_pio kvm_msr kvm_cr kvm_userspace_exit; do
	[ -e $T/events/kvm/$e/enable ] && echo 1 >$T/events/kvm/$e/enable
done
# qmp_nmi SOCKET: QEMU's inject-nmi over QMP (greeting, capabilities, command).
qmp_nmi() {
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for c in ("qmp_capabilities", "inject-nmi"):
	f.write("{\"execute\": \"%s\"}\n" % c); f.flush(); f.readline()' "$1"
}

mkdir -m 700 "$W/kc"
failed=0 failed_qemu=0
for i in $(seq "$BOOTS"); do
	echo >$T/trace
	echo 1 >$T/tracing_on
	start=$EPOCHREALTIME
	rm -f "$W/ctl"
	vmm=sluice
	case ${BOOTHUNT_VMM:-sluice} in qemu) vmm=qemu ;; alternate) [ $((i % 2)) = 0 ] && vmm=qemu ;; esac
	if [ $vmm = sluice ]; then
		timeout -k 5 $limit "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" \
			--cpus "${CPUS:-1}" --kernel-cache "$W/kc" --control "$W/ctl" "${drive[@]}" --append "$append" \
			>"$W/o" 2>"$W/e" </dev/null &
	else
		# The peer, with the same guest and disk.
		timeout -k 5 $limit qemu-system-x86_64 -enable-kvm -cpu host \
			-smp "${CPUS:-1}" -m 256 -nographic -no-reboot -nodefaults -serial stdio \
			-qmp unix:"$W/ctl",server=on,wait=off -kernel "$KERNEL" -initrd "$INITRD" -append "$append" \
			"${qdrive[@]}" \
			>"$W/o" 2>"$W/e" </dev/null &
	fi
	pid=$!
	# A guest whose console has been silent for 45 s (a load case takes 5 s, a boot 10) hangs: an
	# NMI makes it panic (unknown_nmi_panic) with a backtrace of where it hangs, then it reboots.
	last=0 still=0 nmi=0
	while kill -0 $pid 2>/dev/null; do
		sleep 1
		size=$(stat -c %s "$W/o")
		if [ "$size" != "$last" ]; then last=$size still=0; continue; fi
		still=$((still + 1))
		if [ $still = 45 ] && [ $nmi = 0 ]; then
			nmi=1
			echo "boot $i: console silent for 45 s: inject-nmi"
			if [ $vmm = sluice ]; then
				"$CTL" "$W/ctl" inject-nmi >/dev/null
			else
				qmp_nmi "$W/ctl"
			fi
		fi
	done
	wait $pid
	rc=$?
	echo 0 >$T/tracing_on
	init=$(grep -c 'SLUICE-MARKER: init is running' "$W/o")
	done_=1
	[ -z "$LOAD" ] || done_=$(grep -c SLUICE-BLK-DONE "$W/o")
	printf 'boot %d %s rc=%d init=%d%s %.1f s %s\n' "$i" $vmm "$rc" "$init" "$([ -n "$LOAD" ] && echo " load-done=$done_")" \
		"$(awk "BEGIN { print $EPOCHREALTIME - $start }")" "$(tr '\n' ' ' <"$W/e" | cut -c1-200)"
	if [ "$rc" != 0 ] || [ "$init" = 0 ] || [ "$done_" = 0 ] || [ "$nmi" = 1 ] || grep -q 'triple fault\|error' "$W/e"; then
		failed=$((failed + 1))
		[ $vmm = qemu ] && failed_qemu=$((failed_qemu + 1))
		cp "$W/o" "$O/fail$i.out"
		cp "$W/e" "$O/fail$i.err"
		tail -n $keep_lines $T/trace >"$O/fail$i.trace"
		dmesg | tail -n 50 >"$O/fail$i.dmesg"
	fi
done
if [ "$failed" = 0 ]; then
	echo "$BOOTS clean, 0 failed"
else
	echo "$((BOOTS - failed)) clean, $failed failed ($failed_qemu of them under QEMU; evidence in $O)"
fi
[ "$failed" = 0 ]
