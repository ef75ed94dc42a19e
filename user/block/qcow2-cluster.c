// SPDX-License-Identifier: GPL-2.0
/* qcow2-cluster.c - guest to host mapping through L1/L2 tables: lookups, L2 allocation and COW, linking, zero/discard, L1 growth. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Pure: see qcow2.h.  Bit 0 means zero in any version, as QEMU reads it. */
enum qcow2_cluster_type qcow2_l2e_type(const struct qcow2_state *s, uint64_t l2e)
{
	if (l2e & QCOW2_OFLAG_COMPRESSED)
		return QCOW2_CLUSTER_COMPRESSED;
	if (l2e & QCOW2_OFLAG_ZERO)
		return (l2e & QCOW2_L2E_OFFSET_MASK) ? QCOW2_CLUSTER_ZERO_ALLOC :
						       QCOW2_CLUSTER_ZERO_PLAIN;
	if (!(l2e & QCOW2_L2E_OFFSET_MASK))
		return QCOW2_CLUSTER_UNALLOCATED;
	return QCOW2_CLUSTER_NORMAL;
}

/* Image lock held: the L2 table offset of L1 entry @l1_index (0: none), or -EIO if the entry is bad. */
static int64_t coroutine_fn GRAPH_RDLOCK l2_offset(struct qcow2_state *s, uint64_t l1_index) TSA_REQUIRES(s->lock)
{
	uint64_t off;

	if (l1_index >= s->l1_size)
		return 0;
	off = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
	if (qcow2_offset_into_cluster(s, off))
		return qcow2_co_signal_corruption(s, "L2 table offset %#llx unaligned (L1 index %llu)",
						  (unsigned long long)off,
						  (unsigned long long)l1_index);
	/* Past the end of the file it would read as zeros, and what we wrote there close would cut off. */
	if (!qcow2_table_in_file(s, off))
		return qcow2_co_signal_corruption(s, "L2 table offset %#llx past the end of the image (L1 index %llu)",
						  (unsigned long long)off,
						  (unsigned long long)l1_index);
	return off;
}

/*
 * Coroutine, image lock held: a new L2 table for L1 entry @l1_index,
 * copied from @old (a table shared with a snapshot) or zeroed.  The table
 * and its refcount reach the disk before the L1 entry that points at it.
 */
static int coroutine_fn GRAPH_RDLOCK l2_co_allocate(struct qcow2_state *s, uint64_t l1_index, uint64_t old,
				       uint64_t **l2) TSA_REQUIRES(s->lock)
{
	uint64_t nb, be;
	int64_t new_off;
	void *copy = NULL, *table;
	int ret;

	if (old) {
		ret = qcow2_cache_co_get(s, &s->l2_cache, old, &table);
		if (ret < 0)
			return ret;
		copy = malloc(s->cluster_size);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, table, s->cluster_size);
	}
	new_off = qcow2_co_alloc_clusters(s, 1, &nb);
	if (new_off < 0) {
		ret = new_off;
		goto out_free;
	}
	ret = qcow2_cache_co_get_empty(s, &s->l2_cache, new_off, &table);
	if (ret < 0)
		goto err_free_cluster;
	if (copy)
		memcpy(table, copy, s->cluster_size);
	else
		memset(table, 0, s->cluster_size);
	qcow2_cache_mark_dirty(&s->l2_cache, table);
	ret = qcow2_cache_co_set_dependency(s, &s->l2_cache, &s->rb_cache);
	if (ret < 0)
		goto err_drop_table;
	ret = qcow2_cache_co_flush(s, &s->l2_cache);
	if (ret < 0)
		goto err_drop_table;

	be = htobe64((uint64_t)new_off | QCOW2_OFLAG_COPIED);
	ret = qcow2_co_write_meta(s, s->l1_table_offset + l1_index * 8, &be, 8, QCOW2_OL_ACTIVE_L1);
	if (ret < 0)
		goto err_drop_table;
	s->l1_table[l1_index] = (uint64_t)new_off | QCOW2_OFLAG_COPIED;
	if (old) {
		/* The snapshot keeps the old table; a failure here leaks at most. */
		qcow2_co_free_clusters(s, old, s->cluster_size);
	}
	/* The flush or the free may have evicted it: look it up again. */
	ret = qcow2_cache_co_get(s, &s->l2_cache, new_off, &table);
	if (ret < 0)
		goto out_free;
	*l2 = table;
	goto out_free;

