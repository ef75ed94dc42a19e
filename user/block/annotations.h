/* SPDX-License-Identifier: GPL-2.0 */
/* annotations.h - clang thread-safety attributes and the coroutine_fn marker used across the block layer. */
#ifndef SLUICE_ANNOTATIONS_H
#define SLUICE_ANNOTATIONS_H

/*
 * Lock rules are written with clang's thread-safety attributes and checked by
 * the clang build (-Wthread-safety).  With gcc they compile to nothing.
 */
#if defined(__clang__)
#define SLUICE_TSA(x)	__attribute__((x))
#else
#define SLUICE_TSA(x)
#endif

#define TSA_CAPABILITY(name)	SLUICE_TSA(capability(name))
#define TSA_GUARDED_BY(x)	SLUICE_TSA(guarded_by(x))
#define TSA_PT_GUARDED_BY(x)	SLUICE_TSA(pt_guarded_by(x))
#define TSA_REQUIRES(...)	SLUICE_TSA(requires_capability(__VA_ARGS__))
#define TSA_REQUIRES_SHARED(...) SLUICE_TSA(requires_shared_capability(__VA_ARGS__))
#define TSA_ACQUIRE(...)	SLUICE_TSA(acquire_capability(__VA_ARGS__))
#define TSA_ACQUIRE_SHARED(...)	SLUICE_TSA(acquire_shared_capability(__VA_ARGS__))
#define TSA_RELEASE(...)	SLUICE_TSA(release_capability(__VA_ARGS__))
#define TSA_RELEASE_SHARED(...)	SLUICE_TSA(release_shared_capability(__VA_ARGS__))
#define TSA_RELEASE_GENERIC(...) SLUICE_TSA(release_generic_capability(__VA_ARGS__))
#define TSA_TRY_ACQUIRE(...)	SLUICE_TSA(try_acquire_capability(__VA_ARGS__))
#define TSA_EXCLUDES(...)	SLUICE_TSA(locks_excluded(__VA_ARGS__))
#define TSA_ASSERT(...)		SLUICE_TSA(assert_capability(__VA_ARGS__))
#define TSA_NO_TSA		SLUICE_TSA(no_thread_safety_analysis)

/*
 * coroutine_fn: may only be called from coroutine context (it may yield).
 * Such functions also carry _co_ in their name.  The annotation is visible
 * to clang tooling; callers outside a coroutine are a bug.
 */
#if defined(__clang__)
#define coroutine_fn	__attribute__((annotate("coroutine_fn")))
#else
#define coroutine_fn
#endif

#endif /* SLUICE_ANNOTATIONS_H */
