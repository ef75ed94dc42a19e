// SPDX-License-Identifier: GPL-2.0
/* coroutine-lock.c - coroutine locks: FIFO-fair CoMutex with hand-off, CoQueue, writer-fair CoRwlock. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "aio.h"
#include "coroutine.h"

/* A coroutine waiting in a CoMutex, CoQueue or CoRwlock; lives on the waiter's stack. */
struct sluice_co_waiter {
	struct sluice_co *co;
	struct sluice_co_waiter *next;
	int granted;		/* atomic: ownership was handed to us */
	bool writer;		/* CoRwlock: wants exclusive access */
};

/* Any thread: the short spinlock that guards a CoMutex's state. */
static void co_spin_lock(int *l)
{
	unsigned int spins = 0;

	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
			if (++spins % 128 == 0)
				sched_yield();
			else
				__builtin_ia32_pause();
		}
	}
}

static void co_spin_unlock(int *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static struct sluice_co *co_self_or_die(const char *what)
{
	struct sluice_co *self = sluice_co_self();

	if (!self) {
		fprintf(stderr, "sluice: %s outside coroutine context\n", what);
		abort();
	}
	return self;
}

/* Coroutine only: yield until someone sets @w->granted (guards against stray wake-ups). */
static void coroutine_fn co_wait_granted(struct sluice_co_waiter *w)
{
	do {
		sluice_co_yield();
	} while (!__atomic_load_n(&w->granted, __ATOMIC_ACQUIRE));
}

/* Any context: hand @w what it waited for and wake it in its home ctx. */
static void co_grant(struct sluice_co_waiter *w)
{
	struct sluice_co *co = w->co;

	/* @w may disappear as soon as its coroutine runs: read it first. */
	__atomic_store_n(&w->granted, 1, __ATOMIC_RELEASE);
	sluice_aio_co_wake(co);
}

/* Any context, before use. */
void sluice_co_mutex_init(struct sluice_co_mutex *m)
{
	m->locked = 0;
	m->holder = NULL;
	m->head = m->tail = NULL;
	m->wait_lock = 0;
}

/* Coroutine only.  Takes the lock, or queues FIFO and sleeps until it is handed over. */
TSA_NO_TSA void coroutine_fn sluice_co_mutex_lock(struct sluice_co_mutex *m)
{
	struct sluice_co *self = co_self_or_die("sluice_co_mutex_lock");
	struct sluice_co_waiter w = { .co = self };

	co_spin_lock(&m->wait_lock);
	if (!m->locked) {
		m->locked = 1;
		m->holder = self;
		co_spin_unlock(&m->wait_lock);
		return;
	}
	if (m->tail)
		m->tail->next = &w;
	else
		m->head = &w;
	m->tail = &w;
	co_spin_unlock(&m->wait_lock);
	co_wait_granted(&w);	/* the unlocker made us the holder */
}

/* Any context (normally a coroutine). */
TSA_NO_TSA bool sluice_co_mutex_trylock(struct sluice_co_mutex *m)
{
	bool ok = false;

	co_spin_lock(&m->wait_lock);
	if (!m->locked) {
		m->locked = 1;
		m->holder = sluice_co_self();
		ok = true;
	}
	co_spin_unlock(&m->wait_lock);
	return ok;
}

/* Coroutine holding @m (any thread): hand the lock to the first waiter, if any. */
TSA_NO_TSA void coroutine_fn sluice_co_mutex_unlock(struct sluice_co_mutex *m)
{
	struct sluice_co_waiter *w;

	co_spin_lock(&m->wait_lock);
	if (!m->locked) {
		co_spin_unlock(&m->wait_lock);
		fprintf(stderr, "sluice: unlocking a CoMutex that is not locked\n");
		abort();
	}
	w = m->head;
	if (w) {
		m->head = w->next;
		if (!m->head)
			m->tail = NULL;
		m->holder = w->co;	/* stays locked: ownership passes on */
	} else {
		m->locked = 0;
		m->holder = NULL;
	}
	co_spin_unlock(&m->wait_lock);
	if (w)
		co_grant(w);
}

/* Any context, before use. */
void sluice_co_queue_init(struct sluice_co_queue *q)
{
	q->head = q->tail = NULL;
}

/* Caller holds the queue's protecting mutex (or owns the queue's thread). */
static void co_queue_push(struct sluice_co_queue *q, struct sluice_co_waiter *w)
{
	w->next = NULL;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
}

static struct sluice_co_waiter *co_queue_pop(struct sluice_co_queue *q)
{
	struct sluice_co_waiter *w = q->head;

	if (w) {
		q->head = w->next;
		if (!q->head)
			q->tail = NULL;
	}
	return w;
}

/* Coroutine only, holding @m if not NULL. */
TSA_NO_TSA void coroutine_fn sluice_co_queue_wait(struct sluice_co_queue *q,
						 struct sluice_co_mutex *m)
{
	struct sluice_co_waiter w = { .co = co_self_or_die("sluice_co_queue_wait") };

	co_queue_push(q, &w);
	if (m)
		sluice_co_mutex_unlock(m);
	co_wait_granted(&w);
	if (m)
		sluice_co_mutex_lock(m);
}

/* Any context, holding the queue's mutex.  Wakes the first waiter; false if there was none. */
bool sluice_co_queue_next(struct sluice_co_queue *q)
{
	struct sluice_co_waiter *w = co_queue_pop(q);

	if (!w)
		return false;
	co_grant(w);
	return true;
}

/* Any context, holding the queue's mutex.  Wakes every current waiter (not those that re-queue). */
void sluice_co_queue_restart_all(struct sluice_co_queue *q)
{
	struct sluice_co_waiter *w = q->head, *next;

	q->head = q->tail = NULL;
	for (; w; w = next) {
		next = w->next;
		co_grant(w);
	}
}

/* Any context, holding the queue's mutex. */
bool sluice_co_queue_empty(const struct sluice_co_queue *q)
{
	return !q->head;
}

/* Any context, before use. */
void sluice_co_rwlock_init(struct sluice_co_rwlock *l)
{
	sluice_co_mutex_init(&l->mutex);
	l->readers = 0;
	sluice_co_queue_init(&l->queue);
}

/* Coroutine only.  Shares the lock unless a writer holds it or anyone waits (FIFO). */
TSA_NO_TSA void coroutine_fn sluice_co_rwlock_rdlock(struct sluice_co_rwlock *l)
{
	struct sluice_co_waiter w = { .co = co_self_or_die("sluice_co_rwlock_rdlock") };

	sluice_co_mutex_lock(&l->mutex);
	if (l->readers >= 0 && sluice_co_queue_empty(&l->queue)) {
		l->readers++;
		sluice_co_mutex_unlock(&l->mutex);
		return;
	}
	co_queue_push(&l->queue, &w);
	sluice_co_mutex_unlock(&l->mutex);
	co_wait_granted(&w);	/* the granter counted us in */
}

/* Coroutine only.  Exclusive; queues behind everyone already waiting. */
TSA_NO_TSA void coroutine_fn sluice_co_rwlock_wrlock(struct sluice_co_rwlock *l)
{
	struct sluice_co_waiter w = {
		.co = co_self_or_die("sluice_co_rwlock_wrlock"),
		.writer = true,
	};

	sluice_co_mutex_lock(&l->mutex);
	if (l->readers == 0 && sluice_co_queue_empty(&l->queue)) {
		l->readers = -1;
		sluice_co_mutex_unlock(&l->mutex);
		return;
	}
	co_queue_push(&l->queue, &w);
	sluice_co_mutex_unlock(&l->mutex);
	co_wait_granted(&w);
}

/* Coroutine holding @l shared or exclusive.  The last one out admits the next writer or readers. */
TSA_NO_TSA void coroutine_fn sluice_co_rwlock_unlock(struct sluice_co_rwlock *l)
{
	struct sluice_co_waiter *w;

	sluice_co_mutex_lock(&l->mutex);
	if (l->readers < 0)
		l->readers = 0;
	else if (l->readers > 0)
		l->readers--;
	if (l->readers == 0 && l->queue.head) {
		if (l->queue.head->writer) {
			l->readers = -1;
			co_grant(co_queue_pop(&l->queue));
		} else {
			while (l->queue.head && !l->queue.head->writer) {
				w = co_queue_pop(&l->queue);
				l->readers++;
				co_grant(w);
			}
		}
	}
	sluice_co_mutex_unlock(&l->mutex);
}
