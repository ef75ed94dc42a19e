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
SECTIONS="block lab kernel qcow2 kqcow2"

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

# fio_4k_iops MODE FIO_ARGS...: one time-based 4k fio job on io_uring with FIO_ARGS (file, pattern, depth,
# runtime...); print its MODE (read or write) IOPS, 0 when fio failed.
fio_4k_iops() {
	local m=$1
	shift
	fio --name=ceiling --ioengine=io_uring --bs=4k --time_based --output-format=json "$@" 2>/dev/null |
		python3 -c "import json, sys; print(int(json.load(sys.stdin)['jobs'][0]['$m']['iops']))" \
		2>/dev/null || echo 0
}

# fio_iops FILE DIRECT: 4k sequential reads at QD64 on io_uring for 1 s; print the IOPS.
fio_iops() {
	fio_4k_iops read --filename="$1" --rw=read --iodepth=64 --direct="$2" --runtime=1
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

# ---- section: lab (the VMM against QEMU, one guest, one image, in one lab run) ----

# lab_reexec SECTION TIMEOUT: on the host, run SECTION of this script inside the lab (a guest boots there).
lab_reexec() {
	echo "== $1: running inside the lab VM =="
	"$REPO/tests/lab/lab.sh" --timeout "$2" -- "BUILD=$BUILD RUNS=$RUNS scripts/bench.sh $1"
}

# rss_beyond_ram PID MEM_KB: kB resident outside the guest-RAM mapping (the anonymous mapping of MEM_KB).
rss_beyond_ram() {
	awk -v mem="$2" '/^[0-9a-f]+-[0-9a-f]+ / { cur = 0 } /^Size:/ { big = ($2 == mem) }
		/^Rss:/ { if (!big) t += $2 } END { print t + 0 }' "/proc/$1/smaps" 2>/dev/null
}

# cpu_sample PID: VCPU_NS, the nanoseconds the vCPU threads of PID (sluice's vcpuN, QEMU's "CPU N/KVM")
# have run, and LAB_BUSY / LAB_TOTAL, the lab's busy and total CPU ticks (/proc/stat).  Builtins only:
# it runs every 0.2 s next to the guest, and the lab forks slowly.
cpu_sample() {
	local t c r x us ni sy id io irq sirq st
	VCPU_NS=0
	for t in /proc/"$1"/task/*; do
		read -r c 2>/dev/null <"$t/comm" || continue
		case $c in
		vcpu[0-9]*|"CPU "*/KVM) read -r r x 2>/dev/null <"$t/schedstat" && VCPU_NS=$((VCPU_NS + r)) ;;
		esac
	done
	read -r x us ni sy id io irq sirq st x </proc/stat
	LAB_BUSY=$((us + ni + sy + irq + sirq + st)) LAB_TOTAL=$((us + ni + sy + id + io + irq + sirq + st))
}

# lab_run_mark: lab_run's per-case accounting, on lab_run's variables (bash's dynamic scope).  When
# a new case line came (the disk listing, then an IOPS line per case), the share of the interval since
# the last one that the vCPUs and the lab's CPUs were busy goes to NAME.busy under the case's name.
lab_run_mark() {
	n=$(grep -c -e 'SLUICE-BLK-INFO' -e 'SLUICE-IOPS:' "$out")
	[ "$n" -gt "$marks" ] || return 0
	now=$(date +%s.%N)
	if [ -n "$t_mark" ]; then
		m=$(tr -d '\r' <"$out" | awk '$1 == "SLUICE-IOPS:" { m = $2 " " $3 } END { print m }')
		awk -v m="$m" -v now="$now" -v then="$t_mark" -v c=$((ns - ns_mark)) -v b=$((lb - lb_mark)) \
			-v t=$((lt - lt_mark)) 'BEGIN { d = now - then
				if (m != "" && d > 0 && t > 0) printf "%s %.0f %.0f\n", m, c / 1e7 / d, 100 * b / t }' \
			>>"$LABW/$name.busy"
	fi
	marks=$n t_mark=$now ns_mark=$ns lb_mark=$lb lt_mark=$lt
}

