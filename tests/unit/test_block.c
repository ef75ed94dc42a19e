// SPDX-License-Identifier: GPL-2.0
/* test_block.c - unit tests of the block graph and the file driver: open, errors, I/O, discard, zeroes, truncate, O_DIRECT RMW. */
#include <glib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "block-test.h"
#include "ktap.h"
#include "thread-pool.h"

#define MiB (1u << 20)

/* Main thread: create @name with @size bytes and open it as a backend. */
static struct sluice_blk *open_new(char *path, size_t plen, const char *name, uint64_t size,
				   const char *fmt, int flags)
{
	char *err = NULL;
	struct sluice_blk *blk;

	bt_path(path, plen, name);
	if (sluice_bdrv_create(fmt, path, size, NULL, &err) < 0) {
		ktap_diag("create: %s", err);
		g_free(err);
		return NULL;
	}
	blk = sluice_blk_new_open(path, fmt, flags, &err);
	if (!blk) {
		ktap_diag("open: %s", err);
		g_free(err);
	}
	return blk;
}

static enum ktap_result open_close_refcount(void)
{
	char path[4200], *err = NULL;
	struct sluice_bds *bs, *raw;

	bt_path(path, sizeof(path), "refcount.img");
	KTAP_EXPECT(sluice_bdrv_create("file", path, MiB, NULL, &err) == 0, "create: %s", err);
	bs = sluice_bds_open(path, "file", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(bs, "open: %s", err);
	KTAP_EXPECT(bs->refcnt == 1 && !bs->read_only && !bs->file, "fresh node state");
	KTAP_EXPECT(!strcmp(bs->drv->format_name, "file"), "driver %s", bs->drv->format_name);
	KTAP_EXPECT(sluice_bds_getlength(bs) == MiB, "length %lld", (long long)sluice_bds_getlength(bs));
	sluice_bds_ref(bs);
	KTAP_EXPECT(bs->refcnt == 2, "ref");
	sluice_bds_unref(bs);
	KTAP_EXPECT(bs->refcnt == 1, "unref");
	sluice_bds_unref(bs);

	/* NULL format probes: raw over file, read-only without O_RDWR. */
	raw = sluice_bds_open(path, NULL, 0, &err);
	KTAP_EXPECT(raw, "open: %s", err);
	KTAP_EXPECT(!strcmp(raw->drv->format_name, "raw") && raw->file &&
		    !strcmp(raw->file->drv->format_name, "file"), "raw -> file graph");
	KTAP_EXPECT(raw->read_only && raw->file->read_only, "read-only");
	KTAP_EXPECT(sluice_bds_getlength(raw) == MiB, "raw length");
	KTAP_EXPECT(strcmp(raw->node_name, raw->file->node_name), "node names differ");
	sluice_bds_unref(raw);
	unlink(path);
	return KTAP_PASS;
}

/*
 * Closing a format node drains it and its child; a child that someone else
 * still holds must come out of that drained section too.
 */
static enum ktap_result unref_parent_unquiesces_child(void)
{
	char path[4200], *err = NULL;
	struct sluice_bds *raw, *file;

