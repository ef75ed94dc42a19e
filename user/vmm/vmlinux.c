// SPDX-License-Identifier: GPL-2.0
/* vmlinux.c - the kernel inside a bzImage: decompress its payload (zstd, xz, gzip) and load the vmlinux ELF. */
#include <elf.h>
#include <errno.h>
#include <lzma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "util.h"
#include "vmm.h"

/*
 * Main thread.  The zstd frame at the start of @in into @out (@cap bytes),
 * in one pass into the flat output (no window buffer of our own: the
 * output is the window); the decompressed length, or -errno.
 */
static int64_t unzstd(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
	size_t frame = ZSTD_findFrameCompressedSize(in, in_len);	/* the kernel appends its size */
	ZSTD_DCtx *dc;
	size_t r;

	if (ZSTD_isError(frame))
		return -EINVAL;
	dc = ZSTD_createDCtx();
	if (!dc)
		return -ENOMEM;
	r = ZSTD_decompressDCtx(dc, out, cap, in, frame);
	ZSTD_freeDCtx(dc);
	if (ZSTD_isError(r))
		return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? -EFBIG : -EINVAL;
	return (int64_t)r;
}

/* Main thread.  xz stream of @in into @out; the decompressed length, or -errno. */
static int64_t unxz(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
	lzma_stream s = LZMA_STREAM_INIT;
	int64_t ret = -EINVAL;
	lzma_ret r;

	if (lzma_stream_decoder(&s, UINT64_MAX, 0) != LZMA_OK)
		return -ENOMEM;
	s.next_in = in;
	s.avail_in = in_len;
	s.next_out = out;
	s.avail_out = cap;
	r = lzma_code(&s, LZMA_FINISH);
	if (r == LZMA_STREAM_END)
		ret = (int64_t)s.total_out;
	else if (r == LZMA_OK || r == LZMA_BUF_ERROR)
		ret = s.avail_out ? -EINVAL : -EFBIG;
	lzma_end(&s);
	return ret;
}

