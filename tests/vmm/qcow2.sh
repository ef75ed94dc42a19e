#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# qcow2.sh - virtio-blk on qcow2 images (user dataplane): the guest writes, reads back and verifies on a qcow2 image and
# on a qcow2 overlay over a raw backing file; the host runs qemu-img check and compares qemu-img convert -O raw output.
set -u
. "$(dirname "$0")/../lib/ktap.sh"

. "$(dirname "$0")/vmm_lib.sh"

SLUICE_IMG=${SLUICE_IMG:-$BUILD/user/tools/sluice-img}

# to_raw QCOW2: the guest-visible bytes as a raw file (by qemu-img), printed path.
to_raw() {
	local out=$WORK/$(basename "$1").raw
	qemu-img convert -O raw "$1" "$out" || return 1
	echo "$out"
}

qemu_check() {
	qemu-img check "$1" >"$WORK/check.out" 2>&1 ||
		{ echo "qemu-img check $1:"; cat "$WORK/check.out"; return 1; }
}

# A qcow2 image (made by sluice-img convert from the 0xff raw disk): verified by the guest, then by the host.
plain_image() {
	local raw img
	raw=$(mkdisk q1)
	img=$SCRATCH/blk-q1.qcow2
	DISKS="$DISKS $img"
	"$SLUICE_IMG" convert -O qcow2 "$raw" "$img" || return 1
	boot q1 sluice.blk=verify --cpus 2 --iothread id=io0 \
		--drive file="$img",format=qcow2,queues=2,iothread=io0
	qemu_check "$img" || return 1
	check_verify q1 vda "$(to_raw "$img")" || return 1
	lines q1 SLUICE-BLK-INFO | grep -q "^vda size=$((32 * MIB)) " ||
		{ echo "guest sees: $(lines q1 SLUICE-BLK-INFO)"; return 1; }
}

# A qcow2 overlay (4 KiB clusters, cache=none) over a raw backing file: the backing file is never written.
overlay_image() {
	local base img sum
	base=$(mkdisk q2base)
	sum=$(md5sum <"$base")
	img=$SCRATCH/blk-q2.qcow2
	DISKS="$DISKS $img"
	rm -f "$img"
	"$SLUICE_IMG" create -q -f qcow2 -o cluster_size=4k -b "$base" -F raw "$img" || return 1
	boot q2 sluice.blk=verify --cpus 1 --drive file="$img",format=qcow2,queues=1,cache=none
	qemu_check "$img" || return 1
	check_verify q2 vda "$(to_raw "$img")" || return 1
	[ "$(md5sum <"$base")" = "$sum" ] || { echo "the backing file changed"; return 1; }
}

# Two qcow2 drives at once (zstd, v2), and sluice-img check agrees with qemu-img check afterwards.
two_images() {
	local a b raw
	raw=$(mkdisk q3)
	a=$SCRATCH/blk-q3a.qcow2
	b=$SCRATCH/blk-q3b.qcow2
	DISKS="$DISKS $a $b"
	"$SLUICE_IMG" convert -c -O qcow2 -o compression_type=zstd "$raw" "$a" || return 1
	"$SLUICE_IMG" convert -O qcow2 -o compat=0.10 "$raw" "$b" || return 1
	boot q3 sluice.blk=verify --cpus 2 --iothread id=io0 --iothread id=io1 \
		--drive file="$a",format=qcow2,id=za,iothread=io0 \
		--drive file="$b",format=qcow2,id=v2,iothread=io1
	qemu_check "$a" && qemu_check "$b" || return 1
	check_verify q3 vda "$(to_raw "$a")" || return 1
	check_verify q3 vdb "$(to_raw "$b")" || return 1
	"$SLUICE_IMG" check -q "$a" && "$SLUICE_IMG" check -q "$b" || { echo "sluice-img check"; return 1; }
}

ktap_plan 4
if ! out=$(prerequisites); then
	ktap_diag "$out"
	exit 1
fi
if ! command -v qemu-img >/dev/null; then
	ktap_diag "qemu-img is not installed"
	exit 1
fi
ktap_run_fn "qcow2 image, 2 queues on an IOThread: guest verify; qemu-img check; content as expected" plain_image
ktap_run_fn "qcow2 overlay (4k clusters, cache=none) over a raw backing file: verified; backing unchanged" overlay_image
ktap_run_fn "two qcow2 drives (compressed zstd, compat=0.10) at once: both verified and clean" two_images
ktap_run "no guest run left a sluice error" sh -c "! cat '$WORK'/q1.err '$WORK'/q2.err '$WORK'/q3.err 2>/dev/null | grep '^sluice:'"
ktap_finish
