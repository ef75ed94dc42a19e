// SPDX-License-Identifier: GPL-2.0
/* sluice_trace.bpf.c - sluice-trace's BPF side: KVM exits to userspace per reason for one process. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "sluice_trace.h"

/* Knobs, set by the loader before load. */
const volatile __u32 target_tgid;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_TRACE_MAX_EXIT);
	__type(key, __u32);
	__type(value, __u64);
} exits SEC(".maps");

/* The kvm:kvm_userspace_exit record (include/trace/events/kvm.h), identical on 6.1 and 6.12. */
struct kvm_userspace_exit_ctx {
	__u64 common;		/* common_type, flags, preempt_count, pid */
	__u32 reason;
	int err;
};

SEC("tracepoint/kvm/kvm_userspace_exit")
int handle_userspace_exit(struct kvm_userspace_exit_ctx *ctx)
{
	__u32 key;
	__u64 *n;

	if (target_tgid && (bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	key = ctx->err < 0 ? SLUICE_TRACE_EXIT_ERR : ctx->reason;
	if (key >= SLUICE_TRACE_MAX_EXIT)
		key = SLUICE_TRACE_EXIT_ERR;
	n = bpf_map_lookup_elem(&exits, &key);
	if (n)
		(*n)++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
