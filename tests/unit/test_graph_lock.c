// SPDX-License-Identifier: GPL-2.0
/* test_graph_lock.c - unit tests for the block graph lock: readers in IOThreads, the main-thread writer, parking. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"
#include "iothread.h"
#include "co-test.h"
#include "ktap.h"

/* Shared between the readers and the writer of one case. */
static int readers_in;		/* atomic: readers between rdlock and rdunlock */
static int writer_in;		/* atomic: 1 while the writer holds the lock */
static int overlap;		/* atomic: a reader saw the writer inside, or the writer saw a reader */
static int readers_done;	/* atomic */
static int hold_reader;		/* atomic: the first reader keeps the lock while set */
static int reader_holding;	/* atomic: it holds the lock now */

/* Coroutine in an IOThread: take the lock, say so, keep it while told to. */
static void coroutine_fn holder_co(void *opaque)
{
	(void)opaque;
	sluice_graph_co_rdlock();
	__atomic_store_n(&reader_holding, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&hold_reader, __ATOMIC_SEQ_CST))
		sluice_co_sleep_ns(1000 * 1000);
	if (__atomic_load_n(&writer_in, __ATOMIC_SEQ_CST))
		__atomic_store_n(&overlap, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&reader_holding, 0, __ATOMIC_SEQ_CST);
	sluice_graph_co_rdunlock();
	__atomic_fetch_add(&readers_done, 1, __ATOMIC_SEQ_CST);
}

/* Coroutine in an IOThread: one short reader (it may have to park behind the writer). */
static void coroutine_fn short_reader_co(void *opaque)
{
	(void)opaque;
	sluice_graph_co_rdlock();
	if (__atomic_load_n(&writer_in, __ATOMIC_SEQ_CST))
		__atomic_store_n(&overlap, 1, __ATOMIC_SEQ_CST);
	sluice_graph_co_rdunlock();
	__atomic_fetch_add(&readers_done, 1, __ATOMIC_SEQ_CST);
}

