// SPDX-License-Identifier: GPL-2.0
/* thread-pool.c - a shared pool of worker threads running blocking calls for coroutines (aio=threads). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "aio.h"
#include "coroutine.h"
#include "thread-pool.h"

#define POOL_MAX_WORKERS	64
#define POOL_IDLE_TIMEOUT_S	10

/* One submitted call; lives on the submitting coroutine's stack. */
struct pool_req {
	sluice_thread_pool_fn *fn;
	void *opaque;
	int ret;
	struct sluice_co *co;
	struct sluice_aio_ctx *ctx;	/* the coroutine's home: where completion runs */
	struct pool_req *next;
};

/*
 * The pool: a FIFO of requests under @lock; workers are spawned on demand
 * (while fewer are idle than requests are queued) and exit after idling.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pool_req *head, *tail;
	unsigned int queued;
	unsigned int nthreads;
	unsigned int idle;
} pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

/* BH in the submitter's home ctx: the request finished, continue the coroutine. */
static void pool_req_done_bh(void *opaque)
{
	struct pool_req *req = opaque;

	sluice_aio_co_wake(req->co);
}

/* Worker thread body.  Takes pool.lock to dequeue, runs the call unlocked. */
static void *pool_worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		struct pool_req *req;

		while (!pool.head) {
			struct timespec ts;
			int r;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += POOL_IDLE_TIMEOUT_S;
			pool.idle++;
			r = pthread_cond_timedwait(&pool.cond, &pool.lock, &ts);
			pool.idle--;
			if (r == ETIMEDOUT && !pool.head) {
				pool.nthreads--;
				pthread_mutex_unlock(&pool.lock);
				return NULL;
			}
		}
		req = pool.head;
		pool.head = req->next;
		if (!pool.head)
			pool.tail = NULL;
		pool.queued--;
		pthread_mutex_unlock(&pool.lock);

		req->ret = req->fn(req->opaque);
		/* After this the request belongs to the submitter again. */
		sluice_aio_bh_oneshot(req->ctx, pool_req_done_bh, req);

		pthread_mutex_lock(&pool.lock);
	}
}

/* With pool.lock held: start one more worker; failure is fine while one exists. */
static int pool_spawn_locked(void)
{
	pthread_attr_t attr;
	pthread_t tid;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&tid, &attr, pool_worker, NULL);
	pthread_attr_destroy(&attr);
	if (r)
		return -r;
	pthread_setname_np(tid, "sluice-worker");
	pool.nthreads++;
	return 0;
}

/* Coroutine, any thread running a ctx; takes pool.lock briefly. */
int coroutine_fn sluice_thread_pool_co_submit(sluice_thread_pool_fn *fn, void *opaque)
{
	struct pool_req req = {
		.fn = fn,
		.opaque = opaque,
		.co = sluice_co_self(),
	};
	int r = 0;

	req.ctx = sluice_co_ctx(req.co);
	pthread_mutex_lock(&pool.lock);
	if (pool.tail)
		pool.tail->next = &req;
	else
		pool.head = &req;
	pool.tail = &req;
	pool.queued++;
	if (pool.idle < pool.queued && pool.nthreads < POOL_MAX_WORKERS)
		r = pool_spawn_locked();
	if (r < 0 && pool.nthreads == 0) {
		/* No worker at all: undo and fail rather than hang. */
		pool.head = pool.tail = NULL;
		pool.queued = 0;
		pthread_mutex_unlock(&pool.lock);
		return r;
	}
	pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);

	/* The completion BH runs on this thread, so only after we yielded. */
	sluice_co_yield();
	return req.ret;
}

/* Any thread. */
unsigned int sluice_thread_pool_workers(void)
{
	unsigned int n;

	pthread_mutex_lock(&pool.lock);
	n = pool.nthreads;
	pthread_mutex_unlock(&pool.lock);
	return n;
}
