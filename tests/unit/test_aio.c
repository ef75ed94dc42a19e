// SPDX-License-Identifier: GPL-2.0
/* test_aio.c - unit tests for the event loop: bottom halves, wake-ups, timers, fd handlers, io_uring, GSource. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "ktap.h"

static int counter;

/* Main thread, BH. */
static void count_cb(void *opaque)
{
	int *n = opaque;

	(*n)++;
}

static enum ktap_result bh_schedule_runs_once(void)
{
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("t", 0);
	struct sluice_bh *bh;
	int n = 0;

	KTAP_EXPECT(ctx, "ctx_new: %s", strerror(errno));
	bh = sluice_bh_new(ctx, count_cb, &n);
	sluice_bh_schedule(bh);
	sluice_bh_schedule(bh);		/* already scheduled: no-op */
	KTAP_EXPECT(sluice_aio_poll(ctx, false), "poll reported no progress");
	KTAP_EXPECT(n == 1, "ran %d times", n);
	KTAP_EXPECT(!sluice_aio_poll(ctx, false), "second poll made progress");
	sluice_bh_schedule(bh);
	sluice_aio_poll(ctx, true);
	KTAP_EXPECT(n == 2, "rescheduled BH ran %d times", n);
	sluice_bh_delete(bh);
	sluice_aio_ctx_free(ctx);
	return KTAP_PASS;
}

static enum ktap_result bh_cancel(void)
{
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("t", 0);
	struct sluice_bh *bh = sluice_bh_new(ctx, count_cb, &counter);

	counter = 0;
	sluice_bh_schedule(bh);
	sluice_bh_cancel(bh);
	sluice_aio_poll(ctx, false);
	KTAP_EXPECT(counter == 0, "cancelled BH ran");
	/* Deleting a scheduled BH also stops it. */
	sluice_bh_schedule(bh);
	sluice_bh_delete(bh);
	sluice_aio_poll(ctx, false);
	KTAP_EXPECT(counter == 0, "deleted BH ran");
	sluice_aio_ctx_free(ctx);
	return KTAP_PASS;
}

struct self_delete {
	struct sluice_bh *bh;
	int runs;
};

/* Main thread, BH: deletes itself. */
static void self_delete_cb(void *opaque)
{
	struct self_delete *sd = opaque;

	sd->runs++;
	sluice_bh_schedule(sd->bh);	/* scheduled again, then deleted: must not run */
	sluice_bh_delete(sd->bh);
}

static enum ktap_result bh_delete_from_own_callback(void)
{
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("t", 0);
	struct self_delete sd = { 0 };
	int n = 0;

	sd.bh = sluice_bh_new(ctx, self_delete_cb, &sd);
	sluice_bh_schedule(sd.bh);
	sluice_aio_bh_oneshot(ctx, count_cb, &n);
	while (sluice_aio_poll(ctx, false))
		;
	KTAP_EXPECT(sd.runs == 1 && n == 1, "self-deleting BH ran %d times, oneshot %d", sd.runs, n);
	sluice_aio_ctx_free(ctx);
	return KTAP_PASS;
}

struct remote {
	struct sluice_aio_ctx *ctx;
	int done;
};

/* Remote thread. */
static void remote_done_cb(void *opaque)
{
	__atomic_store_n(&((struct remote *)opaque)->done, 1, __ATOMIC_RELEASE);
}

static void *remote_schedule_thread(void *arg)
{
	struct remote *r = arg;

	usleep(20000);	/* most likely the loop is asleep by now; correctness does not depend on it */
	sluice_aio_bh_oneshot(r->ctx, remote_done_cb, r);
	return NULL;
}

static enum ktap_result bh_from_other_thread_wakes_loop(void)
{
	struct remote r = { .ctx = sluice_aio_ctx_new("t", 0) };
	pthread_t th;
	int i;

