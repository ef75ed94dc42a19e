// SPDX-License-Identifier: GPL-2.0
/* test_qcow2.c - the qcow2 driver against qemu-img/qemu-io: create, read their images, same writes, corruption, concurrency, clusters freed under reads. */
#include <glib.h>
#include <sys/wait.h>

#include "block-test.h"
#include "iothread.h"
#include "ktap.h"
#include "qcow2.h"

#define MiB	(1ull << 20)

/* ---- helpers (main thread) ---- */

static bool have_qemu(void)
{
	return system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") == 0;
}

/* Run a shell command; returns its exit status (or -1); output goes to our stdout as diagnostics on failure. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char *cmd, *full;
	va_list ap;
	int st;

	va_start(ap, fmt);
	cmd = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	full = g_strdup_printf("(%s) >%s/sh.log 2>&1", cmd, bt_dir());
	st = system(full);
	st = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (st) {
		char *log = g_strdup_printf("%s/sh.log", bt_dir()), *txt = NULL;

		ktap_diag("command failed (%d): %s", st, cmd);
		if (g_file_get_contents(log, &txt, NULL, NULL))
			ktap_diag("%s", txt);
		g_free(txt);
		g_free(log);
	}
	{
		char *log = g_strdup_printf("%s/sh.log", bt_dir());

		unlink(log);
		g_free(log);
	}
	g_free(cmd);
	g_free(full);
	return st;
}

/* Read the whole guest of @path (format @fmt) through sluice into a new buffer; NULL on error. */
static unsigned char *sluice_read_all(const char *path, const char *fmt, int64_t *len, char **err)
{
	struct sluice_blk *blk = sluice_blk_new_open(path, fmt, 0, err);
	unsigned char *buf;
	int64_t n, off;

	if (!blk)
		return NULL;
	n = sluice_blk_getlength(blk);
	buf = g_malloc(n ? n : 1);
	for (off = 0; off < n; off += 4 * MiB) {
		uint64_t chunk = MIN(4 * MiB, (uint64_t)(n - off));

		if (sluice_blk_pread(blk, off, chunk, buf + off, 0) < 0) {
			*err = g_strdup_printf("read at %lld failed", (long long)off);
			g_free(buf);
			sluice_blk_unref(blk);
			return NULL;
		}
	}
	sluice_blk_unref(blk);
	*len = n;
	return buf;
}

/* Compare what sluice reads from @img with qemu-img convert -O raw of it. */
static int compare_with_qemu_raw(const char *img)
{
	char raw[8192], *err = NULL, *want = NULL;
	unsigned char *got;
	int64_t len = 0;
	gsize wlen = 0;
	int ret = -1;

	bt_path(raw, sizeof(raw), "expect.raw");
	if (sh("qemu-img convert -O raw '%s' '%s'", img, raw))
		return -1;
	got = sluice_read_all(img, NULL, &len, &err);
	if (!got) {
		ktap_diag("sluice could not read %s: %s", img, err ? err : "?");
		goto out;
	}
	if (!g_file_get_contents(raw, &want, &wlen, NULL) || (int64_t)wlen != len) {
		ktap_diag("length: sluice %lld, qemu %zu", (long long)len, (size_t)wlen);
		goto out;
	}
	for (int64_t i = 0; i < len; i++) {
		if (got[i] != (unsigned char)want[i]) {
			ktap_diag("%s: byte %lld: sluice %02x qemu %02x", img, (long long)i, got[i],
				  (unsigned char)want[i]);
			goto out;
		}
	}
	ret = 0;
out:
	g_free(err);
	g_free(got);
	g_free(want);
	unlink(raw);
	return ret;
}

/* A request for run_ops(): 'w' write pattern, 'z' write zeroes, 'd' discard, 'f' flush, 't' truncate. */
struct op {
	char kind;
	uint64_t off, len;
	int pattern;
};

struct ops_run {
	struct sluice_blk *blk;
	const struct op *ops;
	int n;
};

/* Coroutine body for bt_run_co. */
static int run_ops_co(void *opaque)
{
	struct ops_run *r = opaque;
	int i, ret = 0;

	for (i = 0; i < r->n && ret >= 0; i++) {
		const struct op *o = &r->ops[i];
		struct iovec iov;
		void *buf;

		switch (o->kind) {
		case 'w':
			buf = g_malloc(o->len);
			memset(buf, o->pattern, o->len);
			iov = (struct iovec){ buf, o->len };
			ret = sluice_blk_co_pwritev(r->blk, o->off, o->len, &iov, 1, 0);
			g_free(buf);
			break;
		case 'z':
			ret = sluice_blk_co_pwrite_zeroes(r->blk, o->off, o->len,
							  o->pattern ? SLUICE_BDRV_REQ_MAY_UNMAP : 0);
			break;
		case 'd':
			ret = sluice_blk_co_pdiscard(r->blk, o->off, o->len);
			break;
		case 'f':
			ret = sluice_blk_co_flush(r->blk);
			break;
		case 't':
			ret = sluice_blk_co_truncate(r->blk, o->off);
			break;
		}
		if (ret < 0)
			ktap_diag("op %d (%c %llu+%llu) failed: %s", i, o->kind,
				  (unsigned long long)o->off, (unsigned long long)o->len, strerror(-ret));
	}
	return ret;
}

static int sluice_ops(const char *path, const struct op *ops, int n)
{
	char *err = NULL;
	struct ops_run r = { .ops = ops, .n = n };
	int ret;

	r.blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	if (!r.blk) {
		ktap_diag("open %s: %s", path, err);
		g_free(err);
		return -1;
	}
	ret = bt_run_co(run_ops_co, &r);
	sluice_blk_unref(r.blk);
	return ret;
}

/* The same ops as a qemu-io command line. */
static char *qemu_io_cmds(const struct op *ops, int n)
{
	GString *s = g_string_new(NULL);
	int i;

	for (i = 0; i < n; i++) {
		const struct op *o = &ops[i];

		switch (o->kind) {
		case 'w':
			g_string_append_printf(s, " -c 'write -P %d %llu %llu'", o->pattern,
					       (unsigned long long)o->off, (unsigned long long)o->len);
			break;
		case 'z':
			g_string_append_printf(s, " -c 'write -z %s%llu %llu'", o->pattern ? "-u " : "",
					       (unsigned long long)o->off, (unsigned long long)o->len);
			break;
		case 'd':
			g_string_append_printf(s, " -c 'discard %llu %llu'",
					       (unsigned long long)o->off, (unsigned long long)o->len);
			break;
		case 'f':
			g_string_append(s, " -c flush");
			break;
		case 't':
			g_string_append_printf(s, " -c 'truncate %llu'", (unsigned long long)o->off);
			break;
		}
	}
	return g_string_free(s, false);
}

