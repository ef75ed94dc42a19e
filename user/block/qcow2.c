// SPDX-License-Identifier: GPL-2.0
/* qcow2.c - the qcow2 format driver: header validation, open/close, backing chain, request paths, create. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "aio.h"
#include "qcow2.h"

#define QCOW2_IOV_LOCAL		16
#define QCOW2_MAX_SNAPSHOT_TABLE	(64u << 20)
#define QCOW2_MAX_HEADER_EXTS		1024

/* ---- small helpers ---- */

/* Any context: set *@errp (first error wins). */
static void qcow2_err(char **errp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void qcow2_err(char **errp, const char *fmt, ...)
{
	va_list ap;

	if (!errp || *errp)
		return;
	va_start(ap, fmt);
	*errp = g_strdup_vprintf(fmt, ap);
	va_end(ap);
}

/* A synchronous call into coroutine context, for main-thread callbacks (open, close, create). */
struct qcow2_sync {
	int (*fn)(void *opaque);
	void *opaque;
	int ret;
	bool done;
};

/* Coroutine entered by qcow2_run_sync(). */
static void coroutine_fn qcow2_sync_entry(void *opaque)
{
	struct qcow2_sync *c = opaque;

	sluice_graph_co_rdlock();
	c->ret = c->fn(c->opaque);
	sluice_graph_co_rdunlock();
	c->done = true;
}

/* Main thread (or a coroutine: then called directly): see qcow2.h. */
int qcow2_run_sync(int (*fn)(void *opaque), void *opaque)
{
	struct qcow2_sync c = { .fn = fn, .opaque = opaque };
	struct sluice_aio_ctx *ctx;

	if (sluice_in_co())
		return fn(opaque);
	ctx = sluice_aio_current();
	if (!ctx)
		ctx = sluice_block_main_ctx();
	if (!ctx)
		return -ENOMEM;
	sluice_co_enter(sluice_co_create(qcow2_sync_entry, &c));
	SLUICE_AIO_WAIT_WHILE(ctx, !c.done);
	/* What the body's last request left behind (e.g. a drain wake-up BH while drained) runs now. */
	while (sluice_aio_poll(ctx, false))
		;
	return c.ret;
}

/* ---- host I/O, overlap checks, corruption ---- */

/* Coroutine: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_read_file(struct qcow2_state *s, uint64_t offset, void *buf, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int64_t flen = __atomic_load_n(&s->bs->file->total_bytes, __ATOMIC_RELAXED);
	uint64_t n = len;

	/* Past the end of the file reads as zeros (a truncated image is caught by the checks that use it). */
	if (offset >= (uint64_t)flen) {
		memset(buf, 0, len);
		return 0;
	}
	if (offset + len > (uint64_t)flen) {
		n = flen - offset;
		memset((char *)buf + n, 0, len - n);
		iov.iov_len = n;
	}
	return sluice_bds_co_preadv(s->bs->file, offset, n, &iov, 1, 0);
}

/* Pure: does [a, a + al) meet [b, b + bl)? */
static bool ranges_overlap(uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
	return al && bl && a < b + bl && b < a + al;
}

/* Coroutine, image lock held: see qcow2.h.  Ranges are widened to whole clusters. */
unsigned int coroutine_fn qcow2_co_check_overlap(struct qcow2_state *s, unsigned int ign,
						 uint64_t offset, uint64_t len)
{
	uint64_t cs = s->cluster_size, i;
	uint64_t start = qcow2_start_of_cluster(s, offset);
	uint64_t end = qcow2_start_of_cluster(s, offset + len + cs - 1);
	uint64_t n = end - start;

	if (!len)
		return 0;
	if (!(ign & QCOW2_OL_HEADER) && start < cs)
		return QCOW2_OL_HEADER;
	if (!(ign & QCOW2_OL_ACTIVE_L1) &&
	    ranges_overlap(start, n, s->l1_table_offset, (uint64_t)s->l1_size * 8))
		return QCOW2_OL_ACTIVE_L1;
	if (!(ign & QCOW2_OL_REFCOUNT_TABLE) &&
	    ranges_overlap(start, n, s->refcount_table_offset,
			   (uint64_t)s->refcount_table_clusters * cs))
		return QCOW2_OL_REFCOUNT_TABLE;
	if (!(ign & QCOW2_OL_SNAPSHOT_TABLE) && s->nb_snapshots &&
	    ranges_overlap(start, n, s->snapshots_offset, s->snapshot_table_bytes))
		return QCOW2_OL_SNAPSHOT_TABLE;
	if (!(ign & QCOW2_OL_INACTIVE_L1)) {
		for (i = 0; i < s->nb_snapshots; i++)
			if (ranges_overlap(start, n, s->snapshot_l1[2 * i], s->snapshot_l1[2 * i + 1]))
				return QCOW2_OL_INACTIVE_L1;
	}
	if (!(ign & QCOW2_OL_ACTIVE_L2)) {
		for (i = 0; i < s->l1_size; i++) {
			uint64_t l2 = s->l1_table[i] & QCOW2_L1E_OFFSET_MASK;

			if (l2 && ranges_overlap(start, n, l2, cs))
				return QCOW2_OL_ACTIVE_L2;
		}
	}
	if (!(ign & QCOW2_OL_REFCOUNT_BLOCK)) {
		/* Up to the last block in use, not the table's size: this runs before every data write. */
		for (i = 0; i < s->refcount_table_used; i++) {
			uint64_t rb = s->refcount_table[i] & ~(cs - 1);

			if (rb && ranges_overlap(start, n, rb, cs))
				return QCOW2_OL_REFCOUNT_BLOCK;
		}
	}
	return 0;
}

