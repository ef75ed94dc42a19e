#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# kernel.sh - virtio-blk on the kernel dataplane (sluice_blk.ko) end to end: a nested guest writes, reads back and
# verifies; the module's counters prove it served the requests and userspace served none; auto and error paths;
# qcow2 with its extent map and upcalls.
set -u
. "$(dirname "$0")/../lib/ktap.sh"
. "$(dirname "$0")/vmm_lib.sh"

KO=${SLUICE_LAB_KMOD:-}

prereq_kernel() {
	prerequisites || return 1
	[ -c /dev/sluice-blk ] || { echo "sluice_blk.ko is not loaded"; return 1; }
	[ -f "$KO" ] || { echo "no module file (\$SLUICE_LAB_KMOD)"; return 1; }
}

kernel_one_queue() {
	local img
	img=$(mkdisk k1)
	boot k1 sluice.blk=verify --cpus 1 --drive file="$img",format=raw,id=k1,queues=1,dataplane=kernel
	check_verify k1 vda "$img" || return 1
	! grep -q '^sluice:' "$WORK/k1.err" || { cat "$WORK/k1.err"; return 1; }
}

kernel_two_drives_two_queues_mixed() {
	local a b
	a=$(mkdisk k2a)
	b=$(mkdisk k2b)
	boot k2 sluice.blk=verify --cpus 2 --iothread id=io0 \
		--drive file="$a",format=raw,id=ka,queues=2,dataplane=kernel \
		--drive file="$b",format=raw,id=ub,queues=2,dataplane=user
	check_verify k2 vda "$a" || return 1
	check_verify k2 vdb "$b" || return 1
}

# The guest loops over writes and read-backs; meanwhile query-block, sysfs counters and CPU knob moves.
kernel_counters_and_cpu_knob() {
	local img sock=$WORK/k3.sock pid st q0=/sys/class/sluice_blk/kc/queues/0 wpid cpus moves=0 c=0 stopped=0
	img=$(mkdisk k3)
	timeout -k 5 600 "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --append "$APPEND sluice.blk=loopstop:400" \
		--cpus 1 --control "$sock" --drive file="$img",format=raw,id=kc,queues=1,dataplane=kernel \
		>"$WORK/k3.out" 2>"$WORK/k3.err" </dev/null &
	pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	[ -S "$sock" ] || { echo "no control socket"; kill $pid; return 1; }
	# Once the guest's loop runs, move the worker between the CPUs; after 4 moves, end the loop.
	while kill -0 $pid 2>/dev/null && ! grep -q SLUICE-BLK-LOOP: "$WORK/k3.out"; do
		wpid=$(cat $q0/worker_pid 2>/dev/null)
		if [ $stopped = 0 ] && [ -n "$wpid" ] && [ "$wpid" != 0 ] && grep -q SLUICE-BLK-LOOP-START "$WORK/k3.out" &&
			echo $c >$q0/cpu 2>/dev/null; then
			cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$wpid/status 2>/dev/null)
			if [ "$cpus" = "$c" ]; then
				moves=$((moves + 1))
			elif [ -n "$cpus" ]; then
				echo "worker $wpid on '$cpus' after writing $c"; kill $pid; return 1
			fi
			c=$((1 - c))
			[ $moves -ge 4 ] && stop_guest_loop "$img" && stopped=1
		fi
		"$CTL" "$sock" query-block >"$WORK/k3.tmp" 2>/dev/null && mv "$WORK/k3.tmp" "$WORK/k3.json"
		sleep 0.3
	done
	wait $pid
	st=$?
	died_before_init k3 $st && return 75
	[ "$st" = 0 ] || { echo "exit status $st"; show k3; return 1; }
	[ $stopped = 1 ] || { echo "only $moves worker CPU moves were seen during the guest's loop"; show k3; return 1; }
	lines k3 SLUICE-BLK-LOOP | grep -q "^rounds=[0-9]* bad=0 " ||
		{ echo "guest loop: $(lines k3 SLUICE-BLK-LOOP)"; return 1; }
	grep -q '"dataplane":"kernel","kernel-disk":"kc"' "$WORK/k3.json" ||
		{ echo "query-block: $(cat "$WORK/k3.json")"; return 1; }
	grep -q '"queue":0,"requests":[1-9][0-9]*,' "$WORK/k3.json" ||
		{ echo "the module served nothing: $(cat "$WORK/k3.json")"; return 1; }
	grep -q '"user-requests":0}' "$WORK/k3.json" ||
		{ echo "userspace served requests: $(cat "$WORK/k3.json")"; return 1; }
	echo "# $moves CPU moves of the queue's worker during guest I/O ($(lines k3 SLUICE-BLK-LOOP | cut -d' ' -f1));" \
		"$(grep -o '"requests":[0-9]*' "$WORK/k3.json")"
}

