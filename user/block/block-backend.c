// SPDX-License-Identifier: GPL-2.0
/* block-backend.c - the backend handle (BlockBackend): request gating while drained, in-flight accounting, USDT probes. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <glib.h>
#include <sys/sdt.h>

#include "aio.h"
#include "block-int.h"
#include "block.h"
#include "coroutine.h"

/*
 * USDT probes (provider "sluice"), fired around every backend request in
 * the caller's thread (start before the move to the root node's ctx, done
 * after the move back; the same thread when the caller runs in that ctx):
 *
 *   blk_req_start(blk, op, offset, bytes, req)
 *   blk_req_done(blk, op, offset, bytes, req, ret)
 *
 * blk: struct sluice_blk * (identifies the backend); op: enum sluice_blk_op;
 * offset, bytes: uint64_t (truncate: offset = new size, bytes = 0; flush:
 * both 0); req: the coroutine running the request (struct sluice_co *),
 * unique while it is in flight, to pair start with done; ret: int, 0 or
 * -errno.  Start fires before the request waits for a drained section to
 * end, so start -> done is the latency the user of the backend sees.
 */

/* A request parked while the root is drained. */
struct blk_waiter {
	struct sluice_co *co;
	struct blk_waiter *next;
};

struct sluice_blk {
	struct sluice_bds *root;
	unsigned int refcnt;		/* main thread */
	unsigned int in_flight;		/* atomic: requests of this backend, parked ones included */
	unsigned int active;		/* atomic: in_flight minus the parked ones */
	bool dying;			/* atomic: the last reference is going; requests fail */
	bool multiqueue;		/* every node's driver is multiqueue: no hop to the root's ctx */
	/*
	 * Parked requests.  The requests park in the root's ctx thread and
	 * drained_end restarts them from the main thread, so a plain mutex
	 * rather than a CoQueue (whose users must share one lock or thread).
	 */
	pthread_mutex_t wait_lock;
	struct blk_waiter *waiters;	/* under wait_lock, LIFO */
};

/* Main thread: can requests run in any ctx below @bs (its file and backing chains)? */
static bool graph_multiqueue(struct sluice_bds *bs)
{
	if (!bs)
		return true;
	return bs->drv->multiqueue && graph_multiqueue(bs->file) && graph_multiqueue(bs->backing);
}

/* Main thread. */
struct sluice_blk *sluice_blk_new_open(const char *filename, const char *fmt, int flags, char **errp)
{
	struct sluice_bds *bs = sluice_bds_open(filename, fmt, flags, errp);
	struct sluice_blk *blk;

	if (!bs)
		return NULL;
	blk = g_new0(struct sluice_blk, 1);
	blk->root = bs;
	blk->refcnt = 1;
	blk->multiqueue = graph_multiqueue(bs);
	pthread_mutex_init(&blk->wait_lock, NULL);
	bs->blk = blk;
	return blk;
}

/* Main thread: the last reference drains and closes the graph. */
void sluice_blk_unref(struct sluice_blk *blk)
{
	if (!blk || --blk->refcnt)
		return;
	sluice_bds_drained_begin(blk->root);
	if (__atomic_load_n(&blk->in_flight, __ATOMIC_SEQ_CST)) {
		/*
		 * Requests parked in the drained section: their caller submitted
		 * them as it let go (its error).  Fail them with -ENOMEDIUM rather
		 * than leave them parked on a freed backend: wake them, and drain
		 * again; while dying, bds_busy() counts them until they have left.
		 */
		__atomic_store_n(&blk->dying, true, __ATOMIC_SEQ_CST);
		sluice_blk_root_drained_end(blk);
		sluice_bds_drained_begin(blk->root);
		sluice_bds_drained_end(blk->root);
	}
	sluice_graph_wrlock();
	blk->root->blk = NULL;
	sluice_graph_wrunlock();
	sluice_bds_drained_end(blk->root);
	sluice_bds_unref(blk->root);
	pthread_mutex_destroy(&blk->wait_lock);
	g_free(blk);
}

/* Any thread. */
struct sluice_bds *sluice_blk_bs(struct sluice_blk *blk)
{
	return blk->root;
}