err_drop_table:
	qcow2_cache_discard(&s->l2_cache, new_off);
err_free_cluster:
	qcow2_co_free_clusters(s, new_off, s->cluster_size);
out_free:
	free(copy);
	return ret;
}

/* Coroutine, image lock held: see qcow2.h.  *@l2 is NULL when there is no table (and !@alloc). */
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_l2(struct qcow2_state *s, uint64_t offset, bool alloc, uint64_t **l2,
				 unsigned int *index)
{
	uint64_t l1_index = offset >> (s->cluster_bits + s->l2_bits);
	int64_t off;
	void *table;
	int ret;

	*l2 = NULL;
	*index = (offset >> s->cluster_bits) & ((1u << s->l2_bits) - 1);
	if (l1_index >= s->l1_size) {
		if (!alloc)
			return 0;
		ret = qcow2_co_grow_l1(s, l1_index + 1);
		if (ret < 0)
			return ret;
	}
	off = l2_offset(s, l1_index);
	if (off < 0)
		return off;
	if (alloc && (!off || !(s->l1_table[l1_index] & QCOW2_OFLAG_COPIED)))
		return l2_co_allocate(s, l1_index, off, l2);
	if (!off)
		return 0;
	ret = qcow2_cache_co_get(s, &s->l2_cache, off, &table);
	if (ret < 0)
		return ret;
	*l2 = table;
	return 0;
}

/* Image lock held: is @l2e a valid entry?  -EIO (image marked corrupt) if not. */
static int coroutine_fn GRAPH_RDLOCK check_l2e(struct qcow2_state *s, uint64_t l2e, uint64_t guest)
	TSA_REQUIRES(s->lock)
{
	enum qcow2_cluster_type t = qcow2_l2e_type(s, l2e);

	if ((t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC) &&
	    qcow2_offset_into_cluster(s, l2e & QCOW2_L2E_OFFSET_MASK))
		return qcow2_co_signal_corruption(s, "cluster offset %#llx unaligned (guest offset %#llx)",
						  (unsigned long long)(l2e & QCOW2_L2E_OFFSET_MASK),
						  (unsigned long long)guest);
	if (t == QCOW2_CLUSTER_NORMAL &&
	    (l2e & QCOW2_L2E_OFFSET_MASK) >= QCOW2_MAX_HOST_OFFSET - s->cluster_size)
		return qcow2_co_signal_corruption(s, "cluster offset %#llx out of range",
						  (unsigned long long)(l2e & QCOW2_L2E_OFFSET_MASK));
	return 0;
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_mapping(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
				      struct qcow2_map *map)
{
	uint64_t in_cluster = qcow2_offset_into_cluster(s, offset);
	uint64_t l2_span = s->cluster_size << s->l2_bits;
	uint64_t avail = MIN(bytes, l2_span - (offset & (l2_span - 1)));
	unsigned int index, i, n;
	uint64_t *l2, e0;
	int ret;

	memset(map, 0, sizeof(*map));
	ret = qcow2_co_get_l2(s, offset, false, &l2, &index);
	if (ret < 0)
		return ret;
	if (!l2) {
		map->type = QCOW2_CLUSTER_UNALLOCATED;
		map->bytes = avail;
		return 0;
	}
	e0 = be64toh(l2[index]);
	ret = check_l2e(s, e0, offset);
	if (ret < 0)
		return ret;
	map->type = qcow2_l2e_type(s, e0);
	map->l2e = e0;
	map->copied = !!(e0 & QCOW2_OFLAG_COPIED);
	if (map->type == QCOW2_CLUSTER_NORMAL || map->type == QCOW2_CLUSTER_ZERO_ALLOC)
		map->host = (e0 & QCOW2_L2E_OFFSET_MASK) + in_cluster;
	/* Clusters covered by @avail, then extend while the kind stays the same. */
	n = (in_cluster + avail + s->cluster_size - 1) >> s->cluster_bits;
	for (i = 1; i < n && map->type != QCOW2_CLUSTER_COMPRESSED; i++) {
		uint64_t e = be64toh(l2[index + i]);

		if (qcow2_l2e_type(s, e) != map->type)
			break;
		if (map->type == QCOW2_CLUSTER_NORMAL || map->type == QCOW2_CLUSTER_ZERO_ALLOC) {
			if ((e & QCOW2_L2E_OFFSET_MASK) !=
			    (e0 & QCOW2_L2E_OFFSET_MASK) + ((uint64_t)i << s->cluster_bits))
				break;
			if (!!(e & QCOW2_OFLAG_COPIED) != map->copied)
				break;
			ret = check_l2e(s, e, offset + ((uint64_t)i << s->cluster_bits));
			if (ret < 0)
				return ret;
		}
	}
	map->bytes = MIN(avail, ((uint64_t)i << s->cluster_bits) - in_cluster);
	return 0;
}

/* Coroutine, image lock held: see qcow2.h.  The range stays inside one L2 table. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_link_l2(struct qcow2_state *s, uint64_t offset, uint64_t n, uint64_t host)
{
	uint64_t *l2, *old;
	unsigned int index;
	uint64_t i;
	int ret, first = 0;

	old = calloc(n, sizeof(*old));
	if (!old)
		return -ENOMEM;
	ret = qcow2_co_get_l2(s, offset, true, &l2, &index);
	if (ret < 0)
		goto out_free;
	if (index + n > (1ull << s->l2_bits)) {
		ret = -EINVAL;
		goto out_free;
	}
	ret = qcow2_cache_co_set_dependency(s, &s->l2_cache, &s->rb_cache);
	if (ret < 0)
		goto out_free;
	/* The data was written directly: it must be stable before the entries are. */
	qcow2_cache_depends_on_flush(&s->l2_cache);
	ret = qcow2_co_get_l2(s, offset, true, &l2, &index);
	if (ret < 0)
		goto out_free;
	for (i = 0; i < n; i++) {
		uint64_t h = host + (i << s->cluster_bits);

		old[i] = be64toh(l2[index + i]);
		l2[index + i] = htobe64(h | QCOW2_OFLAG_COPIED);
		if ((old[i] & QCOW2_L2E_OFFSET_MASK) == h &&
		    qcow2_l2e_type(s, old[i]) == QCOW2_CLUSTER_ZERO_ALLOC)
			old[i] = 0;	/* a preallocated zero cluster reused in place */
	}
	qcow2_cache_mark_dirty(&s->l2_cache, l2);
	/* The table pointer is dead from here (freeing may touch the caches). */
	for (i = 0; i < n; i++) {
		ret = qcow2_co_free_l2_entry(s, old[i]);
		if (ret < 0 && !first)
			first = ret;
	}
	ret = first;
out_free:
	free(old);
	return ret;
}

