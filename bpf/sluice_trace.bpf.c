// SPDX-License-Identifier: GPL-2.0
/* sluice_trace.bpf.c - sluice-trace's BPF side: KVM exits per reason; request latency on both dataplanes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "sluice_trace.h"

/* Knobs, set by the loader before load. */
const volatile __u32 target_tgid;	/* exits, user dataplane: this process only (0: any) */
const volatile __u8 targ_per_disk;	/* latency: one histogram per disk (-D) */
const volatile __u8 targ_per_queue;	/* ... per queue (-Q) */
const volatile __u8 targ_per_op;	/* ... per op (-F) */
const volatile __u8 targ_ms;		/* ... in msecs (-m), else usecs */
const volatile __u8 targ_snoop;		/* snoop: one event per request instead of histograms */

/* ---- exits ---- */

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

/* ---- request latency ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_TRACE_MAX_HISTS);
	__type(key, struct sluice_trace_hist_key);
	__type(value, struct sluice_trace_hist);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_TRACE_MAX_INFLIGHT);
	__type(key, struct sluice_trace_start_key);
	__type(value, __u64);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_TRACE_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * The interval histograms count into; the loader flips it (through the
 * mmapped .bss), waits for programs still running to finish, then reads and
 * deletes the old interval's histograms: no request lands between two reads.
 */
__u8 cur_gen;

/* A new histogram's value: min starts above everything. */
static struct sluice_trace_hist hist_init = { .min_ns = ~0ULL };

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &which);

	if (n)
		(*n)++;
}

/* 0 -> 0; v >= 1 -> floor(log2(v)) + 1, capped to the last slot. */
static __always_inline __u32 lat_slot(__u64 v)
{
	__u32 s = 0;

	if (!v)
		return 0;
	if (v >> 32) {
		v >>= 32;
		s += 32;
	}
	if (v >> 16) {
		v >>= 16;
		s += 16;
	}
	if (v >> 8) {
		v >>= 8;
		s += 8;
	}
	if (v >> 4) {
		v >>= 4;
		s += 4;
	}
	if (v >> 2) {
		v >>= 2;
		s += 2;
	}
	if (v >> 1)
		s += 1;
	s += 1;
	return s < SLUICE_TRACE_SLOTS ? s : SLUICE_TRACE_SLOTS - 1;
}

static __always_inline void atomic_min(__u64 *p, __u64 v)
{
	__u64 old = *p;
	int i;

	for (i = 0; i < 16 && v < old; i++) {
		__u64 seen = __sync_val_compare_and_swap(p, old, v);

		if (seen == old)
			break;
		old = seen;
	}
}

static __always_inline void atomic_max(__u64 *p, __u64 v)
{
	__u64 old = *p;
	int i;

	for (i = 0; i < 16 && v > old; i++) {
		__u64 seen = __sync_val_compare_and_swap(p, old, v);

		if (seen == old)
			break;
		old = seen;
	}
}

/* Everything the probes tell about one completed request. */
struct trace_req {
	const char *kdisk;	/* kernel: the module's disk name (kernel memory) */
	__u64 blk;
	__u64 offset;
	__u64 bytes;
	__u64 latency_ns;
	__u32 pid;
	__u32 queue;
	__s32 status;
	__u32 raw_op;
	__u8 dataplane;
	__u8 op;
	__u8 fallback;		/* enum sluice_trace_fallback */
};

static __always_inline void hist_account(const struct trace_req *r)
{
	struct sluice_trace_hist_key key;
	struct sluice_trace_hist *h;
	__u64 v;

	__builtin_memset(&key, 0, sizeof(key));
	key.dataplane = r->dataplane;
	key.gen = *(volatile __u8 *)&cur_gen;
	key.queue = targ_per_queue ? r->queue : SLUICE_TRACE_NO_QUEUE;
	key.op = targ_per_op ? r->op : SLUICE_TRACE_OP_ANY;
	if (targ_per_disk) {
		if (r->kdisk)
			bpf_probe_read_kernel_str(key.disk, sizeof(key.disk), r->kdisk);
		key.blk = r->blk;
		key.pid = r->pid;
	}
	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		/* EEXIST: another CPU created it meanwhile; E2BIG: full. */
		bpf_map_update_elem(&hists, &key, &hist_init, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h) {
			count(SLUICE_TRACE_CNT_HIST_FULL);
			return;
		}
	}
	v = r->latency_ns / (targ_ms ? 1000000 : 1000);
	__sync_fetch_and_add(&h->slots[lat_slot(v)], 1);
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, r->latency_ns);
	atomic_min(&h->min_ns, r->latency_ns);
	atomic_max(&h->max_ns, r->latency_ns);
}

