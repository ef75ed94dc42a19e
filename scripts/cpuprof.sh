#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# cpuprof.sh - where the lab's CPUs go while a guest runs one load: CPU time per thread, and perf's hottest symbols.
#
# usage: [CPUPROF_BACKEND=file|ram] [CPUPROF_WHO="kernel user qemu"] scripts/cpuprof.sh [MODE [QD [SECONDS]]]
#        (default: ram write 32 40)
#
# In the lab (re-runs itself there when started on the host), one guest per VMM in CPUPROF_WHO runs
# sluice-load rand /dev/vda MODE QD SECONDS on a 128 MiB raw image (cache=none) on the lab's scratch disk
# or, with CPUPROF_BACKEND=ram, on a 128 MiB RAM block device (brd).  Over the load phase (from the guest's
# SLUICE-BLK-INFO line on) it takes
#   - the CPU time of every lab thread that ran (schedstat deltas over SECONDS/2 from 1 s in), as % of
#     one CPU, and per request;
#   - perf record -e cpu-clock -a -g (software clock: TCG has no PMU) over about the same window (perf
#     takes seconds to start in the lab), reported by thread and symbol.
# The VMMs are sluice's kernel dataplane (sluice_blk.ko loaded), its user dataplane (IOThread) and QEMU
# (virtio-blk-pci, IOThread, aio=io_uring).  Absolute numbers are the lab's; compare the VMMs' shares.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
MODE=${1:-write}
QD=${2:-32}
SECS=${3:-40}
WHO=${CPUPROF_WHO:-kernel user qemu}

if [ -z "${SLUICE_LAB_SCRATCH:-}" ]; then
	exec "$REPO/tests/lab/lab.sh" --timeout 1200 -- \
		"BUILD=$BUILD CPUPROF_BACKEND=${CPUPROF_BACKEND:-ram} CPUPROF_WHO='$WHO' scripts/cpuprof.sh $MODE $QD $SECS"
fi

[ "$SECS" -ge 30 ] || { echo "cpuprof: SECONDS is at least 30 (perf takes seconds to start in the lab)" >&2; exit 2; }
command -v perf >/dev/null || { echo "cpuprof: no perf" >&2; exit 1; }
kernel=/boot/vmlinuz-$(uname -r)
initrd=$BUILD/tests/vmm/initramfs.cpio.gz
work=$(mktemp -d)	# the lab's tmpfs: perf record maps its file
# shellcheck source=scripts/lab-disk.sh
. "$REPO/scripts/lab-disk.sh"
lab_disk cpuprof "${CPUPROF_BACKEND:-ram}" cpuprof
append="console=ttyS0 reboot=k panic=-1 quiet sluice.blk=load:$MODE:$QD:$SECS"
echo 0 >/proc/sys/kernel/kptr_restrict 2>/dev/null
echo -1 >/proc/sys/kernel/perf_event_paranoid 2>/dev/null

# threads: "tid comm run_ns" for every thread in the lab (schedstat's first field: time on a CPU).
threads() {
	local t ns comm
	for t in /proc/[0-9]*/task/[0-9]*; do	# no forks: this has to be quick in the lab
		{ read -r ns _ <"$t/schedstat" && read -r comm <"$t/comm"; } 2>/dev/null || continue	# gone meanwhile
		printf '%s %s %s\n' "${t##*/}" "${comm// /_}" "$ns"
	done
}

# run NAME COMMAND...: the guest under the profilers; one report.
run() {
	local name=$1 pid iops n wall t0 t1
	shift
	timeout -k 5 300 "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null &
	pid=$!
	while kill -0 $pid 2>/dev/null && ! grep -q SLUICE-BLK-INFO "$work/$name.out"; do sleep 0.05; done
	sleep 1	# past the load's start
	# perf in the background: in the lab it needs seconds to start and to stop, so the per-thread
	# times come from their own window, inside the load and while the guest's threads still live.
	perf record -q -e cpu-clock -F 499 -a -g -o "$work/$name.data" -- sleep $((SECS / 2)) 2>/dev/null &
	threads >"$work/$name.t0"
	t0=$EPOCHREALTIME
	sleep $((SECS / 2))
	threads >"$work/$name.t1"
	t1=$EPOCHREALTIME
	wait $!
	wait $pid
	iops=$(tr -d '\r' <"$work/$name.out" | awk -v m="$MODE" -v q="qd$QD" '$1 == "SLUICE-IOPS:" && $2 == m && $3 == q { print $4 }')
	[ -n "$iops" ] || { echo "$name: no IOPS line"; tail -5 "$work/$name.err"; return 1; }
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	n=$(awk -v i="$iops" -v w="$wall" 'BEGIN { printf "%d", i * w }')
	echo "== $name: $iops IOPS; over ${wall} s (~$n requests), CPU per thread (% of one CPU, us per request):"
	awk -v w="$wall" -v n="$n" 'NR == FNR { a[$1] = $3; next }
		{ d = $3 - ($1 in a ? a[$1] : 0); if (d > 0) { c[$2] += d; tot += d } }
		END { for (k in c) if (c[k] / (w * 1e9) >= 0.01)
			printf "  %-24s %6.1f%% %8.1f\n", k, 100 * c[k] / (w * 1e9), n ? c[k] / 1000 / n : 0
		      printf "  %-24s %6.1f%% %8.1f\n", "(all threads)", 100 * tot / (w * 1e9), n ? tot / 1000 / n : 0 }' \
		"$work/$name.t0" "$work/$name.t1" | sort -k2 -g -r
	echo "  perf, hottest (thread, symbol), % of samples:"
	perf report -q -i "$work/$name.data" --no-children --sort comm,sym --percent-limit 1.5 -g none 2>/dev/null |
		grep -v '^$' | head -40 | sed 's/^/  /'
}

for who in $WHO; do
	case $who in
	kernel)
		[ -c /dev/sluice-blk ] || { echo "cpuprof: sluice_blk.ko is not loaded"; continue; }
		run sluice-kernel "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
			--cpus 1 --mem 256M --drive file="$img",format=raw,cache=none,queues=1,dataplane=kernel ;;
	user)
		run sluice-user "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
			--cpus 1 --mem 256M --iothread id=io0 --drive file="$img",format=raw,cache=none,queues=1 ;;
	qemu)
		run qemu qemu-system-x86_64 -name cpuprof,debug-threads=on -enable-kvm -cpu host -smp 1 -m 256 \
			-nographic -no-reboot -nodefaults -serial stdio -kernel "$kernel" -initrd "$initrd" \
			-append "$append" -object iothread,id=io0 \
			-drive file="$img",if=none,id=d0,format=raw,cache=none,aio=io_uring \
			-device virtio-blk-pci,drive=d0,iothread=io0 ;;
	*)
		echo "cpuprof: CPUPROF_WHO names kernel, user or qemu" >&2 ;;
	esac
done
rm -rf "$work"
[ "$img" = /dev/ram0 ] || rm -f "$img"