/* Pure: a name for an overlap category. */
static const char *ol_name(unsigned int ol)
{
	switch (ol) {
	case QCOW2_OL_HEADER:		return "qcow2 header";
	case QCOW2_OL_ACTIVE_L1:	return "active L1 table";
	case QCOW2_OL_ACTIVE_L2:	return "active L2 table";
	case QCOW2_OL_REFCOUNT_TABLE:	return "refcount table";
	case QCOW2_OL_REFCOUNT_BLOCK:	return "refcount block";
	case QCOW2_OL_SNAPSHOT_TABLE:	return "snapshot table";
	case QCOW2_OL_INACTIVE_L1:	return "inactive L1 table";
	default:			return "metadata";
	}
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_pre_write_check(struct qcow2_state *s, unsigned int ign, uint64_t offset,
					  uint64_t len)
{
	unsigned int ol = qcow2_co_check_overlap(s, ign, offset, len);

	if (!ol)
		return 0;
	return qcow2_co_signal_corruption(s, "Preventing invalid write on metadata (overlaps with %s) at %#llx+%#llx",
					  ol_name(ol), (unsigned long long)offset,
					  (unsigned long long)len);
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_write_meta(struct qcow2_state *s, uint64_t offset, const void *buf,
				     uint64_t len, unsigned int ign)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	int ret;

	if (s->corrupt)
		return -EIO;
	ret = qcow2_co_pre_write_check(s, ign, offset, len);
	if (ret < 0)
		return ret;
	return sluice_bds_co_pwritev(s->bs->file, offset, len, &iov, 1, 0);
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
{
	uint8_t be[8];
	struct iovec iov = { .iov_base = be, .iov_len = sizeof(be) };
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (s->corrupt || s->read_only) {
		fprintf(stderr, "qcow2: %s: image corrupt: %s\n", s->bs->filename, msg);
		g_free(msg);
		return -EIO;
	}
	fprintf(stderr, "qcow2: %s: Marking image as corrupt: %s; further corruption events will be suppressed\n",
		s->bs->filename, msg);
	g_free(msg);
	s->corrupt = true;
	if (s->version >= 3) {
		s->incompat_features |= QCOW2_INCOMPAT_CORRUPT;
		put_be64(be, s->incompat_features);
		if (sluice_bds_co_pwritev(s->bs->file, QCOW2_HDR_INCOMPAT_OFF, 8, &iov, 1, 0) == 0)
			sluice_bds_co_flush(s->bs->file);
	}
	return -EIO;
}

/* ---- in-flight guest ranges ---- */

/* Pure: must a request of kind @a wait for one of kind @b over the same clusters? */
static bool req_conflict(enum qcow2_req_kind a, enum qcow2_req_kind b)
{
	bool a_alloc = a == QCOW2_REQ_ALLOC || a == QCOW2_REQ_LINK;
	bool b_alloc = b == QCOW2_REQ_ALLOC || b == QCOW2_REQ_LINK;

	/* Freeing host clusters waits for the reads that may use them, and for nothing else. */
	if (a == QCOW2_REQ_FREE || b == QCOW2_REQ_FREE)
		return a == QCOW2_REQ_READ || b == QCOW2_REQ_READ;
	if (a == QCOW2_REQ_DISCARD || b == QCOW2_REQ_DISCARD)
		return true;
	/* A read must not start on clusters a LINK is about to free (it waits for earlier reads). */
	if ((a == QCOW2_REQ_READ && b == QCOW2_REQ_LINK) || (a == QCOW2_REQ_LINK && b == QCOW2_REQ_READ))
		return true;
	return a_alloc && b_alloc;
}

/*
 * Coroutine, image lock held: if a request other than @self (NULL: none)
 * that conflicts with @kind over guest clusters [start, end) is in flight,
 * wait for it to end and return true (the caller must look again: the lock
 * was dropped); else false.
 */
static bool coroutine_fn req_co_wait(struct qcow2_state *s, const struct qcow2_req *self,
				     enum qcow2_req_kind kind, uint64_t start, uint64_t end) TSA_REQUIRES(s->lock)
{
	struct qcow2_req *r;

	for (r = s->reqs; r; r = r->next) {
		if (r != self && r->start < end && start < r->end && req_conflict(kind, r->kind)) {
			sluice_co_queue_wait(&r->waiters, &s->lock);
			return true;
		}
	}
	return false;
}

/*
 * Coroutine, image lock held: wait until no read of guest clusters
 * [start, end) other than @self is in flight (the lock is dropped while
 * waiting).  Before a host cluster those reads may be using is freed: its
 * refcount can drop to 0 and the next allocation reuse it.
 */
void coroutine_fn qcow2_co_wait_reads(struct qcow2_state *s, const struct qcow2_req *self, uint64_t start,
				      uint64_t end) TSA_REQUIRES(s->lock)
{
	while (req_co_wait(s, self, QCOW2_REQ_FREE, start, end))
		;
}

/* Image lock held: @r (on the caller's stack) covers guest bytes [offset, offset + len). */
static void req_add(struct qcow2_state *s, struct qcow2_req *r, enum qcow2_req_kind kind,
		    uint64_t offset, uint64_t len) TSA_REQUIRES(s->lock)
{
	r->kind = kind;
	r->start = offset >> s->cluster_bits;
	r->end = (offset + len + s->cluster_size - 1) >> s->cluster_bits;
	sluice_co_queue_init(&r->waiters);
	r->next = s->reqs;
	s->reqs = r;
}

/* Image lock held: @r is done; wake whoever waits for it. */
static void req_del(struct qcow2_state *s, struct qcow2_req *r) TSA_REQUIRES(s->lock)
{
	struct qcow2_req **p;

	for (p = &s->reqs; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	sluice_co_queue_restart_all(&r->waiters);
}

/* ---- reads ---- */

/* A slice of a request's iovec, on the stack when small. */
struct qcow2_iov {
	struct iovec local[QCOW2_IOV_LOCAL];
	struct iovec *v;
	int n;
};

/* Any context: @dst = @n bytes of @iov from @skip on, with @extra spare slots at each end. */
static int qiov_slice(struct qcow2_iov *dst, const struct iovec *iov, int niov, uint64_t skip,
		      uint64_t n, int extra)
{
	int max = niov + 2 * extra;

	dst->v = max <= QCOW2_IOV_LOCAL ? dst->local : g_new(struct iovec, max);
	dst->n = sluice_iov_slice(dst->v + extra, niov, iov, niov, skip, n);
	if (dst->n < 0) {
		if (dst->v != dst->local)
			g_free(dst->v);
		return -EINVAL;
	}
	return 0;
}

static void qiov_free(struct qcow2_iov *q)
{
	if (q->v != q->local)
		g_free(q->v);
}

/* Coroutine: read guest bytes of the backing file (zeros past its end) into @iov at @skip. */
static int coroutine_fn GRAPH_RDLOCK read_backing(struct qcow2_state *s, uint64_t offset, uint64_t len,
				     const struct iovec *iov, int niov, uint64_t skip)
{
	int64_t blen = __atomic_load_n(&s->backing->total_bytes, __ATOMIC_RELAXED);
	uint64_t n = 0;
	struct qcow2_iov q;
	int ret;

	if (offset < (uint64_t)blen)
		n = MIN(len, (uint64_t)blen - offset);
	if (n) {
		ret = qiov_slice(&q, iov, niov, skip, n, 0);
		if (ret < 0)
			return ret;
		ret = sluice_bds_co_preadv(s->backing, offset, n, q.v, q.n, 0);
		qiov_free(&q);
		if (ret < 0)
			return ret;
	}
	if (n < len)
		sluice_iov_memset(iov, niov, skip + n, 0, len - n);
	return 0;
}

/* Coroutine: a compressed cluster's bytes [in_cluster, in_cluster + len) into @iov at @skip. */
static int coroutine_fn GRAPH_RDLOCK read_compressed(struct qcow2_state *s, uint64_t l2e, uint64_t in_cluster,
					uint64_t len, const struct iovec *iov, int niov, uint64_t skip)
{
	uint64_t host = l2e & s->cluster_offset_mask;
	uint64_t nb = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
	uint64_t csize = nb * 512 - (host & 511);
	void *in = malloc(csize), *out = malloc(s->cluster_size);
	int ret = -ENOMEM;

	if (!in || !out)
		goto out_free;
	ret = qcow2_co_read_file(s, host, in, csize);
	if (ret < 0)
		goto out_free;
	ret = qcow2_decompress(s->compression_type, out, s->cluster_size, in, csize);
	if (ret < 0) {
		fprintf(stderr, "qcow2: %s: bad compressed cluster at %#llx\n", s->bs->filename,
			(unsigned long long)host);
		ret = -EIO;
		goto out_free;
	}
	sluice_iov_from_buf(iov, niov, skip, (char *)out + in_cluster, len);
out_free:
	free(in);
	free(out);
	return ret;
}

/*
 * Coroutine, any ctx: read guest [offset, offset + bytes) into @iov (also
 * past the guest size, for COW of the last cluster).  Takes the image lock
 * for each mapping lookup; data is read without it.
 */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_do_read(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
					 const struct iovec *iov, int niov)
{
	uint64_t done = 0;
	int ret = 0;

	while (done < bytes && ret >= 0) {
		uint64_t off = offset + done;
		struct qcow2_map m;
		struct qcow2_req r;
		struct qcow2_iov q;

		sluice_co_mutex_lock(&s->lock);
		while (req_co_wait(s, NULL, QCOW2_REQ_READ, off >> s->cluster_bits,
				   ((off + bytes - done - 1) >> s->cluster_bits) + 1))
			;
		ret = qcow2_co_get_mapping(s, off, bytes - done, &m);
		if (ret < 0) {
			sluice_co_mutex_unlock(&s->lock);
			break;
		}
		req_add(s, &r, QCOW2_REQ_READ, off, m.bytes);
		sluice_co_mutex_unlock(&s->lock);

		switch (m.type) {
		case QCOW2_CLUSTER_UNALLOCATED:
			if (s->backing) {
				ret = read_backing(s, off, m.bytes, iov, niov, done);
				break;
			}
			/* fall through */
		case QCOW2_CLUSTER_ZERO_PLAIN:
		case QCOW2_CLUSTER_ZERO_ALLOC:
			sluice_iov_memset(iov, niov, done, 0, m.bytes);
			break;
		case QCOW2_CLUSTER_COMPRESSED:
			ret = read_compressed(s, m.l2e, qcow2_offset_into_cluster(s, off), m.bytes,
					      iov, niov, done);
			break;
		case QCOW2_CLUSTER_NORMAL:
			ret = qiov_slice(&q, iov, niov, done, m.bytes, 0);
			if (ret < 0)
				break;
			ret = sluice_bds_co_preadv(s->bs->file, m.host, m.bytes, q.v, q.n, 0);
			qiov_free(&q);
			break;
		}

		sluice_co_mutex_lock(&s->lock);
		req_del(s, &r);
		sluice_co_mutex_unlock(&s->lock);
		done += m.bytes;
	}
	return ret < 0 ? ret : 0;
}

/* Coroutine in the node's ctx. */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_preadv(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					struct iovec *iov, int niov, int flags)
{
	return qcow2_co_do_read(bs->opaque, offset, bytes, iov, niov);
}

/* ---- writes ---- */

/*
 * Coroutine, no lock held, an ALLOC request registered over the clusters:
 * write guest data plus the copy-on-write head and tail of the clusters
 * to the new host clusters at @host.
 */
static int coroutine_fn GRAPH_RDLOCK write_with_cow(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
				       const struct iovec *iov, int niov, uint64_t skip, uint64_t host,
				       uint64_t nb)
{
	uint64_t cstart = qcow2_start_of_cluster(s, offset);
	uint64_t head = offset - cstart;
	uint64_t tail = cstart + (nb << s->cluster_bits) - (offset + bytes);
	struct iovec hv = { 0 }, tv = { 0 };
	void *hbuf = NULL, *tbuf = NULL;
	struct qcow2_iov q;
	int ret = -ENOMEM;

	if (head) {
		hbuf = malloc(head);
		if (!hbuf)
			goto out_free;
		hv = (struct iovec){ hbuf, head };
		ret = qcow2_co_do_read(s, cstart, head, &hv, 1);
		if (ret < 0)
			goto out_free;
	}
	if (tail) {
		tbuf = malloc(tail);
		if (!tbuf) {
			ret = -ENOMEM;
			goto out_free;
		}
		tv = (struct iovec){ tbuf, tail };
		ret = qcow2_co_do_read(s, offset + bytes, tail, &tv, 1);
		if (ret < 0)
			goto out_free;
	}
	ret = qiov_slice(&q, iov, niov, skip, bytes, 1);
	if (ret < 0)
		goto out_free;
	{
		struct iovec *v = q.v + 1;
		int n = q.n;

		if (head) {
			v--;
			v[0] = hv;
			n++;
		}
		if (tail)
			v[n++] = tv;
		ret = sluice_bds_co_pwritev(s->bs->file, host, nb << s->cluster_bits, v, n, 0);
	}
	qiov_free(&q);
out_free:
	free(hbuf);
	free(tbuf);
	return ret;
}

/*
 * Coroutine in the node's ctx: write @bytes of @iov (from @skip) at guest
 * @offset.  Clusters we own (COPIED) are written in place; anything else
 * gets new clusters: refcounts first, data (with COW) next, L2 entries
 * last.  One ALLOC request per cluster at a time, so two writers never
 * allocate the same guest cluster twice.
 */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_do_write(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
					  const struct iovec *iov, int niov, uint64_t skip)
{
	uint64_t done = 0;
	int ret = 0;

	while (done < bytes) {
		uint64_t off = offset + done, chunk, first, last, nb = 0, host;
		bool reuse = false, no_cow = false, frees;
		struct qcow2_map m;
		struct qcow2_req r;
		struct qcow2_iov q;
		int64_t a;

		sluice_co_mutex_lock(&s->lock);
retry:
		if (s->corrupt) {
			ret = -EIO;
			goto out_unlock;
		}
		ret = qcow2_co_get_mapping(s, off, bytes - done, &m);
		if (ret < 0)
			goto out_unlock;
		chunk = m.bytes;
		first = off >> s->cluster_bits;
		last = (off + chunk - 1) >> s->cluster_bits;
		if (m.type == QCOW2_CLUSTER_NORMAL && m.copied) {
			if (req_co_wait(s, NULL, QCOW2_REQ_WRITE, first, last + 1))
				goto retry;
			/* An L2 entry of a corrupt image may point at metadata: never write there. */
			ret = qcow2_co_pre_write_check(s, 0, m.host, chunk);
			/*
			 * A data cluster that starts past the end of the file is a corrupt
			 * entry (a write there would grow the file to wherever it points).
			 * One the file ends inside (its last cluster, cut short) is fine, but
			 * close must not cut off what we write there.
			 */
			host = qcow2_start_of_cluster(s, m.host);
			if (ret >= 0 && host >= s->data_end)
				ret = qcow2_co_signal_corruption(s, "data cluster offset %#llx past the end of the image",
								 (unsigned long long)host);
			else if (ret >= 0 && m.host + chunk > s->data_end)
				ret = qcow2_co_grow_file(s, m.host + chunk);
			if (ret < 0)
				goto out_unlock;
			req_add(s, &r, QCOW2_REQ_WRITE, off, chunk);
			sluice_co_mutex_unlock(&s->lock);
			ret = qiov_slice(&q, iov, niov, skip + done, chunk, 0);
			if (ret >= 0) {
				ret = sluice_bds_co_pwritev(s->bs->file, m.host, chunk, q.v, q.n, 0);
				qiov_free(&q);
			}
			sluice_co_mutex_lock(&s->lock);
			req_del(s, &r);
			sluice_co_mutex_unlock(&s->lock);
			if (ret < 0)
				return ret;
			done += chunk;
			continue;
		}

		if (req_co_wait(s, NULL, QCOW2_REQ_ALLOC, first, last + 1))
			goto retry;
		if (m.type == QCOW2_CLUSTER_ZERO_ALLOC && m.copied) {
			/* Our own preallocated zero cluster: fill it in place. */
			reuse = true;
			nb = 1;
			host = qcow2_start_of_cluster(s, m.host);
		} else {
			uint64_t zero_from = s->data_end;	/* before this allocation moves it */

			a = qcow2_co_alloc_clusters(s, last - first + 1, &nb);
			if (a < 0) {
				ret = a;
				goto out_unlock;
			}
			host = a;
			/*
			 * Clusters past the end of what was ever allocated read as zeros:
			 * when the guest clusters read as zeros too, there is nothing to copy.
			 */
			no_cow = host >= zero_from &&
				 (m.type == QCOW2_CLUSTER_ZERO_PLAIN ||
				  (m.type == QCOW2_CLUSTER_UNALLOCATED && !s->backing));
		}
		chunk = MIN(chunk, (nb << s->cluster_bits) - qcow2_offset_into_cluster(s, off));
		ret = qcow2_co_pre_write_check(s, 0, host, nb << s->cluster_bits);
		if (ret < 0)
			goto out_unlock;	/* the image is corrupt now: leave the clusters alone */
		req_add(s, &r, QCOW2_REQ_ALLOC, off, chunk);
		sluice_co_mutex_unlock(&s->lock);

		if (no_cow) {
			ret = qiov_slice(&q, iov, niov, skip + done, chunk, 0);
			if (ret >= 0) {
				ret = sluice_bds_co_pwritev(s->bs->file,
							    host + qcow2_offset_into_cluster(s, off),
							    chunk, q.v, q.n, 0);
				qiov_free(&q);
			}
		} else {
			ret = write_with_cow(s, off, chunk, iov, niov, skip + done, host, nb);
		}

		sluice_co_mutex_lock(&s->lock);
		/*
		 * Linking frees the old host clusters when nothing else holds them
		 * (compressed, or shared and now unshared): reads that mapped them
		 * end first, and reads that start from now on wait for the new entry.
		 */
		frees = m.type == QCOW2_CLUSTER_COMPRESSED || (m.type == QCOW2_CLUSTER_NORMAL && !m.copied);
		if (ret >= 0 && frees) {
			r.kind = QCOW2_REQ_LINK;
			qcow2_co_wait_reads(s, &r, r.start, r.end);
		}
		if (ret >= 0)
			ret = qcow2_co_link_l2(s, qcow2_start_of_cluster(s, off), nb, host);
		else if (!reuse)
			qcow2_co_free_clusters(s, host, nb << s->cluster_bits);
		req_del(s, &r);
		sluice_co_mutex_unlock(&s->lock);
		if (ret < 0)
			return ret;
		done += chunk;
	}
	return 0;

out_unlock:
	sluice_co_mutex_unlock(&s->lock);
	return ret;
}

/* Coroutine in the node's ctx.  FUA: the write and the metadata it needs are made stable. */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_flush(struct sluice_bds *bs);
static int coroutine_fn GRAPH_RDLOCK qcow2_co_pwritev(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					 struct iovec *iov, int niov, int flags)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	if (s->read_only)
		return -EPERM;
	ret = qcow2_co_do_write(s, offset, bytes, iov, niov, 0);
	if (ret >= 0 && (flags & SLUICE_BDRV_REQ_FUA))
		ret = qcow2_co_flush(bs);
	return ret;
}

/* Coroutine in the node's ctx: dirty metadata to the file (L2 after refcounts), then sync it. */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_flush(struct sluice_bds *bs)
{
	struct qcow2_state *s = bs->opaque;
	int ret, ret2;

	if (s->read_only)
		return 0;
	sluice_co_mutex_lock(&s->lock);
	ret = qcow2_cache_co_write(s, &s->l2_cache);
	ret2 = qcow2_cache_co_write(s, &s->rb_cache);
	sluice_co_mutex_unlock(&s->lock);
	if (ret >= 0)
		ret = ret2;
	ret2 = sluice_bds_co_flush(bs->file);
	return ret < 0 ? ret : ret2;
}

/*
 * Coroutine, any ctx: zero (@zero) or discard whole guest clusters of
 * [offset, offset + bytes) (cluster aligned), one L2 table at a time,
 * after every overlapping request in flight.
 */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_clusters_op(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
					     bool zero, bool keep_alloc)
{
	uint64_t l2_span = s->cluster_size << s->l2_bits;
	int ret = 0;

	while (bytes && ret >= 0) {
		uint64_t n = MIN(bytes, l2_span - (offset & (l2_span - 1)));

		sluice_co_mutex_lock(&s->lock);
		while (req_co_wait(s, NULL, QCOW2_REQ_DISCARD, offset >> s->cluster_bits,
				   (offset + n) >> s->cluster_bits))
			;
		ret = s->corrupt ? -EIO : qcow2_co_zero_or_discard(s, offset, n >> s->cluster_bits,
								   zero, keep_alloc);
		sluice_co_mutex_unlock(&s->lock);
		offset += n;
		bytes -= n;
	}
	return ret;
}

/* Coroutine in the node's ctx: whole clusters only (discard is advisory). */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_pdiscard(struct sluice_bds *bs, uint64_t offset, uint64_t bytes)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t start = (offset + s->cluster_size - 1) & ~(s->cluster_size - 1);
	uint64_t end = qcow2_start_of_cluster(s, offset + bytes);
	uint64_t size = __atomic_load_n(&bs->total_bytes, __ATOMIC_RELAXED);

	if (s->read_only)
		return -EPERM;
	/* v2 has no zero clusters: deallocating would show the backing file (QEMU does nothing either). */
	if (s->version < 3 && s->backing)
		return 0;
	/* The partial last cluster of the image counts as whole. */
	if (offset + bytes == size)
		end = (size + s->cluster_size - 1) & ~(s->cluster_size - 1);
	if (end <= start)
		return 0;
	return qcow2_co_clusters_op(s, start, end - start, false, false);
}

/* Coroutine: write zero buffers over guest [offset, offset + len) (partial clusters). */
static int coroutine_fn GRAPH_RDLOCK write_zero_buf(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
	struct iovec iov;
	void *buf;
	int ret;

	if (!len)
		return 0;
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	iov = (struct iovec){ buf, len };
	ret = qcow2_co_do_write(s, offset, len, &iov, 1, 0);
	free(buf);
	return ret;
}

/* Coroutine in the node's ctx: zero clusters (v3) for whole clusters, zero buffers for the partial ends. */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_pwrite_zeroes(struct sluice_bds *bs, uint64_t offset,
					       uint64_t bytes, int flags)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t size = __atomic_load_n(&bs->total_bytes, __ATOMIC_RELAXED);
	uint64_t start = (offset + s->cluster_size - 1) & ~(s->cluster_size - 1);
	uint64_t end = qcow2_start_of_cluster(s, offset + bytes);
	int ret;

	if (s->read_only)
		return -EPERM;
	if (s->version < 3)
		return -ENOTSUP;
	if (offset + bytes == size)
		end = (size + s->cluster_size - 1) & ~(s->cluster_size - 1);
	if (end <= start) {
		if (flags & SLUICE_BDRV_REQ_NO_FALLBACK)
			return -ENOTSUP;
		ret = write_zero_buf(s, offset, bytes);
		goto out_fua;
	}
	if ((start != offset || end < offset + bytes) && (flags & SLUICE_BDRV_REQ_NO_FALLBACK))
		return -ENOTSUP;
	ret = write_zero_buf(s, offset, start - offset);
	if (ret < 0)
		return ret;
	ret = qcow2_co_clusters_op(s, start, end - start, true, !(flags & SLUICE_BDRV_REQ_MAY_UNMAP));
	if (ret < 0)
		return ret;
	if (end < offset + bytes)
		ret = write_zero_buf(s, end, offset + bytes - end);
out_fua:
	if (ret >= 0 && (flags & SLUICE_BDRV_REQ_FUA))
		ret = qcow2_co_flush(bs);
	return ret;
}