	for (i = 0; i < 5; i++) {
		r.done = 0;
		pthread_create(&th, NULL, remote_schedule_thread, &r);
		SLUICE_AIO_WAIT_WHILE(r.ctx, !__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
		pthread_join(th, NULL);
	}
	ktap_diag("eventfd writes: %lu", sluice_aio_ctx_notify_count(r.ctx));
	sluice_aio_ctx_free(r.ctx);
	return KTAP_PASS;
}

/* Remote thread: schedule a BH while the loop is not polling. */
static void *remote_schedule_only(void *arg)
{
	struct remote *r = arg;

	sluice_aio_bh_oneshot(r->ctx, remote_done_cb, r);
	sluice_aio_notify(r->ctx);
	return NULL;
}

static enum ktap_result no_eventfd_write_when_awake(void)
{
	struct remote r = { .ctx = sluice_aio_ctx_new("t", 0) };
	unsigned long before = sluice_aio_ctx_notify_count(r.ctx);
	struct sluice_bh *bh = sluice_bh_new(r.ctx, count_cb, &counter);
	pthread_t th;
	int i;

	for (i = 0; i < 10; i++) {
		sluice_bh_schedule(bh);
		sluice_aio_notify(r.ctx);
	}
	pthread_create(&th, NULL, remote_schedule_only, &r);
	pthread_join(th, NULL);
	KTAP_EXPECT(sluice_aio_ctx_notify_count(r.ctx) == before, "%lu eventfd writes while awake",
		    sluice_aio_ctx_notify_count(r.ctx) - before);
	counter = 0;
	sluice_aio_poll(r.ctx, true);	/* work pending: must not sleep */
	KTAP_EXPECT(counter == 1 && r.done, "pending BHs did not run");
	sluice_bh_delete(bh);
	sluice_aio_ctx_free(r.ctx);
	return KTAP_PASS;
}

static int fire_order[8], fired;

/* Main thread, timer. */
static void timer_cb(void *opaque)
{
	fire_order[fired++] = (int)(intptr_t)opaque;
}

static enum ktap_result timers_fire_in_order(void)
{
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("t", 0);
	struct sluice_timer *t[5];
	int64_t now = sluice_clock_ns();
	int i;

	fired = 0;
	for (i = 0; i < 5; i++)
		t[i] = sluice_timer_new(ctx, timer_cb, (void *)(intptr_t)i);
	sluice_timer_mod_ns(t[0], now + 3000000);
	sluice_timer_mod_ns(t[1], now + 1000000);
	sluice_timer_mod_ns(t[2], now + 2000000);
	sluice_timer_mod_ns(t[3], now + 1500000);
	sluice_timer_mod_ns(t[3], now + 5000000);	/* re-armed later */
	sluice_timer_mod_ns(t[4], now + 2500000);
	sluice_timer_del(t[4]);
	KTAP_EXPECT(!sluice_timer_pending(t[4]) && sluice_timer_pending(t[0]), "pending state");
	SLUICE_AIO_WAIT_WHILE(ctx, fired < 4);
	KTAP_EXPECT(fire_order[0] == 1 && fire_order[1] == 2 && fire_order[2] == 0 &&
		    fire_order[3] == 3, "order %d %d %d %d", fire_order[0], fire_order[1],
		    fire_order[2], fire_order[3]);
	KTAP_EXPECT(sluice_clock_ns() >= now + 5000000, "fired early");
	KTAP_EXPECT(!sluice_timer_pending(t[3]), "fired timer still pending");
	for (i = 0; i < 5; i++)
		sluice_timer_free(t[i]);
	sluice_aio_ctx_free(ctx);
	return KTAP_PASS;
}

struct pipe_state {
	struct sluice_aio_ctx *ctx;
	int fds[2];
	int reads, writes;
	char last;
};

/* Main thread, fd handler. */
static void pipe_read_cb(void *opaque)
{
	struct pipe_state *p = opaque;

	if (read(p->fds[0], &p->last, 1) == 1)
		p->reads++;
}

/* Main thread, fd handler: write once, then remove ourselves. */
static void pipe_write_cb(void *opaque)
{
	struct pipe_state *p = opaque;

	if (write(p->fds[1], "x", 1) == 1)
		p->writes++;
	sluice_aio_set_fd_handler(p->ctx, p->fds[1], NULL, NULL, NULL);
}

static enum ktap_result fd_handlers(void)
{
	struct pipe_state p = { .ctx = sluice_aio_ctx_new("t", 0) };

