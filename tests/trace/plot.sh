#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# plot.sh - sluice-trace latency --plot writes a well-formed SVG with a bar per non-empty bucket of each histogram.
set -u
. "$(dirname "$0")/trace_lib.sh"

bars_match_histograms() {
	trace p.json latency --json -D -Q -F --plot "$WORK/p.svg" --binary "$UD" -- \
		bash -c "'$KD' trp0 5/3/1 2/2/0 && '$UD' '$WORK/p.img' 3 3" || return 1
	if command -v xmllint >/dev/null; then
		xmllint --noout "$WORK/p.svg" || return 1
	fi
	python3 "$CHECK" svg "$WORK/p.svg" "$WORK/p.json"
}

empty_plot() {
	trace e.txt latency --dataplane kernel --plot "$WORK/e.svg" -- true || return 1
	python3 -c 'import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])' "$WORK/e.svg" || return 1
	grep -q 'no requests traced' "$WORK/e.svg" || { echo "an empty plot does not say so"; return 1; }
	! grep -q 'class="bar"' "$WORK/e.svg"
}

unwritable_plot_refused() {
	refused "--plot $WORK/no/such/dir/p.svg" latency --plot "$WORK/no/such/dir/p.svg" -- true
}

ktap_plan 3
ktap_run "a bar per non-empty bucket, counts as in the JSON" bars_match_histograms
ktap_run "no requests: an empty, well-formed plot" empty_plot
ktap_run "an unwritable --plot file is refused before tracing" unwritable_plot_refused
ktap_finish
