// SPDX-License-Identifier: GPL-2.0
/* test_raw.c - raw over file under load: random I/O against a shadow model (io_uring, threads, O_DIRECT), drain, IOThreads. */
#include <glib.h>

#include "block-test.h"
#include "iothread.h"
#include "ktap.h"

#define DISK_SIZE	(4u << 20)
#define NR_OPS		2000
#define NR_WORKERS	32
#define MAX_IO		(64u << 10)

/* A random workload: workers pick non-overlapping ranges, so the model is exact. */
struct model {
	struct sluice_blk *blk;
	unsigned char *data;			/* what the disk must hold */
	GRand *rand;
	unsigned int ops_left;
	unsigned int workers_left;
	int error;				/* first failure, or 0 */
	struct { uint64_t start, end; } busy[NR_WORKERS];
};

/* Does [start, end) overlap a range another worker has in flight? */
static bool model_busy(struct model *m, int self, uint64_t start, uint64_t end)
{
	int i;

	for (i = 0; i < NR_WORKERS; i++)
		if (i != self && m->busy[i].start < end && start < m->busy[i].end)
			return true;
	return false;
}

struct worker {
	struct model *m;
	int idx;
};

/* Split @buf into 1..3 iovecs at random points. */
static int split_iov(GRand *r, struct iovec *iov, unsigned char *buf, uint64_t len)
{
	uint64_t a, b;

	if (len < 3 || g_rand_int_range(r, 0, 2))
		goto one;
	a = g_rand_int_range(r, 1, (gint32)len - 1);
	b = g_rand_int_range(r, (gint32)a + 1, (gint32)len);
	iov[0] = (struct iovec){ buf, a };
	iov[1] = (struct iovec){ buf + a, b - a };
	iov[2] = (struct iovec){ buf + b, len - b };
	return 3;
one:
	iov[0] = (struct iovec){ buf, len };
	return 1;
}

/* Coroutine (main ctx; requests may run in another ctx): random ops until the budget is spent. */
static void coroutine_fn model_worker(void *opaque)
{
	struct worker *w = opaque;
	struct model *m = w->m;
	unsigned char *buf = malloc(MAX_IO);
	struct iovec iov[3];

	while (m->ops_left && !m->error) {
		uint64_t len = g_rand_int_range(m->rand, 1, MAX_IO + 1);
		uint64_t off = g_rand_int_range(m->rand, 0, DISK_SIZE - len + 1);
		int op = g_rand_int_range(m->rand, 0, 10), niov, ret = 0;
		uint64_t i;

		if (g_rand_int_range(m->rand, 0, 4) == 0) {	/* some aligned ones */
			off &= ~4095ull;
			len = (len + 4095) & ~4095ull;
			if (off + len > DISK_SIZE)
				len = DISK_SIZE - off;
		}
		if (model_busy(m, w->idx, off, off + len))
			continue;
		m->ops_left--;
		m->busy[w->idx].start = off;
		m->busy[w->idx].end = off + len;
		if (op < 4) {			/* write */
			unsigned char seed = (unsigned char)g_rand_int(m->rand);

			for (i = 0; i < len; i++)
				buf[i] = (unsigned char)(seed + i * 31);
			niov = split_iov(m->rand, iov, buf, len);
			ret = sluice_blk_co_pwritev(m->blk, off, len, iov, niov,
						    op == 3 ? SLUICE_BDRV_REQ_FUA : 0);
			if (!ret)
				memcpy(m->data + off, buf, len);
		} else if (op < 8) {		/* read and check */
			memset(buf, 0xee, len);
			niov = split_iov(m->rand, iov, buf, len);
			ret = sluice_blk_co_preadv(m->blk, off, len, iov, niov, 0);
			if (!ret && memcmp(buf, m->data + off, len)) {
				ktap_diag("read %llu+%llu differs from the model",
					  (unsigned long long)off, (unsigned long long)len);
				ret = -EILSEQ;
			}
		} else if (op == 8) {		/* zeroes */
			ret = sluice_blk_co_pwrite_zeroes(m->blk, off, len,
							  g_rand_int_range(m->rand, 0, 2) ?
							  SLUICE_BDRV_REQ_MAY_UNMAP : 0);
			if (!ret)
				memset(m->data + off, 0, len);
		} else if (g_rand_int_range(m->rand, 0, 2)) {	/* discard: reads as zeroes on files */
			ret = sluice_blk_co_pdiscard(m->blk, off, len);
			if (!ret)
				memset(m->data + off, 0, len);
		} else {
			ret = sluice_blk_co_flush(m->blk);
		}
		if (ret && !m->error) {
			ktap_diag("op %d at %llu+%llu: %s", op, (unsigned long long)off,
				  (unsigned long long)len, strerror(-ret));
			m->error = ret;
		}
		m->busy[w->idx].start = m->busy[w->idx].end = 0;
	}
	free(buf);
	m->workers_left--;
}