	KTAP_SYSCALL(pipe2(p.fds, O_NONBLOCK | O_CLOEXEC));
	KTAP_EXPECT(sluice_aio_set_fd_handler(p.ctx, p.fds[0], pipe_read_cb, NULL, &p) == 0, "add");
	KTAP_EXPECT(!sluice_aio_poll(p.ctx, false), "nothing to read yet");
	KTAP_EXPECT(sluice_aio_set_fd_handler(p.ctx, p.fds[1], NULL, pipe_write_cb, &p) == 0, "add w");
	SLUICE_AIO_WAIT_WHILE(p.ctx, p.reads < 1);
	KTAP_EXPECT(p.writes == 1 && p.last == 'x', "writes %d last %c", p.writes, p.last);
	/* Removed: data arrives but nobody reads it. */
	KTAP_EXPECT(sluice_aio_set_fd_handler(p.ctx, p.fds[0], NULL, NULL, NULL) == 0, "remove");
	KTAP_EXPECT(sluice_aio_set_fd_handler(p.ctx, p.fds[0], NULL, NULL, NULL) == -ENOENT, "twice");
	KTAP_EXPECT(write(p.fds[1], "y", 1) == 1, "write");
	KTAP_EXPECT(!sluice_aio_poll(p.ctx, false) && p.reads == 1, "removed handler ran");
	close(p.fds[0]);
	close(p.fds[1]);
	sluice_aio_ctx_free(p.ctx);
	return KTAP_PASS;
}

/* A source whose notifications a poller turned off: io_poll_end says whether work came meanwhile. */
struct quiet_src {
	struct sluice_aio_ctx *ctx;
	int fds[2];
	int reads, ends;
	bool work_at_end;	/* the next io_poll_end reports work (once) */
	bool polled;		/* io_poll ran (poll mode) */
};

static void quiet_read(void *opaque)
{
	struct quiet_src *q = opaque;
	char c;

	while (read(q->fds[0], &c, 1) == 1)
		;
	q->reads++;
}

static bool quiet_poll(void *opaque)
{
	((struct quiet_src *)opaque)->polled = true;
	return false;
}

static bool quiet_poll_end(void *opaque)
{
	struct quiet_src *q = opaque;
	bool w = q->work_at_end;

	q->ends++;
	q->work_at_end = false;
	return w;
}

static void *write_later(void *opaque)
{
	struct quiet_src *q = opaque;

	usleep(50 * 1000);
	if (write(q->fds[1], "k", 1) != 1)
		abort();
	return NULL;
}

/*
 * io_poll_end runs before every sleep, polling or not: work it reports runs
 * the handler's io_read and the loop does not sleep; otherwise the loop
 * sleeps until the fd wakes it.
 */
static enum ktap_result poll_end_before_sleep(void)
{
	struct quiet_src q = { .ctx = sluice_aio_ctx_new("t", 0) };
	GMainContext *gc;
	int mode;