/* ---- cases ---- */

/* Images made by sluice, in every option combination, pass qemu-img check and have the right size. */
static enum ktap_result create_passes_qemu_check(void)
{
	static const char *const opts[] = {
		"", "cluster_size=512", "cluster_size=4096", "cluster_size=2M",
		"refcount_bits=1", "refcount_bits=2", "refcount_bits=4", "refcount_bits=8",
		"refcount_bits=32", "refcount_bits=64", "cluster_size=512,refcount_bits=64",
		"compat=0.10", "lazy_refcounts=on", "compression_type=zstd",
	};
	char path[8192];
	size_t i;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "c.qcow2");
	for (i = 0; i < G_N_ELEMENTS(opts); i++) {
		char *err = NULL;
		int ret = sluice_bdrv_create("qcow2", path, 1 * 1024 * MiB + 4096 * 3, opts[i], &err);

		KTAP_EXPECT(ret == 0, "create with '%s': %s", opts[i], err ? err : "?");
		KTAP_EXPECT(sh("qemu-img check -f qcow2 '%s'", path) == 0, "check with '%s'", opts[i]);
		KTAP_EXPECT(sh("qemu-img info -f qcow2 '%s' | grep -q 'virtual size: .*(1073754112 bytes)'",
			       path) == 0, "size with '%s'", opts[i]);
		if (strstr(opts[i], "zstd"))
			KTAP_EXPECT(sh("qemu-img info '%s' | grep -q 'compression type: zstd'", path) == 0,
				    "zstd");
		if (strstr(opts[i], "0.10"))
			KTAP_EXPECT(sh("qemu-img info '%s' | grep -q 'compat: 0.10'", path) == 0, "v2");
	}
	/* Bad options are refused. */
	{
		char *err = NULL;

		KTAP_EXPECT(sluice_bdrv_create("qcow2", path, MiB, "cluster_size=1000", &err) < 0 && err,
			    "odd cluster size accepted");
		g_free(err);
		err = NULL;
		KTAP_EXPECT(sluice_bdrv_create("qcow2", path, MiB, "refcount_bits=3", &err) < 0 && err,
			    "refcount_bits=3 accepted");
		g_free(err);
	}
	unlink(path);
	return KTAP_PASS;
}

/* A workload with partial clusters, overwrites, zeroes, discards, a flush. */
static const struct op workload[] = {
	{ 'w', 0, 512, 0x11 },
	{ 'w', 4096, 65536, 0x22 },
	{ 'w', 65536 + 1000, 3000, 0x33 },
	{ 'w', 3 * MiB - 512, 1024 + 70000, 0x44 },
	{ 'w', 200000, 300000, 0x55 },
	{ 'f', 0, 0, 0 },
	{ 'z', 5 * MiB, 2 * MiB, 1 },
	{ 'w', 5 * MiB + 4096, 512, 0x66 },
	{ 'z', 8 * MiB + 512, 128 * 1024, 0 },
	{ 'd', 6 * MiB, MiB, 0 },
	{ 'w', 16 * MiB - 4096, 8192 - 512, 0x77 },
	{ 'w', 30 * MiB, 4 * MiB, 0x78 },
	{ 'd', 30 * MiB, 65536 * 2, 0 },
	{ 'w', 12 * MiB + 7, 100, 0x79 },
};

/* The same writes by sluice and by qemu-io give identical guests; sluice's image passes check. */
static int same_writes(const char *create_opts, const char *backing, enum ktap_result *res)
{
	char a[8192], b[8192], *err = NULL, *cmds;
	int n = G_N_ELEMENTS(workload);
	char o[512];

	bt_path(a, sizeof(a), "sluice.qcow2");
	bt_path(b, sizeof(b), "qemu.qcow2");
	snprintf(o, sizeof(o), "%s%s%s%s", create_opts, backing ? (*create_opts ? "," : "") : "",
		 backing ? "backing_fmt=qcow2,backing_file=" : "", backing ? backing : "");
	if (sluice_bdrv_create("qcow2", a, 40 * MiB, o, &err) < 0) {
		ktap_diag("create %s: %s", o, err);
		return -1;
	}
	if (sh("qemu-img create -q -f qcow2 %s%s%s '%s' %llu", *o ? "-o '" : "", o, *o ? "'" : "", b,
	       40 * MiB))
		return -1;
	if (sluice_ops(a, workload, n) < 0)
		return -1;
	cmds = qemu_io_cmds(workload, n);
	if (sh("qemu-io -f qcow2 %s '%s'", cmds, b)) {
		g_free(cmds);
		return -1;
	}
	g_free(cmds);
	if (sh("qemu-img check -f qcow2 '%s'", a) || sh("qemu-img compare -q '%s' '%s'", a, b))
		return -1;
	if (compare_with_qemu_raw(a))
		return -1;
	unlink(a);
	unlink(b);
	*res = KTAP_PASS;
	return 0;
}

static enum ktap_result writes_match_qemu_io(void)
{
	static const char *const opts[] = {
		"", "cluster_size=512", "cluster_size=4096,refcount_bits=1", "cluster_size=2M",
		"refcount_bits=64", "compat=0.10",
	};
	enum ktap_result res = KTAP_FAIL;
	size_t i;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	for (i = 0; i < G_N_ELEMENTS(opts); i++)
		KTAP_EXPECT(same_writes(opts[i], NULL, &res) == 0, "options '%s'", opts[i]);
	return res;
}

/* COW from a backing file (relative name), v3 and v2; the base has data everywhere. */
static enum ktap_result writes_over_backing_match_qemu_io(void)
{
	static const char *const opts[] = { "", "cluster_size=4096", "compat=0.10" };
	enum ktap_result res = KTAP_FAIL;
	char base[8192];
	size_t i;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(base, sizeof(base), "base.qcow2");
	KTAP_EXPECT(sh("qemu-img create -q -f qcow2 '%s' 40M && qemu-io -f qcow2 -c 'write -P 0xab 0 40M' "
		       "-c 'write -P 0xcd 1M 3M' '%s'", base, base) == 0, "base");
	for (i = 0; i < G_N_ELEMENTS(opts); i++)
		KTAP_EXPECT(same_writes(opts[i], "base.qcow2", &res) == 0, "options '%s'", opts[i]);
	unlink(base);
	return res;
}