/* Coroutine, image lock held: see qcow2.h.  The range stays inside one L2 table. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_zero_or_discard(struct qcow2_state *s, uint64_t offset, uint64_t n,
					  bool zero, bool keep_alloc)
{
	bool has_backing = s->backing != NULL;
	/* v3 over a backing file: discarded clusters become zero clusters, also where unallocated (QEMU). */
	bool discard_zero = !zero && has_backing && s->version >= 3;
	bool need_table = (zero && (has_backing || keep_alloc)) || discard_zero;
	uint64_t *l2, *old;
	unsigned int index;
	uint64_t i;
	int ret, first = 0;

	old = calloc(n, sizeof(*old));
	if (!old)
		return -ENOMEM;
	/* Without a backing file an unallocated cluster already reads as zeros. */
	ret = qcow2_co_get_l2(s, offset, false, &l2, &index);
	if (ret < 0 || (!l2 && !need_table))
		goto out_free;
	ret = qcow2_co_get_l2(s, offset, true, &l2, &index);
	if (ret < 0)
		goto out_free;
	if (index + n > (1ull << s->l2_bits)) {
		ret = -EINVAL;
		goto out_free;
	}
	for (i = 0; i < n; i++) {
		uint64_t e = be64toh(l2[index + i]), ne;
		enum qcow2_cluster_type t = qcow2_l2e_type(s, e);

		if (zero) {
			if (keep_alloc && (e & QCOW2_OFLAG_COPIED) &&
			    (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC)) {
				ne = (e & (QCOW2_L2E_OFFSET_MASK | QCOW2_OFLAG_COPIED)) | QCOW2_OFLAG_ZERO;
				e = 0;	/* kept */
			} else if (!has_backing && (t == QCOW2_CLUSTER_UNALLOCATED ||
						    t == QCOW2_CLUSTER_ZERO_PLAIN)) {
				continue;
			} else {
				ne = QCOW2_OFLAG_ZERO;
			}
		} else {
			if (t == QCOW2_CLUSTER_UNALLOCATED && !discard_zero)
				continue;
			/* v3 keeps a discarded cluster reading zeros over a backing file, as QEMU. */
			ne = discard_zero ? QCOW2_OFLAG_ZERO : 0;
			if (t == QCOW2_CLUSTER_ZERO_PLAIN && ne)
				continue;
		}
		l2[index + i] = htobe64(ne);
		old[i] = e;
	}
	qcow2_cache_mark_dirty(&s->l2_cache, l2);
	for (i = 0; i < n; i++) {
		ret = qcow2_co_free_l2_entry(s, old[i]);
		if (ret < 0 && !first)
			first = ret;
	}
	ret = first;
