#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# mkinitramfs.sh - build the vmm suite's guest initramfs (static busybox, the virtio modules of every installed kernel,
# a static load generator; /init reports what the guest sees, runs the disk tests named on its cmdline, then reboots).
# usage: mkinitramfs.sh OUT.cpio.gz [sluice-load.c]
set -eu
out=$1
load_src=${2:-}
[ -x /bin/busybox ] || { echo "mkinitramfs.sh: /bin/busybox not found (busybox-static)" >&2; exit 1; }
root=$(mktemp -d "${out%/*}/.initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys"
cp /bin/busybox "$root/bin/busybox"
# virtio-pci + virtio-blk for each kernel: 6.1 has them all as modules, 6.12 builds virtio_pci in.
for kdir in /lib/modules/*/; do
	kver=$(basename "$kdir")
	mkdir -p "$root/lib/modules/$kver"
	for m in $( (modprobe -S "$kver" --show-depends virtio_pci; modprobe -S "$kver" --show-depends virtio_blk) 2>/dev/null | awk '!seen[$0]++' | sed -n 's/^insmod \([^ ]*\).*/\1/p'); do
		name=$(basename "$m")
		case "$m" in
		*.xz) xz -dc "$m" >"$root/lib/modules/$kver/${name%.xz}" ;;
		*.zst) zstd -qdc "$m" >"$root/lib/modules/$kver/${name%.zst}" ;;
		*) cp "$m" "$root/lib/modules/$kver/$name" ;;
		esac
		# Load order = modprobe's order.
		echo "${name%.*z*}" | sed 's/\.ko$//' >>"$root/lib/modules/$kver/order"
	done
done
if [ -n "$load_src" ]; then
	${CC:-gcc} -static -O2 -pthread -o "$root/bin/sluice-load" "$load_src"
fi
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
# /init of the vmm suite's guest: print what the guest sees on the serial console, then reboot (reboot=k).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "SLUICE-MARKER: init is running (uptime $(cut -d' ' -f1 /proc/uptime))"
echo "SLUICE-CPUS: $(grep -c ^processor /proc/cpuinfo)"
echo "SLUICE-MEMTOTAL-KB: $(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)"
echo "SLUICE-CMDLINE: $(cat /proc/cmdline)"
# sluice.dmesg: where boot time went (with initcall_debug): initcalls of 10 ms or more, gaps of 10 ms or more.
grep -q 'sluice.dmesg' /proc/cmdline && dmesg | awk -F'[][]' '{ t = $2 + 0 }
	/ after [0-9]+ usecs/ { n = $0; sub(/.* after /, "", n); if (n + 0 >= 10000) print "SLUICE-DMESG: " $0 }
	t - p >= 0.01 { printf "SLUICE-DMESG: gap %.3f before %s\n", t - p, $0 } { p = t }
	END { printf "SLUICE-DMESG: last %.3f\n", p }'
if grep -q 'sluice.echo' /proc/cmdline; then
	# The host repeats its line: the first may be cut by the UART's FIFO reset when the port opens.
	stty -echo 2>/dev/null
	while read -r line; do
		case "$line" in *ping-from-stdin) break ;; esac
	done
	echo "SLUICE-READ: ping-from-stdin"
fi