# init_stamp FILE: copy stdin to stdout line by line; write the time ($EPOCHREALTIME) the guest's init
# marker line arrived to FILE.  Builtins only, so the stamp is taken as the line comes.
init_stamp() {
	local line seen=0
	while IFS= read -r line || [ -n "$line" ]; do
		if [ $seen = 0 ] && [[ $line == *'SLUICE-MARKER: init is running'* ]]; then
			echo "$EPOCHREALTIME" >"$1"
			seen=1
		fi
		printf '%s\n' "$line"
	done
}

# lab_run NAME CMD...: boot a guest that runs the bench load; record boot-to-init seconds, IOPS lines, RSS,
# and for each load case how busy the guest's vCPUs and the lab's CPUs were (NAME.busy: MODE QD
# VCPU-PERCENT-OF-ONE-CPU LAB-PERCENT-OF-ALL-CPUS).
lab_run() {
	local name=$1 out=$LABW/$1.out start t0 pid rpid t_init="" rss=0 r up marks=0 n m
	local t_mark="" ns_mark lb_mark lt_mark now ns=0 lb=0 lt=0
	shift
	# The console goes through init_stamp, which notes when the init marker arrives: a poll of the
	# output file would be late by up to one pass of the loop below (0.2 s and the lab's slow forks).
	rm -f "$LABW/$name.fifo" "$LABW/$name.tinit"
	mkfifo "$LABW/$name.fifo"
	init_stamp "$LABW/$name.tinit" <"$LABW/$name.fifo" >"$out" &
	rpid=$!
	start=$EPOCHREALTIME t0=$SECONDS
	"$@" >"$LABW/$name.fifo" 2>"$LABW/$name.err" </dev/null &
	pid=$!
	: >"$LABW/$name.busy"
	while kill -0 $pid 2>/dev/null; do
		# A guest that has not finished in 5 minutes has hung (a run takes about 40 s): it counts as incomplete.
		if [ $((SECONDS - t0)) -gt 300 ]; then
			echo "$name: no SLUICE-BLK-DONE after 300 s; killed" >>"$LABW/$name.err"
			kill -9 $pid 2>/dev/null
			break
		fi
		# The load's cases run back to back from the disk listing on, each ending with its IOPS line.
		# A sample with fewer vCPU nanoseconds than the last is of a guest shutting down: keep the last.
		cpu_sample $pid
		if [ "$VCPU_NS" -ge "$ns" ]; then ns=$VCPU_NS lb=$LAB_BUSY lt=$LAB_TOTAL; fi
		lab_run_mark
		r=$(rss_beyond_ram $pid $((LAB_MEM_MB * 1024)))
		[ "${r:-0}" -gt "$rss" ] && rss=$r
		grep -q SLUICE-BLK-DONE "$out" && break
		sleep 0.2
	done
	wait $pid
	wait $rpid
	rm -f "$LABW/$name.fifo"
	lab_run_mark	# the last case's line may have come just before the VMM exited
	[ -s "$LABW/$name.tinit" ] &&
		t_init=$(awk -v a="$(cat "$LABW/$name.tinit")" -v b="$start" 'BEGIN { printf "%.2f", a - b }')
	# The guest kernel's own uptime when init ran: boot time minus that is spent before the kernel.
	up=$(tr -d '\r' <"$out" | sed -n 's/.*SLUICE-MARKER: init is running (uptime \([0-9.]*\)).*/\1/p' | head -1)
	# "-" for what this run did not reach (no init: no boot time), so the fields keep their places.
	echo "${t_init:--} $rss ${up:--}" >"$LABW/$name.res"
}

