#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# blk.sh - virtio-blk on the user dataplane: 1 and 2 drives, 1/2/4 queues, guest write/read-back/flush/discard/write-zeroes
# checked by the guest and then on the image by the host; the control socket and a live queue move during guest I/O.
set -u
. "$(dirname "$0")/../lib/ktap.sh"

. "$(dirname "$0")/vmm_lib.sh"

one_drive_one_queue() {
	local img
	img=$(mkdisk one)
	boot one sluice.blk=verify --cpus 1 --drive file="$img",format=raw,queues=1
	check_verify one vda "$img" || return 1
	lines one SLUICE-BLK-INFO | grep -q "^vda size=$((32 * MIB)) serial=disk0 queues=1 ro=0" ||
		{ echo "guest sees: $(lines one SLUICE-BLK-INFO)"; return 1; }
}

msix_interrupts() {
	lines one SLUICE-IRQ | grep -q 'PCI-MSI.*virtio0-req.0' ||
		{ echo "no MSI-X request vector in /proc/interrupts:"; lines one SLUICE-IRQ; return 1; }
	lines one SLUICE-PCI | grep -q '0000:00:00.0 0000:00:01.0' ||
		{ echo "PCI devices: $(lines one SLUICE-PCI)"; return 1; }
}

# notify=auto is a port write on AMD hosts (the lab's): the driver mapped the I/O BAR of the notify capability.
notify_auto() {
	if grep -q -m1 'AuthenticAMD\|HygonGenuine' /proc/cpuinfo; then
		lines one SLUICE-IOPORTS | grep -q '^c[0-9a-f]*-c[0-9a-f]* : virtio-pci-modern' ||
			{ echo "no notify port in the guest's /proc/ioports: $(lines one SLUICE-IOPORTS)"; return 1; }
	else
		[ -z "$(lines one SLUICE-IOPORTS)" ] || { echo "a notify port on an Intel host"; return 1; }
	fi
}

two_drives_two_queues() {
	local a b
	a=$(mkdisk twoa)
	b=$(mkdisk twob)
	boot two sluice.blk=verify --cpus 2 --iothread id=io0 --iothread id=io1 \
		--drive file="$a",format=raw,id=alpha,queues=2,notify=mmio \
		--drive file="$b",format=raw,id=beta,queues=2,iothread=io1,cache=none,notify=pio
	check_verify two vda "$a" || return 1
	check_verify two vdb "$b" || return 1
	lines two SLUICE-BLK-INFO | grep -q "^vdb .*serial=beta queues=2" ||
		{ echo "guest sees: $(lines two SLUICE-BLK-INFO)"; return 1; }
	# One notify port: beta's (notify=pio); alpha kicks by MMIO.
	[ "$(lines two SLUICE-IOPORTS | grep -c 'virtio-pci-modern')" = 1 ] ||
		{ echo "guest's notify ports: $(lines two SLUICE-IOPORTS)"; return 1; }
}

four_queues() {
	local img
	img=$(mkdisk four)
	boot four sluice.blk=verify --cpus 4 --iothread id=a --iothread id=b \
		--drive file="$img",format=raw,queues=4,queue-size=128,cache=none
	check_verify four vda "$img" || return 1
	lines four SLUICE-BLK-INFO | grep -q "queues=4" || { echo "guest sees: $(lines four SLUICE-BLK-INFO)"; return 1; }
}

readonly_drive() {
	local img sum
	img=$(mkdisk ro)
	sum=$(md5sum <"$img")
	boot ro sluice.blk=verify --drive file="$img",format=raw,readonly=on
	[ "$(cat "$WORK/ro.rc")" = 0 ] || { echo "exit status $(cat "$WORK/ro.rc")"; show ro; return 1; }
	lines ro SLUICE-BLK-INFO | grep -q "ro=1" || { echo "guest sees: $(lines ro SLUICE-BLK-INFO)"; return 1; }
	[ "$(md5sum <"$img")" = "$sum" ] || { echo "a read-only image changed"; return 1; }
}

