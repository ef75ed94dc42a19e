# SPDX-License-Identifier: GPL-2.0
# lab-disk.sh - sourced by the lab profiling scripts: the 128 MiB raw test disk a guest's load runs on, and a guest
# that loads it on dataplane=kernel.

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

# lab_kernel_load DIR ID MODE QD SECS TIMEOUT: start one guest in the background (its pid in load_pid)
# that runs sluice-load rand /dev/vda MODE QD SECS on $img through dataplane=kernel (1 vCPU, 256 MiB,
# one queue, cache=none, drive id ID, so /sys/class/sluice_blk/ID), killed after TIMEOUT s; console in
# DIR/g.out, stderr in DIR/g.err.  Returns once the load began (the guest's SLUICE-BLK-INFO line) or
# the guest is gone.
lab_kernel_load() {
	timeout -k 5 "$6" "$BUILD/user/vmm/sluice" --kernel "/boot/vmlinuz-$(uname -r)" \
		--initrd "$BUILD/tests/vmm/initramfs.cpio.gz" \
		--append "console=ttyS0 reboot=k panic=-1 quiet sluice.blk=load:$3:$4:$5" --cpus 1 --mem 256M \
		--drive file="$img",format=raw,cache=none,queues=1,id="$2",dataplane=kernel \
		>"$1/g.out" 2>"$1/g.err" </dev/null &
	load_pid=$!
	while kill -0 $load_pid 2>/dev/null && ! grep -q SLUICE-BLK-INFO "$1/g.out"; do sleep 0.1; done
}

# lab_load_iops DIR: the IOPS of the guest whose console is DIR/g.out (empty when it printed none).
lab_load_iops() {
	tr -d '\r' <"$1/g.out" | awk '$1 == "SLUICE-IOPS:" { print $4 }'
}
