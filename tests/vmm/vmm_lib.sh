# SPDX-License-Identifier: GPL-2.0
# vmm_lib.sh - shared by the VMM lab tests: scratch disks, booting a guest, reading its console, verifying images.
# Source it after tests/lib/ktap.sh; it sets REPO, BUILD, SLUICE, CTL, INITRD, KERNEL, SCRATCH, WORK, APPEND, MIB.

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$REPO/build}
SLUICE=${SLUICE:-$BUILD/user/vmm/sluice}
CTL=${SLUICE_CTL:-$BUILD/user/tools/sluice-ctl}
INITRD=${SLUICE_VMM_INITRD:-$BUILD/tests/vmm/initramfs.cpio.gz}
KERNEL=/boot/vmlinuz-$(uname -r)
SCRATCH=${SLUICE_LAB_SCRATCH:-}
WORK=$(mktemp -d)
DISKS=
trap 'rm -rf "$WORK" $DISKS' EXIT
APPEND="console=ttyS0 reboot=k panic=-1 quiet"
MIB=1048576

# mkdisk NAME: a 32 MiB raw image full of 0xff bytes (so that discard and zeroes show) on the scratch disk.
mkdisk() {
	local img=$SCRATCH/blk-$1.img
	head -c $((32 * MIB)) /dev/zero | tr '\0' '\377' >"$img"
	DISKS="$DISKS $img"
	echo "$img"
}

# A guest normally reaches its reboot in 10-20 s in the lab, and /init in 5-20 s; one that takes longer has hung.
GUEST_TIMEOUT=${SLUICE_GUEST_TIMEOUT:-240}
BOOT_TIMEOUT=${SLUICE_BOOT_TIMEOUT:-120}