	bt_path(path, sizeof(path), "unref-child.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, MiB, NULL, &err) == 0, "create: %s", err);
	raw = sluice_bds_open(path, "raw", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(raw && raw->file, "open: %s", err);
	file = raw->file;
	sluice_bds_ref(file);
	KTAP_EXPECT(!file->quiesce_counter, "child quiesced before: %u", file->quiesce_counter);
	sluice_bds_unref(raw);
	KTAP_EXPECT(file->refcnt == 1, "child refcnt %u", file->refcnt);
	KTAP_EXPECT(!file->quiesce_counter, "child still quiesced after the parent's close: %u",
		    file->quiesce_counter);
	/* The child drains and resumes as a node of its own. */
	sluice_bds_drained_begin(file);
	KTAP_EXPECT(file->quiesce_counter == 1, "drained: %u", file->quiesce_counter);
	sluice_bds_drained_end(file);
	KTAP_EXPECT(!file->quiesce_counter, "undrained: %u", file->quiesce_counter);
	sluice_bds_unref(file);
	unlink(path);
	return KTAP_PASS;
}

struct parked_read {
	struct sluice_blk *blk;
	char buf[512];
	int ret;
	bool done;
};

static void coroutine_fn parked_read_co(void *opaque)
{
	struct parked_read *p = opaque;
	struct iovec iov = { p->buf, sizeof(p->buf) };

	p->ret = sluice_blk_co_preadv(p->blk, 0, sizeof(p->buf), &iov, 1, 0);
	p->done = true;
}

/*
 * The last unref of a backend whose caller still submits: a request parked in
 * a drained section fails with -ENOMEDIUM instead of staying parked (leaked,
 * on freed memory) for ever.
 */
static enum ktap_result unref_fails_parked_request(void)
{
	char path[4200];
	struct parked_read p = { .ret = 1 };
	struct sluice_bds *root;

	p.blk = open_new(path, sizeof(path), "parked.img", MiB, "raw", SLUICE_BDRV_O_RDWR);
	KTAP_EXPECT(p.blk, "open");
	root = sluice_blk_bs(p.blk);
	sluice_bds_ref(root);		/* the test's drained section outlives the backend */
	sluice_bds_drained_begin(root);
	sluice_co_enter(sluice_co_create(parked_read_co, &p));
	KTAP_EXPECT(!p.done && sluice_blk_in_flight(p.blk) == 1, "the read did not park (done %d)", p.done);
	sluice_blk_unref(p.blk);
	KTAP_EXPECT(p.done, "the parked read never finished");
	KTAP_EXPECT(p.ret == -ENOMEDIUM, "the parked read returned %d", p.ret);
	sluice_bds_drained_end(root);
	KTAP_EXPECT(!root->quiesce_counter, "root still quiesced: %u", root->quiesce_counter);
	sluice_bds_unref(root);
	unlink(path);
	return KTAP_PASS;
}

static enum ktap_result bad_filename_errors(void)
{
	char *err = NULL;
	struct sluice_blk *blk;

	KTAP_EXPECT(!sluice_bds_open("/nonexistent/x.img", "raw", 0, &err), "opened?");
	KTAP_EXPECT(err && !strcmp(err, "Could not open '/nonexistent/x.img': No such file or directory"),
		    "error text: %s", err);
	g_free(err);
	err = NULL;
	KTAP_EXPECT(!sluice_bds_open("/dev/null", "nosuchfmt", 0, &err), "opened?");
	KTAP_EXPECT(err && !strcmp(err, "Unknown driver 'nosuchfmt'"), "error text: %s", err);
	g_free(err);
	err = NULL;
	KTAP_EXPECT(!sluice_bds_open(bt_dir(), "file", 0, &err), "opened a directory?");
	KTAP_EXPECT(err && strstr(err, "not a regular file"), "error text: %s", err);
	g_free(err);
	err = NULL;
	blk = sluice_blk_new_open("/nonexistent/y.img", NULL, SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(!blk && err && strstr(err, "No such file"), "blk error: %s", err);
	g_free(err);
	err = NULL;
	KTAP_EXPECT(sluice_bdrv_create("raw", "/nonexistent/z.img", MiB, NULL, &err) == -ENOENT,
		    "create in missing dir");
	KTAP_EXPECT(err && strstr(err, "Could not create '/nonexistent/z.img'"), "error text: %s", err);
	g_free(err);
	/* errp may be NULL. */
	KTAP_EXPECT(!sluice_bds_open("/nonexistent/x.img", "raw", 0, NULL), "opened?");
	return KTAP_PASS;
}

struct io_args {
	struct sluice_blk *blk;
	uint64_t offset, bytes;
	int flags;
	int op;
};

/* Coroutine: one non-I/O request for the tests. */
static int co_misc(void *opaque)
{
	struct io_args *a = opaque;

	switch (a->op) {
	case SLUICE_BLK_OP_FLUSH:
		return sluice_blk_co_flush(a->blk);
	case SLUICE_BLK_OP_DISCARD:
		return sluice_blk_co_pdiscard(a->blk, a->offset, a->bytes);
	case SLUICE_BLK_OP_WRITE_ZEROES:
		return sluice_blk_co_pwrite_zeroes(a->blk, a->offset, a->bytes, a->flags);
	case SLUICE_BLK_OP_TRUNCATE:
		return sluice_blk_co_truncate(a->blk, a->offset);
	}
	return -EINVAL;
}

static int misc(struct sluice_blk *blk, int op, uint64_t offset, uint64_t bytes, int flags)
{
	struct io_args a = { blk, offset, bytes, flags, op };

	return bt_run_co(co_misc, &a);
}

struct status_args {
	struct sluice_bds *bs;
	uint64_t offset, bytes, pnum, map;
	struct sluice_bds *file;
};

/* Coroutine: a node-level call, so the caller takes the graph lock (the backend layer would). */
static int coroutine_fn co_status(void *opaque)
{
	struct status_args *a = opaque;
	int ret;

	sluice_graph_co_rdlock();
	ret = sluice_bds_co_block_status(a->bs, a->offset, a->bytes, &a->pnum, &a->map, &a->file);
	sluice_graph_co_rdunlock();
	return ret;
}

static bool all_bytes(const unsigned char *p, int c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != c)
			return false;
	return true;
}

struct readv_args {
	struct sluice_blk *blk;
	struct iovec *iov;
	int niov;
	uint64_t offset, bytes;
};

/* Coroutine: read the whole backend into @iov (bytes: the iovec's size). */
static int co_readv_many(void *opaque)
{
	struct readv_args *a = opaque;
	size_t n = 0;
	int i;

	for (i = 0; i < a->niov; i++)
		n += a->iov[i].iov_len;
	return sluice_blk_co_preadv(a->blk, 0, n, a->iov, a->niov, 0);
}

/* Coroutine: read @bytes at @offset into @iov, whatever its size. */
static int co_readv_n(void *opaque)
{
	struct readv_args *a = opaque;

	return sluice_blk_co_preadv(a->blk, a->offset, a->bytes, a->iov, a->niov, 0);
}

/* Coroutine: write @bytes at @offset from @iov, whatever its size. */
static int co_writev_n(void *opaque)
{
	struct readv_args *a = opaque;

	return sluice_blk_co_pwritev(a->blk, a->offset, a->bytes, a->iov, a->niov, 0);
}

static enum ktap_result rw_flush_bounds(void)
{
	char path[4200], *err = NULL;
	unsigned char *buf = malloc(MiB), *back = malloc(MiB);
	struct sluice_blk *blk, *ro;
	size_t i;

	blk = open_new(path, sizeof(path), "rw.img", MiB, "raw", SLUICE_BDRV_O_RDWR);
	KTAP_EXPECT(blk, "open");
	for (i = 0; i < MiB; i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	KTAP_EXPECT(sluice_blk_pwrite(blk, 0, MiB, buf, 0) == 0, "write");
	memset(back, 0, MiB);
	KTAP_EXPECT(sluice_blk_pread(blk, 0, MiB, back, 0) == 0, "read");
	KTAP_EXPECT(!memcmp(buf, back, MiB), "data differs");
	KTAP_EXPECT(sluice_blk_pread(blk, 12345, 777, back, 0) == 0 && !memcmp(back, buf + 12345, 777),
		    "unaligned read");
	KTAP_EXPECT(sluice_blk_pwrite(blk, 100, 3, "abc", SLUICE_BDRV_REQ_FUA) == 0, "FUA write");
	KTAP_EXPECT(sluice_blk_pread(blk, 99, 5, back, 0) == 0 && !memcmp(back + 1, "abc", 3) &&
		    back[0] == buf[99] && back[4] == buf[103], "FUA data");
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_FLUSH, 0, 0, 0) == 0, "flush");
	KTAP_EXPECT(sluice_blk_pread(blk, MiB - 10, 11, back, 0) == -EINVAL, "read past the end");
	KTAP_EXPECT(sluice_blk_pwrite(blk, MiB, 1, buf, 0) == -EINVAL, "write past the end");
	KTAP_EXPECT(sluice_blk_pread(blk, UINT64_MAX - 1, 4, back, 0) == -EINVAL, "overflow");
	KTAP_EXPECT(sluice_blk_pread(blk, MiB, 0, back, 0) == 0, "empty read at the end");
	KTAP_EXPECT(sluice_blk_in_flight(blk) == 0, "in flight %u", sluice_blk_in_flight(blk));
	KTAP_EXPECT(sluice_blk_getlength(blk) == MiB, "length");

	ro = sluice_blk_new_open(path, "raw", 0, &err);
	KTAP_EXPECT(ro, "open ro: %s", err);
	KTAP_EXPECT(sluice_blk_pwrite(ro, 0, 1, buf, 0) == -EPERM, "write to read-only");
	KTAP_EXPECT(sluice_blk_pread(ro, 0, 4096, back, 0) == 0 && !memcmp(back, buf, 100), "ro read");
	sluice_blk_unref(ro);
	sluice_blk_unref(blk);
	unlink(path);
	free(buf);
	free(back);
	return KTAP_PASS;
}

static enum ktap_result discard_makes_hole(void)
{
	char path[4200];
	unsigned char *buf = malloc(MiB);
	struct sluice_blk *blk;
	struct status_args st;
	int fd, ret;
	off_t hole;