/* Images made and written by qemu read back identically through sluice. */
static enum ktap_result qemu_images_read_back(void)
{
	static const char *const opts[] = {
		"cluster_size=512", "cluster_size=4096", "cluster_size=65536", "cluster_size=2M",
		"refcount_bits=1", "refcount_bits=64", "compat=0.10",
	};
	char img[8192], cmp[8192], raw[8192];
	size_t i;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(img, sizeof(img), "q.qcow2");
	bt_path(cmp, sizeof(cmp), "qc.qcow2");
	bt_path(raw, sizeof(raw), "src.raw");
	for (i = 0; i < G_N_ELEMENTS(opts); i++) {
		KTAP_EXPECT(sh("qemu-img create -q -f qcow2 -o %s '%s' 9M && qemu-io -f qcow2 "
			       "-c 'write -P 1 0 1M' -c 'write -P 2 1536 5000' -c 'write -z 2M 1M' "
			       "-c 'write -P 3 4M 64k' -c 'discard 4M 64k' -c 'write -P 4 9215k 1k' '%s'",
			       opts[i], img, img) == 0, "qemu image %s", opts[i]);
		KTAP_EXPECT(compare_with_qemu_raw(img) == 0, "read back %s", opts[i]);
	}
	/* Compressed, zlib and zstd; sizes that do not end on a cluster. */
	KTAP_EXPECT(sh("head -c 3000000 /dev/urandom > '%s' && dd if=/dev/zero bs=1k count=700 >> '%s' "
		       "2>/dev/null && seq 1 200000 >> '%s'", raw, raw, raw) == 0, "raw source");
	KTAP_EXPECT(sh("qemu-img convert -c -O qcow2 '%s' '%s'", raw, cmp) == 0, "convert -c");
	KTAP_EXPECT(compare_with_qemu_raw(cmp) == 0, "zlib compressed");
	KTAP_EXPECT(sh("qemu-img convert -c -O qcow2 -o compression_type=zstd,cluster_size=4096 '%s' '%s'",
		       raw, cmp) == 0, "convert -c zstd");
	KTAP_EXPECT(compare_with_qemu_raw(cmp) == 0, "zstd compressed");
	KTAP_EXPECT(sh("qemu-img convert -c -O qcow2 -o cluster_size=2M '%s' '%s'", raw, cmp) == 0,
		    "convert -c 2M");
	KTAP_EXPECT(compare_with_qemu_raw(cmp) == 0, "zlib compressed, 2M clusters");
	/* Then written through sluice: the compressed clusters get COWed. */
	{
		static const struct op ops[] = {
			{ 'w', 100, 1000, 0x5a }, { 'w', 2 * MiB + 4000, 70000, 0x5b },
			{ 'z', 0, 65536 * 3, 0 }, { 'd', 65536 * 5, 65536, 0 },
		};
		char *cmds = qemu_io_cmds(ops, G_N_ELEMENTS(ops));

		KTAP_EXPECT(sh("qemu-img convert -c -O qcow2 '%s' '%s' && cp '%s' '%s.q'", raw, cmp, cmp,
			       cmp) == 0, "copy");
		KTAP_EXPECT(sluice_ops(cmp, ops, G_N_ELEMENTS(ops)) == 0, "sluice writes");
		KTAP_EXPECT(sh("qemu-io -f qcow2 %s '%s.q'", cmds, cmp) == 0, "qemu-io writes");
		g_free(cmds);
		KTAP_EXPECT(sh("qemu-img check '%s' && qemu-img compare '%s' '%s.q'", cmp, cmp, cmp) == 0,
			    "compressed + writes");
		sh("rm -f '%s.q'", cmp);
	}
	unlink(img);
	unlink(cmp);
	unlink(raw);
	return KTAP_PASS;
}

/* A three-level chain with relative names (one in a subdirectory), qcow2 over raw. */
static enum ktap_result backing_chain_relative(void)
{
	const char *d = bt_dir();

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	KTAP_EXPECT(sh("cd '%s' && mkdir -p sub && qemu-img create -q -f raw sub/base.raw 5M && "
		       "qemu-io -f raw -c 'write -P 7 0 5M' sub/base.raw && "
		       "qemu-img create -q -f qcow2 -b base.raw -F raw sub/mid.qcow2 && "
		       "qemu-io -f qcow2 -c 'write -P 8 1M 1M' -c 'write -z 3M 64k' sub/mid.qcow2 && "
		       "qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 top.qcow2 6M && "
		       "qemu-io -f qcow2 -c 'write -P 9 1536k 1k' top.qcow2", d) == 0, "chain");
	{
		char top[8192];

		snprintf(top, sizeof(top), "%s/top.qcow2", d);
		KTAP_EXPECT(compare_with_qemu_raw(top) == 0, "chain reads");
	}
	sh("cd '%s' && rm -rf sub top.qcow2", d);
	return KTAP_PASS;
}

/* A loop in the chain is refused with a clear message. */
static enum ktap_result backing_loop_refused(void)
{
	const char *d = bt_dir();
	char a[8192], *err = NULL;
	struct sluice_bds *bs;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	KTAP_EXPECT(sh("cd '%s' && qemu-img create -q -f qcow2 a.qcow2 1M && "
		       "qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2 && "
		       "qemu-img rebase -u -f qcow2 -b b.qcow2 -F qcow2 a.qcow2", d) == 0, "loop");
	snprintf(a, sizeof(a), "%s/a.qcow2", d);
	bs = sluice_bds_open(a, "qcow2", 0, &err);
	KTAP_EXPECT(!bs && err && strstr(err, "loop"), "loop: %s", err ? err : "(opened)");
	g_free(err);
	err = NULL;
	/* Self-reference. */
	KTAP_EXPECT(sh("cd '%s' && qemu-img rebase -u -f qcow2 -b a.qcow2 -F qcow2 a.qcow2", d) == 0,
		    "self");
	bs = sluice_bds_open(a, NULL, 0, &err);
	KTAP_EXPECT(!bs && err && strstr(err, "loop"), "self loop: %s", err ? err : "(opened)");
	g_free(err);
	sh("cd '%s' && rm -f a.qcow2 b.qcow2", d);
	return KTAP_PASS;
}

/* Patch @len bytes big-endian @val at @off of @path. */
static int patch(const char *path, uint64_t off, int len, uint64_t val)
{
	unsigned char b[8];
	int fd = open(path, O_WRONLY), i;

	for (i = 0; i < len; i++)
		b[i] = val >> (8 * (len - 1 - i));
	if (fd < 0 || pwrite(fd, b, len, off) != len)
		return -1;
	close(fd);
	return 0;
}

