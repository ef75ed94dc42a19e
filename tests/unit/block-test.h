/* SPDX-License-Identifier: GPL-2.0 */
/* block-test.h - helpers shared by the block layer unit tests: scratch files on a real filesystem, running coroutines. */
#ifndef SLUICE_TESTS_BLOCK_TEST_H
#define SLUICE_TESTS_BLOCK_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"

/*
 * Scratch directory: $SLUICE_TEST_DIR, else $MESON_BUILD_ROOT, else the
 * working directory (meson runs tests in the build dir, a real filesystem,
 * unlike a tmpfs /tmp that refuses O_DIRECT).  Main thread.
 */
static void bt_rmdir(void);

static inline const char *bt_dir(void)
{
	static char dir[4096];
	const char *base;

	if (dir[0])
		return dir;
	base = getenv("SLUICE_TEST_DIR");
	if (!base)
		base = getenv("MESON_BUILD_ROOT");
	if (!base)
		base = ".";
	snprintf(dir, sizeof(dir), "%s/sluice-test-XXXXXX", base);
	if (!mkdtemp(dir))
		snprintf(dir, sizeof(dir), ".");
	else
		atexit(bt_rmdir);	/* gone when empty; a failed test's files stay to be looked at */
	return dir;
}

/* Main thread: a fresh path in the scratch dir (the file is removed first). */
static inline const char *bt_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", bt_dir(), name);
	unlink(buf);
	return buf;
}

/* Main thread: remove the scratch dir (files in it must be unlinked already). */
static inline void bt_cleanup(void)
{
	if (strcmp(bt_dir(), "."))
		rmdir(bt_dir());
}

/* At exit: the same, for the tests that do not call bt_cleanup themselves. */
static void bt_rmdir(void)
{
	bt_cleanup();
}

/* Does the scratch filesystem take O_DIRECT?  Main thread. */
static inline bool bt_odirect_ok(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECT);

	if (fd < 0)
		return errno != EINVAL;
	close(fd);
	return true;
}

struct bt_co_call {
	int (*fn)(void *opaque);
	void *opaque;
	int ret;
	bool done;
};

static void coroutine_fn bt_co_entry(void *opaque)
{
	struct bt_co_call *c = opaque;

	c->ret = c->fn(c->opaque);
	c->done = true;
}

/* Main thread: run @fn(@opaque) in a coroutine in the main ctx, polling until it returns. */
static inline int bt_run_co(int (*fn)(void *opaque), void *opaque)
{
	struct sluice_aio_ctx *ctx = sluice_block_main_ctx();
	struct bt_co_call c = { .fn = fn, .opaque = opaque };

	sluice_co_enter(sluice_co_create(bt_co_entry, &c));
	SLUICE_AIO_WAIT_WHILE(ctx, !c.done);
	return c.ret;
}

/* Main thread: whole-file compare against @model through a plain fd. */
static inline int bt_compare_file(const char *path, const unsigned char *model, size_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	int fd = open(path, O_RDONLY);
	size_t i;
	ssize_t n;

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	n = pread(fd, buf, len, 0);
	close(fd);
	if (n != (ssize_t)len) {
		free(buf);
		return -2;
	}
	for (i = 0; i < len; i++) {
		if (buf[i] != model[i]) {
			printf("# mismatch at %zu: file %02x model %02x\n", i, buf[i], model[i]);
			free(buf);
			return -3;
		}
	}
	free(buf);
	return 0;
}

#endif /* SLUICE_TESTS_BLOCK_TEST_H */
