#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# qcow2_img.sh - sluice-img create/info/check/convert/map/resize/bench on qcow2, differential against qemu-img.
#
#   qcow2_img.sh SLUICE_IMG SLUICE_IO SCRATCH_DIR

SLUICE_IMG=$(realpath "$1")
SLUICE_IO=$(realpath "$2")
SCRATCH=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/ktap.sh"

mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
S=$SLUICE_IMG

need_qemu() {
	command -v qemu-img >/dev/null && command -v qemu-io >/dev/null && return 0
	KTAP_SKIP_REASON="qemu-img / qemu-io are not installed"
	return 4
}

# same NAME A B: the two outputs are equal, else a diff.
same() {
	[ "$2" = "$3" ] && return 0
	echo "# $1 differs (qemu-img < > sluice-img):"
	diff <(echo "$2") <(echo "$3") | sed 's/^/# /'
	return 1
}

# json_sorted: a JSON document with sorted keys, without actual-size (host dependent).
json_sorted() {
	python3 -c '
import json, sys
def strip(d):
    if isinstance(d, list):
        return [strip(x) for x in d]
    d.pop("actual-size", None)
    return d
print(json.dumps(strip(json.load(sys.stdin)), sort_keys=True, indent=1))'
}

# A base image written by qemu-io (data, zeros, partial clusters) and an overlay over it.
make_chain() {
	rm -f base.qcow2 top.qcow2
	qemu-img create -q -f qcow2 base.qcow2 64M || return 1
	qemu-io -c 'write -P 1 0 100k' -c 'write -P 2 1M 64k' -c 'write -P 3 5M 3M' base.qcow2 >/dev/null || return 1
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 || return 1
	qemu-io -c 'write -P 4 64k 64k' -c 'write -z 2M 128k' -c 'write -P 5 6M 4k' top.qcow2 >/dev/null
}

create_line() {
	need_qemu || return
	cd "$SCRATCH" || return 1
	local st=0 q s o
	qemu-img create -q -f raw bk.raw 32M
	for o in "" "-o cluster_size=4k" "-o compat=0.10" "-o compat=1.1,cluster_size=2M" \
		 "-o lazy_refcounts=on,refcount_bits=8,compression_type=zstd" "-o refcount_bits=1,cluster_size=512" \
		 "-b bk.raw -F raw" "-b bk.raw -F raw -o cluster_size=64k"; do
		rm -f q.qcow2 s.qcow2
		# shellcheck disable=SC2086
		q=$(qemu-img create -f qcow2 $o q.qcow2 16M 2>&1 | sed 's/q\.qcow2/X/')
		# shellcheck disable=SC2086
		s=$("$S" create -f qcow2 $o s.qcow2 16M 2>&1 | sed 's/s\.qcow2/X/')
		same "create $o" "$q" "$s" || st=1
		qemu-img check -q s.qcow2 || { echo "# qemu-img check failed on create $o"; st=1; }
		q=$(qemu-img info q.qcow2 | grep -v '^disk size' | sed 's/q\.qcow2/X/')
		s=$(qemu-img info s.qcow2 | grep -v '^disk size' | sed 's/s\.qcow2/X/')
		same "qemu-img info of the created image ($o)" "$q" "$s" || st=1
	done
	# without a size: the backing file's
	rm -f q.qcow2 s.qcow2
	q=$(qemu-img create -f qcow2 -b bk.raw -F raw q.qcow2 2>&1 | sed 's/q\.qcow2/X/')
	s=$("$S" create -f qcow2 -b bk.raw -F raw s.qcow2 2>&1 | sed 's/s\.qcow2/X/')
	same "create -b without size" "$q" "$s" || st=1
	"$S" create -q -f qcow2 -b bk.raw s2.qcow2 2>/dev/null && { echo "# -b without -F accepted"; st=1; }
	return $st
}

