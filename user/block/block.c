// SPDX-License-Identifier: GPL-2.0
/* block.c - block graph nodes: open/ref/unref, driver registry, request wrappers (bounds, alignment, in-flight), drain. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "aio.h"
#include "block-int.h"
#include "block.h"
#include "coroutine.h"

/* Drivers known by name. */
static const struct sluice_block_driver *const block_drivers[] = {
	&sluice_bdrv_raw,
	&sluice_bdrv_file,
	&sluice_bdrv_qcow2,
};

/* Zero-fill chunk for the write-zeroes fallback. */
#define ZERO_CHUNK	(1u << 20)

/*
 * Drain waiters, as QEMU's AioWait.  Every drained_begin() that waits is on
 * drain_waiters, under drain_lock, for as long as it waits; one that polls
 * a ctx brings a BH of that ctx for wakers to schedule, one that polls
 * nothing sleeps on drain_cond.  A decrement that a drain may wait for
 * (sluice_block_drain_kick()) wakes every waiter from this list alone: it
 * must not look at the node or the backend it decremented, which the
 * drainer may free as soon as it sees the count at 0.
 *
 * drain_num_waiters is how many are on the list: wakers read it without the
 * lock, so that requests pay nothing while nobody drains.
 */
struct drain_waiter {
	struct sluice_bh *kick;		/* in the ctx the waiter polls; NULL: sleeps on drain_cond */
	struct drain_waiter *next;
};

static pthread_mutex_t drain_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t drain_cond = PTHREAD_COND_INITIALIZER;
static struct drain_waiter *drain_waiters;	/* under drain_lock */
static unsigned int drain_num_waiters;		/* atomic, seq_cst; written under drain_lock */

static struct sluice_aio_ctx *main_ctx;
static unsigned int node_counter;

/* Main thread. */
struct sluice_aio_ctx *sluice_block_main_ctx(void)
{
	struct sluice_aio_ctx *ctx;

	if (main_ctx)
		return main_ctx;
	ctx = sluice_aio_current();
	if (!ctx) {
		ctx = sluice_aio_ctx_new("main", 0);
		if (!ctx)
			return NULL;
		sluice_aio_ctx_set_current(ctx);
	}
	/* Read by sluice_bds_drained_begin() on any thread. */
	__atomic_store_n(&main_ctx, ctx, __ATOMIC_RELEASE);
	return ctx;
}

/* ---- iovec helpers (pure) ---- */

/* Any thread: total bytes of @iov. */
size_t sluice_iov_size(const struct iovec *iov, int niov)
{
	size_t n = 0;
	int i;

	for (i = 0; i < niov; i++)
		n += iov[i].iov_len;
	return n;
}

/* Any thread: copy @n bytes of @iov from @skip on into @buf; returns bytes copied. */
size_t sluice_iov_to_buf(const struct iovec *iov, int niov, size_t skip, void *buf, size_t n)
{
	size_t done = 0;
	int i;

	for (i = 0; i < niov && done < n; i++) {
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		len = MIN(len - skip, n - done);
		memcpy((char *)buf + done, (char *)iov[i].iov_base + skip, len);
		done += len;
		skip = 0;
	}
	return done;
}

/* Any thread: copy @n bytes of @buf into @iov from @skip on; returns bytes copied. */
size_t sluice_iov_from_buf(const struct iovec *iov, int niov, size_t skip, const void *buf, size_t n)
{
	size_t done = 0;
	int i;

	for (i = 0; i < niov && done < n; i++) {
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		len = MIN(len - skip, n - done);
		memcpy((char *)iov[i].iov_base + skip, (const char *)buf + done, len);
		done += len;
		skip = 0;
	}
	return done;
}

/* Any thread: fill @n bytes of @iov from @skip on with @c; returns bytes filled. */
size_t sluice_iov_memset(const struct iovec *iov, int niov, size_t skip, int c, size_t n)
{
	size_t done = 0;
	int i;

	for (i = 0; i < niov && done < n; i++) {
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		len = MIN(len - skip, n - done);
		memset((char *)iov[i].iov_base + skip, c, len);
		done += len;
		skip = 0;
	}
	return done;
}

