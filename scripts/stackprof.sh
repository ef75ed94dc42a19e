#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# stackprof.sh - the deepest kernel stack the lab reaches while a guest runs 4k QD1 loads on dataplane=kernel.
#
# usage: [STACKPROF_BACKEND=file|ram] [STACKPROF_KVER=6.1|6.12] scripts/stackprof.sh [INLINE_KICK...]
#        (default: 4 0)
#
# In the lab (re-runs itself there when started on the host): for each inline_kick value, the ftrace
# stack tracer, limited by stack_trace_filter to the submission path (block layer, ext4, iomap, virtio,
# KVM's irqfd, the module), watches a guest that runs sluice-load rand /dev/vda read 1 10, then write,
# on a 128 MiB raw image; then it prints stack_max_size and the deepest stack it saw.  An inline pass
# (inline_kick > 0) runs the module's submission path on the vCPU thread, from KVM's task work.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
KICKS=${*:-4 0}

if [ -z "${SLUICE_LAB_SCRATCH:-}" ]; then
	exec "$REPO/tests/lab/lab.sh" --kver "${STACKPROF_KVER:-6.12}" --timeout 900 -- \
		"BUILD=$BUILD STACKPROF_BACKEND=${STACKPROF_BACKEND:-file} scripts/stackprof.sh $KICKS"
fi

[ -c /dev/sluice-blk ] || { echo "stackprof: sluice_blk.ko is not loaded" >&2; exit 1; }
T=/sys/kernel/tracing
mountpoint -q $T || mount -t tracefs nodev $T || exit 1
[ -w /proc/sys/kernel/stack_tracer_enabled ] || { echo "stackprof: no stack tracer (CONFIG_STACK_TRACER)" >&2; exit 1; }
work=$(mktemp -d)
# shellcheck source=scripts/lab-disk.sh
. "$REPO/scripts/lab-disk.sh"
lab_disk stackprof "${STACKPROF_BACKEND:-file}" stackprof
: >$T/stack_trace_filter
for g in 'sluice_*' 'virtqueue_*' 'virtio_queue_rq*' 'virtblk_*' 'vp_notify' 'blk_mq_*' '__submit_bio*' \
	'submit_bio*' 'bio_*' 'iomap_*' 'ext4_*' 'kmem_cache_alloc*' '__kmalloc*' 'kvm_vcpu_ioctl' \
	'task_work_run' 'pin_user_pages*' 'try_to_wake_up' 'eventfd_signal*' 'irqfd_*' 'kvm_set_msi*' \
	'kvm_irq_delivery_to_apic*'; do
	echo "$g" >>$T/stack_trace_filter 2>/dev/null	# a name this kernel does not have is left out
done
echo "== stackprof: stack tracer on $(wc -l <$T/stack_trace_filter) functions, kernel $(uname -r)"
ik0=$(cat /sys/module/sluice_blk/parameters/inline_kick)
for ik in $KICKS; do
	echo "$ik" >/sys/module/sluice_blk/parameters/inline_kick || exit 1
	echo 0 >$T/stack_max_size
	echo 1 >/proc/sys/kernel/stack_tracer_enabled
	for m in read write; do
		lab_kernel_load "$work" disk0 $m 1 10 200
		wait $load_pid
		echo "inline_kick=$ik: $(tr -d '\r' <"$work/g.out" | grep -m1 SLUICE-IOPS || echo "$m: no IOPS line")"
	done
	echo 0 >/proc/sys/kernel/stack_tracer_enabled
	echo "== inline_kick=$ik: deepest stack $(cat $T/stack_max_size) of 16384 bytes (THREAD_SIZE, x86-64)"
	cat $T/stack_trace
done
echo "$ik0" >/sys/module/sluice_blk/parameters/inline_kick
rm -rf "$work"
[ "$img" = /dev/ram0 ] || rm -f "$img"
