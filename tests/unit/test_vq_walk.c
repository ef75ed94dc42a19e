// SPDX-License-Identifier: GPL-2.0
/* test_vq_walk.c - the shared descriptor walker against every attack case and the spec's rules. */
#include <stdlib.h>

#include "ktap.h"
#include "sluice/vq_walk.h"

#define RAM_BASE	0x100000ULL
#define RAM_SIZE	(1 << 20)
#define QSIZE		16
#define DESC_GPA	RAM_BASE			/* the queue's table */
#define IND_GPA		(RAM_BASE + 0x1000)		/* an indirect table */
#define DATA_GPA	(RAM_BASE + 0x10000)

#define F_NEXT	1
#define F_WRITE	2
#define F_IND	4

static unsigned char ram[RAM_SIZE];
static bool lenient;	/* for the 4 GiB case: data "exists" everywhere */

struct desc {
	__u64 addr;
	__u32 len;
	__u16 flags;
	__u16 next;
};

static bool in_ram(__u64 gpa, __u64 len)
{
	return gpa >= RAM_BASE && len <= RAM_SIZE && gpa - RAM_BASE <= RAM_SIZE - len;
}

static bool ram_valid(void *opaque, __u64 gpa, __u64 len)
{
	return lenient || in_ram(gpa, len);
}

static int ram_read(void *opaque, __u64 gpa, void *dst, __u32 len)
{
	if (!in_ram(gpa, len))
		return -EFAULT;
	memcpy(dst, ram + (gpa - RAM_BASE), len);
	return 0;
}

static const struct sluice_vq_mem_ops ops = { .read = ram_read, .valid = ram_valid };

static struct sluice_vq_ring vq = {
	.size = QSIZE, .indirect = true, .desc_gpa = DESC_GPA, .ops = &ops,
};

static void put(__u64 table, unsigned int i, __u64 addr, __u32 len, __u16 flags, __u16 next)
{
	struct desc d = { htole64(addr), htole32(len), htole16(flags), htole16(next) };

	memcpy(ram + (table - RAM_BASE) + i * 16, &d, 16);
}

static void reset(void)
{
	memset(ram, 0, sizeof(ram));
	lenient = false;
	vq.indirect = true;
	vq.desc_gpa = DESC_GPA;
}

static enum sluice_vq_err walk(__u16 head, unsigned int max, unsigned int *n, __u32 *out, __u32 *in)
{
	static struct sluice_vq_seg segs[2048];

	return sluice_vq_walk_chain(&vq, head, segs, max, n, out, in);
}

#define EXPECT_ERR(head, want)							\
	do {									\
		unsigned int n_; __u32 o_, i_;					\
		enum sluice_vq_err e_ = walk((head), 64, &n_, &o_, &i_);	\
		KTAP_EXPECT(e_ == (want), "got '%s', expected '%s'",		\
			    sluice_vq_strerror(e_), sluice_vq_strerror(want));	\
	} while (0)

static enum ktap_result blk_request_chain(void)
{
	struct sluice_vq_seg segs[8];
	unsigned int n;
	__u32 out, in;

	reset();
	put(DESC_GPA, 3, DATA_GPA, 16, F_NEXT, 7);
	put(DESC_GPA, 7, DATA_GPA + 0x100, 4096, F_NEXT | F_WRITE, 2);
	put(DESC_GPA, 2, DATA_GPA + 0x2000, 1, F_WRITE, 0);
	KTAP_EXPECT(sluice_vq_walk_chain(&vq, 3, segs, 8, &n, &out, &in) == SLUICE_VQ_OK, "walk failed");
	KTAP_EXPECT(n == 3 && out == 16 && in == 4097, "n %u out %u in %u", n, out, in);
	KTAP_EXPECT(segs[0].gpa == DATA_GPA && !segs[0].write && segs[1].write && segs[2].len == 1,
		    "segments wrong");
	return KTAP_PASS;
}

static enum ktap_result indirect_chain(void)
{
	struct sluice_vq_seg segs[8];
	unsigned int n;
	__u32 out, in;

	reset();
	put(DESC_GPA, 0, IND_GPA, 3 * 16, F_IND, 0);
	put(IND_GPA, 0, DATA_GPA, 16, F_NEXT, 1);
	put(IND_GPA, 1, DATA_GPA + 0x100, 512, F_NEXT, 2);
	put(IND_GPA, 2, DATA_GPA + 0x400, 1, F_WRITE, 0);
	KTAP_EXPECT(sluice_vq_walk_chain(&vq, 0, segs, 8, &n, &out, &in) == SLUICE_VQ_OK, "walk failed");
	KTAP_EXPECT(n == 3 && out == 528 && in == 1, "n %u out %u in %u", n, out, in);
	vq.indirect = false;
	EXPECT_ERR(0, SLUICE_VQ_ERR_INDIRECT_FEATURE);
	return KTAP_PASS;
}