/*
 * Coroutine in the node's ctx: grow only.  The L1 table grows first, then
 * the size in the header; the new area reads as zeros even over a longer
 * backing file (zero clusters), as QEMU does.
 */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_truncate(struct sluice_bds *bs, uint64_t size)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t old, tail_end;
	uint8_t be[8];
	int ret;

	if (s->read_only)
		return -EPERM;
	sluice_co_mutex_lock(&s->lock);
	old = s->size;
	if (size < old) {
		ret = -ENOTSUP;
		goto out_unlock;
	}
	if (size == old) {
		ret = 0;
		goto out_unlock;
	}
	while (req_co_wait(s, NULL, QCOW2_REQ_DISCARD, 0, UINT64_MAX))
		;
	ret = qcow2_co_grow_l1(s, qcow2_l1_entries_for(s, size));
	if (ret < 0)
		goto out_unlock;
	put_be64(be, size);
	ret = qcow2_co_write_meta(s, QCOW2_HDR_SIZE_OFF, be, 8, QCOW2_OL_HEADER);
	if (ret < 0)
		goto out_unlock;
	ret = sluice_bds_co_flush(bs->file);
	if (ret < 0)
		goto out_unlock;
	__atomic_store_n(&s->size, size, __ATOMIC_RELAXED);
	sluice_co_mutex_unlock(&s->lock);

	/* The old partial last cluster may hold bytes past the old end; the backing file may be longer. */
	tail_end = MIN(size, (old + s->cluster_size - 1) & ~(s->cluster_size - 1));
	if (s->backing && s->version >= 3) {
		__atomic_store_n(&bs->total_bytes, size, __ATOMIC_RELAXED);
		return qcow2_co_pwrite_zeroes(bs, old, size - old, SLUICE_BDRV_REQ_MAY_UNMAP);
	}
	if (s->backing) {
		/* v2: no zero clusters; write zero buffers over what the backing file still covers. */
		int64_t blen = __atomic_load_n(&s->backing->total_bytes, __ATOMIC_RELAXED);

		tail_end = MIN(size, MAX(tail_end, (uint64_t)blen));
	}
	return tail_end > old ? write_zero_buf(s, old, tail_end - old) : 0;

