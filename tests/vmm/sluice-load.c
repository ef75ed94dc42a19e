// SPDX-License-Identifier: GPL-2.0
/* sluice-load.c - a tiny static guest tool: 4k random O_DIRECT I/O at a queue depth (threads), BLKDISCARD, BLKZEROOUT. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct worker {
	int fd;
	int write;
	uint64_t span_blocks;
	double deadline;
	unsigned int seed;
	unsigned long ops;
	int err;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One queue slot: 4 KiB random reads or writes until the deadline. */
static void *worker_run(void *arg)
{
	struct worker *w = arg;
	void *buf;

	if (posix_memalign(&buf, 4096, 4096)) {
		w->err = ENOMEM;
		return NULL;
	}
	memset(buf, 0x5a, 4096);
	while (now() < w->deadline) {
		unsigned int i;

		for (i = 0; i < 64; i++) {
			off_t off = (off_t)(rand_r(&w->seed) % w->span_blocks) * 4096;
			ssize_t n = w->write ? pwrite(w->fd, buf, 4096, off) : pread(w->fd, buf, 4096, off);

			if (n != 4096) {
				w->err = n < 0 ? errno : EIO;
				free(buf);
				return NULL;
			}
			w->ops++;
		}
	}
	free(buf);
	return NULL;
}

static int rand_io(const char *dev, const char *mode, int qd, double secs, uint64_t span_mb)
{
	struct worker *w = calloc(qd, sizeof(*w));
	pthread_t *t = calloc(qd, sizeof(*t));
	unsigned long total = 0;
	double start;
	int fd, i;

	fd = open(dev, (strcmp(mode, "write") ? O_RDONLY : O_RDWR) | O_DIRECT);
	if (fd < 0 || !w || !t) {
		perror(dev);
		return 1;
	}
	start = now();
	for (i = 0; i < qd; i++) {
		w[i].fd = fd;
		w[i].write = !strcmp(mode, "write");
		w[i].span_blocks = span_mb * 256;
		w[i].deadline = start + secs;
		w[i].seed = 12345 + i;
		pthread_create(&t[i], NULL, worker_run, &w[i]);
	}
	for (i = 0; i < qd; i++) {
		pthread_join(t[i], NULL);
		if (w[i].err) {
			fprintf(stderr, "sluice-load: %s: %s\n", dev, strerror(w[i].err));
			return 1;
		}
		total += w[i].ops;
	}
	printf("SLUICE-IOPS: %s qd%d %.0f\n", mode, qd, total / (now() - start));
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t range[2];
	int fd;

	if (argc == 5 && (!strcmp(argv[1], "discard") || !strcmp(argv[1], "zeroout"))) {
		range[0] = strtoull(argv[3], NULL, 0);
		range[1] = strtoull(argv[4], NULL, 0);
		fd = open(argv[2], O_RDWR);
		if (fd < 0 || ioctl(fd, strcmp(argv[1], "discard") ? BLKZEROOUT : BLKDISCARD, range)) {
			fprintf(stderr, "sluice-load: %s %s: %s\n", argv[1], argv[2], strerror(errno));
			return 1;
		}
		return 0;
	}
	if (argc >= 6 && !strcmp(argv[1], "rand"))
		return rand_io(argv[2], argv[3], atoi(argv[4]), atof(argv[5]), argc > 6 ? strtoull(argv[6], NULL, 0) : 64);
	fprintf(stderr, "usage: sluice-load rand DEV read|write QD SECONDS [SPAN_MIB]\n"
			"       sluice-load discard|zeroout DEV OFFSET LENGTH\n");
	return 2;
}