/* Any thread: see block-int.h. */
int sluice_iov_slice(struct iovec *dst, int dst_max, const struct iovec *iov, int niov,
		     size_t skip, size_t n)
{
	int i, out = 0;

	for (i = 0; i < niov && n; i++) {
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		if (out == dst_max)
			return -EINVAL;
		len = MIN(len - skip, n);
		dst[out].iov_base = (char *)iov[i].iov_base + skip;
		dst[out].iov_len = len;
		out++;
		n -= len;
		skip = 0;
	}
	return n ? -EINVAL : out;
}

/* ---- registry, open, close ---- */

/* Any thread. */
const struct sluice_block_driver *sluice_bdrv_find_format(const char *name)
{
	size_t i;

	if (!name)
		return NULL;
	for (i = 0; i < G_N_ELEMENTS(block_drivers); i++)
		if (!strcmp(block_drivers[i]->format_name, name))
			return block_drivers[i];
	return NULL;
}

/* Main thread: an empty node for @drv (not yet opened). */
static struct sluice_bds *bds_new(const struct sluice_block_driver *drv, const char *filename,
				  int flags)
{
	struct sluice_bds *bs = g_new0(struct sluice_bds, 1);

	bs->drv = drv;
	bs->opaque = drv->instance_size ? g_malloc0(drv->instance_size) : NULL;
	bs->filename = g_strdup(filename);
	snprintf(bs->node_name, sizeof(bs->node_name), "#block%u", node_counter++);
	bs->open_flags = flags;
	bs->refcnt = 1;
	bs->ctx = sluice_aio_current();
	if (!bs->ctx)
		bs->ctx = sluice_block_main_ctx();
	bs->request_alignment = 1;
	bs->read_only = !(flags & SLUICE_BDRV_O_RDWR);
	sluice_co_rwlock_init(&bs->rmw_lock);
	return bs;
}

/* Main thread: free a node whose driver is closed (or never opened). */
static void bds_free(struct sluice_bds *bs)
{
	g_free(bs->opaque);
	g_free(bs->filename);
	g_free(bs);
}

/*
 * Main thread.  Probe the format of @filename: qcow2 by its magic
 * ("QFI\xfb"), everything else is raw.
 */
