// SPDX-License-Identifier: GPL-2.0
/* qcow2-check.c - qcow2 consistency check and repair (refcounts rebuilt from the tables), compressed writes, info. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* The refcounts as the metadata implies them, one counter per host cluster of the file. */
struct check_ctx {
	struct qcow2_state *s;
	int fix;
	struct qcow2_check_result *res;
	uint64_t nb_clusters;		/* host clusters in the file */
	uint64_t *refs;			/* computed references, [nb_clusters] */
	uint64_t *l2buf;		/* one table */
};

/* Pure: count one reference to each host cluster of [offset, offset + len). */
static void check_inc(struct check_ctx *c, uint64_t offset, uint64_t len)
{
	const struct qcow2_state *s = c->s;
	uint64_t first, last, i;

	if (!len)
		return;
	first = offset >> s->cluster_bits;
	last = (offset + len - 1) >> s->cluster_bits;
	for (i = first; i <= last; i++) {
		if (i >= c->nb_clusters) {
			fprintf(stderr, "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64 "\n",
				offset, len);
			c->res->corruptions++;
			return;
		}
		c->refs[i]++;
	}
}

/*
 * Coroutine, image lock held: count what the L2 table at @l2_off points at;
 * @active: the table belongs to the active L1 (allocation statistics).
 */
static int coroutine_fn GRAPH_RDLOCK check_l2(struct qcow2_state *s, struct check_ctx *c, uint64_t l2_off, bool active,
				 uint64_t *next_contig) TSA_REQUIRES(s->lock)
{
	uint64_t n = 1ull << s->l2_bits, i;
	int ret;

	ret = qcow2_co_read_file(s, l2_off, c->l2buf, s->cluster_size);
	if (ret < 0) {
		fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
		c->res->check_errors++;
		return ret;
	}
	for (i = 0; i < n; i++) {
		uint64_t e = be64toh(c->l2buf[i]), off, nb;

		switch (qcow2_l2e_type(s, e)) {
		case QCOW2_CLUSTER_COMPRESSED:
			if (e & QCOW2_OFLAG_COPIED) {
				fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for compressed clusters\n",
					e & s->cluster_offset_mask);
				c->res->corruptions++;
			}
			off = (e & s->cluster_offset_mask) & ~511ull;
			nb = ((e >> s->csize_shift) & s->csize_mask) + 1;
			check_inc(c, off, nb * 512);
			if (active) {
				c->res->allocated_clusters++;
				c->res->compressed_clusters++;
				c->res->fragmented_clusters++;
			}
			break;
		case QCOW2_CLUSTER_NORMAL:
		case QCOW2_CLUSTER_ZERO_ALLOC:
			off = e & QCOW2_L2E_OFFSET_MASK;
			if (qcow2_offset_into_cluster(s, off)) {
				fprintf(stderr, "ERROR offset=%" PRIx64 ": Cluster is not properly aligned; L2 entry corrupted.\n",
					off);
				c->res->corruptions++;
				break;
			}
			if (active) {
				c->res->allocated_clusters++;
				if (*next_contig && off != *next_contig)
					c->res->fragmented_clusters++;
				*next_contig = off + s->cluster_size;
			}
			check_inc(c, off, s->cluster_size);
			break;
		default:
			break;
		}
	}
	return 0;
}

