// SPDX-License-Identifier: GPL-2.0
/* aio.c - the event loop: epoll over fd handlers, an eventfd and an io_uring; bottom halves and timers. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aio.h"
#include "aio-internal.h"

#define AIO_MAX_EVENTS	64

struct aio_handler {
	int fd;
	bool deleted;
	sluice_aio_fn *io_read;
	sluice_aio_fn *io_write;
	sluice_aio_poll_fn *io_poll;	/* busy-poll check (poll mode); NULL: none */
	sluice_aio_poll_fn *io_poll_end; /* before the loop sleeps; true: work came (NULL: none) */
	void *opaque;
	struct aio_handler *next;
};

/* All BH state below is under ctx->bh_lock. */
struct sluice_bh {
	struct sluice_aio_ctx *ctx;
	sluice_aio_fn *cb;
	void *opaque;
	bool scheduled;		/* run the callback at the next dispatch */
	bool queued;		/* linked on ctx->bh_head or on a poller's slice */
	unsigned int running;	/* callbacks in progress (a nested poll may run it again) */
	bool deleted;		/* free once neither queued nor running */
	bool oneshot;		/* delete after the first run */
	struct sluice_bh *next;
};

/*
 * The BHs one aio_bh_poll() took off ctx->bh_head, on its stack.  Home
 * thread only: every aio_bh_poll() in progress on the thread (nested ones,
 * run from a callback that polls the loop again) has its slice on
 * ctx->bh_slices, oldest first, until the slice is empty.
 */
struct aio_bh_slice {
	struct sluice_bh *head;			/* linked through bh->next, under bh_lock */
	struct aio_bh_slice *next;
};

struct sluice_timer {
	struct sluice_aio_ctx *ctx;
	sluice_aio_fn *cb;
	void *opaque;
	int64_t expire;		/* -1: not pending */
	struct sluice_timer *next;
};

struct aio_gsource {
	GSource source;
	struct sluice_aio_ctx *ctx;
	gpointer tag;
};

struct sluice_aio_ctx {
	char *name;
	int epfd;
	int evfd;
	struct io_uring ring;

	/*
	 * Set by the home thread while it may sleep in epoll (poll or GSource
	 * prepare..check); read by notifiers to decide whether to write evfd.
	 */
	int notify_me;
	unsigned long notify_count;	/* eventfd writes, for tests */

	pthread_mutex_t bh_lock;
	struct sluice_bh *bh_head, *bh_tail;	/* scheduled BHs, FIFO */

	/* Home thread only. */
	int64_t poll_ns;			/* busy-poll this long before sleeping (0: never) */
	struct aio_handler *handlers;
	unsigned int walking_handlers;
	struct aio_bh_slice *bh_slices, *bh_slices_tail;	/* FIFO: outermost poll first */
	struct sluice_timer *timers;		/* sorted by expire */

	struct sluice_co_sched co_sched;
	struct aio_gsource *gsource;
};

static __thread struct sluice_aio_ctx *aio_current_ctx;

/* Sentinels stored in epoll_event.data.ptr for the internal fds. */
static char aio_evfd_tag, aio_ring_tag;

/* Any thread. */
int64_t sluice_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Any thread.  Kept out of line with a compiler barrier so that a coroutine
 * moved to another thread never reuses a TLS address computed on the old one.
 */
__attribute__((noinline)) struct sluice_aio_ctx *sluice_aio_current(void)
{
	asm volatile("" ::: "memory");
	return aio_current_ctx;
}

/* Any thread: the calling thread becomes @ctx's home. */
__attribute__((noinline)) void sluice_aio_ctx_set_current(struct sluice_aio_ctx *ctx)
{
	asm volatile("" ::: "memory");
	aio_current_ctx = ctx;
}

/* Any thread. */
const char *sluice_aio_ctx_name(const struct sluice_aio_ctx *ctx)
{
	return ctx->name;
}

/* Any thread. */
struct sluice_co_sched *sluice_aio_ctx_co_sched(struct sluice_aio_ctx *ctx)
{
	return &ctx->co_sched;
}

