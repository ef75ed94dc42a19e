#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# mkinitramfs.sh - build the vmm suite's guest initramfs (static busybox; /init reports what the guest sees, then reboots).
# usage: mkinitramfs.sh OUT.cpio.gz
set -eu
out=$1
[ -x /bin/busybox ] || { echo "mkinitramfs.sh: /bin/busybox not found (busybox-static)" >&2; exit 1; }
root=$(mktemp -d "${out%/*}/.initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys"
cp /bin/busybox "$root/bin/busybox"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
# /init of the vmm suite's guest: print what the guest sees on the serial console, then reboot (reboot=k).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "SLUICE-MARKER: init is running"
echo "SLUICE-CPUS: $(grep -c ^processor /proc/cpuinfo)"
echo "SLUICE-MEMTOTAL-KB: $(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)"
echo "SLUICE-CMDLINE: $(cat /proc/cmdline)"
if grep -q 'sluice.echo' /proc/cmdline; then
	# The host repeats its line: the first may be cut by the UART's FIFO reset when the port opens.
	stty -echo 2>/dev/null
	while read -r line; do
		case "$line" in *ping-from-stdin) break ;; esac
	done
	echo "SLUICE-READ: ping-from-stdin"
fi
case " $(cat /proc/cmdline) " in
*" sluice.poweroff "*) poweroff -f ;;
esac
reboot -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9) >"$out.tmp"
mv "$out.tmp" "$out"
