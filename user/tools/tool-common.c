// SPDX-License-Identifier: GPL-2.0
/* tool-common.c - helpers shared by sluice-img and sluice-io: event loop setup, option parsing, running coroutines. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "aio.h"
#include "block.h"
#include "util.h"

#include "tool-common.h"

int tool_parse_cache(const char *mode, struct tool_open_opts *o)
{
	o->flags &= ~SLUICE_BDRV_O_NOCACHE;
	o->writethrough = false;
	o->no_flush = false;
	if (!strcmp(mode, "none") || !strcmp(mode, "off")) {
		o->flags |= SLUICE_BDRV_O_NOCACHE;
	} else if (!strcmp(mode, "writeback")) {
		/* the default */
	} else if (!strcmp(mode, "writethrough")) {
		o->writethrough = true;
	} else if (!strcmp(mode, "directsync")) {
		o->flags |= SLUICE_BDRV_O_NOCACHE;
		o->writethrough = true;
	} else if (!strcmp(mode, "unsafe")) {
		o->no_flush = true;
	} else {
		return -EINVAL;
	}
	return 0;
}

int tool_parse_aio(const char *mode, struct tool_open_opts *o)
{
	if (!strcmp(mode, "io_uring"))
		o->flags &= ~SLUICE_BDRV_O_THREADS;
	else if (!strcmp(mode, "threads"))
		o->flags |= SLUICE_BDRV_O_THREADS;
	else if (!strcmp(mode, "native"))
		return -ENOTSUP;
	else
		return -EINVAL;
	return 0;
}

int tool_parse_num(const char *str, uint64_t *out)
{
	if (str[0] == '0' && (str[1] == 'x' || str[1] == 'X')) {
		const char *p = str + 2;
		uint64_t v = 0;

		if (!*p)
			return -EINVAL;
		for (; *p; p++) {
			int d;

			if (!isxdigit((unsigned char)*p))
				return -EINVAL;
			d = isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10;
			if (v > ((uint64_t)INT64_MAX >> 4))
				return -ERANGE;
			v = (v << 4) | (uint64_t)d;
		}
		*out = v;
		return 0;
	}
	return sluice_parse_size(str, out);
}

struct sluice_aio_ctx *tool_main_ctx_new(void)
{
	struct sluice_aio_ctx *ctx = sluice_aio_ctx_new("main", 0);

	if (ctx)
		sluice_aio_ctx_set_current(ctx);
	return ctx;
}

struct sluice_blk *tool_blk_open(const char *prog, struct sluice_aio_ctx *ctx, const char *filename,
				 const struct tool_open_opts *o)
{
	struct sluice_blk *blk;
	char *err = NULL;

	blk = sluice_blk_new_open(filename, o->fmt, o->flags, &err);
	if (!blk) {
		fprintf(stderr, "%s: Could not open '%s': %s\n", prog, filename,
			err ? err : "unknown error");
		g_free(err);
		return NULL;
	}
	g_free(err);
	if (sluice_blk_get_aio_context(blk) != ctx)
		sluice_blk_set_aio_context(blk, ctx);
	return blk;
}

struct tool_co {
	sluice_co_fn *fn;
	void *opaque;
	bool done;
};

static void coroutine_fn tool_co_entry(void *opaque)
{
	struct tool_co *t = opaque;

	t->fn(t->opaque);
	t->done = true;
}

void tool_run_co(struct sluice_aio_ctx *ctx, sluice_co_fn *fn, void *opaque)
{
	struct tool_co t = { .fn = fn, .opaque = opaque };

	sluice_co_enter(sluice_co_create(tool_co_entry, &t));
	while (!t.done)
		sluice_aio_poll(ctx, true);
}

double tool_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *tool_cvtstr(double v, char *buf, size_t len)
{
	static const char *const units[] = { " bytes", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB" };
	unsigned int i = 0;
	size_t n;

	while (v >= 1024 && i < sizeof(units) / sizeof(units[0]) - 1) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, "%.3f", v);
	n = strlen(buf);
	if (n >= 4 && !strcmp(buf + n - 4, ".000"))
		buf[n - 4] = '\0';
	strncat(buf, units[i], len - strlen(buf) - 1);
	return buf;
}

void *tool_alloc_buf(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 1))
		return NULL;
	return p;
}
