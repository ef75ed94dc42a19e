#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# qcow2_seeds.sh - seed corpus for fuzz_qcow2_open: small images made by qemu-img/qemu-io covering v2/v3,
# cluster sizes, data, zero and compressed clusters, snapshots, a backing file name and bitmaps.
#   qcow2_seeds.sh CORPUS_DIR      (no-op without qemu-img; existing seeds are kept)
set -u
out=$1
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || exit 0
mkdir -p "$out"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
n=0
seed() { # NAME CREATE-OPTS [qemu-io commands...]
	local name=$1 opts=$2 img=$t/$1.qcow2
	shift 2
	qemu-img create -q -f qcow2 -o "$opts" "$img" 1M || return 0
	for c in "$@"; do qemu-io -c "$c" "$img" >/dev/null 2>&1; done
	cp "$img" "$out/seed-$name" && n=$((n + 1))
}
seed v3-empty cluster_size=512
seed v3-data cluster_size=512 'write -P 0x5a 0 4k' 'write -P 0xa5 600k 3k'
seed v3-zero cluster_size=512 'write -P 1 0 8k' 'write -z 2k 2k' 'discard 4k 1k'
seed v2-data cluster_size=512,compat=0.10 'write -P 7 0 4k' 'write -P 8 512k 1k'
seed v3-4k cluster_size=4096,refcount_bits=1 'write -P 3 0 16k'
seed v3-refcount64 cluster_size=512,refcount_bits=64 'write -P 9 0 2k'
seed zstd cluster_size=4096,compression_type=zstd 'write -c -P 4 0 4k'
seed zlib cluster_size=4096 'write -c -P 6 0 4k' 'write -P 2 8k 4k'
truncate -s 1M "$t/base.raw"
seed backing cluster_size=512,backing_file=base.raw,backing_fmt=raw 'write -P 1 0 1k'
img=$t/snap.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 "$img" 1M && qemu-io -c 'write -P 1 0 2k' "$img" >/dev/null &&
	qemu-img snapshot -c s1 "$img" && qemu-io -c 'write -P 2 0 1k' "$img" >/dev/null && cp "$img" "$out/seed-snapshot" &&
	n=$((n + 1))
img=$t/bitmap.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4096 "$img" 1M && qemu-img bitmap --add "$img" b0 &&
	qemu-io -c 'write -P 3 0 4k' "$img" >/dev/null && cp "$img" "$out/seed-bitmap" && n=$((n + 1))
echo "qcow2_seeds.sh: $n seed images in $out"
