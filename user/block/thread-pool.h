/* SPDX-License-Identifier: GPL-2.0 */
/* thread-pool.h - worker threads for blocking syscalls (aio=threads); completions return to the submitter's ctx. */
#ifndef SLUICE_THREAD_POOL_H
#define SLUICE_THREAD_POOL_H

#include "annotations.h"

/* Runs in a worker thread; returns a result (0 / bytes or -errno) handed back to the submitter. */
typedef int sluice_thread_pool_fn(void *opaque);

/*
 * Coroutine only (any thread running an aio ctx): run @fn(@opaque) in a
 * worker and yield until it finished; the coroutine is re-entered in its
 * home ctx through a BH.  @opaque must stay valid until this returns.
 * Returns what @fn returned.
 */
int coroutine_fn sluice_thread_pool_co_submit(sluice_thread_pool_fn *fn, void *opaque);

/* Any thread: number of worker threads alive (for tests). */
unsigned int sluice_thread_pool_workers(void);

#endif /* SLUICE_THREAD_POOL_H */