/* Main thread.  gzip member of @in into @out; the decompressed length, or -errno. */
static int64_t ungzip(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
	z_stream z = { 0 };
	int64_t ret = -EINVAL;
	int r;

	if (in_len > UINT32_MAX || cap > UINT32_MAX || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -EINVAL;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	r = inflate(&z, Z_FINISH);
	if (r == Z_STREAM_END)
		ret = (int64_t)z.total_out;
	else if (r == Z_BUF_ERROR && !z.avail_out)
		ret = -EFBIG;
	inflateEnd(&z);
	return ret;
}

/*
 * Main thread.  The first bytes of the zstd frame at @in into @out, as far as
 * @cap goes (the streaming decoder stops when the output is full); how many,
 * or -errno.
 */
static int64_t unzstd_head(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
	ZSTD_inBuffer ib = { .src = in, .size = in_len };
	ZSTD_outBuffer ob = { .dst = out, .size = cap };
	ZSTD_DStream *ds = ZSTD_createDStream();
	int64_t ret = 0;
	size_t r;

	if (!ds)
		return -ENOMEM;
	while (ob.pos < ob.size && ib.pos < ib.size) {
		r = ZSTD_decompressStream(ds, &ob, &ib);
		if (ZSTD_isError(r)) {
			ret = -EINVAL;
			break;
		}
		if (!r)
			break;		/* the frame ended */
	}
	ZSTD_freeDStream(ds);
	return ret ? ret : (int64_t)ob.pos;
}

enum payload_kind { PAYLOAD_ZSTD, PAYLOAD_XZ, PAYLOAD_GZIP };

/* Main thread.  Decompress @in into @out (@cap bytes): the length, -EFBIG when it needs more room, or -errno. */
static int64_t decompress(enum payload_kind kind, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
	switch (kind) {
	case PAYLOAD_ZSTD:
		return unzstd(in, in_len, out, cap);
	case PAYLOAD_XZ:
		return unxz(in, in_len, out, cap);
	default:
		return ungzip(in, in_len, out, cap);
	}
}

/* Main thread.  The first min(@cap, all) bytes of the decompressed payload: how many, or -errno. */
static int64_t decompress_head(enum payload_kind kind, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
	int64_t n = kind == PAYLOAD_ZSTD ? unzstd_head(in, in_len, out, cap) : decompress(kind, in, in_len, out, cap);

	return n == -EFBIG ? (int64_t)cap : n;	/* xz and gzip fill the buffer before they say "too small" */
}

struct pread_half {
	int fd;
	uint8_t *buf;
	uint64_t len, off;
	int ret;
};

/* A helper thread of pread_split(): its half. */
static void *pread_half_thread(void *opaque)
{
	struct pread_half *h = opaque;

	h->ret = sluice_pread_all(h->fd, h->buf, h->len, h->off);
	return NULL;
}

/*
 * Main thread.  sluice_pread_all() of a large cached kernel in two halves at
 * once: each thread faults in (and the kernel zeroes) its own half of the
 * guest RAM it copies to, so the copy takes the time of one half on two CPUs.
 */
static int pread_split(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
	struct pread_half h;
	uint64_t first = (len / 2) & ~((2ULL << 20) - 1);	/* apart at a huge-page boundary */
	pthread_t t;
	int ret;

	if (first < (4ULL << 20))
		return sluice_pread_all(fd, buf, len, off);
	h = (struct pread_half){ .fd = fd, .buf = buf + first, .len = len - first, .off = off + first };
	if (pthread_create(&t, NULL, pread_half_thread, &h))
		return sluice_pread_all(fd, buf, len, off);
	ret = sluice_pread_all(fd, buf, first, off);
	pthread_join(t, NULL);
	return ret ? ret : h.ret;
}

/* The compressed vmlinux in the bzImage, read into guest memory only when it must be decompressed. */
struct vmlinux_payload {
	int fd;
	uint64_t off;
	uint32_t len;
	uint8_t *in;		/* where it goes (the top of the workspace) */
	bool loaded;
	enum payload_kind kind;
};

/* Main thread.  Read and identify the payload (once): 0, or -errno with the reason in *@why. */
static int payload_load(struct vmlinux_payload *p, const char **why)
{
	static const uint8_t zstd_magic[] = { 0x28, 0xb5, 0x2f, 0xfd };
	static const uint8_t xz_magic[] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
	static const uint8_t gzip_magic[] = { 0x1f, 0x8b };

	if (p->loaded)
		return 0;
	*why = "payload unreadable";
	if (sluice_pread_all(p->fd, p->in, p->len, p->off))
		return -EIO;
	*why = "payload compression not supported here (zstd, xz and gzip are)";
	if (!memcmp(p->in, zstd_magic, sizeof(zstd_magic)))
		p->kind = PAYLOAD_ZSTD;
	else if (!memcmp(p->in, xz_magic, sizeof(xz_magic)))
		p->kind = PAYLOAD_XZ;
	else if (!memcmp(p->in, gzip_magic, sizeof(gzip_magic)))
		p->kind = PAYLOAD_GZIP;
	else
		return -EOPNOTSUPP;
	p->loaded = true;
	return 0;
}

/*
 * Main thread.  The cache key of the payload without reading all of it:
 * the bzImage's identity (inode, size, modification and change times) and
 * the payload's length, first and last 64 KiB.  The last bytes of each
 * format carry a checksum of the whole decompressed kernel (zstd's content
 * checksum, xz's block check, gzip's CRC32 and length), so a payload that
 * changed under the same name and times still gets a new key.  0 or -errno.
 */
static int payload_key(const struct vmlinux_payload *p, struct sluice_kcache_key *key)
{
	const uint64_t part = p->len < 65536 ? p->len : 65536;
	uint64_t id[6];
	struct stat st;
	uint8_t *buf;
	int ret;

	if (fstat(p->fd, &st))
		return -EIO;
	buf = malloc(sizeof(id) + 2 * part);
	if (!buf)
		return -ENOMEM;
	id[0] = st.st_ino;
	id[1] = (uint64_t)st.st_size;
	id[2] = (uint64_t)st.st_mtim.tv_sec;
	id[3] = (uint64_t)st.st_mtim.tv_nsec;
	id[4] = (uint64_t)st.st_ctim.tv_sec;
	id[5] = (uint64_t)st.st_ctim.tv_nsec;
	memcpy(buf, id, sizeof(id));
	ret = sluice_pread_all(p->fd, buf + sizeof(id), part, p->off);
	if (!ret)
		ret = sluice_pread_all(p->fd, buf + sizeof(id) + part, part, p->off + p->len - part);
	if (!ret) {
		sluice_kcache_key(buf, sizeof(id) + 2 * part, key);
		key->payload_len = p->len;
	}
	free(buf);
	return ret;
}

/*
 * Main thread.  The whole ELF into @out (@cap bytes): read from the cache
 * entry *@cfd (@elf_len bytes) when there is one, else decompressed.  An
 * entry that cannot be read is closed (*@cfd = -1) and the payload
 * decompressed after all.  The length, -EFBIG when it needs more room, or
 * -errno.
 */
static int64_t vmlinux_produce(struct vmlinux_payload *p, int *cfd, uint64_t elf_len, uint8_t *out, size_t cap,
			       const char **why)
{
	int ret;

	if (*cfd >= 0) {
		if (elf_len > cap)
			return -EFBIG;
		if (!pread_split(*cfd, out, elf_len, SLUICE_KCACHE_HDR))
			return (int64_t)elf_len;
		close(*cfd);
		*cfd = -1;
	}
	ret = payload_load(p, why);
	return ret ? ret : decompress(p->kind, p->in, p->len, out, cap);
}

#define VMLINUX_HEAD		65536	/* enough for the ELF and program headers */
#define VMLINUX_MAX_LOADS	16

struct vmlinux_load {
	uint64_t off, paddr, filesz, memsz;
};

/*
 * Main thread.  The PT_LOAD segments of the ELF64 whose first @len bytes are
 * @elf, sorted by physical address, all inside [@min, @max) and apart; their
 * number in *@nr and the entry point (ELF e_entry, physical for x86-64
 * vmlinux) in *@entry.  File ranges are checked by the caller, who knows the
 * whole length.  0, or -EINVAL with a static reason in *@why.
 */
static int parse_elf(const uint8_t *elf, size_t len, uint64_t min, uint64_t max, struct vmlinux_load *l,
		     unsigned int *nr, uint64_t *entry, const char **why)
{
	const Elf64_Ehdr *eh = (const void *)elf;
	struct vmlinux_load t;
	unsigned int i, j, n = 0;
	bool entry_loaded = false;

	*why = "is not an x86-64 ELF executable";
	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_machine != EM_X86_64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return -EINVAL;
	for (i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(elf + eh->e_phoff + i * sizeof(Elf64_Phdr));

		if (ph->p_type != PT_LOAD || !ph->p_memsz)
			continue;
		*why = "has a segment outside guest memory";
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > UINT64_MAX - ph->p_filesz ||
		    ph->p_paddr < min || ph->p_paddr > max || ph->p_memsz > max - ph->p_paddr)
			return -EINVAL;
		*why = "has too many segments";
		if (n == VMLINUX_MAX_LOADS)
			return -EINVAL;
		l[n++] = (struct vmlinux_load){ ph->p_offset, ph->p_paddr, ph->p_filesz, ph->p_memsz };
		if (eh->e_entry >= ph->p_paddr && eh->e_entry < ph->p_paddr + ph->p_filesz)
			entry_loaded = true;
	}
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && l[j - 1].paddr > l[j].paddr; j--) {
			t = l[j];
			l[j] = l[j - 1];
			l[j - 1] = t;
		}
	*why = "has overlapping segments";
	for (i = 1; i < n; i++)
		if (l[i - 1].paddr + l[i - 1].memsz > l[i].paddr)
			return -EINVAL;
	*why = "has no loadable segment holding its entry point";
	if (!n || !entry_loaded)
		return -EINVAL;
	*nr = n;
	*entry = eh->e_entry;
	return 0;
}