out_unlock:
	sluice_co_mutex_unlock(&s->lock);
	return ret;
}

/* Coroutine in the node's ctx: what backs [offset, offset + bytes). */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_block_status(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					      uint64_t *pnum, uint64_t *map, struct sluice_bds **file)
{
	struct qcow2_state *s = bs->opaque;
	struct qcow2_map m;
	int ret;

	sluice_co_mutex_lock(&s->lock);
	ret = qcow2_co_get_mapping(s, offset, bytes, &m);
	sluice_co_mutex_unlock(&s->lock);
	if (ret < 0)
		return ret;
	*pnum = m.bytes;
	*map = 0;
	*file = NULL;
	switch (m.type) {
	case QCOW2_CLUSTER_UNALLOCATED:
		return s->backing ? 0 : SLUICE_BLOCK_ZERO;
	case QCOW2_CLUSTER_ZERO_PLAIN:
		return SLUICE_BLOCK_ZERO | SLUICE_BLOCK_ALLOCATED;
	case QCOW2_CLUSTER_ZERO_ALLOC:
		*map = m.host;
		*file = bs->file;
		return SLUICE_BLOCK_ZERO | SLUICE_BLOCK_ALLOCATED | SLUICE_BLOCK_OFFSET_VALID;
	case QCOW2_CLUSTER_COMPRESSED:
		return SLUICE_BLOCK_DATA | SLUICE_BLOCK_ALLOCATED;
	case QCOW2_CLUSTER_NORMAL:
		*map = m.host;
		*file = bs->file;
		return SLUICE_BLOCK_DATA | SLUICE_BLOCK_ALLOCATED | SLUICE_BLOCK_OFFSET_VALID;
	}
	return -EIO;
}

/* Any thread. */
static int64_t qcow2_getlength(struct sluice_bds *bs) TSA_NO_TSA
{
	struct qcow2_state *s = bs->opaque;

	return __atomic_load_n(&s->size, __ATOMIC_RELAXED);
}

/* Any thread. */
static int64_t qcow2_get_allocated_size(struct sluice_bds *bs)
{
	if (!bs->file->drv->get_allocated_size)
		return -ENOTSUP;
	return bs->file->drv->get_allocated_size(bs->file);
}

/* ---- open ---- */

/* What open reads from the file, before anything is sized by it. */
struct qcow2_open_ctx {
	struct qcow2_state *s;
	int flags;
	char **errp;
	uint8_t *cluster0;
	uint64_t file_len;
};

/* Pure: the names of @bits from the feature name table extension (type 0 = incompatible), or hex. */
static char *feature_names(const uint8_t *table, uint64_t len, uint64_t bits)
{
	GString *out = g_string_new(NULL);
	uint64_t i;
	int b;

	for (b = 0; b < 64; b++) {
		const char *name = NULL;

		if (!(bits & (1ull << b)))
			continue;
		for (i = 0; table && i + 48 <= len; i += 48) {
			if (table[i] == 0 && table[i + 1] == b) {
				name = (const char *)table + i + 2;
				break;
			}
		}
		if (out->len)
			g_string_append(out, ", ");
		if (name)
			g_string_append_printf(out, "%.46s", name);
		else
			g_string_append_printf(out, "Unknown incompatible feature: %llx",
					       (unsigned long long)(1ull << b));
	}
	return g_string_free(out, false);
}

/*
 * Coroutine: parse and validate the header in @o->cluster0 (the whole
 * first cluster).  Nothing is allocated from its values until they are
 * checked against the limits.
 */
