// SPDX-License-Identifier: GPL-2.0
/* graph-lock.c - the block graph's reader/writer lock: per-thread reader counts, one main-thread writer. */
#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"

/*
 * Readers are requests, in every IOThread at once: each thread counts its
 * own on a cache line of its own, and never takes a lock while no writer is
 * about.  The writer announces itself (graph_writer), then waits until the
 * sum of all counts is zero; readers that arrive meanwhile step back and
 * park until the writer is done.  A coroutine may take the lock in one
 * thread and drop it in another (it moved): only the sum is meaningful.
 */
struct graph_reader {
	long count;			/* atomic: this thread's readers (may go negative) */
	struct graph_reader *next;	/* under graph_lock_mutex */
} __attribute__((aligned(64)));

/* A reader parked while a writer holds or waits for the lock; lives on its coroutine's stack. */
struct graph_waiter {
	struct sluice_co *co;
	struct graph_waiter *next;
};

struct sluice_graph_lock_cap sluice_graph_lock;

static __thread struct graph_reader *graph_self;
static pthread_key_t graph_key;
static pthread_once_t graph_once = PTHREAD_ONCE_INIT;

/* graph_lock_mutex: the reader list, the orphan count, the waiters, the writer's condition. */
static pthread_mutex_t graph_lock_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t graph_cond = PTHREAD_COND_INITIALIZER;
static struct graph_reader *graph_readers;
static long graph_orphans;			/* counts left by threads that exited */
static struct graph_waiter *graph_waiters;
/* Writers, one at a time (graph_writer_mutex); the flag is read by readers on any thread. */
static pthread_mutex_t graph_writer_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool graph_writer;
static struct sluice_aio_ctx *graph_writer_ctx;	/* where the writer polls, or NULL: it sleeps on graph_cond */

/* Thread exit (pthread key destructor): fold this thread's count into the orphans and forget it. */
static void graph_reader_exit(void *opaque)
{
	struct graph_reader *r = opaque, **p;

	pthread_mutex_lock(&graph_lock_mutex);
	for (p = &graph_readers; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	graph_orphans += __atomic_load_n(&r->count, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&graph_lock_mutex);
	free(r);
}

static void graph_key_init(void)
{
	if (pthread_key_create(&graph_key, graph_reader_exit))
		abort();
}

/* Any thread: this thread's reader count, registered on first use. */
static struct graph_reader *graph_reader_self(void)
{
	struct graph_reader *r = graph_self;

	if (r)
		return r;
	pthread_once(&graph_once, graph_key_init);
	if (posix_memalign((void **)&r, 64, sizeof(*r)))
		abort();
	r->count = 0;
	pthread_mutex_lock(&graph_lock_mutex);
	r->next = graph_readers;
	graph_readers = r;
	pthread_mutex_unlock(&graph_lock_mutex);
	pthread_setspecific(graph_key, r);
	graph_self = r;
	return r;
}

/* Any thread, graph_lock_mutex held: readers in the whole process. */
static long graph_reader_sum_locked(void)
{
	struct graph_reader *r;
	long sum = graph_orphans;

	for (r = graph_readers; r; r = r->next)
		sum += __atomic_load_n(&r->count, __ATOMIC_SEQ_CST);
	return sum;
}

/* Any thread: readers in the whole process; takes graph_lock_mutex. */
static long graph_reader_sum(void)
{
	long sum;

	pthread_mutex_lock(&graph_lock_mutex);
	sum = graph_reader_sum_locked();
	pthread_mutex_unlock(&graph_lock_mutex);
	return sum;
}

/* The writer's ctx (one-shot BH): nothing; running ends its poll iteration so it counts again. */
static void graph_kick_bh(void *opaque)
{
	(void)opaque;
}

/* Any thread: a reader left while a writer waits: make the writer count again. */
static void graph_kick_writer(void)
{
	struct sluice_aio_ctx *ctx;

	pthread_mutex_lock(&graph_lock_mutex);
	ctx = graph_writer_ctx;
	pthread_cond_broadcast(&graph_cond);
	pthread_mutex_unlock(&graph_lock_mutex);
	/* A BH, not a bare notify: work its poll cannot miss between its count and its sleep. */
	if (ctx)
		sluice_aio_bh_oneshot(ctx, graph_kick_bh, NULL);
}

/* Coroutine, any ctx. */
TSA_NO_TSA void coroutine_fn sluice_graph_co_rdlock(void)
{
	struct graph_reader *r = graph_reader_self();

	for (;;) {
		/* Count ourselves, then look for a writer; pairs with the writer's flag store, then sum. */
		__atomic_add_fetch(&r->count, 1, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&graph_writer, __ATOMIC_SEQ_CST))
			return;
		/* A writer holds the lock or waits for it: step back and wait for its unlock. */
		__atomic_sub_fetch(&r->count, 1, __ATOMIC_SEQ_CST);
		graph_kick_writer();
		pthread_mutex_lock(&graph_lock_mutex);
		if (__atomic_load_n(&graph_writer, __ATOMIC_SEQ_CST)) {
			struct graph_waiter w = { .co = sluice_co_self(), .next = graph_waiters };

			graph_waiters = &w;
			pthread_mutex_unlock(&graph_lock_mutex);
			sluice_co_yield();	/* sluice_graph_wrunlock() wakes us */
		} else {
			pthread_mutex_unlock(&graph_lock_mutex);
		}
		r = graph_reader_self();	/* we may have been woken in another thread */
	}
}

