/* SPDX-License-Identifier: GPL-2.0 */
/* co-test.h - helpers shared by the coroutine and lock unit tests: the main thread's ctx, a yield through the loop. */
#ifndef SLUICE_CO_TEST_H
#define SLUICE_CO_TEST_H

#include "aio.h"
#include "coroutine.h"

/* Main thread: the test's ctx for the main thread (made on first use). */
static inline struct sluice_aio_ctx *co_test_main_ctx(void)
{
	static struct sluice_aio_ctx *main_ctx;

	if (!main_ctx)
		main_ctx = sluice_aio_ctx_new("main", 0);
	return main_ctx;
}

/* Main thread: make that ctx current. */
static inline void co_test_setup(void)
{
	sluice_aio_ctx_set_current(co_test_main_ctx());
}

/* Coroutine only: let the home loop run other things, then continue here. */
static inline void coroutine_fn co_test_yield_to_loop(void)
{
	struct sluice_co *self = sluice_co_self();

	sluice_aio_co_schedule(sluice_co_ctx(self), self);
	sluice_co_yield();
}

#endif /* SLUICE_CO_TEST_H */
