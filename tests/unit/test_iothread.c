// SPDX-License-Identifier: GPL-2.0
/* test_iothread.c - unit tests for IOThreads: naming, tids, registry, run_sync, stop with pending BHs. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "aio.h"
#include "iothread.h"
#include "ktap.h"

struct where {
	pid_t tid;
	struct sluice_aio_ctx *ctx;
};

/* IOThread, via sluice_aio_run_sync(). */
static void record_where(void *opaque)
{
	struct where *w = opaque;

	w->tid = gettid();
	w->ctx = sluice_aio_current();
}

static enum ktap_result tid_queryable_and_distinct(void)
{
	struct sluice_iothread *a = sluice_iothread_new("io-a"), *b = sluice_iothread_new("io-b");
	struct where wa = { 0 }, wb = { 0 };
	char path[64], comm[32] = "";
	FILE *f;

	KTAP_EXPECT(a && b, "iothread_new: %s", strerror(errno));
	KTAP_EXPECT(sluice_iothread_tid(a) > 0 && sluice_iothread_tid(b) > 0, "no tid");
	KTAP_EXPECT(sluice_iothread_tid(a) != sluice_iothread_tid(b), "same tid");
	KTAP_EXPECT(sluice_iothread_tid(a) != gettid(), "tid of the main thread");
	sluice_aio_run_sync(sluice_iothread_ctx(a), record_where, &wa);
	sluice_aio_run_sync(sluice_iothread_ctx(b), record_where, &wb);
	KTAP_EXPECT(wa.tid == sluice_iothread_tid(a) && wb.tid == sluice_iothread_tid(b),
		    "run_sync ran on %d/%d", wa.tid, wb.tid);
	KTAP_EXPECT(wa.ctx == sluice_iothread_ctx(a), "current ctx in the IOThread");
	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", sluice_iothread_tid(a));
	f = fopen(path, "r");
	KTAP_EXPECT(f && fgets(comm, sizeof(comm), f), "read %s", path);
	fclose(f);
	KTAP_EXPECT(!strcmp(comm, "io-a\n"), "thread name '%s'", comm);
	sluice_iothread_free(a);
	sluice_iothread_free(b);
	return KTAP_PASS;
}

static enum ktap_result registry(void)
{
	struct sluice_iothread *a = sluice_iothread_new("reg-a"), *b = sluice_iothread_new("reg-b");
	struct sluice_iothread *t;
	int n = 0;

	KTAP_EXPECT(!sluice_iothread_new("reg-a") && errno == EEXIST, "duplicate id accepted");
	for (t = sluice_iothread_next(NULL); t; t = sluice_iothread_next(t))
		n++;
	KTAP_EXPECT(n == 2, "%d iothreads listed", n);
	KTAP_EXPECT(sluice_iothread_find("reg-b") == b && !strcmp(sluice_iothread_id(b), "reg-b"),
		    "find");
	sluice_iothread_free(a);
	KTAP_EXPECT(!sluice_iothread_find("reg-a") && sluice_iothread_next(NULL) == b, "after free");
	sluice_iothread_free(b);
	KTAP_EXPECT(!sluice_iothread_next(NULL), "registry not empty");
	return KTAP_PASS;
}

static int bh_runs;

/* IOThread, BH. */
static void count_bh(void *opaque)
{
	__atomic_fetch_add(&bh_runs, 1, __ATOMIC_RELAXED);
}

static enum ktap_result free_runs_pending_bhs(void)
{
	struct sluice_iothread *t = sluice_iothread_new("io-stop");
	int i;

	bh_runs = 0;
	for (i = 0; i < 50; i++)
		sluice_aio_bh_oneshot(sluice_iothread_ctx(t), count_bh, NULL);
	sluice_iothread_free(t);
	KTAP_EXPECT(bh_runs == 50, "%d of 50 BHs ran", bh_runs);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(tid_queryable_and_distinct), KTAP_CASE(registry), KTAP_CASE(free_runs_pending_bhs))
