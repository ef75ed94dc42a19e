#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# io_diff.sh - differential test: the same command scripts through qemu-io and sluice-io leave identical images.
#
#   io_diff.sh SLUICE_IO SCRATCH_DIR
# For cache=writeback and cache=none (when the scratch dir takes O_DIRECT), with -i io_uring and
# -i threads: a generated script of writes / zero writes / discards / truncates is applied by qemu-io
# to image A and by sluice-io to image B; A and B must be byte-identical, and each tool's read -P
# must verify the other's image against the script's model.

SLUICE_IO=$(realpath "$1")
SCRATCH=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/ktap.sh"

SIZE=$((4 << 20))
mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)

# Turn a file of commands into -c arguments in the array CARGS.
load_cmds() {
	local line
	CARGS=()
	while IFS= read -r line; do
		[ -n "$line" ] && CARGS+=(-c "$line")
	done <"$1"
}

# The timing part of qemu-io's report line ("4 KiB, 1 ops; 00.00 sec (...)") differs run to run.
norm_timing() { sed -E 's/^([0-9.]+ [A-Za-z]+, [0-9]+ ops; ).*/\1TIME/'; }

odirect_ok() {
	dd if=/dev/zero of="$SCRATCH/odirect-probe" bs=4096 count=1 oflag=direct 2>/dev/null
	local st=$?
	rm -f "$SCRATCH/odirect-probe"
	return $st
}

# run_config CACHE AIO SEED: three cases (identical images, sluice reads qemu's, qemu reads sluice's).
run_config() {
	local cache=$1 aio=$2 seed=$3 tag="cache=$1 aio=$2"
	local a="$SCRATCH/a-$cache-$aio.img" b="$SCRATCH/b-$cache-$aio.img"
	local cmds="$SCRATCH/cmds-$cache-$aio.txt" verify="$SCRATCH/verify-$cache-$aio.txt"
	local skip="" out st

	if ! command -v qemu-io >/dev/null; then
		skip="qemu-io is not installed"
	elif [ "$cache" = none ] && ! odirect_ok; then
		skip="the filesystem of $SCRATCH refuses O_DIRECT"
	fi
	if [ -n "$skip" ]; then
		for n in 1 2 3; do
			KTAP_SKIP_REASON=$skip
			ktap_result 4 "$tag: case $n"
		done
		return
	fi

	if ! python3 "$HERE/gen_io_script.py" "$seed" "$SIZE" "$cmds" "$verify" || [ ! -s "$cmds" ] ||
	   [ ! -s "$verify" ]; then
		# Two empty scripts would leave two identical untouched images: not a pass.
		ktap_diag "generating the script failed"
		for n in 1 2 3; do ktap_result 1 "$tag: case $n (no script)"; done
		return
	fi
	rm -f "$a" "$b"
	truncate -s "$SIZE" "$a" "$b"
	load_cmds "$cmds"

	qemu-io -f raw -t "$cache" -i "$aio" "${CARGS[@]}" "$a" >"$a.out" 2>&1
	st=$?
	if [ $st -ne 0 ]; then
		tail -5 "$a.out" | sed 's/^/# qemu-io: /'
		ktap_diag "qemu-io exited with $st"
	fi
	"$SLUICE_IO" -f raw -t "$cache" -i "$aio" "${CARGS[@]}" "$b" >"$b.out" 2>&1
	st=$?
	[ $st -eq 0 ] || { grep -v ' ops; ' "$b.out" | tail -5 | sed 's/^/# sluice-io: /'
			   ktap_diag "sluice-io exited with $st"; }
	if [ $st -eq 0 ] && cmp "$a" "$b" >/dev/null; then
		if diff <(norm_timing <"$a.out") <(norm_timing <"$b.out") >/dev/null; then
			ktap_result 0 "$tag: identical images and output (timings aside)"
		else
			diff <(norm_timing <"$a.out") <(norm_timing <"$b.out") | head -10 | sed 's/^/# /'
			ktap_result 1 "$tag: identical images and output (timings aside)"
		fi
	else
		cmp "$a" "$b" 2>&1 | sed 's/^/# /'
		ktap_diag "sizes: $(stat -c %s "$a") vs $(stat -c %s "$b")"
		ktap_result 1 "$tag: identical images and output (timings aside)"
	fi

	load_cmds "$verify"
	out=$("$SLUICE_IO" -r -f raw -t "$cache" -i "$aio" "${CARGS[@]}" "$a" 2>&1)
	st=$?
	[ $st -eq 0 ] || printf '%s\n' "$out" | grep -B1 -A1 -i 'fail' | head -6 | sed 's/^/# /'
	ktap_result $st "$tag: sluice-io read -P verifies qemu-io's writes"

	out=$(qemu-io -r -f raw -t "$cache" -i "$aio" "${CARGS[@]}" "$b" 2>&1)
	st=$?
	[ $st -eq 0 ] || printf '%s\n' "$out" | grep -B1 -A1 -i 'fail' | head -6 | sed 's/^/# /'
	ktap_result $st "$tag: qemu-io read -P verifies sluice-io's writes"
	[ $st -ne 0 ] || rm -f "$a" "$b" "$a.out" "$b.out"
}

# Assorted commands (dumps, vectors, length, info, map, truncate, pattern mismatch): same stdout.
misc_output() {
	local a="$SCRATCH/misc-a.img" b="$SCRATCH/misc-b.img"
	if ! command -v qemu-io >/dev/null; then
		KTAP_SKIP_REASON="qemu-io is not installed"
		return 4
	fi
	rm -f "$a" "$b"
	truncate -s 1M "$a" "$b"
	CARGS=(-c 'write -P 0x41 100 5000' -c 'read -v 90 40' -c 'readv -P 0x41 100 1000 4000'
	       -c 'writev 0 1 2 3' -c 'write -z 8k 4k' -c 'write -z -u 12k 4k' -c 'discard 64k 64k'
	       -c 'length' -c 'info' -c 'map' -c 'truncate 3M' -c 'length' -c 'map'
	       -c 'read -P 0x41 100 5001' -c 'read -P 0x41 -s 1 -l 10 99 12' -c 'read -q 0 1'
	       -c 'read 0 1.5k' -c 'read -v 0 1M' -c 'flush' -c 'aio_flush' -c 'write -f 0x10 0x20')
	diff <(qemu-io -f raw "${CARGS[@]}" "$a" 2>&1 | norm_timing) \
	     <("$SLUICE_IO" -f raw "${CARGS[@]}" "$b" 2>&1 | norm_timing) | head -20 | sed 's/^/# /'
	[ "${PIPESTATUS[0]}" -eq 0 ] && cmp "$a" "$b" && rm -f "$a" "$b"
}

ktap_plan 13
ktap_run_fn "assorted commands print what qemu-io prints" misc_output
run_config writeback io_uring 11
run_config writeback threads 12
run_config none io_uring 13
run_config none threads 14
ktap_finish