/* Main thread: run the workload against @path opened with @flags (in @ctx when not NULL). */
static int run_model(const char *path, int flags, struct sluice_aio_ctx *ctx, guint32 seed)
{
	struct worker w[NR_WORKERS];
	struct model m = { 0 };
	char *err = NULL;
	int i, ret;

	m.blk = sluice_blk_new_open(path, "raw", flags, &err);
	if (!m.blk) {
		ktap_diag("open: %s", err);
		g_free(err);
		return -1;
	}
	if (ctx)
		sluice_blk_set_aio_context(m.blk, ctx);
	m.data = calloc(1, DISK_SIZE);
	m.rand = g_rand_new_with_seed(seed);
	m.ops_left = NR_OPS;
	m.workers_left = NR_WORKERS;
	for (i = 0; i < NR_WORKERS; i++) {
		w[i] = (struct worker){ &m, i };
		sluice_co_enter(sluice_co_create(model_worker, &w[i]));
	}
	SLUICE_AIO_WAIT_WHILE(sluice_block_main_ctx(), m.workers_left);
	ret = m.error;
	if (!ret && sluice_blk_in_flight(m.blk))
		ret = -EBUSY;
	if (ctx)
		sluice_blk_set_aio_context(m.blk, sluice_block_main_ctx());
	sluice_blk_unref(m.blk);
	if (!ret)
		ret = bt_compare_file(path, m.data, DISK_SIZE);
	g_rand_free(m.rand);
	free(m.data);
	return ret;
}

static int model_case(const char *name, int flags, struct sluice_aio_ctx *ctx)
{
	char path[4200];
	int ret;

	bt_path(path, sizeof(path), name);
	if (sluice_bdrv_create("raw", path, DISK_SIZE, NULL, NULL) < 0)
		return -1;
	ret = run_model(path, flags, ctx, 0x5eed + flags);
	unlink(path);
	return ret;
}

static enum ktap_result random_io_uring(void)
{
	int ret = model_case("model-uring.img", SLUICE_BDRV_O_RDWR, NULL);

	KTAP_EXPECT(ret == 0, "model run: %d", ret);
	return KTAP_PASS;
}

static enum ktap_result random_io_threads(void)
{
	int ret = model_case("model-threads.img", SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_THREADS, NULL);

	KTAP_EXPECT(ret == 0, "model run: %d", ret);
	return KTAP_PASS;
}

static enum ktap_result random_io_odirect(void)
{
	char probe[4200];
	int ret;

	bt_path(probe, sizeof(probe), "probe.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", probe, 4096, NULL, NULL) == 0, "create");
	ret = bt_odirect_ok(probe);
	unlink(probe);
	KTAP_SKIP_IF(!ret, "filesystem of %.200s refuses O_DIRECT", bt_dir());
	ret = model_case("model-direct.img", SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_NOCACHE, NULL);
	KTAP_EXPECT(ret == 0, "model run (uring): %d", ret);
	ret = model_case("model-direct-t.img",
			 SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_NOCACHE | SLUICE_BDRV_O_THREADS, NULL);
	KTAP_EXPECT(ret == 0, "model run (threads): %d", ret);
	return KTAP_PASS;
}

static enum ktap_result random_io_iothread(void)
{
	struct sluice_iothread *t = sluice_iothread_new("io-model");
	int ret;

	KTAP_EXPECT(t, "iothread: %s", strerror(errno));
	ret = model_case("model-io.img", SLUICE_BDRV_O_RDWR, sluice_iothread_ctx(t));
	KTAP_EXPECT(ret == 0, "model run (uring): %d", ret);
	ret = model_case("model-io-t.img", SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_THREADS,
			 sluice_iothread_ctx(t));
	KTAP_EXPECT(ret == 0, "model run (threads): %d", ret);
	sluice_iothread_free(t);
	return KTAP_PASS;
}

