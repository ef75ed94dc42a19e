// SPDX-License-Identifier: GPL-2.0
/* vmlinux.c - the kernel inside a bzImage: decompress its payload (zstd, xz, gzip) and load the vmlinux ELF. */
#include <elf.h>
#include <errno.h>
#include <lzma.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

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
 * Main thread.  Copy the PT_LOAD segments of the ELF64 @elf (@len bytes) to
 * their physical addresses, all inside [@min, @max); the entry point (ELF
 * e_entry, physical for x86-64 vmlinux) in *@entry and the end of the
 * highest segment in *@end.  0, or -EINVAL with a static reason in *@why.
 */
static int load_elf(struct sluice_vm *vm, const uint8_t *elf, size_t len, uint64_t min, uint64_t max,
		    uint64_t *entry, uint64_t *end, const char **why)
{
	const Elf64_Ehdr *eh = (const void *)elf;
	bool entry_loaded = false;
	uint64_t hi = 0;
	unsigned int i, loads = 0;

	*why = "is not an x86-64 ELF executable";
	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_machine != EM_X86_64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return -EINVAL;
	for (i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(elf + eh->e_phoff + i * sizeof(Elf64_Phdr));
		uint8_t *dst;

		if (ph->p_type != PT_LOAD || !ph->p_memsz)
			continue;
		*why = "has a segment outside the file or guest memory";
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > len || ph->p_filesz > len - ph->p_offset ||
		    ph->p_paddr < min || ph->p_paddr > max || ph->p_memsz > max - ph->p_paddr)
			return -EINVAL;
		dst = sluice_gpa_to_hva(vm, ph->p_paddr, ph->p_memsz);
		if (!dst)
			return -EINVAL;
		memcpy(dst, elf + ph->p_offset, ph->p_filesz);
		memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		if (eh->e_entry >= ph->p_paddr && eh->e_entry < ph->p_paddr + ph->p_filesz)
			entry_loaded = true;
		if (ph->p_paddr + ph->p_memsz > hi)
			hi = ph->p_paddr + ph->p_memsz;
		loads++;
	}
	*why = "has no loadable segment holding its entry point";
	if (!loads || !entry_loaded)
		return -EINVAL;
	*entry = eh->e_entry;
	*end = hi;
	return 0;
}

/*
 * Main thread.  The bzImage on @fd has its compressed vmlinux at file offset
 * @off (@len bytes; boot protocol 2.08+ payload_offset/payload_length).
 * Decompress it here and place its segments in guest memory within
 * [@min, @max), so the guest skips its own decompressor (and KASLR's
 * relocation pass: the kernel runs where it was linked).  Guest RAM from
 * @max to @scratch_end is the workspace (payload and decompressed ELF), so
 * the VMM's own memory does not grow by the kernel's size; the caller puts
 * the initrd there afterwards.  On success the 64-bit entry in *@entry (same
 * register contract as the bzImage's 64-bit entry: %rsi = boot_params,
 * identity-mapped long mode) and the image end in *@end.  Any failure
 * (unknown compression, a corrupt payload, not an ELF, no room) returns
 * -errno with a reason in *@why: the caller falls back to the bzImage path,
 * which rewrites everything this may have written.
 */
int sluice_vmlinux_load(struct sluice_vm *vm, int fd, uint64_t off, uint32_t len, uint64_t min, uint64_t max,
			uint64_t scratch_end, uint64_t *entry, uint64_t *end, const char **why)
{
	static const uint8_t zstd_magic[] = { 0x28, 0xb5, 0x2f, 0xfd };
	static const uint8_t xz_magic[] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
	static const uint8_t gzip_magic[] = { 0x1f, 0x8b };
	uint64_t in_gpa = (scratch_end - len) & ~0xfffULL, cap, scratch;
	uint8_t *in, *out;
	int64_t n;

	*why = "does not leave room to decompress its kernel in guest memory";
	if (len < 16 || scratch_end < max || in_gpa < max || in_gpa - max < (16ULL << 20))
		return -ENOSPC;
	cap = in_gpa - max;
	in = sluice_gpa_to_hva(vm, in_gpa, len);
	out = sluice_gpa_to_hva(vm, max, cap);
	if (!in || !out)
		return -ENOSPC;
	*why = "payload unreadable";
	if (pread(fd, in, len, (off_t)off) != (ssize_t)len)
		return -EIO;
	*why = "payload compression not supported here (zstd, xz and gzip are)";
	if (!memcmp(in, zstd_magic, sizeof(zstd_magic)))
		n = unzstd(in, len, out, cap);
	else if (!memcmp(in, xz_magic, sizeof(xz_magic)))
		n = unxz(in, len, out, cap);
	else if (!memcmp(in, gzip_magic, sizeof(gzip_magic)))
		n = ungzip(in, len, out, cap);
	else
		return -EOPNOTSUPP;
	if (n >= 0)
		n = load_elf(vm, out, (size_t)n, min, max, entry, end, why);
	else
		*why = n == -EFBIG ? "decompresses to more than guest memory holds" : "payload does not decompress";
	/* Give the workspace back: the guest finds zeroed, untouched RAM there, as after a plain load. */
	scratch = (max + 0xfff) & ~0xfffULL;
	madvise(sluice_gpa_to_hva(vm, scratch, scratch_end - scratch), scratch_end - scratch, MADV_DONTNEED);
	return n < 0 ? (int)n : 0;
}