auto_uses_the_module() {
	local img
	img=$(mkdisk auto)
	boot auto sluice.blk=verify --drive file="$img",format=raw,id=au,queues=1,dataplane=auto
	check_verify auto vda "$img" || return 1
	grep -q "dataplane=auto: served by sluice_blk.ko" "$WORK/auto.err" ||
		{ echo "auto did not say it uses the module: $(cat "$WORK/auto.err")"; return 1; }
}

without_the_module() {
	local img ret=0
	img=$(mkdisk nomod)
	rmmod sluice_blk || { echo "cannot rmmod sluice_blk"; return 1; }
	fails_with "sluice_blk module not loaded" --drive file="$img",format=raw,dataplane=kernel || ret=1
	if [ $ret = 0 ]; then
		boot nomod sluice.blk=verify --drive file="$img",format=raw,queues=1,dataplane=auto
		check_verify nomod vda "$img" || ret=1
	fi
	insmod "$KO" || { echo "cannot insmod $KO again"; return 1; }
	return $ret
}

# extents_guest NAME IMG LOAD: a 1-vCPU guest running sluice.blk=LOAD on the qcow2 IMG (drive NAME,
# dataplane=kernel), the module's counters of the disk sampled until it ends: the highest extent_hits,
# queue 0's fallback and extents seen go to hits, fb and ext.  0 when sluice exited 0, 75 when the guest
# died before /init (ktap_run_vm runs the case again), else 1 with what the guest printed.
extents_guest() {
	local d=/sys/class/sluice_blk/$1 pid st h f e
	hits=0 fb=0 ext=0
	timeout -k 5 600 "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --append "$APPEND sluice.blk=$3" \
		--cpus 1 --drive file="$2",format=qcow2,id="$1",queues=1,dataplane=kernel \
		>"$WORK/$1.out" 2>"$WORK/$1.err" </dev/null &
	pid=$!
	while kill -0 $pid 2>/dev/null; do
		h=$(cat $d/extent_hits 2>/dev/null) f=$(cat $d/queues/0/fallback 2>/dev/null) e=$(cat $d/extents 2>/dev/null)
		[ -n "$h" ] && [ "$h" -gt "$hits" ] && hits=$h
		[ -n "$f" ] && [ "$f" -gt "$fb" ] && fb=$f
		[ -n "$e" ] && [ "$e" -gt "$ext" ] && ext=$e
		sleep 0.2
	done
	wait $pid
	st=$?
	died_before_init "$1" $st && return 75
	[ "$st" = 0 ] || { echo "exit status $st"; show "$1"; return 1; }
}

# qcow2 over a raw backing file on the kernel dataplane: the guest's verify pass, then the host's view.
kernel_qcow2_verify() {
	local base over=$WORK/kq.qcow2
	base=$(mkdisk kqbase)
	qemu-img create -q -f qcow2 -o cluster_size=64k -b "$base" -F raw "$over" || return 1
	boot kq sluice.blk=verify --cpus 1 --drive file="$over",format=qcow2,id=kq,queues=1,dataplane=kernel
	qemu-img check -q "$over" || { echo "qemu-img check found problems"; return 1; }
	qemu-img convert -O raw "$over" "$WORK/kq.raw" || return 1
	check_verify kq vda "$WORK/kq.raw" || return 1
	cmp -s <(md5_at "$base" 0 32) <(head -c $((32 * MIB)) /dev/zero | tr '\0' '\377' | md5sum | cut -d' ' -f1) ||
		{ echo "the backing file was written"; return 1; }
}

# The same under load: first touches fall back to userspace, the next ones stay in the kernel.
kernel_qcow2_counters() {
	local base over=$WORK/kl.qcow2 hits fb ext
	base=$(mkdisk klbase)
	qemu-img create -q -f qcow2 -b "$base" -F raw "$over" || return 1
	extents_guest kl "$over" loop:20 || return $?
	tr -d '\r' <"$WORK/kl.out" | grep -q "SLUICE-BLK-LOOP: rounds=20 bad=0" ||
		{ echo "guest loop: $(tr -d '\r' <"$WORK/kl.out" | grep SLUICE-BLK-LOOP)"; return 1; }
	echo "# kernel hits $hits, forwarded to userspace $fb, mapped clusters $ext"
	[ "$fb" -gt 0 ] || { echo "nothing fell back to userspace (first touches must)"; return 1; }
	[ "$hits" -gt 0 ] && [ "$ext" -gt 0 ] || { echo "the kernel served nothing from the extent map"; return 1; }
	qemu-img check -q "$over" || { echo "qemu-img check found problems"; return 1; }
}