/* A write from a coroutine, counting completions. */
struct req_args {
	struct sluice_blk *blk;
	uint64_t offset;
	unsigned char *buf;
	uint64_t len;
	int ret;
	bool done;
	unsigned int *ndone;
};

static void coroutine_fn req_writer(void *opaque)
{
	struct req_args *a = opaque;
	struct iovec iov = { a->buf, a->len };

	a->ret = sluice_blk_co_pwritev(a->blk, a->offset, a->len, &iov, 1, SLUICE_BDRV_REQ_FUA);
	a->done = true;
	if (a->ndone)
		__atomic_add_fetch(a->ndone, 1, __ATOMIC_SEQ_CST);
}

#define DRAIN_REQS 16

/* Main thread: drain @blk with requests in flight (from the main ctx, the requests maybe elsewhere). */
static enum ktap_result drain_case(struct sluice_blk *blk)
{
	struct sluice_aio_ctx *main_ctx = sluice_block_main_ctx();
	struct sluice_bds *bs = sluice_blk_bs(blk);
	struct req_args a[DRAIN_REQS], late;
	unsigned char *buf = malloc(MAX_IO);
	unsigned int ndone = 0, parked;
	int i;

	memset(buf, 0x3c, MAX_IO);
	for (i = 0; i < DRAIN_REQS; i++) {
		a[i] = (struct req_args){ .blk = blk, .offset = (uint64_t)i * MAX_IO, .buf = buf,
					  .len = MAX_IO, .ret = -1, .ndone = &ndone };
		sluice_co_enter(sluice_co_create(req_writer, &a[i]));
	}
	sluice_bds_drained_begin(bs);
	KTAP_EXPECT(__atomic_load_n(&bs->in_flight, __ATOMIC_SEQ_CST) == 0 &&
		    __atomic_load_n(&bs->file->in_flight, __ATOMIC_SEQ_CST) == 0,
		    "in flight after drained_begin: %u/%u", bs->in_flight, bs->file->in_flight);
	/* Nested drain, then a request issued while drained must wait. */
	sluice_bds_drained_begin(bs);
	parked = sluice_blk_in_flight(blk);	/* those that arrived after the first drain began */
	late = (struct req_args){ .blk = blk, .offset = 0, .buf = buf, .len = 4096, .ret = -1 };
	sluice_co_enter(sluice_co_create(req_writer, &late));
	for (i = 0; i < 50; i++)
		sluice_aio_poll(main_ctx, false);
	usleep(20000);
	for (i = 0; i < 50; i++)
		sluice_aio_poll(main_ctx, false);
	KTAP_EXPECT(!late.done, "request ran while drained");
	KTAP_EXPECT(sluice_blk_in_flight(blk) == parked + 1, "parked request counts in the backend: %u",
		    sluice_blk_in_flight(blk));
	KTAP_EXPECT(bs->in_flight == 0, "parked request counts in the node");
	sluice_bds_drained_end(bs);
	for (i = 0; i < 50; i++)
		sluice_aio_poll(main_ctx, false);
	KTAP_EXPECT(!late.done, "request ran while still drained (nested)");
	sluice_bds_drained_end(bs);
	SLUICE_AIO_WAIT_WHILE(main_ctx, !late.done ||
			      __atomic_load_n(&ndone, __ATOMIC_SEQ_CST) < DRAIN_REQS);
	KTAP_EXPECT(late.ret == 0, "late request: %d", late.ret);
	for (i = 0; i < DRAIN_REQS; i++)
		KTAP_EXPECT(a[i].ret == 0, "request %d: %d", i, a[i].ret);
	KTAP_EXPECT(sluice_blk_in_flight(blk) == 0, "in flight at the end");
	free(buf);
	return KTAP_PASS;
}

static enum ktap_result drain_main_ctx(void)
{
	char path[4200];
	struct sluice_blk *blk;
	enum ktap_result r;

	bt_path(path, sizeof(path), "drain.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, DRAIN_REQS * MAX_IO, NULL, NULL) == 0, "create");
	/* Threads: requests take real time in a worker. */
	blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_THREADS, NULL);
	KTAP_EXPECT(blk, "open");
	r = drain_case(blk);
	sluice_blk_unref(blk);
	if (r != KTAP_PASS)
		return r;
	blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR, NULL);
	KTAP_EXPECT(blk, "open");
	r = drain_case(blk);
	sluice_blk_unref(blk);
	unlink(path);
	return r;
}

static enum ktap_result drain_iothread(void)
{
	struct sluice_iothread *t = sluice_iothread_new("io-drain");
	char path[4200];
	struct sluice_blk *blk;
	enum ktap_result r;