info_cmp() {
	need_qemu || return
	cd "$SCRATCH" || return 1
	make_chain || return 1
	local st=0 f q s
	mkdir -p sub && cp base.qcow2 top.qcow2 sub/
	qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 1G
	qemu-img create -q -f qcow2 -o compression_type=zstd,lazy_refcounts=on,refcount_bits=64 z.qcow2 3G
	for f in base.qcow2 top.qcow2 sub/top.qcow2 v2.qcow2 z.qcow2; do
		q=$(qemu-img info "$f" | grep -v '^disk size')
		s=$("$S" info "$f" | grep -v '^disk size')
		same "info $f" "$q" "$s" || st=1
		q=$(qemu-img info --output=json "$f" | json_sorted)
		s=$("$S" info --output=json "$f" | json_sorted)
		same "info --output=json $f" "$q" "$s" || st=1
		q=$(qemu-img info --backing-chain "$f" | grep -v '^disk size')
		s=$("$S" info --backing-chain "$f" | grep -v '^disk size')
		same "info --backing-chain $f" "$q" "$s" || st=1
		q=$(qemu-img info --backing-chain --output=json "$f" | json_sorted)
		s=$("$S" info --backing-chain --output=json "$f" | json_sorted)
		same "info --backing-chain --output=json $f" "$q" "$s" || st=1
	done
	return $st
}

map_cmp() {
	need_qemu || return
	cd "$SCRATCH" || return 1
	make_chain || return 1
	local st=0 f q s
	for f in base.qcow2 top.qcow2; do
		q=$(qemu-img map --output=json "$f")
		s=$("$S" map --output=json "$f")
		same "map --output=json $f" "$q" "$s" || st=1
		q=$(qemu-img map "$f")
		s=$("$S" map "$f")
		same "map $f" "$q" "$s" || st=1
	done
	return $st
}

# check_case NAME FILE: both tools give the same stdout, JSON and exit status on FILE.
check_case() {
	local f=$1 q s qs ss st=0
	q=$(qemu-img check "$f" 2>/dev/null); qs=$?
	s=$("$S" check "$f" 2>/dev/null); ss=$?
	same "check $f" "$q" "$s" || st=1
	[ $qs = $ss ] || { echo "# check $f: exit $qs vs $ss"; st=1; }
	q=$(qemu-img check --output=json "$f" 2>/dev/null | json_sorted)
	s=$("$S" check --output=json "$f" 2>/dev/null | json_sorted)
	same "check --output=json $f" "$q" "$s" || st=1
	return $st
}

# poke FILE OFFSET HEXBYTES
poke() {
	printf "$3" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none
}

check_cmp() {
	need_qemu || return
	cd "$SCRATCH" || return 1
	make_chain || return 1
	local st=0 r q s qs ss
	check_case base.qcow2 || st=1
	check_case top.qcow2 || st=1
	# A leak: a refcount for a cluster nothing uses (the file grown to hold it).
	cp --sparse=never base.qcow2 leak.qcow2
	truncate -s +64k leak.qcow2
	poke leak.qcow2 $((0x20000 + 2 * $(($(stat -c %s base.qcow2) / 65536)))) '\x00\x01'
	check_case leak.qcow2 || st=1
	# A corruption: a used data cluster's refcount dropped to 0.
	cp --sparse=never base.qcow2 cor.qcow2
	poke cor.qcow2 $((0x20000 + 2 * 5)) '\x00\x00'
	check_case cor.qcow2 || st=1
	# Repairs: sluice-img's repaired image is clean for qemu-img, with qemu-img's exit status.
	for r in leaks all; do
		for f in leak cor; do
			[ $f = cor ] && [ $r = leaks ] && continue
			cp $f.qcow2 q-$f.qcow2; cp $f.qcow2 s-$f.qcow2
			q=$(qemu-img check -r $r q-$f.qcow2 2>/dev/null | head -4); qs=$?
			s=$("$S" check -r $r s-$f.qcow2 2>/dev/null | head -4); ss=$?
			same "check -r $r $f" "$q" "$s" || st=1
			qemu-img check -q s-$f.qcow2 || { echo "# qemu-img check after sluice-img check -r $r $f"; st=1; }
			qemu-img compare -q q-$f.qcow2 s-$f.qcow2 || { echo "# content differs after -r $r $f"; st=1; }
		done
	done
	"$S" check -q sub/../base.qcow2 || st=1
	qemu-img create -q -f raw raw.img 1M
	"$S" check raw.img 2>/dev/null; [ $? = 63 ] || { echo "# check on raw: not 63"; st=1; }
	return $st
}

