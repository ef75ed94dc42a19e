// SPDX-License-Identifier: GPL-2.0
/* test_coroutine.c - unit tests for coroutines: switching, nesting, pooling, cross-thread scheduling, sleep. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aio.h"
#include "coroutine.h"
#include "iothread.h"
#include "ktap.h"

static struct sluice_aio_ctx *main_ctx;

/* Main thread: a ctx for the main thread, made current. */
static void setup(void)
{
	if (!main_ctx)
		main_ctx = sluice_aio_ctx_new("main", 0);
	sluice_aio_ctx_set_current(main_ctx);
}

static char trace[64];
static int trace_len;

static void mark(char c)
{
	trace[trace_len++] = c;
	trace[trace_len] = '\0';
}

static struct sluice_co *seen_self;

static void coroutine_fn yield_twice(void *opaque)
{
	mark('a');
	seen_self = sluice_in_co() ? sluice_co_self() : NULL;
	sluice_co_yield();
	mark('b');
	sluice_co_yield();
	mark('c');
}

static enum ktap_result enter_yield_return(void)
{
	struct sluice_co *co;

	setup();
	trace_len = 0;
	co = sluice_co_create(yield_twice, NULL);
	sluice_co_enter(co);
	KTAP_EXPECT(seen_self == co, "sluice_co_self() in the coroutine");
	KTAP_EXPECT(!sluice_in_co() && sluice_co_self() == NULL, "still in coroutine");
	KTAP_EXPECT(sluice_co_ctx(co) == main_ctx, "home ctx");
	KTAP_EXPECT(sluice_co_alive() == 1, "alive %lu", sluice_co_alive());
	sluice_co_enter(co);
	sluice_co_enter(co);
	KTAP_EXPECT(!strcmp(trace, "abc"), "trace %s", trace);
	KTAP_EXPECT(sluice_co_alive() == 0, "alive %lu", sluice_co_alive());
	return KTAP_PASS;
}

static struct sluice_co *inner_co, *outer_co;

static void coroutine_fn inner_fn(void *opaque)
{
	mark('i');
	sluice_co_yield();
	mark('j');
}

static void coroutine_fn outer_fn(void *opaque)
{
	mark('o');
	inner_co = sluice_co_create(inner_fn, NULL);
	sluice_co_enter(inner_co);		/* nested: runs until inner yields */
	mark(sluice_co_self() == outer_co ? 'p' : '!');
	sluice_co_yield();
	mark('q');
}

static enum ktap_result nesting(void)
{
	setup();
	trace_len = 0;
	outer_co = sluice_co_create(outer_fn, NULL);
	sluice_co_enter(outer_co);
	KTAP_EXPECT(!strcmp(trace, "oip"), "trace %s", trace);
	sluice_co_enter(inner_co);
	sluice_co_enter(outer_co);
	KTAP_EXPECT(!strcmp(trace, "oipjq"), "trace %s", trace);
	KTAP_EXPECT(sluice_co_alive() == 0, "alive %lu", sluice_co_alive());
	return KTAP_PASS;
}

static void coroutine_fn noop_fn(void *opaque)
{
	(*(int *)opaque)++;
}

static enum ktap_result pool_reuse(void)
{
	struct sluice_co *first, *co;
	int n = 0, i, reused = 0;

	setup();
	first = sluice_co_create(noop_fn, &n);
	sluice_co_enter(first);
	for (i = 0; i < 1000; i++) {
		co = sluice_co_create(noop_fn, &n);
		reused += co == first;
		sluice_co_enter(co);
	}
	KTAP_EXPECT(n == 1001, "ran %d", n);
	KTAP_EXPECT(reused == 1000, "stack reused %d times", reused);
	KTAP_EXPECT(sluice_co_alive() == 0, "alive %lu", sluice_co_alive());
	return KTAP_PASS;
}

struct xthread {
	struct sluice_aio_ctx *target;
	pid_t tid_there, tid_back;
	struct sluice_aio_ctx *ctx_there;
	int done;
};

static void coroutine_fn hop_fn(void *opaque)
{
	struct xthread *x = opaque;

	x->tid_there = gettid();
	x->ctx_there = sluice_aio_current();
	sluice_co_move_to(main_ctx);
	x->tid_back = gettid();
	x->done = 1;
}

static enum ktap_result schedule_onto_iothread(void)
{
	struct sluice_iothread *io;
	struct xthread x = { 0 };

