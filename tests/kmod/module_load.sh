#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# module_load.sh - sluice_blk.ko: loaded by the lab, misc device present, rmmod refused while open, reload cycles clean.
set -u
. "$(dirname "$0")/../lib/ktap.sh"

KO=${SLUICE_LAB_KMOD:-}
DEV=/dev/sluice-blk

loaded() {
	[ "$(cat /sys/module/sluice_blk/initstate 2>/dev/null)" = live ] ||
		{ echo "sluice_blk is not live (insmod of ${KO:-?} failed at boot?)"; return 1; }
}

misc_device() {
	local major
	[ -c "$DEV" ] || { echo "$DEV is not a character device"; return 1; }
	major=$(stat -c %t "$DEV")
	[ "$major" = a ] || { echo "$DEV has major 0x$major, expected the misc major 0xa"; return 1; }
	[ "$(stat -c %a "$DEV")" = 600 ] || { echo "$DEV mode $(stat -c %a "$DEV"), expected 600"; return 1; }
	grep -qw sluice-blk /proc/misc || { echo "sluice-blk missing from /proc/misc"; return 1; }
}

rmmod_refused_while_open() {
	local st
	exec 3<>"$DEV" || return 1
	rmmod sluice_blk 2>/dev/null
	st=$?
	exec 3>&-
	[ "$st" -ne 0 ] || { echo "rmmod succeeded with $DEV open"; return 1; }
	loaded
}

unload_clean() {
	rmmod sluice_blk || return 1
	[ ! -e /sys/module/sluice_blk ] || { echo "/sys/module/sluice_blk still present"; return 1; }
	[ ! -e "$DEV" ] || { echo "$DEV still present after rmmod"; return 1; }
}

reload_cycles() {
	local i
	[ -f "$KO" ] || { echo "no module file (SLUICE_LAB_KMOD='$KO')"; return 1; }
	for i in 1 2 3; do
		insmod "$KO" || { echo "insmod #$i failed"; return 1; }
		[ -c "$DEV" ] || { echo "$DEV missing after insmod #$i"; return 1; }
		[ "$i" -eq 3 ] || rmmod sluice_blk || { echo "rmmod #$i failed"; return 1; }
	done
	loaded
}

dmesg_clean() {
	local bad
	bad=$(dmesg | grep -E 'BUG:|WARNING:|Oops|general protection|Call Trace|sluice_blk:.*(fail|error)' |
		grep -v 'module verification failed')
	[ -z "$bad" ] || { echo "$bad"; return 1; }
}

ktap_plan 6
ktap_run "module is live after the lab's insmod" loaded
ktap_run "registers $DEV as a misc device, mode 0600" misc_device
ktap_run "rmmod is refused while $DEV is open" rmmod_refused_while_open
ktap_run "rmmod removes the module and $DEV" unload_clean
ktap_run "three insmod/rmmod cycles" reload_cycles
ktap_run "no kernel warnings in dmesg" dmesg_clean
ktap_finish
