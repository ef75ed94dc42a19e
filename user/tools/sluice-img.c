// SPDX-License-Identifier: GPL-2.0
/* sluice-img.c - qemu-img compatible image tool (create, info, bench) over sluice's block layer. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"
#include "util.h"

#include "tool-common.h"

#define PROG "sluice-img"

static void err_opt(int opt, char **argv)
{
	if (opt == ':')
		fprintf(stderr, PROG ": option '%s' requires an argument\n", argv[optind - 1]);
	else if (optopt)
		fprintf(stderr, PROG ": invalid option -- '%c' (try '" PROG " --help')\n", optopt);
	else
		fprintf(stderr, PROG ": unrecognized option '%s' (try '" PROG " --help')\n", argv[optind - 1]);
}

/* ---- create ---- */

static int img_create(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = "raw", *options = NULL, *filename;
	bool quiet = false;
	uint64_t size;
	char *err = NULL;
	int opt, ret;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:o:qhF:b:u", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			fmt = optarg;
			break;
		case 'o':
			options = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			printf("Usage: " PROG " create [-q] [-f fmt] [-o options] filename size\n");
			return 0;
		case 'F':
		case 'b':
		case 'u':
			fprintf(stderr, PROG ": create: backing files are not supported\n");
			return 1;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, PROG ": Expecting image file name (try '" PROG " --help')\n");
		return 1;
	}
	filename = argv[optind++];
	if (optind >= argc) {
		fprintf(stderr, PROG ": %s: Image creation needs a size parameter\n", filename);
		return 1;
	}
	ret = sluice_parse_size(argv[optind], &size);
	if (ret) {
		fprintf(stderr, PROG ": Invalid image size specified: '%s'. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n",
			argv[optind]);
		return 1;
	}
	if (++optind < argc) {
		fprintf(stderr, PROG ": Unexpected argument: %s\n", argv[optind]);
		return 1;
	}
	if (!sluice_bdrv_find_format(fmt)) {
		fprintf(stderr, PROG ": %s: Unknown file format '%s'\n", filename, fmt);
		return 1;
	}
	if (!quiet) {
		printf("Formatting '%s', fmt=%s size=%" PRIu64 "%s%s\n", filename, fmt, size,
		       options ? " " : "", options ? options : "");
		fflush(stdout);
	}
	ret = sluice_bdrv_create(fmt, filename, size, options, &err);
	if (ret < 0) {
		fprintf(stderr, PROG ": %s: %s\n", filename, err ? err : strerror(-ret));
		g_free(err);
		return 1;
	}
	g_free(err);
	return 0;
}

/* ---- info ---- */

static int64_t allocated_size(struct sluice_bds *bs, const char *filename)
{
	struct stat st;

	for (; bs; bs = bs->file) {
		if (bs->drv && bs->drv->get_allocated_size)
			return bs->drv->get_allocated_size(bs);
	}
	if (stat(filename, &st))
		return -errno;
	return (int64_t)st.st_blocks * 512;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int img_info(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'O' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_open_opts o = { 0 };
	struct sluice_aio_ctx *ctx;
	struct sluice_blk *blk;
	struct sluice_bds *bs;
	const char *filename, *fmt_name;
	bool json = false;
	int64_t len, alloc;
	char s1[64], s2[64];
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:hU", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o.fmt = optarg;
			break;
		case 'O':
			if (!strcmp(optarg, "json")) {
				json = true;
			} else if (!strcmp(optarg, "human")) {
				json = false;
			} else {
				fprintf(stderr, PROG ": --output must be used with human or json as argument.\n");
				return 1;
			}
			break;
		case 'U':
			break;
		case 'h':
			printf("Usage: " PROG " info [-f fmt] [--output=human|json] [-U] filename\n");
			return 0;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			optind >= argc ? "Expecting one image file name" : "Unexpected argument");
		return 1;
	}
	filename = argv[optind];

	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		return 1;
	}
	blk = tool_blk_open(PROG, ctx, filename, &o);
	if (!blk) {
		sluice_aio_ctx_free(ctx);
		return 1;
	}
	bs = sluice_blk_bs(blk);
	len = sluice_blk_getlength(blk);
	if (len < 0) {
		fprintf(stderr, PROG ": %s: could not get the image size: %s\n", filename, strerror((int)-len));
		sluice_blk_unref(blk);
		sluice_aio_ctx_free(ctx);
		return 1;
	}
	alloc = allocated_size(bs, filename);
	fmt_name = bs && bs->drv ? bs->drv->format_name : "unknown";

	if (json) {
		printf("{\n    \"virtual-size\": %" PRId64 ",\n    \"filename\": ", len);
		json_string(filename);
		printf(",\n    \"format\": ");
		json_string(fmt_name);
		printf(",\n");
		if (alloc >= 0)
			printf("    \"actual-size\": %" PRId64 ",\n", alloc);
		printf("    \"dirty-flag\": false\n}\n");
	} else {
		printf("image: %s\n", filename);
		printf("file format: %s\n", fmt_name);
		printf("virtual size: %s (%" PRId64 " bytes)\n",
		       sluice_format_size((uint64_t)len, s1, sizeof(s1)), len);
		if (alloc >= 0)
			printf("disk size: %s\n", sluice_format_size((uint64_t)alloc, s2, sizeof(s2)));
		else
			printf("disk size: unavailable\n");
	}
	sluice_blk_unref(blk);
	sluice_aio_ctx_free(ctx);
	return 0;
}