/* Any thread: the writer waits for it; tells the holder to let go after a while. */
static void *release_later(void *opaque)
{
	(void)opaque;
	usleep(50 * 1000);
	__atomic_store_n(&hold_reader, 0, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * The writer waits for a reader in another thread to leave; a reader that
 * comes while the writer holds the lock parks, and runs after the unlock.
 */
static enum ktap_result writer_waits_and_readers_park(void)
{
	struct sluice_iothread *t = sluice_iothread_new("graph-a");
	int i, early, active, done_inside;
	pthread_t rel;

	KTAP_EXPECT(t, "iothread: %s", strerror(errno));
	co_test_setup();
	overlap = readers_done = 0;
	hold_reader = 1;
	sluice_aio_co_schedule(sluice_iothread_ctx(t), sluice_co_create(holder_co, NULL));
	for (i = 0; i < 5000 && !__atomic_load_n(&reader_holding, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	KTAP_EXPECT(reader_holding, "the reader never took the lock");
	KTAP_SYSCALL(-pthread_create(&rel, NULL, release_later, NULL));
	sluice_graph_wrlock();
	/* Only once the reader left (checked after the unlock: a failed check must not keep the lock). */
	early = __atomic_load_n(&reader_holding, __ATOMIC_SEQ_CST);
	__atomic_store_n(&writer_in, 1, __ATOMIC_SEQ_CST);
	active = sluice_graph_writer_active();
	/* New readers park while we hold it. */
	for (i = 0; i < 4; i++)
		sluice_aio_co_schedule(sluice_iothread_ctx(t), sluice_co_create(short_reader_co, NULL));
	usleep(30 * 1000);
	done_inside = __atomic_load_n(&readers_done, __ATOMIC_SEQ_CST);
	__atomic_store_n(&writer_in, 0, __ATOMIC_SEQ_CST);
	sluice_graph_wrunlock();
	pthread_join(rel, NULL);
	KTAP_EXPECT(!early, "writer in with a reader inside");
	KTAP_EXPECT(active, "writer not active");
	KTAP_EXPECT(done_inside == 1, "%d readers got in under the writer", done_inside - 1);
	for (i = 0; i < 5000 && __atomic_load_n(&readers_done, __ATOMIC_SEQ_CST) < 5; i++)
		usleep(1000);
	KTAP_EXPECT(readers_done == 5, "parked readers did not resume: %d done", readers_done);
	KTAP_EXPECT(!overlap, "a reader ran inside the writer's section");
	sluice_iothread_free(t);
	KTAP_EXPECT(sluice_co_alive() == 0, "alive %lu", sluice_co_alive());
	return KTAP_PASS;
}

static struct sluice_aio_ctx *move_target;

/* Coroutine: take the lock in one IOThread, drop it in another. */
static void coroutine_fn mover_co(void *opaque)
{
	(void)opaque;
	sluice_graph_co_rdlock();
	sluice_co_move_to(move_target);
	sluice_graph_co_rdunlock();
	__atomic_fetch_add(&readers_done, 1, __ATOMIC_SEQ_CST);
}

/* A reader that moved between threads still counts once: the writer neither hangs nor gets in early. */
static enum ktap_result reader_moves_threads(void)
{
	struct sluice_iothread *a = sluice_iothread_new("graph-b"), *b = sluice_iothread_new("graph-c");
	int i;

	KTAP_EXPECT(a && b, "iothreads: %s", strerror(errno));
	co_test_setup();
	readers_done = 0;
	move_target = sluice_iothread_ctx(b);
	for (i = 0; i < 64; i++)
		sluice_aio_co_schedule(sluice_iothread_ctx(a), sluice_co_create(mover_co, NULL));
	for (i = 0; i < 5000 && __atomic_load_n(&readers_done, __ATOMIC_SEQ_CST) < 64; i++)
		usleep(1000);
	KTAP_EXPECT(readers_done == 64, "%d of 64 movers done", readers_done);
	/* Counts: +64 in a, -64 in b; the sum is zero, so this returns at once. */
	sluice_graph_wrlock();
	sluice_graph_wrunlock();
	sluice_iothread_free(a);
	sluice_iothread_free(b);
	return KTAP_PASS;
}

static int stop_readers;	/* atomic */

/* Coroutine in an IOThread: readers back to back, each a loop turn long, until told to stop. */
static void coroutine_fn busy_reader_co(void *opaque)
{
	(void)opaque;
	while (!__atomic_load_n(&stop_readers, __ATOMIC_SEQ_CST)) {
		sluice_graph_co_rdlock();
		__atomic_fetch_add(&readers_in, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&writer_in, __ATOMIC_SEQ_CST))
			__atomic_store_n(&overlap, 1, __ATOMIC_SEQ_CST);
		co_test_yield_to_loop();
		__atomic_fetch_sub(&readers_in, 1, __ATOMIC_SEQ_CST);
		sluice_graph_co_rdunlock();
	}
	__atomic_fetch_add(&readers_done, 1, __ATOMIC_SEQ_CST);
}

/* Two IOThreads of busy readers and a main thread taking the writer lock 200 times: never both inside. */
static enum ktap_result writer_excludes_busy_readers(void)
{
	struct sluice_iothread *a = sluice_iothread_new("graph-d"), *b = sluice_iothread_new("graph-e");
	int i;

	KTAP_EXPECT(a && b, "iothreads: %s", strerror(errno));
	co_test_setup();
	overlap = readers_done = readers_in = stop_readers = 0;
	for (i = 0; i < 4; i++) {
		sluice_aio_co_schedule(sluice_iothread_ctx(a), sluice_co_create(busy_reader_co, NULL));
		sluice_aio_co_schedule(sluice_iothread_ctx(b), sluice_co_create(busy_reader_co, NULL));
	}
	for (i = 0; i < 200; i++) {
		sluice_graph_wrlock();
		__atomic_store_n(&writer_in, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&readers_in, __ATOMIC_SEQ_CST))
			__atomic_store_n(&overlap, 1, __ATOMIC_SEQ_CST);
		usleep(100);
		__atomic_store_n(&writer_in, 0, __ATOMIC_SEQ_CST);
		sluice_graph_wrunlock();
		usleep(200);
	}
	__atomic_store_n(&stop_readers, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 5000 && __atomic_load_n(&readers_done, __ATOMIC_SEQ_CST) < 8; i++)
		usleep(1000);
	KTAP_EXPECT(readers_done == 8, "%d of 8 readers finished", readers_done);
	KTAP_EXPECT(!overlap, "a reader and the writer were inside together");
	sluice_iothread_free(a);
	sluice_iothread_free(b);
	KTAP_EXPECT(sluice_co_alive() == 0, "alive %lu", sluice_co_alive());
	return KTAP_PASS;
}

/* A writer on a thread without an event loop sleeps until the readers are gone. */
static void *loopless_writer(void *opaque)
{
	int *got = opaque;

	sluice_graph_wrlock();
	*got = !__atomic_load_n(&reader_holding, __ATOMIC_SEQ_CST);
	sluice_graph_wrunlock();
	return NULL;
}

static enum ktap_result writer_without_a_loop(void)
{
	struct sluice_iothread *t = sluice_iothread_new("graph-f");
	pthread_t w, rel;
	int got = -1, i;

	KTAP_EXPECT(t, "iothread: %s", strerror(errno));
	readers_done = 0;
	hold_reader = 1;
	sluice_aio_co_schedule(sluice_iothread_ctx(t), sluice_co_create(holder_co, NULL));
	for (i = 0; i < 5000 && !__atomic_load_n(&reader_holding, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	KTAP_EXPECT(reader_holding, "the reader never took the lock");
	KTAP_SYSCALL(-pthread_create(&w, NULL, loopless_writer, &got));
	KTAP_SYSCALL(-pthread_create(&rel, NULL, release_later, NULL));
	pthread_join(w, NULL);
	pthread_join(rel, NULL);
	KTAP_EXPECT(got == 1, "the loopless writer got in with a reader inside (%d)", got);
	sluice_iothread_free(t);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(writer_waits_and_readers_park), KTAP_CASE(reader_moves_threads),
	  KTAP_CASE(writer_excludes_busy_readers), KTAP_CASE(writer_without_a_loop))
