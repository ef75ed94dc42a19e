#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# errors.sh - sluice-trace refuses bad usage and says clearly what is missing: privileges, BTF, the module.
set -u
. "$(dirname "$0")/trace_lib.sh"

bad_usage() {
	refused "unknown command 'bogus'" bogus &&
	refused "a command is required" &&
	refused "invalid interval 'abc'" latency abc &&
	refused "invalid count 'x'" latency 1 x &&
	refused "unexpected argument '3'" latency 1 2 3 &&
	refused "unexpected argument '1'" snoop 1 &&
	refused "-d is for exits" latency -d 5 &&
	refused "are for latency" snoop -D &&
	refused "are for latency" snoop --plot "$WORK/x.svg" &&
	refused "exits takes only" exits -F &&
	refused "invalid dataplane 'foo'" latency --dataplane foo &&
	refused "invalid attach mode 'foo'" latency --attach foo &&
	refused "invalid PID 'abc'" latency -p abc &&
	refused "exclude each other" latency -p 1 -- true &&
	refused "must be followed by a COMMAND" latency -- &&
	refused "/no/such/binary" latency --binary /no/such/binary -- true &&
	refused "no process 4194303" latency -p 4194303 &&
	refused "no sluice:blk_req_start/done probes" latency --dataplane user --binary /bin/true -- true &&
	refused "cannot run /no/such/command: No such file or directory" latency -- /no/such/command &&
	refused "cannot run no-such-command: no such file in PATH" exits -- no-such-command
}

unprivileged() {
	local as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all)
	local err st

	err=$("${as_nobody[@]}" "$TRACE" latency -- true 2>&1)
	st=$?
	echo "$err"
	[ "$st" -ne 0 ] && [ "$st" -lt 126 ] || { echo "exit status $st"; return 1; }
	echo "$err" | grep -q "permission denied loading the BPF programs: run as root" || return 1
	err=$("${as_nobody[@]}" "$TRACE" exits -- true 2>&1)
	st=$?
	[ "$st" -ne 0 ] && [ "$st" -lt 126 ] || { echo "exits: exit status $st"; return 1; }
	echo "$err" | grep -q "permission denied loading the BPF programs: run as root"
}

# hide DIR... -- CMD: run CMD (a string) with tmpfs over each DIR, in a private mount namespace.
hide() {
	local mounts=""

	while [ "$1" != "--" ]; do
		[ -e "$1" ] && mounts="$mounts mount -t tmpfs none '$1' &&"
		shift
	done
	shift
	unshare -m -- bash -c "$mounts $1"
}

# Without any kernel BTF: a clear failure.  Without /sys/kernel/btf only: tp_btf refused; raw_tp works
# when libbpf finds a vmlinux with BTF elsewhere (6.12's headers have one), else the same clear failure.
without_btf() {
	local kver
	kver=$(uname -r)
	hide /sys/kernel/btf /boot /usr/src /usr/lib/debug -- "'$TRACE' latency -- true" >"$WORK/nb0" 2>&1
	[ $? -ne 0 ] && grep -q "this kernel has no BTF (/sys/kernel/btf/vmlinux missing" "$WORK/nb0" ||
		{ cat "$WORK/nb0"; echo "latency without BTF: no clear failure"; return 1; }
	head -n 1 "$WORK/nb0"
	hide /sys/kernel/btf /boot /usr/src /usr/lib/debug -- "'$TRACE' exits -- true" >"$WORK/nb0" 2>&1
	[ $? -ne 0 ] && grep -q "this kernel has no BTF" "$WORK/nb0" ||
		{ cat "$WORK/nb0"; echo "exits without BTF: no clear failure"; return 1; }
	hide /sys/kernel/btf -- "'$TRACE' latency --attach tp_btf -- true" >"$WORK/nb1" 2>&1
	[ $? -ne 0 ] && grep -qE "this kernel has no BTF|--attach tp_btf needs the running kernel's BTF" "$WORK/nb1" ||
		{ cat "$WORK/nb1"; echo "tp_btf without /sys/kernel/btf was not refused clearly"; return 1; }
	head -n 1 "$WORK/nb1"
	hide /sys/kernel/btf -- "'$TRACE' latency --json -F --binary '$UD' -- \
		bash -c \"'$KD' trb0 2/1/0 && '$UD' '$WORK/nb.img' 1 1\"" >"$WORK/nb.json" 2>"$WORK/nb.err"
	if [ $? -ne 0 ]; then
		cat "$WORK/nb.err"
		[ ! -e "/lib/modules/$kver/build/vmlinux" ] && grep -q "this kernel has no BTF" "$WORK/nb.err"
		return
	fi
	echo "libbpf found a vmlinux with BTF outside /sys/kernel/btf"
	grep -q '"attach": "raw_tp"' "$WORK/nb.json" || { echo "not raw_tp without /sys/kernel/btf"; return 1; }
	python3 "$CHECK" hist "$WORK/nb.json" kernel:_:_:read=2 kernel:_:_:write=1 user:_:_:read=1 user:_:_:write=1
}

module_missing_checks() {
	refused "sluice-trace: sluice_blk module not loaded: no kernel-dataplane tracepoints" \
		latency --dataplane kernel -- true || return 1
	refused "sluice_blk module not loaded" snoop --dataplane kernel -- true || return 1
	trace nm.json latency --json -F --binary "$UD" -- "$UD" "$WORK/nm.img" 2 1 || return 1
	grep -q "sluice_blk module not loaded: no kernel-dataplane tracepoints; tracing the user dataplane only" \
		"$WORK/nm.json.err" || { cat "$WORK/nm.json.err"; echo "no notice on stderr"; return 1; }
	grep -q '"kernel": {"traced": false, "reason": "sluice_blk module not loaded"}' "$WORK/nm.json" ||
		{ cat "$WORK/nm.json"; return 1; }
	python3 "$CHECK" hist "$WORK/nm.json" user:_:_:read=2 user:_:_:write=1
}

# Last: unloads sluice_blk, and loads it again whatever happens.
module_not_loaded() {
	local st

	[ -n "${SLUICE_LAB_KMOD:-}" ] || { KTAP_SKIP_REASON="not in the lab"; return 4; }
	rmmod sluice_blk || return 1
	module_missing_checks
	st=$?
	insmod "$SLUICE_LAB_KMOD" || { echo "insmod $SLUICE_LAB_KMOD failed"; return 1; }
	return "$st"
}

ktap_plan 4
ktap_run "bad usage is refused with a reason" bad_usage
ktap_run "without privileges: a clear error" unprivileged
ktap_run "without BTF: a clear failure; tp_btf refused without /sys/kernel/btf" without_btf
ktap_run "without the module: user dataplane only, or a failure for --dataplane kernel" module_not_loaded
ktap_finish
