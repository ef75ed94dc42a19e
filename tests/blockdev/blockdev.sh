#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# blockdev.sh - sluice-io on a loop block device: both engines, both cache modes, checked by qemu-io.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/ktap.sh"
B=$HERE/../../build
SIO=$B/user/tools/sluice-io
SCRATCH=${SLUICE_LAB_SCRATCH:-}
DEV=

cleanup() { [ -n "$DEV" ] && losetup -d "$DEV" 2>/dev/null; }
trap cleanup EXIT

setup() {
	[ -n "$SCRATCH" ] || { echo "needs the lab's scratch disk (SLUICE_LAB_SCRATCH)"; return 1; }
	modprobe loop 2>/dev/null
	truncate -s 64M "$SCRATCH/bd.img" || return 1
	DEV=$(losetup -f --show "$SCRATCH/bd.img") || return 1
	[ -b "$DEV" ] || { echo "$DEV is not a block device"; return 1; }
}

# rw ENGINE CACHE PATTERN: write with sluice-io, read back with sluice-io and qemu-io.
rw() {
	local aio=$1 cache=$2 pat=$3
	"$SIO" -f raw -t "$cache" -i "$aio" -c "write -P $pat 1M 3M" -c "write -P $pat 5000 1000" -c flush "$DEV" ||
		return 1
	"$SIO" -f raw -t "$cache" -i "$aio" -c "read -P $pat 1M 3M" -c "read -P $pat 5000 1000" "$DEV" || return 1
	qemu-io -f raw -t none -c "read -P $pat 1M 3M" -c "read -P $pat 5000 1000" "$DEV" >/dev/null || {
		echo "qemu-io does not see sluice-io's writes"; return 1; }
}

length_and_info() {
	local out
	out=$("$SIO" -f raw -c length "$DEV") || return 1
	[ "$out" = "64 MiB" ] || { echo "length says '$out'"; return 1; }
}

discard_and_zeroes() {
	"$SIO" -f raw -t none -c "write -P 0x11 0 2M" -c "discard 0 1M" -c "write -z 1M 1M" -c flush "$DEV" ||
		return 1
	"$SIO" -f raw -t none -c "read -P 0 0 2M" "$DEV" || { echo "discarded/zeroed range not zero"; return 1; }
	qemu-io -f raw -t none -c "read -P 0 0 2M" "$DEV" >/dev/null || return 1
}

truncate_refused() {
	"$SIO" -f raw -c "truncate 32M" "$DEV" 2>/dev/null && { echo "a block device was truncated"; return 1; }
	return 0
}

ktap_plan 8
ktap_run_fn "a loop device over a scratch file" setup
ktap_run "io_uring, cache=writeback" rw io_uring writeback 0x21
ktap_run "io_uring, cache=none" rw io_uring none 0x22
ktap_run "threads, cache=writeback" rw threads writeback 0x23
ktap_run "threads, cache=none" rw threads none 0x24
ktap_run "length of the device" length_and_info
ktap_run "discard and write-zeroes read back as zero" discard_and_zeroes
ktap_run "truncate of a block device is refused" truncate_refused
ktap_finish