/*
 * Main thread.  Could the ELF, decompressed as a whole at @base, be put in
 * place by moving each segment down in address order?  Each move (and each
 * bss cleared) must stay below the file data of every later segment.
 */
static bool in_place_fits(const struct vmlinux_load *l, unsigned int nr, uint64_t base)
{
	unsigned int i, j;

	for (i = 0; i < nr; i++) {
		if (base + l[i].off < l[i].paddr)
			return false;
		for (j = i + 1; j < nr; j++)
			if (l[i].paddr + l[i].memsz > base + l[j].off)
				return false;
	}
	return true;
}

/*
 * Main thread.  Segments of the ELF at @elf (@len bytes, anywhere in guest
 * memory or not) to their physical addresses: memmove, so that the source may
 * be the same guest memory a little higher; bss and the gaps between segments
 * cleared.  -EINVAL when a segment lies outside the @len bytes.
 */
static int place_loads(struct sluice_vm *vm, const uint8_t *elf, uint64_t len, const struct vmlinux_load *l,
		       unsigned int nr)
{
	unsigned int i;
	uint8_t *dst;

	for (i = 0; i < nr; i++) {
		if (l[i].off > len || l[i].filesz > len - l[i].off)
			return -EINVAL;
		dst = sluice_gpa_to_hva(vm, l[i].paddr, l[i].memsz);
		memmove(dst, elf + l[i].off, l[i].filesz);
		memset(dst + l[i].filesz, 0, l[i].memsz - l[i].filesz);
		if (i + 1 < nr)
			memset(dst + l[i].memsz, 0, l[i + 1].paddr - l[i].paddr - l[i].memsz);
	}
	return 0;
}