/* Main thread (or the root's ctx thread). */
int64_t sluice_blk_getlength(struct sluice_blk *blk)
{
	return sluice_bds_getlength(blk->root);
}

/* Main thread: moves the graph, drained, so no request runs meanwhile. */
void sluice_blk_set_aio_context(struct sluice_blk *blk, struct sluice_aio_ctx *ctx)
{
	sluice_bds_drained_begin(blk->root);
	sluice_graph_wrlock();
	sluice_bds_set_aio_context(blk->root, ctx);
	sluice_graph_wrunlock();
	sluice_bds_drained_end(blk->root);
}

/* Any thread. */
struct sluice_aio_ctx *sluice_blk_get_aio_context(struct sluice_blk *blk)
{
	return __atomic_load_n(&blk->root->ctx, __ATOMIC_SEQ_CST);
}

/* Any thread. */
unsigned int sluice_blk_in_flight(struct sluice_blk *blk)
{
	return __atomic_load_n(&blk->in_flight, __ATOMIC_SEQ_CST);
}

/* Any thread: requests a drain waits for (parked ones too once the backend is dying). */
unsigned int sluice_blk_active(struct sluice_blk *blk)
{
	if (__atomic_load_n(&blk->dying, __ATOMIC_SEQ_CST))
		return __atomic_load_n(&blk->in_flight, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&blk->active, __ATOMIC_SEQ_CST);
}

/*
 * Any thread: one request fewer on its way; the last one wakes a drain.
 * Once active is 0 a drainer (sluice_blk_unref()) may free @blk and its
 * nodes, so the wake-up must not dereference them.
 */
static void blk_dec_active(struct sluice_blk *blk)
{
	if (!__atomic_sub_fetch(&blk->active, 1, __ATOMIC_SEQ_CST))
		sluice_block_drain_kick();
}

/* Home thread of the coroutine (BH): restart a parked request. */
static void blk_waiter_wake_bh(void *opaque)
{
	sluice_aio_co_wake(opaque);
}

/* Any thread: the root's last drained section ended; takes wait_lock. */
void sluice_blk_root_drained_end(struct sluice_blk *blk)
{
	struct blk_waiter *w, *next;

	pthread_mutex_lock(&blk->wait_lock);
	w = blk->waiters;
	blk->waiters = NULL;
	pthread_mutex_unlock(&blk->wait_lock);
	for (; w; w = next) {
		struct sluice_co *co = w->co;

		next = w->next;	/* @w lives on the coroutine's stack: read it first */
		sluice_aio_bh_oneshot(sluice_co_ctx(co), blk_waiter_wake_bh, co);
	}
}

/* Coroutine: park until the root is no longer quiesced; takes wait_lock. */
static void coroutine_fn blk_co_wait_while_drained(struct sluice_blk *blk)
{
	struct blk_waiter w = { .co = sluice_co_self() };

	pthread_mutex_lock(&blk->wait_lock);
	if (!__atomic_load_n(&blk->root->quiesce_counter, __ATOMIC_SEQ_CST)) {
		pthread_mutex_unlock(&blk->wait_lock);
		return;
	}
	w.next = blk->waiters;
	blk->waiters = &w;
	pthread_mutex_unlock(&blk->wait_lock);
	blk_dec_active(blk);
	/* The wake-up BH runs on this thread, so only after this yield. */
	sluice_co_yield();
	__atomic_add_fetch(&blk->active, 1, __ATOMIC_SEQ_CST);
}

/*
 * Coroutine, any ctx: move to the root's ctx thread (unless the graph is
 * multiqueue: then the request stays in the caller's ctx and uses its
 * io_uring) and wait for any drained section to end; on return the request
 * counts in the root's in_flight, so a drain that starts now waits for it.
 * Returns the ctx the caller ran in (to go back to); *@err is -ENOMEDIUM,
 * and nothing counted in the root, once the backend is dying.
 */
static struct sluice_aio_ctx *coroutine_fn blk_co_begin(struct sluice_blk *blk, int *err)
{
	struct sluice_aio_ctx *orig = sluice_aio_current();