/* Coroutine, image lock held: count an L1 table (host-endian @l1 of @n entries) and its L2 tables. */
static int coroutine_fn GRAPH_RDLOCK check_l1(struct qcow2_state *s, struct check_ctx *c, const uint64_t *l1, uint64_t n, bool active)
	TSA_REQUIRES(s->lock)
{
	uint64_t next_contig = 0, i;
	int ret;

	for (i = 0; i < n; i++) {
		uint64_t off = l1[i] & QCOW2_L1E_OFFSET_MASK;

		if (!off)
			continue;
		if (qcow2_offset_into_cluster(s, off)) {
			fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry corrupted\n",
				off);
			c->res->corruptions++;
			continue;
		}
		check_inc(c, off, s->cluster_size);
		if ((off >> s->cluster_bits) >= c->nb_clusters)
			continue;
		ret = check_l2(s, c, off, active, &next_contig);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Coroutine, image lock held: the snapshots' L1 tables and what they point at. */
static int coroutine_fn GRAPH_RDLOCK check_snapshots(struct qcow2_state *s, struct check_ctx *c) TSA_REQUIRES(s->lock)
{
	uint64_t i, j;
	int ret;

	if (!s->nb_snapshots)
		return 0;
	check_inc(c, s->snapshots_offset, s->snapshot_table_bytes);
	for (i = 0; i < s->nb_snapshots; i++) {
		uint64_t off = s->snapshot_l1[2 * i], bytes = s->snapshot_l1[2 * i + 1];
		uint64_t *l1;

		if (!bytes)
			continue;
		check_inc(c, off, bytes);
		l1 = malloc(bytes);
		if (!l1)
			return -ENOMEM;
		ret = qcow2_co_read_file(s, off, l1, bytes);
		if (ret < 0) {
			c->res->check_errors++;
			free(l1);
			return ret;
		}
		for (j = 0; j < bytes / 8; j++)
			l1[j] = be64toh(l1[j]);
		ret = check_l1(s, c, l1, bytes / 8, false);
		free(l1);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/*
 * Coroutine, image lock held: while the autoclear bit says the persistent
 * bitmaps are valid, their directory, bitmap tables and data clusters are
 * referenced (sluice does not use them, but must not call them leaks).
 */
static int coroutine_fn GRAPH_RDLOCK check_bitmaps(struct qcow2_state *s, struct check_ctx *c) TSA_REQUIRES(s->lock)
{
	uint64_t pos, j, *table;
	uint8_t *dir;
	uint32_t i;
	int ret = 0;

	if (!(s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) || !s->nb_bitmaps || !s->bitmap_dir_size)
		return 0;
	if (s->bitmap_dir_size > (64u << 20) || qcow2_offset_into_cluster(s, s->bitmap_dir_offset)) {
		fprintf(stderr, "ERROR bitmap directory at 0x%" PRIx64 " (%" PRIu64 " bytes) is invalid\n",
			s->bitmap_dir_offset, s->bitmap_dir_size);
		c->res->corruptions++;
		return 0;
	}
	check_inc(c, s->bitmap_dir_offset, s->bitmap_dir_size);
	dir = malloc(s->bitmap_dir_size);
	if (!dir)
		return -ENOMEM;
	ret = qcow2_co_read_file(s, s->bitmap_dir_offset, dir, s->bitmap_dir_size);
	if (ret < 0) {
		c->res->check_errors++;
		goto out_free_dir;
	}
	for (i = 0, pos = 0; i < s->nb_bitmaps; i++) {
		uint64_t toff, tbytes, esize;
		uint32_t tsize;

		/* Entry: table offset (8), table size (4), flags (4), type, granularity, name size (2), extra size (4). */
		if (pos + 24 > s->bitmap_dir_size)
			break;
		toff = get_be64(dir + pos);
		tsize = get_be32(dir + pos + 8);
		esize = 24 + (uint64_t)get_be16(dir + pos + 18) + get_be32(dir + pos + 20);
		pos += (esize + 7) & ~7ull;
		tbytes = (uint64_t)tsize * 8;
		if (!tsize)
			continue;
		if (qcow2_offset_into_cluster(s, toff) || tbytes > (64u << 20)) {
			fprintf(stderr, "ERROR bitmap %u: table at 0x%" PRIx64 " (%u entries) is invalid\n", i, toff,
				tsize);
			c->res->corruptions++;
			continue;
		}
		check_inc(c, toff, tbytes);
		table = malloc(tbytes);
		if (!table) {
			ret = -ENOMEM;
			goto out_free_dir;
		}
		ret = qcow2_co_read_file(s, toff, table, tbytes);
		if (ret < 0) {
			c->res->check_errors++;
			free(table);
			goto out_free_dir;
		}
		for (j = 0; j < tsize; j++) {
			uint64_t off = be64toh(table[j]) & 0x00fffffffffffe00ull;	/* bits 9-55 */

			if (off)
				check_inc(c, off, s->cluster_size);
		}
		free(table);
	}
out_free_dir:
	free(dir);
	return ret;
}

/* Image lock held: is refcount table entry @i usable (0: no block)? */
static bool rt_entry_valid(struct qcow2_state *s, struct check_ctx *c, uint64_t i) TSA_REQUIRES(s->lock)
{
	uint64_t e = s->refcount_table[i];

	return e && !qcow2_offset_into_cluster(s, e) && (e >> s->cluster_bits) < c->nb_clusters;
}

/* Coroutine, image lock held: the image's refcount of host cluster @i (0 where no valid block says otherwise). */
static int coroutine_fn GRAPH_RDLOCK disk_refcount(struct qcow2_state *s, struct check_ctx *c, uint64_t i, uint64_t *ref)
	TSA_REQUIRES(s->lock)
{
	uint64_t rt = i >> s->rb_bits;

	*ref = 0;
	if (rt >= s->refcount_table_entries || !rt_entry_valid(s, c, rt))
		return 0;
	return qcow2_co_get_refcount(s, i, ref);
}

/* Coroutine, image lock held: COPIED must be set exactly where the refcount is 1 (active tables). */
static int coroutine_fn GRAPH_RDLOCK check_copied(struct qcow2_state *s, struct check_ctx *c) TSA_REQUIRES(s->lock)
{
	uint64_t i, j, ref;
	int ret;

	for (i = 0; i < s->l1_size; i++) {
		uint64_t l1e = s->l1_table[i], off = l1e & QCOW2_L1E_OFFSET_MASK;
		uint64_t *l2;
		unsigned int index;
		bool dirty = false;

		if (!off || qcow2_offset_into_cluster(s, off) || (off >> s->cluster_bits) >= c->nb_clusters)
			continue;
		ret = disk_refcount(s, c, off >> s->cluster_bits, &ref);
		if (ret < 0)
			return ret;
		if ((ref == 1) != !!(l1e & QCOW2_OFLAG_COPIED)) {
			fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64 " l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
				c->fix & QCOW2_FIX_ERRORS ? "Repairing" : "ERROR", i, l1e, ref);
			if (c->fix & QCOW2_FIX_ERRORS) {
				uint64_t be;

				s->l1_table[i] = ref == 1 ? l1e | QCOW2_OFLAG_COPIED : l1e & ~QCOW2_OFLAG_COPIED;
				be = htobe64(s->l1_table[i]);
				ret = qcow2_co_write_meta(s, s->l1_table_offset + i * 8, &be, 8,
							  QCOW2_OL_ACTIVE_L1);
				if (ret < 0)
					return ret;
				c->res->corruptions_fixed++;
			} else {
				c->res->corruptions++;
			}
		}
		for (j = 0; j < (1ull << s->l2_bits); j++) {
			uint64_t e, doff;
			enum qcow2_cluster_type t;

			ret = qcow2_co_get_l2(s, (i << (s->l2_bits + s->cluster_bits)) +
					      (j << s->cluster_bits), false, &l2, &index);
			if (ret < 0)
				return ret;
			if (!l2)
				break;
			e = be64toh(l2[index]);
			t = qcow2_l2e_type(s, e);
			if (t != QCOW2_CLUSTER_NORMAL && t != QCOW2_CLUSTER_ZERO_ALLOC)
				continue;
			doff = e & QCOW2_L2E_OFFSET_MASK;
			if (qcow2_offset_into_cluster(s, doff) || (doff >> s->cluster_bits) >= c->nb_clusters)
				continue;
			ret = disk_refcount(s, c, doff >> s->cluster_bits, &ref);
			if (ret < 0)
				return ret;
			if ((ref == 1) == !!(e & QCOW2_OFLAG_COPIED))
				continue;
			fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
				c->fix & QCOW2_FIX_ERRORS ? "Repairing" : "ERROR", e, ref);
			if (!(c->fix & QCOW2_FIX_ERRORS)) {
				c->res->corruptions++;
				continue;
			}
			/* get_l2 again: disk_refcount may have evicted nothing from the L2 cache, but be safe. */
			ret = qcow2_co_get_l2(s, (i << (s->l2_bits + s->cluster_bits)) +
					      (j << s->cluster_bits), false, &l2, &index);
			if (ret < 0)
				return ret;
			l2[index] = htobe64(ref == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED);
			qcow2_cache_mark_dirty(&s->l2_cache, l2);
			dirty = true;
			c->res->corruptions_fixed++;
		}
		if (dirty) {
			ret = qcow2_cache_co_flush(s, &s->l2_cache);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/* Coroutine, image lock held: one pass: count, compare, repair what @c->fix allows. */
static int coroutine_fn GRAPH_RDLOCK check_pass(struct qcow2_state *s, struct check_ctx *c) TSA_REQUIRES(s->lock)
{
	int64_t flen = __atomic_load_n(&s->bs->file->total_bytes, __ATOMIC_RELAXED);
	uint64_t i, end = 0, ref, max_used = 0;
	int ret;

	c->nb_clusters = qcow2_size_to_clusters(s, flen);
	c->refs = calloc(c->nb_clusters ? c->nb_clusters : 1, sizeof(*c->refs));
	c->l2buf = malloc(s->cluster_size);
	if (!c->refs || !c->l2buf) {
		c->res->check_errors++;
		ret = -ENOMEM;
		goto out_free;
	}
	c->res->total_clusters = qcow2_size_to_clusters(s, s->size);

	/* Everything that holds a reference: header, L1/L2 (active and snapshots), refcount structures. */
	check_inc(c, 0, s->cluster_size);
	check_inc(c, s->l1_table_offset, (uint64_t)s->l1_size * 8);
	ret = check_l1(s, c, s->l1_table, s->l1_size, true);
	if (ret < 0)
		goto out_free;
	ret = check_snapshots(s, c);
	if (ret < 0)
		goto out_free;
	ret = check_bitmaps(s, c);
	if (ret < 0)
		goto out_free;
	check_inc(c, s->refcount_table_offset, (uint64_t)s->refcount_table_clusters << s->cluster_bits);
	for (i = 0; i < s->refcount_table_entries; i++) {
		uint64_t e = s->refcount_table[i];

		if (!e)
			continue;
		if (qcow2_offset_into_cluster(s, e)) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount table entry corrupted\n",
				i);
			c->res->corruptions++;
			continue;
		}
		if ((e >> s->cluster_bits) >= c->nb_clusters) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " is outside image\n", i);
			c->res->corruptions++;
			continue;
		}
		check_inc(c, e, s->cluster_size);
	}

	/* New refcount blocks placed by a repair must not land on a referenced cluster. */
	for (i = 0; i < c->nb_clusters; i++)
		if (c->refs[i])
			max_used = i + 1;
	if (c->fix && s->free_cluster_index < max_used)
		s->free_cluster_index = max_used;

	for (i = 0; i < c->nb_clusters; i++) {
		ret = disk_refcount(s, c, i, &ref);
		if (ret < 0) {
			c->res->check_errors++;
			goto out_free;
		}
		if (ref != c->refs[i]) {
			bool leak = ref > c->refs[i];
			bool fix = c->fix & (leak ? QCOW2_FIX_LEAKS : QCOW2_FIX_ERRORS);
			uint64_t diff = leak ? ref - c->refs[i] : c->refs[i] - ref;

			fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
				fix ? "Repairing" : leak ? "Leaked" : "ERROR", i, ref, c->refs[i]);
			if (fix && diff <= INT32_MAX && c->refs[i] <= s->refcount_max) {
				ret = qcow2_co_update_refcount(s, i << s->cluster_bits, s->cluster_size,
							       leak ? -(int)diff : (int)diff);
				if (ret < 0) {
					fprintf(stderr, "ERROR could not fix cluster %" PRIu64 ": %s\n", i,
						strerror(-ret));
					c->res->check_errors++;
				} else {
					if (leak)
						c->res->leaks_fixed++;
					else
						c->res->corruptions_fixed++;
					ref = c->refs[i];
				}
			} else if (leak) {
				c->res->leaks++;
			} else {
				c->res->corruptions++;
			}
		}
		if (ref || c->refs[i])
			end = i + 1;
	}
	if (c->fix) {
		ret = qcow2_cache_co_flush(s, &s->rb_cache);
		if (ret < 0) {
			c->res->check_errors++;
			goto out_free;
		}
	}
	ret = check_copied(s, c);
	if (ret < 0) {
		c->res->check_errors++;
		goto out_free;
	}
	c->res->image_end_offset = end << s->cluster_bits;
	ret = 0;