static enum ktap_result loops(void)
{
	reset();
	put(DESC_GPA, 0, DATA_GPA, 16, F_NEXT, 0);		/* self loop */
	EXPECT_ERR(0, SLUICE_VQ_ERR_LOOP);
	put(DESC_GPA, 1, DATA_GPA, 16, F_NEXT, 2);
	put(DESC_GPA, 2, DATA_GPA, 16, F_NEXT, 1);		/* 1 -> 2 -> 1 */
	EXPECT_ERR(1, SLUICE_VQ_ERR_LOOP);
	put(DESC_GPA, 0, IND_GPA, 2 * 16, F_IND, 0);		/* loop inside a table */
	put(IND_GPA, 0, DATA_GPA, 16, F_NEXT, 1);
	put(IND_GPA, 1, DATA_GPA, 16, F_NEXT, 0);
	EXPECT_ERR(0, SLUICE_VQ_ERR_LOOP);
	return KTAP_PASS;
}

static enum ktap_result nested_and_misplaced_indirect(void)
{
	reset();
	put(DESC_GPA, 0, IND_GPA, 2 * 16, F_IND, 0);
	put(IND_GPA, 0, DATA_GPA, 16, F_NEXT, 1);
	put(IND_GPA, 1, IND_GPA, 16, F_IND, 0);			/* nested */
	EXPECT_ERR(0, SLUICE_VQ_ERR_INDIRECT_NESTED);
	put(DESC_GPA, 1, DATA_GPA, 16, F_NEXT, 2);
	put(DESC_GPA, 2, IND_GPA, 2 * 16, F_IND, 0);		/* nested, after a direct one */
	EXPECT_ERR(1, SLUICE_VQ_ERR_INDIRECT_NESTED);
	put(DESC_GPA, 3, IND_GPA, 16, F_IND | F_NEXT, 4);	/* INDIRECT | NEXT */
	EXPECT_ERR(3, SLUICE_VQ_ERR_INDIRECT_NEXT);
	put(DESC_GPA, 5, DATA_GPA, 16, F_NEXT, 6);
	put(DESC_GPA, 6, IND_GPA, 16, F_IND | F_NEXT, 7);	/* INDIRECT | NEXT after a direct one */
	EXPECT_ERR(5, SLUICE_VQ_ERR_INDIRECT_NEXT);
	return KTAP_PASS;
}

/* 2.7.5.3.2: direct descriptors followed by one indirect one (Linux's virtio-blk header + table). */
static enum ktap_result direct_then_indirect(void)
{
	struct sluice_vq_seg segs[8];
	unsigned int n;
	__u32 out, in;

	reset();
	put(DESC_GPA, 4, DATA_GPA, 16, F_NEXT, 9);			/* header */
	put(DESC_GPA, 9, IND_GPA, 2 * 16, F_IND, 0);
	put(IND_GPA, 0, DATA_GPA + 0x1000, 4096, F_NEXT | F_WRITE, 1);	/* data */
	put(IND_GPA, 1, DATA_GPA + 0x100, 1, F_WRITE, 0);		/* status */
	KTAP_EXPECT(sluice_vq_walk_chain(&vq, 4, segs, 8, &n, &out, &in) == SLUICE_VQ_OK, "walk failed");
	KTAP_EXPECT(n == 3 && out == 16 && in == 4097, "n %u out %u in %u", n, out, in);
	KTAP_EXPECT(segs[0].gpa == DATA_GPA && segs[0].len == 16 && !segs[0].write, "header segment");
	KTAP_EXPECT(segs[1].gpa == DATA_GPA + 0x1000 && segs[1].len == 4096 && segs[1].write, "data segment");
	KTAP_EXPECT(segs[2].gpa == DATA_GPA + 0x100 && segs[2].len == 1 && segs[2].write, "status segment");
	/* Two direct ones, then the table. */
	put(DESC_GPA, 4, DATA_GPA, 16, F_NEXT, 5);
	put(DESC_GPA, 5, DATA_GPA + 0x200, 512, F_NEXT, 9);
	KTAP_EXPECT(sluice_vq_walk_chain(&vq, 4, segs, 8, &n, &out, &in) == SLUICE_VQ_OK, "walk failed");
	KTAP_EXPECT(n == 4 && out == 528 && in == 4097, "n %u out %u in %u", n, out, in);
	/* The segment cap counts both parts. */
	KTAP_EXPECT(sluice_vq_walk_chain(&vq, 4, segs, 3, &n, &out, &in) == SLUICE_VQ_ERR_TOO_MANY_SEGS,
		    "cap not enforced across the table");
	/* Without the feature, the table after direct ones is refused too. */
	vq.indirect = false;
	EXPECT_ERR(4, SLUICE_VQ_ERR_INDIRECT_FEATURE);
	return KTAP_PASS;
}