	blk = open_new(path, sizeof(path), "discard.img", MiB, "raw", SLUICE_BDRV_O_RDWR);
	KTAP_EXPECT(blk, "open");
	memset(buf, 0xab, MiB);
	KTAP_EXPECT(sluice_blk_pwrite(blk, 0, MiB, buf, 0) == 0, "write");
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_FLUSH, 0, 0, 0) == 0, "flush");
	fd = open(path, O_RDONLY);
	KTAP_SYSCALL(fd);
	hole = lseek(fd, 0, SEEK_HOLE);
	KTAP_EXPECT(hole == MiB, "hole before discard at %lld", (long long)hole);

	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_DISCARD, 256 << 10, 256 << 10, 0) == 0, "discard");
	hole = lseek(fd, 0, SEEK_HOLE);
	close(fd);
	KTAP_EXPECT(hole == 256 << 10, "hole after discard at %lld", (long long)hole);
	KTAP_EXPECT(sluice_blk_pread(blk, 0, MiB, buf, 0) == 0, "read");
	KTAP_EXPECT(all_bytes(buf, 0xab, 256 << 10) && all_bytes(buf + (256 << 10), 0, 256 << 10) &&
		    all_bytes(buf + (512 << 10), 0xab, 512 << 10), "contents after discard");

	/* block_status through raw sees the hole. */
	st = (struct status_args){ .bs = sluice_blk_bs(blk), .offset = 0, .bytes = MiB };
	ret = bt_run_co(co_status, &st);
	KTAP_EXPECT(ret >= 0 && (ret & SLUICE_BLOCK_DATA) && st.pnum == 256 << 10 && st.map == 0 &&
		    st.file == sluice_blk_bs(blk)->file, "status at 0: %d pnum %llu", ret,
		    (unsigned long long)st.pnum);
	st.offset = 256 << 10;
	ret = bt_run_co(co_status, &st);
	KTAP_EXPECT(ret >= 0 && (ret & SLUICE_BLOCK_ZERO) && !(ret & SLUICE_BLOCK_DATA) &&
		    st.pnum == 256 << 10 && st.map == 256 << 10, "status at 256k: %d pnum %llu", ret,
		    (unsigned long long)st.pnum);
	st.offset = MiB;
	ret = bt_run_co(co_status, &st);
	KTAP_EXPECT(ret == 0 && st.pnum == 0, "status at the end");
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_DISCARD, MiB - 1, 2, 0) == -EINVAL, "discard past the end");
	sluice_blk_unref(blk);
	unlink(path);
	free(buf);
	return KTAP_PASS;
}

