// SPDX-License-Identifier: GPL-2.0
/* iothread.c - named threads each running one event loop, their registry, and run-in-thread helpers. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "iothread.h"

struct sluice_iothread {
	char *id;
	pthread_t thread;
	pid_t tid;
	struct sluice_aio_ctx *ctx;
	int stopping;			/* atomic; set by the stop BH */
	int start_err;
	bool started;			/* under start_lock */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	struct sluice_iothread *next;	/* registry, under iothread_lock */
};

static pthread_mutex_t iothread_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sluice_iothread *iothread_list;

/* The IOThread itself: create the loop, report back, run until stopped, free the loop. */
static void *iothread_run(void *arg)
{
	struct sluice_iothread *t = arg;
	char name[16];

	snprintf(name, sizeof(name), "%s", t->id);
	pthread_setname_np(pthread_self(), name);
	t->ctx = sluice_aio_ctx_new(t->id, 0);
	if (t->ctx) {
		const char *p = getenv("SLUICE_IOTHREAD_POLL_NS");

		sluice_aio_ctx_set_current(t->ctx);
		/* Poll mode, as QEMU's IOThreads (poll-max-ns); SLUICE_IOTHREAD_POLL_NS=0 turns it off. */
		sluice_aio_set_poll_ns(t->ctx, p ? strtoll(p, NULL, 0) : SLUICE_IOTHREAD_POLL_NS_DEFAULT);
	}
	pthread_mutex_lock(&t->start_lock);
	t->tid = gettid();
	t->start_err = t->ctx ? 0 : errno;
	t->started = true;
	pthread_cond_signal(&t->start_cond);
	pthread_mutex_unlock(&t->start_lock);
	if (!t->ctx)
		return NULL;

	while (!__atomic_load_n(&t->stopping, __ATOMIC_ACQUIRE))
		sluice_aio_poll(t->ctx, true);
	/* Let whatever was scheduled before the stop finish. */
	while (sluice_aio_poll(t->ctx, false))
		;
	sluice_aio_ctx_free(t->ctx);
	return NULL;
}

/* Main thread. */
struct sluice_iothread *sluice_iothread_new(const char *id)
{
	struct sluice_iothread *t;
	int ret;

	if (!id || sluice_iothread_find(id)) {
		errno = id ? EEXIST : EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->id = strdup(id);
	if (!t->id) {
		ret = ENOMEM;
		goto err_free_t;
	}
	pthread_mutex_init(&t->start_lock, NULL);
	pthread_cond_init(&t->start_cond, NULL);
	ret = pthread_create(&t->thread, NULL, iothread_run, t);
	if (ret)
		goto err_destroy_sync;
	pthread_mutex_lock(&t->start_lock);
	while (!t->started)
		pthread_cond_wait(&t->start_cond, &t->start_lock);
	pthread_mutex_unlock(&t->start_lock);
	if (t->start_err) {
		ret = t->start_err;
		pthread_join(t->thread, NULL);
		goto err_destroy_sync;
	}
	pthread_mutex_lock(&iothread_lock);
	t->next = iothread_list;
	iothread_list = t;
	pthread_mutex_unlock(&iothread_lock);
	return t;

err_destroy_sync:
	pthread_cond_destroy(&t->start_cond);
	pthread_mutex_destroy(&t->start_lock);
	free(t->id);
err_free_t:
	free(t);
	errno = ret;
	return NULL;
}

/* IOThread, BH: leave the loop after this iteration. */
static void iothread_stop_bh(void *opaque)
{
	struct sluice_iothread *t = opaque;

	__atomic_store_n(&t->stopping, 1, __ATOMIC_RELEASE);
}

/* Main thread. */
void sluice_iothread_free(struct sluice_iothread *t)
{
	struct sluice_iothread **pp;

	if (!t)
		return;
	pthread_mutex_lock(&iothread_lock);
	for (pp = &iothread_list; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	pthread_mutex_unlock(&iothread_lock);
	sluice_aio_bh_oneshot(t->ctx, iothread_stop_bh, t);
	pthread_join(t->thread, NULL);
	pthread_cond_destroy(&t->start_cond);
	pthread_mutex_destroy(&t->start_lock);
	free(t->id);
	free(t);
}

/* Any thread. */
const char *sluice_iothread_id(const struct sluice_iothread *t)
{
	return t->id;
}

/* Any thread. */
struct sluice_aio_ctx *sluice_iothread_ctx(const struct sluice_iothread *t)
{
	return t->ctx;
}

/* Any thread. */
pid_t sluice_iothread_tid(const struct sluice_iothread *t)
{
	return t->tid;
}

/* Main thread. */
struct sluice_iothread *sluice_iothread_next(struct sluice_iothread *prev)
{
	struct sluice_iothread *t;

	pthread_mutex_lock(&iothread_lock);
	t = prev ? prev->next : iothread_list;
	pthread_mutex_unlock(&iothread_lock);
	return t;
}

/* Main thread. */
struct sluice_iothread *sluice_iothread_find(const char *id)
{
	struct sluice_iothread *t;

	pthread_mutex_lock(&iothread_lock);
	for (t = iothread_list; t; t = t->next)
		if (!strcmp(t->id, id))
			break;
	pthread_mutex_unlock(&iothread_lock);
	return t;
}

struct run_sync {
	void (*fn)(void *);
	void *opaque;
	bool done;			/* under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

/* @ctx's thread, BH: run the function and release the waiter. */
static void run_sync_bh(void *opaque)
{
	struct run_sync *rs = opaque;

	rs->fn(rs->opaque);
	pthread_mutex_lock(&rs->lock);
	rs->done = true;
	pthread_cond_signal(&rs->cond);
	pthread_mutex_unlock(&rs->lock);
}

/* Main thread (any thread but @ctx's own, where @fn simply runs inline). */
void sluice_aio_run_sync(struct sluice_aio_ctx *ctx, void (*fn)(void *), void *opaque)
{
	struct run_sync rs = { .fn = fn, .opaque = opaque };

	if (sluice_aio_current() == ctx) {
		fn(opaque);
		return;
	}
	pthread_mutex_init(&rs.lock, NULL);
	pthread_cond_init(&rs.cond, NULL);
	sluice_aio_bh_oneshot(ctx, run_sync_bh, &rs);
	pthread_mutex_lock(&rs.lock);
	while (!rs.done)
		pthread_cond_wait(&rs.cond, &rs.lock);
	pthread_mutex_unlock(&rs.lock);
	pthread_cond_destroy(&rs.cond);
	pthread_mutex_destroy(&rs.lock);
}
