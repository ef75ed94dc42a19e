/* SPDX-License-Identifier: GPL-2.0 */
/* vq_walk.h - the one virtio split-ring descriptor walker, compiled into both sluice_blk.ko and the VMM. */
#ifndef SLUICE_VQ_WALK_H
#define SLUICE_VQ_WALK_H

#include "compat.h"

/*
 * How the walker reaches guest memory.  Userspace copies from its mapping of
 * guest RAM; the module copies from the VMM's mm.  Both look addresses up in
 * the memory table, so a chain can never name memory outside guest RAM.
 */
struct sluice_vq_mem_ops {
	/* Copy @len bytes at guest physical @gpa to @dst: 0, or -EFAULT when any byte is outside guest RAM. */
	int (*read)(void *opaque, __u64 gpa, void *dst, __u32 len);
	/* Is [@gpa, @gpa + @len) entirely inside one guest RAM region? */
	bool (*valid)(void *opaque, __u64 gpa, __u64 len);
};

/* One buffer of a chain, in guest physical addresses. */
struct sluice_vq_seg {
	__u64 gpa;
	__u32 len;
	bool write;		/* device-writable (VRING_DESC_F_WRITE) */
};

/* Why a chain (or the avail ring) was refused; the device then needs a reset. */
enum sluice_vq_err {
	SLUICE_VQ_OK = 0,
	SLUICE_VQ_ERR_HEAD_RANGE,	/* head index >= queue size */
	SLUICE_VQ_ERR_NEXT_RANGE,	/* next index >= table size */
	SLUICE_VQ_ERR_LOOP,		/* more descriptors than the table holds */
	SLUICE_VQ_ERR_ZERO_LEN,		/* a zero-length buffer */
	SLUICE_VQ_ERR_OUTSIDE_RAM,	/* a buffer or table not inside guest RAM */
	SLUICE_VQ_ERR_READ_AFTER_WRITE,	/* device-readable after device-writable */
	SLUICE_VQ_ERR_INDIRECT_FEATURE,	/* indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC */
	SLUICE_VQ_ERR_INDIRECT_NESTED,	/* an indirect descriptor inside an indirect table */
	SLUICE_VQ_ERR_INDIRECT_NEXT,	/* INDIRECT together with NEXT */
	SLUICE_VQ_ERR_INDIRECT_LEN,	/* indirect table length 0, not a multiple of 16, or too long */
	SLUICE_VQ_ERR_TOO_MANY_SEGS,	/* more buffers than the caller can take */
	SLUICE_VQ_ERR_AVAIL_JUMP,	/* avail idx moved by more than the queue size */
	SLUICE_VQ_ERR_FAULT,		/* guest memory could not be read */
	SLUICE_VQ_ERR_LEN_OVERFLOW,	/* the chain's total length exceeds 4 GiB */
	SLUICE_VQ_ERR__COUNT,
};

/* A fixed English reason for logs: "descriptor loop", ... */
const char *sluice_vq_strerror(enum sluice_vq_err err);

/* A split virtqueue as the walker sees it (addresses are guest physical). */
struct sluice_vq_ring {
	__u16 size;		/* number of descriptors, a power of 2, <= 32768 */
	bool indirect;		/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	__u64 desc_gpa;
	const struct sluice_vq_mem_ops *ops;
	void *opaque;
};

/* Longest indirect table accepted (descriptors); the spec bounds it by the queue size too. */
#define SLUICE_VQ_MAX_INDIRECT	1024

/*
 * Walk the chain starting at @head, writing at most @max segments to @segs.
 * A chain is zero or more direct descriptors optionally ended by one
 * indirect descriptor (without NEXT) whose table holds the rest; the
 * segment cap, the readable-before-writable order and the 4 GiB sums span
 * both parts.
 * Every spec rule is checked; on success *@nsegs, *@out_bytes (device-readable)
 * and *@in_bytes (device-writable) are set and SLUICE_VQ_OK is returned.
 * Any context; does not sleep in userspace (the module's read op may fault pages in).
 */
enum sluice_vq_err sluice_vq_walk_chain(const struct sluice_vq_ring *vq, __u16 head,
					struct sluice_vq_seg *segs, unsigned int max,
					unsigned int *nsegs, __u32 *out_bytes, __u32 *in_bytes);

/*
 * How many new entries the avail ring holds: @avail_idx (read from the guest)
 * minus @last_avail_idx, checked against @size.  Returns the count (0..size)
 * or -1 with *@err = SLUICE_VQ_ERR_AVAIL_JUMP.
 */
int sluice_vq_avail_pending(__u16 avail_idx, __u16 last_avail_idx, __u16 size,
			    enum sluice_vq_err *err);

/* VIRTIO_RING_F_EVENT_IDX: must the other side be notified after moving from @old to @new_idx? */
static inline bool sluice_vq_need_event(__u16 event_idx, __u16 new_idx, __u16 old)
{
	return (__u16)(new_idx - event_idx - 1) < (__u16)(new_idx - old);
}

#endif /* SLUICE_VQ_WALK_H */