/* Each header field out of range gives a clear error (under ASan: no crash, no huge allocation). */
static enum ktap_result header_corruption_refused(void)
{
	static const struct {
		const char *name;
		uint64_t off;
		int len;
		uint64_t val;
		const char *msg;
		bool rw_only;
	} cases[] = {
		{ "magic", 0, 4, 0x514649fa, "not in qcow2 format", false },
		{ "version 4", 4, 4, 4, "Unsupported qcow2 version", false },
		{ "version 1", 4, 4, 1, "Unsupported qcow2 version", false },
		{ "cluster_bits 8", 20, 4, 8, "cluster size", false },
		{ "cluster_bits 22", 20, 4, 22, "cluster size", false },
		{ "cluster_bits huge", 20, 4, 0xffffffff, "cluster size", false },
		{ "encrypted", 32, 4, 1, "encrypted", false },
		{ "l1_size huge", 36, 4, 0xffffffff, "L1 table too large", false },
		{ "l1_size too small", 36, 4, 0, "L1 table is too small", false },
		{ "l1 offset unaligned", 40, 8, 0x30001, "L1 table offset", false },
		{ "l1 offset huge", 40, 8, 0xfffffffffff00000ull, "L1 table offset", false },
		{ "refcount table offset 0", 48, 8, 0, "reference count table offset", false },
		{ "refcount table offset unaligned", 48, 8, 0x10200, "reference count table offset", false },
		{ "refcount table clusters 0", 56, 4, 0, "reference count table", false },
		{ "refcount table clusters huge", 56, 4, 0xffffffff, "reference count table", false },
		{ "snapshots too many", 60, 4, 0x7fffffff, "too many snapshots", false },
		{ "snapshot offset unaligned", 64, 8, 0x10001, "snapshot table offset", false },
		{ "unknown incompatible bit", 72, 8, 1ull << 40, "Unsupported qcow2 feature", false },
		{ "external data file", 72, 8, 1ull << 2, "external data file", false },
		{ "extended L2", 72, 8, 1ull << 4, "subclusters", false },
		{ "compression bit without type", 72, 8, 1ull << 3, "compression", false },
		{ "corrupt bit", 72, 8, 1ull << 1, "corrupt", true },
		{ "dirty bit", 72, 8, 1ull << 0, "dirty", true },
		{ "refcount_order 7", 96, 4, 7, "refcount_order", false },
		{ "header_length short", 100, 4, 100, "header too short", false },
		{ "header_length huge", 100, 4, 0x100000, "exceeds cluster size", false },
		{ "compression type 2", 104, 1, 2, "compression type", false },
		{ "backing name too long", 16, 4, 4000, "backing file name", false },
		{ "backing name offset huge", 8, 8, 0x7fffffffffffffffull, "backing file name", false },
		{ "size huge", 24, 8, 0xffffffffffffff00ull, "too large", false },
		{ "extension length huge", 116, 4, 0x7fffffff, "header extension", false },
	};
	char path[8192], orig[8192];
	size_t i;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(orig, sizeof(orig), "good.qcow2");
	bt_path(path, sizeof(path), "bad.qcow2");
	KTAP_EXPECT(sh("qemu-img create -q -f qcow2 '%s' 100M && qemu-io -f qcow2 -c 'write 0 64k' '%s' "
		       "&& qemu-img snapshot -c s1 '%s'",
		       orig, orig, orig) == 0, "image");
	/* A feature name table entry for bit 40, so the message can name it. */
	for (i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *err = NULL;
		struct sluice_bds *bs;

		KTAP_EXPECT(sh("cp '%s' '%s'", orig, path) == 0, "cp");
		if (!strcmp(cases[i].name, "backing name too long") ||
		    !strcmp(cases[i].name, "backing name offset huge"))
			patch(path, cases[i].off == 8 ? 16 : 8, cases[i].off == 8 ? 4 : 8,
			      cases[i].off == 8 ? 10 : 0x200);
		if (!strcmp(cases[i].name, "extension length huge"))
			patch(path, 112, 4, 0x6803f857);
		KTAP_EXPECT(patch(path, cases[i].off, cases[i].len, cases[i].val) == 0, "patch");
		bs = sluice_bds_open(path, "qcow2", cases[i].rw_only ? SLUICE_BDRV_O_RDWR : 0, &err);
		KTAP_EXPECT(!bs, "%s: opened", cases[i].name);
		KTAP_EXPECT(err && strstr(err, cases[i].msg), "%s: error '%s', want '%s'", cases[i].name,
			    err ? err : "(none)", cases[i].msg);
		ktap_diag("%s: %s", cases[i].name, err);
		g_free(err);
		if (cases[i].rw_only) {
			err = NULL;
			bs = sluice_bds_open(path, "qcow2", 0, &err);
			KTAP_EXPECT(bs, "%s: read-only open failed: %s", cases[i].name, err);
			sluice_bds_unref(bs);
		}
	}
	/*
	 * 512-byte clusters and a backing name longer than a cluster (but under
	 * the name limit): cluster_size - backing_len must not wrap and let a
	 * wild offset through (found by fuzz_qcow2_open).
	 */
	{
		char *err = NULL;

		KTAP_EXPECT(sh("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 1M", path) == 0, "image");
		KTAP_EXPECT(patch(path, 8, 8, 0x230000034d004d00ull) == 0 && patch(path, 16, 4, 768) == 0, "patch");
		KTAP_EXPECT(!sluice_bds_open(path, "qcow2", 0, &err), "a wild backing name offset was accepted");
		KTAP_EXPECT(err && strstr(err, "backing file name"), "error '%s'", err ? err : "(none)");
		g_free(err);
	}
	unlink(path);
	unlink(orig);
	return KTAP_PASS;
}

/* Read a big-endian field of @path. */
static uint64_t peek(const char *path, uint64_t off, int len)
{
	unsigned char b[8] = { 0 };
	uint64_t v = 0;
	int fd = open(path, O_RDONLY), i;

	if (fd < 0 || pread(fd, b, len, off) != len)
		v = ~0ull;
	if (fd >= 0)
		close(fd);
	for (i = 0; i < len && v != ~0ull; i++)
		v = (v << 8) | b[i];
	return v;
}

/*
 * A write that would land on metadata (the L1 table's refcount was zeroed,
 * so the allocator offers its cluster) marks the image corrupt and fails
 * with EIO; the image then opens read-only only.
 */