# The disk tests (tests/vmm/blk.sh, kernel.sh): sluice.blk=verify|loop:N|flushlog:N|touch|bench|load:MODE:QD:SECS[:all]
blk=$(sed -n 's/.*sluice\.blk=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$blk" ]; then
	kver=$(uname -r)
	if [ -f "/lib/modules/$kver/order" ]; then
		while read -r m; do insmod "/lib/modules/$kver/$m.ko" 2>/dev/null; done <"/lib/modules/$kver/order"
	fi
	echo "SLUICE-PCI: $(ls /sys/bus/pci/devices | tr '\n' ' ')"
	n=0
	while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
	disks=$(cd /sys/block && ls -d vd* 2>/dev/null | tr '\n' ' ')
	echo "SLUICE-BLK-DISKS: $disks"
	zero1m=$(dd if=/dev/zero bs=64k count=16 2>/dev/null | md5sum | cut -d' ' -f1)
	for d in $disks; do
		echo "SLUICE-BLK-INFO: $d size=$(blockdev --getsize64 /dev/$d) serial=$(cat /sys/block/$d/serial 2>/dev/null) queues=$(ls /sys/block/$d/mq | wc -l) ro=$(cat /sys/block/$d/ro)"
	done
	case "$blk" in
	verify)
		for d in $disks; do
			[ "$(cat /sys/block/$d/ro)" = 1 ] && continue
			dd if=/dev/urandom of=/pat bs=64k count=32 2>/dev/null
			want=$(md5sum </pat | cut -d' ' -f1)
			want1=$(dd if=/pat bs=64k count=16 2>/dev/null | md5sum | cut -d' ' -f1)
			# 2 MiB at 1 MiB, O_DIRECT; 1 MiB at 4 MiB through the page cache, then sync and flush.
			dd if=/pat of=/dev/$d bs=64k seek=16 oflag=direct conv=fsync 2>/dev/null || echo "SLUICE-BLK-ERROR: $d direct write"
			dd if=/pat of=/dev/$d bs=64k seek=64 count=16 2>/dev/null || echo "SLUICE-BLK-ERROR: $d buffered write"
			sync
			blockdev --flushbufs /dev/$d
			got=$(dd if=/dev/$d bs=64k skip=16 count=32 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
			got1=$(dd if=/dev/$d bs=64k skip=64 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
			echo "SLUICE-BLK-WRITE: $d $want $got $want1 $got1"
			# discard 1 MiB at 8 MiB, write zeroes 1 MiB at 12 MiB; the second must read back as zeroes.
			sluice-load discard /dev/$d $((8 << 20)) $((1 << 20)) && echo "SLUICE-BLK-DISCARD: $d ok"
			sluice-load zeroout /dev/$d $((12 << 20)) $((1 << 20)) && echo "SLUICE-BLK-ZEROOUT: $d ok"
			z=$(dd if=/dev/$d bs=64k skip=192 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
			[ "$z" = "$zero1m" ] && echo "SLUICE-BLK-ZEROES-READ: $d ok"
			sync
		done
		;;
	loop:*|loopstop:*)
		# N rounds of write + read back + compare over 1 MiB slices of vda (during a queue move).
		# loopstop:MAX: the same until the host writes SLUICE-STOP at 31 MiB (looked at from round 8
		# on, so every slice was written) or MAX rounds: the host decides how long the I/O lasts.
		max=${blk#*:}
		bad=0
		dd if=/dev/urandom of=/pat bs=64k count=16 2>/dev/null
		want=$(md5sum </pat | cut -d' ' -f1)
		echo "SLUICE-BLK-LOOP-START"
		i=0
		while [ $i -lt "$max" ]; do
			off=$((16 + (i % 8) * 16))
			dd if=/pat of=/dev/vda bs=64k seek=$off oflag=direct 2>/dev/null || bad=$((bad + 1))
			got=$(dd if=/dev/vda bs=64k skip=$off count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
			[ "$got" = "$want" ] || bad=$((bad + 1))
			i=$((i + 1))
			case $blk in loopstop:*) [ $i -ge 8 ] && dd if=/dev/vda bs=512 skip=63488 count=1 iflag=direct \
				2>/dev/null | grep -q SLUICE-STOP && break ;; esac
		done
		sync
		echo "SLUICE-BLK-LOOP: rounds=$i bad=$bad md5=$want"
		;;
	flushlog:*)
		# First a discard then a write of the same range (it must read back the new data).  Then N rounds:
		# 64 KiB of fresh random data at 1 MiB + i * 128 KiB (a new cluster each), O_DIRECT + fsync (a FLUSH),
		# reported only after the fsync returned.  The host kills the VMM meanwhile: every reported round
		# must be in the image.
		rounds=${blk#flushlog:}
		dd if=/dev/urandom of=/pat bs=64k count=1 2>/dev/null
		dd if=/pat of=/dev/vda bs=64k seek=1000 oflag=direct conv=fsync 2>/dev/null
		sluice-load discard /dev/vda $((1000 << 16)) $((1 << 16)) || echo "SLUICE-BLK-ERROR: discard"
		dd if=/dev/urandom of=/pat bs=64k count=1 2>/dev/null
		want=$(md5sum </pat | cut -d' ' -f1)
		dd if=/pat of=/dev/vda bs=64k seek=1000 oflag=direct conv=fsync 2>/dev/null
		got=$(dd if=/dev/vda bs=64k skip=1000 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
		[ "$got" = "$want" ] && echo "SLUICE-BLK-DISCARD-WRITE: ok $want"
		i=0
		while [ $i -lt "$rounds" ]; do
			dd if=/dev/urandom of=/pat bs=64k count=1 2>/dev/null
			dd if=/pat of=/dev/vda bs=64k seek=$((16 + i * 2)) oflag=direct conv=fsync 2>/dev/null || break
			echo "SLUICE-FLUSHED: $i $(md5sum </pat | cut -d' ' -f1)"
			i=$((i + 1))
		done
		;;
	touch)
		# qcow2 on the kernel dataplane (tests/vmm/kernel.sh reads the module's counters at each step, while
		# the guest sleeps): one 64 KiB write to an unallocated cluster (falls back, installs a mapping), then
		# the same write again (stays in the kernel).  Then 16 concurrent 4 KiB writes into one unallocated
		# cluster, read back whole.
		dd if=/dev/urandom of=/pat bs=64k count=1 2>/dev/null
		echo "SLUICE-STEP: 0"; sleep 6
		dd if=/pat of=/dev/vda bs=64k seek=100 oflag=direct 2>/dev/null || echo "SLUICE-BLK-ERROR: first write"
		echo "SLUICE-STEP: 1"; sleep 6
		dd if=/pat of=/dev/vda bs=64k seek=100 oflag=direct 2>/dev/null || echo "SLUICE-BLK-ERROR: second write"
		echo "SLUICE-STEP: 2"; sleep 6
		j=0
		while [ $j -lt 16 ]; do
			dd if=/dev/urandom of=/p$j bs=4k count=1 2>/dev/null
			j=$((j + 1))
		done
		j=0
		while [ $j -lt 16 ]; do
			dd if=/p$j of=/dev/vda bs=4k seek=$((200 * 16 + j)) oflag=direct 2>/dev/null &
			j=$((j + 1))
		done
		wait
		want=$(j=0; while [ $j -lt 16 ]; do cat /p$j; j=$((j + 1)); done | md5sum | cut -d' ' -f1)
		got=$(dd if=/dev/vda bs=64k skip=200 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
		[ "$got" = "$want" ] && echo "SLUICE-BLK-CLUSTER-RACE: ok $want"
		echo "SLUICE-BLK-TOUCH: $(md5sum </pat | cut -d' ' -f1)"
		;;
	load:*)		# one sluice-load case (profiling: scripts/exitprof.sh); load:MODE:QD:SECS:all loads every disk at once
		set -- $(echo "${blk#load:}" | tr ':' ' ')
		if [ "${4:-}" = all ]; then
			for d in $disks; do sluice-load rand /dev/$d "$1" "$2" "$3" 64 & done
			wait
		else
			sluice-load rand /dev/vda "$1" "$2" "$3" 64
		fi
		;;
	bench)
		for m in read write; do
			for qd in 1 32; do
				sluice-load rand /dev/vda $m $qd 5 64
			done
		done
		;;
	esac
	grep virtio /proc/interrupts | sed 's/^/SLUICE-IRQ: /'
	# An I/O range here means the driver took a port notify capability (notify=pio).
	grep virtio-pci-modern /proc/ioports | sed 's/^ */SLUICE-IOPORTS: /'
	echo "SLUICE-CLOCK: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)" \
		"$(grep -o 'x2apic\|tsc_deadline_timer\|constant_tsc\|nonstop_tsc' /proc/cpuinfo | sort -u | tr '\n' ' ')"
	# Requests the guest completed per disk (reads, writes, discards, flushes: /sys/block/<d>/stat).
	for d in $disks; do echo "SLUICE-BLK-STAT: $d $(cat /sys/block/$d/stat)"; done
	echo "SLUICE-BLK-DONE"
fi
case " $(cat /proc/cmdline) " in
*" sluice.poweroff "*) poweroff -f ;;
esac
reboot -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9) >"$out.tmp"
mv "$out.tmp" "$out"