convert_cmp() {
	need_qemu || return
	cd "$SCRATCH" || return 1
	make_chain || return 1
	local st=0 src fl o
	python3 -c '
import random
random.seed(7)
f = open("src.raw", "wb"); f.truncate(48 << 20)
for i in range(150):
    f.seek(random.randrange(0, 48 << 20, 512)); f.write(bytes([random.randrange(1, 256)]) * random.randrange(1, 150000))
f.seek(20 << 20); f.write(random.randbytes(2 << 20))
f.truncate(48 << 20)
'
	for src in src.raw base.qcow2 top.qcow2; do
		for fl in "" "-c" "-c -o compression_type=zstd" "-o cluster_size=4k" "-c -o cluster_size=2M" \
			  "-c -o compat=0.10,cluster_size=512" "-c -o refcount_bits=1" "-c -o refcount_bits=2,cluster_size=4k"; do
			rm -f out.qcow2
			# shellcheck disable=SC2086
			"$S" convert $fl -O qcow2 "$src" out.qcow2 || { echo "# convert $fl $src failed"; st=1; continue; }
			qemu-img check -q out.qcow2 || { echo "# qemu-img check: convert $fl $src"; st=1; }
			qemu-img compare -q "$src" out.qcow2 || { echo "# qemu-img compare: convert $fl $src"; st=1; }
			"$SLUICE_IO" -r -c 'read 0 1M' out.qcow2 >/dev/null || st=1
		done
		rm -f out.raw
		"$S" convert -O raw "$src" out.raw && qemu-img compare -q "$src" out.raw ||
			{ echo "# convert -O raw $src"; st=1; }
	done
	# A compressed image is smaller than qemu-img's +10%, and counts compressed clusters.
	"$S" convert -c -O qcow2 src.raw sc.qcow2 && qemu-img convert -c -O qcow2 src.raw qc.qcow2 || return 1
	[ "$(stat -c %s sc.qcow2)" -le $(($(stat -c %s qc.qcow2) * 11 / 10)) ] ||
		{ echo "# compressed: $(stat -c %s sc.qcow2) vs qemu-img $(stat -c %s qc.qcow2)"; st=1; }
	qemu-img check sc.qcow2 | grep -q ' [1-9][0-9.]*% compressed clusters' || { echo "# no compressed clusters"; st=1; }
	# -p: progress lines end with 100%
	"$S" convert -p -O qcow2 src.raw p.qcow2 | tr '\r' '\n' | grep -q '(100.00/100%)' || { echo "# no progress"; st=1; }
	# -n into an existing image that holds data: zeros are written over it.
	qemu-img create -q -f qcow2 n.qcow2 48M && qemu-io -c 'write -P 9 0 48M' n.qcow2 >/dev/null
	"$S" convert -n -O qcow2 src.raw n.qcow2 && qemu-img compare -q src.raw n.qcow2 || { echo "# convert -n"; st=1; }
	"$S" convert -c -O raw src.raw x.raw 2>/dev/null && { echo "# -c to raw accepted"; st=1; }
	return $st
}