static enum ktap_result runtime_corruption_sets_bit(void)
{
	char path[8192], *err = NULL;
	struct sluice_blk *blk;
	struct sluice_bds *bs;
	unsigned char buf[4096];
	uint64_t l1, rt, rb;
	int ret;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "rc.qcow2");
	KTAP_EXPECT(sh("qemu-img create -q -f qcow2 '%s' 10M && qemu-io -f qcow2 -c 'write 0 64k' '%s'",
		       path, path) == 0, "image");
	l1 = peek(path, 40, 8);
	rt = peek(path, 48, 8);
	rb = peek(path, rt, 8);
	KTAP_EXPECT(l1 && rb && l1 != ~0ull && rb != ~0ull, "layout");
	KTAP_EXPECT(patch(path, rb + (l1 >> 16) * 2, 2, 0) == 0, "patch refcount");
	blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(blk, "open: %s", err);
	memset(buf, 0x42, sizeof(buf));
	ret = sluice_blk_pwrite(blk, 5 * MiB, 4096, buf, 0);
	KTAP_EXPECT(ret == -EIO, "write onto metadata: %d", ret);
	ret = sluice_blk_pwrite(blk, 0, 4096, buf, 0);
	KTAP_EXPECT(ret == -EIO, "writes after corruption: %d", ret);
	sluice_blk_unref(blk);
	KTAP_EXPECT(peek(path, 72, 8) & 2, "corrupt bit not set");
	bs = sluice_bds_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(!bs && err && strstr(err, "corrupt"), "rw open: %s", err ? err : "(opened)");
	g_free(err);
	err = NULL;
	bs = sluice_bds_open(path, "qcow2", 0, &err);
	KTAP_EXPECT(bs, "ro open: %s", err);
	sluice_bds_unref(bs);
	/* The L1 table itself was not overwritten: qemu still reads the first cluster. */
	KTAP_EXPECT(sh("qemu-img check -r all '%s'; qemu-io -f qcow2 -c 'read -P 0xcd 0 64k' '%s' | "
		       "grep -q 'read 65536'", path, path) == 0, "data intact");
	unlink(path);
	return KTAP_PASS;
}

/* A 4 KiB write of @byte at 0 of the qcow2 @path: its return value; 1 if the image did not open. */
static int write_4k(const char *path, int byte)
{
	struct sluice_blk *blk;
	unsigned char buf[4096];
	char *err = NULL;
	int ret;

	blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	if (!blk) {
		ktap_diag("open: %s", err);
		g_free(err);
		return 1;
	}
	memset(buf, byte, sizeof(buf));
	ret = sluice_blk_pwrite(blk, 0, sizeof(buf), buf, 0);
	sluice_blk_unref(blk);
	return ret;
}

/*
 * A new 10 MiB qemu-img image at @path with its first cluster written (0xcd):
 * the file offset of that cluster's L2 entry, or 0 if something failed.
 */
static uint64_t image_l2_entry_of_cluster0(const char *path)
{
	uint64_t l1, l2;

	if (sh("qemu-img create -q -f qcow2 '%s' 10M && qemu-io -f qcow2 -c 'write -P 0xcd 0 64k' '%s'",
	       path, path))
		return 0;
	l1 = peek(path, 40, 8);
	if (!l1 || l1 == ~0ull)
		return 0;
	l2 = peek(path, l1, 8) & 0x00fffffffffffe00ull;
	return l2 == 0x00fffffffffffe00ull ? 0 : l2;
}

/*
 * An L2 entry of a corrupt image that points at metadata (here the refcount
 * table, flagged COPIED so that the write goes in place): the write fails
 * with EIO, marks the image corrupt and leaves the table alone.
 */
static enum ktap_result inplace_write_onto_metadata_refused(void)
{
	char path[8192];
	uint64_t l2, rt;
	int ret;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "meta.qcow2");
	l2 = image_l2_entry_of_cluster0(path);
	rt = peek(path, 48, 8);
	KTAP_EXPECT(l2 && rt && rt != ~0ull, "image and layout");
	KTAP_EXPECT(patch(path, l2, 8, (1ull << 63) | rt) == 0, "patch L2 entry");
	ret = write_4k(path, 0x55);
	KTAP_EXPECT(ret == -EIO, "in-place write onto the refcount table: %d", ret);
	KTAP_EXPECT(peek(path, 72, 8) & 2, "corrupt bit not set");
	KTAP_EXPECT(peek(path, rt, 8) != 0x5555555555555555ull, "refcount table overwritten");
	unlink(path);
	return KTAP_PASS;
}

/*
 * An L1 entry that points past the end of the file: the L2 table there would
 * read as zeros, and one written there would be cut off at close with the
 * data it maps.  The write fails with EIO instead (the image is corrupt).
 */
static enum ktap_result l2_past_eof_refused(void)
{
	char path[8192];
	struct stat st;
	uint64_t l1;
	int ret;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "eof.qcow2");
	KTAP_EXPECT(sh("qemu-img create -q -f qcow2 '%s' 1G", path) == 0, "image");
	l1 = peek(path, 40, 8);
	KTAP_EXPECT(stat(path, &st) == 0 && l1 && l1 != ~0ull, "layout");
	KTAP_EXPECT(patch(path, l1, 8, (1ull << 63) | (((uint64_t)st.st_size + 0x30000) & ~0xffffull)) == 0,
		    "patch L1 entry");
	ret = write_4k(path, 0x5a);
	KTAP_EXPECT(ret == -EIO, "write through an L2 table past EOF: %d", ret);
	KTAP_EXPECT(peek(path, 72, 8) & 2, "corrupt bit not set");
	unlink(path);
	return KTAP_PASS;
}

/*
 * An L2 entry (COPIED) for a data cluster far past the end of the file: an
 * in-place write there would grow the file to wherever it points.  It fails
 * with EIO and the file keeps its size (found by fuzz_qcow2_open).
 */
static enum ktap_result data_cluster_past_eof_refused(void)
{
	char path[8192];
	struct stat st;
	uint64_t l2;
	int ret;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "far.qcow2");
	l2 = image_l2_entry_of_cluster0(path);
	KTAP_EXPECT(l2, "image and layout");
	KTAP_EXPECT(patch(path, l2, 8, (1ull << 63) | 0xaeaeaeae0000ull) == 0, "patch L2 entry");
	ret = write_4k(path, 0x5a);
	KTAP_EXPECT(ret == -EIO, "in-place write far past EOF: %d", ret);
	KTAP_EXPECT(stat(path, &st) == 0 && st.st_size < (1 << 20), "file grew to %lld", (long long)st.st_size);
	unlink(path);
	return KTAP_PASS;
}

/* Many coroutines allocate the same clusters at once: no double allocation (no leak), data intact. */
struct conc {
	struct sluice_blk *blk;
	int idx, left;
	int *alive;
	int err;
};

