// SPDX-License-Identifier: GPL-2.0
/* vq_walk.c - the virtio split-ring descriptor walker shared by sluice_blk.ko and the VMM (virtio 1.x, 2.7). */
#include "vq_walk.h"

/* A split-ring descriptor as it sits in guest memory (virtio 1.x 2.7.5), little-endian. */
struct sluice_vq_desc {
	__u64 addr;
	__u32 len;
	__u16 flags;
	__u16 next;
};

#define SLUICE_VQ_DESC_F_NEXT		1
#define SLUICE_VQ_DESC_F_WRITE		2
#define SLUICE_VQ_DESC_F_INDIRECT	4

static const char *const sluice_vq_reasons[SLUICE_VQ_ERR__COUNT] = {
	[SLUICE_VQ_OK]			= "ok",
	[SLUICE_VQ_ERR_HEAD_RANGE]	= "head index out of range",
	[SLUICE_VQ_ERR_NEXT_RANGE]	= "next index out of range",
	[SLUICE_VQ_ERR_LOOP]		= "descriptor loop (chain longer than its table)",
	[SLUICE_VQ_ERR_ZERO_LEN]	= "zero-length buffer",
	[SLUICE_VQ_ERR_OUTSIDE_RAM]	= "buffer outside guest RAM",
	[SLUICE_VQ_ERR_READ_AFTER_WRITE] = "device-readable buffer after a device-writable one",
	[SLUICE_VQ_ERR_INDIRECT_FEATURE] = "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC",
	[SLUICE_VQ_ERR_INDIRECT_NESTED]	= "indirect descriptor inside an indirect table",
	[SLUICE_VQ_ERR_INDIRECT_NEXT]	= "indirect descriptor with VRING_DESC_F_NEXT",
	[SLUICE_VQ_ERR_INDIRECT_LEN]	= "bad indirect table length",
	[SLUICE_VQ_ERR_TOO_MANY_SEGS]	= "too many buffers in one chain",
	[SLUICE_VQ_ERR_AVAIL_JUMP]	= "avail index moved by more than the queue size",
	[SLUICE_VQ_ERR_FAULT]		= "guest memory not readable",
	[SLUICE_VQ_ERR_LEN_OVERFLOW]	= "chain longer than 4 GiB",
};

const char *sluice_vq_strerror(enum sluice_vq_err err)
{
	if ((unsigned int)err >= SLUICE_VQ_ERR__COUNT)
		return "unknown virtqueue error";
	return sluice_vq_reasons[err];
}

int sluice_vq_avail_pending(__u16 avail_idx, __u16 last_avail_idx, __u16 size,
			    enum sluice_vq_err *err)
{
	__u16 n = (__u16)(avail_idx - last_avail_idx);

	if (n > size) {
		*err = SLUICE_VQ_ERR_AVAIL_JUMP;
		return -1;
	}
	*err = SLUICE_VQ_OK;
	return n;
}

/* Read descriptor @idx of the table at @table; any context the ops allow. */
static enum sluice_vq_err sluice_vq_read_desc(const struct sluice_vq_ring *vq, __u64 table,
					      __u16 idx, struct sluice_vq_desc *d)
{
	__u64 gpa = table + (__u64)idx * sizeof(*d);

	if (!vq->ops->valid(vq->opaque, gpa, sizeof(*d)))
		return SLUICE_VQ_ERR_OUTSIDE_RAM;
	if (vq->ops->read(vq->opaque, gpa, d, sizeof(*d)))
		return SLUICE_VQ_ERR_FAULT;
	d->addr = sluice_le64_to_cpu(d->addr);
	d->len = sluice_le32_to_cpu(d->len);
	d->flags = sluice_le16_to_cpu(d->flags);
	d->next = sluice_le16_to_cpu(d->next);
	return SLUICE_VQ_OK;
}

enum sluice_vq_err sluice_vq_walk_chain(const struct sluice_vq_ring *vq, __u16 head,
					struct sluice_vq_seg *segs, unsigned int max,
					unsigned int *nsegs, __u32 *out_bytes, __u32 *in_bytes)
{
	__u64 table = vq->desc_gpa, in_total = 0, out_total = 0;
	unsigned int table_size = vq->size, seen = 0, n = 0;
	bool indirect = false, seen_write = false;
	struct sluice_vq_desc d;
	enum sluice_vq_err err;
	__u16 idx = head;

	if (head >= vq->size)
		return SLUICE_VQ_ERR_HEAD_RANGE;
	for (;;) {
		/* Each descriptor of a table may appear once: more means a loop. */
		if (++seen > table_size)
			return SLUICE_VQ_ERR_LOOP;
		err = sluice_vq_read_desc(vq, table, idx, &d);
		if (err)
			return err;

		if (d.flags & SLUICE_VQ_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return SLUICE_VQ_ERR_INDIRECT_FEATURE;
			/*
			 * Zero or more direct descriptors, then one table
			 * (2.7.5.3.2): never a table inside a table, and the
			 * table ends the direct chain (INDIRECT and NEXT are
			 * exclusive).  Segment count, the readable-before-
			 * writable order and the length sums carry on into
			 * the table.
			 */
			if (indirect)
				return SLUICE_VQ_ERR_INDIRECT_NESTED;
			if (d.flags & SLUICE_VQ_DESC_F_NEXT)
				return SLUICE_VQ_ERR_INDIRECT_NEXT;
			if (!d.len || d.len % sizeof(d) ||
			    d.len / sizeof(d) > SLUICE_VQ_MAX_INDIRECT)
				return SLUICE_VQ_ERR_INDIRECT_LEN;
			if (!vq->ops->valid(vq->opaque, d.addr, d.len))
				return SLUICE_VQ_ERR_OUTSIDE_RAM;
			table = d.addr;
			table_size = d.len / sizeof(d);
			indirect = true;
			seen = 0;
			idx = 0;
			continue;
		}

		if (!d.len)
			return SLUICE_VQ_ERR_ZERO_LEN;
		if (!vq->ops->valid(vq->opaque, d.addr, d.len))
			return SLUICE_VQ_ERR_OUTSIDE_RAM;
		if (d.flags & SLUICE_VQ_DESC_F_WRITE) {
			seen_write = true;
			in_total += d.len;
		} else {
			if (seen_write)
				return SLUICE_VQ_ERR_READ_AFTER_WRITE;
			out_total += d.len;
		}
		if (in_total > 0xffffffffULL || out_total > 0xffffffffULL)
			return SLUICE_VQ_ERR_LEN_OVERFLOW;
		if (n >= max)
			return SLUICE_VQ_ERR_TOO_MANY_SEGS;
		segs[n].gpa = d.addr;
		segs[n].len = d.len;
		segs[n].write = d.flags & SLUICE_VQ_DESC_F_WRITE;
		n++;

		if (!(d.flags & SLUICE_VQ_DESC_F_NEXT))
			break;
		if (d.next >= table_size)
			return SLUICE_VQ_ERR_NEXT_RANGE;
		idx = d.next;
	}
	*nsegs = n;
	*out_bytes = (__u32)out_total;
	*in_bytes = (__u32)in_total;
	return SLUICE_VQ_OK;
}