	setup();
	io = sluice_iothread_new("co-sched");
	KTAP_EXPECT(io, "iothread: %s", strerror(errno));
	sluice_aio_co_schedule(sluice_iothread_ctx(io), sluice_co_create(hop_fn, &x));
	SLUICE_AIO_WAIT_WHILE(main_ctx, !x.done);
	KTAP_EXPECT(x.tid_there == sluice_iothread_tid(io), "ran on %d, not %d", x.tid_there,
		    sluice_iothread_tid(io));
	KTAP_EXPECT(x.ctx_there == sluice_iothread_ctx(io), "wrong current ctx there");
	KTAP_EXPECT(x.tid_back == gettid(), "did not come back");
	sluice_iothread_free(io);
	KTAP_EXPECT(sluice_co_alive() == 0, "alive %lu", sluice_co_alive());
	return KTAP_PASS;
}

static void coroutine_fn move_fn(void *opaque)
{
	struct xthread *x = opaque;
	int i;

	for (i = 0; i < 100; i++) {
		sluice_co_move_to(x->target);
		if (gettid() == getpid())
			return;
		x->tid_there = gettid();
		sluice_co_move_to(main_ctx);
		if (gettid() != getpid())
			return;
	}
	x->done = 1;
}

static enum ktap_result move_to_and_back(void)
{
	struct sluice_iothread *io;
	struct xthread x = { 0 };
	struct sluice_co *co;

	setup();
	io = sluice_iothread_new("co-move");
	x.target = sluice_iothread_ctx(io);
	co = sluice_co_create(move_fn, &x);
	sluice_co_enter(co);
	SLUICE_AIO_WAIT_WHILE(main_ctx, sluice_co_alive());
	KTAP_EXPECT(x.done && x.tid_there == sluice_iothread_tid(io), "moves failed");
	sluice_iothread_free(io);
	return KTAP_PASS;
}

static void coroutine_fn sleep_fn(void *opaque)
{
	int64_t *slept = opaque;
	int64_t start = sluice_clock_ns();

	sluice_co_sleep_ns(3000000);
	*slept = sluice_clock_ns() - start;
}

static enum ktap_result sleep_ns(void)
{
	int64_t slept = -1;

	setup();
	sluice_co_enter(sluice_co_create(sleep_fn, &slept));
	KTAP_EXPECT(slept == -1, "did not sleep");
	SLUICE_AIO_WAIT_WHILE(main_ctx, slept < 0);
	KTAP_EXPECT(slept >= 3000000, "slept only %lld ns", (long long)slept);
	return KTAP_PASS;
}

static void coroutine_fn sleep_forever_fn(void *opaque)
{
	int *woke = opaque;

	sluice_co_sleep_ns(INT64_MAX);
	*woke = 1;
}

/* A huge sleep saturates; it once overflowed now + ns into the past and returned at once. */
static enum ktap_result sleep_ns_saturates(void)
{
	struct sluice_co *co;
	int woke = 0, i;

	setup();
	co = sluice_co_create(sleep_forever_fn, &woke);
	sluice_co_enter(co);
	for (i = 0; i < 10; i++)
		sluice_aio_poll(main_ctx, false);
	KTAP_EXPECT(!woke, "INT64_MAX ns sleep ended at once");
	/* End it by hand: the sleeper frees its timer when it resumes. */
	sluice_co_enter(co);
	KTAP_EXPECT(woke && !sluice_aio_poll(main_ctx, false), "woke %d", woke);
	return KTAP_PASS;
}

static void coroutine_fn self_enter_fn(void *opaque)
{
	sluice_co_enter(sluice_co_self());
}

static enum ktap_result double_enter_aborts(void)
{
	pid_t pid;
	int status;

	setup();
	fflush(stdout);
	pid = fork();
	KTAP_SYSCALL(pid);
	if (!pid) {
		close(2);	/* keep the expected message out of the log */
		sluice_co_enter(sluice_co_create(self_enter_fn, NULL));
		_exit(0);
	}
	KTAP_SYSCALL(waitpid(pid, &status, 0));
	KTAP_EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x", status);
	return KTAP_PASS;
}

static void coroutine_fn deep_fn(void *opaque)
{
	volatile char buf[200 * 1024];
	int i;

	for (i = 0; i < (int)sizeof(buf); i += 4096)
		buf[i] = (char)i;
	*(int *)opaque = buf[4096];
}

static enum ktap_result large_stack_frames(void)
{
	int v = 0;

	setup();
	sluice_co_enter(sluice_co_create(deep_fn, &v));
	KTAP_EXPECT(v == (char)4096, "v %d", v);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(enter_yield_return), KTAP_CASE(nesting), KTAP_CASE(pool_reuse),
	  KTAP_CASE(schedule_onto_iothread), KTAP_CASE(move_to_and_back), KTAP_CASE(sleep_ns),
	  KTAP_CASE(sleep_ns_saturates), KTAP_CASE(double_enter_aborts), KTAP_CASE(large_stack_frames))
