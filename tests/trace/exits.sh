#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# exits.sh - sluice-trace exits counts exactly the KVM exits that kvm_smoke's tiny guest makes (1 IO, 1 MMIO, 1 HLT).
set -u
. "$(dirname "$0")/../lib/ktap.sh"
B=$(cd "$(dirname "$0")/../.." && pwd)/build
TRACE=$B/bpf/sluice-trace

traced_guest_exits() {
	local out
	out=$("$TRACE" exits --json -- "$B/tests/kvm/kvm_smoke") || { echo "status $?"; echo "$out"; return 1; }
	echo "$out" | tail -n 1
	echo "$out" | tail -n 1 | grep -q '"exits": {"IO": 1, "HLT": 1, "MMIO": 1}, "total": 3}' ||
		{ echo "expected exactly IO 1, MMIO 1, HLT 1"; return 1; }
}

other_pid_sees_nothing() {
	local out
	"$B/tests/kvm/kvm_smoke" >/dev/null &
	out=$("$TRACE" exits --json -p $$ -d 2) || return 1
	wait
	echo "$out"
	echo "$out" | grep -q '"total": 0}' || { echo "exits of another process were counted"; return 1; }
}

bad_usage() {
	"$TRACE" bogus >/dev/null 2>&1 && { echo "an unknown command was accepted"; return 1; }
	"$TRACE" exits -p abc >/dev/null 2>&1 && { echo "a bad pid was accepted"; return 1; }
	"$TRACE" exits -p 1 -- true >/dev/null 2>&1 && { echo "-p with a command was accepted"; return 1; }
	return 0
}

ktap_plan 3
ktap_run "exits of a traced command: 1 IO, 1 MMIO, 1 HLT" traced_guest_exits
ktap_run "-p filters other processes out" other_pid_sees_nothing
ktap_run "bad usage is refused" bad_usage
ktap_finish