static int coroutine_fn parse_header(struct qcow2_state *s, struct qcow2_open_ctx *o)
	TSA_REQUIRES(s->lock)
{
	const uint8_t *h = o->cluster0;
	uint64_t backing_off, ext_start, ext_end, pos, l1_off, rt_off, size, unknown;
	uint32_t backing_len, crypt, l1_size, rt_clusters, nexts = 0;
	const uint8_t *feature_table = NULL;
	uint64_t feature_table_len = 0;
	bool rw = o->flags & SLUICE_BDRV_O_RDWR;

	size = get_be64(h + 24);
	backing_off = get_be64(h + 8);
	backing_len = get_be32(h + 16);
	crypt = get_be32(h + 32);
	l1_size = get_be32(h + 36);
	l1_off = get_be64(h + 40);
	rt_off = get_be64(h + 48);
	rt_clusters = get_be32(h + 56);
	s->nb_snapshots = get_be32(h + 60);
	s->snapshots_offset = get_be64(h + 64);

	if (s->version >= 3) {
		s->incompat_features = get_be64(h + 72);
		s->compat_features = get_be64(h + 80);
		s->autoclear_features = get_be64(h + 88);
		s->refcount_order = get_be32(h + 96);
		s->header_length = get_be32(h + 100);
		if (s->header_length < QCOW2_V3_HEADER_SIZE) {
			qcow2_err(o->errp, "qcow2 header too short (header_length %u)", s->header_length);
			return -EINVAL;
		}
		if (s->header_length > s->cluster_size) {
			qcow2_err(o->errp, "qcow2 header exceeds cluster size");
			return -EINVAL;
		}
		s->compression_type = s->header_length > 104 ? h[104] : QCOW2_COMPRESSION_ZLIB;
	} else {
		s->refcount_order = 4;
		s->header_length = QCOW2_V2_HEADER_SIZE;
		s->compression_type = QCOW2_COMPRESSION_ZLIB;
	}

	/* Header extensions: between the header and the backing file name (or the cluster end). */
	ext_start = s->header_length;
	ext_end = (backing_off && backing_off < s->cluster_size) ? backing_off : s->cluster_size;
	for (pos = ext_start; pos + 8 <= ext_end; ) {
		uint32_t type = get_be32(h + pos), len = get_be32(h + pos + 4);

		pos += 8;
		if (type == QCOW2_EXT_END)
			break;
		if (len > ext_end - pos || ++nexts > QCOW2_MAX_HEADER_EXTS) {
			qcow2_err(o->errp, "qcow2 header extension %#x is invalid (length %u)", type, len);
			return -EINVAL;
		}
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			if (len > QCOW2_MAX_BACKING_NAME) {
				qcow2_err(o->errp, "qcow2 backing format name too long");
				return -EINVAL;
			}
			g_free(s->backing_format);
			s->backing_format = g_strndup((const char *)h + pos, len);
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			feature_table = h + pos;
			feature_table_len = len;
			break;
		case QCOW2_EXT_BITMAPS:
			/* nb_bitmaps, reserved, directory size, directory offset (kept as on disk too). */
			if (len >= 24) {
				s->nb_bitmaps = get_be32(h + pos);
				s->bitmap_dir_size = get_be64(h + pos + 8);
				s->bitmap_dir_offset = get_be64(h + pos + 16);
			}
			break;
		case QCOW2_EXT_DATA_FILE:
		case QCOW2_EXT_CRYPTO:
		default:
			/* Kept as they are on disk: the header cluster is never rewritten whole. */
			break;
		}
		pos += (len + 7) & ~7ull;
	}

	if (crypt) {
		qcow2_err(o->errp, "qcow2: encrypted images are not supported");
		return -ENOTSUP;
	}
	if (s->incompat_features & QCOW2_INCOMPAT_DATA_FILE) {
		qcow2_err(o->errp, "qcow2: images with an external data file are not supported");
		return -ENOTSUP;
	}
	if (s->incompat_features & QCOW2_INCOMPAT_EXTL2) {
		qcow2_err(o->errp, "qcow2: extended L2 entries (subclusters) are not supported");
		return -ENOTSUP;
	}
	unknown = s->incompat_features & ~QCOW2_INCOMPAT_KNOWN;
	if (unknown) {
		char *names = feature_names(feature_table, feature_table_len, unknown);

		qcow2_err(o->errp, "Unsupported qcow2 feature(s): %s", names);
		g_free(names);
		return -ENOTSUP;
	}
	if (s->compression_type > QCOW2_COMPRESSION_ZSTD) {
		qcow2_err(o->errp, "qcow2: unknown compression type %u", s->compression_type);
		return -ENOTSUP;
	}
	if ((s->compression_type != QCOW2_COMPRESSION_ZLIB) !=
	    !!(s->incompat_features & QCOW2_INCOMPAT_COMPRESSION)) {
		qcow2_err(o->errp, "qcow2: compression type %u does not match the compression incompatible bit",
			  s->compression_type);
		return -EINVAL;
	}
	if (s->refcount_order > 6) {
		qcow2_err(o->errp, "qcow2: refcount_order %u is invalid (at most 6)", s->refcount_order);
		return -EINVAL;
	}
	/* The repair of 'sluice-img check -r' opens a corrupt or dirty image read/write. */
	if ((s->incompat_features & QCOW2_INCOMPAT_CORRUPT) && rw && !(o->flags & QCOW2_O_REPAIR)) {
		qcow2_err(o->errp, "qcow2: image is corrupt; cannot be opened read/write (repair it with 'qemu-img check -r all')");
		return -EACCES;
	}
	if ((s->incompat_features & QCOW2_INCOMPAT_DIRTY) && rw && !(o->flags & QCOW2_O_REPAIR)) {
		qcow2_err(o->errp, "qcow2: image is dirty (lazy refcounts were in use); repair it with 'qemu-img check -r all' before writing");
		return -EACCES;
	}

	/* Size, L1 table. */
	if (size > (uint64_t)INT64_MAX) {
		qcow2_err(o->errp, "qcow2: image size %llu too large", (unsigned long long)size);
		return -EFBIG;
	}
	if ((uint64_t)l1_size * 8 > QCOW2_MAX_L1_SIZE) {
		qcow2_err(o->errp, "qcow2: active L1 table too large (%u entries)", l1_size);
		return -EFBIG;
	}
	if (l1_size < qcow2_l1_entries_for(s, size)) {
		qcow2_err(o->errp, "qcow2: L1 table is too small for the image size");
		return -EINVAL;
	}
	if (l1_size && (qcow2_offset_into_cluster(s, l1_off) || !l1_off ||
			l1_off > QCOW2_MAX_HOST_OFFSET - (uint64_t)l1_size * 8)) {
		qcow2_err(o->errp, "qcow2: invalid L1 table offset %#llx", (unsigned long long)l1_off);
		return -EINVAL;
	}
	/* Refcount table. */
	if (!rt_clusters || (uint64_t)rt_clusters * s->cluster_size > QCOW2_MAX_REFTABLE_SIZE) {
		qcow2_err(o->errp, "qcow2: reference count table has an invalid size (%u clusters)",
			  rt_clusters);
		return -EINVAL;
	}
	if (!rt_off || qcow2_offset_into_cluster(s, rt_off) ||
	    rt_off > QCOW2_MAX_HOST_OFFSET - (uint64_t)rt_clusters * s->cluster_size) {
		qcow2_err(o->errp, "qcow2: invalid reference count table offset %#llx",
			  (unsigned long long)rt_off);
		return -EINVAL;
	}
	/* Snapshots. */
	if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		qcow2_err(o->errp, "qcow2: too many snapshots (%u)", s->nb_snapshots);
		return -EFBIG;
	}
	if (s->nb_snapshots && (!s->snapshots_offset ||
				qcow2_offset_into_cluster(s, s->snapshots_offset) ||
				s->snapshots_offset > QCOW2_MAX_HOST_OFFSET)) {
		qcow2_err(o->errp, "qcow2: invalid snapshot table offset %#llx",
			  (unsigned long long)s->snapshots_offset);
		return -EINVAL;
	}
	/* Backing file name. */
	if (backing_off) {
		/* backing_len first: cluster_size - backing_len must not wrap (a 512-byte cluster, a longer name). */
		if (backing_len > QCOW2_MAX_BACKING_NAME || !backing_len || backing_len > s->cluster_size ||
		    backing_off > s->cluster_size - backing_len || backing_off < s->header_length) {
			qcow2_err(o->errp, "qcow2: invalid backing file name (offset %#llx, length %u)",
				  (unsigned long long)backing_off, backing_len);
			return -EINVAL;
		}
		s->backing_file = g_strndup((const char *)h + backing_off, backing_len);
	}

	s->size = size;
	s->l1_size = l1_size;
	s->l1_table_offset = l1_off;
	s->refcount_table_offset = rt_off;
	s->refcount_table_clusters = rt_clusters;
	return 0;
}

