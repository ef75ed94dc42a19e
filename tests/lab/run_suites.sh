#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# run_suites.sh - inside the lab: run lab suites (default: all of tests/lab/SUITES), one KTAP file each in $SLUICE_LAB_OUT.
# usage: tests/lab/run_suites.sh [SUITE...]     exit: 0 all passed, 1 otherwise
set -u
cd "$(dirname "$0")/../.." || exit 1
[ -n "${SLUICE_LAB:-}" ] || { echo "run_suites: run me in the lab: make lab CMD='$0'" >&2; exit 1; }
mapfile -t suites < <(if [ $# -gt 0 ]; then printf '%s\n' "$@"; else grep -v '^#' tests/lab/SUITES; fi)
[ "${#suites[@]}" -gt 0 ] || { echo "run_suites: no suites to run" >&2; exit 1; }
rc=0
mkdir -p "$SLUICE_LAB_OUT/ktap"
for s in "${suites[@]}"; do
	[ -f "tests/$s/Makefile" ] || { echo "run_suites: no suite tests/$s" >&2; rc=1; continue; }
	echo "== lab suite $s ($SLUICE_LAB_KVER)"
	make -s -C "tests/$s" run_tests 2>&1 | tee "$SLUICE_LAB_OUT/ktap/$s.ktap"
	st=${PIPESTATUS[0]}
	echo "$st" >"$SLUICE_LAB_OUT/ktap/$s.done"	# make check reruns only unfinished suites after a lab death
	[ "$st" -eq 0 ] || rc=1
done
exit "$rc"