static enum ktap_result write_zeroes_modes(void)
{
	char path[4200];
	unsigned char *buf = malloc(MiB);
	struct sluice_blk *blk;
	int fd;

	blk = open_new(path, sizeof(path), "zero.img", MiB, "raw", SLUICE_BDRV_O_RDWR);
	KTAP_EXPECT(blk, "open");
	memset(buf, 0x5a, MiB);
	KTAP_EXPECT(sluice_blk_pwrite(blk, 0, MiB, buf, 0) == 0, "write");
	/* Unaligned, allocated zeroes. */
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_WRITE_ZEROES, 100, 1000, 0) == 0, "zeroes");
	/* Unmapping zeroes on whole blocks. */
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_WRITE_ZEROES, 512 << 10, 128 << 10,
			 SLUICE_BDRV_REQ_MAY_UNMAP) == 0, "zeroes unmap");
	/* The native path only: must not fall back, and succeeds here anyway (ext4/xfs/btrfs). */
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_WRITE_ZEROES, 900 << 10, 4096,
			 SLUICE_BDRV_REQ_NO_FALLBACK | SLUICE_BDRV_REQ_FUA) == 0, "zeroes no fallback");
	KTAP_EXPECT(sluice_blk_pread(blk, 0, MiB, buf, 0) == 0, "read");
	KTAP_EXPECT(all_bytes(buf, 0x5a, 100) && all_bytes(buf + 100, 0, 1000) &&
		    all_bytes(buf + 1100, 0x5a, (512 << 10) - 1100) &&
		    all_bytes(buf + (512 << 10), 0, 128 << 10) &&
		    all_bytes(buf + (640 << 10), 0x5a, (260 << 10)) &&
		    all_bytes(buf + (900 << 10), 0, 4096) &&
		    all_bytes(buf + (900 << 10) + 4096, 0x5a, (124 << 10) - 4096), "contents");
	fd = open(path, O_RDONLY);
	KTAP_SYSCALL(fd);
	KTAP_EXPECT(lseek(fd, 0, SEEK_HOLE) == 512 << 10, "MAY_UNMAP punched a hole");
	close(fd);
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_WRITE_ZEROES, MiB, 1, 0) == -EINVAL, "past the end");
	sluice_blk_unref(blk);
	unlink(path);
	free(buf);
	return KTAP_PASS;
}

static enum ktap_result truncate_and_length(void)
{
	char path[4200];
	unsigned char buf[8192];
	struct sluice_blk *blk;
	struct stat st;

	blk = open_new(path, sizeof(path), "trunc.img", MiB, "raw", SLUICE_BDRV_O_RDWR);
	KTAP_EXPECT(blk, "open");
	memset(buf, 0x11, sizeof(buf));
	KTAP_EXPECT(sluice_blk_pwrite(blk, MiB - 4096, 4096, buf, 0) == 0, "write tail");
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_TRUNCATE, 2 * MiB, 0, 0) == 0, "grow");
	KTAP_EXPECT(sluice_blk_getlength(blk) == 2 * MiB, "length %lld",
		    (long long)sluice_blk_getlength(blk));
	KTAP_EXPECT(stat(path, &st) == 0 && st.st_size == 2 * MiB, "file size");
	KTAP_EXPECT(sluice_blk_pread(blk, MiB - 4096, 8192, buf, 0) == 0 && all_bytes(buf, 0x11, 4096) &&
		    all_bytes(buf + 4096, 0, 4096), "read across the old end");
	KTAP_EXPECT(sluice_blk_pwrite(blk, 2 * MiB - 1, 1, buf, 0) == 0, "write at the new end");
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_TRUNCATE, 4096, 0, 0) == 0, "shrink");
	KTAP_EXPECT(sluice_blk_getlength(blk) == 4096, "length after shrink");
	KTAP_EXPECT(sluice_blk_pread(blk, 0, 4097, buf, 0) == -EINVAL, "read past the new end");
	KTAP_EXPECT(sluice_blk_bs(blk)->drv->get_allocated_size(sluice_blk_bs(blk)) >= 0, "allocated");
	sluice_blk_unref(blk);
	unlink(path);
	return KTAP_PASS;
}

#define RMW_WRITERS 16

struct rmw_args {
	struct sluice_blk *blk;
	int idx;
	int ret;
	int *done;
};

