#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# exitprof.sh - where a guest request's cost goes, per VMM: KVM exits by reason, exits to userspace and syscalls per I/O.
#
# usage: [EXITPROF_BACKEND=file|ram] scripts/exitprof.sh [MODE [QD [SECONDS]]]      (default: file read 1 5)
#
# In the lab (re-runs itself there when started on the host), one guest per VMM runs
# sluice-load rand /dev/vda MODE QD SECONDS on a 128 MiB raw image (cache=none) on the lab's scratch
# disk, or with EXITPROF_BACKEND=ram on a 128 MiB RAM block device (brd: the backend's cost drops out and
# what is left is the dataplane's and the guest's): sluice's user dataplane
# (IOThread), sluice's kernel dataplane (when sluice_blk.ko is loaded) and QEMU (virtio-blk-pci, IOThread,
# aio=io_uring), each with notify by port and by MMIO write.  Counts come from tracefs histograms (kvm:kvm_exit by SVM/VMX exit code,
# kvm:kvm_userspace_exit, kvm:kvm_msr, kvm:kvm_pio, raw_syscalls:sys_enter per thread) over the load
# phase (from the guest's SLUICE-BLK-INFO line to its exit), divided by the load's requests.  Each VMM
# runs with port-write and MMIO-write queue notifies.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
MODE=${1:-read}
QD=${2:-1}
SECS=${3:-5}

if [ -z "${SLUICE_LAB_SCRATCH:-}" ]; then
	exec "$REPO/tests/lab/lab.sh" --timeout 1200 -- \
		"BUILD=$BUILD EXITPROF_BACKEND=${EXITPROF_BACKEND:-file} scripts/exitprof.sh $MODE $QD $SECS"
fi

T=/sys/kernel/tracing
[ -d $T/events/kvm ] || mount -t tracefs nodev $T 2>/dev/null
[ -d $T/events/kvm/kvm_exit ] || { echo "exitprof: no kvm tracepoints" >&2; exit 1; }
kernel=/boot/vmlinuz-$(uname -r)
initrd=$BUILD/tests/vmm/initramfs.cpio.gz
work=$(mktemp -d)
# shellcheck source=scripts/lab-disk.sh
. "$REPO/scripts/lab-disk.sh"
lab_disk exitprof "${EXITPROF_BACKEND:-file}" exitprof
append="console=ttyS0 reboot=k panic=-1 quiet sluice.blk=load:$MODE:$QD:$SECS"
hists="kvm/kvm_exit:exit_reason kvm/kvm_userspace_exit:reason kvm/kvm_msr:ecx.hex,write kvm/kvm_pio:port.hex,rw
	raw_syscalls/sys_enter:common_pid.execname,id.syscall sched/sched_switch:prev_comm
	io_uring/io_uring_queue_async_work:common_pid.execname"

# hist_on / hist_clear / hist_off: one histogram per event, keyed as listed in $hists.
hist_on() {
	local h ev key
	for h in $hists; do
		ev=${h%%:*}; key=${h#*:}
		echo "hist:keys=$key:vals=hitcount:sort=hitcount.descending:size=4096" >"$T/events/$ev/trigger"
	done
}
hist_clear() {
	local h ev key
	for h in $hists; do
		ev=${h%%:*}; key=${h#*:}
		echo "hist:keys=$key:vals=hitcount:sort=hitcount.descending:size=4096:clear" >>"$T/events/$ev/trigger"
	done
}
hist_off() {
	local h ev key
	for h in $hists; do
		ev=${h%%:*}; key=${h#*:}
		cp "$T/events/$ev/hist" "$work/$1.$(basename "$ev").hist"
		echo "!hist:keys=$key:vals=hitcount:sort=hitcount.descending:size=4096" >>"$T/events/$ev/trigger"
	done
}

# run NAME COMMAND...: the guest under histograms; prints the requests of its load phase.
run() {
	local name=$1 iops pid
	shift
	hist_on
	timeout -k 5 300 "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null &
	pid=$!
	# Count the load phase only: from the guest's disk listing (just before the load) to its end.
	while kill -0 $pid 2>/dev/null && ! grep -q SLUICE-BLK-INFO "$work/$name.out"; do sleep 0.05; done
	hist_clear
	wait $pid
	hist_off "$name"
	tr -d '\r' <"$work/$name.out" | grep -E 'SLUICE-(IRQ|CLOCK)' | sed "s/^/  $name: /"
	iops=$(tr -d '\r' <"$work/$name.out" | awk -v m="$MODE" -v q="qd$QD" '$1 == "SLUICE-IOPS:" && $2 == m && $3 == q { print $4 }')
	[ -n "$iops" ] || { echo "$name: no IOPS line"; tail -5 "$work/$name.err"; return 1; }
	echo "$name $iops" >>"$work/iops"
}

# report NAME: the histograms of one run, per I/O.
report() {
	local name=$1 iops n
	iops=$(awk -v n="$name" '$1 == n { print $2 }' "$work/iops")
	n=$(awk -v i="$iops" -v s="$SECS" 'BEGIN { printf "%d", i * s }')
	echo "== $name: $iops IOPS, $n requests in the load phase"
	for h in kvm_exit kvm_userspace_exit kvm_msr kvm_pio sys_enter sched_switch io_uring_queue_async_work; do
		awk -v n="$n" -v h="$h" '
			/^{/ { sub(/^{ */, ""); split($0, a, "}"); key = a[1]; sub(/ +$/, "", key)
			       gsub(/^[a-z_.]+: */, "", key); hc = $0; sub(/.*hitcount: */, "", hc)
			       if (++shown <= 12) printf "  %-18.18s %-50.50s %9d %7.2f/io\n", h, key, hc, hc / n }
			/^Totals:/ { tot = 1 } tot && /Hits:/ { printf "  %-18.18s %-50.50s %9d %7.2f/io\n", h, "(all)", $2, $2 / n; tot = 0 }
		' "$work/$name.$h.hist"
	done
}

# Each dataplane twice: kicks by port write (notify=pio) and by MMIO write (notify=mmio); QEMU as it
# comes (MMIO notify) and with modern-pio-notify=on.
names=()
for nt in pio mmio; do
	run sluice-user-$nt "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
		--cpus 1 --mem 256M --iothread id=io0 --drive file="$img",format=raw,cache=none,queues=1,notify=$nt &&
		names+=(sluice-user-$nt)
	[ -c /dev/sluice-blk ] || continue
	run sluice-kernel-$nt "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
		--cpus 1 --mem 256M --drive file="$img",format=raw,cache=none,queues=1,dataplane=kernel,notify=$nt &&
		names+=(sluice-kernel-$nt)
done
for pio in off on; do
	run qemu-pio-$pio qemu-system-x86_64 -enable-kvm -cpu host -smp 1 -m 256 -nographic -no-reboot -nodefaults \
		-serial stdio -kernel "$kernel" -initrd "$initrd" -append "$append" -object iothread,id=io0 \
		-drive file="$img",if=none,id=d0,format=raw,cache=none,aio=io_uring \
		-device virtio-blk-pci,drive=d0,iothread=io0,modern-pio-notify=$pio && names+=(qemu-pio-$pio)
done
for n in "${names[@]}"; do report "$n"; done
rm -rf "$work"
[ "$img" = /dev/ram0 ] || rm -f "$img"
