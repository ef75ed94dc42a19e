// SPDX-License-Identifier: GPL-2.0
/* sluice-io.c - qemu-io compatible command-line I/O on an image, through sluice's block layer. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"
#include "util.h"

#include "tool-common.h"

#define PROG		"sluice-io"
#define MAX_ARGS	256
#define MAX_IO_BYTES	2147483136ULL	/* INT_MAX rounded down to 512, as qemu-io */

struct io_state {
	struct sluice_aio_ctx *ctx;
	struct sluice_blk *blk;
	struct tool_open_opts opts;
	bool read_only;
	bool discard_ignore;
	bool quit;
};

enum io_op { IO_READ, IO_WRITE, IO_ZEROES, IO_DISCARD, IO_FLUSH, IO_TRUNCATE };

struct io_req {
	struct io_state *s;
	enum io_op op;
	uint64_t offset;
	uint64_t bytes;
	struct iovec *iov;
	int niov;
	int flags;
	int ret;
};

struct io_cmd {
	const char *name;
	const char *altname;
	int (*fn)(struct io_state *s, int argc, char **argv);
	int argmin;
	int argmax;			/* -1: unlimited */
	const char *args;
	const char *oneline;
};

static const struct io_cmd *find_cmd(const char *name);

/* ---- helpers ---- */

static int co_flush(struct io_state *s)
{
	if (s->opts.no_flush)
		return 0;
	return sluice_blk_co_flush(s->blk);
}

static void coroutine_fn io_req_co(void *opaque)
{
	struct io_req *r = opaque;
	struct sluice_blk *blk = r->s->blk;
	int ret = -EINVAL;

	switch (r->op) {
	case IO_READ:
		ret = sluice_blk_co_preadv(blk, r->offset, r->bytes, r->iov, r->niov, r->flags);
		break;
	case IO_WRITE:
		ret = sluice_blk_co_pwritev(blk, r->offset, r->bytes, r->iov, r->niov, r->flags);
		break;
	case IO_ZEROES:
		ret = sluice_blk_co_pwrite_zeroes(blk, r->offset, r->bytes, r->flags);
		break;
	case IO_DISCARD:
		ret = sluice_blk_co_pdiscard(blk, r->offset, r->bytes);
		break;
	case IO_FLUSH:
		ret = co_flush(r->s);
		break;
	case IO_TRUNCATE:
		ret = sluice_blk_co_truncate(blk, r->offset);
		break;
	}
	if (ret >= 0 && r->s->opts.writethrough &&
	    (r->op == IO_WRITE || r->op == IO_ZEROES || r->op == IO_TRUNCATE))
		ret = co_flush(r->s);
	r->ret = ret < 0 ? ret : 0;
}

static int io_run(struct io_state *s, struct io_req *r)
{
	r->s = s;
	tool_run_co(s->ctx, io_req_co, r);
	return r->ret;
}

static int parse_num_arg(const char *str, uint64_t *out)
{
	int ret = tool_parse_num(str, out);

	if (ret == -ERANGE)
		fprintf(stderr, PROG ": Parsing error: argument too large -- %s\n", str);
	else if (ret < 0)
		fprintf(stderr, PROG ": Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n",
			str);
	return ret;
}

static int parse_len_arg(const char *str, uint64_t *out)
{
	int ret = parse_num_arg(str, out);

	if (ret < 0)
		return ret;
	if (*out > MAX_IO_BYTES) {
		fprintf(stderr, PROG ": length cannot exceed %llu, given %s\n", MAX_IO_BYTES, str);
		return -EINVAL;
	}
	return 0;
}

