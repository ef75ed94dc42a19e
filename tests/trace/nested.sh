#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# nested.sh - sluice-trace on a nested guest: per-op request counts for a kernel-dataplane and a user-dataplane
# disk equal what the guest's block layer completed (/sys/block/<d>/stat).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/ktap.sh"
. "$HERE/../vmm/vmm_lib.sh"
TRACE=$BUILD/bpf/sluice-trace

run_guest() {
	local k u
	prerequisites || return 1
	[ -c /dev/sluice-blk ] || { echo "sluice_blk.ko is not loaded"; return 1; }
	k=$(mkdisk tracek)
	u=$(mkdisk traceu)
	"$TRACE" latency --json -D -F -- "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" \
		--append "$APPEND sluice.blk=verify" --cpus 1 --iothread id=io0 \
		--drive file="$k",format=raw,id=tk,queues=1,dataplane=kernel \
		--drive file="$u",format=raw,id=tu,queues=1,dataplane=user >"$WORK/nested.out" 2>"$WORK/nested.err"
	echo $? >"$WORK/nested.rc"
	[ "$(cat "$WORK/nested.rc")" = 0 ] || { echo "status $(cat "$WORK/nested.rc")"; tail -5 "$WORK/nested.err"; return 1; }
	grep -q '^{"elapsed_s"' "$WORK/nested.out" || { echo "no JSON report"; tail -5 "$WORK/nested.err"; return 1; }
}

# qcow2 on the kernel dataplane: first touches are forwarded to userspace and traced as kernel->user.
run_qcow2_guest() {
	local base over=$WORK/tq.qcow2
	base=$(mkdisk traceq)
	qemu-img create -q -f qcow2 -b "$base" -F raw "$over" || return 1
	"$TRACE" latency --json -D -F -- "$SLUICE" --kernel "$KERNEL" --initrd "$INITRD" \
		--append "$APPEND sluice.blk=verify" --cpus 1 \
		--drive file="$over",format=qcow2,id=tq,queues=1,dataplane=kernel >"$WORK/qcow2.out" 2>"$WORK/qcow2.err" ||
		{ echo "status $?"; tail -5 "$WORK/qcow2.err"; return 1; }
	grep -q '"kernel->user": {"traced": true, "requests": [1-9]' "$WORK/qcow2.out" ||
		{ echo "no forwarded requests traced: $(grep '^{"elapsed_s"' "$WORK/qcow2.out" | head -c 600)"; return 1; }
}

# check OUTPUT DATAPLANE[,DATAPLANE] GUEST-DISK [DISK-NAME]: traced counts per op match the guest's /sys/block stat.
check() {
	local file=$1 dp=$2 dev=$3 name=${4:-}
	python3 - "$WORK/$file" "$dp" "$dev" "$name" <<'PY'
import json, sys
out, dps, dev, name = sys.argv[1:]
dps = dps.split(",")
lines = open(out, errors="replace").read().replace("\r", "").splitlines()
rep = json.loads([l for l in lines if l.startswith('{"elapsed_s"')][-1])
stat = [l.split()[2:] for l in lines if l.startswith("SLUICE-BLK-STAT: " + dev + " ")]
if not stat:
    sys.exit("the guest printed no stat for " + dev)
f = [int(x) for x in stat[-1]]
flush = f[15] if len(f) > 15 else 0
# The guest accounts each flush twice: as a flush and, for its empty REQ_PREFLUSH write, as a write I/O.
want = {"read": f[0], "write": f[4] - flush, "discard": f[11] if len(f) > 11 else 0, "flush": flush}
got = {}
for h in rep["histograms"]:
    if h["dataplane"] not in dps or (name and h.get("disk") != name):
        continue
    op = {"write_zeroes": "write"}.get(h["op"], h["op"])
    got[op] = got.get(op, 0) + h["count"]
    if not (0 < h["min_ns"] <= h["max_ns"] < 20e9):
        sys.exit("latencies out of bounds: %r" % h)
print("# %s %s: traced %s, guest completed %s" % ("+".join(dps), dev, got, want))
bad = [op for op in want if got.get(op, 0) != want[op]]
if bad or want["read"] == 0 or want["write"] == 0:
    sys.exit("mismatch on " + ", ".join(bad or ["empty"]))
PY
}

ktap_plan 5
ktap_run_fn "a nested guest with a kernel-dataplane and a user-dataplane disk runs traced" run_guest
ktap_run "kernel dataplane: traced requests per op = the guest's completed I/Os" check nested.out kernel vda tk
ktap_run "user dataplane: traced requests per op = the guest's completed I/Os" check nested.out user vdb
ktap_run_fn "qcow2 on the kernel dataplane: forwarded requests traced as kernel->user" run_qcow2_guest
ktap_run "qcow2: kernel + kernel->user requests per op = the guest's completed I/Os" check qcow2.out kernel,kernel-\>user vda tq
ktap_finish