/* Readable after writable, and the 4 GiB sums, across the direct/indirect boundary. */
static enum ktap_result indirect_boundary_rules(void)
{
	unsigned int n;
	__u32 out, in;

	reset();
	put(DESC_GPA, 0, DATA_GPA, 16, F_NEXT | F_WRITE, 1);		/* writable, direct */
	put(DESC_GPA, 1, IND_GPA, 16, F_IND, 0);
	put(IND_GPA, 0, DATA_GPA + 0x100, 16, 0, 0);			/* readable, in the table */
	EXPECT_ERR(0, SLUICE_VQ_ERR_READ_AFTER_WRITE);
	reset();
	lenient = true;
	put(DESC_GPA, 0, 0x100000000ULL, 0xc0000000, F_NEXT, 1);
	put(DESC_GPA, 1, IND_GPA, 16, F_IND, 0);
	put(IND_GPA, 0, 0x200000000ULL, 0x40000000, 0, 0);		/* 4 GiB readable in all */
	KTAP_EXPECT(walk(0, 8, &n, &out, &in) == SLUICE_VQ_ERR_LEN_OVERFLOW, "> 4 GiB across the table");
	return KTAP_PASS;
}

static enum ktap_result bad_indirect_length(void)
{
	static const __u32 bad[] = { 0, 1, 15, 17, 33, (SLUICE_VQ_MAX_INDIRECT + 1) * 16 };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		reset();
		put(DESC_GPA, 0, IND_GPA, bad[i], F_IND, 0);
		EXPECT_ERR(0, SLUICE_VQ_ERR_INDIRECT_LEN);
	}
	reset();
	put(DESC_GPA, 0, RAM_BASE + RAM_SIZE - 16, 32, F_IND, 0);	/* table crosses the end of RAM */
	EXPECT_ERR(0, SLUICE_VQ_ERR_OUTSIDE_RAM);
	return KTAP_PASS;
}

static enum ktap_result index_ranges(void)
{
	reset();
	EXPECT_ERR(QSIZE, SLUICE_VQ_ERR_HEAD_RANGE);
	EXPECT_ERR(0xffff, SLUICE_VQ_ERR_HEAD_RANGE);
	put(DESC_GPA, 0, DATA_GPA, 16, F_NEXT, QSIZE);
	EXPECT_ERR(0, SLUICE_VQ_ERR_NEXT_RANGE);
	put(DESC_GPA, 0, IND_GPA, 2 * 16, F_IND, 0);
	put(IND_GPA, 0, DATA_GPA, 16, F_NEXT, 2);		/* next past the 2-entry table */
	EXPECT_ERR(0, SLUICE_VQ_ERR_NEXT_RANGE);
	return KTAP_PASS;
}

static enum ktap_result avail_jump(void)
{
	enum sluice_vq_err err;

	KTAP_EXPECT(sluice_vq_avail_pending(5, 0, QSIZE, &err) == 5 && !err, "5 pending");
	KTAP_EXPECT(sluice_vq_avail_pending(QSIZE, 0, QSIZE, &err) == QSIZE && !err, "full ring");
	KTAP_EXPECT(sluice_vq_avail_pending(3, 0xfffe, QSIZE, &err) == 5 && !err, "wrap-around");
	KTAP_EXPECT(sluice_vq_avail_pending(QSIZE + 1, 0, QSIZE, &err) == -1 &&
		    err == SLUICE_VQ_ERR_AVAIL_JUMP, "jump > size accepted");
	KTAP_EXPECT(sluice_vq_avail_pending(0, 1, QSIZE, &err) == -1, "backwards jump accepted");
	return KTAP_PASS;
}

static enum ktap_result zero_length(void)
{
	reset();
	put(DESC_GPA, 0, DATA_GPA, 16, F_NEXT, 1);
	put(DESC_GPA, 1, DATA_GPA, 0, F_WRITE, 0);
	EXPECT_ERR(0, SLUICE_VQ_ERR_ZERO_LEN);
	return KTAP_PASS;
}

static enum ktap_result outside_ram(void)
{
	reset();
	put(DESC_GPA, 0, RAM_BASE - 1, 16, 0, 0);		/* below */
	EXPECT_ERR(0, SLUICE_VQ_ERR_OUTSIDE_RAM);
	put(DESC_GPA, 0, RAM_BASE + RAM_SIZE - 8, 16, 0, 0);	/* straddles the end */
	EXPECT_ERR(0, SLUICE_VQ_ERR_OUTSIDE_RAM);
	put(DESC_GPA, 0, ~0ULL - 7, 16, 0, 0);			/* wraps the address space */
	EXPECT_ERR(0, SLUICE_VQ_ERR_OUTSIDE_RAM);
	vq.desc_gpa = 0x1000;					/* the table itself */
	EXPECT_ERR(0, SLUICE_VQ_ERR_OUTSIDE_RAM);
	return KTAP_PASS;
}