/* Coroutine: one single byte write, all in the same sector, to stress RMW serialisation. */
static void coroutine_fn rmw_writer(void *opaque)
{
	struct rmw_args *a = opaque;
	unsigned char c = (unsigned char)(0xc0 + a->idx);
	struct iovec iov = { &c, 1 };

	a->ret = sluice_blk_co_pwritev(a->blk, 4096 + a->idx * 3, 1, &iov, 1, 0);
	(*a->done)++;
}

static enum ktap_result odirect_unaligned_rmw(void)
{
	char path[4200];
	struct sluice_blk *blk;
	struct rmw_args args[RMW_WRITERS];
	unsigned char *buf, *pat, back[64];
	void *abuf;
	int i, done = 0, fd;

	bt_path(path, sizeof(path), "direct.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, MiB, NULL, NULL) == 0, "create");
	KTAP_SKIP_IF(!bt_odirect_ok(path), "filesystem of %.200s refuses O_DIRECT", bt_dir());
	blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_NOCACHE, NULL);
	KTAP_EXPECT(blk, "open O_DIRECT");
	KTAP_EXPECT(sluice_blk_bs(blk)->file->request_alignment >= 512, "alignment %u",
		    sluice_blk_bs(blk)->file->request_alignment);

	buf = malloc(3 * 4096 + 1);
	pat = malloc(3 * 4096 + 1);
	for (i = 0; i < 3 * 4096 + 1; i++)
		pat[i] = (unsigned char)(i ^ (i >> 8));
	/* Unaligned offset, length and buffer. */
	KTAP_EXPECT(sluice_blk_pwrite(blk, 100, 1000, pat + 1, 0) == 0, "unaligned write");
	KTAP_EXPECT(sluice_blk_pwrite(blk, 8191, 2 * 4096 + 2, pat + 1, 0) == 0, "straddling write");
	KTAP_EXPECT(sluice_blk_pread(blk, 99, 1002, buf + 1, 0) == 0, "unaligned read");
	KTAP_EXPECT(buf[1] == 0 && !memcmp(buf + 2, pat + 1, 1000) && buf[1002] == 0, "head contents");
	KTAP_EXPECT(sluice_blk_pread(blk, 8190, 2 * 4096 + 4, buf, 0) == 0, "read straddle");
	KTAP_EXPECT(buf[0] == 0 && !memcmp(buf + 1, pat + 1, 2 * 4096 + 2) && buf[2 * 4096 + 3] == 0,
		    "straddle contents");
	/* Aligned buffer and offset: the direct path. */
	KTAP_EXPECT(posix_memalign(&abuf, 4096, 8192) == 0, "memalign");
	memset(abuf, 0x77, 8192);
	KTAP_EXPECT(sluice_blk_pwrite(blk, 65536, 8192, abuf, 0) == 0, "aligned write");
	memset(abuf, 0, 8192);
	KTAP_EXPECT(sluice_blk_pread(blk, 65536, 8192, abuf, 0) == 0 && all_bytes(abuf, 0x77, 8192),
		    "aligned read");
	free(abuf);

	/* Many RMWs of the same block at once: none may be lost. */
	for (i = 0; i < RMW_WRITERS; i++) {
		args[i] = (struct rmw_args){ .blk = blk, .idx = i, .ret = -1, .done = &done };
		sluice_co_enter(sluice_co_create(rmw_writer, &args[i]));
	}
	SLUICE_AIO_WAIT_WHILE(sluice_block_main_ctx(), done < RMW_WRITERS);
	for (i = 0; i < RMW_WRITERS; i++)
		KTAP_EXPECT(args[i].ret == 0, "writer %d: %d", i, args[i].ret);
	fd = open(path, O_RDONLY);
	KTAP_SYSCALL(fd);
	KTAP_EXPECT(pread(fd, back, sizeof(back), 4096) == sizeof(back), "pread");
	close(fd);
	for (i = 0; i < RMW_WRITERS; i++)
		KTAP_EXPECT(back[i * 3] == 0xc0 + i, "byte of writer %d lost: %02x", i, back[i * 3]);
	KTAP_EXPECT(sluice_blk_getlength(blk) == MiB, "length unchanged");
	sluice_blk_unref(blk);
	unlink(path);

	/* A file whose size is not a multiple of the block: the tail is read/written by RMW. */
	bt_path(path, sizeof(path), "direct-odd.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, 5000, NULL, NULL) == 0, "create odd");
	blk = sluice_blk_new_open(path, NULL, SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_NOCACHE, NULL);
	KTAP_EXPECT(blk && sluice_blk_getlength(blk) == 5000, "open odd");
	KTAP_EXPECT(sluice_blk_pwrite(blk, 4990, 10, pat, 0) == 0, "tail write");
	KTAP_EXPECT(sluice_blk_pread(blk, 4980, 20, buf, 0) == 0 && all_bytes(buf, 0, 10) &&
		    !memcmp(buf + 10, pat, 10), "tail read");
	KTAP_EXPECT(sluice_blk_pread(blk, 4990, 11, buf, 0) == -EINVAL, "past the end");
	KTAP_EXPECT(sluice_blk_getlength(blk) == 5000, "length %lld",
		    (long long)sluice_blk_getlength(blk));
	sluice_blk_unref(blk);
	unlink(path);
	free(buf);
	free(pat);
	return KTAP_PASS;
}

static enum ktap_result thread_pool_engine(void)
{
	char path[4200];
	unsigned char buf[5000], back[5000];
	struct sluice_blk *blk;
	int i;

