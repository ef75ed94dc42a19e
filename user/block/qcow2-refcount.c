// SPDX-License-Identifier: GPL-2.0
/* qcow2-refcount.c - refcount table and blocks: lookups, updates, cluster allocation, growing the refcount table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Pure: entry @index of refcount block @rb (widths 1..64 bits; sub-byte entries packed LSB first). */
uint64_t qcow2_rb_get(const struct qcow2_state *s, const void *rb, uint64_t index)
{
	const uint8_t *p = rb;
	unsigned int bits = s->refcount_bits;

	switch (bits) {
	case 1:
	case 2:
	case 4:
		return (p[index * bits / 8] >> ((index * bits) % 8)) & ((1u << bits) - 1);
	case 8:
		return p[index];
	case 16:
		return be16toh(((const uint16_t *)rb)[index]);
	case 32:
		return be32toh(((const uint32_t *)rb)[index]);
	default:
		return be64toh(((const uint64_t *)rb)[index]);
	}
}

/* Pure: set entry @index of @rb to @value (which fits in refcount_bits). */
void qcow2_rb_set(const struct qcow2_state *s, void *rb, uint64_t index, uint64_t value)
{
	uint8_t *p = rb;
	unsigned int bits = s->refcount_bits;
	unsigned int shift;

	switch (bits) {
	case 1:
	case 2:
	case 4:
		shift = (index * bits) % 8;
		p[index * bits / 8] &= ~(((1u << bits) - 1) << shift);
		p[index * bits / 8] |= value << shift;
		break;
	case 8:
		p[index] = value;
		break;
	case 16:
		((uint16_t *)rb)[index] = htobe16(value);
		break;
	case 32:
		((uint32_t *)rb)[index] = htobe32(value);
		break;
	default:
		((uint64_t *)rb)[index] = htobe64(value);
		break;
	}
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_grow_file(struct qcow2_state *s, uint64_t end)
{
	uint64_t cur = __atomic_load_n(&s->bs->file->total_bytes, __ATOMIC_RELAXED), ahead;

	if (end > s->data_end)
		s->data_end = end;
	if (end <= cur)
		return 0;
	/*
	 * One ftruncate per eighth of the file (at least 1 MiB) rather than one
	 * per cluster: each is a thread-pool round trip.  The tail is sparse
	 * zeros beyond data_end; close cuts it off.
	 */
	ahead = cur + MAX(cur / 8, 1ull << 20);
	ahead = (ahead + s->cluster_size - 1) & ~(s->cluster_size - 1);
	if (ahead < end || ahead > QCOW2_MAX_HOST_OFFSET)
		ahead = end;
	return sluice_bds_co_truncate(s->bs->file, ahead);
}

/* Open, or image lock held: see qcow2.h. */
void qcow2_reftable_from_disk(struct qcow2_state *s, uint64_t *table, uint64_t n)
{
	uint64_t i;

	s->refcount_table_used = 0;
	for (i = 0; i < n; i++) {
		table[i] = be64toh(table[i]);
		if (table[i])
			s->refcount_table_used = i + 1;
	}
}

/* Image lock held: host offset of refcount block @rt_index (0: none), or -EIO for a bad entry. */
static int64_t coroutine_fn GRAPH_RDLOCK rb_offset(struct qcow2_state *s, uint64_t rt_index) TSA_REQUIRES(s->lock)
{
	uint64_t e;

	if (rt_index >= s->refcount_table_entries)
		return 0;
	e = s->refcount_table[rt_index];
	if (e & ((s->cluster_size - 1) | ~QCOW2_MAX_HOST_OFFSET))
		return qcow2_co_signal_corruption(s, "refcount table entry %llu is invalid (%#llx)",
						  (unsigned long long)rt_index,
						  (unsigned long long)e);
	/* Past the end of the file it would read as zeros, and what we wrote there close would cut off. */
	if (!qcow2_table_in_file(s, e))
		return qcow2_co_signal_corruption(s, "refcount block offset %#llx past the end of the image "
						  "(refcount table entry %llu)", (unsigned long long)e,
						  (unsigned long long)rt_index);
	return e;
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_refcount(struct qcow2_state *s, uint64_t cluster_index, uint64_t *ref)
{
	int64_t off = rb_offset(s, cluster_index >> s->rb_bits);
	void *rb;
	int ret;

	if (off <= 0) {
		*ref = 0;
		return off;
	}
	ret = qcow2_cache_co_get(s, &s->rb_cache, off, &rb);
	if (ret < 0)
		return ret;
	*ref = qcow2_rb_get(s, rb, cluster_index & ((1ull << s->rb_bits) - 1));
	return 0;
}

/*
 * Coroutine, image lock held: replace the refcount table with a larger
 * one that covers at least @min_index + 1 refcount blocks.  The new table
 * and the refcount blocks describing it go at the first cluster the old
 * table cannot describe, so they describe themselves.  Order: blocks and
 * table written and synced, then the header switched, then the old table freed.
 */
static int coroutine_fn GRAPH_RDLOCK grow_reftable(struct qcow2_state *s, uint64_t min_index) TSA_REQUIRES(s->lock)
{
	uint64_t old_entries = s->refcount_table_entries;
	uint64_t rbe = 1ull << s->rb_bits;
	uint64_t first = old_entries << s->rb_bits;	/* first cluster not covered */
	uint64_t k, t = 0, new_entries = 0, i, old_off = s->refcount_table_offset;
	uint32_t old_clusters = s->refcount_table_clusters;
	uint64_t *table = NULL;
	uint8_t hdr[12];
	void *blk = NULL;
	int ret;

	for (k = 1; k < 1u << 20; k++) {
		new_entries = MAX(old_entries + k, min_index + 1);
		new_entries = MAX(new_entries, old_entries + old_entries / 2);
		t = (new_entries * 8 + s->cluster_size - 1) >> s->cluster_bits;
		new_entries = (t << s->cluster_bits) / 8;
		if (k * rbe >= k + t)
			break;
	}
	if (t * s->cluster_size > QCOW2_MAX_REFTABLE_SIZE ||
	    ((first + k + t) << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET || t > UINT32_MAX)
		return -EFBIG;

	ret = qcow2_co_grow_file(s, (first + k + t) << s->cluster_bits);
	if (ret < 0)
		return ret;
	table = calloc(t, s->cluster_size);
	if (!table || posix_memalign(&blk, 4096, s->cluster_size)) {
		ret = -ENOMEM;
		goto out_free;
	}
	/* The new blocks: each new cluster (blocks and table) has refcount 1. */
	for (i = 0; i < k; i++) {
		uint64_t c;

		memset(blk, 0, s->cluster_size);
		for (c = first; c < first + k + t; c++)
			if ((c - first) / rbe == i)
				qcow2_rb_set(s, blk, (c - first) % rbe, 1);
		ret = qcow2_co_write_meta(s, (first + i) << s->cluster_bits, blk, s->cluster_size, 0);
		if (ret < 0)
			goto out_free;
	}
	for (i = 0; i < old_entries; i++)
		table[i] = htobe64(s->refcount_table[i]);
	for (i = 0; i < k; i++)
		table[old_entries + i] = htobe64((first + i) << s->cluster_bits);
	ret = qcow2_co_write_meta(s, (first + k) << s->cluster_bits, table, t * s->cluster_size, 0);
	if (ret < 0)
		goto out_free;
	ret = sluice_bds_co_flush(s->bs->file);
	if (ret < 0)
		goto out_free;

	put_be64(hdr, (first + k) << s->cluster_bits);
	put_be32(hdr + 8, t);
	ret = qcow2_co_write_meta(s, QCOW2_HDR_REFTABLE_OFF, hdr, sizeof(hdr), QCOW2_OL_HEADER);
	if (ret < 0)
		goto out_free;
	ret = sluice_bds_co_flush(s->bs->file);
	if (ret < 0)
		goto out_free;

	qcow2_reftable_from_disk(s, table, new_entries);
	free(s->refcount_table);
	s->refcount_table = table;
	table = NULL;
	s->refcount_table_entries = new_entries;
	s->refcount_table_offset = (first + k) << s->cluster_bits;
	s->refcount_table_clusters = t;
	/* The old table is garbage now; a failure here only leaks it. */
	ret = qcow2_co_free_clusters(s, old_off, (uint64_t)old_clusters << s->cluster_bits);
	if (ret < 0)
		ret = 0;
out_free:
	free(blk);
	free(table);
	return ret;
}

/*
 * Coroutine, image lock held: make sure refcount block @rt_index exists.
 * Like QEMU, the new block goes at the first free cluster (so that it does
 * not split the free space an allocation is looking at): counted in the
 * block that already describes that cluster, or by itself when it is one of
 * its own clusters; otherwise at the first cluster it describes.  Returns 1
 * if metadata was placed (the caller's view of free space changed), 0 if
 * nothing was needed, -errno.
 */
static int coroutine_fn GRAPH_RDLOCK ensure_refblock(struct qcow2_state *s, uint64_t rt_index) TSA_REQUIRES(s->lock)
{
	uint64_t off = (rt_index << s->rb_bits) << s->cluster_bits;
	uint64_t be, idx, ref, self_index = 0;
	bool counted_elsewhere = false;
	int64_t cur;
	void *rb;
	int ret;

	if (rt_index >= s->refcount_table_entries) {
		ret = grow_reftable(s, rt_index);
		return ret < 0 ? ret : 1;
	}
	cur = rb_offset(s, rt_index);
	if (cur)
		return cur < 0 ? cur : 0;

	for (idx = s->free_cluster_index; ; idx++) {
		ret = qcow2_co_get_refcount(s, idx, &ref);
		if (ret < 0)
			return ret;
		if (!ref)
			break;
	}
	if (idx >> s->rb_bits == rt_index) {
		off = idx << s->cluster_bits;
		self_index = idx & ((1ull << s->rb_bits) - 1);
	} else if (rb_offset(s, idx >> s->rb_bits) > 0) {
		off = idx << s->cluster_bits;
		counted_elsewhere = true;
	}
	if (off > QCOW2_MAX_HOST_OFFSET - s->cluster_size)
		return -EFBIG;
	ret = qcow2_co_grow_file(s, off + s->cluster_size);
	if (ret < 0)
		return ret;
	if (counted_elsewhere) {
		/* Its own refcount is stable before anything points at it. */
		ret = qcow2_co_update_refcount(s, off, s->cluster_size, 1);
		if (ret < 0)
			return ret;
		ret = qcow2_cache_co_flush(s, &s->rb_cache);
		if (ret < 0)
			return ret;
	}
	ret = qcow2_cache_co_get_empty(s, &s->rb_cache, off, &rb);
	if (ret < 0)
		return ret;
	memset(rb, 0, s->cluster_size);
	if (!counted_elsewhere)
		qcow2_rb_set(s, rb, self_index, 1);
	ret = qcow2_co_write_meta(s, off, rb, s->cluster_size, QCOW2_OL_REFCOUNT_BLOCK);
	if (ret < 0)
		goto err_drop;
	ret = sluice_bds_co_flush(s->bs->file);
	if (ret < 0)
		goto err_drop;
	be = htobe64(off);
	ret = qcow2_co_write_meta(s, s->refcount_table_offset + rt_index * 8, &be, 8,
				  QCOW2_OL_REFCOUNT_TABLE);
	if (ret < 0)
		goto err_drop;
	s->refcount_table[rt_index] = off;
	if (rt_index >= s->refcount_table_used)
		s->refcount_table_used = rt_index + 1;
	return 1;

err_drop:
	qcow2_cache_discard(&s->rb_cache, off);
	return ret;
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_update_refcount(struct qcow2_state *s, uint64_t offset, uint64_t len,
					  int delta)
{
	uint64_t first = offset >> s->cluster_bits;
	uint64_t last = (offset + len - 1) >> s->cluster_bits;
	uint64_t c;
	int ret;

	if (!len)
		return 0;
	if (delta < 0) {
		/* The L2 entries that dropped these references go to disk first. */
		ret = qcow2_cache_co_set_dependency(s, &s->rb_cache, &s->l2_cache);
		if (ret < 0)
			return ret;
	}
	for (c = first; c <= last; c++) {
		uint64_t rt_index = c >> s->rb_bits, idx = c & ((1ull << s->rb_bits) - 1);
		uint64_t old, val;
		int64_t off;
		void *rb;

		if (delta > 0) {
			ret = ensure_refblock(s, rt_index);
			if (ret < 0)
				return ret;
		}
		off = rb_offset(s, rt_index);
		if (off < 0)
			return off;
		if (!off)
			return qcow2_co_signal_corruption(s, "cluster %llu has no refcount block",
							  (unsigned long long)c);
		ret = qcow2_cache_co_get(s, &s->rb_cache, off, &rb);
		if (ret < 0)
			return ret;
		old = qcow2_rb_get(s, rb, idx);
		if (delta < 0 && old < (uint64_t)-delta)
			return qcow2_co_signal_corruption(s, "refcount of cluster %llu would drop below 0",
							  (unsigned long long)c);
		if (delta > 0 && old + delta > s->refcount_max)
			return -ERANGE;
		val = old + delta;
		qcow2_rb_set(s, rb, idx, val);
		qcow2_cache_mark_dirty(&s->rb_cache, rb);
		if (!val) {
			/* A freed metadata cluster must not be written back later. */
			qcow2_cache_discard(&s->l2_cache, c << s->cluster_bits);
			qcow2_cache_discard(&s->rb_cache, c << s->cluster_bits);
			if (c < s->free_cluster_index)
				s->free_cluster_index = c;
			if (s->free_byte_offset >> s->cluster_bits == c)
				s->free_byte_offset = 0;
		}
	}
	return 0;
}

/* Coroutine, image lock held: see qcow2.h. */
int64_t coroutine_fn GRAPH_RDLOCK qcow2_co_alloc_clusters(struct qcow2_state *s, uint64_t n, uint64_t *nb_out)
{
	uint64_t start, len, idx, ref, rt;
	int ret;

restart:
	idx = s->free_cluster_index;
	/* Skip used clusters, then take free ones up to @n. */
	for (;;) {
		ret = qcow2_co_get_refcount(s, idx, &ref);
		if (ret < 0)
			return ret;
		if (!ref)
			break;
		idx++;
	}
	start = idx;
	len = 0;
	while (len < n) {
		if (((start + len + 1) << s->cluster_bits) - 1 > QCOW2_MAX_HOST_OFFSET)
			break;
		ret = qcow2_co_get_refcount(s, start + len, &ref);
		if (ret < 0)
			return ret;
		if (ref)
			break;
		len++;
	}
	if (!len)
		return -EFBIG;
	/* Refcount blocks (and a larger table) may have to be placed first. */
	for (rt = start >> s->rb_bits; rt <= (start + len - 1) >> s->rb_bits; rt++) {
		ret = ensure_refblock(s, rt);
		if (ret < 0)
			return ret;
		if (ret > 0)
			goto restart;
	}
	ret = qcow2_co_update_refcount(s, start << s->cluster_bits, len << s->cluster_bits, 1);
	if (ret < 0)
		return ret;
	/* Writes past the end of the protocol node are refused: grow it first. */
	ret = qcow2_co_grow_file(s, (start + len) << s->cluster_bits);
	if (ret < 0) {
		qcow2_co_update_refcount(s, start << s->cluster_bits, len << s->cluster_bits, -1);
		return ret;
	}
	s->free_cluster_index = start + len;
	*nb_out = len;
	return (int64_t)(start << s->cluster_bits);
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
	return qcow2_co_update_refcount(s, offset, len, -1);
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_free_l2_entry(struct qcow2_state *s, uint64_t l2e)
{
	uint64_t off, nb;

	switch (qcow2_l2e_type(s, l2e)) {
	case QCOW2_CLUSTER_NORMAL:
	case QCOW2_CLUSTER_ZERO_ALLOC:
		return qcow2_co_free_clusters(s, l2e & QCOW2_L2E_OFFSET_MASK, s->cluster_size);
	case QCOW2_CLUSTER_COMPRESSED:
		off = (l2e & s->cluster_offset_mask) & ~511ull;
		nb = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
		return qcow2_co_free_clusters(s, off, nb * 512);
	default:
		return 0;
	}
}