# An allocated qcow2 on the kernel dataplane: at attach the VMM maps every allocated cluster into the
# module, so the guest's random reads over the whole disk are all served in the kernel, the first read
# of each cluster too: nothing is forwarded to userspace.
kernel_qcow2_premap() {
	local raw=$WORK/kp.raw img=$WORK/kp.qcow2 hits fb ext
	head -c $((64 * MIB)) /dev/zero | tr '\0' '\377' >"$raw"
	qemu-img convert -f raw -O qcow2 -o cluster_size=64k "$raw" "$img" || return 1
	rm -f "$raw"
	extents_guest kp "$img" load:read:1:3 || return $?
	lines kp SLUICE-IOPS | grep -q '^read qd1 [1-9]' || { echo "no read load result"; show kp; return 1; }
	echo "# mapped clusters $ext, kernel hits $hits, forwarded to userspace $fb"
	[ "$ext" = 1024 ] || { echo "$ext of the 1024 allocated clusters mapped"; return 1; }
	[ "$fb" = 0 ] || { echo "$fb requests were forwarded to userspace"; return 1; }
	[ "$hits" -gt 0 ] || { echo "the kernel served nothing from the extent map"; return 1; }
	qemu-img check -q "$img" || { echo "qemu-img check found problems"; return 1; }
}

