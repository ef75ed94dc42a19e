#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# demo.sh - 'make demo': build everything, then show sluice working: natively where this host can load modules and
# its /dev/kvm boots Linux, otherwise inside the lab VM (said once, with the reason).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

"$REPO/scripts/deps.sh"
make -s all

where=native reason=
if grep -qw nomodule /proc/cmdline || [ "$(cat /proc/sys/kernel/modules_disabled 2>/dev/null)" = 1 ]; then
	where=lab reason="this kernel cannot load modules"
elif [ -d /sys/module/kvm_pvm ]; then
	where=lab reason="this host's /dev/kvm (kvm_pvm) cannot boot a stock Linux guest"
elif [ ! -c /dev/kvm ]; then
	where=lab reason="this host has no /dev/kvm"
elif [ ! -e "/lib/modules/$(uname -r)/build/Makefile" ]; then
	where=lab reason="no headers for the running kernel $(uname -r)"
elif [ "$(id -u)" -ne 0 ]; then
	where=lab reason="loading the module needs root"
fi

if [ "$where" = native ]; then
	echo "demo: running natively on $(uname -r)"
	make -s kmod KVER="$(uname -r)"
	lsmod | grep -q '^sluice_blk ' || insmod "build/kmod/$(uname -r)/sluice_blk.ko"
	exec "$REPO/scripts/demo-steps.sh"
fi
echo "demo: running in the lab VM ($reason)"
exec "$REPO/tests/lab/lab.sh" -- scripts/demo-steps.sh
