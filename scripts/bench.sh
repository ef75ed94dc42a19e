#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bench.sh - benchmarks (make bench), each printed as ratios against a peer run in the same invocation.
#
#   scripts/bench.sh [SECTION...]     run the given sections (default: all of them)
#   scripts/bench.sh --list           list the sections
#
# A section is a function bench_<name>; it prints a header and a table.  Peers are run alternately
# with the tool under test (peer, sluice, peer, sluice, ...) and the median of the runs is used, so
# that drifting machine state hurts both sides alike.  Environment: BUILD (default <repo>/build),
# RUNS (runs per side, default 3).

set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
RUNS=${RUNS:-3}
SECTIONS="block"

die() { echo "bench.sh: $*" >&2; exit 1; }

# median: the median of the numbers on stdin (one per line).
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'
}

# ratio A B: A / B with two decimals ("-" when B is 0 or missing).
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else printf "-" }'
}

# meets VALUE TARGET: "ok" or "MISS".
meets() {
	awk -v v="$1" -v t="$2" 'BEGIN { if (v != "-" && v + 0 >= t) print "ok"; else print "MISS" }'
}

# ---- section: block ----

# imgbench_iops COUNT CMD...: run a qemu-img-bench style command; print its IOPS (COUNT / seconds).
imgbench_iops() {
	local count=$1 out t
	shift
	out=$("$@" 2>&1) || { echo "bench.sh: '$*' failed: $out" >&2; echo 0; return; }
	t=$(printf '%s\n' "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p')
	awk -v c="$count" -v t="${t:-0}" 'BEGIN { if (t > 0) printf "%.0f\n", c / t; else print 0 }'
}

# fio_iops FILE DIRECT: 4k sequential reads at QD64 on io_uring for 1 s; print the IOPS.
fio_iops() {
	fio --name=ceiling --filename="$1" --ioengine=io_uring --rw=read --bs=4k --iodepth=64 \
	    --direct="$2" --time_based --runtime=1 --output-format=json 2>/dev/null |
		python3 -c 'import json, sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))' \
		2>/dev/null || echo 0
}

# make_image FILE: a 256 MiB image of random data (kept when it exists with that size).
make_image() {
	local f=$1 size=$((256 << 20))
	[ -f "$f" ] && [ "$(stat -c %s "$f")" -eq "$size" ] && return 0
	mkdir -p "$(dirname "$f")"
	dd if=/dev/urandom of="$f" bs=1M count=256 status=none
}

# block_case NAME FILE COUNT FIO_DIRECT QEMU_TARGET FIO_TARGET QEMU_ARGS -- SLUICE_ARGS:
# RUNS alternated runs of qemu-img bench and sluice-img bench (and fio when FIO_DIRECT is not "-")
# on FILE; one row of the table.
block_case() {
	local name=$1 file=$2 count=$3 fio_direct=$4 qt=$5 ft=$6
	local qargs=() sargs=() q=() s=() f=() i qm sm fm rq rf verdict
	shift 6
	while [ $# -gt 0 ] && [ "$1" != -- ]; do qargs+=("$1"); shift; done
	shift
	sargs=("$@")

	for ((i = 0; i < RUNS; i++)); do
		q+=("$(imgbench_iops "$count" qemu-img bench -f raw -c "$count" -d 64 "${qargs[@]}" "$file")")
		s+=("$(imgbench_iops "$count" "$SLUICE_IMG" bench -f raw -c "$count" -d 64 "${sargs[@]}" "$file")")
		[ "$fio_direct" = - ] || f+=("$(fio_iops "$file" "$fio_direct")")
	done
	qm=$(printf '%s\n' "${q[@]}" | median)
	sm=$(printf '%s\n' "${s[@]}" | median)
	fm=-
	[ "$fio_direct" = - ] || fm=$(printf '%s\n' "${f[@]}" | median)
	rq=$(ratio "$sm" "$qm")
	rf=-
	[ "$fm" = - ] || rf=$(ratio "$sm" "$fm")
	verdict="$(meets "$rq" "$qt")"
	[ "$ft" = - ] || verdict="$verdict/$(meets "$rf" "$ft")"
	printf '%-34s %10s %10s %10s %9sx %9s %-22s %s\n' "$name" "$qm" "$sm" "$fm" "$rq" \
		"$([ "$rf" = - ] && echo - || echo "${rf}x")" \
		"$([ "$ft" = - ] && echo ">=${qt}x qemu" || echo ">=${qt}x qemu >=${ft}x fio")" "$verdict"
}

bench_block() {
	local dir=$BUILD/bench shm=/dev/shm/sluice-bench-$$.img fstype

	echo "== block: sluice-img bench vs qemu-img bench, 4k reads, QD64 (IOPS, median of $RUNS alternated runs) =="
	SLUICE_IMG=$BUILD/user/tools/sluice-img
	[ -x "$SLUICE_IMG" ] || { echo "skipped: $SLUICE_IMG is not built"; return 0; }
	command -v qemu-img >/dev/null || { echo "skipped: qemu-img is not installed"; return 0; }
	command -v fio >/dev/null || echo "note: fio is not installed; no ceiling column"

	make_image "$dir/pagecache.img" || return 1
	fstype=$(df --output=fstype "$dir" | tail -1)
	cat "$dir/pagecache.img" >/dev/null

	printf '%-34s %10s %10s %10s %10s %9s %-22s %s\n' case qemu-img sluice "fio(iou)" sluice/qemu \
		sluice/fio target met
	block_case "page cache ($fstype), io_uring" "$dir/pagecache.img" 500000 0 1.5 1.0 \
		-i io_uring -- -i io_uring
	if [ "$(df --output=fstype /dev/shm 2>/dev/null | tail -1)" = tmpfs ]; then
		make_image "$shm" || return 1
		block_case "tmpfs (/dev/shm), io_uring" "$shm" 500000 0 3 - -i io_uring -- -i io_uring
		rm -f "$shm"
	else
		echo "tmpfs: skipped (/dev/shm is not a tmpfs)"
	fi
	if dd if="$dir/pagecache.img" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
		block_case "O_DIRECT ($fstype), io_uring" "$dir/pagecache.img" 200000 1 1.0 0.98 \
			-t none -i io_uring -- -n -i io_uring
	else
		echo "O_DIRECT: skipped (the filesystem of $dir refuses O_DIRECT)"
	fi
	cat "$dir/pagecache.img" >/dev/null
	block_case "page cache ($fstype), threads" "$dir/pagecache.img" 200000 - 1.0 - \
		-i threads -- -i threads
	echo "(fio: --ioengine=io_uring --rw=read --bs=4k --iodepth=64, --direct as the case; 'met' compares the ratios with the targets)"
}

# ---- main ----

case "${1:-}" in
-h|--help)
	sed -n '3,11p' "$0" | sed 's/^# \{0,1\}//'
	exit 0 ;;
--list)
	echo "$SECTIONS"
	exit 0 ;;
esac

selected=("$@")
[ ${#selected[@]} -gt 0 ] || read -r -a selected <<<"$SECTIONS"
for sec in "${selected[@]}"; do
	case " $SECTIONS " in
	*" $sec "*) ;;
	*) die "unknown section '$sec' (sections: $SECTIONS)" ;;
	esac
done
st=0
for sec in "${selected[@]}"; do
	"bench_$sec" || st=1
	echo
done
exit $st