# qcow2 on the kernel dataplane, the VMM killed (-9) while the guest allocates clusters and flushes:
# qemu-img check finds no corruption (leaks are allowed), every write the guest saw flushed is in the
# image, and a discarded range written again holds the new data.
kernel_qcow2_kill9() {
	local img=$SCRATCH/k9.qcow2 raw=$WORK/k9.raw pid n=0 st i sum lost=0 dw
	DISKS="$DISKS $img"	# on the scratch disk: cache=none needs O_DIRECT, which /tmp (tmpfs) refuses
	qemu-img create -q -f qcow2 -o cluster_size=64k "$img" 64M || return 1
	"$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --append "$APPEND sluice.blk=flushlog:300" \
		--cpus 1 --drive file="$img",format=qcow2,id=k9,queues=1,dataplane=kernel,cache=none \
		>"$WORK/k9.out" 2>"$WORK/k9.err" </dev/null &
	pid=$!
	for _ in $(seq $((GUEST_TIMEOUT * 10))); do
		n=$(tr -d '\r' <"$WORK/k9.out" | grep -c '^SLUICE-FLUSHED: ')
		[ "$n" -ge 8 ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	[ "$n" = 0 ] && died_before_init k9 && return 75
	[ "$n" -ge 8 ] || { echo "only $n flushed rounds before the VMM ended"; show k9; return 1; }
	qemu-img check "$img" >"$WORK/k9.check" 2>&1
	st=$?
	# 0: clean, 3: leaked clusters only (allocations cut short); anything else is corruption.
	[ $st -eq 0 ] || [ $st -eq 3 ] || { echo "qemu-img check exit $st:"; cat "$WORK/k9.check"; return 1; }
	qemu-img convert -O raw "$img" "$raw" || return 1
	while read -r i sum; do
		[ "$(dd if="$raw" bs=64k skip=$((16 + i * 2)) count=1 2>/dev/null | md5sum | cut -d' ' -f1)" = "$sum" ] ||
			{ echo "flushed round $i is not in the image"; lost=$((lost + 1)); }
	done < <(tr -d '\r' <"$WORK/k9.out" | grep -E '^SLUICE-FLUSHED: [0-9]+ [0-9a-f]{32}$' | cut -d' ' -f2-)
	[ $lost -eq 0 ] || return 1
	dw=$(tr -d '\r' <"$WORK/k9.out" | sed -n 's/^SLUICE-BLK-DISCARD-WRITE: ok //p')
	[ -n "$dw" ] || { echo "the guest's discard-then-write did not read back"; show k9; return 1; }
	[ "$(dd if="$raw" bs=64k skip=1000 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" = "$dw" ] ||
		{ echo "the image does not hold the write after the discard"; return 1; }
	echo "# killed after $n flushed rounds (qemu-img check exit $st); all of them in the image"
}

# qcow2 on the kernel dataplane, one cluster at a time: the first write falls back to userspace and
# installs a mapping, the same write again is served from the extent map (the module's counters, read
# while the guest waits at each step); 16 concurrent writes into one unallocated cluster all land.
kernel_qcow2_first_touch() {
	local img=$WORK/kt.qcow2 raw=$WORK/kt.raw d=/sys/class/sluice_blk/kt pid step=0 s
	local -a fb hits
	qemu-img create -q -f qcow2 -o cluster_size=64k "$img" 32M || return 1
	"$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --append "$APPEND sluice.blk=touch" \
		--cpus 1 --drive file="$img",format=qcow2,id=kt,queues=1,dataplane=kernel \
		>"$WORK/kt.out" 2>"$WORK/kt.err" </dev/null &
	pid=$!
	for _ in $(seq $((GUEST_TIMEOUT * 10))); do
		kill -0 $pid 2>/dev/null || break
		# One process per look: the guest waits 6 s at each step, the lab forks slowly.
		s=$(grep -a -o 'SLUICE-STEP: [0-9]' "$WORK/kt.out" | tail -n 1 | cut -c14-)
		if [ -n "$s" ] && [ "$s" -ge "$step" ] && [ -z "${fb[$s]:-}" ]; then
			fb[$s]=$(cat $d/queues/0/fallback) hits[$s]=$(cat $d/extent_hits)
			step=$((s + 1))
		fi
		sleep 0.1
	done
	guest_wait $pid kt
	died_before_init kt && return 75
	[ "$(cat "$WORK/kt.rc")" = 0 ] || { echo "exit status $(cat "$WORK/kt.rc")"; show kt; return 1; }
	echo "# fallback ${fb[0]:-?} -> ${fb[1]:-?} -> ${fb[2]:-?}, extent hits ${hits[0]:-?} -> ${hits[1]:-?} -> ${hits[2]:-?}"
	[ -n "${fb[0]:-}" ] && [ -n "${fb[1]:-}" ] && [ -n "${fb[2]:-}" ] ||
		{ echo "counters not read at every step (seen: ${!fb[*]})"; show kt; return 1; }
	[ "${fb[1]}" -gt "${fb[0]}" ] || { echo "the first write to the cluster did not fall back"; return 1; }
	[ "${fb[2]}" = "${fb[1]}" ] || { echo "the second write to the cluster fell back again"; return 1; }
	[ "${hits[2]}" -gt "${hits[1]}" ] || { echo "the second write was not served from the extent map"; return 1; }
	lines kt SLUICE-BLK-CLUSTER-RACE | grep -q '^ok ' || { echo "concurrent writes to one cluster: read back wrong"; show kt; return 1; }
	qemu-img check -q "$img" || { echo "qemu-img check found problems"; return 1; }
	qemu-img convert -O raw "$img" "$raw" || return 1
	[ "$(dd if="$raw" bs=64k skip=100 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" = "$(lines kt SLUICE-BLK-TOUCH)" ] ||
		{ echo "the image does not hold the cluster written twice"; return 1; }
	[ "$(dd if="$raw" bs=64k skip=200 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" = \
	  "$(lines kt SLUICE-BLK-CLUSTER-RACE | cut -d' ' -f2)" ] ||
		{ echo "the image does not hold the 16 concurrent writes"; return 1; }
}

ktap_plan 10
if ! out=$(prereq_kernel); then
	ktap_diag "$out"
	exit 1
fi
ktap_run_vm "dataplane=kernel, 1 queue: guest write/read-back/flush/discard/write-zeroes; host verifies" kernel_one_queue
ktap_run_vm "kernel (2 queues) and user (2 queues) drives side by side: both verified" kernel_two_drives_two_queues_mixed
ktap_run_vm "module counters serve all, userspace none; worker CPU moves during I/O; data intact" kernel_counters_and_cpu_knob
ktap_run_vm "dataplane=auto uses the module and says so" auto_uses_the_module
ktap_run_vm "without the module: kernel fails clearly, auto falls back to user" without_the_module
ktap_run_vm "qcow2 over a backing file, dataplane=kernel: guest verify, qemu-img check, host content" kernel_qcow2_verify
ktap_run_vm "qcow2, dataplane=kernel under load: fallbacks install extents, then kernel hits; image clean" kernel_qcow2_counters
ktap_run_vm "qcow2, dataplane=kernel: a cluster's first write falls back, the next stays in the kernel; 16 concurrent writes to one cluster" kernel_qcow2_first_touch
ktap_run_vm "qcow2, dataplane=kernel: allocated clusters are mapped at attach; random reads all stay in the kernel" kernel_qcow2_premap
ktap_run_vm "qcow2, dataplane=kernel, VMM killed -9 mid-run: no corruption, every flushed write present, discard then write" kernel_qcow2_kill9
ktap_finish