# guest_wait PID NAME: wait for the sluice process PID; if it outlives $GUEST_TIMEOUT, write what its
# threads are doing to $WORK/NAME.hang (shown by 'show'), kill it and record status 124.  Status in $WORK/NAME.rc.
guest_wait() {
	local pid=$1 name=$2 t st init=0
	for ((t = 0; t < GUEST_TIMEOUT * 10; t++)); do
		kill -0 "$pid" 2>/dev/null || break
		# A guest that has not reached /init in $BOOT_TIMEOUT has hung in its boot (see died_before_init).
		if [ $init = 0 ] && [ $((t % 50)) = 49 ]; then
			tr -d '\r' <"$WORK/$name.out" | grep -q 'SLUICE-MARKER: init is running' && init=1
			[ $init = 0 ] && [ $t -ge $((BOOT_TIMEOUT * 10)) ] && break
		fi
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		{
			echo "sluice (pid $pid) still running after ${GUEST_TIMEOUT}s; its threads:"
			for t in /proc/"$pid"/task/*; do
				echo "$(cat "$t/comm" 2>/dev/null) $(basename "$t"): $(cut -d' ' -f3 "$t/stat" 2>/dev/null)" \
					"wchan=$(cat "$t/wchan" 2>/dev/null)"
			done
			command -v gdb >/dev/null && timeout 60 gdb -p "$pid" -batch -nx -ex 'thread apply all bt' 2>&1 |
				grep -E '^(Thread|#)'
		} >"$WORK/$name.hang" 2>&1
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		st=124
	else
		wait "$pid"
		st=$?
	fi
	echo "$st" >"$WORK/$name.rc"
	return 0
}

# stale_int3 NAME: did the guest kernel die of an int3 trap?  Multi-threaded TCG (the lab's CPU) sometimes
# runs a stale int3 of the guest's own live code patching (text_poke_bp) on its other vCPU: a fault of the
# lab, not of sluice (the lab kernel itself died of it before stage2.sh held a VM open).
stale_int3() {
	tr -d '\r' <"$WORK/$1.out" | grep -qE '(Oops: )?int3: 0000 \['
}

# died_before_init NAME [STATUS]: the guest never reached /init, and either triple-faulted or hung (STATUS,
# default $WORK/NAME.rc, is 124).  In the lab this happens about once per full run, on either kernel, with
# an empty console (the kernel had printed nothing yet): an AP or the boot CPU triple-faults, or the boot
# CPU spins without exits.  The L1 kernel under TCG corrupts its own memory the same way now and then
# (Documentation/testing.rst); 60 plain boots in a row show none.  A flaw of the lab as far as we can tell.
died_before_init() {
	tr -d '\r' <"$WORK/$1.out" | grep -q 'SLUICE-MARKER: init is running' && return 1
	grep -q 'triple fault' "$WORK/$1.err" && return 0
	[ "${2:-$(cat "$WORK/$1.rc" 2>/dev/null)}" = 124 ]
}

# smp_triple_fault NAME [sluice options...]: a guest given 2 or more vCPUs (--cpus N among the options)
# triple-faulted after /init.  The lab's nested SVM does this to multi-vCPU guests under I/O, and does it
# under QEMU as the VMM too (Documentation/testing.rst, "Guests with 2 vCPUs that triple-fault").  A
# 1-vCPU guest that triple-faults is never excused.
smp_triple_fault() {
	local name=$1 cpus=1
	shift
	while [ $# -gt 1 ]; do
		[ "$1" = --cpus ] && cpus=$2
		shift
	done
	[ "$cpus" -ge 2 ] && grep -q 'triple fault' "$WORK/$name.err"
}

# boot NAME APPEND-EXTRA [sluice options...]: run a guest to its reboot; output in $WORK/NAME.{out,err,rc}.
# A guest that died of a stale int3 (above), before /init (died_before_init) or, with 2 or more vCPUs, of a
# triple fault (smp_triple_fault) runs once more, on the same image, and says so.  Only the guest loads
# that give the same result when repeated on their own leftovers use boot (sluice.blk=verify does).
boot() {
	local name=$1 extra=$2 try
	shift 2
	for try in 1 2; do
		"$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --append "$APPEND $extra" "$@" \
			>"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
		guest_wait $! "$name"
		if stale_int3 "$name"; then
			[ $try = 1 ] && echo "# $name: the guest kernel died of a stale int3 (TCG lab); running it again" >&2
		elif died_before_init "$name"; then
			[ $try = 1 ] && echo "# $name: the guest died before /init ($(grep -o 'triple fault[^;]*' \
				"$WORK/$name.err" || echo hung)); lab flaw, running it again" >&2
		elif smp_triple_fault "$name" "$@"; then
			[ $try = 1 ] && echo "# $name: the guest (2+ vCPUs) triple-faulted after /init" \
				"($(grep -o 'vcpu [0-9]*: triple fault' "$WORK/$name.err" | head -1)); lab flaw, running it again" >&2
		else
			break
		fi
	done
}

# ktap_run_vm NAME FN: ktap_run_fn for a case that starts its guests itself; FN returns 75 when its guest
# died before /init (died_before_init), and then runs once more, saying so.
ktap_run_vm() {
	local name=$1 st
	shift
	"$@"
	st=$?
	if [ $st = 75 ]; then
		echo "# the guest died before /init (lab flaw, see died_before_init); running the case again"
		"$@"
		st=$?
	fi
	ktap_result "$st" "$name"
}

show() {
	# The start of a guest oops, if any (the tail below may only hold its registers).
	tr -d '\r' <"$WORK/$1.out" | grep -m1 -B2 -A6 -E 'Oops|BUG:|general protection|int3: 0000' &&
		echo "..."
	echo "--- console (last lines) ---"
	tr -d '\r' <"$WORK/$1.out" | tail -n 20
	echo "--- stderr ---"
	cat "$WORK/$1.err"
	[ -f "$WORK/$1.hang" ] && cat "$WORK/$1.hang"
	return 0
}

# lines NAME KEY: every "KEY: value" printed by the guest.
lines() {
	tr -d '\r' <"$WORK/$1.out" | sed -n "s/^$2: //p"
}

# stop_guest_loop IMG: end a guest's loopstop:MAX run (it reads this marker at 31 MiB each round).
stop_guest_loop() {
	printf SLUICE-STOP | dd of="$1" bs=512 seek=63488 conv=notrunc,fsync 2>/dev/null
}

md5_at() {	# md5_at IMG OFFSET_MIB LEN_MIB
	dd if="$1" bs=64k skip=$(($2 * 16)) count=$(($3 * 16)) 2>/dev/null | md5sum | cut -d' ' -f1
}

# check_verify NAME DEV IMG: the guest's verify pass on DEV passed and the image holds the same bytes.
check_verify() {
	local name=$1 dev=$2 img=$3 w zero
	[ "$(cat "$WORK/$name.rc")" = 0 ] || { echo "exit status $(cat "$WORK/$name.rc")"; show "$name"; return 1; }
	w=$(lines "$name" SLUICE-BLK-WRITE | grep "^$dev ")
	set -- $w
	[ $# = 5 ] || { echo "no write result for $dev"; show "$name"; return 1; }
	[ "$2" = "$3" ] || { echo "$dev: guest read back $3 after O_DIRECT writes of $2"; return 1; }
	[ "$4" = "$5" ] || { echo "$dev: guest read back $5 after buffered writes of $4"; return 1; }
	[ "$(md5_at "$img" 1 2)" = "$2" ] || { echo "$dev: image at 1 MiB does not hold the guest's data"; return 1; }
	[ "$(md5_at "$img" 4 1)" = "$4" ] || { echo "$dev: image at 4 MiB does not hold the guest's data"; return 1; }
	lines "$name" SLUICE-BLK-DISCARD | grep -qx "$dev ok" || { echo "$dev: discard failed"; show "$name"; return 1; }
	lines "$name" SLUICE-BLK-ZEROOUT | grep -qx "$dev ok" || { echo "$dev: write-zeroes failed"; show "$name"; return 1; }
	lines "$name" SLUICE-BLK-ZEROES-READ | grep -qx "$dev ok" || { echo "$dev: zeroed range reads non-zero"; return 1; }
	zero=$(head -c $MIB /dev/zero | md5sum | cut -d' ' -f1)
	[ "$(md5_at "$img" 12 1)" = "$zero" ] || { echo "$dev: image at 12 MiB (write-zeroes) is not zero"; return 1; }
	[ "$(md5_at "$img" 8 1)" = "$zero" ] || { echo "$dev: image at 8 MiB (discard: hole punched) is not zero"; return 1; }
	# Untouched ranges keep their 0xff.
	[ "$(md5_at "$img" 20 1)" = "$(head -c $MIB /dev/zero | tr '\0' '\377' | md5sum | cut -d' ' -f1)" ] ||
		{ echo "$dev: image at 20 MiB was changed"; return 1; }
}

prerequisites() {
	[ -x "$SLUICE" ] || { echo "$SLUICE not built"; return 1; }
	[ -x "$CTL" ] || { echo "$CTL not built"; return 1; }
	[ -r "$INITRD" ] || { echo "$INITRD not built"; return 1; }
	[ -c /dev/kvm ] || { echo "no /dev/kvm"; return 1; }
	[ -n "$SCRATCH" ] && [ -d "$SCRATCH" ] || { echo "no \$SLUICE_LAB_SCRATCH (run in the lab)"; return 1; }
}

# fails_with PATTERN ARGS...: sluice ARGS exits non-zero with one stderr line "sluice: ...PATTERN".
fails_with() {
	local pattern=$1 st
	shift
	timeout 30 "$SLUICE" --kernel "$KERNEL" "$@" >"$WORK/bad.out" 2>"$WORK/bad.err" </dev/null
	st=$?
	[ "$st" -ne 0 ] && [ "$st" -ne 124 ] || { echo "sluice $* exited $st"; return 1; }
	[ "$(wc -l <"$WORK/bad.err")" -eq 1 ] || { echo "sluice $*:"; cat "$WORK/bad.err"; return 1; }
	grep -q "^sluice: .*$pattern" "$WORK/bad.err" ||
		{ echo "sluice $*: '$(cat "$WORK/bad.err")' does not match '$pattern'"; return 1; }
}
