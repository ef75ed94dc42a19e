// SPDX-License-Identifier: GPL-2.0
/* boot.c - the Linux x86 64-bit boot protocol: bzImage header checks, kernel/initrd/cmdline placement, zero page, e820. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asm/bootparam.h>

#include "util.h"
#include "vmm.h"

#define SETUP_HDR_OFFSET	0x1f1
#define HDRS_MAGIC		0x53726448	/* "HdrS" */
#define MIN_PROTOCOL		0x020c		/* 2.12: xloadflags, 64-bit entry */
#define E820_TYPE_RAM		1
#define E820_TYPE_RESERVED	2
#define BIOS_AREA_START		0xf0000ULL
#define LOADER_UNDEFINED	0xff

/*
 * The e820 map for @low_size bytes of RAM at 0 and @high_size at 4 GiB: RAM below the
 * EBDA, the EBDA..BIOS area reserved, RAM from 1 MiB to the end of low RAM (at most
 * the PCI hole), RAM above 4 GiB.  Returns the number of entries or -ENOSPC.  Any thread.
 */
int sluice_e820_layout(uint64_t low_size, uint64_t high_size, struct sluice_e820 *map, unsigned int max)
{
	struct sluice_e820 all[4];
	unsigned int n = 0, i;

	if (low_size < SLUICE_MIN_MEM)
		return -EINVAL;
	all[n++] = (struct sluice_e820){ 0, SLUICE_EBDA_START, E820_TYPE_RAM };
	all[n++] = (struct sluice_e820){ SLUICE_EBDA_START, SLUICE_KERNEL_MIN - SLUICE_EBDA_START,
					 E820_TYPE_RESERVED };
	all[n++] = (struct sluice_e820){ SLUICE_KERNEL_MIN, low_size - SLUICE_KERNEL_MIN, E820_TYPE_RAM };
	if (high_size)
		all[n++] = (struct sluice_e820){ SLUICE_HIGH_RAM_START, high_size, E820_TYPE_RAM };
	if (n > max)
		return -ENOSPC;
	for (i = 0; i < n; i++)
		map[i] = all[i];
	return n;
}

/*
 * Is a file of @file_size bytes starting with @image (@len bytes of it, at least the
 * setup header) a bzImage this loader can boot with the 64-bit protocol?  Returns 0, or
 * -EINVAL with a static reason in *@why.  Any thread.
 */
int sluice_bzimage_check(const uint8_t *image, size_t len, uint64_t file_size, const char **why)
{
	struct setup_header hdr;
	size_t setup_size;

	if (len < SETUP_HDR_OFFSET + sizeof(hdr)) {
		*why = "is too small to be a bzImage";
		return -EINVAL;
	}
	memcpy(&hdr, image + SETUP_HDR_OFFSET, sizeof(hdr));
	if (hdr.boot_flag != 0xaa55 || hdr.header != HDRS_MAGIC) {
		*why = "is not a bzImage (no boot flag or HdrS signature)";
		return -EINVAL;
	}
	if (hdr.version < MIN_PROTOCOL) {
		*why = "uses boot protocol older than 2.12";
		return -EINVAL;
	}
	if (!(hdr.loadflags & LOADED_HIGH)) {
		*why = "is a zImage (not loaded high)";
		return -EINVAL;
	}
	if (!(hdr.xloadflags & XLF_KERNEL_64)) {
		*why = "has no 64-bit entry point";
		return -EINVAL;
	}
	setup_size = ((size_t)(hdr.setup_sects ? hdr.setup_sects : 4) + 1) * 512;
	if (setup_size >= file_size) {
		*why = "is truncated (no protected-mode kernel after the setup code)";
		return -EINVAL;
	}
	return 0;
}

/* Main thread: open @path (a regular file) read-only; its size in *@size. */
static int open_file(const char *path, int *fd, uint64_t *size, char *err, size_t errlen)
{
	struct stat st;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		close(*fd);
		*fd = -1;
		return -EINVAL;
	}
	*size = st.st_size;
	return 0;
}

/*
 * Main thread: read @len bytes at @off of @fd straight into @dst (guest RAM:
 * no bounce buffer, so the image never counts twice in sluice's memory).
 */
static int read_at(int fd, const char *path, void *dst, size_t len, uint64_t off, char *err, size_t errlen)
{
	int ret = sluice_pread_all(fd, dst, len, off);

	if (ret)
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(-ret));
	return ret;
}

