#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# lab.sh - run a command inside the lab VM (Debian kernel under TCG, host / shared read-only) and return its status.
#
# usage: lab.sh [--kver SPEC] [--kmod FILE.ko] [--timeout SEC] [--mem SIZE] [--no-kmod] [--out DIR] [--] 'shell command'
#
# Runs may go on concurrently: each gets its own results directory (--out DIR, or a fresh
# build/lab/<kver>/run.XXXXXX, removed after a successful run) and its own scratch disk.
# The command runs as root with cwd = the repository (same path as on the host), after kvm, kvm_amd and this
# repository's sluice_blk.ko (for that kernel) were loaded.  $SLUICE_LAB_OUT is a writable directory that the
# host sees at the same path; / is the host's root, read-only; /tmp and /run are tmpfs; /scratch is a fresh
# ext4 (on a virtio disk, O_DIRECT-capable).  Exit status: the command's, or 125 when the lab itself failed.
# LAB_APPEND adds to the lab kernel's command line (debug runs: e.g. 'slub_debug=FZPU kfence.sample_interval=5');
# LAB_ACCEL and LAB_CPU replace the lab's -accel (tcg) and -cpu (max), LAB_QEMU its qemu-system-x86_64 and
# LAB_QEMU_DATADIR adds -L DIR (its firmware), for experiments with the lab itself.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
KVER_SPEC=
KMOD=
LOAD_KMOD=1
TIMEOUT=${LAB_TIMEOUT:-900}
MEM=${LAB_MEM:-4G}
SCRATCH_SIZE=${LAB_SCRATCH_SIZE:-4G}
OUT_ARG=

die() { printf 'lab: error: %s\n' "$*" >&2; exit 125; }

while [ $# -gt 0 ]; do
	case "$1" in
	--kver) KVER_SPEC=$2; shift 2 ;;
	--kmod) KMOD=$2; shift 2 ;;
	--no-kmod) LOAD_KMOD=0; shift ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--out) OUT_ARG=$2; shift 2 ;;
	--) shift; break ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] && [ -n "$1" ] || die "usage: make lab [KVER=<ver>] CMD='<shell command>'"
CMD=$1

case "$REPO" in *[[:space:]]*) die "the repository path must not contain spaces: $REPO" ;; esac
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (run 'make deps')"
[ -x /bin/busybox ] || die "/bin/busybox not found (run 'make deps': busybox-static)"

KVER=$("$REPO/scripts/kver.sh" $KVER_SPEC) || exit 125
VMLINUZ=/boot/vmlinuz-$KVER
[ -r "$VMLINUZ" ] || die "kernel image $VMLINUZ missing or unreadable"
[ -n "$KMOD" ] || KMOD=$REPO/build/kmod/$KVER/sluice_blk.ko
if [ "$LOAD_KMOD" -eq 1 ] && [ ! -f "$KMOD" ]; then
	die "module $KMOD not built (run 'make kmod KVER=$KVER')"
fi

