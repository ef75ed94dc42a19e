# SPDX-License-Identifier: GPL-2.0
# trace_lib.sh - sourced by the trace suite's scripts: paths to sluice-trace and the request drivers, a work directory.
. "$(dirname "$0")/../lib/ktap.sh"
B=$(cd "$(dirname "$0")/../.." && pwd)/build
TRACE=$B/bpf/sluice-trace
KD=$B/tests/trace/trace_kdriver
UD=$B/tests/trace/trace_udriver
SIO=$B/user/tools/sluice-io
CHECK=$(cd "$(dirname "$0")" && pwd)/trace_check.py
WORK=${SLUICE_LAB_SCRATCH:-}
if [ -n "$WORK" ]; then
	WORK=$WORK/trace-$(basename "$0" .sh)
	rm -rf "$WORK"
	mkdir -p "$WORK"
else
	WORK=$(mktemp -d)
fi

# trace OUT ARG...: run sluice-trace ARG... with stdout in $WORK/OUT and stderr in $WORK/OUT.err;
# shows stderr and fails when it fails.
trace() {
	local out=$WORK/$1 st
	shift
	"$TRACE" "$@" >"$out" 2>"$out.err"
	st=$?
	if [ "$st" -ne 0 ]; then
		echo "sluice-trace $* exited with $st:"
		cat "$out.err"
		return 1
	fi
	return 0
}

# refused MESSAGE ARG...: sluice-trace ARG... must fail (not crash) and say MESSAGE on stderr.
refused() {
	local msg=$1 err st
	shift
	err=$("$TRACE" "$@" 2>&1 >/dev/null)
	st=$?
	if [ "$st" -eq 0 ] || [ "$st" -ge 126 ]; then
		echo "sluice-trace $* exited with $st (expected a clean failure): $err"
		return 1
	fi
	if ! printf '%s\n' "$err" | grep -qF -- "$msg"; then
		echo "sluice-trace $*: expected '$msg' in: $err"
		return 1
	fi
	echo "refused: sluice-trace $*: $(printf '%s\n' "$err" | head -n 1)"
	return 0
}

# blk_label LIST: the disk label sluice-trace gives the backend trace_udriver -o LIST used (PID:0xBLK).
blk_label() {
	local tag pid addr
	read -r tag pid addr <"$1"
	printf '%s:0x%x' "$pid" "$((addr))"
}
