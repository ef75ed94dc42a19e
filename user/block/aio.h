/* SPDX-License-Identifier: GPL-2.0 */
/* aio.h - the per-thread event loop (AioContext-like): fd handlers, bottom halves, timers, io_uring completions. */
#ifndef SLUICE_AIO_H
#define SLUICE_AIO_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <liburing.h>

#include "annotations.h"

/*
 * One event loop.  Each loop has a "home" thread: the thread that runs
 * sluice_aio_poll() on it (an IOThread, or the main thread through the GSource).
 * Functions say which thread may call them.  "Any thread" functions are
 * lock-free or take the loop's internal lock; nothing here blocks for long.
 */
struct sluice_aio_ctx;
struct sluice_bh;
struct sluice_timer;

typedef void sluice_aio_fn(void *opaque);
/* A poll-mode check: is there work for the handler, without reading its fd?  Home thread. */
typedef bool sluice_aio_poll_fn(void *opaque);

/* Any thread.  Creates a loop with an io_uring of @ring_entries (0: 256).  NULL + errno on failure. */
struct sluice_aio_ctx *sluice_aio_ctx_new(const char *name, unsigned int ring_entries);
/* Home thread, with no handlers, BHs or requests left pending.  Frees everything. */
void sluice_aio_ctx_free(struct sluice_aio_ctx *ctx);
const char *sluice_aio_ctx_name(const struct sluice_aio_ctx *ctx);

/*
 * The loop the calling thread is running (set by sluice_aio_poll() and by
 * sluice_aio_ctx_set_current()); NULL when the thread runs none.
 */
struct sluice_aio_ctx *sluice_aio_current(void);
/* Declare the calling thread the home of @ctx (an IOThread does this once at start). */
void sluice_aio_ctx_set_current(struct sluice_aio_ctx *ctx);

/*
 * Home thread.  Watch @fd: @io_read runs when it is readable, @io_write when
 * writable (either may be NULL; both NULL removes the fd).  Handlers run from
 * sluice_aio_poll() on the home thread.  Returns 0 or -errno.
 */
int sluice_aio_set_fd_handler(struct sluice_aio_ctx *ctx, int fd, sluice_aio_fn *io_read,
			      sluice_aio_fn *io_write, void *opaque);

/*
 * Poll mode.  Home thread.  Before it sleeps, a loop whose poll_ns is set
 * spins that long checking its ring, its BHs and the @io_poll of each fd
 * that has one (set_fd_poll, on an fd already watched; removing the fd's
 * handler drops it); an io_poll that returns true has its io_read run at
 * once.  set_poll_ns: 0 (the default) never spins; IOThreads use
 * SLUICE_IOTHREAD_POLL_NS_DEFAULT.
 */
#define SLUICE_IOTHREAD_POLL_NS_DEFAULT	32768
int sluice_aio_set_fd_poll(struct sluice_aio_ctx *ctx, int fd, sluice_aio_poll_fn *io_poll);
/*
 * Home thread.  @io_poll_end runs each time the loop is about to sleep (after
 * an idle poll window, or without polling at all, or before GLib sleeps on
 * the loop's GSource): a handler that left its
 * source's notifications off while the loop polled for it (a virtqueue
 * whose kicks would only cost exits) turns them back on there.  It returns
 * true when work arrived meanwhile: its io_read runs and the loop does not
 * sleep.  Set on an fd already watched, like io_poll.
 */
int sluice_aio_set_fd_poll_end(struct sluice_aio_ctx *ctx, int fd, sluice_aio_poll_fn *io_poll_end);
void sluice_aio_set_poll_ns(struct sluice_aio_ctx *ctx, int64_t ns);

/*
 * Bottom halves: a callback run once by the loop soon after it is scheduled.
 * new/delete: any thread.  schedule: any thread; scheduling an already
 * scheduled BH is a no-op; it wakes the loop only when it is asleep.
 * cancel: any thread; a BH whose callback already started is not stopped.
 * delete: any thread, including from the BH's own callback (the BH is freed
 * after the callback returns).  A callback may poll its loop again (a
 * drain, SLUICE_AIO_WAIT_WHILE): that poll also runs the BHs scheduled
 * before the callback started, in order, so it may wait for them.
 */
struct sluice_bh *sluice_bh_new(struct sluice_aio_ctx *ctx, sluice_aio_fn *cb, void *opaque);
void sluice_bh_schedule(struct sluice_bh *bh);
void sluice_bh_cancel(struct sluice_bh *bh);
void sluice_bh_delete(struct sluice_bh *bh);
/* Any thread: run @cb(@opaque) once in @ctx's loop (allocates; aborts on OOM). */
void sluice_aio_bh_oneshot(struct sluice_aio_ctx *ctx, sluice_aio_fn *cb, void *opaque);

/* Timers on CLOCK_MONOTONIC, in ns.  Home thread only.  A timer fires once per sluice_timer_mod_ns(). */
int64_t sluice_clock_ns(void);
struct sluice_timer *sluice_timer_new(struct sluice_aio_ctx *ctx, sluice_aio_fn *cb, void *opaque);
void sluice_timer_mod_ns(struct sluice_timer *t, int64_t expire_abs_ns);
void sluice_timer_del(struct sluice_timer *t);
bool sluice_timer_pending(const struct sluice_timer *t);
void sluice_timer_free(struct sluice_timer *t);

/*
 * io_uring.  Home thread only.  Get an SQE (flushing the ring to the kernel
 * when it is full), fill it, and attach @req with sluice_aio_sqe_set_req();
 * SQEs are submitted in batches by the loop before it waits.  When the CQE
 * arrives the loop calls req->cb(req, cqe->res) on the home thread.
 */
struct sluice_aio_uring_req {
	void (*cb)(struct sluice_aio_uring_req *req, int res);
};
struct io_uring_sqe *sluice_aio_get_sqe(struct sluice_aio_ctx *ctx);
void sluice_aio_sqe_set_req(struct io_uring_sqe *sqe, struct sluice_aio_uring_req *req);
/* Home thread: submit the queued SQEs now (the loop does this by itself before sleeping). */
int sluice_aio_uring_flush(struct sluice_aio_ctx *ctx);

/*
 * Home thread.  Run one iteration: dispatch ready fd handlers, due timers,
 * scheduled BHs and io_uring completions.  With @blocking, sleep until at
 * least one of them is ready.  Returns true if any callback ran.
 */
bool sluice_aio_poll(struct sluice_aio_ctx *ctx, bool blocking);

/* Any thread: make a sleeping sluice_aio_poll(@ctx, true) return (no write when nobody sleeps). */
void sluice_aio_notify(struct sluice_aio_ctx *ctx);
/* Any thread (test hook): how many times @ctx's wake-up eventfd has been written. */
unsigned long sluice_aio_ctx_notify_count(const struct sluice_aio_ctx *ctx);

/*
 * Main thread: a GSource that dispatches @ctx from a GLib main loop (one fd:
 * the loop's internal epoll fd).  The context takes a reference; the GSource
 * is owned by the ctx and destroyed by sluice_aio_ctx_free().  The pointer
 * returned is borrowed: g_source_attach() it, do not unref it.
 */
GSource *sluice_aio_get_g_source(struct sluice_aio_ctx *ctx);

/* Poll @ctx (home thread) until @cond is true: the building block of drain. */
#define SLUICE_AIO_WAIT_WHILE(ctx, cond)				\
	do {								\
		while (cond)						\
			sluice_aio_poll((ctx), true);			\
	} while (0)

#endif /* SLUICE_AIO_H */