	blk = open_new(path, sizeof(path), "threads.img", MiB, "raw",
		       SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_THREADS);
	KTAP_EXPECT(blk, "open");
	for (i = 0; i < (int)sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 13);
	KTAP_EXPECT(sluice_blk_pwrite(blk, 333, sizeof(buf), buf, 0) == 0, "write");
	KTAP_EXPECT(sluice_blk_pread(blk, 333, sizeof(back), back, 0) == 0, "read");
	KTAP_EXPECT(!memcmp(buf, back, sizeof(buf)), "contents");
	KTAP_EXPECT(misc(blk, SLUICE_BLK_OP_FLUSH, 0, 0, 0) == 0, "flush");
	KTAP_EXPECT(sluice_thread_pool_workers() >= 1, "no worker ran");
	sluice_blk_unref(blk);
	unlink(path);
	return KTAP_PASS;
}

#define MANY_IOV 256

/*
 * A request with more iovecs than the driver's on-stack copy (64) that comes
 * back short must be resumed, not failed with -EINVAL: here the file shrank
 * under the node, so the read is short at the new EOF and the rest reads as
 * zeroes.  Runs with io_uring, the thread pool and O_DIRECT.
 */
static enum ktap_result many_iovecs_short_read(void)
{
	static const int modes[] = { 0, SLUICE_BDRV_O_THREADS, SLUICE_BDRV_O_NOCACHE };
	char path[4200];
	struct iovec iov[MANY_IOV];
	unsigned char *buf, *pat;
	struct sluice_blk *blk;
	size_t m;
	int i;

	KTAP_EXPECT(posix_memalign((void **)&buf, 4096, MANY_IOV * 4096) == 0, "memalign");
	pat = malloc(MANY_IOV * 4096);
	for (i = 0; i < MANY_IOV * 4096; i++)
		pat[i] = (unsigned char)(i * 5 + 1);
	for (m = 0; m < G_N_ELEMENTS(modes); m++) {
		bt_path(path, sizeof(path), "many-iov.img");
		KTAP_EXPECT(sluice_bdrv_create("raw", path, MANY_IOV * 4096, NULL, NULL) == 0, "create");
		if ((modes[m] & SLUICE_BDRV_O_NOCACHE) && !bt_odirect_ok(path)) {
			unlink(path);
			continue;
		}
		blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR | modes[m], NULL);
		KTAP_EXPECT(blk, "open mode %#x", modes[m]);
		KTAP_EXPECT(sluice_blk_pwrite(blk, 0, MANY_IOV * 4096, pat, 0) == 0, "write");
		/* Someone else shrinks the file to 16 blocks; the node still says 256. */
		KTAP_EXPECT(truncate(path, 16 * 4096) == 0, "truncate");
		memset(buf, 0xee, MANY_IOV * 4096);
		for (i = 0; i < MANY_IOV; i++)
			iov[i] = (struct iovec){ buf + i * 4096, 4096 };
		KTAP_EXPECT(bt_run_co(co_readv_many, &(struct readv_args){ .blk = blk, .iov = iov, .niov = MANY_IOV }) == 0,
			    "%d-iovec read across EOF, mode %#x", MANY_IOV, modes[m]);
		KTAP_EXPECT(!memcmp(buf, pat, 16 * 4096) && all_bytes(buf + 16 * 4096, 0, (MANY_IOV - 16) * 4096),
			    "contents, mode %#x", modes[m]);
		sluice_blk_unref(blk);
		unlink(path);
	}
	free(buf);
	free(pat);
	return KTAP_PASS;
}

/*
 * A read that comes back short in the middle of the file is resumed, and a
 * resume that fails is an error, never zeroes: here the second buffer page is
 * PROT_NONE, so the buffered engines move the first 4 KiB and then fault.
 * O_DIRECT on ext4 refuses such a read whole (-EFAULT), which must come back
 * as that error too; its aligned short reads (signals, network filesystems)
 * take the same resume path as the buffered ones.
 */
static enum ktap_result short_read_mid_file_is_not_eof(void)
{
	static const int modes[] = { 0, SLUICE_BDRV_O_THREADS, SLUICE_BDRV_O_NOCACHE };
	unsigned char pat[3 * 4096];
	struct sluice_blk *blk;
	struct iovec iov[2];
	unsigned char *pages;
	char path[4200];
	size_t m;
	int i, ret;