/* ---- bench ---- */

struct bench {
	struct sluice_blk *blk;
	bool write;
	bool drain;
	bool writethrough;
	bool no_flush;
	uint64_t count;
	uint64_t n_issued;
	uint64_t n_done;
	uint64_t offset;
	uint64_t step;
	uint64_t bufsize;
	uint64_t image_size;
	uint64_t flush_interval;
	unsigned int in_flight;
	unsigned int workers_left;
	bool draining;			/* a flush waits for the in-flight requests; do not issue more */
	struct sluice_co *flusher;	/* the coroutine waiting for in_flight == 0 */
	struct sluice_co **parked;	/* workers waiting for the flush to finish */
	unsigned int nparked;
	int ret;
};

struct bench_worker {
	struct bench *b;
	struct iovec iov;
	struct sluice_co *co;
};

static void bench_wake_parked(struct bench *b)
{
	while (b->nparked)
		sluice_aio_co_wake(b->parked[--b->nparked]);
}

static int coroutine_fn bench_co_flush(struct bench *b)
{
	return b->no_flush ? 0 : sluice_blk_co_flush(b->blk);
}

/* Every flush_interval completed requests: flush, after draining the others unless --no-drain. */
static void coroutine_fn bench_co_interval_flush(struct bench_worker *w)
{
	struct bench *b = w->b;
	int ret;

	if (b->drain) {
		b->draining = true;
		if (b->in_flight) {
			b->flusher = w->co;
			sluice_co_yield();
			b->flusher = NULL;
		}
	}
	ret = bench_co_flush(b);
	if (ret < 0 && !b->ret)
		b->ret = ret;
	if (b->drain) {
		b->draining = false;
		bench_wake_parked(b);
	}
}

static void coroutine_fn bench_worker_co(void *opaque)
{
	struct bench_worker *w = opaque;
	struct bench *b = w->b;

	while (!b->ret && b->n_issued < b->count) {
		uint64_t offset;
		int ret;

		if (b->draining) {
			b->parked[b->nparked++] = w->co;
			sluice_co_yield();
			continue;
		}
		offset = b->offset;
		b->n_issued++;
		b->offset += b->step;
		if (b->offset > b->image_size || b->image_size - b->offset < b->bufsize)
			b->offset = 0;

		b->in_flight++;
		if (b->write) {
			ret = sluice_blk_co_pwritev(b->blk, offset, b->bufsize, &w->iov, 1, 0);
			if (ret >= 0 && b->writethrough)
				ret = bench_co_flush(b);
		} else {
			ret = sluice_blk_co_preadv(b->blk, offset, b->bufsize, &w->iov, 1, 0);
		}
		b->in_flight--;
		if (b->draining && !b->in_flight && b->flusher)
			sluice_aio_co_wake(b->flusher);
		if (ret < 0) {
			if (!b->ret)
				b->ret = ret;
			bench_wake_parked(b);
			break;
		}
		b->n_done++;
		if (b->flush_interval && b->n_done % b->flush_interval == 0)
			bench_co_interval_flush(w);
	}
	b->workers_left--;
}

