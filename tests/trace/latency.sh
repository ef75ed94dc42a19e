#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# latency.sh - sluice-trace latency counts exactly the requests issued on each dataplane, per disk, queue and op.
set -u
. "$(dirname "$0")/trace_lib.sh"

kernel_per_disk_queue_op() {
	trace k.json latency --dataplane kernel --json -D -Q -F -- "$KD" trk0 5/3/1 7/4/0 || return 1
	python3 "$CHECK" hist "$WORK/k.json" kernel:trk0:0:read=5 kernel:trk0:0:write=3 kernel:trk0:0:flush=1 \
		kernel:trk0:1:read=7 kernel:trk0:1:write=4
}

kernel_raw_tp() {
	trace raw.json latency --dataplane kernel --attach raw_tp --json -Q -F -- "$KD" trk1 2/2/0 1/0/1 || return 1
	grep -q '"attach": "raw_tp"' "$WORK/raw.json" || { echo "not attached with raw_tp"; return 1; }
	python3 "$CHECK" hist "$WORK/raw.json" kernel:_:0:read=2 kernel:_:0:write=2 kernel:_:1:read=1 kernel:_:1:flush=1
}

# tp_btf where the module has BTF (6.12), else refused with the reason (6.1); auto picks accordingly.
attach_follows_module_btf() {
	trace auto.json latency --dataplane kernel --json -D -- "$KD" trk2 1/1/0 || return 1
	python3 "$CHECK" hist "$WORK/auto.json" kernel:trk2:_:_=2 || return 1
	if [ -e /sys/kernel/btf/sluice_blk ]; then
		grep -q '"attach": "tp_btf"' "$WORK/auto.json" || { echo "auto did not pick tp_btf"; return 1; }
		trace btf.json latency --dataplane kernel --attach tp_btf --json -D -- "$KD" trk3 2/0/1 || return 1
		python3 "$CHECK" hist "$WORK/btf.json" kernel:trk3:_:_=3
	else
		grep -q '"attach": "raw_tp"' "$WORK/auto.json" || { echo "auto did not pick raw_tp"; return 1; }
		refused "sluice_blk has no BTF on this kernel" latency --attach tp_btf -- true
	fi
}

user_per_backend_op() {
	local blk
	trace u.json latency --dataplane user --json -D -F --binary "$UD" -- \
		"$UD" -o "$WORK/u.list" "$WORK/u.img" 6 4 || return 1
	blk=$(blk_label "$WORK/u.list")
	python3 "$CHECK" hist "$WORK/u.json" "user:$blk:_:read=6" "user:$blk:_:write=4"
}

user_sluice_io() {
	[ -x "$SIO" ] || { echo "$SIO not built"; return 1; }
	truncate -s 1M "$WORK/io.img"
	trace io.json latency --dataplane user --json -F --binary "$SIO" -- "$SIO" -c 'write -P 1 0 4k' \
		-c 'read 0 4k' -c 'read 4k 4k' -c flush "$WORK/io.img" || return 1
	python3 "$CHECK" hist "$WORK/io.json" user:_:_:write=1 user:_:_:read=2 user:_:_:flush=1
}

both_dataplanes_at_once() {
	trace both.json latency --json -F --binary "$UD" -- \
		bash -c "'$KD' trk4 3/2/0 && '$UD' '$WORK/b.img' 4 1" || return 1
	python3 "$CHECK" hist "$WORK/both.json" kernel:_:_:read=3 kernel:_:_:write=2 user:_:_:read=4 user:_:_:write=1
}

# -p: only that process's requests, and tracing ends when it exits.
pid_filter() {
	local a b t st
	rm -f "$WORK/go"
	"$UD" -w "$WORK/go" "$WORK/pa.img" 3 2 & a=$!
	"$UD" -w "$WORK/go" "$WORK/pb.img" 5 5 & b=$!
	"$TRACE" latency -p "$a" --json -F >"$WORK/p.json" 2>"$WORK/p.err" & t=$!
	for _ in $(seq 600); do
		grep -q '^Tracing' "$WORK/p.err" 2>/dev/null && break
		kill -0 "$t" 2>/dev/null || break
		sleep 0.1
	done
	touch "$WORK/go"
	wait "$a" "$b"
	wait "$t"
	st=$?
	[ "$st" -eq 0 ] || { echo "sluice-trace -p exited with $st"; cat "$WORK/p.err"; return 1; }
	grep -q "\"pid\": $a" "$WORK/p.json" || { echo "pid $a not reported"; cat "$WORK/p.json"; return 1; }
	python3 "$CHECK" hist "$WORK/p.json" user:_:_:read=3 user:_:_:write=2
}

# Reports every INTERVAL: together they count every request once.
intervals_add_up() {
	local n
	trace int.json latency --dataplane kernel --json -Q -F 1 -- \
		bash -c "'$KD' tri0 4/0/0 && sleep 2.5 && '$KD' tri1 0/3/0" || return 1
	n=$(grep -c '^{' "$WORK/int.json")
	[ "$n" -ge 2 ] || { echo "$n reports in 2.5 s with a 1 s interval"; return 1; }
	python3 "$CHECK" hist "$WORK/int.json" kernel:_:0:read=4 kernel:_:0:write=3
}

interval_count_stops() {
	local n
	trace cnt.json latency --dataplane kernel --json 1 2 || return 1
	n=$(grep -c '^{' "$WORK/cnt.json")
	[ "$n" -eq 2 ] || { echo "$n reports for COUNT 2"; return 1; }
}

milliseconds() {
	trace ms.json latency --dataplane kernel --json -m -F -- "$KD" trm0 2/1/0 || return 1
	grep -q '"unit": "msecs"' "$WORK/ms.json" || { echo "not in msecs"; return 1; }
	python3 "$CHECK" hist "$WORK/ms.json" kernel:_:_:read=2 kernel:_:_:write=1
}

text_report() {
	trace text.txt latency -F -Q --binary "$UD" -- bash -c "'$KD' trt0 2/1/0 && '$UD' '$WORK/t.img' 1 0" ||
		return 1
	cat "$WORK/text.txt"
	grep -q '^kernel, queue 0, op read: 2 requests' "$WORK/text.txt" &&
		grep -q '^kernel, queue 0, op write: 1 request,' "$WORK/text.txt" &&
		grep -q '^user, queue -, op read: 1 request,' "$WORK/text.txt" &&
		grep -q '^ *usecs : count *distribution' "$WORK/text.txt" &&
		grep -q '^kernel->user: no requests' "$WORK/text.txt"
}

ktap_plan 11
ktap_run "kernel dataplane: per disk, queue and op" kernel_per_disk_queue_op
ktap_run "kernel dataplane through the raw tracepoint" kernel_raw_tp
ktap_run "tp_btf when sluice_blk has BTF, else raw_tp" attach_follows_module_btf
ktap_run "user dataplane: per backend and op" user_per_backend_op
ktap_run "user dataplane: sluice-io" user_sluice_io
ktap_run "both dataplanes in one run" both_dataplanes_at_once
ktap_run "-p traces one process and ends with it" pid_filter
ktap_run "interval reports add up to the requests issued" intervals_add_up
ktap_run "INTERVAL COUNT stops after COUNT reports" interval_count_stops
ktap_run "-m: milliseconds" milliseconds
ktap_run "text report" text_report
ktap_finish