out_free:
	free(c->refs);
	free(c->l2buf);
	c->refs = NULL;
	c->l2buf = NULL;
	return ret;
}

struct check_args {
	struct qcow2_state *s;
	int fix;
	struct qcow2_check_result *res;
};

/* Coroutine: the check (and the repair, then a second check) under the image lock. */
static int coroutine_fn GRAPH_RDLOCK check_body(void *opaque)
{
	struct check_args *a = opaque;
	struct qcow2_state *s = a->s;
	struct check_ctx c = { .s = s, .fix = a->fix, .res = a->res };
	struct qcow2_check_result first;
	int ret;

	sluice_co_mutex_lock(&s->lock);
	if (!s->read_only) {
		/* The tables are read from the file: write back what the caches hold. */
		ret = qcow2_cache_co_flush(s, &s->l2_cache);
		if (ret >= 0)
			ret = qcow2_cache_co_flush(s, &s->rb_cache);
		if (ret < 0)
			goto out_unlock;
	}
	memset(a->res, 0, sizeof(*a->res));
	ret = check_pass(s, &c);
	if (ret < 0 || !a->fix || (!a->res->leaks_fixed && !a->res->corruptions_fixed &&
				   !(s->incompat_features & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))))
		goto out_unlock;

	first = *a->res;
	memset(a->res, 0, sizeof(*a->res));
	c.fix = 0;
	ret = check_pass(s, &c);
	a->res->leaks_fixed = first.leaks_fixed;
	a->res->corruptions_fixed = first.corruptions_fixed;
	if (ret >= 0 && !a->res->corruptions && !a->res->check_errors &&
	    (s->incompat_features & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))) {
		/* Consistent again: the image may be opened read/write. */
		uint8_t be[8];

		s->incompat_features &= ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
		put_be64(be, s->incompat_features);
		ret = qcow2_co_write_meta(s, QCOW2_HDR_INCOMPAT_OFF, be, 8, QCOW2_OL_HEADER);
		if (ret >= 0)
			ret = sluice_bds_co_flush(s->bs->file);
	}
