// SPDX-License-Identifier: GPL-2.0
/* test_co_lock.c - unit tests for CoMutex, CoQueue and CoRwlock, on one thread and across IOThreads. */
#include <errno.h>
#include <unistd.h>

#include "aio.h"
#include "coroutine.h"
#include "iothread.h"
#include "co-test.h"
#include "ktap.h"


static struct sluice_co_mutex mutex;
static int shared, inside, max_inside;
static int order[16], order_len;

static void coroutine_fn mutex_worker(void *opaque)
{
	int i, v;

	for (i = 0; i < 20; i++) {
		sluice_co_mutex_lock(&mutex);
		if (++inside > max_inside)
			max_inside = inside;
		v = shared;
		co_test_yield_to_loop();
		shared = v + 1;
		inside--;
		sluice_co_mutex_unlock(&mutex);
		co_test_yield_to_loop();
	}
}

static enum ktap_result mutex_excludes(void)
{
	int i;

	co_test_setup();
	sluice_co_mutex_init(&mutex);
	shared = inside = max_inside = 0;
	for (i = 0; i < 5; i++)
		sluice_co_enter(sluice_co_create(mutex_worker, NULL));
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), sluice_co_alive());
	KTAP_EXPECT(shared == 100 && max_inside == 1, "shared %d, max inside %d", shared, max_inside);
	return KTAP_PASS;
}

static void coroutine_fn fifo_waiter(void *opaque)
{
	sluice_co_mutex_lock(&mutex);
	order[order_len++] = (int)(intptr_t)opaque;
	sluice_co_mutex_unlock(&mutex);
}

static void coroutine_fn fifo_holder(void *opaque)
{
	sluice_co_mutex_lock(&mutex);
	sluice_co_yield();
	sluice_co_mutex_unlock(&mutex);
}

TSA_NO_TSA static enum ktap_result mutex_fifo(void)
{
	struct sluice_co *holder;
	int i;

	co_test_setup();
	sluice_co_mutex_init(&mutex);
	order_len = 0;
	holder = sluice_co_create(fifo_holder, NULL);
	sluice_co_enter(holder);
	KTAP_EXPECT(!sluice_co_mutex_trylock(&mutex), "trylock on a held mutex");
	for (i = 0; i < 8; i++)
		sluice_co_enter(sluice_co_create(fifo_waiter, (void *)(intptr_t)i));
	KTAP_EXPECT(order_len == 0, "a waiter got in");
	sluice_co_enter(holder);
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), sluice_co_alive());
	KTAP_EXPECT(order_len == 8, "only %d acquired", order_len);
	for (i = 0; i < 8; i++)
		KTAP_EXPECT(order[i] == i, "acquisition %d went to %d", i, order[i]);
	return KTAP_PASS;
}

static int cross_done;

static void coroutine_fn cross_worker(void *opaque)
{
	int i, v;

	for (i = 0; i < 200; i++) {
		sluice_co_mutex_lock(&mutex);
		v = shared;
		if (i % 4 == 0)
			co_test_yield_to_loop();	/* holding the lock: the other thread must wait */
		shared = v + 1;
		sluice_co_mutex_unlock(&mutex);
	}
	__atomic_fetch_add(&cross_done, 1, __ATOMIC_RELEASE);
}

static enum ktap_result mutex_across_iothreads(void)
{
	struct sluice_iothread *a = sluice_iothread_new("lock-a"), *b = sluice_iothread_new("lock-b");
	int i;

	KTAP_EXPECT(a && b, "iothreads: %s", strerror(errno));
	sluice_co_mutex_init(&mutex);
	shared = 0;
	cross_done = 0;
	for (i = 0; i < 3; i++) {
		sluice_aio_co_schedule(sluice_iothread_ctx(a), sluice_co_create(cross_worker, NULL));
		sluice_aio_co_schedule(sluice_iothread_ctx(b), sluice_co_create(cross_worker, NULL));
	}
	while (__atomic_load_n(&cross_done, __ATOMIC_ACQUIRE) < 6)
		usleep(1000);
	sluice_iothread_free(a);
	sluice_iothread_free(b);
	KTAP_EXPECT(shared == 6 * 200, "lost updates: %d", shared);
	KTAP_EXPECT(sluice_co_alive() == 0, "alive %lu", sluice_co_alive());
	return KTAP_PASS;
}

static struct sluice_co_queue queue;

static void coroutine_fn queue_waiter(void *opaque)
{
	sluice_co_mutex_lock(&mutex);
	sluice_co_queue_wait(&queue, &mutex);
	order[order_len++] = (int)(intptr_t)opaque;
	sluice_co_mutex_unlock(&mutex);
}

