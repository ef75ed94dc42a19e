#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# img.sh - sluice-img create / info against qemu-img create / info on the same sizes and files.
#
#   img.sh SLUICE_IMG SLUICE_IO SCRATCH_DIR

SLUICE_IMG=$(realpath "$1")
SLUICE_IO=$(realpath "$2")
SCRATCH=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/ktap.sh"

mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
SIZES="4096 512k 64M 1G 1.5G 10G 1T"

need_qemu() {
	command -v qemu-img >/dev/null && command -v qemu-io >/dev/null && return 0
	KTAP_SKIP_REASON="qemu-img / qemu-io are not installed"
	return 4
}

# json_fields FILE: the compared fields of an info JSON document, one "key=value" a line.
json_fields() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("virtual-size", "filename", "format", "dirty-flag"):
    print("%s=%s" % (k, d.get(k)))
print("actual-size-present=%s" % isinstance(d.get("actual-size"), int))
' "$1"
}

create_output() {
	need_qemu || return
	local q s st=0
	cd "$SCRATCH" || return 1
	for sz in $SIZES; do
		rm -f q.img s.img
		q=$(qemu-img create -f raw q.img "$sz" 2>&1 | sed 's/q\.img/X/')
		s=$("$SLUICE_IMG" create -f raw s.img "$sz" 2>&1 | sed 's/s\.img/X/')
		if [ "$q" != "$s" ]; then
			echo "# $sz: qemu-img: '$q' sluice-img: '$s'"
			st=1
		fi
		if [ "$(stat -c %s q.img)" != "$(stat -c %s s.img)" ]; then
			echo "# $sz: file sizes differ: $(stat -c %s q.img) vs $(stat -c %s s.img)"
			st=1
		fi
	done
	return $st
}

# info_human FILE_CREATED_BY: 'virtual size', 'image' and 'file format' lines equal for both tools.
info_human() {
	need_qemu || return
	local creator=$1 q s st=0
	cd "$SCRATCH" || return 1
	for sz in $SIZES; do
		rm -f i.img
		if [ "$creator" = qemu ]; then
			qemu-img create -f raw i.img "$sz" >/dev/null || return 1
		else
			"$SLUICE_IMG" create -f raw i.img "$sz" >/dev/null || return 1
		fi
		for fmt in "" "-f raw"; do
			# shellcheck disable=SC2086
			q=$(qemu-img info $fmt i.img | grep -v '^disk size:')
			# shellcheck disable=SC2086
			s=$("$SLUICE_IMG" info $fmt i.img | grep -v '^disk size:')
			if [ "$q" != "$s" ]; then
				echo "# $sz $fmt: qemu-img info / sluice-img info differ:"
				diff <(echo "$q") <(echo "$s") | sed 's/^/# /'
				st=1
			fi
			if ! "$SLUICE_IMG" info $fmt i.img | grep -q '^disk size: '; then
				echo "# $sz: no disk size line"
				st=1
			fi
		done
	done
	return $st
}

info_json() {
	need_qemu || return
	local st=0
	cd "$SCRATCH" || return 1
	for sz in $SIZES; do
		rm -f j.img
		qemu-img create -f raw j.img "$sz" >/dev/null || return 1
		qemu-img info --output=json j.img >q.json || return 1
		"$SLUICE_IMG" info --output=json j.img >s.json || { echo "# sluice-img info failed"; return 1; }
		if ! diff <(json_fields q.json) <(json_fields s.json) >/dev/null; then
			echo "# $sz: JSON fields differ:"
			diff <(json_fields q.json) <(json_fields s.json) | sed 's/^/# /'
			st=1
		fi
		# the key order and layout of qemu's document
		if [ "$(sed 's/:.*//' q.json | grep -v actual-size)" != "$(sed 's/:.*//' s.json | grep -v actual-size)" ]; then
			echo "# $sz: JSON layout differs"
			diff q.json s.json | sed 's/^/# /'
			st=1
		fi
	done
	return $st
}

# sluice-io's length on a sluice-img image equals qemu-io's.
io_length() {
	need_qemu || return
	local st=0 q s
	cd "$SCRATCH" || return 1
	for sz in $SIZES; do
		rm -f l.img
		"$SLUICE_IMG" create -f raw l.img "$sz" >/dev/null || return 1
		q=$(qemu-io -r -f raw -c length l.img)
		s=$("$SLUICE_IO" -r -f raw -c length l.img)
		[ "$q" = "$s" ] || { echo "# $sz: qemu-io length '$q', sluice-io length '$s'"; st=1; }
	done
	return $st
}

# A quiet create prints nothing; a created image is all zeroes.
create_quiet_zero() {
	cd "$SCRATCH" || return 1
	rm -f z.img
	[ -z "$("$SLUICE_IMG" create -q -f raw z.img 1M)" ] || { echo "# -q printed something"; return 1; }
	cmp z.img <(head -c 1048576 /dev/zero) || return 1
}

ktap_plan 6
ktap_run_fn "create prints what qemu-img create prints and makes the same file size" create_output
ktap_run_fn "info (human) equals qemu-img info on qemu-img images" info_human qemu
ktap_run_fn "info (human) equals qemu-img info on sluice-img images" info_human sluice
ktap_run_fn "info --output=json has qemu-img's fields and values" info_json
ktap_run_fn "sluice-io length equals qemu-io length" io_length
ktap_run_fn "create -q is quiet and makes a zeroed image" create_quiet_zero
rm -f "$SCRATCH"/*.img "$SCRATCH"/*.json
ktap_finish