/* Coroutine: read the snapshot table's L1 locations (for overlap checks), bounded. */
static int coroutine_fn GRAPH_RDLOCK load_snapshots(struct qcow2_open_ctx *o)
{
	struct qcow2_state *s = o->s;
	uint64_t pos = s->snapshots_offset, i;
	uint8_t e[40];
	int ret;

	if (!s->nb_snapshots)
		return 0;
	s->snapshot_l1 = g_new0(uint64_t, 2 * (uint64_t)s->nb_snapshots);
	for (i = 0; i < s->nb_snapshots; i++) {
		uint64_t l1_off;
		uint32_t l1_size, extra;
		uint16_t id_len, name_len;

		if (pos - s->snapshots_offset > QCOW2_MAX_SNAPSHOT_TABLE - sizeof(e)) {
			qcow2_err(o->errp, "qcow2: snapshot table too large");
			return -EFBIG;
		}
		ret = qcow2_co_read_file(s, pos, e, sizeof(e));
		if (ret < 0)
			return ret;
		l1_off = get_be64(e);
		l1_size = get_be32(e + 8);
		id_len = (e[12] << 8) | e[13];
		name_len = (e[14] << 8) | e[15];
		extra = get_be32(e + 36);
		if ((uint64_t)l1_size * 8 > QCOW2_MAX_L1_SIZE ||
		    (l1_size && (qcow2_offset_into_cluster(s, l1_off) ||
				 l1_off > QCOW2_MAX_HOST_OFFSET))) {
			qcow2_err(o->errp, "qcow2: snapshot %llu has an invalid L1 table",
				  (unsigned long long)i);
			return -EINVAL;
		}
		if (extra > 1024) {
			qcow2_err(o->errp, "qcow2: snapshot %llu: extra data too large",
				  (unsigned long long)i);
			return -EFBIG;
		}
		s->snapshot_l1[2 * i] = l1_off;
		s->snapshot_l1[2 * i + 1] = (uint64_t)l1_size * 8;
		pos += sizeof(e) + extra + id_len + name_len;
		pos = (pos + 7) & ~7ull;
	}
	s->snapshot_table_bytes = pos - s->snapshots_offset;
	if (s->snapshot_table_bytes > QCOW2_MAX_SNAPSHOT_TABLE) {
		qcow2_err(o->errp, "qcow2: snapshot table too large");
		return -EFBIG;
	}
	return 0;
}

/* Coroutine: clear the autoclear bits we do not maintain (bitmaps): we are about to write. */
static int coroutine_fn GRAPH_RDLOCK clear_autoclear(struct qcow2_state *s) TSA_REQUIRES(s->lock)
{
	uint8_t be[8];
	int ret;

	if (s->version < 3 || !s->autoclear_features)
		return 0;
	s->autoclear_features = 0;
	put_be64(be, 0);
	ret = qcow2_co_write_meta(s, QCOW2_HDR_AUTOCLEAR_OFF, be, 8, QCOW2_OL_HEADER);
	if (ret < 0)
		return ret;
	return sluice_bds_co_flush(s->bs->file);
}

/* Coroutine: the whole open sequence after the first bytes were checked. */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_open_body(void *opaque)
{
	struct qcow2_open_ctx *o = opaque;
	struct qcow2_state *s = o->s;
	uint8_t h[QCOW2_V3_HEADER_SIZE] = { 0 };
	unsigned int cache_max;
	uint64_t i;
	int ret;

	sluice_co_mutex_lock(&s->lock);
	ret = qcow2_co_read_file(s, 0, h, MIN(sizeof(h), o->file_len));
	if (ret < 0) {
		qcow2_err(o->errp, "Could not read qcow2 header: %s", strerror(-ret));
		goto out_unlock;
	}
	if (o->file_len < QCOW2_V2_HEADER_SIZE || get_be32(h) != QCOW2_MAGIC) {
		qcow2_err(o->errp, "Image is not in qcow2 format");
		ret = -EINVAL;
		goto out_unlock;
	}
	s->version = get_be32(h + 4);
	if (s->version != 2 && s->version != 3) {
		qcow2_err(o->errp, "Unsupported qcow2 version %u", s->version);
		ret = -ENOTSUP;
		goto out_unlock;
	}
	if (s->version == 3 && o->file_len < QCOW2_V3_HEADER_SIZE) {
		qcow2_err(o->errp, "qcow2 header truncated");
		ret = -EINVAL;
		goto out_unlock;
	}
	s->cluster_bits = get_be32(h + 20);
	if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		qcow2_err(o->errp, "Unsupported cluster size: 2^%u", s->cluster_bits);
		ret = -EINVAL;
		goto out_unlock;
	}
	s->cluster_size = 1ull << s->cluster_bits;
	s->l2_bits = s->cluster_bits - 3;
	s->csize_shift = 62 - (s->cluster_bits - 8);
	s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
	s->cluster_offset_mask = (1ull << s->csize_shift) - 1;

	o->cluster0 = malloc(s->cluster_size);
	if (!o->cluster0) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	ret = qcow2_co_read_file(s, 0, o->cluster0, s->cluster_size);
	if (ret < 0)
		goto out_unlock;
	ret = parse_header(s, o);
	if (ret < 0)
		goto out_unlock;
	s->refcount_bits = 1u << s->refcount_order;
	s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
	s->rb_bits = s->cluster_bits + 3 - s->refcount_order;

	ret = load_snapshots(o);
	if (ret < 0)
		goto out_unlock;

	/* L1 and refcount tables: sizes bounded above. */
	if (s->l1_size) {
		s->l1_table = calloc(s->l1_size, 8);
		if (!s->l1_table) {
			ret = -ENOMEM;
			goto out_unlock;
		}
		ret = qcow2_co_read_file(s, s->l1_table_offset, s->l1_table, (uint64_t)s->l1_size * 8);
		if (ret < 0)
			goto out_unlock;
		for (i = 0; i < s->l1_size; i++)
			s->l1_table[i] = be64toh(s->l1_table[i]);
	}
	s->refcount_table_entries = ((uint64_t)s->refcount_table_clusters << s->cluster_bits) / 8;
	s->refcount_table = calloc(s->refcount_table_entries, 8);
	if (!s->refcount_table) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	ret = qcow2_co_read_file(s, s->refcount_table_offset, s->refcount_table,
				 s->refcount_table_entries * 8);
	if (ret < 0)
		goto out_unlock;
	qcow2_reftable_from_disk(s, s->refcount_table, s->refcount_table_entries);

	/* Caches: enough L2 tables to cover the disk, within 32 MiB and a cheap lookup. */
	cache_max = MAX(4u, (unsigned int)((32u << 20) >> s->cluster_bits));
	ret = qcow2_cache_init(s, &s->l2_cache, MIN(MIN(MAX(s->l1_size, 4u), cache_max), 512u),
			       QCOW2_OL_ACTIVE_L2);
	if (ret < 0)
		goto out_unlock;
	ret = qcow2_cache_init(s, &s->rb_cache, MIN(16u, cache_max), QCOW2_OL_REFCOUNT_BLOCK);
	if (ret < 0)
		goto out_unlock;
	if (!s->read_only) {
		ret = clear_autoclear(s);
		if (ret < 0)
			qcow2_err(o->errp, "qcow2: could not update the header: %s", strerror(-ret));
	}
out_unlock:
	sluice_co_mutex_unlock(&s->lock);
	return ret;
}

/*
 * The chain being opened on the main thread, to refuse loops: the files
 * (device, inode) from the top image down to the one being opened.
 */
static struct {
	dev_t dev;
	ino_t ino;
} open_chain[QCOW2_MAX_BACKING_DEPTH + 1];
static unsigned int open_depth;

/* Main thread: the backing file's path, relative to the image's directory like QEMU. */
static char *backing_path(const char *image, const char *backing)
{
	const char *slash;

	if (backing[0] == '/' || !(slash = strrchr(image, '/')))
		return g_strdup(backing);
	return g_strdup_printf("%.*s%s", (int)(slash - image + 1), image, backing);
}

/* Main thread: open the backing chain of @s (read-only). */
static int open_backing(struct qcow2_state *s, int flags, char **errp)
{
	struct sluice_bds *bs = s->bs;
	char *path, *err = NULL;
	struct stat st;
	unsigned int i;
	int ret = 0;

	if (!s->backing_file)
		return 0;
	if (open_depth >= QCOW2_MAX_BACKING_DEPTH) {
		qcow2_err(errp, "Backing chain of '%s' is too deep (more than %u files)",
			  bs->filename, QCOW2_MAX_BACKING_DEPTH);
		return -ELOOP;
	}
	path = backing_path(bs->filename, s->backing_file);
	if (stat(path, &st) < 0) {
		ret = -errno;
		qcow2_err(errp, "Could not open backing file '%s' of '%s': %s", path, bs->filename,
			  strerror(errno));
		goto out_free;
	}
	for (i = 0; i < open_depth; i++) {
		if (open_chain[i].dev == st.st_dev && open_chain[i].ino == st.st_ino) {
			qcow2_err(errp, "Backing file loop: '%s' (backing file of '%s') is already in the chain",
				  path, bs->filename);
			ret = -ELOOP;
			goto out_free;
		}
	}
	open_chain[open_depth].dev = st.st_dev;
	open_chain[open_depth].ino = st.st_ino;
	open_depth++;
	s->backing = sluice_bds_open(path, s->backing_format,
				     flags & (SLUICE_BDRV_O_NOCACHE | SLUICE_BDRV_O_THREADS), &err);
	open_depth--;
	if (!s->backing) {
		qcow2_err(errp, "Could not open backing file '%s' of '%s': %s", path, bs->filename,
			  err ? err : "unknown error");
		g_free(err);
		ret = -EINVAL;
		goto out_free;
	}
	bs->backing = s->backing;
out_free:
	g_free(path);
	return ret;
}

