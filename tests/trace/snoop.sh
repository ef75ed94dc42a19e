#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# snoop.sh - sluice-trace snoop prints exactly one line per request issued, with its disk, queue, op, sector and size.
set -u
. "$(dirname "$0")/trace_lib.sh"

kernel_lines() {
	trace ks.txt snoop --dataplane kernel -- "$KD" -o "$WORK/ks.list" trs0 3/2/1 2/1/0 || return 1
	head -n 4 "$WORK/ks.txt"
	python3 "$CHECK" snoop "$WORK/ks.txt" "$WORK/ks.list"
}

user_json() {
	trace us.json snoop --json --dataplane user --binary "$UD" -- \
		"$UD" -o "$WORK/us.list" "$WORK/us.img" 3 2 || return 1
	head -n 2 "$WORK/us.json"
	python3 "$CHECK" snoop "$WORK/us.json" --json "$WORK/us.list"
}

both_dataplanes() {
	trace bs.txt snoop --binary "$UD" -- \
		bash -c "'$KD' -o '$WORK/bk.list' trs1 1/1/1 && '$UD' -o '$WORK/bu.list' '$WORK/bs.img' 2 2" || return 1
	cat "$WORK/bs.txt"
	grep -q '^TIME(s) *DISK *QUEUE *OP *SECTOR *BYTES *LAT(us) *DATAPLANE *FALLBACK *STATUS$' "$WORK/bs.txt" ||
		{ echo "no header"; return 1; }
	python3 "$CHECK" snoop "$WORK/bs.txt" "$WORK/bk.list" "$WORK/bu.list"
}

ktap_plan 3
ktap_run "kernel dataplane: a line per request" kernel_lines
ktap_run "user dataplane: a JSON object per request" user_json
ktap_run "both dataplanes, text" both_dataplanes
ktap_finish