static int parse_uint_opt(const char *arg, uint64_t max, bool sizes, uint64_t *out)
{
	uint64_t v;
	char *end;

	if (sizes)
		return tool_parse_num(arg, out) || *out > max ? -EINVAL : 0;
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static void bench_usage(void)
{
	printf("Usage: " PROG " bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval]\n"
	       "       [-i io_uring|threads] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q]\n"
	       "       [-s buffer_size] [-S step_size] [-t cache] [-U] [-w] filename\n"
	       "Runs count requests, depth of them in flight, each buffer_size bytes, starting at\n"
	       "offset and advancing by step_size (default: buffer_size).  Default aio: io_uring.\n");
}

static int img_bench(int argc, char **argv)
{
	enum { OPT_FLUSH_INTERVAL = 256, OPT_NO_DRAIN, OPT_PATTERN };
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL },
		{ "no-drain", no_argument, NULL, OPT_NO_DRAIN },
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench b = { .count = 75000, .bufsize = 4096, .drain = true };
	struct tool_open_opts o = { 0 };
	struct bench_worker *workers = NULL;
	struct sluice_aio_ctx *ctx = NULL;
	uint64_t depth = 64, pattern = 0, v;
	unsigned char *buf = NULL;
	int opt, status = 1;
	int64_t len;
	double t;
	unsigned int i;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hc:d:f:i:no:qs:S:t:wU", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			bench_usage();
			return 0;
		case 'c':
			if (parse_uint_opt(optarg, INT_MAX, false, &b.count)) {
				fprintf(stderr, PROG ": Invalid request count specified\n");
				return 1;
			}
			break;
		case 'd':
			if (parse_uint_opt(optarg, 65536, false, &depth) || depth < 1) {
				fprintf(stderr, PROG ": Invalid queue depth specified\n");
				return 1;
			}
			break;
		case 'f':
			o.fmt = optarg;
			break;
		case 'i':
			if (tool_parse_aio(optarg, &o)) {
				fprintf(stderr, PROG ": Invalid aio option: %s (io_uring or threads)\n", optarg);
				return 1;
			}
			break;
		case 'n':
			o.flags |= SLUICE_BDRV_O_NOCACHE;
			break;
		case 'o':
			if (parse_uint_opt(optarg, INT64_MAX, true, &b.offset)) {
				fprintf(stderr, PROG ": Invalid offset specified\n");
				return 1;
			}
			break;
		case 'q':
			break;
		case 's':
			if (parse_uint_opt(optarg, INT_MAX, true, &b.bufsize)) {
				fprintf(stderr, PROG ": Invalid buffer size specified\n");
				return 1;
			}
			break;
		case 'S':
			if (parse_uint_opt(optarg, INT_MAX, true, &b.step)) {
				fprintf(stderr, PROG ": Invalid step size specified\n");
				return 1;
			}
			break;
		case 't':
			if (tool_parse_cache(optarg, &o)) {
				fprintf(stderr, PROG ": Invalid cache mode\n");
				return 1;
			}
			break;
		case 'w':
			b.write = true;
			break;
		case 'U':
			break;
		case OPT_FLUSH_INTERVAL:
			if (parse_uint_opt(optarg, INT_MAX, false, &b.flush_interval)) {
				fprintf(stderr, PROG ": Invalid flush interval specified\n");
				return 1;
			}
			break;
		case OPT_NO_DRAIN:
			b.drain = false;
			break;
		case OPT_PATTERN:
			if (parse_uint_opt(optarg, 255, false, &pattern)) {
				fprintf(stderr, PROG ": Invalid pattern byte specified\n");
				return 1;
			}
			break;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			optind >= argc ? "Expecting one image file name" : "Unexpected argument");
		return 1;
	}
	if (b.flush_interval && !b.write) {
		fprintf(stderr, PROG ": --flush-interval is only available in write tests\n");
		return 1;
	}
	if (b.flush_interval && b.flush_interval < depth && b.drain) {
		fprintf(stderr, PROG ": Flush interval can't be smaller than depth\n");
		return 1;
	}
	if (!b.step)
		b.step = b.bufsize;
	b.writethrough = o.writethrough;
	b.no_flush = o.no_flush;
	if (b.write)
		o.flags |= SLUICE_BDRV_O_RDWR;

	if (depth * b.bufsize > SIZE_MAX / 2) {
		fprintf(stderr, PROG ": depth * buffer size is too large\n");
		return 1;
	}
	buf = tool_alloc_buf(depth * b.bufsize);
	workers = calloc(depth, sizeof(*workers));
	b.parked = calloc(depth, sizeof(*b.parked));
	if (!buf || !workers || !b.parked) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	memset(buf, (int)pattern, depth * b.bufsize);

	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		goto out;
	}
	b.blk = tool_blk_open(PROG, ctx, argv[optind], &o);
	if (!b.blk)
		goto out;
	len = sluice_blk_getlength(b.blk);
	if (len < 0) {
		fprintf(stderr, PROG ": Could not get the image size: %s\n", strerror((int)-len));
		goto out;
	}
	b.image_size = (uint64_t)len;

	printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %" PRIu64
	       " in parallel (starting at offset %" PRIu64 ", step size %" PRIu64 ")\n",
	       b.count, b.write ? "write" : "read", b.bufsize, depth, b.offset, b.step);
	if (b.flush_interval)
		printf("Sending flush every %" PRIu64 " requests\n", b.flush_interval);
	fflush(stdout);

	for (i = 0; i < depth; i++) {
		workers[i].b = &b;
		workers[i].iov.iov_base = buf + i * b.bufsize;
		workers[i].iov.iov_len = b.bufsize;
		workers[i].co = sluice_co_create(bench_worker_co, &workers[i]);
	}
	b.workers_left = (unsigned int)depth;
	t = tool_now();
	for (i = 0; i < depth; i++)
		sluice_co_enter(workers[i].co);
	while (b.workers_left)
		sluice_aio_poll(ctx, true);
	t = tool_now() - t;

	if (b.ret < 0) {
		fprintf(stderr, PROG ": Failed request: %s\n", strerror(-b.ret));
		goto out;
	}
	printf("Run completed in %3.3f seconds.\n", t);
	v = (uint64_t)(t > 0 ? (double)b.n_done / t : 0);
	printf("IOPS: %" PRIu64 "\n", v);
	status = 0;