	KTAP_EXPECT(t, "iothread: %s", strerror(errno));
	bt_path(path, sizeof(path), "drain-io.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, DRAIN_REQS * MAX_IO, NULL, NULL) == 0, "create");
	blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR | SLUICE_BDRV_O_THREADS, NULL);
	KTAP_EXPECT(blk, "open");
	sluice_blk_set_aio_context(blk, sluice_iothread_ctx(t));
	KTAP_EXPECT(sluice_blk_get_aio_context(blk) == sluice_iothread_ctx(t), "ctx moved");
	r = drain_case(blk);
	sluice_blk_unref(blk);
	unlink(path);
	sluice_iothread_free(t);
	return r;
}

static bool all_bytes_42(const unsigned char *p, size_t n)
{
	while (n--)
		if (*p++ != 0x42)
			return false;
	return true;
}

/* An IOThread's own coroutine using the backend (run there by sluice_aio_run_sync). */
struct io_sync {
	struct sluice_blk *blk;
	int ret;
};

static void io_thread_sync_fn(void *opaque)
{
	struct io_sync *s = opaque;
	unsigned char buf[3000], back[3000];

	memset(buf, 0x42, sizeof(buf));
	/* Not a coroutine, on the node's home thread: the synchronous helpers poll the IOThread ctx. */
	s->ret = sluice_blk_pwrite(s->blk, 5000, sizeof(buf), buf, 0);
	if (!s->ret)
		s->ret = sluice_blk_pread(s->blk, 5000, sizeof(back), back, 0);
	if (!s->ret && memcmp(buf, back, sizeof(buf)))
		s->ret = -EILSEQ;
}

static enum ktap_result iothread_requests(void)
{
	struct sluice_iothread *t = sluice_iothread_new("io-req");
	unsigned char buf[8192], back[8192];
	struct io_sync s;
	char path[4200];
	struct sluice_blk *blk;

	KTAP_EXPECT(t, "iothread: %s", strerror(errno));
	bt_path(path, sizeof(path), "iothread.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, MAX_IO, NULL, NULL) == 0, "create");
	blk = sluice_blk_new_open(path, NULL, SLUICE_BDRV_O_RDWR, NULL);
	KTAP_EXPECT(blk, "open");
	sluice_blk_set_aio_context(blk, sluice_iothread_ctx(t));

	/* From the main thread: the request hops to the IOThread and back. */
	memset(buf, 0x99, sizeof(buf));
	KTAP_EXPECT(sluice_blk_pwrite(blk, 100, sizeof(buf), buf, 0) == 0, "write from main");
	KTAP_EXPECT(sluice_blk_pread(blk, 100, sizeof(back), back, 0) == 0 &&
		    !memcmp(buf, back, sizeof(buf)), "read from main");

	/* In the IOThread itself. */
	s = (struct io_sync){ .blk = blk, .ret = -1 };
	sluice_aio_run_sync(sluice_iothread_ctx(t), io_thread_sync_fn, &s);
	KTAP_EXPECT(s.ret == 0, "IOThread requests: %d", s.ret);
	KTAP_EXPECT(sluice_blk_pread(blk, 5000, 10, back, 0) == 0 && all_bytes_42(back, 10),
		    "IOThread data seen from main");

	sluice_blk_unref(blk);	/* drains from the main thread */
	unlink(path);
	sluice_iothread_free(t);
	return KTAP_PASS;
}

/*
 * A multiqueue graph (raw over file) left in the main ctx: requests from two
 * IOThreads run there with their own rings.  The main thread sits in
 * sluice_aio_run_sync() meanwhile, so a hop to the root's ctx would hang.
 */
static enum ktap_result multiqueue_requests(void)
{
	struct sluice_iothread *t[2] = { sluice_iothread_new("io-mq0"), sluice_iothread_new("io-mq1") };
	unsigned char back[16];
	struct io_sync s;
	char path[4200];
	struct sluice_blk *blk;
	int i;