/* Any thread (test hook): how many times the eventfd was written. */
unsigned long sluice_aio_ctx_notify_count(const struct sluice_aio_ctx *ctx)
{
	return __atomic_load_n(&ctx->notify_count, __ATOMIC_RELAXED);
}

/* Any thread. */
struct sluice_aio_ctx *sluice_aio_ctx_new(const char *name, unsigned int ring_entries)
{
	struct sluice_aio_ctx *ctx;
	struct epoll_event ev = { .events = EPOLLIN };
	int ret;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->name = strdup(name ? name : "aio");
	if (!ctx->name) {
		ret = -ENOMEM;
		goto err_free_ctx;
	}
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ctx->epfd < 0) {
		ret = -errno;
		goto err_free_name;
	}
	ctx->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctx->evfd < 0) {
		ret = -errno;
		goto err_close_epfd;
	}
	ev.data.ptr = &aio_evfd_tag;
	if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->evfd, &ev) < 0) {
		ret = -errno;
		goto err_close_evfd;
	}
	ret = io_uring_queue_init(ring_entries ? ring_entries : 256, &ctx->ring, 0);
	if (ret < 0)
		goto err_close_evfd;
	ev.data.ptr = &aio_ring_tag;
	if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->ring.ring_fd, &ev) < 0) {
		ret = -errno;
		goto err_exit_ring;
	}
	pthread_mutex_init(&ctx->bh_lock, NULL);
	pthread_mutex_init(&ctx->co_sched.lock, NULL);
	ctx->co_sched.bh = sluice_bh_new(ctx, sluice_co_sched_run, ctx);
	if (!ctx->co_sched.bh) {
		ret = -ENOMEM;
		goto err_destroy_locks;
	}
	return ctx;

err_destroy_locks:
	pthread_mutex_destroy(&ctx->co_sched.lock);
	pthread_mutex_destroy(&ctx->bh_lock);
err_exit_ring:
	io_uring_queue_exit(&ctx->ring);
err_close_evfd:
	close(ctx->evfd);
err_close_epfd:
	close(ctx->epfd);
err_free_name:
	free(ctx->name);
err_free_ctx:
	free(ctx);
	errno = -ret;
	return NULL;
}

/* Home thread, nothing pending. */
void sluice_aio_ctx_free(struct sluice_aio_ctx *ctx)
{
	struct aio_handler *h, *hn;
	struct sluice_bh *bh, *bn;
	bool co_bh_freed = false;

	if (ctx->gsource) {
		g_source_destroy(&ctx->gsource->source);
		g_source_unref(&ctx->gsource->source);
	}
	/* Anything still queued (e.g. cancelled or deleted BHs) is ours now. */
	for (bh = ctx->bh_head; bh; bh = bn) {
		bn = bh->next;
		bh->queued = false;
		if (bh == ctx->co_sched.bh)
			co_bh_freed = true;
		if (bh->deleted || bh == ctx->co_sched.bh)
			free(bh);
	}
	if (!co_bh_freed)
		free(ctx->co_sched.bh);
	for (h = ctx->handlers; h; h = hn) {
		hn = h->next;
		free(h);
	}
	io_uring_queue_exit(&ctx->ring);
	close(ctx->evfd);
	close(ctx->epfd);
	pthread_mutex_destroy(&ctx->co_sched.lock);
	pthread_mutex_destroy(&ctx->bh_lock);
	if (aio_current_ctx == ctx)
		aio_current_ctx = NULL;
	free(ctx->name);
	free(ctx);
}