/*
 * Where the kernel in a bzImage loaded at @load_addr runs, that is, where its
 * init_size bytes start: the 64-bit startup code decompresses to
 * align_up(load address, kernel_alignment) for a relocatable kernel, but
 * never below LOAD_PHYSICAL_ADDR (its pref_address); a kernel that is not
 * relocatable runs at pref_address.  Any thread.
 */
uint64_t sluice_kernel_run_addr(const struct setup_header *hdr, uint64_t load_addr)
{
	uint64_t align = hdr->kernel_alignment, run = load_addr;

	if (!hdr->relocatable_kernel)
		run = hdr->pref_address;
	else if (align && !(align & (align - 1)))
		run = (load_addr + align - 1) & ~(align - 1);
	return run > hdr->pref_address ? run : hdr->pref_address;
}

/* The setup code is at most 1 + 255 sectors: all the header checks need. */
#define SETUP_MAX	(256 * 512)

/*
 * Load @cfg->kernel (and initrd, cmdline) into guest memory, write the zero page and
 * set vm->entry.  On failure writes a one-line reason into @err.  Main thread.
 */
int sluice_boot_load(struct sluice_vm *vm, const struct sluice_config *cfg, char *err, size_t errlen)
{
	struct sluice_e820 map[SLUICE_E820_MAX];
	uint8_t *image = NULL;
	uint64_t image_len, initrd_len = 0;
	size_t head_len, setup_size, kernel_len, cmdline_len, hdr_len;
	int kfd = -1, ifd = -1, cache_fd = -1;
	uint64_t load_addr, run_addr, kernel_end, initrd_addr = 0, initrd_max, entry, vmlinux_end;
	struct boot_params *bp;
	const char *why;
	const char *cmdline = cfg->append ? cfg->append : "";
	void *dst;
	int ret, n, i;

	ret = open_file(cfg->kernel, &kfd, &image_len, err, errlen);
	if (ret)
		return ret;
	head_len = image_len < SETUP_MAX ? image_len : SETUP_MAX;
	image = malloc(head_len ? head_len : 1);
	if (!image) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", cfg->kernel);
		goto out_free;
	}
	ret = read_at(kfd, cfg->kernel, image, head_len, 0, err, errlen);
	if (ret)
		goto out_free;
	ret = sluice_bzimage_check(image, head_len, image_len, &why);
	if (ret) {
		snprintf(err, errlen, "%s %s", cfg->kernel, why);
		goto out_free;
	}
	bp = sluice_gpa_to_hva(vm, SLUICE_BOOT_PARAMS, sizeof(*bp));
	memset(bp, 0, sizeof(*bp));
	/* The setup header runs from 0x1f1 to the end of the jump at 0x200 plus its offset. */
	hdr_len = 0x202 + image[0x201] - SETUP_HDR_OFFSET;
	if (hdr_len > sizeof(bp->hdr))
		hdr_len = sizeof(bp->hdr);
	memcpy(&bp->hdr, image + SETUP_HDR_OFFSET, hdr_len);

	setup_size = ((size_t)(bp->hdr.setup_sects ? bp->hdr.setup_sects : 4) + 1) * 512;
	kernel_len = image_len - setup_size;
	load_addr = SLUICE_KERNEL_MIN;
	if (bp->hdr.relocatable_kernel && bp->hdr.pref_address >= SLUICE_KERNEL_MIN &&
	    bp->hdr.pref_address + bp->hdr.init_size <= vm->low_size)
		load_addr = bp->hdr.pref_address;
	run_addr = sluice_kernel_run_addr(&bp->hdr, load_addr);
	kernel_end = run_addr + bp->hdr.init_size;
	if (kernel_end < load_addr + kernel_len)
		kernel_end = load_addr + kernel_len;
	dst = sluice_gpa_to_hva(vm, load_addr, kernel_len);
	if (!dst || kernel_end > vm->low_size) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s needs guest RAM up to 0x%llx (it runs in [0x%llx, +init_size)), "
			 "more than the %llu MiB of low RAM", cfg->kernel, (unsigned long long)kernel_end,
			 (unsigned long long)run_addr, (unsigned long long)(vm->low_size >> 20));
		goto out_free;
	}
	/*
	 * Decompress the kernel here rather than in the guest (much cheaper
	 * outside the guest's nested paging); the free RAM above the kernel's
	 * area is the workspace.  Anything this cannot do falls back to
	 * loading the bzImage for its own decompressor.
	 */
	entry = 0;	/* set only by a successful sluice_vmlinux_load() */
	vm->kernel_load = SLUICE_KERNEL_BZIMAGE;
	if (!cfg->kernel_cache || strcmp(cfg->kernel_cache, "off")) {
		cache_fd = sluice_kcache_open(cfg->kernel_cache, &why);
		/* The default directory is a convenience; one the user named must work. */
		if (cache_fd < 0 && cfg->kernel_cache) {
			ret = cache_fd;
			snprintf(err, errlen, "--kernel-cache %s: %s (%s)", cfg->kernel_cache, why, strerror(-ret));
			goto out_free;
		}
	}
	if (getenv("SLUICE_GUEST_DECOMPRESS") ||
	    sluice_vmlinux_load(vm, kfd, setup_size + bp->hdr.payload_offset, bp->hdr.payload_length,
				SLUICE_KERNEL_MIN, kernel_end, vm->low_size, cache_fd, &vm->kernel_load, &entry,
				&vmlinux_end, &why)) {
		entry = 0;	/* the bzImage's own 64-bit entry, load_addr + 0x200 */
		vm->kernel_load = SLUICE_KERNEL_BZIMAGE;
		ret = read_at(kfd, cfg->kernel, dst, kernel_len, setup_size, err, errlen);
		if (ret)
			goto out_free;
	}

	cmdline_len = strlen(cmdline);
	if (cmdline_len + 1 > SLUICE_CMDLINE_MAX ||
	    (bp->hdr.cmdline_size && cmdline_len > bp->hdr.cmdline_size)) {
		ret = -E2BIG;
		snprintf(err, errlen, "--append: command line of %zu bytes exceeds the kernel's %u",
			 cmdline_len, bp->hdr.cmdline_size);
		goto out_free;
	}
	memcpy(sluice_gpa_to_hva(vm, SLUICE_CMDLINE_ADDR, cmdline_len + 1), cmdline, cmdline_len + 1);

	if (cfg->initrd) {
		ret = open_file(cfg->initrd, &ifd, &initrd_len, err, errlen);
		if (ret)
			goto out_free;
		initrd_max = bp->hdr.initrd_addr_max ? bp->hdr.initrd_addr_max : 0x37ffffff;
		if (initrd_max > vm->low_size - 1)
			initrd_max = vm->low_size - 1;
		/* Above the kernel's whole footprint, never in the area it decompresses into. */
		if (initrd_len > initrd_max + 1 || ((initrd_max + 1 - initrd_len) & ~0xfffULL) < kernel_end) {
			ret = -ENOMEM;
			snprintf(err, errlen, "%s (%llu bytes) does not fit in guest memory between the kernel's "
				 "end 0x%llx and 0x%llx", cfg->initrd, (unsigned long long)initrd_len,
				 (unsigned long long)kernel_end, (unsigned long long)initrd_max + 1);
			goto out_free;
		}
		initrd_addr = (initrd_max + 1 - initrd_len) & ~0xfffULL;
		ret = read_at(ifd, cfg->initrd, sluice_gpa_to_hva(vm, initrd_addr, initrd_len), initrd_len, 0,
			      err, errlen);
		if (ret)
			goto out_free;
	}

	bp->hdr.vid_mode = 0xffff;		/* "normal" */
	bp->hdr.type_of_loader = LOADER_UNDEFINED;
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.loadflags &= ~(KEEP_SEGMENTS | QUIET_FLAG);
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.code32_start = load_addr;
	bp->hdr.cmd_line_ptr = SLUICE_CMDLINE_ADDR;
	bp->ext_cmd_line_ptr = 0;
	bp->hdr.ramdisk_image = (uint32_t)initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)initrd_len;
	bp->ext_ramdisk_image = initrd_addr >> 32;
	bp->ext_ramdisk_size = (uint64_t)initrd_len >> 32;

	n = sluice_e820_layout(vm->low_size, vm->high_size, map, SLUICE_E820_MAX);
	if (n < 0) {
		ret = n;
		snprintf(err, errlen, "cannot lay out the e820 map: %s", strerror(-n));
		goto out_free;
	}
	for (i = 0; i < n; i++) {
		bp->e820_table[i].addr = map[i].addr;
		bp->e820_table[i].size = map[i].size;
		bp->e820_table[i].type = map[i].type;
	}
	bp->e820_entries = n;

	/* The bzImage's 64-bit entry (its decompressor), or the decompressed kernel's own startup_64. */
	vm->entry = entry ? entry : load_addr + 0x200;
	ret = 0;
out_free:
	if (cache_fd >= 0)
		close(cache_fd);
	if (ifd >= 0)
		close(ifd);
	if (kfd >= 0)
		close(kfd);
	free(image);
	return ret;
}
