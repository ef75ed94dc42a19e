// SPDX-License-Identifier: GPL-2.0
/* coroutine.c - stackful coroutines: mmap'd stacks with guard pages, per-thread pools, cross-ctx scheduling. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aio.h"
#include "aio-internal.h"
#include "coroutine.h"

#if defined(__SANITIZE_ADDRESS__)
#define CO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CO_ASAN 1
#endif
#endif
#ifdef CO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#define CO_STACK_SIZE		(1024 * 1024)
#define CO_POOL_THREAD_MAX	64
#define CO_POOL_GLOBAL_MAX	256

enum co_state {
	CO_CREATED,
	CO_RUNNING,
	CO_YIELDED,
	CO_TERMINATED,
};

struct sluice_co {
	void *sp;			/* saved stack pointer while switched out */
	sluice_co_fn *fn;
	void *opaque;
	enum co_state state;
	int scheduled;			/* atomic: queued on a ctx's co_sched */
	struct sluice_co *caller;	/* who entered us; we yield back to it */
	struct sluice_aio_ctx *ctx;	/* home: where we were last entered */
	struct sluice_aio_ctx *move_to;	/* set by sluice_co_move_to() before yielding */
	struct sluice_co *sched_next;	/* co_sched FIFO link */
	struct sluice_co *pool_next;	/* free pool link */
	void *stack;			/* mmap base, guard page first */
	size_t stack_size;
	void *asan_fake;		/* ASan fake stack saved while switched out */
	const void *asan_bottom;	/* usable stack, reported to ASan on switch-in */
	size_t asan_size;
};

/* Per-thread state; the leader stands for the thread's own stack. */
struct co_thread {
	bool init;
	struct sluice_co leader;
	struct sluice_co *current;
	struct sluice_co *pool;
	unsigned int pool_len;
	struct sluice_co *switch_from;	/* last context that switched on this thread */
};

void sluice_co_switch_stack(void **save_sp, void *load_sp);
void sluice_co_trampoline(void);

static __thread struct co_thread co_thread_state;
static unsigned long co_alive_count;

static pthread_mutex_t co_global_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sluice_co *co_global_pool;
static unsigned int co_global_len;
static pthread_key_t co_key;
static pthread_once_t co_key_once = PTHREAD_ONCE_INIT;

static void __attribute__((noreturn)) co_die(const char *what, const struct sluice_co *co)
{
	fprintf(stderr, "sluice coroutine %p: %s\n", (const void *)co, what);
	abort();
}

/* Any thread: free a coroutine that is not running (its stack too). */
static void co_destroy(struct sluice_co *co)
{
	munmap(co->stack, co->stack_size);
	free(co);
}

/* Thread exit (pthread key destructor): hand the thread's pool to the global one. */
static void co_thread_exit(void *arg)
{
	struct co_thread *t = arg;
	struct sluice_co *co;

	while ((co = t->pool)) {
		t->pool = co->pool_next;
		pthread_mutex_lock(&co_global_lock);
		if (co_global_len < CO_POOL_GLOBAL_MAX) {
			co->pool_next = co_global_pool;
			co_global_pool = co;
			co_global_len++;
			co = NULL;
		}
		pthread_mutex_unlock(&co_global_lock);
		if (co)
			co_destroy(co);
	}
	t->pool_len = 0;
}

static void co_key_create(void)
{
	if (pthread_key_create(&co_key, co_thread_exit))
		abort();
}

/*
 * Any thread.  Out of line behind a compiler barrier: a coroutine may resume
 * on another thread, so the TLS address must be recomputed after each switch.
 */
static __attribute__((noinline)) struct co_thread *co_tls(void)
{
	struct co_thread *t;

	asm volatile("" ::: "memory");
	t = &co_thread_state;
	if (!t->init) {
		t->init = true;
		t->current = &t->leader;
		t->leader.state = CO_RUNNING;
		pthread_once(&co_key_once, co_key_create);
		pthread_setspecific(co_key, t);
	}
	return t;
}

#ifdef CO_ASAN
/* Resumed context: tell ASan the switch finished and learn the stack we came from. */
static void co_asan_finish(void *fake)
{
	const void *bottom;
	size_t size;
	struct co_thread *t;

	__sanitizer_finish_switch_fiber(fake, &bottom, &size);
	t = co_tls();
	if (t->switch_from) {
		t->switch_from->asan_bottom = bottom;
		t->switch_from->asan_size = size;
	}
}
#endif