/* Main thread: free everything open allocated (caches must be clean or abandoned). */
static void qcow2_free_state(struct qcow2_state *s) TSA_NO_TSA
{
	qcow2_cache_destroy(&s->l2_cache);
	qcow2_cache_destroy(&s->rb_cache);
	free(s->l1_table);
	free(s->refcount_table);
	g_free(s->snapshot_l1);
	g_free(s->backing_file);
	g_free(s->backing_format);
	s->l1_table = NULL;
	s->refcount_table = NULL;
	s->snapshot_l1 = NULL;
	s->backing_file = s->backing_format = NULL;
	if (s->backing) {
		sluice_bds_unref(s->backing);
		s->backing = NULL;
		s->bs->backing = NULL;
	}
}

/* Main thread: bs->file is open. */
static int qcow2_open(struct sluice_bds *bs, const char *filename, int flags, char **errp)
{
	struct qcow2_state *s = bs->opaque;
	struct qcow2_open_ctx o = { .s = s, .flags = flags, .errp = errp };
	struct stat st;
	bool pushed = false;
	int64_t len;
	int ret;

	if (!bs->file)
		return -EINVAL;
	s->bs = bs;
	s->read_only = !(flags & SLUICE_BDRV_O_RDWR);
	sluice_co_mutex_init(&s->lock);
	len = sluice_bds_getlength(bs->file);
	if (len < 0) {
		qcow2_err(errp, "Could not get the length of '%s': %s", filename, strerror((int)-len));
		return len;
	}
	s->data_end = (uint64_t)len;
	o.file_len = len;
	ret = qcow2_run_sync(qcow2_co_open_body, &o);
	free(o.cluster0);
	if (ret < 0) {
		qcow2_err(errp, "Could not open '%s' as qcow2: %s", filename, strerror(-ret));
		goto err_free_state;
	}
	/* This image is in the chain while its backing files open. */
	if (open_depth < QCOW2_MAX_BACKING_DEPTH && stat(filename, &st) == 0) {
		open_chain[open_depth].dev = st.st_dev;
		open_chain[open_depth].ino = st.st_ino;
		open_depth++;
		pushed = true;
	}
	ret = open_backing(s, flags, errp);
	if (pushed)
		open_depth--;
	if (ret < 0)
		goto err_free_state;
	bs->request_alignment = 1;
	bs->max_transfer = 0;
	return 0;

err_free_state:
	qcow2_free_state(s);
	return ret;
}

/* Coroutine: write back dirty metadata and sync. */
static int coroutine_fn GRAPH_RDLOCK qcow2_co_close_body(void *opaque)
{
	struct sluice_bds *bs = opaque;
	struct qcow2_state *s = bs->opaque;
	int ret = qcow2_co_flush(bs);

	/* The file was grown ahead of the allocations (qcow2_co_grow_file): give the unused tail back. */
	if (ret >= 0 && !s->corrupt &&
	    (uint64_t)__atomic_load_n(&bs->file->total_bytes, __ATOMIC_RELAXED) > s->data_end)
		ret = sluice_bds_co_truncate(bs->file, s->data_end);
	if (ret < 0)
		fprintf(stderr, "qcow2: %s: could not write metadata on close: %s\n", bs->filename,
			strerror(-ret));
	return ret;
}

/* Main thread, drained. */
static void qcow2_close(struct sluice_bds *bs)
{
	struct qcow2_state *s = bs->opaque;

	if (!s->read_only)
		qcow2_run_sync(qcow2_co_close_body, bs);
	qcow2_free_state(s);
}

/* ---- create ---- */

struct qcow2_create_opts {
	unsigned int version;
	uint64_t cluster_size;
	unsigned int refcount_bits;
	bool lazy_refcounts;
	unsigned int compression_type;
	char *backing_file;
	char *backing_fmt;
};

/* Pure: @s is a power of two. */
static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Main thread: "key=value,..." into @opts. */
static int parse_create_opts(const char *options, struct qcow2_create_opts *opts, char **errp)
{
	char **kv, **p;
	int ret = 0;

	opts->version = 3;
	opts->cluster_size = 65536;
	opts->refcount_bits = 16;
	opts->compression_type = QCOW2_COMPRESSION_ZLIB;
	if (!options || !*options)
		return 0;
	kv = g_strsplit(options, ",", -1);
	for (p = kv; *p && ret == 0; p++) {
		char *eq = strchr(*p, '='), *end;
		const char *val = eq ? eq + 1 : "";
		unsigned long long n;

		if (!**p)
			continue;
		if (eq)
			*eq = '\0';
		if (!strcmp(*p, "compat")) {
			if (!strcmp(val, "0.10") || !strcmp(val, "v2"))
				opts->version = 2;
			else if (!strcmp(val, "1.1") || !strcmp(val, "v3"))
				opts->version = 3;
			else
				ret = -EINVAL;
		} else if (!strcmp(*p, "cluster_size") || !strcmp(*p, "refcount_bits")) {
			n = strtoull(val, &end, 0);
			if (end == val)
				ret = -EINVAL;
			else if (*end == 'k' || *end == 'K')
				n <<= 10, end++;
			else if (*end == 'M' || *end == 'm')
				n <<= 20, end++;
			if (*end)
				ret = -EINVAL;
			if (!strcmp(*p, "cluster_size"))
				opts->cluster_size = n;
			else
				opts->refcount_bits = n > 64 ? 0 : n;
		} else if (!strcmp(*p, "lazy_refcounts")) {
			opts->lazy_refcounts = !strcmp(val, "on") || !strcmp(val, "true");
			if (!opts->lazy_refcounts && strcmp(val, "off") && strcmp(val, "false"))
				ret = -EINVAL;
		} else if (!strcmp(*p, "compression_type")) {
			if (!strcmp(val, "zlib"))
				opts->compression_type = QCOW2_COMPRESSION_ZLIB;
			else if (!strcmp(val, "zstd"))
				opts->compression_type = QCOW2_COMPRESSION_ZSTD;
			else
				ret = -EINVAL;
		} else if (!strcmp(*p, "backing_file")) {
			g_free(opts->backing_file);
			opts->backing_file = g_strdup(val);
		} else if (!strcmp(*p, "backing_fmt")) {
			g_free(opts->backing_fmt);
			opts->backing_fmt = g_strdup(val);
		} else {
			qcow2_err(errp, "Invalid option '%s' for qcow2", *p);
			ret = -EINVAL;
		}
		if (ret < 0)
			qcow2_err(errp, "Invalid value '%s' for qcow2 option '%s'", val, *p);
	}
	g_strfreev(kv);
	if (ret < 0)
		return ret;
	if (!is_pow2(opts->cluster_size) || opts->cluster_size < 512 || opts->cluster_size > (2u << 20)) {
		qcow2_err(errp, "Cluster size must be a power of two between 512 and 2M");
		return -EINVAL;
	}
	if (!is_pow2(opts->refcount_bits)) {
		qcow2_err(errp, "Refcount width must be a power of two and may not exceed 64 bits");
		return -EINVAL;
	}
	if (opts->version == 2 && (opts->refcount_bits != 16 || opts->lazy_refcounts ||
				   opts->compression_type != QCOW2_COMPRESSION_ZLIB)) {
		qcow2_err(errp, "compat=0.10 requires refcount_bits=16, no lazy refcounts and zlib compression");
		return -EINVAL;
	}
	if (opts->backing_fmt && !opts->backing_file) {
		qcow2_err(errp, "Backing format given without a backing file");
		return -EINVAL;
	}
	return 0;
}

/* What create writes, for the coroutine that writes it. */
struct qcow2_create_ctx {
	struct sluice_bds *file;
	struct qcow2_create_opts *opts;
	struct sluice_bds *image;	/* step 2: the opened image to grow */
	uint64_t size;
	bool with_backing;		/* step 3: add the backing file to the header */
};

