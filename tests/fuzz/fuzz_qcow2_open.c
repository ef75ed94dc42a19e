// SPDX-License-Identifier: GPL-2.0
/* fuzz_qcow2_open.c - libFuzzer target: arbitrary bytes opened as a qcow2 image (header, tables, backing name), read, written, checked. */
// fuzz-sources: user/block/aio.c user/block/coroutine.c user/block/coroutine-lock.c
// fuzz-sources: user/block/coroutine-switch.S user/block/iothread.c user/block/block.c
// fuzz-sources: user/block/block-backend.c user/block/thread-pool.c user/block/file.c user/block/raw.c
// fuzz-sources: user/block/qcow2.c user/block/qcow2-cache.c user/block/qcow2-cluster.c
// fuzz-sources: user/block/qcow2-compress.c user/block/qcow2-refcount.c user/block/qcow2-check.c
// fuzz-sources: user/block/graph-lock.c
// fuzz-pkgs: glib-2.0 liburing zlib libzstd
// fuzz-cflags: -Iuser/block
// fuzz-seed: tests/fuzz/qcow2_seeds.sh
// fuzz-args: -close_fd_mask=2 -malloc_limit_mb=128
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "block.h"
#include "qcow2.h"

/*
 * "Never a huge allocation" on a hostile image is checked too: libFuzzer
 * fails the run on any single allocation above -malloc_limit_mb (128 MiB).
 *
 * One input: the image file.  Opened read-only (a backing file name that
 * resolves nowhere just fails the open), then a few reads spread over the
 * guest, so L1/L2 lookups, zero, compressed and unallocated clusters run.
 * Then opened read-write (a corrupt or dirty image may refuse): sub-cluster
 * writes spread over the guest (allocation, COW, refcount updates on
 * whatever tables the input holds), and the consistency check over the
 * result.  Crashes, sanitizer reports and hangs are the findings; errors
 * are fine (the check's messages on stderr are dropped: -close_fd_mask=2,
 * libFuzzer and the sanitizers keep their own copy of stderr).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *buf;
	char path[64], *err = NULL;
	struct sluice_blk *blk;
	int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);
	int64_t len;
	int i;

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	if (!buf)
		buf = malloc(1 << 20);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	blk = sluice_blk_new_open(path, "qcow2", 0, &err);
	g_free(err);
	err = NULL;
	if (blk) {
		len = sluice_blk_getlength(blk);
		for (i = 0; i < 8 && len > 0; i++) {
			uint64_t off = (uint64_t)len / 8 * i;
			uint64_t n = (uint64_t)len - off < (1u << 16) ? (uint64_t)len - off : (1u << 16);

			sluice_blk_pread(blk, off, n, buf, 0);
		}
		sluice_blk_unref(blk);
	}
	blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	g_free(err);
	if (blk) {
		struct qcow2_check_result res;

		len = sluice_blk_getlength(blk);
		memset(buf, 0xa5, 8192);
		for (i = 0; i < 4 && len > 16384; i++)
			sluice_blk_pwrite(blk, (uint64_t)len / 4 * i + 512, 4096, buf, 0);
		qcow2_check(sluice_blk_bs(blk), 0, &res);
		sluice_blk_unref(blk);
	}
	close(fd);
	return 0;
}