static enum ktap_result queue_next_and_restart_all(void)
{
	int i;

	co_test_setup();
	sluice_co_mutex_init(&mutex);
	sluice_co_queue_init(&queue);
	order_len = 0;
	KTAP_EXPECT(!sluice_co_queue_next(&queue), "next on empty queue");
	for (i = 0; i < 4; i++)
		sluice_co_enter(sluice_co_create(queue_waiter, (void *)(intptr_t)i));
	KTAP_EXPECT(!sluice_co_queue_empty(&queue) && order_len == 0, "waiters did not wait");
	KTAP_EXPECT(sluice_co_queue_next(&queue), "next found nobody");
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), order_len < 1);
	KTAP_EXPECT(order[0] == 0, "next woke %d", order[0]);
	sluice_co_queue_restart_all(&queue);
	KTAP_EXPECT(sluice_co_queue_empty(&queue), "restart_all left waiters");
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), sluice_co_alive());
	KTAP_EXPECT(order_len == 4 && order[1] == 1 && order[2] == 2 && order[3] == 3,
		    "order %d: %d %d %d", order_len, order[1], order[2], order[3]);
	return KTAP_PASS;
}

static struct sluice_co_rwlock rw;
static int readers_in, writer_in;

static void coroutine_fn reader(void *opaque)
{
	sluice_co_rwlock_rdlock(&rw);
	readers_in++;
	order[order_len++] = (int)(intptr_t)opaque;
	sluice_co_yield();		/* hold it until entered again */
	readers_in--;
	sluice_co_rwlock_unlock(&rw);
}

static void coroutine_fn writer(void *opaque)
{
	sluice_co_rwlock_wrlock(&rw);
	writer_in++;
	order[order_len++] = (int)(intptr_t)opaque;
	sluice_co_yield();
	writer_in--;
	sluice_co_rwlock_unlock(&rw);
}

static enum ktap_result rwlock_readers_share_writer_excludes(void)
{
	struct sluice_co *r1, *r2, *w;

	co_test_setup();
	sluice_co_rwlock_init(&rw);
	order_len = readers_in = writer_in = 0;
	r1 = sluice_co_create(reader, (void *)1);
	r2 = sluice_co_create(reader, (void *)2);
	w = sluice_co_create(writer, (void *)10);
	sluice_co_enter(r1);
	sluice_co_enter(r2);
	KTAP_EXPECT(readers_in == 2, "readers did not share: %d", readers_in);
	sluice_co_enter(w);
	while (sluice_aio_poll(co_test_main_ctx(), false))
		;
	KTAP_EXPECT(writer_in == 0, "writer got in with readers");
	sluice_co_enter(r1);
	while (sluice_aio_poll(co_test_main_ctx(), false))
		;
	KTAP_EXPECT(writer_in == 0, "writer got in with a reader");
	sluice_co_enter(r2);
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), !writer_in);
	KTAP_EXPECT(readers_in == 0, "reader inside with the writer");
	sluice_co_enter(w);
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), sluice_co_alive());
	return KTAP_PASS;
}

static enum ktap_result rwlock_writer_not_starved(void)
{
	struct sluice_co *r1, *r2, *w;

	co_test_setup();
	sluice_co_rwlock_init(&rw);
	order_len = readers_in = writer_in = 0;
	r1 = sluice_co_create(reader, (void *)1);
	w = sluice_co_create(writer, (void *)10);
	r2 = sluice_co_create(reader, (void *)2);
	sluice_co_enter(r1);
	sluice_co_enter(w);		/* waits for r1 */
	sluice_co_enter(r2);		/* arrives after the writer: queues behind it */
	while (sluice_aio_poll(co_test_main_ctx(), false))
		;
	KTAP_EXPECT(order_len == 1 && readers_in == 1, "late reader overtook the writer");
	sluice_co_enter(r1);
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), !writer_in);
	KTAP_EXPECT(order_len == 2 && order[1] == 10, "writer not next");
	sluice_co_enter(w);
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), order_len < 3);
	KTAP_EXPECT(order[2] == 2 && !writer_in, "reader after writer");
	sluice_co_enter(r2);
	SLUICE_AIO_WAIT_WHILE(co_test_main_ctx(), sluice_co_alive());
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(mutex_excludes), KTAP_CASE(mutex_fifo), KTAP_CASE(mutex_across_iothreads),
	  KTAP_CASE(queue_next_and_restart_all), KTAP_CASE(rwlock_readers_share_writer_excludes),
	  KTAP_CASE(rwlock_writer_not_starved))