/* Any thread: switch from @from (the running context) to @to. */
static void co_switch(struct sluice_co *from, struct sluice_co *to, bool terminating)
{
	co_tls()->switch_from = from;
#ifdef CO_ASAN
	if (terminating)
		from->asan_fake = NULL;
	__sanitizer_start_switch_fiber(terminating ? NULL : &from->asan_fake,
				       to->asan_bottom, to->asan_size);
#endif
	sluice_co_switch_stack(&from->sp, to->sp);
#ifdef CO_ASAN
	co_asan_finish(from->asan_fake);
#endif
}

/* New stack, first entry (from sluice_co_trampoline): run bodies until the end of time. */
static void __attribute__((noreturn, used)) co_entry(struct sluice_co *co)
{
#ifdef CO_ASAN
	co_asan_finish(NULL);
#endif
	for (;;) {
		co->fn(co->opaque);
		co->state = CO_TERMINATED;
		__atomic_fetch_sub(&co_alive_count, 1, __ATOMIC_RELAXED);
		/* Parked in the pool from here; re-entered with a new fn. */
		co_switch(co, co->caller, true);
	}
}

/* Any thread: a new coroutine with its own stack, parked at the trampoline. */
static struct sluice_co *co_alloc(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct sluice_co *co;
	uint64_t *sp;

	co = calloc(1, sizeof(*co));
	if (!co)
		co_die("out of memory", NULL);
	co->stack_size = CO_STACK_SIZE;
	co->stack = mmap(NULL, co->stack_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (co->stack == MAP_FAILED)
		co_die("cannot map a stack", NULL);
	if (mprotect(co->stack, page, PROT_NONE) < 0)
		co_die("cannot protect the guard page", NULL);
	co->asan_bottom = (char *)co->stack + page;
	co->asan_size = co->stack_size - page;

	/* Frame popped by sluice_co_switch_stack(): r15 r14 r13 r12 rbx rbp, ret. */
	sp = (uint64_t *)(((uintptr_t)co->stack + co->stack_size) & ~(uintptr_t)15);
	*--sp = (uintptr_t)sluice_co_trampoline;	/* rsp is 16-aligned after ret */
	*--sp = 0;					/* rbp */
	*--sp = (uintptr_t)co_entry;			/* rbx */
	*--sp = (uintptr_t)co;				/* r12 */
	*--sp = 0;					/* r13 */
	*--sp = 0;					/* r14 */
	*--sp = 0;					/* r15 */
	co->sp = sp;
	return co;
}

/* Any thread. */
struct sluice_co *sluice_co_create(sluice_co_fn *fn, void *opaque)
{
	struct co_thread *t = co_tls();
	struct sluice_co *co = t->pool;

	if (co) {
		t->pool = co->pool_next;
		t->pool_len--;
	} else {
		pthread_mutex_lock(&co_global_lock);
		co = co_global_pool;
		if (co) {
			co_global_pool = co->pool_next;
			co_global_len--;
		}
		pthread_mutex_unlock(&co_global_lock);
		if (!co)
			co = co_alloc();
	}
	co->pool_next = NULL;
	co->fn = fn;
	co->opaque = opaque;
	co->state = CO_CREATED;
	co->scheduled = 0;
	co->caller = NULL;
	co->ctx = NULL;
	co->move_to = NULL;
	co->sched_next = NULL;
	__atomic_fetch_add(&co_alive_count, 1, __ATOMIC_RELAXED);
	return co;
}

/* Calling thread: a coroutine that returned goes back to the pool. */
static void co_pool_put(struct co_thread *t, struct sluice_co *co)
{
	if (t->pool_len < CO_POOL_THREAD_MAX) {
		co->pool_next = t->pool;
		t->pool = co;
		t->pool_len++;
		return;
	}
	pthread_mutex_lock(&co_global_lock);
	if (co_global_len < CO_POOL_GLOBAL_MAX) {
		co->pool_next = co_global_pool;
		co_global_pool = co;
		co_global_len++;
		co = NULL;
	}
	pthread_mutex_unlock(&co_global_lock);
	if (co)
		co_destroy(co);
}

/* Calling thread, running @ctx: run @co until it yields or returns. */
static void co_enter_in(struct sluice_co *co, struct sluice_aio_ctx *ctx)
{
	struct co_thread *t = co_tls();
	struct sluice_aio_ctx *target;

	if (co->state == CO_RUNNING)
		co_die("entered while already running", co);
	if (co->state == CO_TERMINATED)
		co_die("entered after it returned", co);
	if (!ctx)
		co_die("entered on a thread that runs no aio ctx", co);
	co->ctx = ctx;
	co->caller = t->current;
	co->state = CO_RUNNING;
	t->current = co;
	co_switch(co->caller, co, false);

	/* Back on our own stack (same thread): @co yielded or returned. */
	t->current = co->caller;
	if (co->state == CO_TERMINATED) {
		co_pool_put(t, co);
		return;
	}
	target = co->move_to;
	if (target) {
		/* Scheduled only now that it is truly off the CPU. */
		co->move_to = NULL;
		sluice_aio_co_schedule(target, co);
	}
}

/* Any thread running an aio ctx, coroutine or not. */
void sluice_co_enter(struct sluice_co *co)
{
	if (__atomic_load_n(&co->scheduled, __ATOMIC_ACQUIRE))
		co_die("entered while scheduled", co);
	co_enter_in(co, sluice_aio_current());
}

/* Coroutine only. */
void coroutine_fn sluice_co_yield(void)
{
	struct co_thread *t = co_tls();
	struct sluice_co *self = t->current;

	if (self == &t->leader)
		co_die("yield outside coroutine context", NULL);
	self->state = CO_YIELDED;
	co_switch(self, self->caller, false);
}

/* Any thread. */
struct sluice_co *sluice_co_self(void)
{
	struct co_thread *t = co_tls();

	return t->current == &t->leader ? NULL : t->current;
}

/* Any thread. */
bool sluice_in_co(void)
{
	return sluice_co_self() != NULL;
}

/* Any thread (the value is stable while @co is yielded). */
struct sluice_aio_ctx *sluice_co_ctx(const struct sluice_co *co)
{
	return co->ctx;
}

/* Any thread. */
unsigned long sluice_co_alive(void)
{
	return __atomic_load_n(&co_alive_count, __ATOMIC_RELAXED);
}

/* Any thread; @co is yielded (or about to yield on @ctx's own thread). */
void sluice_aio_co_schedule(struct sluice_aio_ctx *ctx, struct sluice_co *co)
{
	struct sluice_co_sched *s = sluice_aio_ctx_co_sched(ctx);
	int expected = 0;

	if (!__atomic_compare_exchange_n(&co->scheduled, &expected, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		co_die("scheduled twice", co);
	pthread_mutex_lock(&s->lock);
	co->sched_next = NULL;
	if (s->tail)
		s->tail->sched_next = co;
	else
		s->head = co;
	s->tail = co;
	pthread_mutex_unlock(&s->lock);
	sluice_bh_schedule(s->bh);
}

/* Home thread of @opaque (a ctx), BH callback: enter the scheduled coroutines in FIFO order. */
void sluice_co_sched_run(void *opaque)
{
	struct sluice_aio_ctx *ctx = opaque;
	struct sluice_co_sched *s = sluice_aio_ctx_co_sched(ctx);
	struct sluice_co *list, *co;

	pthread_mutex_lock(&s->lock);
	list = s->head;
	s->head = s->tail = NULL;
	pthread_mutex_unlock(&s->lock);
	while ((co = list)) {
		list = co->sched_next;
		co->sched_next = NULL;
		__atomic_store_n(&co->scheduled, 0, __ATOMIC_RELEASE);
		co_enter_in(co, ctx);
	}
}

/* Any thread. */
void sluice_aio_co_wake(struct sluice_co *co)
{
	struct sluice_aio_ctx *ctx = co->ctx;

	if (ctx == sluice_aio_current() && !sluice_in_co())
		sluice_co_enter(co);
	else
		sluice_aio_co_schedule(ctx, co);
}

/* Coroutine only. */
void coroutine_fn sluice_co_move_to(struct sluice_aio_ctx *ctx)
{
	struct sluice_co *self = sluice_co_self();

	if (!self)
		co_die("move_to outside coroutine context", NULL);
	self->move_to = ctx;
	sluice_co_yield();
}

/* Home thread, timer callback: the sleep is over. */
static void co_sleep_cb(void *opaque)
{
	sluice_aio_co_wake(opaque);
}

/* Coroutine only. */
void coroutine_fn sluice_co_sleep_ns(int64_t ns)
{
	struct sluice_co *self = sluice_co_self();
	struct sluice_timer *t;
	int64_t now;

	if (!self)
		co_die("sleep outside coroutine context", NULL);
	t = sluice_timer_new(self->ctx, co_sleep_cb, self);
	if (!t)
		co_die("out of memory", self);
	now = sluice_clock_ns();
	/* Saturate: a huge @ns sleeps "forever" rather than overflowing into the past. */
	sluice_timer_mod_ns(t, ns <= 0 ? now : (ns > INT64_MAX - now ? INT64_MAX : now + ns));
	sluice_co_yield();
	sluice_timer_free(t);
}