out_unlock:
	sluice_co_mutex_unlock(&s->lock);
	return ret;
}

/* Main thread: see qcow2.h. */
int qcow2_check(struct sluice_bds *bs, int fix, struct qcow2_check_result *res)
{
	struct check_args a = { .s = bs->opaque, .fix = fix, .res = res };

	if (bs->drv != &sluice_bdrv_qcow2)
		return -EINVAL;
	if (fix && a.s->read_only)
		return -EROFS;
	return qcow2_run_sync(check_body, &a);
}

/* ---- compressed writes ---- */

/*
 * Coroutine, image lock held: @len bytes (at most a cluster) for compressed
 * data.  Packed into a partly used cluster while the data fits in it (each
 * compressed cluster holds one reference to the host cluster), else a new
 * cluster.  Returns the host byte offset or -errno.
 */
static int64_t coroutine_fn GRAPH_RDLOCK alloc_bytes(struct qcow2_state *s, uint64_t len) TSA_REQUIRES(s->lock)
{
	uint64_t off = s->free_byte_offset, nb;
	int64_t a;
	int ret;

	if (off && qcow2_offset_into_cluster(s, off) &&
	    s->cluster_size - qcow2_offset_into_cluster(s, off) >= len) {
		uint64_t ref;

		/* One more reference, unless the refcount is at its maximum (small refcount_bits): then a new cluster. */
		ret = qcow2_co_get_refcount(s, off >> s->cluster_bits, &ref);
		if (ret < 0)
			return ret;
		if (ref >= s->refcount_max)
			off = 0;
	} else {
		off = 0;
	}
	if (off) {
		ret = qcow2_co_update_refcount(s, qcow2_start_of_cluster(s, off), s->cluster_size, 1);
		if (ret < 0)
			return ret;
	} else {
		a = qcow2_co_alloc_clusters(s, 1, &nb);
		if (a < 0)
			return a;
		off = a;
	}
	s->free_byte_offset = off + len;
	if (!qcow2_offset_into_cluster(s, s->free_byte_offset))
		s->free_byte_offset = 0;
	return off;
}

