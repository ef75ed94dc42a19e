/* SPDX-License-Identifier: GPL-2.0 */
/* tool-common.h - helpers shared by sluice-img and sluice-io: event loop setup, option parsing, running coroutines. */
#ifndef SLUICE_TOOL_COMMON_H
#define SLUICE_TOOL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coroutine.h"

struct sluice_aio_ctx;
struct sluice_blk;

/* How an image is opened: block-layer flags plus the cache modes the tool emulates itself. */
struct tool_open_opts {
	const char *fmt;	/* NULL: probe */
	int flags;		/* SLUICE_BDRV_O_* */
	bool writethrough;	/* flush after every write (cache=writethrough/directsync) */
	bool no_flush;		/* cache=unsafe: flushes are no-ops */
};

/* Parse a qemu cache mode (none, writeback, writethrough, directsync, unsafe) into @o; 0 or -EINVAL. */
int tool_parse_cache(const char *mode, struct tool_open_opts *o);
/* Parse an aio mode (io_uring, threads); 0, -ENOTSUP (native) or -EINVAL. */
int tool_parse_aio(const char *mode, struct tool_open_opts *o);

/*
 * Parse a size/offset argument the way qemu's tools do: a decimal number
 * with an optional k/M/G/T/P/E suffix, or a 0x-prefixed hexadecimal number.
 * 0, -EINVAL or -ERANGE.
 */
int tool_parse_num(const char *str, uint64_t *out);

/* Create the main event loop and make it the calling thread's current one; NULL + errno. */
struct sluice_aio_ctx *tool_main_ctx_new(void);

/* Open @filename in @ctx; on failure prints "@prog: ..." on stderr and returns NULL. */
struct sluice_blk *tool_blk_open(const char *prog, struct sluice_aio_ctx *ctx, const char *filename,
				 const struct tool_open_opts *o);

/* Run @fn(@opaque) as a coroutine in @ctx and poll @ctx until it returns. */
void tool_run_co(struct sluice_aio_ctx *ctx, sluice_co_fn *fn, void *opaque);

/* Monotonic time in seconds. */
double tool_now(void);

/* Format @v as qemu-io does ("4 KiB", "1.500 KiB", "512 bytes") into @buf. */
char *tool_cvtstr(double v, char *buf, size_t len);

/* An aligned buffer (4 KiB, enough for O_DIRECT) of @len bytes (at least 1); NULL on OOM. */
void *tool_alloc_buf(size_t len);

#endif /* SLUICE_TOOL_COMMON_H */
