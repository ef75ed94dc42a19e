#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# timeline.sh - where a 4k QD1 request's time goes on dataplane=kernel: tracefs events, medians of each step.
#
# usage: [TIMELINE_BACKEND=file|ram] [TIMELINE_KVER=6.1|6.12] scripts/timeline.sh [MODE [SECONDS]]
#        (default: file read 15)
#
# In the lab (re-runs itself there when started on the host), one guest runs sluice-load rand /dev/vda
# MODE 1 SECONDS on a 128 MiB raw image on dataplane=kernel.  Over a 1.5 s window inside the load
# tracefs records the guest's kick (kvm:kvm_pio, the queue's notify port), sluice_blk:req_start (popped),
# block:block_rq_issue and block_rq_complete (the lab's disk; none on brd, which takes bios),
# kvm:kvm_msi_set_irq (the irqfd's MSI: the used entry is out) and kvm:kvm_inj_virq (the interrupt
# injected).  sluice_blk:req_done comes after the signal (the request is retired then), so it is no step.  At QD1 the requests do not overlap, so each kick opens a request and every
# step is the first event of its kind after the one before; the medians of each step are printed with
# the guest's own time (injected interrupt to its next kick) and the whole request (on brd the two
# disk steps stay empty and the MSI step counts from the pop).  Absolute times
# are the lab's (TCG); compare steps, or two runs of this script.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
MODE=${1:-read}
SECS=${2:-15}

if [ -z "${SLUICE_LAB_SCRATCH:-}" ]; then
	exec "$REPO/tests/lab/lab.sh" --kver "${TIMELINE_KVER:-6.12}" --timeout 900 -- \
		"BUILD=$BUILD TIMELINE_BACKEND=${TIMELINE_BACKEND:-file} scripts/timeline.sh $MODE $SECS"
fi

[ "$SECS" -ge 8 ] || { echo "timeline: SECONDS is at least 8" >&2; exit 2; }
[ -c /dev/sluice-blk ] || { echo "timeline: sluice_blk.ko is not loaded" >&2; exit 1; }
T=/sys/kernel/tracing
mountpoint -q $T || mount -t tracefs nodev $T || exit 1
work=$(mktemp -d)
# shellcheck source=scripts/lab-disk.sh
. "$REPO/scripts/lab-disk.sh"
lab_disk timeline "${TIMELINE_BACKEND:-file}" timeline
events="kvm/kvm_pio sluice_blk/req_start block/block_rq_issue block/block_rq_complete kvm/kvm_msi_set_irq
	kvm/kvm_inj_virq"
echo 0 >$T/tracing_on
echo 32768 >$T/buffer_size_kb
: >$T/trace
# Enabled once, before the guest starts: enabling events live patches code, which the lab's TCG
# sometimes runs stale (Documentation/testing.rst).
for e in $events; do echo 1 >"$T/events/$e/enable" || { echo "timeline: no event $e" >&2; exit 1; }; done
lab_kernel_load "$work" tl "$MODE" 1 "$SECS" 300
sleep $((SECS / 3))
echo 1 >$T/tracing_on
sleep 1.5
echo 0 >$T/tracing_on
wait $load_pid
for e in $events; do echo 0 >"$T/events/$e/enable"; done
cp $T/trace "$work/trace"
: >$T/trace
iops=$(lab_load_iops "$work")
echo "== timeline: $MODE QD1 on ${TIMELINE_BACKEND:-file}, dataplane=kernel, $(uname -r): ${iops:-no} IOPS"
# Each event line: "... [cpu] flags TIMESTAMP: event: fields".  The kick port is the one written most.
awk '
function ev(l,   a) { if (match(l, /[0-9]+\.[0-9]+: [a-z_]+:/)) { a = substr(l, RSTART, RLENGTH - 1);
	split(a, f, ": "); ts = f[1] * 1e6; return f[2] } return "" }
{ e = ev($0); if (e == "") next
  if (e == "kvm_pio") { if ($0 !~ /pio_write/) next; match($0, /at 0x[0-9a-f]+/); port = substr($0, RSTART + 3, RLENGTH - 3)
	n[port]++; e = "kick@" port }
  t[NR] = ts; k[NR] = e; last = NR }
END {
  for (p in n) if (n[p] > best) { best = n[p]; kp = "kick@" p }
  split("req_start block_rq_issue block_rq_complete kvm_msi_set_irq kvm_inj_virq", step, " ")
  names["req_start"] = "kick exit -> popped (sluice_blk:req_start)"
  names["block_rq_issue"] = "popped -> issued to the lab disk"
  names["block_rq_complete"] = "the lab disk"
  names["kvm_msi_set_irq"] = "disk done -> used entry out, irqfd MSI"
  names["kvm_inj_virq"] = "MSI -> interrupt injected"
  nreq = 0; s = 0
  for (i = 1; i <= last; i++) {
	if (!(i in k)) continue
	if (k[i] == kp) {
		if (s == 6) { g[++ng] = t[i] - tv; tot[++nt] = t[i] - t0 }	# a complete request
		s = 1; t0 = t[i]; tp = t[i]; nreq++; continue
	}
	if (s >= 1 && s <= 5) {
		e = step[s]
		while (s <= 5 && step[s] != k[i] && (step[s] ~ /^block_/ && brd)) s++
		if (s <= 5 && step[s] == k[i]) { d[step[s], ++c[step[s]]] = t[i] - tp; tp = t[i]; s++; if (s == 6) tv = t[i] }
	}
  }
  print "  requests seen: " nreq ", kick port " substr(kp, 6)
  for (j = 1; j <= 5; j++) { e = step[j]; printf "  %-46s %8s us  (%d)\n", names[e], med(d, e, c[e]), c[e] }
  for (j = 1; j <= ng; j++) gg[j] = g[j]; printf "  %-46s %8s us  (%d)\n", "guest: interrupt -> next kick", medv(gg, ng), ng
  for (j = 1; j <= nt; j++) tt[j] = tot[j]; printf "  %-46s %8s us  (%d)\n", "whole request (kick -> next kick)", medv(tt, nt), nt
}
function med(a, e, m,   j, v) { delete v; for (j = 1; j <= m; j++) v[j] = a[e, j]; return medv(v, m) }
function medv(v, m,   j, x, y, tmp) {
  if (!m) return "-"
  for (x = 2; x <= m; x++) { tmp = v[x]; for (y = x - 1; y >= 1 && v[y] > tmp; y--) v[y + 1] = v[y]; v[y + 1] = tmp }
  return sprintf("%.0f", v[int((m + 1) / 2)])
}' brd="$([ "${TIMELINE_BACKEND:-file}" = ram ] && echo 1 || echo 0)" "$work/trace"
rm -rf "$work"
[ "$img" = /dev/ram0 ] || rm -f "$img"