/* Any thread: wake the home thread if (and only if) it is, or is about to be, asleep. */
void sluice_aio_notify(struct sluice_aio_ctx *ctx)
{
	uint64_t one = 1;

	/*
	 * Pairs with the fence in aio_prepare_sleep(): either the poller sees
	 * the work we published before this call, or we see its notify_me.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&ctx->notify_me, __ATOMIC_RELAXED))
		return;
	__atomic_fetch_add(&ctx->notify_count, 1, __ATOMIC_RELAXED);
	if (write(ctx->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		abort();
}

/* Home thread: read the eventfd dry. */
static void aio_evfd_drain(struct sluice_aio_ctx *ctx)
{
	uint64_t v;

	while (read(ctx->evfd, &v, sizeof(v)) == sizeof(v))
		;
}

/* ---- bottom halves ---- */

/* Any thread. */
struct sluice_bh *sluice_bh_new(struct sluice_aio_ctx *ctx, sluice_aio_fn *cb, void *opaque)
{
	struct sluice_bh *bh = calloc(1, sizeof(*bh));

	if (!bh)
		return NULL;
	bh->ctx = ctx;
	bh->cb = cb;
	bh->opaque = opaque;
	return bh;
}

/* Any thread. */
void sluice_bh_schedule(struct sluice_bh *bh)
{
	struct sluice_aio_ctx *ctx = bh->ctx;
	bool wake = false;

	pthread_mutex_lock(&ctx->bh_lock);
	if (!bh->scheduled && !bh->deleted) {
		bh->scheduled = true;
		wake = true;
		if (!bh->queued) {
			bh->queued = true;
			bh->next = NULL;
			if (ctx->bh_tail)
				ctx->bh_tail->next = bh;
			else
				__atomic_store_n(&ctx->bh_head, bh, __ATOMIC_RELAXED);
			ctx->bh_tail = bh;
		}
	}
	pthread_mutex_unlock(&ctx->bh_lock);
	if (wake)
		sluice_aio_notify(ctx);
}

/* Any thread. */
void sluice_bh_cancel(struct sluice_bh *bh)
{
	pthread_mutex_lock(&bh->ctx->bh_lock);
	bh->scheduled = false;
	pthread_mutex_unlock(&bh->ctx->bh_lock);
}

/* Any thread, also from @bh's own callback. */
void sluice_bh_delete(struct sluice_bh *bh)
{
	struct sluice_aio_ctx *ctx = bh->ctx;
	bool can_free;

	pthread_mutex_lock(&ctx->bh_lock);
	bh->deleted = true;
	bh->scheduled = false;
	can_free = !bh->queued && !bh->running;
	pthread_mutex_unlock(&ctx->bh_lock);
	if (can_free)
		free(bh);
}

/* Any thread. */
void sluice_aio_bh_oneshot(struct sluice_aio_ctx *ctx, sluice_aio_fn *cb, void *opaque)
{
	struct sluice_bh *bh = sluice_bh_new(ctx, cb, opaque);

	if (!bh)
		abort();
	bh->oneshot = true;
	sluice_bh_schedule(bh);
}

/* Home thread: has a poll still on the stack left BHs of its slice to run? */
static bool aio_bh_slices_pending(struct sluice_aio_ctx *ctx)
{
	return ctx->bh_slices != NULL;
}

/*
 * Home thread, also nested (from a callback that polls the loop again: a
 * drain, SLUICE_AIO_WAIT_WHILE, a synchronous request): run the BHs
 * scheduled so far, not those that they schedule.  "So far" includes what
 * the polls further up the stack took and have not run yet (their slices,
 * as QEMU's BHListSlice): a callback may be waiting for exactly such a BH,
 * which would otherwise only run after that callback returned.  Oldest
 * first, so BHs keep their FIFO order.  True if any ran.
 */
static bool aio_bh_poll(struct sluice_aio_ctx *ctx)
{
	struct aio_bh_slice slice = { 0 }, *s;
	struct sluice_bh *bh;
	bool progress = false, run, can_free;

	if (!__atomic_load_n(&ctx->bh_head, __ATOMIC_RELAXED) && !aio_bh_slices_pending(ctx))
		return false;
	pthread_mutex_lock(&ctx->bh_lock);
	slice.head = ctx->bh_head;
	__atomic_store_n(&ctx->bh_head, NULL, __ATOMIC_RELAXED);
	ctx->bh_tail = NULL;
	pthread_mutex_unlock(&ctx->bh_lock);
	if (ctx->bh_slices_tail)
		ctx->bh_slices_tail->next = &slice;
	else
		ctx->bh_slices = &slice;
	ctx->bh_slices_tail = &slice;

	/* Until every slice is empty: ours is off the list before we return. */
	while ((s = ctx->bh_slices)) {
		if (!s->head) {
			ctx->bh_slices = s->next;
			if (!ctx->bh_slices)
				ctx->bh_slices_tail = NULL;
			continue;
		}
		pthread_mutex_lock(&ctx->bh_lock);
		bh = s->head;
		s->head = bh->next;
		bh->queued = false;
		run = bh->scheduled;
		bh->scheduled = false;
		if (run)
			bh->running++;
		can_free = !run && bh->deleted && !bh->running;
		pthread_mutex_unlock(&ctx->bh_lock);
		if (can_free)
			free(bh);
		if (!run)
			continue;
		bh->cb(bh->opaque);
		progress = true;
		pthread_mutex_lock(&ctx->bh_lock);
		bh->running--;
		if (bh->oneshot)
			bh->deleted = true;
		can_free = bh->deleted && !bh->queued && !bh->running;
		pthread_mutex_unlock(&ctx->bh_lock);
		if (can_free)
			free(bh);
	}
	return progress;
}

/* ---- timers ---- */

/* Home thread. */
struct sluice_timer *sluice_timer_new(struct sluice_aio_ctx *ctx, sluice_aio_fn *cb, void *opaque)
{
	struct sluice_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ctx = ctx;
	t->cb = cb;
	t->opaque = opaque;
	t->expire = -1;
	return t;
}

/* Home thread. */
void sluice_timer_del(struct sluice_timer *t)
{
	struct sluice_timer **pp;

	if (t->expire < 0)
		return;
	for (pp = &t->ctx->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->expire = -1;
	t->next = NULL;
}

/* Home thread.  Timers with equal deadlines fire in the order they were armed. */
void sluice_timer_mod_ns(struct sluice_timer *t, int64_t expire_abs_ns)
{
	struct sluice_timer **pp;

	sluice_timer_del(t);
	if (expire_abs_ns < 0)
		expire_abs_ns = 0;
	t->expire = expire_abs_ns;
	for (pp = &t->ctx->timers; *pp && (*pp)->expire <= expire_abs_ns; pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	/* Not from inside the loop (e.g. GSource setup): let a sleeper recompute its timeout. */
	if (sluice_aio_current() != t->ctx)
		sluice_aio_notify(t->ctx);
}

/* Home thread. */
bool sluice_timer_pending(const struct sluice_timer *t)
{
	return t->expire >= 0;
}

/* Home thread, also from the timer's own callback. */
void sluice_timer_free(struct sluice_timer *t)
{
	if (!t)
		return;
	sluice_timer_del(t);
	free(t);
}

/* Home thread: fire due timers.  True if any fired. */
static bool aio_timers_run(struct sluice_aio_ctx *ctx)
{
	int64_t now;
	struct sluice_timer *t;
	bool progress = false;

	if (!ctx->timers)
		return false;
	now = sluice_clock_ns();
	while ((t = ctx->timers) && t->expire <= now) {
		ctx->timers = t->next;
		t->next = NULL;
		t->expire = -1;
		t->cb(t->opaque);
		progress = true;
	}
	return progress;
}

/* Home thread: ns until the nearest timer (0 if due), -1 if none. */
static int64_t aio_timers_deadline(struct sluice_aio_ctx *ctx)
{
	int64_t d;

	if (!ctx->timers)
		return -1;
	d = ctx->timers->expire - sluice_clock_ns();
	return d < 0 ? 0 : d;
}

/* ---- fd handlers ---- */

/* Home thread. */
static struct aio_handler *aio_find_handler(struct sluice_aio_ctx *ctx, int fd)
{
	struct aio_handler *h;

	for (h = ctx->handlers; h; h = h->next)
		if (h->fd == fd && !h->deleted)
			return h;
	return NULL;
}

/* Home thread: unlink and free deleted handlers once nobody walks the list. */
static void aio_reap_handlers(struct sluice_aio_ctx *ctx)
{
	struct aio_handler **pp, *h;

	if (ctx->walking_handlers)
		return;
	for (pp = &ctx->handlers; (h = *pp);) {
		if (h->deleted) {
			*pp = h->next;
			free(h);
		} else {
			pp = &h->next;
		}
	}
}

/* Home thread. */
int sluice_aio_set_fd_handler(struct sluice_aio_ctx *ctx, int fd, sluice_aio_fn *io_read,
			      sluice_aio_fn *io_write, void *opaque)
{
	struct aio_handler *h = aio_find_handler(ctx, fd);
	struct epoll_event ev = { 0 };

	if (!io_read && !io_write) {
		if (!h)
			return -ENOENT;
		epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, fd, NULL);
		h->deleted = true;
		aio_reap_handlers(ctx);
		return 0;
	}
	ev.events = (io_read ? EPOLLIN : 0) | (io_write ? EPOLLOUT : 0);
	if (h) {
		ev.data.ptr = h;
		if (epoll_ctl(ctx->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			return -errno;
	} else {
		h = calloc(1, sizeof(*h));
		if (!h)
			return -ENOMEM;
		h->fd = fd;
		ev.data.ptr = h;
		if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			int ret = -errno;

			free(h);
			return ret;
		}
		h->next = ctx->handlers;
		ctx->handlers = h;
	}
	h->io_read = io_read;
	h->io_write = io_write;
	h->opaque = opaque;
	return 0;
}

/* Home thread. */
int sluice_aio_set_fd_poll(struct sluice_aio_ctx *ctx, int fd, sluice_aio_poll_fn *io_poll)
{
	struct aio_handler *h = aio_find_handler(ctx, fd);

	if (!h)
		return -ENOENT;
	h->io_poll = io_poll;
	return 0;
}

/* Home thread. */
int sluice_aio_set_fd_poll_end(struct sluice_aio_ctx *ctx, int fd, sluice_aio_poll_fn *io_poll_end)
{
	struct aio_handler *h = aio_find_handler(ctx, fd);

	if (!h)
		return -ENOENT;
	h->io_poll_end = io_poll_end;
	return 0;
}

/*
 * Home thread: each handler's io_poll (@end false: a busy-poll round) or
 * io_poll_end (@end true: about to sleep, so the sources a poller silenced
 * can wake us again); the io_read of those that found work runs.  True if
 * any did (then do not sleep).
 */
static bool aio_poll_handlers(struct sluice_aio_ctx *ctx, bool end)
{
	struct aio_handler *h;
	bool found = false;

	ctx->walking_handlers++;
	for (h = ctx->handlers; h; h = h->next) {
		sluice_aio_poll_fn *fn = end ? h->io_poll_end : h->io_poll;

		if (!h->deleted && fn && h->io_read && fn(h->opaque)) {
			h->io_read(h->opaque);
			found = true;
		}
	}
	ctx->walking_handlers--;
	aio_reap_handlers(ctx);
	return found;
}

/* Home thread (or before the loop runs). */
void sluice_aio_set_poll_ns(struct sluice_aio_ctx *ctx, int64_t ns)
{
	ctx->poll_ns = ns > 0 ? ns : 0;
}

static int64_t aio_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Home thread, about to sleep: spin for up to ctx->poll_ns (less if a timer
 * is due sooner) looking for work that needs no wake-up: completions on the
 * ring, BHs, or a handler whose io_poll sees news (a virtqueue's avail index
 * moved: its io_read runs at once).  A wake-up through epoll costs far more
 * than this spin when requests come back to back, as QEMU's IOThreads found
 * (their poll-max-ns).  Returns true when it found work (do not sleep).
 */
static bool aio_busy_poll(struct sluice_aio_ctx *ctx, int64_t timeout)
{
	int64_t budget = ctx->poll_ns, end;

	if (timeout >= 0 && timeout < budget)
		budget = timeout;
	end = aio_now_ns() + budget;
	while (budget > 0) {
		if (io_uring_cq_ready(&ctx->ring) || __atomic_load_n(&ctx->bh_head, __ATOMIC_RELAXED) ||
		    aio_bh_slices_pending(ctx))
			return true;
		if (aio_poll_handlers(ctx, false))
			return true;
		__builtin_ia32_pause();
		if (aio_now_ns() >= end)
			break;
	}
	return aio_poll_handlers(ctx, true);	/* idle window: going to sleep */
}

/* ---- io_uring ---- */

/* Home thread. */
struct io_uring_sqe *sluice_aio_get_sqe(struct sluice_aio_ctx *ctx)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ctx->ring);

	if (!sqe) {
		io_uring_submit(&ctx->ring);
		sqe = io_uring_get_sqe(&ctx->ring);
		if (!sqe)
			return NULL;
	}
	memset(sqe, 0, sizeof(*sqe));
	return sqe;
}

/* Home thread. */
void sluice_aio_sqe_set_req(struct io_uring_sqe *sqe, struct sluice_aio_uring_req *req)
{
	io_uring_sqe_set_data(sqe, req);
}

/* Home thread. */
int sluice_aio_uring_flush(struct sluice_aio_ctx *ctx)
{
	if (!io_uring_sq_ready(&ctx->ring))
		return 0;
	return io_uring_submit(&ctx->ring);
}

/* Home thread: dispatch every completion; each CQE is consumed before its callback runs. */
static bool aio_uring_reap(struct sluice_aio_ctx *ctx)
{
	struct io_uring_cqe *cqe;
	bool progress = false;

	while (io_uring_peek_cqe(&ctx->ring, &cqe) == 0) {
		struct sluice_aio_uring_req *req = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&ctx->ring, cqe);
		if (req) {
			req->cb(req, res);
			progress = true;
		}
	}
	return progress;
}

