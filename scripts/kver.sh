#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# kver.sh - resolve a kernel version spec (full, or a prefix like 6.1 / 6.12) to an installed Debian kernel with headers.
#   kver.sh          newest installed kernel that has headers
#   kver.sh SPEC     newest such kernel whose version is SPEC or starts with SPEC. or SPEC-
#   kver.sh --all    every such kernel, oldest first
set -euo pipefail

list() {
	local d v
	for d in /lib/modules/*/; do
		v=$(basename "$d")
		[ -e "$d/build/Makefile" ] && [ -e "/boot/vmlinuz-$v" ] && echo "$v"
	done | sort -V
}

all=$(list)
[ -n "$all" ] || { echo "kver: no Debian kernel with headers installed (run 'make deps')" >&2; exit 1; }
case "${1:-}" in
--all) echo "$all" ;;
"") echo "$all" | tail -n1 ;;
*)
	m=$(echo "$all" | awk -v s="$1" '$0 == s || index($0, s ".") == 1 || index($0, s "-") == 1' | tail -n1)
	[ -n "$m" ] || { echo "kver: no installed kernel with headers matches '$1' (have: $(echo $all))" >&2; exit 1; }
	echo "$m"
	;;
esac