/* Coroutine, any ctx (not necessarily the one that took the lock). */
TSA_NO_TSA void coroutine_fn sluice_graph_co_rdunlock(void)
{
	__atomic_sub_fetch(&graph_reader_self()->count, 1, __ATOMIC_SEQ_CST);
	/* Pairs with the writer's flag store, then sum: one of us sees the other. */
	if (__atomic_load_n(&graph_writer, __ATOMIC_SEQ_CST))
		graph_kick_writer();
}

/* Main thread, not a coroutine; takes graph_writer_mutex for the whole section. */
TSA_NO_TSA void sluice_graph_wrlock(void)
{
	struct sluice_aio_ctx *cur = sluice_aio_current();

	assert(!sluice_co_self());
	pthread_mutex_lock(&graph_writer_mutex);
	pthread_mutex_lock(&graph_lock_mutex);
	graph_writer_ctx = cur;
	pthread_mutex_unlock(&graph_lock_mutex);
	/* Before counting the readers; pairs with the readers' count, then flag load. */
	__atomic_store_n(&graph_writer, true, __ATOMIC_SEQ_CST);
	if (cur) {
		/* Readers in this thread's ctx (the main loop's requests) must run to leave. */
		SLUICE_AIO_WAIT_WHILE(cur, graph_reader_sum() > 0);
		return;
	}
	pthread_mutex_lock(&graph_lock_mutex);
	while (graph_reader_sum_locked() > 0)
		pthread_cond_wait(&graph_cond, &graph_lock_mutex);
	pthread_mutex_unlock(&graph_lock_mutex);
}

/* Main thread, holding the writer lock: let the readers in again. */
TSA_NO_TSA void sluice_graph_wrunlock(void)
{
	struct graph_waiter *w, *next;

	pthread_mutex_lock(&graph_lock_mutex);
	__atomic_store_n(&graph_writer, false, __ATOMIC_SEQ_CST);
	graph_writer_ctx = NULL;
	w = graph_waiters;
	graph_waiters = NULL;
	pthread_mutex_unlock(&graph_lock_mutex);
	pthread_mutex_unlock(&graph_writer_mutex);
	for (; w; w = next) {
		next = w->next;		/* @w lives on the coroutine's stack: read before it runs */
		sluice_aio_co_wake(w->co);
	}
}

/* Any thread (tests, assertions): is a writer holding or waiting for the lock? */
bool sluice_graph_writer_active(void)
{
	return __atomic_load_n(&graph_writer, __ATOMIC_SEQ_CST);
}
