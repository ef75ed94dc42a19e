/* SPDX-License-Identifier: GPL-2.0 */
/* aio-internal.h - glue between the event loop (aio.c) and coroutine scheduling (coroutine.c). */
#ifndef SLUICE_AIO_INTERNAL_H
#define SLUICE_AIO_INTERNAL_H

#include <pthread.h>

#include "aio.h"

struct sluice_co;

/*
 * Coroutines scheduled onto one ctx (sluice_aio_co_schedule()): a FIFO under
 * @lock, drained by @bh on the ctx's home thread.  Owned by the ctx.
 */
struct sluice_co_sched {
	pthread_mutex_t lock;
	struct sluice_co *head, *tail;	/* linked through co->sched_next */
	struct sluice_bh *bh;
};

/* Any thread: the coroutine scheduling queue of @ctx. */
struct sluice_co_sched *sluice_aio_ctx_co_sched(struct sluice_aio_ctx *ctx);

/* Home thread, BH callback (coroutine.c): enter every coroutine queued on the ctx @opaque. */
void sluice_co_sched_run(void *opaque);

#endif /* SLUICE_AIO_INTERNAL_H */