static const struct sluice_block_driver *bds_probe(const char *filename)
{
	unsigned char magic[4];
	int fd = open(filename, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return &sluice_bdrv_raw;	/* the open of the file node reports the error */
	n = pread(fd, magic, sizeof(magic), 0);
	close(fd);
	if (n == sizeof(magic) && !memcmp(magic, "QFI\xfb", 4))
		return &sluice_bdrv_qcow2;
	return &sluice_bdrv_raw;
}

/* Main thread. */
struct sluice_bds *sluice_bds_open(const char *filename, const char *fmt, int flags, char **errp)
{
	const struct sluice_block_driver *drv;
	struct sluice_bds *bs, *file = NULL;
	int64_t len;
	int ret;

	if (!filename || !*filename) {
		if (errp)
			*errp = g_strdup("A filename is required");
		return NULL;
	}
	drv = fmt ? sluice_bdrv_find_format(fmt) : bds_probe(filename);
	if (!drv) {
		if (errp)
			*errp = g_strdup_printf("Unknown driver '%s'", fmt);
		return NULL;
	}
	if (!drv->is_protocol) {
		file = sluice_bds_open(filename, "file", flags, errp);
		if (!file)
			return NULL;
	}
	bs = bds_new(drv, filename, flags);
	bs->file = file;
	ret = drv->open(bs, filename, flags, errp);
	if (ret < 0)
		goto err_free_node;
	len = drv->getlength ? drv->getlength(bs) : 0;
	if (len < 0) {
		if (errp)
			*errp = g_strdup_printf("Could not get the length of '%s': %s", filename,
						strerror((int)-len));
		goto err_close;
	}
	bs->total_bytes = len;
	if (!bs->request_alignment)
		bs->request_alignment = 1;
	return bs;

err_close:
	if (drv->close)
		drv->close(bs);
err_free_node:
	bds_free(bs);
	if (file)
		sluice_bds_unref(file);
	return NULL;
}

/* Main thread. */
void sluice_bds_ref(struct sluice_bds *bs)
{
	bs->refcnt++;
}

/*
 * Main thread: drops a reference; the last one drains, closes and frees the
 * node, and drops its reference to the child (which lives on if someone
 * else holds one).
 */
void sluice_bds_unref(struct sluice_bds *bs)
{
	struct sluice_bds *file;

	if (!bs)
		return;
	if (--bs->refcnt)
		return;
	sluice_bds_drained_begin(bs);
	if (bs->drv->close)
		bs->drv->close(bs);
	/* Detach the child: no request may be walking the edge. */
	sluice_graph_wrlock();
	file = bs->file;
	bs->file = NULL;
	sluice_graph_wrunlock();
	/*
	 * drained_begin() quiesced @bs and the chain below it, but @bs no longer
	 * leads there: end the section on @bs alone, then on the detached child
	 * (and its chain), so that a child another user still holds is not left
	 * quiesced (its backend's requests would park for ever).
	 */
	sluice_bds_drained_end(bs);
	if (file)
		sluice_bds_drained_end(file);
	bds_free(bs);
	sluice_bds_unref(file);
}

/* Main thread, drained, graph writer: the node, its file child and its backing chain move together. */
void sluice_bds_set_aio_context(struct sluice_bds *bs, struct sluice_aio_ctx *ctx)
{
	for (; bs; bs = bs->file) {
		__atomic_store_n(&bs->ctx, ctx, __ATOMIC_SEQ_CST);
		if (bs->backing)
			sluice_bds_set_aio_context(bs->backing, ctx);
	}
}

/* Main thread. */
int sluice_bdrv_create(const char *fmt, const char *filename, uint64_t size, const char *options,
		       char **errp)
{
	const struct sluice_block_driver *drv = sluice_bdrv_find_format(fmt ? fmt : "raw");

	if (!drv) {
		if (errp)
			*errp = g_strdup_printf("Unknown driver '%s'", fmt);
		return -EINVAL;
	}
	if (!drv->create) {
		if (errp)
			*errp = g_strdup_printf("Driver '%s' does not support image creation",
						drv->format_name);
		return -ENOTSUP;
	}
	if (size > INT64_MAX) {
		if (errp)
			*errp = g_strdup("Image size too large");
		return -EINVAL;
	}
	return drv->create(filename, size, options, errp);
}

/* ---- in-flight accounting and drain ---- */

/* Any thread. */
void sluice_bds_inc_in_flight(struct sluice_bds *bs)
{
	__atomic_add_fetch(&bs->in_flight, 1, __ATOMIC_SEQ_CST);
}

/* Home thread of a drainer's ctx (BH): nothing; its running ends the drainer's poll iteration. */
static void drain_kick_bh(void *opaque)
{
}

/*
 * Any thread, right after a decrement that a drain may wait for (a node's
 * in_flight or a backend's active count reached 0); takes drain_lock, and
 * under it each waiter's ctx's bh_lock, but only while someone drains.
 *
 * Wakes every drain waiter: those that poll a ctx through their kick BH (a
 * BH, unlike a bare notify, is work that a poll cannot miss between its
 * busy check and its sleep), the others through drain_cond.  The ctx of a
 * kick BH cannot be freed meanwhile: a ctx is freed only by its home thread,
 * and that thread is the waiter, which leaves the list under drain_lock
 * before it deletes its BH or returns to anything that could free the ctx.
 * Touches neither node nor backend, so the caller may not have one left.
 */
void sluice_block_drain_kick(void)
{
	struct drain_waiter *w;

	/*
	 * Pairs with the increment in drain_waiter_add(): our caller's
	 * decrement then this load, against the waiter's increment then its
	 * busy check, all seq_cst: either the waiter sees the count at 0, or
	 * we see the waiter (and it is on the list when we take the lock).
	 */
	if (!__atomic_load_n(&drain_num_waiters, __ATOMIC_SEQ_CST))
		return;
	pthread_mutex_lock(&drain_lock);
	for (w = drain_waiters; w; w = w->next)
		if (w->kick)
			sluice_bh_schedule(w->kick);
	pthread_cond_broadcast(&drain_cond);
	pthread_mutex_unlock(&drain_lock);
}

/* Any thread: the last request of a node wakes whoever drains it. */
void sluice_bds_dec_in_flight(struct sluice_bds *bs)
{
	/* @bs may be freed once the count is 0: do not look at it again. */
	if (!__atomic_sub_fetch(&bs->in_flight, 1, __ATOMIC_SEQ_CST))
		sluice_block_drain_kick();
}

/*
 * The thread that drains, before its first busy check; takes drain_lock.
 * @ctx: the ctx it polls while it waits (its own), or NULL if it sleeps on
 * drain_cond.
 */
static void drain_waiter_add(struct drain_waiter *w, struct sluice_aio_ctx *ctx)
{
	w->kick = NULL;
	if (ctx) {
		w->kick = sluice_bh_new(ctx, drain_kick_bh, NULL);
		if (!w->kick)
			abort();
	}
	pthread_mutex_lock(&drain_lock);
	w->next = drain_waiters;
	drain_waiters = w;
	/* Pairs with the load in sluice_block_drain_kick(). */
	__atomic_add_fetch(&drain_num_waiters, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&drain_lock);
}

/* The thread that drained, done waiting; takes drain_lock. */
static void drain_waiter_del(struct drain_waiter *w)
{
	struct drain_waiter **pp;

	pthread_mutex_lock(&drain_lock);
	for (pp = &drain_waiters; *pp != w; pp = &(*pp)->next)
		;
	*pp = w->next;
	__atomic_sub_fetch(&drain_num_waiters, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&drain_lock);
	/* No waker sees @w now; a kick still queued is freed by its ctx's loop. */
	if (w->kick)
		sluice_bh_delete(w->kick);
}

/*
 * Any thread: requests in flight in @bs or below, or on their way in
 * through a backend (those will park, or finish if they got in first).
 */
static bool bds_busy(struct sluice_bds *bs)
{
	for (; bs; bs = bs->file) {
		if (__atomic_load_n(&bs->in_flight, __ATOMIC_SEQ_CST))
			return true;
		if (bs->blk && sluice_blk_active(bs->blk))
			return true;
	}
	return false;
}

/* Main thread or @bs's home thread, not a coroutine. */
void sluice_bds_drained_begin(struct sluice_bds *bs)
{
	struct sluice_aio_ctx *ctx = __atomic_load_n(&bs->ctx, __ATOMIC_SEQ_CST), *cur;
	struct sluice_bds *c;

	struct drain_waiter w;

	for (c = bs; c; c = c->file)
		__atomic_add_fetch(&c->quiesce_counter, 1, __ATOMIC_SEQ_CST);

	/*
	 * The node's home thread, or the main thread (whose own ctx may run
	 * requests of a multiqueue backend): poll until idle.  Else a thread
	 * that runs no requests: sleep until the last one leaves.  Either way
	 * be a drain waiter before the first busy check.
	 */
	cur = sluice_aio_current();
	if (!cur || (cur != ctx && cur != __atomic_load_n(&main_ctx, __ATOMIC_ACQUIRE)))
		cur = NULL;
	drain_waiter_add(&w, cur);
	if (cur) {
		SLUICE_AIO_WAIT_WHILE(cur, bds_busy(bs));
	} else {
		pthread_mutex_lock(&drain_lock);
		while (bds_busy(bs))
			pthread_cond_wait(&drain_cond, &drain_lock);
		pthread_mutex_unlock(&drain_lock);
	}
	drain_waiter_del(&w);
}

/* Main thread or @bs's home thread, not a coroutine. */
void sluice_bds_drained_end(struct sluice_bds *bs)
{
	struct sluice_bds *c;
	unsigned int root_left = 0;

	for (c = bs; c; c = c->file) {
		unsigned int left = __atomic_sub_fetch(&c->quiesce_counter, 1, __ATOMIC_SEQ_CST);

		if (c == bs)
			root_left = left;
	}
	if (!root_left && bs->blk)
		sluice_blk_root_drained_end(bs->blk);
}

/* ---- request wrappers ---- */

/* Any thread: is [offset, offset + bytes) inside the node? */
static int bds_check_request(struct sluice_bds *bs, uint64_t offset, uint64_t bytes)
{
	if (!bs || !bs->drv)
		return -ENOMEDIUM;
	if (offset > INT64_MAX || bytes > INT64_MAX - offset)
		return -EINVAL;
	if (offset + bytes > (uint64_t)__atomic_load_n(&bs->total_bytes, __ATOMIC_RELAXED))
		return -EINVAL;
	return 0;
}

/* Any thread: are offset, length and every buffer of the request aligned for @bs? */
static bool bds_request_aligned(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				const struct iovec *iov, int niov)
{
	uint64_t mask = bs->request_alignment - 1;
	int i;

	if (!mask)
		return true;
	if ((offset | bytes) & mask)
		return false;
	for (i = 0; i < niov; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & mask)
			return false;
	return true;
}

/* Any thread: drivers return 0 / bytes, the block layer answers 0. */
static int bds_ret(int ret)
{
	return ret > 0 ? 0 : ret;
}

/* Coroutine in @bs's ctx: read [a_off, a_off + len) through an aligned buffer into @iov. */
static int coroutine_fn bds_co_bounce_read(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					   struct iovec *iov, int niov, int flags)
{
	uint64_t align = bs->request_alignment;
	uint64_t a_off = offset & ~(align - 1);
	uint64_t a_end = (offset + bytes + align - 1) & ~(align - 1);
	struct iovec biov;
	void *buf;
	int ret;

	if (posix_memalign(&buf, MAX(align, sizeof(void *)), a_end - a_off))
		return -ENOMEM;
	biov.iov_base = buf;
	biov.iov_len = a_end - a_off;
	ret = bs->drv->co_preadv(bs, a_off, a_end - a_off, &biov, 1, flags);
	if (ret >= 0) {
		sluice_iov_from_buf(iov, niov, 0, (char *)buf + (offset - a_off), bytes);
		ret = 0;
	}
	free(buf);
	return ret;
}

/*
 * Coroutine in @bs's ctx: write through an aligned buffer, reading the
 * partial head and tail blocks first.  A read-modify-write holds the node's
 * rmw_lock as writer so no other write can slip between read and write.
 */
static int coroutine_fn bds_co_bounce_write(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					    struct iovec *iov, int niov, int flags) TSA_NO_TSA
{
	uint64_t align = bs->request_alignment;
	uint64_t a_off = offset & ~(align - 1);
	uint64_t a_end = (offset + bytes + align - 1) & ~(align - 1);
	uint64_t a_len = a_end - a_off;
	bool head = offset != a_off, tail = offset + bytes != a_end;
	struct iovec biov;
	char *buf;
	int ret = 0;

	if (posix_memalign((void **)&buf, MAX(align, sizeof(void *)), a_len))
		return -ENOMEM;
	if (head || tail)
		sluice_co_rwlock_wrlock(&bs->rmw_lock);
	else
		sluice_co_rwlock_rdlock(&bs->rmw_lock);
	if (head) {
		biov.iov_base = buf;
		biov.iov_len = align;
		ret = bs->drv->co_preadv(bs, a_off, align, &biov, 1, 0);
	}
	if (ret >= 0 && tail && !(head && a_len == align)) {
		biov.iov_base = buf + a_len - align;
		biov.iov_len = align;
		ret = bs->drv->co_preadv(bs, a_end - align, align, &biov, 1, 0);
	}
	if (ret >= 0) {
		sluice_iov_to_buf(iov, niov, 0, buf + (offset - a_off), bytes);
		biov.iov_base = buf;
		biov.iov_len = a_len;
		ret = bs->drv->co_pwritev(bs, a_off, a_len, &biov, 1, flags);
	}
	sluice_co_rwlock_unlock(&bs->rmw_lock);
	free(buf);
	return bds_ret(ret);
}

/* Coroutine in @bs's ctx, graph reader lock held by the caller chain. */
int coroutine_fn sluice_bds_co_preadv(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				      struct iovec *iov, int niov, int flags)
{
	int ret = bds_check_request(bs, offset, bytes);

	if (ret < 0 || !bytes)
		return ret;
	if (sluice_iov_size(iov, niov) < bytes)
		return -EINVAL;
	if (!bs->drv->co_preadv)
		return -ENOTSUP;
	sluice_bds_inc_in_flight(bs);
	if (bds_request_aligned(bs, offset, bytes, iov, niov))
		ret = bds_ret(bs->drv->co_preadv(bs, offset, bytes, iov, niov, flags));
	else
		ret = bds_co_bounce_read(bs, offset, bytes, iov, niov, flags);
	sluice_bds_dec_in_flight(bs);
	return ret;
}

/*
 * Coroutine: on a node that may see RMW (request_alignment > 1), anything
 * that changes data without RMW (aligned writes, write-zeroes, discard)
 * holds rmw_lock as reader, so that an RMW cannot write back stale padding
 * over it.
 */
static void coroutine_fn bds_co_rmw_shared_lock(struct sluice_bds *bs) TSA_NO_TSA
{
	if (bs->request_alignment > 1)
		sluice_co_rwlock_rdlock(&bs->rmw_lock);
}

static void coroutine_fn bds_co_rmw_shared_unlock(struct sluice_bds *bs) TSA_NO_TSA
{
	if (bs->request_alignment > 1)
		sluice_co_rwlock_unlock(&bs->rmw_lock);
}

/* Coroutine: an aligned write on a node that may see RMW takes rmw_lock as reader. */
static int coroutine_fn bds_co_aligned_write(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					     struct iovec *iov, int niov, int flags)
{
	int ret;

	bds_co_rmw_shared_lock(bs);
	ret = bds_ret(bs->drv->co_pwritev(bs, offset, bytes, iov, niov, flags));
	bds_co_rmw_shared_unlock(bs);
	return ret;
}

/* Coroutine in @bs's ctx, graph reader lock held by the caller chain. */
int coroutine_fn sluice_bds_co_pwritev(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags)
{
	int ret = bds_check_request(bs, offset, bytes);

	if (ret < 0 || !bytes)
		return ret;
	if (sluice_iov_size(iov, niov) < bytes)
		return -EINVAL;
	if (bs->read_only)
		return -EPERM;
	if (!bs->drv->co_pwritev)
		return -ENOTSUP;
	sluice_bds_inc_in_flight(bs);
	if (bds_request_aligned(bs, offset, bytes, iov, niov))
		ret = bds_co_aligned_write(bs, offset, bytes, iov, niov, flags);
	else
		ret = bds_co_bounce_write(bs, offset, bytes, iov, niov, flags);
	sluice_bds_dec_in_flight(bs);
	return ret;
}

/* Coroutine in @bs's ctx, graph reader lock held by the caller chain. */
int coroutine_fn sluice_bds_co_flush(struct sluice_bds *bs)
{
	int ret = 0;

	if (!bs || !bs->drv)
		return -ENOMEDIUM;
	if (!bs->drv->co_flush)
		return 0;
	sluice_bds_inc_in_flight(bs);
	ret = bds_ret(bs->drv->co_flush(bs));
	sluice_bds_dec_in_flight(bs);
	return ret;
}

/* Coroutine in @bs's ctx, graph reader lock held.  Discard is advisory: unsupported is success. */
int coroutine_fn sluice_bds_co_pdiscard(struct sluice_bds *bs, uint64_t offset, uint64_t bytes)
{
	int ret = bds_check_request(bs, offset, bytes);

	if (ret < 0 || !bytes)
		return ret;
	if (bs->read_only)
		return -EPERM;
	if (!bs->drv->co_pdiscard)
		return 0;
	sluice_bds_inc_in_flight(bs);
	bds_co_rmw_shared_lock(bs);
	ret = bds_ret(bs->drv->co_pdiscard(bs, offset, bytes));
	bds_co_rmw_shared_unlock(bs);
	if (ret == -ENOTSUP || ret == -EOPNOTSUPP)
		ret = 0;
	sluice_bds_dec_in_flight(bs);
	return ret;
}

/* Coroutine: write zeroes as buffers (the fallback when the driver cannot do it natively). */
static int coroutine_fn GRAPH_RDLOCK bds_co_write_zero_buffers(struct sluice_bds *bs, uint64_t offset,
						  uint64_t bytes, int flags)
{
	size_t chunk = MIN(bytes, (uint64_t)ZERO_CHUNK);
	struct iovec iov;
	void *buf;
	int ret = 0;

	if (posix_memalign(&buf, MAX(bs->request_alignment, sizeof(void *)), chunk))
		return -ENOMEM;
	memset(buf, 0, chunk);
	while (bytes && ret >= 0) {
		uint64_t n = MIN(bytes, (uint64_t)chunk);

		iov.iov_base = buf;
		iov.iov_len = n;
		ret = sluice_bds_co_pwritev(bs, offset, n, &iov, 1, flags & SLUICE_BDRV_REQ_FUA);
		offset += n;
		bytes -= n;
	}
	free(buf);
	return ret;
}

/* Coroutine in @bs's ctx, graph reader lock held by the caller chain. */
int coroutine_fn sluice_bds_co_pwrite_zeroes(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					     int flags)
{
	int ret = bds_check_request(bs, offset, bytes);

	if (ret < 0 || !bytes)
		return ret;
	if (bs->read_only)
		return -EPERM;
	sluice_bds_inc_in_flight(bs);
	ret = -ENOTSUP;
	if (bs->drv->co_pwrite_zeroes) {
		/* Not across the fallback: its writes take rmw_lock themselves. */
		bds_co_rmw_shared_lock(bs);
		ret = bds_ret(bs->drv->co_pwrite_zeroes(bs, offset, bytes, flags));
		bds_co_rmw_shared_unlock(bs);
	}
	if ((ret == -ENOTSUP || ret == -EOPNOTSUPP) && !(flags & SLUICE_BDRV_REQ_NO_FALLBACK))
		ret = bds_co_write_zero_buffers(bs, offset, bytes, flags);
	sluice_bds_dec_in_flight(bs);
	return ret;
}

/* Coroutine in @bs's ctx, graph reader lock held; refreshes the cached length. */
int coroutine_fn sluice_bds_co_truncate(struct sluice_bds *bs, uint64_t size)
{
	int ret;

	if (!bs || !bs->drv)
		return -ENOMEDIUM;
	if (size > INT64_MAX)
		return -EINVAL;
	if (bs->read_only)
		return -EPERM;
	if (!bs->drv->co_truncate)
		return -ENOTSUP;
	sluice_bds_inc_in_flight(bs);
	ret = bds_ret(bs->drv->co_truncate(bs, size));
	sluice_bds_getlength(bs);
	sluice_bds_dec_in_flight(bs);
	return ret;
}

/* Coroutine in @bs's ctx, graph reader lock held by the caller chain. */
int coroutine_fn sluice_bds_co_block_status(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					    uint64_t *pnum, uint64_t *map, struct sluice_bds **file)
{
	int64_t len;
	uint64_t lmap = 0;
	struct sluice_bds *lfile = NULL;
	int ret;

	*pnum = 0;
	if (!bs || !bs->drv)
		return -ENOMEDIUM;
	len = __atomic_load_n(&bs->total_bytes, __ATOMIC_RELAXED);
	if (offset > (uint64_t)len)
		return -EINVAL;
	bytes = MIN(bytes, (uint64_t)len - offset);
	if (!bytes)
		return 0;
	if (!bs->drv->co_block_status) {
		*pnum = bytes;
		if (map)
			*map = offset;
		if (file)
			*file = bs;
		return SLUICE_BLOCK_DATA | SLUICE_BLOCK_ALLOCATED | SLUICE_BLOCK_OFFSET_VALID;
	}
	sluice_bds_inc_in_flight(bs);
	ret = bs->drv->co_block_status(bs, offset, bytes, pnum, &lmap, &lfile);
	sluice_bds_dec_in_flight(bs);
	if (ret < 0)
		return ret;
	if (*pnum > bytes)
		*pnum = bytes;
	if (map)
		*map = lmap;
	if (file)
		*file = lfile;
	return ret;
}

/* Any thread not racing a truncate (main thread for tools); refreshes the cached length. */
int64_t sluice_bds_getlength(struct sluice_bds *bs)
{
	int64_t len;

	if (!bs || !bs->drv)
		return -ENOMEDIUM;
	if (!bs->drv->getlength)
		return __atomic_load_n(&bs->total_bytes, __ATOMIC_RELAXED);
	len = bs->drv->getlength(bs);
	if (len >= 0)
		__atomic_store_n(&bs->total_bytes, len, __ATOMIC_RELAXED);
	return len;
}