static void coroutine_fn conc_writer(void *opaque)
{
	struct conc *c = opaque;
	unsigned char buf[512];
	struct iovec iov = { buf, sizeof(buf) };
	/* Writer i owns sector i of each of the first 4 clusters (64k clusters: 128 sectors each). */
	uint64_t cl;

	memset(buf, c->idx + 1, sizeof(buf));
	for (cl = 0; cl < 4; cl++) {
		int ret = sluice_blk_co_pwritev(c->blk, cl * 65536 + c->idx * 512, 512, &iov, 1, 0);

		if (ret < 0)
			c->err = ret;
	}
	(*c->alive)--;
}

static enum ktap_result concurrent_allocating_writes(void)
{
	enum { N = 128 };
	struct conc cs[N];
	char path[8192], *err = NULL;
	struct sluice_blk *blk;
	unsigned char *data;
	int alive = N, i;
	int64_t len;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "conc.qcow2");
	KTAP_EXPECT(sluice_bdrv_create("qcow2", path, 8 * MiB, "", &err) == 0, "create: %s", err);
	blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(blk, "open: %s", err);
	for (i = 0; i < N; i++) {
		cs[i] = (struct conc){ .blk = blk, .idx = i, .alive = &alive };
		sluice_co_enter(sluice_co_create(conc_writer, &cs[i]));
	}
	SLUICE_AIO_WAIT_WHILE(sluice_block_main_ctx(), alive);
	sluice_blk_unref(blk);
	for (i = 0; i < N; i++)
		KTAP_EXPECT(!cs[i].err, "writer %d: %s", i, strerror(-cs[i].err));
	data = sluice_read_all(path, "qcow2", &len, &err);
	KTAP_EXPECT(data, "read: %s", err);
	for (i = 0; i < 4 * N; i++) {
		int cl = i / N, sec = i % N;

		KTAP_EXPECT(data[cl * 65536 + sec * 512] == sec + 1 &&
			    data[cl * 65536 + sec * 512 + 511] == sec + 1,
			    "cluster %d sector %d: %02x", cl, sec, data[cl * 65536 + sec * 512]);
	}
	g_free(data);
	/* qemu-img check exits 3 on leaks: a double allocation would leak. */
	KTAP_EXPECT(sh("qemu-img check '%s'", path) == 0, "check");
	sh("qemu-img map '%s' >&2", path);
	unlink(path);
	return KTAP_PASS;
}

/* The same from two IOThreads at once: the image lock works across threads. */
struct iot_job {
	struct sluice_blk *blk;
	int base, n, err, *alive;
};

static void coroutine_fn iot_writer(void *opaque)
{
	struct iot_job *j = opaque;
	unsigned char buf[4096];
	struct iovec iov = { buf, sizeof(buf) };
	int i;

	for (i = 0; i < j->n; i++) {
		int ret;

		memset(buf, (j->base + i) & 0xff, sizeof(buf));
		ret = sluice_blk_co_pwritev(j->blk, (uint64_t)(j->base + i) * 4096 * 3, 4096, &iov, 1, 0);
		if (ret < 0)
			j->err = ret;
	}
	__atomic_sub_fetch(j->alive, 1, __ATOMIC_SEQ_CST);
}

static enum ktap_result iothreads_allocating_writes(void)
{
	enum { JOBS = 16, PER = 40 };
	struct iot_job jobs[JOBS];
	struct sluice_iothread *t;
	char path[8192], *err = NULL, *cmds;
	struct sluice_blk *blk;
	GString *q = g_string_new(NULL);
	int alive = JOBS, i, k;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "iot.qcow2");
	KTAP_EXPECT(sluice_bdrv_create("qcow2", path, 8 * MiB, "cluster_size=4096", &err) == 0,
		    "create: %s", err);
	blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(blk, "open: %s", err);
	t = sluice_iothread_new("qcow2-iot");
	KTAP_EXPECT(t, "iothread");
	sluice_blk_set_aio_context(blk, sluice_iothread_ctx(t));
	for (i = 0; i < JOBS; i++) {
		jobs[i] = (struct iot_job){ .blk = blk, .base = i * PER, .n = PER, .alive = &alive };
		sluice_co_enter(sluice_co_create(iot_writer, &jobs[i]));
	}
	SLUICE_AIO_WAIT_WHILE(sluice_block_main_ctx(), __atomic_load_n(&alive, __ATOMIC_SEQ_CST));
	sluice_blk_set_aio_context(blk, sluice_block_main_ctx());
	sluice_blk_unref(blk);
	sluice_iothread_free(t);
	for (i = 0; i < JOBS; i++)
		KTAP_EXPECT(!jobs[i].err, "job %d: %s", i, strerror(-jobs[i].err));
	KTAP_EXPECT(sh("qemu-img check '%s'", path) == 0, "check");
	for (k = 0; k < JOBS * PER; k++)
		g_string_append_printf(q, " -c 'read -q -P %d %d 4096'", k & 0xff, k * 4096 * 3);
	cmds = g_string_free(q, false);
	KTAP_EXPECT(sh("qemu-io -f qcow2 %s '%s' | grep -v 'Pattern verification failed' >/dev/null; "
		       "! qemu-io -f qcow2 %s '%s' | grep -q 'verification failed'", cmds, path, cmds, path) == 0,
		    "contents");
	g_free(cmds);
	unlink(path);
	return KTAP_PASS;
}

/* Growing: new area reads zeros (also over a longer backing file); L1 grows; check passes. */
static enum ktap_result grow_image(void)
{
	static const struct op ops[] = {
		{ 'w', 0, 4096, 0x31 }, { 't', 3 * MiB + 512, 0, 0 }, { 'w', 3 * MiB, 100, 0x32 },
		{ 't', 300 * MiB, 0, 0 }, { 'w', 250 * MiB, 4096, 0x33 },
	};
	char a[8192], b[8192], base[8192], *cmds;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(a, sizeof(a), "grow.qcow2");
	bt_path(b, sizeof(b), "growq.qcow2");
	bt_path(base, sizeof(base), "growbase.qcow2");
	KTAP_EXPECT(sh("qemu-img create -q -f qcow2 '%s' 320M && qemu-io -f qcow2 -c 'write -P 0xee 0 4M' "
		       "-c 'write -P 0xee 248M 8M' '%s'"
		       " >/dev/null", base, base) == 0, "base");
	KTAP_EXPECT(sh("qemu-img create -q -f qcow2 -o cluster_size=4096 -b growbase.qcow2 -F qcow2 '%s' 1M && cp '%s' '%s'",
		       a, a, b) == 0, "image");
	KTAP_EXPECT(sluice_ops(a, ops, G_N_ELEMENTS(ops)) == 0, "sluice");
	cmds = qemu_io_cmds(ops, G_N_ELEMENTS(ops));
	KTAP_EXPECT(sh("qemu-io -f qcow2 %s '%s'", cmds, b) == 0, "qemu-io");
	g_free(cmds);
	KTAP_EXPECT(sh("qemu-img check '%s' && qemu-img compare '%s' '%s'", a, a, b) == 0, "same");
	unlink(a);
	unlink(b);
	unlink(base);
	return KTAP_PASS;
}