/* ---- the loop ---- */

/* Home thread: is there something to do without sleeping? */
static bool aio_has_work(struct sluice_aio_ctx *ctx)
{
	return __atomic_load_n(&ctx->bh_head, __ATOMIC_RELAXED) || aio_bh_slices_pending(ctx) ||
	       io_uring_cq_ready(&ctx->ring) || aio_timers_deadline(ctx) == 0;
}

/*
 * Home thread: announce that we may sleep.  The fence pairs with the one in
 * sluice_aio_notify(): a notifier that published work before its fence is
 * either seen by our aio_has_work() or sees notify_me and writes the eventfd.
 */
static void aio_prepare_sleep(struct sluice_aio_ctx *ctx)
{
	__atomic_store_n(&ctx->notify_me, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Home thread: we are awake again; notifiers may skip the eventfd. */
static void aio_end_sleep(struct sluice_aio_ctx *ctx)
{
	__atomic_store_n(&ctx->notify_me, 0, __ATOMIC_RELAXED);
}

/*
 * Any thread: a ns timeout (-1 forever) as the ms that poll(2)-style calls
 * take, rounded up and saturated (a far timer must not wrap into "forever").
 */
static int aio_timeout_ms(int64_t timeout_ns)
{
	int64_t ms;

	if (timeout_ns < 0)
		return -1;
	ms = timeout_ns / 1000000 + (timeout_ns % 1000000 != 0);
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Home thread: epoll_wait with a ns timeout (-1 forever). */
static int aio_epoll_wait(struct sluice_aio_ctx *ctx, struct epoll_event *evs, int64_t timeout_ns)
{
	static int no_pwait2;
	struct timespec ts;
	int n;

	if (timeout_ns > 0 && !__atomic_load_n(&no_pwait2, __ATOMIC_RELAXED)) {
		ts.tv_sec = timeout_ns / 1000000000LL;
		ts.tv_nsec = timeout_ns % 1000000000LL;
		n = epoll_pwait2(ctx->epfd, evs, AIO_MAX_EVENTS, &ts, NULL);
		if (n >= 0 || errno != ENOSYS)
			return n;
		__atomic_store_n(&no_pwait2, 1, __ATOMIC_RELAXED);
	}
	return epoll_wait(ctx->epfd, evs, AIO_MAX_EVENTS, aio_timeout_ms(timeout_ns));
}

/* Home thread. */
bool sluice_aio_poll(struct sluice_aio_ctx *ctx, bool blocking)
{
	struct epoll_event evs[AIO_MAX_EVENTS];
	int64_t timeout = 0;
	bool progress = false, refused, polled;
	int i, n;

	sluice_aio_ctx_set_current(ctx);
	/* -EBUSY/-EAGAIN: the kernel wants completions reaped first; the SQEs stay queued. */
	refused = sluice_aio_uring_flush(ctx) < 0 && io_uring_sq_ready(&ctx->ring);
	polled = blocking && !refused && ctx->poll_ns && !aio_has_work(ctx);
	if (polled && aio_busy_poll(ctx, aio_timers_deadline(ctx))) {
		progress = true;
		blocking = false;	/* work found while spinning: collect it without sleeping */
	}
	/* Sleeping without an idle poll window behind us: let silenced sources wake us first. */
	if (blocking && !polled && aio_poll_handlers(ctx, true)) {
		progress = true;
		blocking = false;
	}
	if (blocking) {
		aio_prepare_sleep(ctx);
		timeout = aio_has_work(ctx) ? 0 : aio_timers_deadline(ctx);
		/* Never sleep on SQEs nobody submitted: try again within 1 ms. */
		if (refused && (timeout < 0 || timeout > 1000000))
			timeout = 1000000;
	}
	n = aio_epoll_wait(ctx, evs, timeout);
	if (blocking)
		aio_end_sleep(ctx);

	ctx->walking_handlers++;
	for (i = 0; i < n; i++) {
		struct aio_handler *h = evs[i].data.ptr;
		uint32_t e = evs[i].events;

		if (evs[i].data.ptr == &aio_evfd_tag) {
			aio_evfd_drain(ctx);
			continue;
		}
		if (evs[i].data.ptr == &aio_ring_tag)
			continue;
		if (!h->deleted && h->io_read && (e & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
			h->io_read(h->opaque);
			progress = true;
		}
		if (!h->deleted && h->io_write && (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
			h->io_write(h->opaque);
			progress = true;
		}
	}
	ctx->walking_handlers--;
	aio_reap_handlers(ctx);

	progress |= aio_uring_reap(ctx);
	progress |= aio_bh_poll(ctx);
	progress |= aio_timers_run(ctx);
	return progress;
}

/* ---- GSource ---- */

/* Main thread (GLib): sleep only as long as the nearest timer allows. */
static gboolean aio_gsource_prepare(GSource *source, gint *timeout)
{
	struct sluice_aio_ctx *ctx = ((struct aio_gsource *)source)->ctx;
	int64_t d;

	sluice_aio_uring_flush(ctx);
	/*
	 * GLib may sleep on us next: like sluice_aio_poll() before it sleeps,
	 * let the sources a poller silenced wake us (io_poll_end); work they
	 * found ran, so dispatch without sleeping.
	 */
	if (aio_poll_handlers(ctx, true)) {
		*timeout = 0;
		return TRUE;
	}
	aio_prepare_sleep(ctx);
	if (aio_has_work(ctx)) {
		aio_end_sleep(ctx);
		*timeout = 0;
		return TRUE;
	}
	d = aio_timers_deadline(ctx);
	*timeout = aio_timeout_ms(d);
	return FALSE;
}

/* Main thread (GLib). */
static gboolean aio_gsource_check(GSource *source)
{
	struct aio_gsource *s = (struct aio_gsource *)source;

	aio_end_sleep(s->ctx);
	return (g_source_query_unix_fd(source, s->tag) & G_IO_IN) || aio_has_work(s->ctx);
}

/* Main thread (GLib). */
static gboolean aio_gsource_dispatch(GSource *source, GSourceFunc cb, gpointer data)
{
	sluice_aio_poll(((struct aio_gsource *)source)->ctx, false);
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs aio_gsource_funcs = {
	.prepare = aio_gsource_prepare,
	.check = aio_gsource_check,
	.dispatch = aio_gsource_dispatch,
};

/* Main thread.  Returns a pointer borrowed from @ctx: attach it, do not unref it. */
GSource *sluice_aio_get_g_source(struct sluice_aio_ctx *ctx)
{
	struct aio_gsource *s;

	if (ctx->gsource)
		return &ctx->gsource->source;
	s = (struct aio_gsource *)g_source_new(&aio_gsource_funcs, sizeof(*s));
	s->ctx = ctx;
	s->tag = g_source_add_unix_fd(&s->source, ctx->epfd, G_IO_IN);
	g_source_set_name(&s->source, ctx->name);
	ctx->gsource = s;
	return &s->source;
}