out:
	if (b.blk)
		sluice_blk_unref(b.blk);
	if (ctx)
		sluice_aio_ctx_free(ctx);
	free(b.parked);
	free(workers);
	free(buf);
	return status;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " COMMAND [options]\n"
		"qemu-img compatible image tool over sluice's block layer.\n"
		"\n"
		"Commands:\n"
		"  create [-q] [-f fmt] [-o options] filename size\n"
		"  info [-f fmt] [--output=human|json] [-U] filename\n"
		"  bench [-c count] [-d depth] [-f fmt] [--flush-interval=N] [-i io_uring|threads] [-n]\n"
		"        [--no-drain] [-o offset] [--pattern=N] [-q] [-s size] [-S step] [-t cache] [-U] [-w]\n"
		"        filename\n"
		"\n"
		"Sizes take k, M, G, T, P or E suffixes (powers of 1024).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, PROG ": Not enough arguments (try '" PROG " --help')\n");
		return 1;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf(PROG " version 0.1.0 (qemu-img compatible)\n");
		return 0;
	}
	if (!strcmp(argv[1], "create"))
		return img_create(argc - 1, argv + 1);
	if (!strcmp(argv[1], "info"))
		return img_info(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench"))
		return img_bench(argc - 1, argv + 1);
	fprintf(stderr, PROG ": Command not found: %s (try '" PROG " --help')\n", argv[1]);
	return 1;
}
