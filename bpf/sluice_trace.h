/* SPDX-License-Identifier: GPL-2.0 */
/* sluice_trace.h - types shared by sluice-trace's BPF programs and its loader. */
#ifndef SLUICE_TRACE_H
#define SLUICE_TRACE_H

/* KVM exit reasons are small (KVM_EXIT_*); one slot more counts KVM_RUN errors. */
#define SLUICE_TRACE_MAX_EXIT	64
#define SLUICE_TRACE_EXIT_ERR	(SLUICE_TRACE_MAX_EXIT - 1)

/*
 * Request latency.  Histograms are log2: slot 0 holds 0, slot s >= 1 holds
 * [2^(s-1), 2^s - 1] in the unit chosen (usecs, or msecs with -m); the last
 * slot also takes everything above it.
 */
#define SLUICE_TRACE_SLOTS	32
#define SLUICE_TRACE_DISK_LEN	32	/* the module's disk names are < 32 bytes */
#define SLUICE_TRACE_MAX_HISTS	4096
#define SLUICE_TRACE_MAX_INFLIGHT 16384	/* user-dataplane requests started, not yet done */
#define SLUICE_TRACE_NO_QUEUE	0xffffffffu	/* not split per queue, or no queue (user dataplane) */

/*
 * Which path served a request.  FALLBACK is a kernel-dataplane request the
 * module forwarded to a userspace coroutine (qcow2 metadata work): the
 * module has no upcall ring yet, so nothing produces it today; the slot and
 * the event field exist so that its tracepoint can be added without
 * changing the loader's reports.
 */
enum sluice_trace_dataplane {
	SLUICE_TRACE_DP_KERNEL = 0,	/* sluice_blk:req_done */
	SLUICE_TRACE_DP_USER = 1,	/* USDT sluice:blk_req_start / blk_req_done */
	SLUICE_TRACE_DP_FALLBACK = 2,	/* kernel -> user upcall: sluice_blk:req_done with fallback != 0 */
	SLUICE_TRACE_DP_MAX,
};

/* Why a request fell back to userspace (FALLBACK only; NONE everywhere today). */
enum sluice_trace_fallback {
	SLUICE_TRACE_FB_NONE = 0,
	SLUICE_TRACE_FB_ALLOC,		/* cluster not allocated */
	SLUICE_TRACE_FB_COW,		/* read-only extent written */
	SLUICE_TRACE_FB_BACKING,	/* data in a backing file */
	SLUICE_TRACE_FB_COMPRESSED,
	SLUICE_TRACE_FB_OTHER,
};

/* Request types common to both dataplanes (virtio-blk types and enum sluice_blk_op map onto these). */
enum sluice_trace_op {
	SLUICE_TRACE_OP_READ = 0,
	SLUICE_TRACE_OP_WRITE,
	SLUICE_TRACE_OP_FLUSH,
	SLUICE_TRACE_OP_DISCARD,
	SLUICE_TRACE_OP_WRITE_ZEROES,
	SLUICE_TRACE_OP_GET_ID,
	SLUICE_TRACE_OP_TRUNCATE,
	SLUICE_TRACE_OP_OTHER,
	SLUICE_TRACE_OP_ANY,		/* histogram key when not split per op */
	SLUICE_TRACE_OP_MAX,
};

/*
 * A histogram's key.  Fields not split on are zero (disk, blk, pid), NO_QUEUE
 * (queue) or OP_ANY (op).  A user-dataplane disk is a backend: its pointer
 * (blk) in process pid, since the USDT probes carry no name.
 */
struct sluice_trace_hist_key {
	char disk[SLUICE_TRACE_DISK_LEN];
	__u64 blk;
	__u32 pid;
	__u32 queue;
	__u8 dataplane;
	__u8 op;
	__u8 gen;		/* the loader's interval (it flips, then reads the old one) */
	__u8 pad[5];
};

struct sluice_trace_hist {
	__u64 slots[SLUICE_TRACE_SLOTS];
	__u64 count;
	__u64 sum_ns;
	__u64 min_ns;		/* ~0 until the first request */
	__u64 max_ns;
};

/* A pending user-dataplane request, keyed by process and the coroutine running it. */
struct sluice_trace_start_key {
	__u32 pid;
	__u32 pad;
	__u64 req;
};

/* One completed request (snoop), sent through the ring buffer. */
struct sluice_trace_event {
	__u64 ts_ns;		/* completion, CLOCK_MONOTONIC */
	__u64 latency_ns;
	__u64 offset;		/* bytes (kernel: sector * 512) */
	__u64 bytes;
	__u64 blk;		/* user: the backend; kernel: 0 */
	__u32 pid;		/* user: the process; kernel: 0 */
	__u32 queue;		/* kernel: the virtqueue; user: NO_QUEUE */
	__s32 status;		/* kernel: virtio status byte; user: 0 or -errno */
	__u32 raw_op;		/* the probe's own op: virtio-blk type or enum sluice_blk_op */
	__u8 dataplane;		/* enum sluice_trace_dataplane */
	__u8 op;		/* enum sluice_trace_op */
	__u8 fallback;		/* enum sluice_trace_fallback */
	__u8 pad[5];
	char disk[SLUICE_TRACE_DISK_LEN];
};

/* Counters of what could not be accounted (the loader reports them). */
enum sluice_trace_counter {
	SLUICE_TRACE_CNT_NO_START = 0,	/* user done without its start (tracing began mid-request) */
	SLUICE_TRACE_CNT_INFLIGHT_FULL,	/* user start dropped: too many requests in flight */
	SLUICE_TRACE_CNT_HIST_FULL,	/* request not counted: too many histograms */
	SLUICE_TRACE_CNT_EVENT_LOST,	/* snoop event dropped: ring buffer full */
	SLUICE_TRACE_CNT_MAX,
};

#endif /* SLUICE_TRACE_H */
