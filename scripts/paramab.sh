#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# paramab.sh - one guest load on dataplane=kernel under alternating sluice_blk module parameters, in one lab.
#
# usage: [PARAMAB_BACKEND=file|ram] [PARAMAB_KVER=6.1|6.12] [PARAMAB_ROUNDS=3] [PARAMAB_SECS=10]
#        scripts/paramab.sh "SETTING..." "LOAD..."
#   SETTING  comma-separated module parameters, e.g. inline_kick=4,poll_ns=32768
#   LOAD     MODE:QD, e.g. read:1 write:32
# example: scripts/paramab.sh "inline_kick=4 inline_kick=0" "read:1 write:1 read:32 write:32"
#
# In the lab (re-runs itself there when started on the host), every round boots one guest per LOAD and
# SETTING, in that order, each running sluice-load rand /dev/vda MODE QD SECS on a 128 MiB raw image
# (cache=none, 1 queue, 1 vCPU): the settings alternate within a round, so that the lab's drift hurts
# all of them alike.  Each boot prints its IOPS and the queue's sysfs counters two seconds before the
# load ends; the end prints every case's IOPS and their median.  A guest that gave no IOPS line shows
# the end of its console and is left out of the median.  The parameters are restored afterwards.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
SETS=${1:-inline_kick=4 inline_kick=0}
LOADS=${2:-read:1 read:32}
ROUNDS=${PARAMAB_ROUNDS:-3}
SECS=${PARAMAB_SECS:-10}

if [ -z "${SLUICE_LAB_SCRATCH:-}" ]; then
	exec "$REPO/tests/lab/lab.sh" --kver "${PARAMAB_KVER:-6.12}" --timeout 3000 -- \
		"BUILD=$BUILD PARAMAB_BACKEND=${PARAMAB_BACKEND:-file} PARAMAB_ROUNDS=$ROUNDS PARAMAB_SECS=$SECS scripts/paramab.sh '$SETS' '$LOADS'"
fi

[ "$SECS" -ge 5 ] || { echo "paramab: PARAMAB_SECS is at least 5" >&2; exit 2; }
[ -c /dev/sluice-blk ] || { echo "paramab: sluice_blk.ko is not loaded" >&2; exit 1; }
P=/sys/module/sluice_blk/parameters
declare -A saved res
for s in $SETS; do
	for kv in ${s//,/ }; do
		[ -w "$P/${kv%%=*}" ] || { echo "paramab: no writable parameter ${kv%%=*}" >&2; exit 2; }
		saved[${kv%%=*}]=$(cat "$P/${kv%%=*}")
	done
done
work=$(mktemp -d)
# shellcheck source=scripts/lab-disk.sh
. "$REPO/scripts/lab-disk.sh"
lab_disk paramab "${PARAMAB_BACKEND:-file}" paramab
q=/sys/class/sluice_blk/ab/queues/0
echo "== paramab: ${PARAMAB_BACKEND:-file}, $(uname -r), $ROUNDS rounds of $SECS s"
for r in $(seq 1 "$ROUNDS"); do
	for l in $LOADS; do
		for s in $SETS; do
			for kv in ${s//,/ }; do echo "${kv#*=}" >"$P/${kv%%=*}"; done
			lab_kernel_load "$work" ab "${l%%:*}" "${l#*:}" "$SECS" $((SECS + 120))
			sleep $((SECS - 2))
			c=""
			for a in completed kicks inline_passes direct signals; do c+=" $a=$(cat $q/$a 2>/dev/null)"; done
			wait $load_pid
			iops=$(lab_load_iops "$work")
			echo "round $r $l $s: ${iops:-no IOPS line} ($c )"
			if [ -n "$iops" ]; then
				res[$l $s]+="$iops "
			else
				tail -3 "$work/g.err"
				tr -d '\r' <"$work/g.out" | tail -5
			fi
		done
	done
done
for k in "${!saved[@]}"; do echo "${saved[$k]}" >"$P/$k"; done
echo "== medians (IOPS)"
for l in $LOADS; do
	for s in $SETS; do
		v=${res[$l $s]:-}
		# shellcheck disable=SC2086 # one IOPS value per word
		printf '  %-10s %-40s %8s   (%s)\n' "$l" "$s" \
			"$(printf '%s\n' $v | sort -n | awk 'NF { a[++n] = $1 } END { print n ? a[int((n + 1) / 2)] : "-" }')" "${v% }"
	done
done
rm -rf "$work"
[ "$img" = /dev/ram0 ] || rm -f "$img"
