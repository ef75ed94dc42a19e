#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# gen_vmlinux_h.sh - write vmlinux.h (kernel types for CO-RE) from BTF: $SLUICE_BTF, else the newest Debian
# kernel's BTF-only vmlinux in its headers, else the running kernel's /sys/kernel/btf/vmlinux.
# usage: gen_vmlinux_h.sh BPFTOOL OUT
set -euo pipefail
bpftool=$1 out=$2
btf=${SLUICE_BTF:-}
if [ -z "$btf" ]; then
	for f in $(ls -d /lib/modules/*/build/vmlinux 2>/dev/null | sort -V -r) /sys/kernel/btf/vmlinux; do
		if [ -r "$f" ] && "$bpftool" btf dump file "$f" format raw >/dev/null 2>&1; then
			btf=$f
			break
		fi
	done
fi
[ -n "$btf" ] || { echo "gen_vmlinux_h: no kernel BTF found (install linux-headers-amd64 from backports: make deps)" >&2; exit 1; }
"$bpftool" btf dump file "$btf" format c >"$out.tmp"
mv "$out.tmp" "$out"