static enum ktap_result readable_after_writable(void)
{
	reset();
	put(DESC_GPA, 0, DATA_GPA, 16, F_NEXT | F_WRITE, 1);
	put(DESC_GPA, 1, DATA_GPA, 16, 0, 0);
	EXPECT_ERR(0, SLUICE_VQ_ERR_READ_AFTER_WRITE);
	return KTAP_PASS;
}

static enum ktap_result segment_cap_and_length_overflow(void)
{
	unsigned int n, i;
	__u32 out, in;

	reset();
	for (i = 0; i < 4; i++)
		put(DESC_GPA, i, DATA_GPA, 16, i < 3 ? F_NEXT : 0, (__u16)(i + 1));
	KTAP_EXPECT(walk(0, 3, &n, &out, &in) == SLUICE_VQ_ERR_TOO_MANY_SEGS, "cap not enforced");
	KTAP_EXPECT(walk(0, 4, &n, &out, &in) == SLUICE_VQ_OK && n == 4, "4 segments refused");
	reset();
	lenient = true;
	for (i = 0; i < 3; i++)
		put(DESC_GPA, i, 0x100000000ULL * (i + 1), 0x7fffffff, i < 2 ? F_NEXT : 0, (__u16)(i + 1));
	KTAP_EXPECT(walk(0, 8, &n, &out, &in) == SLUICE_VQ_ERR_LEN_OVERFLOW, "> 4 GiB accepted");
	return KTAP_PASS;
}

static enum ktap_result event_idx(void)
{
	KTAP_EXPECT(sluice_vq_need_event(0, 1, 0), "crossing event 0");
	KTAP_EXPECT(!sluice_vq_need_event(5, 3, 0), "not yet at event 5");
	KTAP_EXPECT(sluice_vq_need_event(5, 6, 3), "crossed 5");
	KTAP_EXPECT(sluice_vq_need_event(0xffff, 1, 0xfffe), "crossed across wrap");
	KTAP_EXPECT(!sluice_vq_need_event(7, 7, 7), "no progress");
	return KTAP_PASS;
}

/* Random tables: the walker never reads out of RAM or returns more than asked, and its sums agree. */
static enum ktap_result random_tables(void)
{
	struct sluice_vq_seg segs[32];
	unsigned int iter, i, n;
	__u32 out, in;

	srand(1);
	for (iter = 0; iter < 20000; iter++) {
		__u64 so = 0, si = 0;

		reset();
		for (i = 0; i < QSIZE; i++) {
			__u64 a = (rand() % 8) ? DATA_GPA + (__u64)(rand() % 4096) * 16 : (__u64)rand() << 12;
			__u16 fl = (__u16)(rand() % 8);
			__u32 len = (fl & F_IND) ? (__u32)(rand() % 5) * 16 : (__u32)(rand() % 8192);

			if ((fl & F_IND) && rand() % 2)
				a = IND_GPA;
			put(DESC_GPA, i, a, len, fl, (__u16)(rand() % (QSIZE + 2)));
			put(IND_GPA, i, a, len, fl, (__u16)(rand() % 6));
		}
		if (sluice_vq_walk_chain(&vq, (__u16)(rand() % QSIZE), segs, 32, &n, &out, &in))
			continue;
		KTAP_EXPECT(n >= 1 && n <= 32, "n %u", n);
		for (i = 0; i < n; i++) {
			KTAP_EXPECT(in_ram(segs[i].gpa, segs[i].len) && segs[i].len, "segment outside RAM");
			if (segs[i].write)
				si += segs[i].len;
			else
				so += segs[i].len;
		}
		KTAP_EXPECT(so == out && si == in, "sums differ");
	}
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(blk_request_chain), KTAP_CASE(indirect_chain), KTAP_CASE(loops),
	  KTAP_CASE(nested_and_misplaced_indirect), KTAP_CASE(direct_then_indirect),
	  KTAP_CASE(indirect_boundary_rules), KTAP_CASE(bad_indirect_length),
	  KTAP_CASE(index_ranges), KTAP_CASE(avail_jump), KTAP_CASE(zero_length),
	  KTAP_CASE(outside_ram), KTAP_CASE(readable_after_writable),
	  KTAP_CASE(segment_cap_and_length_overflow), KTAP_CASE(event_idx), KTAP_CASE(random_tables))