	*err = 0;
	for (;;) {
		struct sluice_aio_ctx *ctx = __atomic_load_n(&blk->root->ctx, __ATOMIC_SEQ_CST);

		if (__atomic_load_n(&blk->dying, __ATOMIC_SEQ_CST)) {
			*err = -ENOMEDIUM;	/* see sluice_blk_unref() */
			return orig;
		}
		if (!blk->multiqueue && ctx != sluice_aio_current()) {
			sluice_co_move_to(ctx);
			continue;
		}
		sluice_bds_inc_in_flight(blk->root);
		/* Pairs with drained_begin: quiesce++ then in_flight read. */
		if (!__atomic_load_n(&blk->root->quiesce_counter, __ATOMIC_SEQ_CST))
			return orig;
		sluice_bds_dec_in_flight(blk->root);
		blk_co_wait_while_drained(blk);
	}
}

/*
 * Coroutine: undo blk_co_begin() and go back to the caller's ctx; the
 * request stops counting before that, so a drain need not wait for the
 * caller's ctx to run.
 */
static void coroutine_fn blk_co_end(struct sluice_blk *blk, struct sluice_aio_ctx *orig)
{
	sluice_bds_dec_in_flight(blk->root);
	__atomic_sub_fetch(&blk->in_flight, 1, __ATOMIC_SEQ_CST);
	blk_dec_active(blk);
	if (orig && orig != sluice_aio_current())
		sluice_co_move_to(orig);
}

/* One backend request's arguments. */
struct blk_req {
	enum sluice_blk_op op;
	uint64_t offset;
	uint64_t bytes;
	struct iovec *iov;
	int niov;
	int flags;
};

/*
 * Coroutine, any ctx: run @r against the root with the graph reader lock
 * held; the lock and the in-flight count cover the whole request.
 */
static int coroutine_fn blk_co_do(struct sluice_blk *blk, const struct blk_req *r)
{
	struct sluice_co *self = sluice_co_self();
	struct sluice_aio_ctx *orig;
	struct sluice_bds *bs;
	int ret;

	DTRACE_PROBE5(sluice, blk_req_start, blk, (int)r->op, r->offset, r->bytes, self);
	__atomic_add_fetch(&blk->in_flight, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&blk->active, 1, __ATOMIC_SEQ_CST);
	orig = blk_co_begin(blk, &ret);
	if (ret) {
		/* Not counted in the root: only the backend's counts to undo. */
		__atomic_sub_fetch(&blk->in_flight, 1, __ATOMIC_SEQ_CST);
		blk_dec_active(blk);
		if (orig && orig != sluice_aio_current())
			sluice_co_move_to(orig);
		DTRACE_PROBE6(sluice, blk_req_done, blk, (int)r->op, r->offset, r->bytes, self, ret);
		return ret;
	}
	bs = blk->root;

	sluice_graph_co_rdlock();
	switch (r->op) {
	case SLUICE_BLK_OP_READ:
		ret = sluice_bds_co_preadv(bs, r->offset, r->bytes, r->iov, r->niov, r->flags);
		break;
	case SLUICE_BLK_OP_WRITE:
		ret = sluice_bds_co_pwritev(bs, r->offset, r->bytes, r->iov, r->niov, r->flags);
		break;
	case SLUICE_BLK_OP_FLUSH:
		ret = sluice_bds_co_flush(bs);
		break;
	case SLUICE_BLK_OP_DISCARD:
		ret = sluice_bds_co_pdiscard(bs, r->offset, r->bytes);
		break;
	case SLUICE_BLK_OP_WRITE_ZEROES:
		ret = sluice_bds_co_pwrite_zeroes(bs, r->offset, r->bytes, r->flags);
		break;
	case SLUICE_BLK_OP_TRUNCATE:
		ret = sluice_bds_co_truncate(bs, r->offset);
		break;
	default:
		ret = -EINVAL;
		break;
	}
	sluice_graph_co_rdunlock();

	blk_co_end(blk, orig);
	DTRACE_PROBE6(sluice, blk_req_done, blk, (int)r->op, r->offset, r->bytes, self, ret);
	return ret;
}

