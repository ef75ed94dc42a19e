#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# demo-steps.sh - what the demo shows, on a host (or lab guest) where sluice_blk.ko is loaded and /dev/kvm works.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "sluice demo on Linux $(uname -r)"
step grep -E '^(sluice_blk|kvm_amd|kvm_intel|kvm) ' /proc/modules
step ls -l /dev/sluice-blk /dev/kvm
step sh -c "dmesg | grep -E 'sluice_blk: ABI' | tail -n 1"
echo
echo "The module's ABI, exercised from userspace:"
step "$B/tests/kmod/kmod_abi"
echo
echo "A tiny guest under KVM, and every exit it made to userspace, traced with BPF:"
step "$B/bpf/sluice-trace" exits -- "$B/tests/kvm/kvm_smoke"