static int parse_pattern(const char *str, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(str, &end, 0);
	if (errno || end == str || *end || v < 0 || v > 255) {
		fprintf(stderr, PROG ": %s is not a valid pattern byte\n", str);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int bad_option(const struct io_cmd *c, int opt)
{
	if (opt == ':')
		fprintf(stderr, PROG ": %s: option requires an argument -- '%c' (usage: %s %s)\n",
			c->name, optopt, c->name, c->args);
	else
		fprintf(stderr, PROG ": %s: invalid option -- '%c' (usage: %s %s)\n",
			c->name, optopt, c->name, c->args);
	return -EINVAL;
}

static int bad_usage(const struct io_cmd *c)
{
	fprintf(stderr, PROG ": %s: bad arguments (usage: %s %s)\n", c->name, c->name, c->args);
	return -EINVAL;
}

/* Check that [offset, offset + bytes) lies inside the image. */
static int check_range(struct io_state *s, const char *what, uint64_t offset, uint64_t bytes)
{
	int64_t len = sluice_blk_getlength(s->blk);

	if (len < 0) {
		fprintf(stderr, PROG ": %s failed: %s\n", what, strerror((int)-len));
		return (int)len;
	}
	if (offset > (uint64_t)len || bytes > (uint64_t)len - offset) {
		fprintf(stderr, PROG ": %s failed: Input/output error (offset %" PRIu64 " + %" PRIu64
			" bytes is past the end of the %" PRId64 "-byte image)\n", what, offset, bytes, len);
		return -EIO;
	}
	return 0;
}

static int check_writable(struct io_state *s, const char *what)
{
	if (s->read_only) {
		fprintf(stderr, PROG ": %s failed: image is opened read-only\n", what);
		return -EACCES;
	}
	return 0;
}

static void timestr(double t, char *buf, size_t len)
{
	unsigned long long cs = (unsigned long long)(t * 100 + 0.5);
	unsigned long long sec = cs / 100, h = sec / 3600, m = (sec / 60) % 60;

	if (h)
		snprintf(buf, len, "%llu:%02llu:%02llu.%02llu sec", h, m, sec % 60, cs % 100);
	else if (m)
		snprintf(buf, len, "%llu:%02llu.%02llu sec", m, sec % 60, cs % 100);
	else
		snprintf(buf, len, "%02llu.%02llu sec", sec, cs % 100);
}

static void print_report(const char *op, double t, uint64_t offset, uint64_t bytes)
{
	char s1[64], s2[64], ts[64];

	if (t < 1e-9)
		t = 1e-9;
	printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", op, bytes, bytes, offset);
	timestr(t, ts, sizeof(ts));
	tool_cvtstr((double)bytes, s1, sizeof(s1));
	tool_cvtstr((double)bytes / t, s2, sizeof(s2));
	printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", s1, 1, ts, s2, 1.0 / t);
}

static void dump_buffer(const unsigned char *buf, uint64_t offset, uint64_t len)
{
	uint64_t i, j;

	for (i = 0; i < len; i += 16) {
		uint64_t n = len - i < 16 ? len - i : 16;

		printf("%08" PRIx64 ":  ", offset + i);
		for (j = 0; j < n; j++)
			printf("%02x ", buf[i + j]);
		putchar(' ');
		for (j = 0; j < n; j++)
			putchar(isalnum(buf[i + j]) ? buf[i + j] : '.');
		putchar('\n');
	}
}

/* Pattern check of @len bytes of @buf standing for image offset @offset; prints on mismatch. */
static int verify_pattern(const unsigned char *buf, uint64_t len, int pattern, uint64_t offset)
{
	uint64_t i;

	for (i = 0; i < len; i++) {
		if (buf[i] != pattern) {
			printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
			       offset, len);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- commands ---- */

static int cmd_read(struct io_state *s, int argc, char **argv)
{
	const struct io_cmd *c = find_cmd("read");
	uint64_t offset, count, poff = 0, plen = 0;
	bool vflag = false, qflag = false, pflag = false, sflag = false, lflag = false;
	struct io_req r = { .op = IO_READ };
	struct iovec iov;
	int opt, pattern = 0, ret;
	unsigned char *buf;
	double t;

	optind = 0;
	while ((opt = getopt(argc, argv, "+:P:vqs:l:C")) != -1) {
		switch (opt) {
		case 'P':
			pflag = true;
			if (parse_pattern(optarg, &pattern))
				return -EINVAL;
			break;
		case 'v':
			vflag = true;
			break;
		case 'q':
			qflag = true;
			break;
		case 's':
			sflag = true;
			if (parse_num_arg(optarg, &poff))
				return -EINVAL;
			break;
		case 'l':
			lflag = true;
			if (parse_len_arg(optarg, &plen))
				return -EINVAL;
			break;
		case 'C':
			break;
		default:
			return bad_option(c, opt);
		}
	}
	if (argc - optind != 2)
		return bad_usage(c);
	if (parse_num_arg(argv[optind], &offset) || parse_len_arg(argv[optind + 1], &count))
		return -EINVAL;
	if ((sflag || lflag) && !pflag) {
		fprintf(stderr, PROG ": read: -s and -l require -P\n");
		return -EINVAL;
	}
	if (!lflag)
		plen = count > poff ? count - poff : 0;
	if (poff > count || plen > count - poff) {
		fprintf(stderr, PROG ": read: pattern verification range exceeds end of read data\n");
		return -EINVAL;
	}
	ret = check_range(s, "read", offset, count);
	if (ret)
		return ret;
	buf = tool_alloc_buf(count);
	if (!buf) {
		fprintf(stderr, PROG ": read: out of memory\n");
		return -ENOMEM;
	}
	iov = (struct iovec){ .iov_base = buf, .iov_len = count };
	r.offset = offset;
	r.bytes = count;
	r.iov = &iov;
	r.niov = 1;
	t = tool_now();
	ret = io_run(s, &r);
	t = tool_now() - t;
	if (ret < 0) {
		fprintf(stderr, PROG ": read failed: %s\n", strerror(-ret));
		goto out;
	}
	if (pflag)
		ret = verify_pattern(buf + poff, plen, pattern, offset + poff);
	if (vflag)
		dump_buffer(buf, offset, count);
	if (!qflag)
		print_report("read", t, offset, count);
out:
	free(buf);
	return ret;
}

/* Parse "off len [len...]" into a buffer split into iovecs. */
static int parse_vector(int argc, char **argv, uint64_t *offset, unsigned char **bufp,
			struct iovec **iovp, int *niovp, uint64_t *totalp)
{
	int n = argc - 1, i;
	uint64_t total = 0, pos = 0;
	uint64_t *lens;
	struct iovec *iov;
	unsigned char *buf;

	if (parse_num_arg(argv[0], offset))
		return -EINVAL;
	lens = calloc((size_t)n, sizeof(*lens));
	if (!lens)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (parse_len_arg(argv[i + 1], &lens[i]))
			goto fail;
		total += lens[i];
		if (total > MAX_IO_BYTES) {
			fprintf(stderr, PROG ": total length cannot exceed %llu\n", MAX_IO_BYTES);
			goto fail;
		}
	}
	buf = tool_alloc_buf(total);
	iov = calloc((size_t)n, sizeof(*iov));
	if (!buf || !iov) {
		free(buf);
		free(iov);
		free(lens);
		fprintf(stderr, PROG ": out of memory\n");
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		iov[i].iov_base = buf + pos;
		iov[i].iov_len = lens[i];
		pos += lens[i];
	}
	free(lens);
	*bufp = buf;
	*iovp = iov;
	*niovp = n;
	*totalp = total;
	return 0;
fail:
	free(lens);
	return -EINVAL;
}

static int cmd_readv(struct io_state *s, int argc, char **argv)
{
	const struct io_cmd *c = find_cmd("readv");
	bool vflag = false, qflag = false, pflag = false;
	struct io_req r = { .op = IO_READ };
	unsigned char *buf;
	struct iovec *iov;
	uint64_t offset, total;
	int opt, pattern = 0, niov, ret;
	double t;

	optind = 0;
	while ((opt = getopt(argc, argv, "+:P:vqC")) != -1) {
		switch (opt) {
		case 'P':
			pflag = true;
			if (parse_pattern(optarg, &pattern))
				return -EINVAL;
			break;
		case 'v':
			vflag = true;
			break;
		case 'q':
			qflag = true;
			break;
		case 'C':
			break;
		default:
			return bad_option(c, opt);
		}
	}
	if (argc - optind < 2)
		return bad_usage(c);
	ret = parse_vector(argc - optind, argv + optind, &offset, &buf, &iov, &niov, &total);
	if (ret)
		return ret;
	ret = check_range(s, "readv", offset, total);
	if (ret)
		goto out;
	r.offset = offset;
	r.bytes = total;
	r.iov = iov;
	r.niov = niov;
	t = tool_now();
	ret = io_run(s, &r);
	t = tool_now() - t;
	if (ret < 0) {
		fprintf(stderr, PROG ": readv failed: %s\n", strerror(-ret));
		goto out;
	}
	if (pflag)
		ret = verify_pattern(buf, total, pattern, offset);
	if (vflag)
		dump_buffer(buf, offset, total);
	if (!qflag)
		print_report("read", t, offset, total);
out:
	free(buf);
	free(iov);
	return ret;
}

static int cmd_write(struct io_state *s, int argc, char **argv)
{
	const struct io_cmd *c = find_cmd("write");
	bool qflag = false, pflag = false, zflag = false, uflag = false, nflag = false;
	struct io_req r = { .op = IO_WRITE };
	int opt, pattern = 0xcd, ret;
	unsigned char *buf = NULL;
	uint64_t offset, count;
	struct iovec iov;
	double t;

	optind = 0;
	while ((opt = getopt(argc, argv, "+:P:zqfunCbcs:")) != -1) {
		switch (opt) {
		case 'P':
			pflag = true;
			if (parse_pattern(optarg, &pattern))
				return -EINVAL;
			break;
		case 'z':
			zflag = true;
			break;
		case 'q':
			qflag = true;
			break;
		case 'f':
			r.flags |= SLUICE_BDRV_REQ_FUA;
			break;
		case 'u':
			uflag = true;
			break;
		case 'n':
			nflag = true;
			break;
		case 'C':
			break;
		case 'b':
		case 'c':
		case 's':
			fprintf(stderr, PROG ": write: option -%c is not supported\n", opt);
			return -ENOTSUP;
		default:
			return bad_option(c, opt);
		}
	}
	if (argc - optind != 2)
		return bad_usage(c);
	if (zflag && pflag) {
		fprintf(stderr, PROG ": Only one of -z, -P, and -s can be specified at the same time\n");
		return -EINVAL;
	}
	if ((uflag || nflag) && !zflag) {
		fprintf(stderr, PROG ": write: -%c requires -z to be specified\n", uflag ? 'u' : 'n');
		return -EINVAL;
	}
	if (parse_num_arg(argv[optind], &offset) || parse_len_arg(argv[optind + 1], &count))
		return -EINVAL;
	ret = check_writable(s, "write");
	if (ret)
		return ret;
	ret = check_range(s, "write", offset, count);
	if (ret)
		return ret;
	r.offset = offset;
	r.bytes = count;
	if (zflag) {
		r.op = IO_ZEROES;
		if (uflag)
			r.flags |= SLUICE_BDRV_REQ_MAY_UNMAP;
		if (nflag)
			r.flags |= SLUICE_BDRV_REQ_NO_FALLBACK;
	} else {
		buf = tool_alloc_buf(count);
		if (!buf) {
			fprintf(stderr, PROG ": write: out of memory\n");
			return -ENOMEM;
		}
		memset(buf, pattern, count);
		iov = (struct iovec){ .iov_base = buf, .iov_len = count };
		r.iov = &iov;
		r.niov = 1;
	}
	t = tool_now();
	ret = io_run(s, &r);
	t = tool_now() - t;
	free(buf);
	if (ret < 0) {
		fprintf(stderr, PROG ": write failed: %s\n", strerror(-ret));
		return ret;
	}
	if (!qflag)
		print_report("wrote", t, offset, count);
	return 0;
}

static int cmd_writev(struct io_state *s, int argc, char **argv)
{
	const struct io_cmd *c = find_cmd("writev");
	struct io_req r = { .op = IO_WRITE };
	int opt, pattern = 0xcd, niov, ret;
	unsigned char *buf;
	struct iovec *iov;
	uint64_t offset, total;
	bool qflag = false;
	double t;

	optind = 0;
	while ((opt = getopt(argc, argv, "+:P:qfC")) != -1) {
		switch (opt) {
		case 'P':
			if (parse_pattern(optarg, &pattern))
				return -EINVAL;
			break;
		case 'q':
			qflag = true;
			break;
		case 'f':
			r.flags |= SLUICE_BDRV_REQ_FUA;
			break;
		case 'C':
			break;
		default:
			return bad_option(c, opt);
		}
	}
	if (argc - optind < 2)
		return bad_usage(c);
	ret = parse_vector(argc - optind, argv + optind, &offset, &buf, &iov, &niov, &total);
	if (ret)
		return ret;
	ret = check_writable(s, "writev");
	if (!ret)
		ret = check_range(s, "writev", offset, total);
	if (ret)
		goto out;
	memset(buf, pattern, total);
	r.offset = offset;
	r.bytes = total;
	r.iov = iov;
	r.niov = niov;
	t = tool_now();
	ret = io_run(s, &r);
	t = tool_now() - t;
	if (ret < 0) {
		fprintf(stderr, PROG ": writev failed: %s\n", strerror(-ret));
		goto out;
	}
	if (!qflag)
		print_report("wrote", t, offset, total);
out:
	free(buf);
	free(iov);
	return ret;
}

static int cmd_discard(struct io_state *s, int argc, char **argv)
{
	const struct io_cmd *c = find_cmd("discard");
	struct io_req r = { .op = IO_DISCARD };
	uint64_t offset, count;
	bool qflag = false;
	int opt, ret;
	double t;

	optind = 0;
	while ((opt = getopt(argc, argv, "+:qC")) != -1) {
		switch (opt) {
		case 'q':
			qflag = true;
			break;
		case 'C':
			break;
		default:
			return bad_option(c, opt);
		}
	}
	if (argc - optind != 2)
		return bad_usage(c);
	if (parse_num_arg(argv[optind], &offset) || parse_len_arg(argv[optind + 1], &count))
		return -EINVAL;
	ret = check_writable(s, "discard");
	if (!ret)
		ret = check_range(s, "discard", offset, count);
	if (ret)
		return ret;
	r.offset = offset;
	r.bytes = count;
	t = tool_now();
	ret = s->discard_ignore ? 0 : io_run(s, &r);
	t = tool_now() - t;
	if (ret < 0) {
		fprintf(stderr, PROG ": discard failed: %s\n", strerror(-ret));
		return ret;
	}
	if (!qflag)
		print_report("discard", t, offset, count);
	return 0;
}

static int cmd_flush(struct io_state *s, int argc, char **argv)
{
	struct io_req r = { .op = IO_FLUSH };
	int ret = io_run(s, &r);

	if (ret < 0)
		fprintf(stderr, PROG ": flush failed: %s\n", strerror(-ret));
	return ret;
}

static int cmd_truncate(struct io_state *s, int argc, char **argv)
{
	const struct io_cmd *c = find_cmd("truncate");
	struct io_req r = { .op = IO_TRUNCATE };
	uint64_t size;
	int opt, ret;

	optind = 0;
	while ((opt = getopt(argc, argv, "+:m:")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "off")) {
				fprintf(stderr, PROG ": truncate: preallocation mode '%s' is not supported\n",
					optarg);
				return -ENOTSUP;
			}
			break;
		default:
			return bad_option(c, opt);
		}
	}
	if (argc - optind != 1)
		return bad_usage(c);
	if (parse_num_arg(argv[optind], &size))
		return -EINVAL;
	ret = check_writable(s, "truncate");
	if (ret)
		return ret;
	r.offset = size;
	ret = io_run(s, &r);
	if (ret < 0)
		fprintf(stderr, PROG ": truncate failed: %s\n", strerror(-ret));
	return ret;
}

static int cmd_length(struct io_state *s, int argc, char **argv)
{
	int64_t len = sluice_blk_getlength(s->blk);
	char buf[64];

	if (len < 0) {
		fprintf(stderr, PROG ": getlength: %s\n", strerror((int)-len));
		return (int)len;
	}
	printf("%s\n", tool_cvtstr((double)len, buf, sizeof(buf)));
	return 0;
}

static int cmd_info(struct io_state *s, int argc, char **argv)
{
	struct sluice_bds *bs = sluice_blk_bs(s->blk);

	printf("format name: %s\n", bs && bs->drv ? bs->drv->format_name : "unknown");
	printf("cluster size: 0 bytes\n");
	printf("vm state offset: 0 bytes\n");
	return 0;
}

struct map_state {
	struct io_state *s;
	int64_t len;
	int ret;
};

static void print_map_line(uint64_t offset, uint64_t bytes, bool allocated)
{
	char s1[64], s2[64];

	tool_cvtstr((double)bytes, s1, sizeof(s1));
	tool_cvtstr((double)offset, s2, sizeof(s2));
	printf("%s (0x%" PRIx64 ") bytes %s allocated at offset %s (0x%" PRIx64 ")\n",
	       s1, bytes, allocated ? "   " : "not", s2, offset);
}

static void coroutine_fn map_co(void *opaque)
{
	struct map_state *m = opaque;
	struct sluice_bds *bs = sluice_blk_bs(m->s->blk);
	uint64_t offset = 0, start = 0, end = (uint64_t)m->len;
	bool cur = false, have = false;

	sluice_graph_co_rdlock();
	while (offset < end) {
		struct sluice_bds *file = NULL;
		uint64_t pnum = 0, map = 0;
		bool alloc;
		int ret;

		ret = sluice_bds_co_block_status(bs, offset, end - offset, &pnum, &map, &file);
		if (ret < 0) {
			m->ret = ret;
			break;
		}
		if (pnum == 0 || pnum > end - offset) {
			m->ret = -EIO;
			break;
		}
		alloc = ret & (SLUICE_BLOCK_DATA | SLUICE_BLOCK_ZERO | SLUICE_BLOCK_ALLOCATED);
		if (have && alloc != cur) {
			print_map_line(start, offset - start, cur);
			start = offset;
		}
		cur = alloc;
		have = true;
		offset += pnum;
	}
	sluice_graph_co_rdunlock();
	if (!m->ret && have)
		print_map_line(start, offset - start, cur);
}

static int cmd_map(struct io_state *s, int argc, char **argv)
{
	struct map_state m = { .s = s };

	m.len = sluice_blk_getlength(s->blk);
	if (m.len < 0) {
		fprintf(stderr, PROG ": map: could not get the image length: %s\n", strerror((int)-m.len));
		return (int)m.len;
	}
	tool_run_co(s->ctx, map_co, &m);
	if (m.ret < 0)
		fprintf(stderr, PROG ": map: block status failed: %s\n", strerror(-m.ret));
	return m.ret;
}

static int cmd_sleep(struct io_state *s, int argc, char **argv)
{
	struct timespec ts;
	uint64_t ms;
	char *end;

	errno = 0;
	ms = strtoull(argv[1], &end, 10);
	if (errno || end == argv[1] || *end) {
		fprintf(stderr, PROG ": sleep: invalid number of milliseconds '%s'\n", argv[1]);
		return -EINVAL;
	}
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
	return 0;
}

static int cmd_quit(struct io_state *s, int argc, char **argv)
{
	s->quit = true;
	return 0;
}

static int cmd_help(struct io_state *s, int argc, char **argv);

static const struct io_cmd io_cmds[] = {
	{ "aio_flush", NULL, cmd_flush, 0, 0, "", "completes all outstanding requests (same as flush)" },
	{ "discard", "d", cmd_discard, 2, -1, "[-Cq] off len",
	  "discards a number of bytes at a specified offset" },
	{ "flush", "f", cmd_flush, 0, 0, "", "flush all in-core file state to disk" },
	{ "help", "?", cmd_help, 0, 1, "[command]", "help for one or all commands" },
	{ "info", "i", cmd_info, 0, 0, "", "prints information about the current file" },
	{ "length", "l", cmd_length, 0, 0, "", "gets the length of the current file" },
	{ "map", NULL, cmd_map, 0, 0, "", "prints the allocated areas of a file" },
	{ "quit", "q", cmd_quit, 0, 0, "", "exit the program" },
	{ "read", "r", cmd_read, 2, -1, "[-Cqv] [-P pattern [-s off] [-l len]] off len",
	  "reads a number of bytes at a specified offset" },
	{ "readv", NULL, cmd_readv, 2, -1, "[-Cqv] [-P pattern] off len [len..]",
	  "reads a number of bytes at a specified offset into several buffers" },
	{ "sleep", NULL, cmd_sleep, 1, 1, "milliseconds", "waits for the given value in milliseconds" },
	{ "truncate", "t", cmd_truncate, 1, 3, "[-m prealloc_mode] off",
	  "truncates the current file at the given offset" },
	{ "write", "w", cmd_write, 2, -1, "[-Cfquz] [-P pattern] off len",
	  "writes a number of bytes at a specified offset" },
	{ "writev", NULL, cmd_writev, 2, -1, "[-Cfq] [-P pattern] off len [len..]",
	  "writes a number of bytes at a specified offset from several buffers" },
};

static const struct io_cmd *find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(io_cmds) / sizeof(io_cmds[0]); i++) {
		if (!strcmp(io_cmds[i].name, name) ||
		    (io_cmds[i].altname && !strcmp(io_cmds[i].altname, name)))
			return &io_cmds[i];
	}
	return NULL;
}