resize_cmp() {
	need_qemu || return
	cd "$SCRATCH" || return 1
	make_chain || return 1
	local st=0 q s
	cp base.qcow2 r.qcow2
	q=$("$S" resize r.qcow2 +1G) || st=1
	[ "$q" = "Image resized." ] || { echo "# resize printed '$q'"; st=1; }
	qemu-img check -q r.qcow2 || st=1
	[ "$(qemu-img info --output=json r.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = \
	  $(((64 << 20) + (1 << 30))) ] || { echo "# size after +1G"; st=1; }
	"$S" resize r.qcow2 2G >/dev/null && qemu-img check -q r.qcow2 || st=1
	qemu-io -r -c 'read -P 3 5M 3M' -c 'read -P 0 64M 1G' r.qcow2 | grep -q 'Pattern verification failed' && st=1
	s=$("$S" resize r.qcow2 -1G 2>&1); [ $? = 1 ] || st=1
	echo "# $s"
	s=$("$S" resize --shrink r.qcow2 1G 2>&1); [ $? = 1 ] || st=1
	echo "# $s"
	return $st
}

# A discard over a backing file (v3) leaves zero clusters, also on unallocated clusters, as qemu-io does.
discard_over_backing() {
	need_qemu || return
	cd "$SCRATCH" || return 1
	local st=0 q s
	head -c 8M /dev/zero | tr '\0' '\377' >ff.raw
	rm -f dq.qcow2 ds.qcow2
	qemu-img create -q -f qcow2 -o cluster_size=4k -b ff.raw -F raw dq.qcow2
	qemu-img create -q -f qcow2 -o cluster_size=4k -b ff.raw -F raw ds.qcow2
	qemu-io -c 'write -P 7 1M 64k' -c 'discard 1M 1M' -c 'discard 4M 128k' -c 'write -z -u 6M 64k' dq.qcow2 >/dev/null
	"$SLUICE_IO" -c 'write -P 7 1M 64k' -c 'discard 1M 1M' -c 'discard 4M 128k' -c 'write -z -u 6M 64k' ds.qcow2 >/dev/null
	qemu-img compare -q dq.qcow2 ds.qcow2 || { echo "# content differs"; st=1; }
	q=$(qemu-img map --output=json dq.qcow2)
	s=$(qemu-img map --output=json ds.qcow2)
	same "map after discard" "$q" "$s" || st=1
	qemu-img check -q ds.qcow2 || st=1
	return $st
}

bench_qcow2() {
	cd "$SCRATCH" || return 1
	rm -f bq.qcow2
	"$S" create -q -f qcow2 bq.qcow2 64M || return 1
	"$S" bench -f qcow2 -w -c 5000 bq.qcow2 | grep -q '^IOPS: ' || return 1
	"$S" bench -f qcow2 -c 5000 bq.qcow2 | grep -q '^IOPS: ' || return 1
	if command -v qemu-img >/dev/null; then
		qemu-img check -q bq.qcow2 || return 1
	fi
}

# Persistent bitmaps (QEMU's, valid per the autoclear bit): their clusters are referenced, not leaks,
# and a read-only check agrees with qemu-img.  (A read-write open clears the autoclear bit, as the
# spec asks of a program that does not maintain bitmaps: QEMU then calls them inconsistent.)
bitmaps_check() {
	local img=$SCRATCH/bitmaps.qcow2 q out st
	need_qemu || return 4
	rm -f "$img"
	qemu-img create -q -f qcow2 "$img" 64M &&
		qemu-img bitmap --add "$img" bm0 &&
		qemu-io -c 'write -P 7 0 1M' "$img" >/dev/null &&
		qemu-img bitmap --add "$img" bm1 || { echo "# could not make the image"; return 1; }
	q=$(qemu-img check "$img" 2>&1)
	out=$("$S" check "$img" 2>&1)
	st=$?
	same "check of an image with bitmaps" "$q" "$out" || return 1
	[ $st -eq 0 ] || { echo "# sluice-img check exited $st"; return 1; }
	qemu-img info "$img" | grep -q 'name: bm1' || { echo "# a read-only check changed the bitmaps"; return 1; }
	rm -f "$img"
}

ktap_plan 9
ktap_run_fn "create -f qcow2 prints qemu-img's line; images pass qemu-img check and info" create_line
ktap_run_fn "info (human, json, --backing-chain) equals qemu-img info" info_cmp
ktap_run_fn "map (human, json) equals qemu-img map over a backing chain" map_cmp
ktap_run_fn "check: output, JSON and exit codes of qemu-img check; -r leaks|all repairs" check_cmp
ktap_run_fn "convert (-c zlib/zstd, cluster sizes, v2, -p, -n): qemu-img check + compare" convert_cmp
ktap_run_fn "resize: grow passes qemu-img check; shrink refused" resize_cmp
ktap_run_fn "discard over a backing file leaves zero clusters (as qemu-io)" discard_over_backing
ktap_run_fn "bench -f qcow2 (reads, allocating writes)" bench_qcow2
ktap_run_fn "check of a QEMU image with persistent bitmaps equals qemu-img check (no leaks)" bitmaps_check
rm -rf "$SCRATCH"
ktap_finish
