// SPDX-License-Identifier: GPL-2.0
/* trace_udriver.c - drive an exact number of requests through the userspace block layer (USDT probes), for sluice-trace's tests. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block.h"

#define USAGE										\
	"usage: trace_udriver [-o LIST] [-w FILE] IMAGE READS WRITES\n"			\
	"  opens IMAGE (raw, created with 16 MiB when missing) with the block layer, then\n"	\
	"  WRITES writes of 8 KiB and READS reads of 4 KiB, one at a time.  -w: wait until\n"	\
	"  FILE exists first.  LIST gets 'blk PID 0xBLK', then a line per request:\n"	\
	"  OP OFFSET BYTES\n"

#define READ_BYTES	4096u
#define WRITE_BYTES	8192u
#define IMG_SIZE	(16u << 20)

static int parse_count(const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > 1000)
		return -1;
	*out = (unsigned int)v;
	return 0;
}

int main(int argc, char **argv)
{
	static char buf[WRITE_BYTES];
	const char *list_path = NULL, *wait_path = NULL, *img;
	unsigned int reads, writes, i;
	struct sluice_blk *blk;
	char *err = NULL;
	FILE *list = NULL;
	int opt, fd;

	while ((opt = getopt(argc, argv, "o:w:h")) != -1) {
		switch (opt) {
		case 'o':
			list_path = optarg;
			break;
		case 'w':
			wait_path = optarg;
			break;
		default:
			fputs(USAGE, opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (argc - optind != 3 || parse_count(argv[optind + 1], &reads) ||
	    parse_count(argv[optind + 2], &writes)) {
		fputs(USAGE, stderr);
		return 2;
	}
	img = argv[optind];
	fd = open(img, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, IMG_SIZE) < 0) {
		fprintf(stderr, "trace_udriver: %s: %s\n", img, strerror(errno));
		return 1;
	}
	close(fd);
	if (list_path) {
		list = fopen(list_path, "w");
		if (!list) {
			fprintf(stderr, "trace_udriver: %s: %s\n", list_path, strerror(errno));
			return 1;
		}
	}
	while (wait_path && access(wait_path, F_OK)) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}

	sluice_block_main_ctx();
	blk = sluice_blk_new_open(img, "raw", SLUICE_BDRV_O_RDWR, &err);
	if (!blk) {
		fprintf(stderr, "trace_udriver: %s: %s\n", img, err ? err : "cannot open");
		free(err);
		return 1;
	}
	if (list)
		fprintf(list, "blk %d %p\n", (int)getpid(), (void *)blk);
	memset(buf, 0x5a, sizeof(buf));
	for (i = 0; i < writes; i++) {
		uint64_t off = (uint64_t)i * WRITE_BYTES;
		int ret = sluice_blk_pwrite(blk, off, WRITE_BYTES, buf, 0);

		if (ret < 0) {
			fprintf(stderr, "trace_udriver: write %u: %s\n", i, strerror(-ret));
			return 1;
		}
		if (list)
			fprintf(list, "write %llu %u\n", (unsigned long long)off, WRITE_BYTES);
	}
	for (i = 0; i < reads; i++) {
		uint64_t off = (uint64_t)i * READ_BYTES;
		int ret = sluice_blk_pread(blk, off, READ_BYTES, buf, 0);

		if (ret < 0) {
			fprintf(stderr, "trace_udriver: read %u: %s\n", i, strerror(-ret));
			return 1;
		}
		if (list)
			fprintf(list, "read %llu %u\n", (unsigned long long)off, READ_BYTES);
	}
	sluice_blk_unref(blk);
	if (list && fclose(list)) {
		fprintf(stderr, "trace_udriver: %s: %s\n", list_path, strerror(errno));
		return 1;
	}
	return 0;
}