/* Coroutine in the node's ctx: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_pwrite_compressed(struct sluice_bds *bs, uint64_t offset, const void *buf)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t *l2, old, nsect, desc;
	unsigned int index;
	struct iovec iov;
	void *out;
	ssize_t clen;
	int64_t host;
	int ret;

	if (s->read_only)
		return -EPERM;
	if (qcow2_offset_into_cluster(s, offset) || offset >= s->size)
		return -EINVAL;
	out = malloc(s->cluster_size);
	if (!out)
		return -ENOMEM;
	clen = qcow2_compress(s->compression_type, out, s->cluster_size - 1, buf, s->cluster_size);
	if (clen == -ENOSPC) {
		/* Incompressible: a normal cluster (the tail past the image end is not written). */
		free(out);
		iov = (struct iovec){ (void *)buf, MIN(s->cluster_size, s->size - offset) };
		return sluice_bds_co_pwritev(bs, offset, iov.iov_len, &iov, 1, 0);
	}
	if (clen < 0) {
		free(out);
		return clen;
	}

	sluice_co_mutex_lock(&s->lock);
	if (s->corrupt) {
		ret = -EIO;
		goto out_unlock;
	}
	host = alloc_bytes(s, clen);
	if (host < 0) {
		ret = host;
		goto out_unlock;
	}
	ret = qcow2_co_pre_write_check(s, 0, host, clen);
	if (ret < 0)
		goto out_unlock;
	/* Data first, then the L2 entry (under the lock: convert writes one cluster at a time). */
	iov = (struct iovec){ out, clen };
	ret = sluice_bds_co_pwritev(bs->file, host, clen, &iov, 1, 0);
	if (ret < 0)
		goto err_free;
	/* The old entry's cluster is freed below: reads that mapped it end first (new ones wait for the lock). */
	qcow2_co_wait_reads(s, NULL, offset >> s->cluster_bits, (offset >> s->cluster_bits) + 1);
	ret = qcow2_co_get_l2(s, offset, true, &l2, &index);
	if (ret < 0)
		goto err_free;
	ret = qcow2_cache_co_set_dependency(s, &s->l2_cache, &s->rb_cache);
	if (ret < 0)
		goto err_free;
	qcow2_cache_depends_on_flush(&s->l2_cache);
	ret = qcow2_co_get_l2(s, offset, true, &l2, &index);
	if (ret < 0)
		goto err_free;
	nsect = ((host + clen - 1) >> 9) - (host >> 9);
	desc = QCOW2_OFLAG_COMPRESSED | ((uint64_t)host & s->cluster_offset_mask) | (nsect << s->csize_shift);
	old = be64toh(l2[index]);
	l2[index] = htobe64(desc);
	qcow2_cache_mark_dirty(&s->l2_cache, l2);
	ret = qcow2_co_free_l2_entry(s, old);
	goto out_unlock;

err_free:
	qcow2_co_free_clusters(s, qcow2_start_of_cluster(s, host), s->cluster_size);
out_unlock:
	sluice_co_mutex_unlock(&s->lock);
	free(out);
	return ret;
}

/* ---- info ---- */

/* Any thread: see qcow2.h. */
bool qcow2_get_info(struct sluice_bds *bs, struct qcow2_info *info) TSA_NO_TSA
{
	struct qcow2_state *s;

	if (!bs || bs->drv != &sluice_bdrv_qcow2)
		return false;
	s = bs->opaque;
	memset(info, 0, sizeof(*info));
	info->version = s->version;
	info->cluster_size = s->cluster_size;
	info->compression_type = s->compression_type;
	info->lazy_refcounts = s->compat_features & QCOW2_COMPAT_LAZY_REFCOUNTS;
	info->refcount_bits = s->refcount_bits;
	info->corrupt = s->corrupt || (s->incompat_features & QCOW2_INCOMPAT_CORRUPT);
	info->dirty = s->incompat_features & QCOW2_INCOMPAT_DIRTY;
	info->backing_file = s->backing_file;
	info->backing_format = s->backing_format;
	return true;
}
