/* SPDX-License-Identifier: GPL-2.0 */
/* coroutine.h - stackful coroutines (assembly context switch, pooled stacks) and coroutine locks. */
#ifndef SLUICE_COROUTINE_H
#define SLUICE_COROUTINE_H

#include <stdbool.h>
#include <stdint.h>

#include "annotations.h"

struct sluice_aio_ctx;
struct sluice_co;

typedef void coroutine_fn sluice_co_fn(void *opaque);

/*
 * Any thread.  A coroutine that will run @fn(@opaque) when first entered;
 * stacks come from a per-thread pool.  Aborts on OOM.
 */
struct sluice_co *sluice_co_create(sluice_co_fn *fn, void *opaque);

/*
 * Run @co on the calling thread until it yields or returns; a coroutine that
 * returned is recycled into the pool.  May be called from a coroutine (the
 * caller is suspended until @co yields: nesting).  The calling thread must
 * run an aio ctx (sluice_aio_current()), which becomes @co's home ctx.
 * Entering a coroutine that is already running or scheduled aborts.
 */
void sluice_co_enter(struct sluice_co *co);

/* Coroutine only: give control back to whoever entered us. */
void coroutine_fn sluice_co_yield(void);

/* The running coroutine, or NULL outside coroutine context. */
struct sluice_co *sluice_co_self(void);
bool sluice_in_co(void);
/* The ctx @co was last entered in (its home). */
struct sluice_aio_ctx *sluice_co_ctx(const struct sluice_co *co);

/* Any thread: enter @co from @ctx's loop (a BH there).  @co must be yielded. */
void sluice_aio_co_schedule(struct sluice_aio_ctx *ctx, struct sluice_co *co);
/* Any thread: enter @co in its home ctx: directly if that is the calling thread's and we are not in a coroutine, else scheduled. */
void sluice_aio_co_wake(struct sluice_co *co);

/* Coroutine only: yield, then continue on @ctx's thread (moving the coroutine). */
void coroutine_fn sluice_co_move_to(struct sluice_aio_ctx *ctx);
/* Coroutine only: sleep @ns nanoseconds on the home ctx's timers. */
void coroutine_fn sluice_co_sleep_ns(int64_t ns);

/* Number of coroutines currently alive (created, not yet returned); for tests and leak checks. */
unsigned long sluice_co_alive(void);

/*
 * CoMutex: a fair (FIFO) mutex for coroutines, usable across threads: the
 * unlocker hands the lock to the first waiter and wakes it in its home ctx.
 */
struct TSA_CAPABILITY("mutex") sluice_co_mutex {
	/* private */
	unsigned int locked;		/* 1 while held (handed over, not released, to a waiter); under wait_lock */
	struct sluice_co *holder;	/* under wait_lock */
	struct sluice_co_waiter *head, *tail;	/* FIFO, under wait_lock */
	int wait_lock;			/* spinlock guarding the fields above */
};

void sluice_co_mutex_init(struct sluice_co_mutex *m);
void coroutine_fn sluice_co_mutex_lock(struct sluice_co_mutex *m) TSA_ACQUIRE(m);
void coroutine_fn sluice_co_mutex_unlock(struct sluice_co_mutex *m) TSA_RELEASE(m);
bool sluice_co_mutex_trylock(struct sluice_co_mutex *m) TSA_TRY_ACQUIRE(true, m);

/*
 * CoQueue: coroutines waiting for a condition, woken in FIFO order.
 * wait: releases @m (may be NULL) while waiting, takes it again before returning.
 * next / restart_all: wake one / all waiters in their home ctx (any context).
 * The queue itself is protected by the mutex its users hold, or used from one thread.
 */
struct sluice_co_queue {
	struct sluice_co_waiter *head, *tail;
};

void sluice_co_queue_init(struct sluice_co_queue *q);
void coroutine_fn sluice_co_queue_wait(struct sluice_co_queue *q, struct sluice_co_mutex *m);
bool sluice_co_queue_next(struct sluice_co_queue *q);
void sluice_co_queue_restart_all(struct sluice_co_queue *q);
bool sluice_co_queue_empty(const struct sluice_co_queue *q);

/*
 * CoRwlock: many readers or one writer; FIFO so writers do not starve
 * (a reader arriving while a writer waits queues behind it).
 */
struct TSA_CAPABILITY("rwlock") sluice_co_rwlock {
	/* private */
	struct sluice_co_mutex mutex;
	int readers;			/* > 0 readers, -1 a writer */
	struct sluice_co_queue queue;	/* waiters, under mutex */
};

void sluice_co_rwlock_init(struct sluice_co_rwlock *l);
void coroutine_fn sluice_co_rwlock_rdlock(struct sluice_co_rwlock *l) TSA_ACQUIRE_SHARED(l);
void coroutine_fn sluice_co_rwlock_wrlock(struct sluice_co_rwlock *l) TSA_ACQUIRE(l);
void coroutine_fn sluice_co_rwlock_unlock(struct sluice_co_rwlock *l) TSA_RELEASE_GENERIC(l);

#endif /* SLUICE_COROUTINE_H */