# lab_busy WHO MODE QD [FIELD]: over the RUNS rounds, the median vCPU (FIELD 3, the default) or lab
# (FIELD 4) busy percentage of one case.
lab_busy() {
	local r v
	v=$(for r in $(seq 1 "$RUNS"); do
		awk -v m="$2" -v q="qd$3" -v f="${4:-3}" '$1 == m && $2 == q { print $f }' "$LABW/$1$r.busy" 2>/dev/null
	done)
	if [ -n "$v" ]; then printf '%s\n' "$v" | median; else echo -; fi
}

# lab_all_complete: true when every guest lab_run started in this section finished its load; for
# each one that did not, says so with the end of the VMM's stderr and of the guest's console (did it
# reach /init? where did it stop?).
lab_all_complete() {
	local out name st=0
	for out in "$LABW"/*.out; do
		grep -q SLUICE-BLK-DONE "$out" && continue
		name=$(basename "$out" .out)
		echo "$name run incomplete:"
		tail -5 "$LABW/$name.err" | sed 's/^/  stderr: /'
		tr -d '\r' <"$out" | grep . | tail -8 | sed 's/^/  console: /'
		st=1
	done
	return $st
}

# lab_iops NAME MODE QD: the guest's IOPS for one case.
lab_iops() {
	tr -d '\r' <"$LABW/$1.out" | awk -v m="$2" -v q="qd$3" '$1 == "SLUICE-IOPS:" && $2 == m && $3 == q { print $4 }'
}

# lab_med WHO FIELD|read|write [QD]: over the RUNS rounds WHO1..WHO<RUNS>, the median of boot time (1),
# RSS (2), the guest kernel's uptime at init (3) or the IOPS of one case.
lab_med() {
	local who=$1 r
	for r in $(seq 1 "$RUNS"); do
		case $2 in
		1|2|3) awk -v f="$2" '{ print $f }' "$LABW/$who$r.res" ;;
		*) lab_iops "$who$r" "$2" "$3" ;;
		esac
	done | grep -v -x -e '' -e - | median
}

bench_lab() {
	local kernel initrd img qemu st r
	[ -n "${SLUICE_LAB_SCRATCH:-}" ] || { lab_reexec lab 2400; return $?; }
	echo "== lab: one guest, one 128 MiB raw image (cache=none), sluice (user dataplane) vs QEMU (virtio-blk-pci, IOThread, aio=io_uring) =="
	lab_guest_setup || return 1
	img=$SLUICE_LAB_SCRATCH/bench-lab.img
	dd if=/dev/zero of="$img" bs=1M count=128 conv=fsync status=none	# written back: O_DIRECT reads over dirty page cache would wait
	# The same command line for both (no sluice-only boot options).
	local append="console=ttyS0 reboot=k panic=-1 quiet sluice.blk=bench" kc=$LABW/kernel-cache
	# sluice keeps the kernel it decompressed (--kernel-cache): a first boot with the cache empty fills
	# it, and is reported on its own row; the rounds then boot as every later boot of this kernel does.
	mkdir -m 700 "$kc"
	lab_run sluicecold "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
		--cpus 1 --mem ${LAB_MEM_MB}M --kernel-cache "$kc" --iothread id=io0 \
		--drive file="$img",format=raw,cache=none,queues=1
	# RUNS rounds, the order alternating (S Q, Q S, S Q, ...) so that drifting load hurts both; medians.
	for r in $(seq 1 "$RUNS"); do
		local who
		for who in $( [ $((r % 2)) -eq 1 ] && echo "sluice qemu" || echo "qemu sluice"); do
			if [ "$who" = sluice ]; then
				lab_run sluice$r "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" \
					--append "$append" --cpus 1 --mem ${LAB_MEM_MB}M --kernel-cache "$kc" \
					--iothread id=io0 --drive file="$img",format=raw,cache=none,queues=1
			else
				lab_run qemu$r "$qemu" -enable-kvm -cpu host -smp 1 -m $LAB_MEM_MB -nographic -no-reboot \
					-nodefaults -serial stdio -kernel "$kernel" -initrd "$initrd" -append "$append" \
					-object iothread,id=io0 \
					-drive file="$img",if=none,id=d0,format=raw,cache=none,aio=io_uring \
					-device virtio-blk-pci,drive=d0,iothread=io0
			fi
		done
	done
	local sb srss qb qrss
	sb=$(lab_med sluice 1); srss=$(lab_med sluice 2)
	qb=$(lab_med qemu 1); qrss=$(lab_med qemu 2)
	echo "(medians of $RUNS rounds per side; sluice boots its kernel from --kernel-cache, filled by one first boot before the rounds)"
	printf '%-28s %10s %10s %12s %8s %s\n' metric qemu sluice sluice/qemu target met
	printf '%-28s %10s %10s %12s %8s %s\n' "boot to /init (s)" "$qb" "$sb" "$(ratio "$sb" "$qb")" "<=0.5" \
		"$(awk -v r="$(ratio "$sb" "$qb")" 'BEGIN { print (r != "-" && r + 0 <= 0.5) ? "ok" : "MISS" }')"
	printf '%-28s %10s %10s %12s\n' "  of it in the guest kernel" "$(lab_med qemu 3)" "$(lab_med sluice 3)" \
		"$(ratio "$(lab_med sluice 3)" "$(lab_med qemu 3)")"
	local cold
	cold=$(awk '{ print $1 }' "$LABW/sluicecold.res")
	printf '%-28s %10s %10s %12s\n' "  first boot, cache empty" "$qb" "$cold" "$(ratio "$cold" "$qb")"
	for m in read write; do
		for qd in 1 32; do
			local s q
			s=$(lab_med sluice $m $qd)
			q=$(lab_med qemu $m $qd)
			printf '%-28s %10s %10s %12s %8s %s\n' "4k rand $m QD$qd (IOPS)" "${q:--}" "${s:--}" \
				"$(ratio "${s:-0}" "${q:-0}")" ">=1.0" "$(meets "$(ratio "${s:-0}" "${q:-0}")" 1.0)"
		done
	done
	printf '%-28s %10s %10s %12s %8s %s\n' "RSS beyond guest RAM (kB)" "$qrss" "$srss" "$(ratio "$srss" "$qrss")" \
		"<=0.25" "$(awk -v r="$(ratio "$srss" "$qrss")" 'BEGIN { print (r != "-" && r + 0 <= 0.25) ? "ok" : "MISS" }')"
	echo "(nested KVM in a TCG lab: absolute numbers are meaningless, ratios are what counts; guest load:"
	echo " tests/vmm/sluice-load.c, 4k O_DIRECT pread/pwrite from QD threads, 5 s per case over 64 MiB;"
	echo " RSS: resident kB outside the guest-RAM mapping, max of 0.2 s samples)"
	st=0
	lab_all_complete || st=1
	rm -rf "$LABW" "$img"
	return $st
}

# The kernel dataplane against the user dataplane and QEMU, in one lab run; then 1 vs 2 queues.
# lab_guest_setup: the guest's kernel and initramfs, QEMU, a work dir (LABW) and the guest RAM size, for
# the sections that boot guests in the lab.  Fails with a reason.
lab_guest_setup() {
	kernel=/boot/vmlinuz-$(uname -r)
	initrd=$BUILD/tests/vmm/initramfs.cpio.gz
	qemu=$(command -v qemu-system-x86_64) || { echo "no qemu-system-x86_64"; return 1; }
	[ -x "$BUILD/user/vmm/sluice" ] && [ -r "$initrd" ] || { echo "sluice or its initramfs not built"; return 1; }
	LABW=$(mktemp -d)
	LAB_MEM_MB=256
}

# lab_fio TAG ROUND IMG: the ceiling of IMG's backend, fio run in the lab itself (no nested guest, no VMM):
# 4k random reads and writes at QD1 and QD32 over the first 64 MiB, O_DIRECT on io_uring, 5 s each, as
# the guest's load does; one IOPS line per case in fio<TAG><ROUND>.out, in the guest's line format.
lab_fio() {
	local out=$LABW/fio$1$2.out m qd iops
	: >"$out"
	command -v fio >/dev/null || return 0
	for m in read write; do
		for qd in 1 32; do
			iops=$(fio_4k_iops $m --filename="$3" --rw=rand$m --iodepth=$qd --direct=1 --size=64M --runtime=5)
			echo "SLUICE-IOPS: $m qd$qd $iops" >>"$out"
		done
	done
	echo SLUICE-BLK-DONE >>"$out"	# complete, as lab_all_complete asks of every run
}

# kernel_round_robin TAG IMG: RUNS rounds of kernel dataplane, user dataplane and QEMU on IMG, the order
# rotating (K U Q, U Q K, Q K U, ...) so that drifting load hurts all; runs named <peer><TAG><round>.
kernel_round_robin() {
	local tag=$1 img=$2 order=(kern user qemu) r i who
	for r in $(seq 1 "$RUNS"); do
		for i in 0 1 2; do
			who=${order[$(((r - 1 + i) % 3))]}
			case $who in
			kern) lab_run kern$tag$r "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
				--cpus 1 --mem ${LAB_MEM_MB}M --drive file="$img",format=raw,cache=none,queues=1,dataplane=kernel ;;
			user) lab_run user$tag$r "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
				--cpus 1 --mem ${LAB_MEM_MB}M --iothread id=io0 --drive file="$img",format=raw,cache=none,queues=1 ;;
			qemu) lab_run qemu$tag$r "$qemu" -name bench,debug-threads=on -enable-kvm -cpu host -smp 1 -m $LAB_MEM_MB \
				-nographic -no-reboot -nodefaults \
				-serial stdio -kernel "$kernel" -initrd "$initrd" -append "$append" -object iothread,id=io0 \
				-drive file="$img",if=none,id=d0,format=raw,cache=none,aio=io_uring \
				-device virtio-blk-pci,drive=d0,iothread=io0 ;;
			esac
		done
		lab_fio "$tag" "$r" "$img"
	done
}

# kernel_table TAG: the medians of kernel_round_robin TAG, and the vCPU's busy share in each case.
kernel_table() {
	local tag=$1 m qd k u q f r1 r2
	printf '%-22s %9s %9s %9s %12s %12s %-22s %9s %11s\n' "4k random" kernel user qemu kernel/user kernel/qemu \
		"targets >=1.3 / >=1.5" "lab fio" "fio/user"
	for m in read write; do
		for qd in 1 32; do
			k=$(lab_med kern$tag $m $qd)
			u=$(lab_med user$tag $m $qd)
			q=$(lab_med qemu$tag $m $qd)
			f=$(lab_med fio$tag $m $qd)
			r1=$(ratio "${k:-0}" "${u:-0}")
			r2=$(ratio "${k:-0}" "${q:-0}")
			printf '%-22s %9s %9s %9s %12s %12s %-22s %9s %11s\n' "$m QD$qd (IOPS)" "${k:--}" "${u:--}" "${q:--}" \
				"$r1" "$r2" "$(meets "$r1" 1.3) / $(meets "$r2" 1.5)" "${f:--}" "$(ratio "${f:-0}" "${u:-0}")"
		done
	done
	echo "(lab fio: the same 4k load run by fio in the lab itself on the same backend, with no guest and no VMM:"
	echo " what the backend gives, the dataplanes' ceiling; the rest of a guest request's time is the guest's and its exits')"
	printf '%-22s %9s %9s %9s   %s\n' "vCPU busy (%)" kernel user qemu "(lab CPUs busy, %: kernel user qemu)"
	for m in read write; do
		for qd in 1 32; do
			printf '%-22s %9s %9s %9s   %5s %5s %5s\n' "  $m QD$qd" "$(lab_busy kern$tag $m $qd)" \
				"$(lab_busy user$tag $m $qd)" "$(lab_busy qemu$tag $m $qd)" "$(lab_busy kern$tag $m $qd 4)" \
				"$(lab_busy user$tag $m $qd 4)" "$(lab_busy qemu$tag $m $qd 4)"
		done
	done
}

bench_kernel() {
	local kernel initrd img qemu append m qd st=0 r1 r2
	[ -n "${SLUICE_LAB_SCRATCH:-}" ] || { lab_reexec kernel 3000; return $?; }
	echo "== kernel: one guest, one 128 MiB raw disk: sluice dataplane=kernel vs dataplane=user vs QEMU (IOThread, aio=io_uring) =="
	[ -c /dev/sluice-blk ] || { echo "sluice_blk.ko is not loaded"; return 1; }
	lab_guest_setup || return 1
	append="console=ttyS0 reboot=k panic=-1 quiet sluice.blk=bench"
	img=$SLUICE_LAB_SCRATCH/bench-kernel.img
	dd if=/dev/zero of="$img" bs=1M count=128 conv=fsync status=none	# written back: O_DIRECT reads over dirty page cache would wait
	kernel_round_robin f "$img"
	# The same on a RAM block device: the backend's cost (the lab's own emulated disk) drops out.
	if [ -b /dev/ram0 ] || modprobe brd rd_nr=1 rd_size=131072 max_part=0 2>/dev/null; then
		dd if=/dev/urandom of=/dev/ram0 bs=1M count=128 status=none
		kernel_round_robin r /dev/ram0
	fi
	lab_run mq1 "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
		--cpus 2 --mem ${LAB_MEM_MB}M --drive file="$img",format=raw,cache=none,queues=1,dataplane=kernel
	lab_run mq2 "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
		--cpus 2 --mem ${LAB_MEM_MB}M --drive file="$img",format=raw,cache=none,queues=2,dataplane=kernel
	echo "(1 queue, 1 vCPU: medians of $RUNS rotated rounds)"
	echo "-- a raw image file on the lab's scratch disk (ext4 on its virtio-blk disk) --"
	kernel_table f
	if [ -e "$LABW/kernr1.res" ]; then
		echo "-- a RAM block device (brd): what is left is the dataplanes' and the guest's own cost --"
		kernel_table r
	else
		echo "-- RAM block device: skipped (no brd module) --"
	fi
	echo
	printf '%-22s %9s %9s %12s\n' "2 vCPUs, kernel" "1 queue" "2 queues" "2q/1q"
	for m in read write; do
		for qd in 1 32; do
			r1=$(lab_iops mq1 $m $qd)
			r2=$(lab_iops mq2 $m $qd)
			printf '%-22s %9s %9s %12s\n' "$m QD$qd (IOPS)" "${r1:--}" "${r2:--}" "$(ratio "${r2:-0}" "${r1:-0}")"
		done
	done
	echo "(nested KVM in a TCG lab: only ratios within this run mean anything; guest load tests/vmm/sluice-load.c;"
	echo " vCPU busy: the guest vCPU thread's run time over the case's wall time, % of one CPU; near 100 the"
	echo " guest itself is the bottleneck and no dataplane can be much faster; lab CPUs busy: of the lab's 2,"
	echo " which the VMM's vCPU, its dataplane (polling included) and the lab's own disk emulation share)"
	lab_all_complete || st=1
	rm -rf "$LABW" "$img"
	return $st
}

# ---- section: qcow2 ----

# qcow2_case NAME COUNT TARGET PREPARE ARGS...: RUNS alternated runs of qemu-img bench and sluice-img
# bench -f qcow2 with the same ARGS on the same file (PREPARE FILE makes it before every run); one row.
qcow2_case() {
	local name=$1 count=$2 target=$3 prep=$4 q=() s=() i qm sm r
	shift 4
	for ((i = 0; i < RUNS; i++)); do
		"$prep" "$QFILE" || return 1
		q+=("$(imgbench_iops "$count" qemu-img bench -f qcow2 -c "$count" "$@" "$QFILE")")
		"$prep" "$QFILE" || return 1
		s+=("$(imgbench_iops "$count" "$SLUICE_IMG" bench -f qcow2 -c "$count" "$@" "$QFILE")")
	done
	qm=$(printf '%s\n' "${q[@]}" | median)
	sm=$(printf '%s\n' "${s[@]}" | median)
	r=$(ratio "$sm" "$qm")
	printf '%-44s %10s %10s %9sx %-10s %s\n' "$name" "$qm" "$sm" "$r" ">=${target}x" "$(meets "$r" "$target")"
}

# qcow2_full FILE: a fully allocated 256 MiB qcow2 image of random data (made once, by qemu-img).
qcow2_full() {
	[ -f "$1" ] && return 0
	qemu-img convert -f raw -O qcow2 "$BUILD/bench/pagecache.img" "$1" && cat "$1" >/dev/null
}

# qcow2_empty FILE: a new, empty 256 MiB qcow2 image.
qcow2_empty() {
	rm -f "$1"
	qemu-img create -q -f qcow2 "$1" 256M
}

bench_qcow2() {
	local dir=$BUILD/bench

	echo "== qcow2: sluice-img bench -f qcow2 vs qemu-img bench -f qcow2, same args, same file (IOPS, median of $RUNS alternated runs) =="
	SLUICE_IMG=$BUILD/user/tools/sluice-img
	[ -x "$SLUICE_IMG" ] || { echo "skipped: $SLUICE_IMG is not built"; return 0; }
	command -v qemu-img >/dev/null || { echo "skipped: qemu-img is not installed"; return 0; }
	make_image "$dir/pagecache.img" || return 1
	printf '%-44s %10s %10s %10s %-10s %s\n' case qemu-img sluice sluice/qemu target met
	QFILE=$dir/qcow2-full.qcow2
	rm -f "$QFILE"
	qcow2_case "fully allocated, 4k reads, QD64, io_uring" 500000 1.5 qcow2_full -d 64 -i io_uring || return 1
	rm -f "$QFILE"
	QFILE=$dir/qcow2-empty.qcow2
	qcow2_case "empty image, 4k allocating writes (64k step)" 4000 1.0 qcow2_empty -w -d 64 -S 64k -i io_uring ||
		return 1
	qcow2_case "empty image, 4k writes QD64 (1 in 16 allocates)" 60000 1.0 qcow2_empty -w -d 64 -i io_uring ||
		return 1
	rm -f "$QFILE"
	echo "(page cache, 64 KiB clusters; the write cases start each run on a new image)"
}

# ---- section: kqcow2 (qcow2 on the kernel dataplane, in one lab run) ----

bench_kqcow2() {
	local kernel initrd raw q2 fresh qemu append m qd kr kq qq kf r1 r2 r3 st=0 r
	[ -n "${SLUICE_LAB_SCRATCH:-}" ] || { lab_reexec kqcow2 1800; return $?; }
	echo "== kqcow2: one guest, 128 MiB of data: allocated qcow2 on dataplane=kernel vs raw on dataplane=kernel vs QEMU on the same qcow2 (IOThread, aio=io_uring); first-touch writes on an empty qcow2 =="
	[ -c /dev/sluice-blk ] || { echo "sluice_blk.ko is not loaded"; return 1; }
	lab_guest_setup || return 1
	raw=$SLUICE_LAB_SCRATCH/kq.raw
	q2=$SLUICE_LAB_SCRATCH/kq.qcow2
	fresh=$SLUICE_LAB_SCRATCH/kq-fresh.qcow2
	head -c $((128 << 20)) /dev/urandom >"$raw"
	# Every cluster allocated (NORMAL, refcount 1: writable in place by the module).
	qemu-img convert -f raw -O qcow2 "$raw" "$q2" || { echo "qemu-img convert failed"; return 1; }
	sync	# no dirty page cache under the first O_DIRECT reads of either image
	append="console=ttyS0 reboot=k panic=-1 quiet sluice.blk=bench"
	local order=(kraw kq qq) i who
	for r in $(seq 1 "$RUNS"); do
		# The three peers rotate (raw qcow2 QEMU, qcow2 QEMU raw, ...) so that drifting load hurts all.
		for i in 0 1 2; do
			who=${order[$(((r - 1 + i) % 3))]}
			case $who in
			kraw) lab_run kraw$r "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
				--cpus 1 --mem ${LAB_MEM_MB}M --drive file="$raw",format=raw,cache=none,queues=1,dataplane=kernel ;;
			kq) lab_run kq$r "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
				--cpus 1 --mem ${LAB_MEM_MB}M --drive file="$q2",format=qcow2,cache=none,queues=1,dataplane=kernel ;;
			qq) lab_run qq$r "$qemu" -enable-kvm -cpu host -smp 1 -m $LAB_MEM_MB -nographic -no-reboot -nodefaults \
				-serial stdio -kernel "$kernel" -initrd "$initrd" -append "$append" -object iothread,id=io0 \
				-drive file="$q2",if=none,id=d0,format=qcow2,cache=none,aio=io_uring \
				-device virtio-blk-pci,drive=d0,iothread=io0 ;;
			esac
		done
		rm -f "$fresh"
		qemu-img create -q -f qcow2 "$fresh" 128M
		lab_run kf$r "$BUILD/user/vmm/sluice" --kernel "$kernel" --initrd "$initrd" --append "$append" \
			--cpus 1 --mem ${LAB_MEM_MB}M --drive file="$fresh",format=qcow2,cache=none,queues=1,dataplane=kernel
	done
	echo "(medians of $RUNS rotated rounds; sluice maps the allocated image's clusters into the module at attach, so no read pays a first touch)"
	printf '%-20s %9s %9s %9s %11s %11s %s\n' "4k random" "raw-kern" "q2-kern" "q2-qemu" "q2k/rawk" "q2k/qemu" \
		"targets >=0.9 / >=1.5"
	for m in read write; do
		for qd in 1 32; do
			kr=$(lab_med kraw $m $qd)
			kq=$(lab_med kq $m $qd)
			qq=$(lab_med qq $m $qd)
			r1=$(ratio "${kq:-0}" "${kr:-0}")
			r2=$(ratio "${kq:-0}" "${qq:-0}")
			printf '%-20s %9s %9s %9s %11s %11s %s / %s\n' "$m QD$qd (IOPS)" "${kr:--}" "${kq:--}" "${qq:--}" \
				"$r1" "$r2" "$(meets "$r1" 0.9)" "$(meets "$r2" 1.5)"
		done
	done
	echo
	printf '%-28s %12s %12s %14s\n' "first touch (empty qcow2)" "fresh-kern" "alloc-kern" "fresh/alloc"
	for qd in 1 32; do
		kf=$(lab_med kf write $qd)
		kq=$(lab_med kq write $qd)
		r3=$(ratio "${kf:-0}" "${kq:-0}")
		printf '%-28s %12s %12s %14s\n' "write QD$qd (IOPS)" "${kf:--}" "${kq:--}" "$r3"
	done
	echo "(nested KVM in a TCG lab: only ratios within this run mean anything; guest load tests/vmm/sluice-load.c)"
	lab_all_complete || st=1
	for n in "$q2" "$fresh"; do
		qemu-img check -q "$n" || { echo "qemu-img check $n failed after the runs"; st=1; }
	done
	rm -rf "$LABW" "$raw" "$q2" "$fresh"
	return $st
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
