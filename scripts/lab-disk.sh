# SPDX-License-Identifier: GPL-2.0
# lab-disk.sh - sourced by the lab profiling scripts: the 128 MiB raw test disk a guest's load runs on.

# lab_disk TOOL KIND NAME: set img to a fresh 128 MiB disk of KIND "file" (NAME.img on the lab's
# scratch disk, zeroes, written back: O_DIRECT reads over dirty page cache would wait) or "ram" (the
# brd RAM disk /dev/ram0, random data).  Exits with TOOL's message when it cannot.
lab_disk() {
	case $2 in
	file)
		img=$SLUICE_LAB_SCRATCH/$3.img
		dd if=/dev/zero of="$img" bs=1M count=128 conv=fsync status=none ;;
	ram)
		[ -b /dev/ram0 ] || modprobe brd rd_nr=1 rd_size=131072 max_part=0 || { echo "$1: no brd" >&2; exit 1; }
		img=/dev/ram0
		dd if=/dev/urandom of="$img" bs=1M count=128 status=none ;;
	*)
		echo "$1: the disk is file or ram, not '$2'" >&2; exit 2 ;;
	esac
}