/* Coroutine: the minimal image: header, refcount table at cluster 1, refcount block at cluster 2. */
static int coroutine_fn GRAPH_RDLOCK create_write_base(void *opaque)
{
	struct qcow2_create_ctx *c = opaque;
	struct qcow2_create_opts *o = c->opts;
	uint64_t cs = o->cluster_size;
	unsigned int cbits = __builtin_ctzll(cs), order = __builtin_ctz(o->refcount_bits);
	struct qcow2_state tmp = { .refcount_bits = o->refcount_bits };
	struct iovec iov;
	uint8_t *buf;
	int ret, i;

	buf = calloc(3, cs);
	if (!buf)
		return -ENOMEM;
	put_be32(buf, QCOW2_MAGIC);
	put_be32(buf + 4, o->version);
	put_be32(buf + 20, cbits);
	put_be64(buf + 48, cs);		/* refcount table */
	put_be32(buf + 56, 1);
	if (o->version >= 3) {
		uint64_t incompat = 0;

		if (o->compression_type != QCOW2_COMPRESSION_ZLIB)
			incompat |= QCOW2_INCOMPAT_COMPRESSION;
		put_be64(buf + 72, incompat);
		put_be64(buf + 80, o->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
		put_be32(buf + 96, order);
		put_be32(buf + 100, QCOW2_HEADER_SIZE_COMPRESSION);
		buf[104] = o->compression_type;
		/* Extensions start at 112: just the end marker (zeros). */
	}
	put_be64(buf + cs, 2 * cs);	/* refcount table entry 0 -> block at cluster 2 */
	for (i = 0; i < 3; i++)
		qcow2_rb_set(&tmp, buf + 2 * cs, i, 1);
	iov = (struct iovec){ buf, 3 * cs };
	ret = sluice_bds_co_pwritev(c->file, 0, 3 * cs, &iov, 1, 0);
	if (ret >= 0)
		ret = sluice_bds_co_flush(c->file);
	free(buf);
	return ret;
}

/* Coroutine: grow the new image to its size (allocates the L1 table through the normal path). */
static int coroutine_fn GRAPH_RDLOCK create_grow(void *opaque)
{
	struct qcow2_create_ctx *c = opaque;
	int ret = sluice_bds_co_truncate(c->image, c->size);

	if (ret >= 0)
		ret = sluice_bds_co_flush(c->image);
	return ret;
}

/*
 * Coroutine: add the backing file to the header (after growing, so that the
 * new image's area is not zeroed over it): the extension area is rewritten
 * (it held only the end marker), then backing_file_offset/size.
 */
static int coroutine_fn GRAPH_RDLOCK create_set_backing(void *opaque)
{
	struct qcow2_create_ctx *c = opaque;
	struct qcow2_create_opts *o = c->opts;
	uint64_t start = o->version >= 3 ? QCOW2_HEADER_SIZE_COMPRESSION : QCOW2_V2_HEADER_SIZE;
	size_t nlen = strlen(o->backing_file), flen = o->backing_fmt ? strlen(o->backing_fmt) : 0;
	uint64_t area = 8 + ((flen + 7) & ~7ull) + 8 + nlen;
	uint8_t *buf, hdr[12];
	struct iovec iov;
	uint64_t pos = 0;
	int ret;

	if (nlen > QCOW2_MAX_BACKING_NAME || flen > QCOW2_MAX_BACKING_NAME ||
	    start + area > o->cluster_size)
		return -ENAMETOOLONG;
	buf = calloc(1, area);
	if (!buf)
		return -ENOMEM;
	if (o->backing_fmt) {
		put_be32(buf, QCOW2_EXT_BACKING_FORMAT);
		put_be32(buf + 4, flen);
		memcpy(buf + 8, o->backing_fmt, flen);
		pos = 8 + ((flen + 7) & ~7ull);
	}
	pos += 8;	/* end marker */
	memcpy(buf + pos, o->backing_file, nlen);
	iov = (struct iovec){ buf, pos + nlen };
	ret = sluice_bds_co_pwritev(c->file, start, pos + nlen, &iov, 1, 0);
	free(buf);
	if (ret < 0)
		return ret;
	ret = sluice_bds_co_flush(c->file);
	if (ret < 0)
		return ret;
	put_be64(hdr, start + pos);
	put_be32(hdr + 8, nlen);
	iov = (struct iovec){ hdr, sizeof(hdr) };
	ret = sluice_bds_co_pwritev(c->file, 8, sizeof(hdr), &iov, 1, 0);
	if (ret >= 0)
		ret = sluice_bds_co_flush(c->file);
	return ret;
}

/* Main thread: the size of the backing file (for create without a size). */
static int64_t backing_size(const char *image, struct qcow2_create_opts *o, char **errp)
{
	char *path = backing_path(image, o->backing_file), *err = NULL;
	struct sluice_bds *b = sluice_bds_open(path, o->backing_fmt, 0, &err);
	int64_t len;

	if (!b) {
		qcow2_err(errp, "Could not open backing file '%s': %s", path, err ? err : "error");
		g_free(err);
		g_free(path);
		return -EINVAL;
	}
	len = sluice_bds_getlength(b);
	sluice_bds_unref(b);
	g_free(path);
	return len;
}

/* Main thread: create a qcow2 image at @filename (options: see Documentation/qcow2.rst). */
static int qcow2_create(const char *filename, uint64_t size, const char *options, char **errp)
{
	struct qcow2_create_opts o = { 0 };
	struct qcow2_create_ctx c = { .opts = &o };
	int ret;

	ret = parse_create_opts(options, &o, errp);
	if (ret < 0)
		goto out_free_opts;
	if (!size && o.backing_file) {
		int64_t len = backing_size(filename, &o, errp);

		if (len < 0) {
			ret = len;
			goto out_free_opts;
		}
		size = len;
	}
	/* QEMU sees a qcow2 image's size in whole 512-byte sectors: round up, as qemu-img does. */
	if (size > (uint64_t)INT64_MAX - 511) {
		qcow2_err(errp, "Image size %llu is too large", (unsigned long long)size);
		ret = -EFBIG;
		goto out_free_opts;
	}
	size = (size + 511) & ~511ull;
	ret = sluice_bdrv_file.create(filename, 3 * o.cluster_size, NULL, errp);
	if (ret < 0)
		goto out_free_opts;
	c.file = sluice_bds_open(filename, "file", SLUICE_BDRV_O_RDWR, errp);
	if (!c.file) {
		ret = -EIO;
		goto out_free_opts;
	}
	ret = qcow2_run_sync(create_write_base, &c);
	sluice_bds_unref(c.file);
	c.file = NULL;
	if (ret < 0) {
		qcow2_err(errp, "Could not write the qcow2 header of '%s': %s", filename, strerror(-ret));
		goto out_free_opts;
	}
	c.image = sluice_bds_open(filename, "qcow2", SLUICE_BDRV_O_RDWR, errp);
	if (!c.image) {
		ret = -EIO;
		goto out_free_opts;
	}
	c.size = size;
	ret = qcow2_run_sync(create_grow, &c);
	sluice_bds_unref(c.image);
	if (ret < 0) {
		qcow2_err(errp, "Could not resize the new image '%s': %s", filename, strerror(-ret));
		goto out_free_opts;
	}
	if (o.backing_file) {
		c.file = sluice_bds_open(filename, "file", SLUICE_BDRV_O_RDWR, errp);
		if (!c.file) {
			ret = -EIO;
			goto out_free_opts;
		}
		ret = qcow2_run_sync(create_set_backing, &c);
		sluice_bds_unref(c.file);
		if (ret < 0)
			qcow2_err(errp, "Could not write the backing file name into '%s': %s", filename,
				  strerror(-ret));
	}
out_free_opts:
	g_free(o.backing_file);
	g_free(o.backing_fmt);
	return ret;
}

const struct sluice_block_driver sluice_bdrv_qcow2 = {
	.format_name		= "qcow2",
	.instance_size		= sizeof(struct qcow2_state),
	.is_protocol		= false,
	.open			= qcow2_open,
	.close			= qcow2_close,
	.create			= qcow2_create,
	.co_preadv		= qcow2_co_preadv,
	.co_pwritev		= qcow2_co_pwritev,
	.co_flush		= qcow2_co_flush,
	.co_pdiscard		= qcow2_co_pdiscard,
	.co_pwrite_zeroes	= qcow2_co_pwrite_zeroes,
	.co_truncate		= qcow2_co_truncate,
	.co_block_status	= qcow2_co_block_status,
	.getlength		= qcow2_getlength,
	.get_allocated_size	= qcow2_get_allocated_size,
};

/* Any thread: is @bs a qcow2 node, and its cluster size (log2) if so (else 0). */
unsigned int qcow2_cluster_bits(struct sluice_bds *bs)
{
	return bs && bs->drv == &sluice_bdrv_qcow2 ? ((struct qcow2_state *)bs->opaque)->cluster_bits : 0;
}

/*
 * Coroutine in @bs's ctx (takes the image lock).  For the kernel dataplane:
 * the runs of NORMAL clusters in guest [offset, offset + bytes) (whole
 * clusters), each with its host offset and whether it may be written in
 * place (COPIED: refcount 1).  Up to @max runs; returns how many, or -errno.
 */
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_extents(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				      struct qcow2_extent *out, unsigned int max)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t mask = s->cluster_size - 1, end;
	unsigned int n = 0;
	int ret = 0;

	end = MIN((offset + bytes + mask) & ~mask, bs->total_bytes & ~mask);
	offset &= ~mask;
	sluice_co_mutex_lock(&s->lock);
	while (offset < end && n < max) {
		struct qcow2_map m;

		ret = qcow2_co_get_mapping(s, offset, end - offset, &m);
		if (ret < 0)
			break;
		m.bytes &= ~mask;	/* whole clusters only */
		if (!m.bytes)
			break;
		if (m.type == QCOW2_CLUSTER_NORMAL) {
			/* Writes over metadata (a corrupt L2 entry) take the userspace path, which refuses them. */
			bool writable = m.copied && m.host + m.bytes <= s->data_end &&
					!qcow2_co_check_overlap(s, 0, m.host, m.bytes);

			out[n++] = (struct qcow2_extent){ .offset = offset, .bytes = m.bytes, .host = m.host,
							  .writable = writable };
		}
		offset += m.bytes;
	}
	sluice_co_mutex_unlock(&s->lock);
	return ret < 0 ? ret : (int)n;
}