LAB=$REPO/build/lab/$KVER
mkdir -p "$LAB"
if [ -n "$OUT_ARG" ]; then
	mkdir -p "$OUT_ARG"
	OUT=$(cd "$OUT_ARG" && pwd)
	rm -rf "${OUT:?}"/*
else
	OUT=$(mktemp -d "$LAB/run.XXXXXX")
fi
case "$OUT" in *[[:space:]]*) die "the results directory must not contain spaces: $OUT" ;; esac

# The initramfs: busybox plus the modules needed to reach the host's root over virtio-9p.  Everything
# else (kvm, ext4, ...) is modprobed from the host's /lib/modules after the switch to that root.
INITRD=$LAB/initramfs.cpio.gz
stamp="$KVER $(stat -c %Y "$REPO/tests/lab/init.sh" /bin/busybox | tr '\n' ' ')"
if [ ! -f "$INITRD" ] || [ "$(cat "$LAB/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
	root=$(mktemp -d "$LAB/initramfs.XXXXXX")
	mkdir -p "$root"/{bin,dev,proc,sys,newroot,out,lib/modules}
	cp /bin/busybox "$root/bin/busybox"
	cp "$REPO/tests/lab/init.sh" "$root/init"
	chmod 755 "$root/init"
	: >"$root/modules.list"
	for m in virtio_pci 9pnet_virtio 9p virtio_blk; do
		modprobe -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}'
	done | awk '!seen[$0]++' | while read -r ko; do
		base=$(basename "$ko")
		case "$base" in
		*.ko.xz) xz -dc "$ko" >"$root/lib/modules/${base%.xz}"; base=${base%.xz} ;;
		*.ko.zst) zstd -qdc "$ko" >"$root/lib/modules/${base%.zst}"; base=${base%.zst} ;;
		*) cp "$ko" "$root/lib/modules/$base" ;;
		esac
		echo "$base" >>"$root/modules.list"
	done
	grep -q '^9p\.ko$' "$root/modules.list" || grep -q 9p "/lib/modules/$KVER/modules.builtin" ||
		die "9p modules for $KVER not found under /lib/modules/$KVER"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.$$"
	mv "$INITRD.$$" "$INITRD"	# atomic: concurrent runs may build the same thing
	echo "$stamp" >"$LAB/initramfs.stamp"
	rm -rf "$root"
fi

# A scratch disk, formatted afresh in the guest at every boot.
SCRATCH=$LAB/scratch-$(basename "$OUT").img
rm -f "$SCRATCH"
truncate -s "$SCRATCH_SIZE" "$SCRATCH"

# What stage 2 needs: it runs in the host's root, as root, in the guest.
{
	printf 'LAB_REPO=%q\n' "$REPO"
	printf 'LAB_OUT=%q\n' "$OUT"
	printf 'LAB_KVER=%q\n' "$KVER"
	printf 'LAB_KMOD=%q\n' "$([ "$LOAD_KMOD" -eq 1 ] && echo "$KMOD")"
	printf 'LAB_CMD=%q\n' "$CMD"
} >"$OUT/lab.env"

qemu=("${LAB_QEMU:-qemu-system-x86_64}" ${LAB_QEMU_DATADIR:+-L "$LAB_QEMU_DATADIR"} -accel "${LAB_ACCEL:-tcg}" -cpu "${LAB_CPU:-max}" -smp 2 -m "$MEM" -machine q35
	-display none -vga none -monitor none -serial stdio -no-reboot -nodefaults
	-kernel "$VMLINUZ" -initrd "$INITRD"
	-append "console=ttyS0 panic=-1 oops=panic quiet loglevel=4 random.trust_cpu=on no_timer_check${LAB_APPEND:+ $LAB_APPEND}"
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap
	-device virtio-9p-pci,fsdev=root,mount_tag=hostroot
	-fsdev local,id=out,path="$OUT",security_model=none,multidevs=remap
	-device virtio-9p-pci,fsdev=out,mount_tag=labout
	-drive file="$SCRATCH",if=none,id=scratch,format=raw,cache=unsafe
	-device virtio-blk-pci,drive=scratch,serial=sluice-scratch)

# Serial output is the command's output; strip the CRs of the serial line.
set +e
timeout --foreground -k 10 "$TIMEOUT" "${qemu[@]}" </dev/null | sed -u -e 's/\r$//' -e '/\] reboot: Power down$/d'
st=("${PIPESTATUS[@]}")
set -e
rm -f "$SCRATCH"
if [ "${st[0]}" -eq 124 ] || [ "${st[0]}" -eq 137 ]; then
	echo "lab: error: timed out after ${TIMEOUT}s (kernel $KVER)" >&2
	exit 125
fi
if [ ! -f "$OUT/rc" ]; then
	echo "lab: error: the command did not complete (qemu status ${st[0]}, kernel $KVER); see the console output above" >&2
	exit 125
fi
rc=$(cat "$OUT/rc")
if [ -s "$OUT/lab-error" ]; then
	cat "$OUT/lab-error" >&2
fi
# A successful run's private results go; a failed one's stay for a look.
[ -z "$OUT_ARG" ] && [ "$rc" -eq 0 ] && rm -rf "$OUT"
exit "$rc"