# The control socket during a guest's write/verify loop, and set-queue-iothread back and forth meanwhile.
control_and_queue_move() {
	local img sock=$WORK/ctl.sock moves=0 pid q st want stopped=0
	img=$(mkdisk ctl)
	timeout -k 5 600 "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --append "$APPEND sluice.blk=loopstop:400" \
		--cpus 1 --iothread id=io0 --iothread id=io1 --control "$sock" \
		--drive file="$img",format=raw,id=d0,queues=1,iothread=io0,notify=pio \
		>"$WORK/ctl.out" 2>"$WORK/ctl.err" </dev/null &
	pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	[ -S "$sock" ] || { echo "no control socket"; kill $pid; return 1; }
	[ "$(stat -c %a "$sock")" = 600 ] || { echo "socket mode $(stat -c %a "$sock")"; kill $pid; return 1; }
	"$CTL" "$sock" query-status >"$WORK/status.json" || { cat "$WORK/status.json"; kill $pid; return 1; }
	grep -q '"status":"running"' "$WORK/status.json" || { cat "$WORK/status.json"; kill $pid; return 1; }
	# The default kernel cache (~/.cache/sluice; the lab's HOME is a tmpfs) was used: filled or read.
	grep -Eq '"kernel-load":"(cached|decompressed-stored)"' "$WORK/status.json" ||
		{ echo "kernel not loaded through the default cache:"; cat "$WORK/status.json"; kill $pid; return 1; }
	"$CTL" "$sock" query-iothreads >"$WORK/iothreads.json" || { kill $pid; return 1; }
	grep -q '"id":"io1","thread-id":[0-9]' "$WORK/iothreads.json" || { cat "$WORK/iothreads.json"; kill $pid; return 1; }
	"$CTL" "$sock" '{"execute":"nope"}' >/dev/null && { echo "unknown command accepted"; kill $pid; return 1; }
	"$CTL" "$sock" '{"execute":' >/dev/null && { echo "bad JSON accepted"; kill $pid; return 1; }
	# Wait for the guest's loop, then move queue 0 between the IOThreads while it runs; after 4
	# moves, end the loop.
	for _ in $(seq $((GUEST_TIMEOUT * 10))); do
		grep -q SLUICE-BLK-LOOP-START "$WORK/ctl.out" 2>/dev/null && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	q=io1
	while kill -0 $pid 2>/dev/null && ! grep -q SLUICE-BLK-LOOP: "$WORK/ctl.out"; do
		if [ $stopped = 0 ] && "$CTL" "$sock" set-queue-iothread drive=d0 queue=0 iothread=$q >/dev/null 2>&1; then
			moves=$((moves + 1))
			# Keep the last good answer (the VM may end between two commands).
			"$CTL" "$sock" query-block >"$WORK/block.tmp" 2>/dev/null && mv "$WORK/block.tmp" "$WORK/block.json"
			[ $q = io1 ] && q=io0 || q=io1
			[ $moves -ge 4 ] && stop_guest_loop "$img" && stopped=1
		fi
		sleep 0.3
	done
	wait $pid
	st=$?
	died_before_init ctl $st && return 75
	[ "$st" = 0 ] || { echo "exit status $st"; show ctl; return 1; }
	[ $stopped = 1 ] || { echo "only $moves queue moves during the guest's loop"; show ctl; return 1; }
	grep -q '"image":"'"$img"'","format":"raw","dataplane":"user"' "$WORK/block.json" &&
		grep -q '"readonly":false,"notify":"pio"' "$WORK/block.json" &&
		grep -q '"queue-map":\[{"queue":0,"iothread":"io[01]","thread-id":[0-9]*,"requests":[1-9]' "$WORK/block.json" ||
		{ echo "query-block: $(cat "$WORK/block.json")"; return 1; }
	lines ctl SLUICE-BLK-LOOP | grep -q "^rounds=[0-9]* bad=0 " ||
		{ echo "guest loop: $(lines ctl SLUICE-BLK-LOOP)"; return 1; }
	want=$(lines ctl SLUICE-BLK-LOOP | sed -n 's/.* md5=//p')
	[ "$(md5_at "$img" 1 1)" = "$want" ] && [ "$(md5_at "$img" 8 1)" = "$want" ] ||
		{ echo "image does not hold the guest's data after $moves moves"; return 1; }
	echo "# $moves queue moves during the guest's I/O ($(lines ctl SLUICE-BLK-LOOP | cut -d' ' -f1))" >&2
}

quit_command() {
	local sock=$WORK/quit.sock pid st
	"$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --append "$APPEND" --control "$sock" \
		>"$WORK/quit.out" 2>"$WORK/quit.err" </dev/null &
	pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	"$CTL" "$sock" quit >/dev/null || { kill $pid; return 1; }
	timeout 30 tail --pid=$pid -f /dev/null
	wait $pid
	st=$?
	[ $st = 0 ] || { echo "exit status $st after quit"; cat "$WORK/quit.err"; return 1; }
	[ ! -e "$sock" ] || { echo "socket left behind"; return 1; }
}

bad_drives() {
	fails_with "file=PATH is required" --drive format=raw || return 1
	fails_with "format=raw|qcow2 is required" --drive file=x.img || return 1
	fails_with "unknown key 'frob'" --drive file=x.img,format=raw,frob=1 || return 1
	fails_with "queues '17'" --drive file=x.img,format=raw,queues=17 || return 1
	fails_with "queue-size '100'" --drive file=x.img,format=raw,queue-size=100 || return 1
	fails_with "x.img" --drive file="$WORK/x.img",format=raw || return 1
	head -c $MIB /dev/zero >"$WORK/y.img"
	fails_with "notify 'fast'" --drive file="$WORK/y.img",format=raw,notify=fast || return 1
	fails_with "dataplane 'fast'" --drive file="$WORK/y.img",format=raw,dataplane=fast || return 1
	fails_with "no --iothread id=nope" --drive file="$WORK/y.img",format=raw,iothread=nope || return 1
}

ktap_plan 10
if ! out=$(prerequisites); then
	ktap_diag "$out"
	exit 1
fi
ktap_run "bad --drive specs: exit != 0 and a one-line reason" bad_drives
ktap_run_fn "1 drive, 1 queue: guest write/read-back/flush/discard/write-zeroes; host verifies the image" one_drive_one_queue
ktap_run "the guest sees the host bridge and the disk on PCI, requests on an MSI-X vector" msix_interrupts
ktap_run "notify=auto: a port write on an AMD host (the guest maps the notify port)" notify_auto
ktap_run_fn "2 drives x 2 queues on 2 IOThreads (one cache=none, notify=mmio and pio): both verified" two_drives_two_queues
ktap_run_fn "4 queues (4 vCPUs, queue-size 128, cache=none): verified" four_queues
ktap_run_fn "readonly=on: the guest sees a read-only disk; the image is unchanged" readonly_drive
ktap_run_vm "control socket queries; set-queue-iothread back and forth during guest I/O, data intact" control_and_queue_move
ktap_run_fn "quit on the control socket ends sluice with status 0" quit_command
ktap_run "no guest run left a sluice error" sh -c "! cat '$WORK'/one.err '$WORK'/two.err '$WORK'/four.err '$WORK'/ro.err '$WORK'/ctl.err '$WORK'/quit.err 2>/dev/null | grep '^sluice:'"
ktap_finish