/* Coroutine, any ctx. */
int coroutine_fn sluice_blk_co_preadv(struct sluice_blk *blk, uint64_t offset, uint64_t bytes,
				      struct iovec *iov, int niov, int flags)
{
	struct blk_req r = { SLUICE_BLK_OP_READ, offset, bytes, iov, niov, flags };

	return blk_co_do(blk, &r);
}

/* Coroutine, any ctx. */
int coroutine_fn sluice_blk_co_pwritev(struct sluice_blk *blk, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags)
{
	struct blk_req r = { SLUICE_BLK_OP_WRITE, offset, bytes, iov, niov, flags };

	return blk_co_do(blk, &r);
}

/* Coroutine, any ctx. */
int coroutine_fn sluice_blk_co_flush(struct sluice_blk *blk)
{
	struct blk_req r = { .op = SLUICE_BLK_OP_FLUSH };

	return blk_co_do(blk, &r);
}

/* Coroutine, any ctx. */
int coroutine_fn sluice_blk_co_pdiscard(struct sluice_blk *blk, uint64_t offset, uint64_t bytes)
{
	struct blk_req r = { .op = SLUICE_BLK_OP_DISCARD, .offset = offset, .bytes = bytes };

	return blk_co_do(blk, &r);
}

/* Coroutine, any ctx. */
int coroutine_fn sluice_blk_co_pwrite_zeroes(struct sluice_blk *blk, uint64_t offset, uint64_t bytes,
					     int flags)
{
	struct blk_req r = {
		.op = SLUICE_BLK_OP_WRITE_ZEROES, .offset = offset, .bytes = bytes, .flags = flags,
	};

	return blk_co_do(blk, &r);
}

/* Coroutine, any ctx. */
int coroutine_fn sluice_blk_co_truncate(struct sluice_blk *blk, uint64_t size)
{
	struct blk_req r = { .op = SLUICE_BLK_OP_TRUNCATE, .offset = size };

	return blk_co_do(blk, &r);
}

/* A synchronous request run by a coroutine for a non-coroutine caller. */
struct blk_sync {
	struct sluice_blk *blk;
	struct blk_req req;
	int ret;
	bool done;
};

/* Coroutine entered by blk_sync_run(); ends back in the caller's ctx. */
static void coroutine_fn blk_sync_co(void *opaque)
{
	struct blk_sync *s = opaque;

	s->ret = blk_co_do(s->blk, &s->req);
	s->done = true;
}

/* A loop for threads that run none, so that they can wait for requests. */
static __thread struct sluice_aio_ctx *blk_private_ctx;

/* Any thread not in a coroutine: run @s to completion, polling this thread's ctx. */
static int blk_sync_run(struct blk_sync *s)
{
	struct sluice_aio_ctx *ctx = sluice_aio_current();

	if (!ctx) {
		if (!blk_private_ctx) {
			blk_private_ctx = sluice_aio_ctx_new("blk-sync", 8);
			if (!blk_private_ctx)
				return -ENOMEM;
		}
		ctx = blk_private_ctx;
		sluice_aio_ctx_set_current(ctx);
	}
	sluice_co_enter(sluice_co_create(blk_sync_co, s));
	/* The coroutine moves back to @ctx before it sets done. */
	SLUICE_AIO_WAIT_WHILE(ctx, !s->done);
	return s->ret;
}

/* Any thread; from a coroutine it just runs the request. */
int sluice_blk_pread(struct sluice_blk *blk, uint64_t offset, uint64_t bytes, void *buf, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = bytes };
	struct blk_sync s = {
		.blk = blk,
		.req = { SLUICE_BLK_OP_READ, offset, bytes, &iov, 1, flags },
	};

	if (sluice_in_co())
		return blk_co_do(blk, &s.req);
	return blk_sync_run(&s);
}

/* Any thread; from a coroutine it just runs the request. */
int sluice_blk_pwrite(struct sluice_blk *blk, uint64_t offset, uint64_t bytes, const void *buf,
		      int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = bytes };
	struct blk_sync s = {
		.blk = blk,
		.req = { SLUICE_BLK_OP_WRITE, offset, bytes, &iov, 1, flags },
	};

	if (sluice_in_co())
		return blk_co_do(blk, &s.req);
	return blk_sync_run(&s);
}
