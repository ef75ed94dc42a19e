/* SPDX-License-Identifier: GPL-2.0 */
/* iothread.h - named threads that each run one event loop. */
#ifndef SLUICE_IOTHREAD_H
#define SLUICE_IOTHREAD_H

#include <sys/types.h>

struct sluice_aio_ctx;
struct sluice_iothread;

/* Main thread.  Start a thread named @id running a new loop; NULL + errno on failure. */
struct sluice_iothread *sluice_iothread_new(const char *id);
/* Main thread.  Stop the loop (pending BHs run first), join the thread, free. */
void sluice_iothread_free(struct sluice_iothread *t);
const char *sluice_iothread_id(const struct sluice_iothread *t);
struct sluice_aio_ctx *sluice_iothread_ctx(const struct sluice_iothread *t);
/* The kernel thread id (gettid()) of the IOThread, valid once sluice_iothread_new() returned. */
pid_t sluice_iothread_tid(const struct sluice_iothread *t);

/* Iterate all IOThreads (main thread): returns the one after @prev (NULL: the first). */
struct sluice_iothread *sluice_iothread_next(struct sluice_iothread *prev);
struct sluice_iothread *sluice_iothread_find(const char *id);

/* Main thread: run @fn(@opaque) in @ctx's thread and wait for it to return. */
void sluice_aio_run_sync(struct sluice_aio_ctx *ctx, void (*fn)(void *), void *opaque);

#endif /* SLUICE_IOTHREAD_H */