	pages = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	KTAP_EXPECT(pages != MAP_FAILED, "mmap");
	KTAP_SYSCALL(mprotect(pages + 4096, 4096, PROT_NONE));
	for (i = 0; i < (int)sizeof(pat); i++)
		pat[i] = (unsigned char)(i * 7 + 3);
	for (m = 0; m < G_N_ELEMENTS(modes); m++) {
		blk = open_new(path, sizeof(path), "short-mid.img", sizeof(pat), "raw", SLUICE_BDRV_O_RDWR);
		KTAP_EXPECT(blk, "open");
		KTAP_EXPECT(sluice_blk_pwrite(blk, 0, sizeof(pat), pat, 0) == 0, "write");
		sluice_blk_unref(blk);
		if ((modes[m] & SLUICE_BDRV_O_NOCACHE) && !bt_odirect_ok(path)) {
			unlink(path);
			continue;
		}
		blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR | modes[m], NULL);
		KTAP_EXPECT(blk, "open mode %#x", modes[m]);
		memset(pages, 0xee, 4096);
		iov[0] = (struct iovec){ pages, 4096 };
		iov[1] = (struct iovec){ pages + 4096, 4096 };
		ret = bt_run_co(co_readv_n, &(struct readv_args){ blk, iov, 2, 4096, 2 * 4096 });
		KTAP_EXPECT(ret == -EFAULT, "read into a faulting buffer gave %d, mode %#x", ret, modes[m]);
		KTAP_EXPECT(!memcmp(pages, pat + 4096, 4096), "first page, mode %#x", modes[m]);
		/* The node still works. */
		iov[1] = (struct iovec){ pages, 4096 };
		KTAP_EXPECT(bt_run_co(co_readv_n, &(struct readv_args){ blk, iov + 1, 1, 2 * 4096, 4096 }) == 0,
			    "read after, mode %#x", modes[m]);
		KTAP_EXPECT(!memcmp(pages, pat + 2 * 4096, 4096), "read after contents, mode %#x", modes[m]);
		sluice_blk_unref(blk);
		unlink(path);
	}
	munmap(pages, 2 * 4096);
	return KTAP_PASS;
}

/*
 * Only the first @bytes of an iovec are transferred: a longer iovec is not
 * read into or written from past @bytes (the inline RWF_NOWAIT path once
 * moved the whole iovec); a shorter one is -EINVAL.
 */
static enum ktap_result iov_longer_than_bytes(void)
{
	static const int modes[] = { 0, SLUICE_BDRV_O_THREADS, SLUICE_BDRV_O_NOCACHE };
	char path[4200];
	unsigned char *buf, disk[8192];
	struct sluice_blk *blk;
	struct iovec iov[2];
	size_t m;
	int fd;

	KTAP_EXPECT(posix_memalign((void **)&buf, 4096, 3 * 4096) == 0, "memalign");
	for (m = 0; m < G_N_ELEMENTS(modes); m++) {
		blk = open_new(path, sizeof(path), "iov-long.img", 8192, "raw", SLUICE_BDRV_O_RDWR);
		KTAP_EXPECT(blk, "open");
		sluice_blk_unref(blk);
		if ((modes[m] & SLUICE_BDRV_O_NOCACHE) && !bt_odirect_ok(path)) {
			unlink(path);
			continue;
		}
		blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR | modes[m], NULL);
		KTAP_EXPECT(blk, "open mode %#x", modes[m]);
		/* Write 4096 bytes from an 8192 + 4096 byte iovec (aligned for O_DIRECT). */
		memset(buf, 0x33, 4096);
		memset(buf + 4096, 0x44, 2 * 4096);
		iov[0] = (struct iovec){ buf, 2 * 4096 };
		iov[1] = (struct iovec){ buf + 2 * 4096, 4096 };
		KTAP_EXPECT(bt_run_co(co_writev_n, &(struct readv_args){ blk, iov, 2, 0, 4096 }) == 0,
			    "write, mode %#x", modes[m]);
		fd = open(path, O_RDONLY);
		KTAP_SYSCALL(fd);
		KTAP_EXPECT(pread(fd, disk, sizeof(disk), 0) == sizeof(disk), "pread");
		close(fd);
		KTAP_EXPECT(all_bytes(disk, 0x33, 4096) && all_bytes(disk + 4096, 0, 4096),
			    "wrote past bytes, mode %#x", modes[m]);
		/* Read 4096 bytes into the same iovec: the rest keeps its contents. */
		memset(buf, 0xee, 3 * 4096);
		KTAP_EXPECT(bt_run_co(co_readv_n, &(struct readv_args){ blk, iov, 2, 0, 4096 }) == 0,
			    "read, mode %#x", modes[m]);
		KTAP_EXPECT(all_bytes(buf, 0x33, 4096) && all_bytes(buf + 4096, 0xee, 2 * 4096),
			    "read past bytes, mode %#x", modes[m]);
		/* An iovec shorter than bytes. */
		KTAP_EXPECT(bt_run_co(co_readv_n, &(struct readv_args){ blk, iov, 1, 0, 3 * 4096 }) ==
			    -EINVAL, "short iovec read, mode %#x", modes[m]);
		KTAP_EXPECT(bt_run_co(co_writev_n, &(struct readv_args){ blk, iov, 1, 0, 3 * 4096 }) ==
			    -EINVAL, "short iovec write, mode %#x", modes[m]);
		sluice_blk_unref(blk);
		unlink(path);
	}
	free(buf);
	return KTAP_PASS;
}