	KTAP_SYSCALL(pipe2(q.fds, O_NONBLOCK | O_CLOEXEC));
	KTAP_EXPECT(sluice_aio_set_fd_poll_end(q.ctx, q.fds[0], quiet_poll_end) == -ENOENT, "end on a stranger");
	KTAP_EXPECT(sluice_aio_set_fd_handler(q.ctx, q.fds[0], quiet_read, NULL, &q) == 0, "add");
	KTAP_EXPECT(sluice_aio_set_fd_poll(q.ctx, q.fds[0], quiet_poll) == 0, "poll");
	KTAP_EXPECT(sluice_aio_set_fd_poll_end(q.ctx, q.fds[0], quiet_poll_end) == 0, "poll end");
	for (mode = 0; mode < 2; mode++) {
		pthread_t t;

		/* mode 0: no poll mode; mode 1: a 200 us poll window before each sleep. */
		sluice_aio_set_poll_ns(q.ctx, mode ? 200000 : 0);
		q.reads = q.ends = 0;
		q.polled = false;
		q.work_at_end = true;
		KTAP_EXPECT(sluice_aio_poll(q.ctx, true), "mode %d: work at poll end, no progress", mode);
		KTAP_EXPECT(q.ends == 1 && q.reads == 1, "mode %d: ends %d reads %d", mode, q.ends, q.reads);
		KTAP_EXPECT(q.polled == (mode == 1), "mode %d: io_poll %s", mode, q.polled ? "ran" : "did not run");
		/* Nothing at poll end: it sleeps until the write. */
		KTAP_SYSCALL(-pthread_create(&t, NULL, write_later, &q));
		while (q.reads < 2)
			sluice_aio_poll(q.ctx, true);
		pthread_join(t, NULL);
		KTAP_EXPECT(q.ends >= 2, "mode %d: slept without io_poll_end (%d)", mode, q.ends);
	}
	/* Under a GLib main loop (the VMM's main thread): the GSource's prepare runs it before GLib sleeps. */
	gc = g_main_context_new();
	g_source_attach(sluice_aio_get_g_source(q.ctx), gc);
	q.reads = q.ends = 0;
	q.work_at_end = true;
	g_main_context_iteration(gc, TRUE);
	KTAP_EXPECT(q.ends >= 1 && q.reads == 1, "gsource: ends %d reads %d", q.ends, q.reads);
	sluice_aio_set_fd_handler(q.ctx, q.fds[0], NULL, NULL, NULL);
	close(q.fds[0]);
	close(q.fds[1]);
	sluice_aio_ctx_free(q.ctx);
	g_main_context_unref(gc);
	return KTAP_PASS;
}

struct uring_op {
	struct sluice_aio_uring_req req;
	int res;
	int done;
};

/* Main thread, io_uring completion. */
static void uring_cb(struct sluice_aio_uring_req *req, int res)
{
	struct uring_op *op = (struct uring_op *)req;

	op->res = res;
	op->done++;
}

static enum ktap_result uring_nop_and_read(void)
{
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("t", 8);
	struct uring_op nops[20], rd = { .req.cb = uring_cb };
	char path[] = "/tmp/sluice-test-aio-XXXXXX", buf[16] = { 0 };
	struct io_uring_sqe *sqe;
	int fd, i, total;

	/* More NOPs than SQ entries: get_sqe must flush. */
	for (i = 0; i < 20; i++) {
		nops[i] = (struct uring_op){ .req.cb = uring_cb, .res = -1 };
		sqe = sluice_aio_get_sqe(ctx);
		KTAP_EXPECT(sqe, "no sqe");
		io_uring_prep_nop(sqe);
		sluice_aio_sqe_set_req(sqe, &nops[i].req);
	}
	do {
		sluice_aio_poll(ctx, true);
		for (total = 0, i = 0; i < 20; i++)
			total += nops[i].done;
	} while (total < 20);
	for (i = 0; i < 20; i++)
		KTAP_EXPECT(nops[i].done == 1 && nops[i].res == 0, "nop %d: %d/%d", i, nops[i].done,
			    nops[i].res);

	fd = mkstemp(path);
	KTAP_SYSCALL(fd);
	unlink(path);
	KTAP_EXPECT(write(fd, "hello uring", 11) == 11, "write");
	sqe = sluice_aio_get_sqe(ctx);
	io_uring_prep_read(sqe, fd, buf, sizeof(buf), 0);
	sluice_aio_sqe_set_req(sqe, &rd.req);
	SLUICE_AIO_WAIT_WHILE(ctx, !rd.done);
	KTAP_EXPECT(rd.res == 11 && !memcmp(buf, "hello uring", 11), "read %d '%s'", rd.res, buf);
	close(fd);
	sluice_aio_ctx_free(ctx);
	return KTAP_PASS;
}

struct gs_state {
	GMainLoop *loop;
	struct sluice_aio_ctx *ctx;
	struct sluice_timer *timer;
	int bh_ran, timer_ran;
};

/* Main thread via the GSource. */
static void gs_timer_cb(void *opaque)
{
	struct gs_state *s = opaque;

	s->timer_ran++;
	if (s->bh_ran)
		g_main_loop_quit(s->loop);
}

/* Main thread via the GSource: scheduled from another thread. */
static void gs_bh_cb(void *opaque)
{
	struct gs_state *s = opaque;

	s->bh_ran++;
	if (s->timer_ran)
		g_main_loop_quit(s->loop);
}

static void *gs_thread(void *arg)
{
	struct gs_state *s = arg;

	usleep(5000);
	sluice_aio_bh_oneshot(s->ctx, gs_bh_cb, s);
	return NULL;
}

static enum ktap_result gsource_under_gmainloop(void)
{
	GMainContext *gctx = g_main_context_new();
	struct gs_state s = { .ctx = sluice_aio_ctx_new("gs", 0) };
	GSource *src = sluice_aio_get_g_source(s.ctx);
	pthread_t th;