static __always_inline void snoop_emit(const struct trace_req *r)
{
	struct sluice_trace_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(SLUICE_TRACE_CNT_EVENT_LOST);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->latency_ns = r->latency_ns;
	e->offset = r->offset;
	e->bytes = r->bytes;
	e->blk = r->blk;
	e->pid = r->pid;
	e->queue = r->queue;
	e->status = r->status;
	e->raw_op = r->raw_op;
	e->dataplane = r->dataplane;
	e->op = r->op;
	e->fallback = r->fallback;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	e->disk[0] = '\0';
	if (r->kdisk)
		bpf_probe_read_kernel_str(e->disk, sizeof(e->disk), r->kdisk);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void req_account(const struct trace_req *r)
{
	if (targ_snoop)
		snoop_emit(r);
	else
		hist_account(r);
}

/* ---- kernel dataplane: sluice_blk:req_done ---- */

/* virtio-blk request types (VIRTIO_BLK_T_*) to enum sluice_trace_op. */
static __always_inline __u8 virtio_op(__u32 type)
{
	switch (type) {
	case 0:
		return SLUICE_TRACE_OP_READ;
	case 1:
		return SLUICE_TRACE_OP_WRITE;
	case 4:
		return SLUICE_TRACE_OP_FLUSH;
	case 8:
		return SLUICE_TRACE_OP_GET_ID;
	case 11:
		return SLUICE_TRACE_OP_DISCARD;
	case 13:
		return SLUICE_TRACE_OP_WRITE_ZEROES;
	default:
		return SLUICE_TRACE_OP_OTHER;
	}
}

/* The module's forward reasons (SLUICE_BLK_FWD_*) to enum sluice_trace_fallback. */
static __always_inline __u8 fallback_reason(__u8 fwd)
{
	switch (fwd) {
	case 0:
		return SLUICE_TRACE_FB_NONE;
	case 1:
		return SLUICE_TRACE_FB_ALLOC;	/* unmapped: unallocated, backing file, zero, compressed */
	case 2:
		return SLUICE_TRACE_FB_COW;
	default:
		return SLUICE_TRACE_FB_OTHER;	/* split across host extents, metadata operations */
	}
}

static __always_inline int kernel_done(const char *disk, __u32 queue, __u32 type, __u64 sector,
				       __u32 bytes, __u8 status, __u64 latency_ns, __u8 fwd)
{
	struct trace_req r = {
		.kdisk = disk,
		.offset = sector << 9,
		.bytes = bytes,
		.latency_ns = latency_ns,
		.queue = queue,
		.status = status,
		.raw_op = type,
		.dataplane = fwd ? SLUICE_TRACE_DP_FALLBACK : SLUICE_TRACE_DP_KERNEL,
		.op = virtio_op(type),
		.fallback = fallback_reason(fwd),
	};

	req_account(&r);
	return 0;
}

/*
 * Two ways to the same tracepoint; the loader keeps one.  tp_btf needs the
 * module's BTF (6.12 has it for out-of-tree modules, 6.1 does not); the raw
 * tracepoint reads the same TP_PROTO arguments untyped.
 */
SEC("tp_btf/req_done")
int BPF_PROG(kernel_done_btf, const char *disk, u32 queue, u16 head, u32 op, u64 sector, u32 bytes,
	     u8 status, u64 latency_ns, u8 fallback)
{
	return kernel_done(disk, queue, op, sector, bytes, status, latency_ns, fallback);
}

SEC("raw_tp/req_done")
int BPF_PROG(kernel_done_raw, const char *disk, u32 queue, u16 head, u32 op, u64 sector, u32 bytes,
	     u8 status, u64 latency_ns, u8 fallback)
{
	return kernel_done(disk, queue, op, sector, bytes, status, latency_ns, fallback);
}

/* ---- user dataplane: USDT sluice:blk_req_start / blk_req_done (user/block/block-backend.c) ---- */

/* enum sluice_blk_op (user/block/block.h) to enum sluice_trace_op. */
static __always_inline __u8 blk_op(int op)
{
	switch (op) {
	case 0:
		return SLUICE_TRACE_OP_READ;
	case 1:
		return SLUICE_TRACE_OP_WRITE;
	case 2:
		return SLUICE_TRACE_OP_FLUSH;
	case 3:
		return SLUICE_TRACE_OP_DISCARD;
	case 4:
		return SLUICE_TRACE_OP_WRITE_ZEROES;
	case 5:
		return SLUICE_TRACE_OP_TRUNCATE;
	default:
		return SLUICE_TRACE_OP_OTHER;
	}
}

SEC("usdt")
int BPF_USDT(user_start, void *blk, int op, __u64 offset, __u64 bytes, void *co)
{
	struct sluice_trace_start_key key = {};
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 now = bpf_ktime_get_ns();

	if (target_tgid && pid != target_tgid)
		return 0;
	key.pid = pid;
	key.req = (__u64)co;
	if (bpf_map_update_elem(&starts, &key, &now, BPF_ANY))
		count(SLUICE_TRACE_CNT_INFLIGHT_FULL);
	return 0;
}

SEC("usdt")
int BPF_USDT(user_done, void *blk, int op, __u64 offset, __u64 bytes, void *co, int ret)
{
	struct sluice_trace_start_key key = {};
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 *start, now = bpf_ktime_get_ns();
	struct trace_req r = {};

	if (target_tgid && pid != target_tgid)
		return 0;
	key.pid = pid;
	key.req = (__u64)co;
	start = bpf_map_lookup_elem(&starts, &key);
	if (!start) {
		count(SLUICE_TRACE_CNT_NO_START);
		return 0;
	}
	r.latency_ns = now - *start;
	bpf_map_delete_elem(&starts, &key);
	r.blk = (__u64)blk;
	r.offset = offset;
	r.bytes = bytes;
	r.pid = pid;
	r.queue = SLUICE_TRACE_NO_QUEUE;
	r.status = ret;
	r.raw_op = (__u32)op;
	r.dataplane = SLUICE_TRACE_DP_USER;
	r.op = blk_op(op);
	req_account(&r);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