struct rmw_hold {
	struct sluice_co_rwlock *lock;
	bool held, released;
};

/* Coroutine: hold @lock as writer (as an RMW does) until entered again. */
static void coroutine_fn rmw_hold_fn(void *opaque) TSA_NO_TSA
{
	struct rmw_hold *h = opaque;

	sluice_co_rwlock_wrlock(h->lock);
	h->held = true;
	sluice_co_yield();
	sluice_co_rwlock_unlock(h->lock);
	h->released = true;
}

struct zeroes_args {
	struct sluice_blk *blk;
	uint64_t offset, bytes;
	int ret;
	bool done;
};

static void coroutine_fn zeroes_fn(void *opaque)
{
	struct zeroes_args *z = opaque;

	z->ret = sluice_blk_co_pwrite_zeroes(z->blk, z->offset, z->bytes, 0);
	z->done = true;
}

static void flag_cb(void *opaque)
{
	*(bool *)opaque = true;
}

/*
 * With O_DIRECT a sub-block write is a read-modify-write of the whole block.
 * Write-zeroes (and discard) of other bytes of that block must wait for it,
 * or the RMW writes the old bytes back over the zeroes.
 */
static enum ktap_result zeroes_wait_for_rmw(void)
{
	char path[4200];
	unsigned char disk[65536];
	struct sluice_aio_ctx *ctx = sluice_block_main_ctx();
	struct rmw_hold h = { 0 };
	struct zeroes_args z = { .ret = -1 };
	struct sluice_timer *t;
	struct sluice_co *holder;
	struct sluice_blk *blk;
	bool expired = false;
	uint32_t a;
	int fd;

	bt_path(path, sizeof(path), "rmw-zero.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, MiB, NULL, NULL) == 0, "create");
	KTAP_SKIP_IF(!bt_odirect_ok(path), "filesystem of %.200s refuses O_DIRECT", bt_dir());
	blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_NOCACHE, NULL);
	KTAP_EXPECT(blk, "open O_DIRECT");
	/* The block an RMW would rewrite: [8a, 9a); zero a quarter in its middle. */
	a = sluice_blk_bs(blk)->file->request_alignment;
	KTAP_EXPECT(a > 1 && a <= sizeof(disk), "alignment %u", a);
	fd = open(path, O_WRONLY);
	KTAP_SYSCALL(fd);
	memset(disk, 0x99, a);
	KTAP_EXPECT(pwrite(fd, disk, a, 8 * a) == a, "pwrite");
	close(fd);

	h.lock = &sluice_blk_bs(blk)->file->rmw_lock;
	holder = sluice_co_create(rmw_hold_fn, &h);
	sluice_co_enter(holder);
	KTAP_EXPECT(h.held, "holder");
	z.blk = blk;
	z.offset = 8 * a + a / 2;
	z.bytes = a / 4;
	sluice_co_enter(sluice_co_create(zeroes_fn, &z));
	/* Give an unserialised write-zeroes ample time to reach the disk. */
	t = sluice_timer_new(ctx, flag_cb, &expired);
	sluice_timer_mod_ns(t, sluice_clock_ns() + 100000000);
	SLUICE_AIO_WAIT_WHILE(ctx, !expired);
	sluice_timer_free(t);
	KTAP_EXPECT(!z.done, "write-zeroes ran during an RMW of its block (ret %d)", z.ret);
	sluice_co_enter(holder);
	SLUICE_AIO_WAIT_WHILE(ctx, !z.done);
	KTAP_EXPECT(h.released && z.ret == 0, "write-zeroes after the RMW: %d", z.ret);
	fd = open(path, O_RDONLY);
	KTAP_SYSCALL(fd);
	KTAP_EXPECT(pread(fd, disk, a, 8 * a) == a, "pread");
	close(fd);
	KTAP_EXPECT(all_bytes(disk, 0x99, a / 2) && all_bytes(disk + a / 2, 0, a / 4) &&
		    all_bytes(disk + a / 2 + a / 4, 0x99, a - a / 2 - a / 4), "contents");
	sluice_blk_unref(blk);
	unlink(path);
	return KTAP_PASS;
}

static enum ktap_result last_cleanup(void)
{
	bt_cleanup();
	KTAP_EXPECT(sluice_co_alive() == 0, "%lu coroutines never returned", sluice_co_alive());
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(open_close_refcount),
	  KTAP_CASE(unref_parent_unquiesces_child),
	  KTAP_CASE(unref_fails_parked_request),
	  KTAP_CASE(bad_filename_errors),
	  KTAP_CASE(rw_flush_bounds),
	  KTAP_CASE(discard_makes_hole),
	  KTAP_CASE(write_zeroes_modes),
	  KTAP_CASE(truncate_and_length),
	  KTAP_CASE(odirect_unaligned_rmw),
	  KTAP_CASE(thread_pool_engine),
	  KTAP_CASE(many_iovecs_short_read),
	  KTAP_CASE(short_read_mid_file_is_not_eof),
	  KTAP_CASE(iov_longer_than_bytes),
	  KTAP_CASE(zeroes_wait_for_rmw),
	  KTAP_CASE(last_cleanup))