/*
 * Main thread.  The bzImage on @fd has its compressed vmlinux at file offset
 * @off (@len bytes; boot protocol 2.08+ payload_offset/payload_length).
 * Decompress it here and place its segments in guest memory within
 * [@min, @max), so the guest skips its own decompressor (and KASLR's
 * relocation pass: the kernel runs where it was linked).  Guest RAM from
 * @min to @scratch_end is the workspace: the payload is read to its top and
 * the ELF decompressed where its first segment lands in place (the others
 * then move down by the ELF's padding), or, when that cannot work, above
 * @max and copied.  The VMM's own memory does not grow by the kernel's size;
 * the caller puts the initrd there afterwards.  On success the 64-bit entry
 * in *@entry (same register contract as the bzImage's 64-bit entry: %rsi =
 * boot_params, identity-mapped long mode) and the image end in *@end.  Any
 * failure (unknown compression, a corrupt payload, not an ELF, no room)
 * returns -errno with a reason in *@why and leaves *@entry untouched (even
 * when the headers parsed before the full decompress failed): the caller
 * falls back to the bzImage path, which rewrites everything this may have
 * written.
 */
int sluice_vmlinux_load(struct sluice_vm *vm, int fd, uint64_t off, uint32_t len, uint64_t min, uint64_t max,
			uint64_t scratch_end, int cache_fd, enum sluice_kernel_load *load, uint64_t *entry, uint64_t *end,
			const char **why)
{
	uint64_t in_gpa = (scratch_end - len) & ~0xfffULL, base = 0, image_end, clear, elf_entry = 0;
	struct vmlinux_payload p = { .fd = fd, .off = off, .len = len };
	struct vmlinux_load l[VMLINUX_MAX_LOADS];
	struct sluice_kcache_key key = { 0 };
	bool in_place, keyed = false, stored = false;
	uint64_t cached_len = 0;
	unsigned int nr = 0;
	uint8_t *head, *elf;
	int cfd = -1;
	int64_t n;
	int ret;

	*load = SLUICE_KERNEL_BZIMAGE;	/* until it worked: the caller falls back to the bzImage */
	*why = "does not leave room to decompress its kernel in guest memory";
	if (len < 16 || scratch_end < max || in_gpa < max || in_gpa - max < (16ULL << 20))
		return -ENOSPC;
	p.in = sluice_gpa_to_hva(vm, in_gpa, len);
	if (!p.in || !sluice_gpa_to_hva(vm, max, in_gpa - max))
		return -ENOSPC;

	/* This payload decompressed before: its ELF is in the cache, and the payload need not be read. */
	if (cache_fd >= 0 && !payload_key(&p, &key)) {
		keyed = true;
		cfd = sluice_kcache_lookup(cache_fd, &key, &cached_len);
	}
	if (cfd < 0) {
		ret = payload_load(&p, why);
		if (ret)
			return ret;
	}

	/* The headers first (a 64 KiB head of the output), to know where the ELF may go. */
	head = malloc(VMLINUX_HEAD);
	if (!head) {
		ret = -ENOMEM;
		goto out_close;
	}
	for (;;) {
		if (cfd >= 0) {
			n = cached_len < VMLINUX_HEAD ? (int64_t)cached_len : VMLINUX_HEAD;
			if (sluice_pread_all(cfd, head, (uint64_t)n, SLUICE_KCACHE_HDR))
				n = -EIO;
		} else {
			n = decompress_head(p.kind, p.in, len, head, VMLINUX_HEAD);
		}
		*why = "payload does not decompress";
		ret = n < 0 ? (int)n : parse_elf(head, (size_t)n, min, max, l, &nr, &elf_entry, why);
		if (!ret || cfd < 0)
			break;
		/* The cached ELF is unreadable or does not parse: decompress after all. */
		close(cfd);
		cfd = -1;
		ret = payload_load(&p, why);
		if (ret)
			break;
	}
	free(head);
	if (ret)
		goto out_clear;

	/* Decompressed in place, the first segment lands where it belongs: no copy of most of the kernel. */
	in_place = l[0].off <= l[0].paddr && l[0].paddr - l[0].off >= min &&
		   in_place_fits(l, nr, l[0].paddr - l[0].off);
	n = -EFBIG;
	if (in_place) {
		base = l[0].paddr - l[0].off;
		n = vmlinux_produce(&p, &cfd, cached_len, sluice_gpa_to_hva(vm, base, in_gpa - base), in_gpa - base,
				    why);
	}
	if (n == -EFBIG) {
		/* Above the kernel's area, and copied down. */
		in_place = false;
		base = max;
		n = vmlinux_produce(&p, &cfd, cached_len, sluice_gpa_to_hva(vm, max, in_gpa - max), in_gpa - max,
				    why);
	}
	if (n >= 0) {
		elf = sluice_gpa_to_hva(vm, base, (uint64_t)n);
		/* Kept for the next boot before the segments move: the ELF as it decompressed. */
		if (keyed && cfd < 0)
			stored = !sluice_kcache_store(cache_fd, &key, elf, (uint64_t)n);
		ret = place_loads(vm, elf, (uint64_t)n, l, nr);
		if (in_place)
			memset(sluice_gpa_to_hva(vm, base, l[0].paddr - base), 0, l[0].paddr - base);	/* the ELF headers */
	}
	if (n < 0) {
		*why = n == -EFBIG ? "decompresses to more than guest memory holds" : "payload does not decompress";
		ret = (int)n;
	} else if (ret) {
		*why = "has a segment outside the file";
	}
	image_end = l[nr - 1].paddr + l[nr - 1].memsz;
	*end = image_end;
	if (ret)
		goto out_clear;
	/* The rest of the workspace goes back: the guest finds zeroed RAM there, as after a plain load. */
	clear = (image_end + 0xfff) & ~0xfffULL;
	memset(sluice_gpa_to_hva(vm, image_end, clear - image_end), 0, clear - image_end);
	madvise(sluice_gpa_to_hva(vm, clear, scratch_end - clear), scratch_end - clear, MADV_DONTNEED);
	*entry = elf_entry;	/* only now: a failure must leave the caller's bzImage entry alone */
	*load = cfd >= 0 ? SLUICE_KERNEL_CACHED : stored ? SLUICE_KERNEL_DECOMPRESSED_STORED : SLUICE_KERNEL_DECOMPRESSED;
	if (cfd >= 0)
		close(cfd);
	return 0;

out_clear:
	clear = (max + 0xfff) & ~0xfffULL;
	madvise(sluice_gpa_to_hva(vm, clear, scratch_end - clear), scratch_end - clear, MADV_DONTNEED);
out_close:
	if (cfd >= 0)
		close(cfd);
	return ret;
}