	KTAP_EXPECT(t[0] && t[1], "iothreads: %s", strerror(errno));
	bt_path(path, sizeof(path), "mq.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, MAX_IO, NULL, NULL) == 0, "create");
	blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR, NULL);
	KTAP_EXPECT(blk, "open");
	KTAP_EXPECT(sluice_blk_get_aio_context(blk) == sluice_block_main_ctx(), "root in the main ctx");
	for (i = 0; i < 2; i++) {
		s = (struct io_sync){ .blk = blk, .ret = -1 };
		sluice_aio_run_sync(sluice_iothread_ctx(t[i]), io_thread_sync_fn, &s);
		KTAP_EXPECT(s.ret == 0, "IOThread %d requests: %d", i, s.ret);
	}
	KTAP_EXPECT(sluice_blk_pread(blk, 5000, sizeof(back), back, 0) == 0 &&
		    all_bytes_42(back, sizeof(back)), "data seen from main");
	sluice_bds_drained_begin(sluice_blk_bs(blk));
	KTAP_EXPECT(sluice_blk_in_flight(blk) == 0, "drained");
	sluice_bds_drained_end(sluice_blk_bs(blk));
	sluice_blk_unref(blk);
	unlink(path);
	sluice_iothread_free(t[0]);
	sluice_iothread_free(t[1]);
	return KTAP_PASS;
}

static enum ktap_result last_cleanup(void)
{
	bt_cleanup();
	KTAP_EXPECT(sluice_co_alive() == 0, "%lu coroutines never returned", sluice_co_alive());
	return KTAP_PASS;
}

/* One request started in an IOThread while the main thread closes the backend. */
struct unref_race {
	struct sluice_blk *blk;
	unsigned char *buf;
	int ret;
	int done;				/* atomic */
};

/* IOThread coroutine: the request; nothing touches the backend after it returns. */
static void coroutine_fn unref_race_co(void *opaque)
{
	struct unref_race *u = opaque;
	struct iovec iov = { .iov_base = u->buf, .iov_len = MAX_IO };

	u->ret = sluice_blk_co_pwritev(u->blk, 0, MAX_IO, &iov, 1, SLUICE_BDRV_REQ_FUA);
	__atomic_store_n(&u->done, 1, __ATOMIC_SEQ_CST);
}

/* IOThread, BH. */
static void unref_race_bh(void *opaque)
{
	sluice_co_enter(sluice_co_create(unref_race_co, opaque));
}

/*
 * The last request of a multiqueue backend ends in an IOThread while the
 * main thread's sluice_blk_unref() drains: the drain may see it gone and
 * free the backend and its nodes at once, so the IOThread's wake-up after
 * its last decrement must not look at them.  A race, not a certainty: the
 * ASan build catches a wake-up that does.
 */
static enum ktap_result unref_races_last_request(void)
{
	struct sluice_iothread *t = sluice_iothread_new("io-unref");
	struct unref_race u = { 0 };
	struct sluice_bds *file;
	char path[4200];
	int i;

	KTAP_EXPECT(t, "iothread: %s", strerror(errno));
	bt_path(path, sizeof(path), "unref-race.img");
	KTAP_EXPECT(sluice_bdrv_create("raw", path, MAX_IO, NULL, NULL) == 0, "create");
	u.buf = g_malloc0(MAX_IO);
	for (i = 0; i < 100; i++) {
		u.blk = sluice_blk_new_open(path, "raw", SLUICE_BDRV_O_RDWR, NULL);
		KTAP_EXPECT(u.blk, "open");
		u.ret = -1;
		u.done = 0;
		file = sluice_blk_bs(u.blk)->file;
		sluice_aio_bh_oneshot(sluice_iothread_ctx(t), unref_race_bh, &u);
		/* Past the backend's gate (in the file node), so it cannot park. */
		while (!__atomic_load_n(&file->in_flight, __ATOMIC_SEQ_CST) &&
		       !__atomic_load_n(&u.done, __ATOMIC_SEQ_CST))
			;
		sluice_blk_unref(u.blk);	/* drains, then frees the backend and nodes */
		while (!__atomic_load_n(&u.done, __ATOMIC_SEQ_CST))
			usleep(100);
		KTAP_EXPECT(u.ret == 0, "request %d: %d", i, u.ret);
	}
	g_free(u.buf);
	sluice_iothread_free(t);
	unlink(path);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(random_io_uring),
	  KTAP_CASE(random_io_threads),
	  KTAP_CASE(random_io_odirect),
	  KTAP_CASE(random_io_iothread),
	  KTAP_CASE(drain_main_ctx),
	  KTAP_CASE(drain_iothread),
	  KTAP_CASE(iothread_requests),
	  KTAP_CASE(multiqueue_requests),
	  KTAP_CASE(unref_races_last_request),
	  KTAP_CASE(last_cleanup))
