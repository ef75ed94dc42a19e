#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# run_suite.sh - run one suite's test programs the kselftest way and print KTAP (nested output indented by 2).
# usage: run_suite.sh SUITE_DIR BIN_DIR PROG...   (a PROG is looked up in SUITE_DIR, then BIN_DIR)
# Per-program timeout: 'timeout=N' in SUITE_DIR/settings (default 300 s).  Exit: 0 pass, 1 any failure, 4 all skipped.
set -u
dir=$1 bindir=$2
shift 2
suite=$(basename "$dir")
tmo=$(sed -n 's/^timeout=//p' "$dir/settings" 2>/dev/null)
tmo=${tmo:-300}

printf 'TAP version 13\n1..%d\n' $#
n=0 failed=0 skipped=0
for p in "$@"; do
	n=$((n + 1))
	if [ -x "$dir/$p" ]; then path=$dir/$p; else path=$bindir/$p; fi
	printf '# selftests: %s: %s\n' "$suite" "$p"
	if [ ! -x "$path" ]; then
		printf '# %s: not found in %s or %s (not built?)\n' "$p" "$dir" "$bindir"
		st=1
	else
		t0=$(date +%s)
		(cd "$dir" && timeout -k 5 "$tmo" "$path" 2>&1) | sed -u 's/^/  /'
		st=${PIPESTATUS[0]}
		[ "$st" -eq 124 ] && printf '# %s: timed out after %ss\n' "$p" "$tmo"
		printf '# %s: %d s\n' "$p" $(($(date +%s) - t0))
	fi
	case "$st" in
	0) printf 'ok %d selftests: %s: %s\n' "$n" "$suite" "$p" ;;
	4) printf 'ok %d selftests: %s: %s # SKIP\n' "$n" "$suite" "$p"; skipped=$((skipped + 1)) ;;
	*) printf 'not ok %d selftests: %s: %s # exit=%d\n' "$n" "$suite" "$p" "$st"; failed=$((failed + 1)) ;;
	esac
done
[ "$failed" -eq 0 ] || exit 1
[ "$n" -gt 0 ] && [ "$skipped" -eq "$n" ] && exit 4
exit 0