/* Internal snapshots: writes COW shared clusters and L2 tables; the snapshot keeps its data. */
static enum ktap_result snapshot_shared_clusters(void)
{
	static const struct op ops[] = {
		{ 'w', 1000, 5000, 0x41 }, { 'w', MiB, 2 * MiB, 0x42 }, { 'd', 0, 65536, 0 },
		{ 'z', 4 * MiB, 65536, 0 },
	};
	char a[8192], b[8192], *cmds;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(a, sizeof(a), "snap.qcow2");
	bt_path(b, sizeof(b), "snapq.qcow2");
	KTAP_EXPECT(sh("qemu-img create -q -f qcow2 '%s' 8M && qemu-io -f qcow2 -c 'write -P 1 0 8M' '%s' && "
		       "qemu-img snapshot -c s1 '%s' && cp '%s' '%s'", a, a, a, a, b) == 0, "image");
	KTAP_EXPECT(sluice_ops(a, ops, G_N_ELEMENTS(ops)) == 0, "sluice");
	cmds = qemu_io_cmds(ops, G_N_ELEMENTS(ops));
	KTAP_EXPECT(sh("qemu-io -f qcow2 %s '%s'", cmds, b) == 0, "qemu-io");
	g_free(cmds);
	KTAP_EXPECT(sh("qemu-img check '%s' && qemu-img compare '%s' '%s'", a, a, b) == 0, "same");
	KTAP_EXPECT(sh("qemu-img snapshot -a s1 '%s' && qemu-io -f qcow2 -c 'read -P 1 0 8M' '%s' | "
		       "grep -qv 'fail'", a, a) == 0, "snapshot intact");
	unlink(a);
	unlink(b);
	return KTAP_PASS;
}

/*
 * A gate under the qcow2 node: its file node's read callback, swapped for
 * one that parks the first read after arming until the test releases it.
 * Main thread (the image's requests run in the main ctx here).
 */
struct read_gate {
	struct sluice_bds *file;
	const struct sluice_block_driver *orig;
	struct sluice_block_driver drv;
	bool armed;
	struct sluice_co *parked;	/* the parked read's coroutine */
	uint64_t parked_off;		/* host offset it reads */
};
static struct read_gate gate;

static int coroutine_fn gate_co_preadv(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags)
{
	if (gate.armed) {
		gate.armed = false;
		gate.parked_off = offset;
		gate.parked = sluice_co_self();
		sluice_co_yield();
	}
	return gate.orig->co_preadv(bs, offset, bytes, iov, niov, flags);
}

static void gate_install(struct sluice_blk *blk)
{
	gate = (struct read_gate){ .file = sluice_blk_bs(blk)->file };
	gate.orig = gate.file->drv;
	gate.drv = *gate.orig;
	gate.drv.co_preadv = gate_co_preadv;
	gate.file->drv = &gate.drv;
}

static void gate_remove(void)
{
	gate.file->drv = gate.orig;
}

/* One guest request in its own coroutine; done once it returned. */
struct gated_req {
	struct sluice_blk *blk;
	enum { GR_READ, GR_WRITE, GR_DISCARD } op;
	uint64_t off, len;
	unsigned char *buf;
	int ret;
	bool done;
};

static void coroutine_fn gated_req_co(void *opaque)
{
	struct gated_req *r = opaque;
	struct iovec iov = { r->buf, r->len };

	if (r->op == GR_READ)
		r->ret = sluice_blk_co_preadv(r->blk, r->off, r->len, &iov, 1, 0);
	else if (r->op == GR_WRITE)
		r->ret = sluice_blk_co_pwritev(r->blk, r->off, r->len, &iov, 1, 0);
	else
		r->ret = sluice_blk_co_pdiscard(r->blk, r->off, r->len);
	r->done = true;
}

/* Main thread: start @r; then let the main loop run whatever is ready (without blocking). */
static void gated_start(struct gated_req *r)
{
	sluice_co_enter(sluice_co_create(gated_req_co, r));
	while (sluice_aio_poll(sluice_block_main_ctx(), false))
		;
}

/*
 * Main thread, nothing running: does a request wait for an in-flight read
 * of @blk's qcow2 image (is it queued on the read's waiters)?  What a
 * request that frees the read's host clusters must do.
 */
static bool read_waited_on(struct sluice_blk *blk)
{
	struct qcow2_state *s = sluice_blk_bs(blk)->opaque;
	struct qcow2_req *r;

	for (r = s->reqs; r; r = r->next)
		if (r->kind == QCOW2_REQ_READ && !sluice_co_queue_empty(&r->waiters))
			return true;
	return false;
}

/*
 * Main thread: put the gate under @blk's image and start a read of guest
 * bytes [0, len) into @buf (zeroed first); true if it parked in the file layer.
 */
static bool gated_read_park(struct sluice_blk *blk, struct gated_req *rd, unsigned char *buf, uint64_t len)
{
	gate_install(blk);
	gate.armed = true;
	*rd = (struct gated_req){ .blk = blk, .op = GR_READ, .off = 0, .len = len, .buf = buf };
	memset(buf, 0, len);
	gated_start(rd);
	return gate.parked && !rd->done;
}

/*
 * Main thread: let the parked read go, wait for it and for @other, take the
 * gate away.  Before any early return: the backend could not close.
 */
static void gated_read_release(struct gated_req *rd, struct gated_req *other)
{
	if (gate.parked)
		sluice_co_enter(gate.parked);
	SLUICE_AIO_WAIT_WHILE(sluice_block_main_ctx(), !rd->done || !other->done);
	gate_remove();
}

static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/*
 * A host cluster freed under a read: a discard of a cluster that a read is
 * still reading (parked in the file layer) waits for the read.  Were it to
 * free the cluster at once, the next allocating write would take that host
 * cluster (the lowest free one) and the read would return its data.  The
 * read returns the old data; the write is not held back (other clusters).
 */
