#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# boot.sh - the sluice VMM boots the lab's Debian kernel: serial console, SMP, RAM above the PCI hole, cmdline, bad input.
set -u
. "$(dirname "$0")/../lib/ktap.sh"

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$REPO/build}
SLUICE=${SLUICE:-$BUILD/user/vmm/sluice}
CTL=${SLUICE_CTL:-$BUILD/user/tools/sluice-ctl}
INITRD=${SLUICE_VMM_INITRD:-$BUILD/tests/vmm/initramfs.cpio.gz}
KERNEL=/boot/vmlinuz-$(uname -r)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
APPEND="console=ttyS0 reboot=k panic=-1 quiet"
TOKEN=sluice.token=$$-$RANDOM

# boot NAME [sluice options...]: run a guest to its reboot; output in $WORK/NAME.out, status in $WORK/NAME.rc.
boot() {
	local name=$1
	shift
	timeout -k 5 150 "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" "$@" \
		>"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null
	echo $? >"$WORK/$name.rc"
}

# show NAME: the end of a guest's console and sluice's stderr, as diagnostics.
show() {
	echo "--- console (last lines) ---"
	tr -d '\r' <"$WORK/$1.out" | tail -n 15
	echo "--- stderr ---"
	cat "$WORK/$1.err"
}

# field NAME KEY: the value of "KEY: value" printed by the guest's /init.
field() {
	tr -d '\r' <"$WORK/$1.out" | sed -n "s/^$2: //p" | tail -n 1
}

prerequisites() {
	[ -x "$SLUICE" ] || { echo "$SLUICE not built"; return 1; }
	[ -r "$INITRD" ] || { echo "$INITRD not built (meson builds it: tests/vmm/mkinitramfs.sh)"; return 1; }
	[ -r "$KERNEL" ] || { echo "no kernel image $KERNEL"; return 1; }
	[ -c /dev/kvm ] || { echo "no /dev/kvm"; return 1; }
}

boots_to_init() {
	# stdin is a pipe here: a line, repeated until the guest's /init has read it, goes through
	# the UART's receive path (what arrives before the guest opens the port is lost, as on hardware).
	while printf 'ping-from-stdin\n' 2>/dev/null; do sleep 1; done |
		timeout -k 5 150 "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" \
		--cpus 1 --append "$APPEND $TOKEN sluice.echo" >"$WORK/one.out" 2>"$WORK/one.err"
	echo "${PIPESTATUS[1]}" >"$WORK/one.rc"
	grep -q '^SLUICE-MARKER: init is running' <(tr -d '\r' <"$WORK/one.out") ||
		{ echo "no marker from /init"; show one; return 1; }
	[ "$(cat "$WORK/one.rc")" = 0 ] || { echo "exit status $(cat "$WORK/one.rc"), expected 0"; show one; return 1; }
	[ "$(field one SLUICE-CPUS)" = 1 ] || { echo "guest saw $(field one SLUICE-CPUS) CPUs, expected 1"; return 1; }
}

cmdline_reaches_guest() {
	local cmdline
	cmdline=$(field one SLUICE-CMDLINE)
	case " $cmdline " in
	*" $TOKEN "*) ;;
	*) echo "guest /proc/cmdline '$cmdline' lacks $TOKEN"; return 1 ;;
	esac
}

serial_input() {
	[ "$(field one SLUICE-READ)" = ping-from-stdin ] ||
		{ echo "guest read '$(field one SLUICE-READ)' from ttyS0, expected ping-from-stdin"; show one; return 1; }
}

smp_two_cpus() {
	boot two --cpus 2 --append "$APPEND"
	[ "$(cat "$WORK/two.rc")" = 0 ] || { echo "exit status $(cat "$WORK/two.rc")"; show two; return 1; }
	[ "$(field two SLUICE-CPUS)" = 2 ] ||
		{ echo "guest saw '$(field two SLUICE-CPUS)' CPUs, expected 2"; show two; return 1; }
}

memory_above_pci_hole() {
	local kb
	boot big --mem 3584M --append "$APPEND"
	[ "$(cat "$WORK/big.rc")" = 0 ] || { echo "exit status $(cat "$WORK/big.rc")"; show big; return 1; }
	kb=$(field big SLUICE-MEMTOTAL-KB)
	# 3 GiB below the hole + 512 MiB above 4 GiB, less what the kernel keeps: well above 3 GiB.
	[ -n "$kb" ] && [ "$kb" -gt $((3 * 1024 * 1024)) ] ||
		{ echo "guest MemTotal '$kb' kB, expected > 3 GiB"; show big; return 1; }
}

# inject-nmi on the control socket reaches the guest as an NMI on every vCPU: a guest with
# unknown_nmi_panic, held at its /init (sluice.echo and a stdin that never sends the line it waits
# for), says it got an NMI for no reason, panics with a backtrace, and its panic=-1 reboot ends sluice.
inject_nmi() {
	local sock=$WORK/nmi.sock pid spid i
	mkfifo "$WORK/nmi.in"
	sleep 200 >"$WORK/nmi.in" &
	spid=$!
	timeout -k 5 150 "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" --cpus 2 --control "$sock" \
		--append "$APPEND unknown_nmi_panic sluice.echo" <"$WORK/nmi.in" >"$WORK/nmi.out" 2>"$WORK/nmi.err" &
	pid=$!
	for i in $(seq 1500); do
		tr -d '\r' <"$WORK/nmi.out" | grep -q '^SLUICE-MARKER: init is running' && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	"$CTL" "$sock" inject-nmi >"$WORK/nmi.ctl" && grep -q '"return"' "$WORK/nmi.ctl" ||
		{ echo "inject-nmi answered '$(cat "$WORK/nmi.ctl")'"; kill $pid $spid; show nmi; return 1; }
	for i in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
	kill $spid 2>/dev/null
	kill $pid 2>/dev/null && { echo "the guest still runs 60 s after the NMI"; show nmi; return 1; }
	tr -d '\r' <"$WORK/nmi.out" | grep -q 'NMI received for unknown reason' ||
		{ echo "the guest did not report the NMI"; show nmi; return 1; }
	tr -d '\r' <"$WORK/nmi.out" | grep -q 'Kernel panic - not syncing: NMI' ||
		{ echo "no NMI panic"; show nmi; return 1; }
	tr -d '\r' <"$WORK/nmi.out" | grep -q 'Call Trace:' || { echo "no backtrace"; show nmi; return 1; }
}

