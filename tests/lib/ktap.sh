# SPDX-License-Identifier: GPL-2.0
# ktap.sh - KTAP (TAP version 13) helpers for shell test programs; source it, then ktap_plan / ktap_run / ktap_finish.
#
#   ktap_plan 3
#   ktap_run "module is loaded" test -d /sys/module/sluice_blk
#   ktap_run_fn "rmmod refused while open" my_function
#   ktap_finish            # exits 0 pass, 1 fail, 4 all skipped (kselftest codes)
# A function run by ktap_run_fn may 'return 4' to skip, with the reason in KTAP_SKIP_REASON.

KTAP_N=0
KTAP_FAILED=0
KTAP_SKIPPED=0
KTAP_PLANNED=0

ktap_diag() { printf '# %s\n' "$*"; }

ktap_plan() {
	KTAP_PLANNED=$1
	KTAP_T0=$SECONDS
	printf 'TAP version 13\n1..%d\n' "$1"
}

# Seconds since the previous case ended (or the plan): printed as a diagnostic after each case
# (bash's SECONDS: no process per case, forks are slow in the lab).
KTAP_T0=$SECONDS

ktap_result() { # status name
	KTAP_N=$((KTAP_N + 1))
	printf '# case %d: %d s\n' "$KTAP_N" $((SECONDS - KTAP_T0))
	KTAP_T0=$SECONDS
	case "$1" in
	0) printf 'ok %d %s\n' "$KTAP_N" "$2" ;;
	4) printf 'ok %d %s # SKIP %s\n' "$KTAP_N" "$2" "${KTAP_SKIP_REASON:-}"
	   KTAP_SKIPPED=$((KTAP_SKIPPED + 1)) ;;
	*) printf 'not ok %d %s\n' "$KTAP_N" "$2"
	   KTAP_FAILED=$((KTAP_FAILED + 1)) ;;
	esac
	KTAP_SKIP_REASON=
}

# ktap_run NAME CMD...: one case, passing when CMD exits 0; CMD's output becomes diagnostics.
ktap_run() {
	local name=$1 out st
	shift
	out=$("$@" 2>&1)
	st=$?
	[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/# /'
	[ "$st" -eq 0 ] || [ "$st" -eq 4 ] || ktap_diag "'$*' exited with $st"
	ktap_result "$st" "$name"
}

# ktap_run_fn NAME FUNC: one case run in the current shell (so it may keep state); 0 pass, 4 skip, else fail.
ktap_run_fn() {
	local name=$1 st
	shift
	"$@"
	st=$?
	ktap_result "$st" "$name"
}

ktap_finish() {
	if [ "$KTAP_N" -ne "$KTAP_PLANNED" ]; then
		ktap_diag "planned $KTAP_PLANNED cases, ran $KTAP_N"
		KTAP_FAILED=$((KTAP_FAILED + 1))
	fi
	printf '# Totals: pass:%d fail:%d skip:%d\n' \
		$((KTAP_N - KTAP_FAILED - KTAP_SKIPPED)) "$KTAP_FAILED" "$KTAP_SKIPPED"
	[ "$KTAP_FAILED" -eq 0 ] || exit 1
	[ "$KTAP_N" -gt 0 ] && [ "$KTAP_SKIPPED" -eq "$KTAP_N" ] && exit 4
	exit 0
}