static enum ktap_result discard_waits_for_reads(void)
{
	enum { CL = 65536 };
	static unsigned char a[CL], b[CL], rbuf[CL];
	char path[8192], *err = NULL;
	struct sluice_blk *blk;
	struct gated_req rd, dc, wr;
	bool parked, early;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(path, sizeof(path), "freeread.qcow2");
	KTAP_EXPECT(sluice_bdrv_create("qcow2", path, 8 * MiB, "", &err) == 0, "create: %s", err);
	blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(blk, "open: %s", err);
	memset(a, 0xaa, CL);
	memset(b, 0xbb, CL);
	KTAP_EXPECT(sluice_blk_pwrite(blk, 0, CL, a, 0) == 0, "write cluster 0");
	KTAP_EXPECT(sluice_blk_pread(blk, 0, CL, rbuf, 0) == 0, "read cluster 0 (warms the L2 cache)");

	parked = gated_read_park(blk, &rd, rbuf, CL);
	dc = (struct gated_req){ .blk = blk, .op = GR_DISCARD, .off = 0, .len = CL };
	gated_start(&dc);
	wr = (struct gated_req){ .blk = blk, .op = GR_WRITE, .off = 2 * CL, .len = CL, .buf = b };
	gated_start(&wr);
	SLUICE_AIO_WAIT_WHILE(sluice_block_main_ctx(), !wr.done || (!dc.done && !read_waited_on(blk)));
	early = dc.done;
	gated_read_release(&rd, &dc);
	KTAP_EXPECT(parked, "the read did not park in the file layer");
	KTAP_EXPECT(!early, "the discard freed cluster 0 while a read of it was in flight");
	KTAP_EXPECT(wr.ret == 0, "write: %s", strerror(-wr.ret));
	KTAP_EXPECT(rd.ret == 0 && all_bytes(rbuf, CL, 0xaa), "the read returned %d, data %02x (host 0x%llx)",
		    rd.ret, rbuf[0], (unsigned long long)gate.parked_off);
	KTAP_EXPECT(dc.ret == 0, "discard: %s", strerror(-dc.ret));
	KTAP_EXPECT(sluice_blk_pread(blk, 0, CL, rbuf, 0) == 0 && all_bytes(rbuf, CL, 0), "cluster 0 after discard");
	KTAP_EXPECT(sluice_blk_pread(blk, 2 * CL, CL, rbuf, 0) == 0 && all_bytes(rbuf, CL, 0xbb), "cluster 2");
	sluice_blk_unref(blk);
	KTAP_EXPECT(sh("qemu-img check '%s'", path) == 0, "check");
	unlink(path);
	return KTAP_PASS;
}

/*
 * The same for a rewrite that frees the old clusters (a LINK): a full
 * overwrite of a compressed cluster allocates a new one and frees the
 * compressed bytes, but only once no read of them is in flight.
 */
static enum ktap_result rewrite_of_compressed_waits_for_reads(void)
{
	enum { CL = 65536 };
	static unsigned char b[CL], rbuf[CL];
	char path[8192], raw[8192], *err = NULL;
	struct sluice_blk *blk;
	struct gated_req rd, wr;
	bool parked, early;
	uint64_t l2;

	KTAP_SKIP_IF(!have_qemu(), "qemu-img/qemu-io not installed");
	bt_path(raw, sizeof(raw), "compressed.raw");
	bt_path(path, sizeof(path), "compressed.qcow2");
	KTAP_EXPECT(sh("qemu-img create -q -f raw '%s' 1M && qemu-io -f raw -c 'write -P 0xaa 0 64k' '%s' && "
		       "qemu-img convert -c -O qcow2 '%s' '%s'", raw, raw, raw, path) == 0, "make a compressed image");
	l2 = peek(path, peek(path, 40, 8), 8) & 0x00fffffffffffe00ull;
	KTAP_EXPECT(l2 && (peek(path, l2, 8) & (1ull << 62)), "cluster 0 is not compressed (L2 at 0x%llx)",
		    (unsigned long long)l2);
	blk = sluice_blk_new_open(path, "qcow2", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(blk, "open: %s", err);
	KTAP_EXPECT(sluice_blk_pread(blk, 0, CL, rbuf, 0) == 0 && all_bytes(rbuf, CL, 0xaa), "compressed data");

	parked = gated_read_park(blk, &rd, rbuf, CL);
	memset(b, 0xbb, CL);
	wr = (struct gated_req){ .blk = blk, .op = GR_WRITE, .off = 0, .len = CL, .buf = b };
	gated_start(&wr);
	/* Its data write first, then either it waits for the read or it links (and is done). */
	SLUICE_AIO_WAIT_WHILE(sluice_block_main_ctx(), !wr.done && !read_waited_on(blk));
	early = wr.done;
	gated_read_release(&rd, &wr);
	KTAP_EXPECT(parked, "the read did not park in the file layer");
	KTAP_EXPECT(!early, "the rewrite freed the compressed cluster while a read of it was in flight");
	KTAP_EXPECT(rd.ret == 0 && all_bytes(rbuf, CL, 0xaa), "the read returned %d, data %02x", rd.ret, rbuf[0]);
	KTAP_EXPECT(wr.ret == 0, "rewrite: %s", strerror(-wr.ret));
	KTAP_EXPECT(sluice_blk_pread(blk, 0, CL, rbuf, 0) == 0 && all_bytes(rbuf, CL, 0xbb), "cluster 0 rewritten");
	sluice_blk_unref(blk);
	KTAP_EXPECT(sh("qemu-img check '%s'", path) == 0, "check");
	unlink(path);
	unlink(raw);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(create_passes_qemu_check),
	  KTAP_CASE(writes_match_qemu_io),
	  KTAP_CASE(writes_over_backing_match_qemu_io),
	  KTAP_CASE(qemu_images_read_back),
	  KTAP_CASE(backing_chain_relative),
	  KTAP_CASE(backing_loop_refused),
	  KTAP_CASE(header_corruption_refused),
	  KTAP_CASE(runtime_corruption_sets_bit),
	  KTAP_CASE(inplace_write_onto_metadata_refused),
	  KTAP_CASE(l2_past_eof_refused),
	  KTAP_CASE(data_cluster_past_eof_refused),
	  KTAP_CASE(concurrent_allocating_writes),
	  KTAP_CASE(iothreads_allocating_writes),
	  KTAP_CASE(grow_image),
	  KTAP_CASE(snapshot_shared_clusters),
	  KTAP_CASE(discard_waits_for_reads),
	  KTAP_CASE(rewrite_of_compressed_waits_for_reads))