# fails_with NAME PATTERN sluice-args...: exit status != 0 and one stderr line matching PATTERN.
fails_with() {
	local pattern=$1 st lines
	shift
	timeout 30 "$SLUICE" "$@" >"$WORK/bad.out" 2>"$WORK/bad.err" </dev/null
	st=$?
	lines=$(wc -l <"$WORK/bad.err")
	[ "$st" -ne 0 ] || { echo "sluice $* exited 0"; return 1; }
	[ "$st" -ne 124 ] || { echo "sluice $* timed out"; return 1; }
	[ "$lines" -eq 1 ] || { echo "sluice $*: $lines lines on stderr:"; cat "$WORK/bad.err"; return 1; }
	grep -q "^sluice: .*$pattern" "$WORK/bad.err" ||
		{ echo "sluice $*: '$(cat "$WORK/bad.err")' does not match '$pattern'"; return 1; }
}

bad_inputs() {
	local junk=$WORK/not-a-kernel
	head -c 8192 /dev/urandom >"$junk"
	fails_with "cannot open" --kernel "$WORK/missing" || return 1
	fails_with "is not a bzImage" --kernel "$junk" || return 1
	fails_with "--mem" --kernel "$KERNEL" --mem 0 || return 1
	fails_with "--cpus" --kernel "$KERNEL" --cpus 0 || return 1
	fails_with "unknown option" --kernel "$KERNEL" --frobnicate || return 1
	fails_with "format=raw|qcow2 is required" --kernel "$KERNEL" --drive file=x.img || return 1
	fails_with "--kernel is required" --cpus 1 || return 1
	fails_with "--kernel-cache /proc/sluice-none: cannot be created" --kernel "$KERNEL" \
		--kernel-cache /proc/sluice-none || return 1
}

# The decompressed-kernel cache, end to end: the first boot stores the kernel (one entry), the next
# boots from it (a hit touches the entry's mtime and adds none).
kernel_cache() {
	local kc=$WORK/kc e size
	mkdir -m 700 "$kc"
	boot kc1 --kernel-cache "$kc" --append "$APPEND"
	[ "$(cat "$WORK/kc1.rc")" = 0 ] || { echo "first boot: exit status $(cat "$WORK/kc1.rc")"; show kc1; return 1; }
	e=$(echo "$kc"/vmlinux-*)
	[ -f "$e" ] && [ "$(ls -A "$kc" | wc -l)" = 1 ] || { echo "after one boot the cache holds: $(ls -A "$kc")"; return 1; }
	size=$(stat -c %s "$e")
	touch -d @1000000 "$e"
	boot kc2 --kernel-cache "$kc" --append "$APPEND"
	[ "$(cat "$WORK/kc2.rc")" = 0 ] || { echo "second boot: exit status $(cat "$WORK/kc2.rc")"; show kc2; return 1; }
	grep -q 'SLUICE-MARKER: init is running' "$WORK/kc2.out" || { echo "second boot: no /init"; show kc2; return 1; }
	[ "$(stat -c %Y "$e")" -gt 1000000 ] || { echo "the second boot did not use the entry"; return 1; }
	[ "$(ls -A "$kc" | wc -l)" = 1 ] && [ "$(stat -c %s "$e")" = "$size" ] ||
		{ echo "the second boot changed the cache: $(ls -lA "$kc")"; return 1; }
}

help_documents_options() {
	local out opt
	out=$("$SLUICE" --help) || { echo "--help exited non-zero"; return 1; }
	for opt in --kernel --initrd --append --kernel-cache --cpus --mem --drive --iothread --control --help; do
		grep -q -- "$opt" <<<"$out" || { echo "--help does not mention $opt"; return 1; }
	done
}

ktap_plan 10
if ! out=$(prerequisites); then
	ktap_diag "$out"
	exit 1
fi
ktap_run "--help documents every option" help_documents_options
ktap_run "bad input: exit != 0 and a one-line reason" bad_inputs
ktap_run_fn "--cpus 1 boots $(uname -r) to /init, exit 0 on reboot" boots_to_init
ktap_run "--append reaches the guest's /proc/cmdline" cmdline_reaches_guest
ktap_run "stdin reaches the guest through the UART" serial_input
ktap_run_fn "--cpus 2: the guest sees 2 CPUs" smp_two_cpus
ktap_run_fn "--mem 3584M: RAM above the PCI hole is used" memory_above_pci_hole
ktap_run_fn "--kernel-cache: the second boot runs the kernel the first one decompressed" kernel_cache
ktap_run_fn "inject-nmi: the guest (unknown_nmi_panic) reports the NMI and panics with a backtrace" inject_nmi
ktap_run "no guest run left a sluice error" sh -c "! cat '$WORK'/one.err '$WORK'/two.err '$WORK'/big.err '$WORK'/kc[12].err '$WORK'/nmi.err 2>/dev/null | grep '^sluice:'"
ktap_finish