out_free:
	free(old);
	return ret;
}

/*
 * Coroutine, image lock held: @n contiguous clusters (L1 tables must be
 * contiguous).  Returns the host offset or -errno.
 */
static int64_t coroutine_fn GRAPH_RDLOCK alloc_contiguous(struct qcow2_state *s, uint64_t n) TSA_REQUIRES(s->lock)
{
	for (;;) {
		uint64_t nb;
		int64_t off = qcow2_co_alloc_clusters(s, n, &nb);
		int ret;

		if (off < 0 || nb == n)
			return off;
		ret = qcow2_co_free_clusters(s, off, nb << s->cluster_bits);
		if (ret < 0)
			return ret;
		s->free_cluster_index = ((uint64_t)off >> s->cluster_bits) + nb;
	}
}

/*
 * Coroutine, image lock held: see qcow2.h.  The new table is written and
 * synced, then the header switched (l1_size and l1_table_offset in one
 * write), then the old table freed.
 */
int coroutine_fn GRAPH_RDLOCK qcow2_co_grow_l1(struct qcow2_state *s, uint64_t entries)
{
	uint64_t bytes, clusters, i, old_off = s->l1_table_offset;
	uint64_t old_bytes = (uint64_t)s->l1_size * 8;
	uint64_t *table, *be;
	uint8_t hdr[12];
	int64_t off;
	int ret;

	if (entries <= s->l1_size)
		return 0;
	if (entries > QCOW2_MAX_L1_SIZE / 8)
		return -EFBIG;
	bytes = entries * 8;
	clusters = (bytes + s->cluster_size - 1) >> s->cluster_bits;
	table = calloc(clusters, s->cluster_size);
	be = calloc(clusters, s->cluster_size);
	if (!table || !be) {
		ret = -ENOMEM;
		goto out_free;
	}
	if (old_bytes)
		memcpy(table, s->l1_table, old_bytes);
	for (i = 0; i < entries; i++)
		be[i] = htobe64(table[i]);
	off = alloc_contiguous(s, clusters);
	if (off < 0) {
		ret = off;
		goto out_free;
	}
	/* The new clusters' refcounts first, then the table, then the header. */
	ret = qcow2_cache_co_flush(s, &s->rb_cache);
	if (ret < 0)
		goto err_free_clusters;
	ret = qcow2_co_write_meta(s, off, be, clusters << s->cluster_bits, 0);
	if (ret < 0)
		goto err_free_clusters;
	ret = sluice_bds_co_flush(s->bs->file);
	if (ret < 0)
		goto err_free_clusters;
	put_be32(hdr, entries);
	put_be64(hdr + 4, off);
	ret = qcow2_co_write_meta(s, QCOW2_HDR_L1_SIZE_OFF, hdr, sizeof(hdr), QCOW2_OL_HEADER);
	if (ret < 0)
		goto err_free_clusters;
	ret = sluice_bds_co_flush(s->bs->file);
	if (ret < 0)
		goto err_free_clusters;
	free(s->l1_table);
	s->l1_table = table;
	table = NULL;
	s->l1_size = entries;
	s->l1_table_offset = off;
	if (old_bytes)
		qcow2_co_free_clusters(s, old_off, old_bytes);	/* a leak at worst */
	ret = 0;
	goto out_free;

err_free_clusters:
	qcow2_co_free_clusters(s, off, clusters << s->cluster_bits);
out_free:
	free(table);
	free(be);
	return ret;
}
