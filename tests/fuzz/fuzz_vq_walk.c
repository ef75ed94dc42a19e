// SPDX-License-Identifier: GPL-2.0
/* fuzz_vq_walk.c - libFuzzer target: arbitrary guest memory and ring parameters through the shared descriptor walker. */
#include <stdio.h>
#include <stdlib.h>

#include "sluice/vq_walk.h"

#define RAM_BASE	0x10000ULL

struct fuzz_ram {
	const unsigned char *mem;
	__u64 size;
};

static bool fuzz_valid(void *opaque, __u64 gpa, __u64 len)
{
	const struct fuzz_ram *r = opaque;

	return gpa >= RAM_BASE && len <= r->size && gpa - RAM_BASE <= r->size - len;
}

static int fuzz_read(void *opaque, __u64 gpa, void *dst, __u32 len)
{
	const struct fuzz_ram *r = opaque;

	if (!fuzz_valid(opaque, gpa, len))
		return -EFAULT;
	memcpy(dst, r->mem + (gpa - RAM_BASE), len);
	return 0;
}

static const struct sluice_vq_mem_ops fuzz_ops = { .read = fuzz_read, .valid = fuzz_valid };

/*
 * Input: [0] log2 queue size (mod 16), [1] flags (bit 0: indirect feature), [2..3] head,
 * [4] max segments, [5] desc table offset in 16-byte units; the rest is guest RAM.
 */
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct sluice_vq_seg segs[256];
	struct fuzz_ram ram;
	struct sluice_vq_ring vq;
	unsigned int n = 0, i, max;
	__u32 out = 0, in = 0;
	__u64 so = 0, si = 0;
	__u16 head;

	if (size < 8)
		return 0;
	ram.mem = data + 8;
	ram.size = size - 8;
	vq.size = (__u16)(1u << (data[0] % 16));
	vq.indirect = data[1] & 1;
	vq.desc_gpa = RAM_BASE + (__u64)data[5] * 16;
	vq.ops = &fuzz_ops;
	vq.opaque = &ram;
	head = (__u16)(data[2] | data[3] << 8);
	max = data[4] % 256 + 1;

	if (sluice_vq_walk_chain(&vq, head, segs, max, &n, &out, &in) != SLUICE_VQ_OK)
		return 0;
	if (n == 0 || n > max)
		abort();
	for (i = 0; i < n; i++) {
		if (!segs[i].len || !fuzz_valid(&ram, segs[i].gpa, segs[i].len))
			abort();
		if (segs[i].write)
			si += segs[i].len;
		else if (si)
			abort();	/* readable after writable slipped through */
		else
			so += segs[i].len;
	}
	if (so != out || si != in)
		abort();
	return 0;
}