	KTAP_EXPECT(src && src == sluice_aio_get_g_source(s.ctx), "one source per ctx");
	g_source_attach(src, gctx);
	s.loop = g_main_loop_new(gctx, FALSE);
	s.timer = sluice_timer_new(s.ctx, gs_timer_cb, &s);
	sluice_timer_mod_ns(s.timer, sluice_clock_ns() + 2000000);
	pthread_create(&th, NULL, gs_thread, &s);
	g_main_loop_run(s.loop);
	pthread_join(th, NULL);
	KTAP_EXPECT(s.bh_ran == 1 && s.timer_ran == 1, "bh %d timer %d", s.bh_ran, s.timer_ran);
	sluice_timer_free(s.timer);
	sluice_aio_ctx_free(s.ctx);
	g_main_loop_unref(s.loop);
	g_main_context_unref(gctx);
	return KTAP_PASS;
}

/*
 * A timer weeks away must make GLib sleep a long time, not forever: its ms
 * timeout once wrapped past INT_MAX into a negative ("infinite") one.
 */
static enum ktap_result gsource_far_timer_timeout(void)
{
	GMainContext *gctx = g_main_context_new();
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("far", 0);
	GSource *src = sluice_aio_get_g_source(ctx);
	struct sluice_timer *t = sluice_timer_new(ctx, count_cb, &counter);
	gint prio, timeout = 0, nfds;
	GPollFD fds[8];

	g_source_attach(src, gctx);
	KTAP_EXPECT(g_main_context_acquire(gctx), "acquire");
	/* 30 days: 2.6e9 ms does not fit a gint. */
	sluice_timer_mod_ns(t, sluice_clock_ns() + 30LL * 24 * 3600 * 1000000000LL);
	g_main_context_prepare(gctx, &prio);
	nfds = g_main_context_query(gctx, G_MAXINT, &timeout, fds, G_N_ELEMENTS(fds));
	KTAP_EXPECT(nfds >= 1, "nfds %d", nfds);
	KTAP_EXPECT(timeout > 24 * 3600 * 1000, "timeout %d ms for a timer in 30 days", timeout);
	g_main_context_check(gctx, prio, fds, nfds);
	/* The far end of time: no overflow anywhere (UBSan watches the asan build). */
	sluice_timer_mod_ns(t, INT64_MAX);
	g_main_context_prepare(gctx, &prio);
	nfds = g_main_context_query(gctx, G_MAXINT, &timeout, fds, G_N_ELEMENTS(fds));
	KTAP_EXPECT(timeout == G_MAXINT, "timeout %d ms for a timer at INT64_MAX", timeout);
	g_main_context_check(gctx, prio, fds, nfds);
	KTAP_EXPECT(!sluice_aio_poll(ctx, false) && sluice_timer_pending(t), "far timer fired");
	g_main_context_release(gctx);
	sluice_timer_free(t);
	sluice_aio_ctx_free(ctx);
	g_main_context_unref(gctx);
	return KTAP_PASS;
}

static enum ktap_result current_ctx(void)
{
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("cur", 0);