static int cmd_help(struct io_state *s, int argc, char **argv)
{
	const struct io_cmd *c;
	size_t i;

	if (argc > 1) {
		c = find_cmd(argv[1]);
		if (!c) {
			fprintf(stderr, PROG ": command %s not found\n", argv[1]);
			return -EINVAL;
		}
		printf("%s %s -- %s\n", c->name, c->args, c->oneline);
		return 0;
	}
	for (i = 0; i < sizeof(io_cmds) / sizeof(io_cmds[0]); i++)
		printf("%s %s -- %s\n", io_cmds[i].name, io_cmds[i].args, io_cmds[i].oneline);
	return 0;
}

/* Split @line in place on blanks and run the command; 0 or -errno (already reported). */
static int run_command(struct io_state *s, char *line)
{
	char *argv[MAX_ARGS + 1];
	const struct io_cmd *c;
	int argc = 0, nargs;
	char *tok, *save = NULL;

	for (tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (argc == MAX_ARGS) {
			fprintf(stderr, PROG ": too many arguments\n");
			return -E2BIG;
		}
		argv[argc++] = tok;
	}
	argv[argc] = NULL;
	if (!argc)
		return 0;
	c = find_cmd(argv[0]);
	if (!c) {
		fprintf(stderr, PROG ": command \"%s\" not found\n", argv[0]);
		return -EINVAL;
	}
	nargs = argc - 1;
	if (nargs < c->argmin || (c->argmax >= 0 && nargs > c->argmax)) {
		if (c->argmax < 0)
			fprintf(stderr, PROG ": bad argument count %d to %s, expected at least %d arguments\n",
				nargs, c->name, c->argmin);
		else if (c->argmin == c->argmax)
			fprintf(stderr, PROG ": bad argument count %d to %s, expected %d arguments\n",
				nargs, c->name, c->argmin);
		else
			fprintf(stderr, PROG ": bad argument count %d to %s, expected between %d and %d arguments\n",
				nargs, c->name, c->argmin, c->argmax);
		return -EINVAL;
	}
	return c->fn(s, argc, argv);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTIONS]... [-c COMMAND]... FILE\n"
		"qemu-io compatible: run I/O commands on FILE through sluice's block layer.\n"
		"\n"
		"  -c, --cmd STRING        run a command (may be repeated; else commands are read from stdin)\n"
		"  -f, --format FMT        image format (raw; default: probe)\n"
		"  -r, --read-only         open read-only\n"
		"  -n, --nocache           cache=none (O_DIRECT)\n"
		"  -t, --cache MODE        none, writeback (default), writethrough, directsync, unsafe\n"
		"  -i, --aio MODE          io_uring (default) or threads\n"
		"  -d, --discard MODE      unmap/on (default) or ignore/off\n"
		"  -U, --force-share       accepted for compatibility\n"
		"  -h, --help              this help\n"
		"\n"
		"Commands: help, read, readv, write, writev, discard, flush, aio_flush, truncate,\n"
		"length, info, map, sleep, quit.  Run 'help' for their syntax.\n"
		"Exit status: 0 when every command succeeded, 1 otherwise.\n");
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "cmd", required_argument, NULL, 'c' },
		{ "format", required_argument, NULL, 'f' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "nocache", no_argument, NULL, 'n' },
		{ "cache", required_argument, NULL, 't' },
		{ "aio", required_argument, NULL, 'i' },
		{ "discard", required_argument, NULL, 'd' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct io_state s = { 0 };
	char **cmds;
	int ncmds = 0, opt, i, status = 0;
	const char *filename;

	cmds = calloc((size_t)argc + 1, sizeof(*cmds));
	if (!cmds) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:f:rnt:i:d:UhV", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cmds[ncmds++] = optarg;
			break;
		case 'f':
			s.opts.fmt = optarg;
			break;
		case 'r':
			s.read_only = true;
			break;
		case 'n':
			s.opts.flags |= SLUICE_BDRV_O_NOCACHE;
			break;
		case 't':
			if (tool_parse_cache(optarg, &s.opts)) {
				fprintf(stderr, PROG ": invalid cache option: %s\n", optarg);
				goto fail;
			}
			break;
		case 'i':
			if (tool_parse_aio(optarg, &s.opts)) {
				fprintf(stderr, PROG ": invalid aio option: %s (io_uring or threads)\n", optarg);
				goto fail;
			}
			break;
		case 'd':
			if (!strcmp(optarg, "ignore") || !strcmp(optarg, "off")) {
				s.discard_ignore = true;
			} else if (!strcmp(optarg, "unmap") || !strcmp(optarg, "on")) {
				s.discard_ignore = false;
			} else {
				fprintf(stderr, PROG ": invalid discard option: %s\n", optarg);
				goto fail;
			}
			break;
		case 'U':
			break;
		case 'h':
			usage(stdout);
			free(cmds);
			return 0;
		case 'V':
			printf(PROG " version 0.1.0 (qemu-io compatible)\n");
			free(cmds);
			return 0;
		case ':':
			fprintf(stderr, PROG ": option '%s' requires an argument\n", argv[optind - 1]);
			goto fail;
		default:
			if (optopt)
				fprintf(stderr, PROG ": invalid option -- '%c' (try '" PROG " --help')\n", optopt);
			else
				fprintf(stderr, PROG ": unrecognized option '%s' (try '" PROG " --help')\n",
					argv[optind - 1]);
			goto fail;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			argc - optind ? "only one image file may be given" : "no image file given");
		goto fail;
	}
	filename = argv[optind];
	if (!s.read_only)
		s.opts.flags |= SLUICE_BDRV_O_RDWR;

	s.ctx = tool_main_ctx_new();
	if (!s.ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		goto fail;
	}
	s.blk = tool_blk_open(PROG, s.ctx, filename, &s.opts);
	if (!s.blk) {
		sluice_aio_ctx_free(s.ctx);
		goto fail;
	}

	if (ncmds) {
		for (i = 0; i < ncmds && !s.quit; i++) {
			char *line = strdup(cmds[i]);

			if (!line) {
				fprintf(stderr, PROG ": out of memory\n");
				status = 1;
				break;
			}
			if (run_command(&s, line))
				status = 1;
			free(line);
			fflush(stdout);
		}
	} else {
		bool tty = isatty(STDIN_FILENO);
		char *line = NULL;
		size_t cap = 0;

		while (!s.quit) {
			if (tty) {
				printf(PROG "> ");
				fflush(stdout);
			}
			if (getline(&line, &cap, stdin) < 0)
				break;
			if (run_command(&s, line))
				status = 1;
			fflush(stdout);
		}
		free(line);
	}

	sluice_blk_unref(s.blk);
	sluice_aio_ctx_free(s.ctx);
	free(cmds);
	if (fflush(stdout) == EOF) {
		fprintf(stderr, PROG ": error writing output: %s\n", strerror(errno));
		status = 1;
	}
	return status;
fail:
	free(cmds);
	return 1;
}
