#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bench_smoke.sh - sluice-img bench runs to completion (reads and writes, io_uring and threads, flushes, O_DIRECT).
#
#   bench_smoke.sh SLUICE_IMG SLUICE_IO SCRATCH_DIR
# Only checks that the runs complete and print qemu-img bench's lines; timings are never asserted.

SLUICE_IMG=$(realpath "$1")
SLUICE_IO=$(realpath "$2")
SCRATCH=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/ktap.sh"

mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
IMG=$SCRATCH/bench.img
rm -f "$IMG"
"$SLUICE_IMG" create -q -f raw "$IMG" 16M || exit 1

odirect_ok() {
	dd if=/dev/zero of="$SCRATCH/odirect-probe" bs=4096 count=1 oflag=direct 2>/dev/null
	local st=$?
	rm -f "$SCRATCH/odirect-probe"
	return $st
}

# bench NAME EXPECTED_SENDING_LINE ARGS...: the run exits 0 and prints the Sending, Run completed and IOPS lines.
bench() {
	local name=$1 sending=$2 out st
	shift 2
	out=$("$SLUICE_IMG" bench -f raw "$@" "$IMG" 2>&1)
	st=$?
	printf '%s\n' "$out" | sed 's/^/# /'
	if [ $st -eq 0 ] && printf '%s\n' "$out" | grep -qxF "$sending" &&
	   printf '%s\n' "$out" | grep -qE '^Run completed in [0-9]+\.[0-9]{3} seconds\.$' &&
	   printf '%s\n' "$out" | grep -qE '^IOPS: [0-9]+$'; then
		ktap_result 0 "$name"
	else
		ktap_diag "exit status $st"
		ktap_result 1 "$name"
	fi
}

S4K="4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)"
ktap_plan 11
for aio in io_uring threads; do
	bench "read, -i $aio" "Sending 20000 read requests, $S4K" -c 20000 -i $aio
	bench "write, -i $aio" "Sending 20000 write requests, $S4K" -c 20000 -w -i $aio
done
bench "write with flushes (drained)" "Sending flush every 500 requests" -c 5000 -w --flush-interval=500
bench "write with flushes, --no-drain" "Sending flush every 10 requests" -c 5000 -w -d 16 --flush-interval=10 --no-drain
bench "depth 1, 64 KiB buffers, 1 MiB step, wrapping" \
	"Sending 100 read requests, 65536 bytes each, 1 in parallel (starting at offset 4096, step size 1048576)" \
	-c 100 -d 1 -s 64k -S 1M -o 4k
# qemu-img reads -c/-d/--pattern/--flush-interval with base 0: 010 is 8, 0x10 is 16.
bench "numbers read as qemu-img reads them (0 octal, 0x hex)" \
	"Sending 8 read requests, 4096 bytes each, 16 in parallel (starting at offset 0, step size 4096)" \
	-c 010 -d 0x10
if odirect_ok; then
	bench "read, -n (O_DIRECT)" "Sending 5000 read requests, $S4K" -c 5000 -n
	bench "write, -t none, unaligned 1.5 KiB buffers" \
		"Sending 2000 write requests, 1536 bytes each, 8 in parallel (starting at offset 0, step size 1536)" \
		-c 2000 -d 8 -s 1.5k -w -t none
else
	KTAP_SKIP_REASON="the filesystem of $SCRATCH refuses O_DIRECT"
	ktap_result 4 "read, -n (O_DIRECT)"
	KTAP_SKIP_REASON="the filesystem of $SCRATCH refuses O_DIRECT"
	ktap_result 4 "write, -t none, unaligned 1.5 KiB buffers"
fi

# The pattern lands where the requests go: 1000 x 4 KiB from offset 1 MiB.
pattern_written() {
	"$SLUICE_IMG" bench -f raw -c 1000 -w -o 1M --pattern=90 "$IMG" >/dev/null || return 1
	"$SLUICE_IO" -r -f raw -c 'read -q -P 0 0 1M' -c 'read -q -P 90 1M 4000k' \
		-c 'read -q -P 0 5096k 11288k' "$IMG"
}
ktap_run_fn "write --pattern: the image holds the pattern exactly where written" pattern_written

rm -rf "$SCRATCH"
ktap_finish