	sluice_aio_ctx_set_current(NULL);
	KTAP_EXPECT(!sluice_aio_current(), "stale current");
	sluice_aio_poll(ctx, false);
	KTAP_EXPECT(sluice_aio_current() == ctx, "poll did not set current");
	KTAP_EXPECT(!strcmp(sluice_aio_ctx_name(ctx), "cur"), "name");
	sluice_aio_ctx_free(ctx);
	KTAP_EXPECT(!sluice_aio_current(), "freed ctx still current");
	return KTAP_PASS;
}

/* A BH that polls the loop again until another BH ran (a drain run from a BH). */
struct nested_bh {
	struct sluice_aio_ctx *ctx;
	struct sluice_bh *later, *again;	/* scheduled after the waiter, same batch */
	char order[8];				/* which BHs ran, in order */
	int n;
	bool timed_out;
};

/* Main thread, BH: record that BH @c ran. */
static void nested_note(struct nested_bh *nb, char c)
{
	if (nb->n < (int)sizeof(nb->order) - 1)
		nb->order[nb->n++] = c;
}

static void nested_later_cb(void *opaque)
{
	nested_note(opaque, 'L');
}

static void nested_again_cb(void *opaque)
{
	nested_note(opaque, 'A');
}

static void nested_new_cb(void *opaque)
{
	nested_note(opaque, 'N');
}

static void nested_timeout_cb(void *opaque)
{
	struct nested_bh *nb = opaque;

	nb->timed_out = true;
}

/*
 * Main thread, BH: schedule a new BH, re-schedule one already scheduled
 * (a no-op), then poll until both BHs of the outer batch ran; a timer
 * ends the wait if they never do.
 */
static void nested_waiter_cb(void *opaque)
{
	struct nested_bh *nb = opaque;
	struct sluice_timer *t = sluice_timer_new(nb->ctx, nested_timeout_cb, nb);

	nested_note(nb, 'W');
	sluice_aio_bh_oneshot(nb->ctx, nested_new_cb, nb);
	sluice_bh_schedule(nb->again);
	sluice_timer_mod_ns(t, sluice_clock_ns() + 2000000000LL);
	while (!strchr(nb->order, 'L') || !strchr(nb->order, 'A')) {
		if (nb->timed_out)
			break;
		sluice_aio_poll(nb->ctx, true);
	}
	sluice_timer_free(t);
}

/*
 * A BH callback that waits in a nested poll for BHs scheduled after it in
 * the same batch (one of them scheduled again meanwhile) sees them run,
 * before the BHs it scheduled itself.
 */
static enum ktap_result bh_nested_poll_runs_outer_batch(void)
{
	struct nested_bh nb = { .ctx = sluice_aio_ctx_new("t", 0) };
	struct sluice_bh *waiter;

	KTAP_EXPECT(nb.ctx, "ctx_new: %s", strerror(errno));
	waiter = sluice_bh_new(nb.ctx, nested_waiter_cb, &nb);
	nb.later = sluice_bh_new(nb.ctx, nested_later_cb, &nb);
	nb.again = sluice_bh_new(nb.ctx, nested_again_cb, &nb);
	sluice_bh_schedule(waiter);
	sluice_bh_schedule(nb.later);
	sluice_bh_schedule(nb.again);
	KTAP_EXPECT(sluice_aio_poll(nb.ctx, false), "no progress");
	KTAP_EXPECT(!nb.timed_out, "the nested poll never ran the outer batch: ran \"%s\"", nb.order);
	KTAP_EXPECT(!strcmp(nb.order, "WLAN"), "order \"%s\"", nb.order);
	KTAP_EXPECT(!sluice_aio_poll(nb.ctx, false), "left over work");
	sluice_bh_delete(waiter);
	sluice_bh_delete(nb.later);
	sluice_bh_delete(nb.again);
	sluice_aio_ctx_free(nb.ctx);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(bh_schedule_runs_once), KTAP_CASE(bh_cancel),
	  KTAP_CASE(bh_delete_from_own_callback), KTAP_CASE(bh_from_other_thread_wakes_loop),
	  KTAP_CASE(no_eventfd_write_when_awake), KTAP_CASE(timers_fire_in_order),
	  KTAP_CASE(fd_handlers), KTAP_CASE(poll_end_before_sleep), KTAP_CASE(uring_nop_and_read), KTAP_CASE(gsource_under_gmainloop),
	  KTAP_CASE(gsource_far_timer_timeout), KTAP_CASE(current_ctx),
	  KTAP_CASE(bh_nested_poll_runs_outer_batch))
