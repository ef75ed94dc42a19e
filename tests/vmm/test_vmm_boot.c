// SPDX-License-Identifier: GPL-2.0
/* test_vmm_boot.c - unit tests of the VMM's boot path without KVM: bzImage checks, RAM split, e820, vmlinux loading. */
#include <dirent.h>
#include <elf.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asm/bootparam.h>

#include "ktap.h"
#include "vmm.h"

static uint8_t image[0x4000];

/* A minimal synthetic bzImage: boot flag, HdrS, protocol 2.15, loaded high, 64-bit entry. */
static void make_image(void)
{
	struct setup_header *hdr = (struct setup_header *)(image + 0x1f1);

	memset(image, 0, sizeof(image));
	hdr->setup_sects = 4;
	hdr->boot_flag = 0xaa55;
	hdr->header = 0x53726448;
	hdr->version = 0x020f;
	hdr->loadflags = LOADED_HIGH;
	hdr->xloadflags = XLF_KERNEL_64;
}

static struct setup_header *hdr(void)
{
	return (struct setup_header *)(image + 0x1f1);
}

static enum ktap_result bzimage_accepted(void)
{
	const char *why = NULL;

	make_image();
	KTAP_EXPECT(sluice_bzimage_check(image, sizeof(image), sizeof(image), &why) == 0, "refused: %s", why);
	return KTAP_PASS;
}

static enum ktap_result bzimage_refused(void)
{
	const char *why;

	make_image();
	hdr()->header = 0x12345678;
	KTAP_EXPECT(sluice_bzimage_check(image, sizeof(image), sizeof(image), &why) == -EINVAL, "no HdrS accepted");
	KTAP_EXPECT(strstr(why, "not a bzImage"), "reason '%s'", why);

	make_image();
	hdr()->boot_flag = 0;
	KTAP_EXPECT(sluice_bzimage_check(image, sizeof(image), sizeof(image), &why) == -EINVAL, "no boot flag accepted");

	make_image();
	hdr()->version = 0x020b;
	KTAP_EXPECT(sluice_bzimage_check(image, sizeof(image), sizeof(image), &why) == -EINVAL, "protocol 2.11 accepted");

	make_image();
	hdr()->xloadflags = 0;
	KTAP_EXPECT(sluice_bzimage_check(image, sizeof(image), sizeof(image), &why) == -EINVAL, "no 64-bit entry accepted");

	make_image();
	hdr()->loadflags = 0;
	KTAP_EXPECT(sluice_bzimage_check(image, sizeof(image), sizeof(image), &why) == -EINVAL, "zImage accepted");

	make_image();
	KTAP_EXPECT(sluice_bzimage_check(image, 0x100, 0x100, &why) == -EINVAL, "short file accepted");
	KTAP_EXPECT(sluice_bzimage_check(image, sizeof(image), 5 * 512, &why) == -EINVAL,
		    "file with only the setup code accepted");
	return KTAP_PASS;
}

static enum ktap_result ram_split(void)
{
	uint64_t low, high;

	sluice_ram_layout(256ULL << 20, &low, &high);
	KTAP_EXPECT(low == 256ULL << 20 && high == 0, "256M: low %llu high %llu",
		    (unsigned long long)low, (unsigned long long)high);
	sluice_ram_layout(3ULL << 30, &low, &high);
	KTAP_EXPECT(low == 3ULL << 30 && high == 0, "3G split wrong");
	sluice_ram_layout(3584ULL << 20, &low, &high);
	KTAP_EXPECT(low == 3ULL << 30 && high == 512ULL << 20, "3584M: low %llu high %llu",
		    (unsigned long long)low, (unsigned long long)high);
	return KTAP_PASS;
}

static enum ktap_result e820_low_only(void)
{
	struct sluice_e820 map[SLUICE_E820_MAX];
	int n;

	n = sluice_e820_layout(256ULL << 20, 0, map, SLUICE_E820_MAX);
	KTAP_EXPECT(n == 3, "%d entries", n);
	KTAP_EXPECT(map[0].addr == 0 && map[0].size == 0x9fc00 && map[0].type == 1, "entry 0 wrong");
	KTAP_EXPECT(map[1].addr == 0x9fc00 && map[1].addr + map[1].size == 0x100000 && map[1].type == 2,
		    "entry 1 wrong");
	KTAP_EXPECT(map[2].addr == 0x100000 && map[2].addr + map[2].size == 256ULL << 20 && map[2].type == 1,
		    "entry 2 wrong");
	return KTAP_PASS;
}

static enum ktap_result e820_pci_hole(void)
{
	struct sluice_e820 map[SLUICE_E820_MAX];
	uint64_t ram = 0;
	int n, i;

	n = sluice_e820_layout(3ULL << 30, 512ULL << 20, map, SLUICE_E820_MAX);
	KTAP_EXPECT(n == 4, "%d entries", n);
	KTAP_EXPECT(map[2].addr + map[2].size == 0xc0000000ULL, "low RAM ends at 0x%llx",
		    (unsigned long long)(map[2].addr + map[2].size));
	KTAP_EXPECT(map[3].addr == 0x100000000ULL && map[3].size == 512ULL << 20 && map[3].type == 1,
		    "high RAM at 0x%llx size 0x%llx", (unsigned long long)map[3].addr,
		    (unsigned long long)map[3].size);
	for (i = 0; i < n; i++) {
		if (map[i].type == 1)
			ram += map[i].size;
		KTAP_EXPECT(i == 0 || map[i].addr >= map[i - 1].addr + map[i - 1].size, "entry %d overlaps", i);
	}
	KTAP_EXPECT(ram == 3584ULL * 1024 * 1024 - (0x100000 - 0x9fc00), "RAM total %llu",
		    (unsigned long long)ram);
	KTAP_EXPECT(sluice_e820_layout(3ULL << 30, 1, map, 3) == -ENOSPC, "overflow not reported");
	return KTAP_PASS;
}

#define VM_RAM	(256ULL << 20)

/* The payload of the bzImage at @path: its file offset and length; 0 or -1. */
static int payload_of(const char *path, uint64_t *off, uint32_t *len, uint64_t *init_end)
{
	struct setup_header h;
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, &h, sizeof(h), 0x1f1);
	close(fd);
	if (n != sizeof(h) || h.header != 0x53726448)
		return -1;
	*off = ((uint64_t)(h.setup_sects ? h.setup_sects : 4) + 1) * 512 + h.payload_offset;
	*len = h.payload_length;
	*init_end = h.pref_address + h.init_size;
	return 0;
}

/* The next bzImage /boot/vmlinuz-* of @d with a payload: its path in @path, its payload as payload_of(). */
static bool next_kernel(DIR *d, char *path, size_t size, uint64_t *off, uint32_t *len, uint64_t *init_end)
{
	struct dirent *de;

	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "vmlinuz-", 8))
			continue;
		snprintf(path, size, "/boot/%s", de->d_name);
		if (!payload_of(path, off, len, init_end))
			return true;
	}
	return false;
}

/* As next_kernel(), opened: the bzImage's fd (skipping those that do not open), or -1 when none is left. */
static int next_kernel_fd(DIR *d, char *path, size_t size, uint64_t *off, uint32_t *len, uint64_t *init_end)
{
	int fd;

	while (next_kernel(d, path, size, off, len, init_end)) {
		fd = open(path, O_RDONLY);
		if (fd >= 0)
			return fd;
	}
	return -1;
}

/* The payload of @path decompressed by the xz or zstd tool (a second opinion); its length in *@n, or NULL. */
static uint8_t *tool_decompress(const char *path, uint64_t off, uint32_t len, size_t *n)
{
	char cmd[768];
	uint8_t magic[4], *buf = NULL;
	size_t cap = 0, got;
	FILE *f;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || pread(fd, magic, 4, (off_t)off) != 4) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	snprintf(cmd, sizeof(cmd), "tail -c +%llu '%s' | head -c %u | %s -dc 2>/dev/null", (unsigned long long)off + 1,
		 path, len, magic[0] == 0x28 ? "zstd" : "xz");
	f = popen(cmd, "r");
	if (!f)
		return NULL;
	*n = 0;
	for (;;) {
		if (*n == cap) {
			uint8_t *nb = realloc(buf, cap ? cap * 2 : 1 << 26);

			if (!nb)
				break;
			buf = nb;
			cap = cap ? cap * 2 : 1 << 26;
		}
		got = fread(buf + *n, 1, cap - *n, f);
		if (!got)
			break;
		*n += got;
	}
	pclose(f);
	return buf;
}

/*
 * Guest memory from @min to @max holds exactly what the ELF @elf says: each
 * PT_LOAD's file bytes at its physical address, zeroes in its bss, and zeroes
 * everywhere else in [@min, @max).  A reason, or NULL.
 */
static const char *image_matches(const uint8_t *ram, const uint8_t *elf, size_t n, uint64_t min, uint64_t max)
{
	const Elf64_Ehdr *eh = (const void *)elf;
	uint64_t a = min, i, j;

	for (a = min; a < max; a++) {
		bool inseg = false;

		for (i = 0; i < eh->e_phnum && !inseg; i++) {
			const Elf64_Phdr *ph = (const void *)(elf + eh->e_phoff + i * sizeof(Elf64_Phdr));

			if (ph->p_type != PT_LOAD || a < ph->p_paddr || a >= ph->p_paddr + ph->p_memsz)
				continue;
			inseg = true;
			/* Compare the whole segment at once, then skip it. */
			j = a - ph->p_paddr;
			if (j < ph->p_filesz && ph->p_offset + ph->p_filesz <= n &&
			    memcmp(ram + a, elf + ph->p_offset + j, ph->p_filesz - j))
				return "a segment's bytes differ from the ELF's";
			if (j < ph->p_filesz)
				j = ph->p_filesz;
			for (; j < ph->p_memsz; j++)
				if (ram[ph->p_paddr + j])
					return "a segment's bss is not zero";
			a = ph->p_paddr + ph->p_memsz - 1;
		}
		if (!inseg && ram[a])
			return "memory outside the segments is not zero";
	}
	return NULL;
}

/*
 * The installed Debian kernels (zstd for 6.12, xz for 6.1) decompress and
 * load: the entry lies in a loaded segment at 16 MiB and the kernel's banner
 * is in guest memory; a truncated payload and an unknown compression are
 * refused (the VMM then boots the bzImage as before), and so is a guest too
 * small to hold the workspace.
 */
static enum ktap_result vmlinux_from_bzimage(void)
{
	struct sluice_vm vm = { .low_size = VM_RAM };
	char path[512], trunc[] = "/tmp/sluice-vmlinux-XXXXXX";
	enum sluice_kernel_load load;
	uint64_t off, init_end, entry, end;
	const char *why, *bad;
	uint8_t *elf;
	size_t elf_len;
	int tried = 0, fd, tfd, ret;
	uint32_t len;
	DIR *d;

	vm.ram = mmap(NULL, VM_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	KTAP_EXPECT(vm.ram != MAP_FAILED, "mmap");
	d = opendir("/boot");
	KTAP_EXPECT(d, "/boot: %s", strerror(errno));
	while ((fd = next_kernel_fd(d, path, sizeof(path), &off, &len, &init_end)) >= 0) {
		memset(vm.ram, 0, 0x4000000);
		ret = sluice_vmlinux_load(&vm, fd, off, len, 0x100000, init_end, VM_RAM, -1, &load, &entry, &end,
					  &why);
		KTAP_EXPECT(!ret, "%s: %s (%d)", path, why, ret);
		KTAP_EXPECT(entry >= 0x1000000 && entry < end && end <= init_end, "%s: entry %#llx end %#llx",
			    path, (unsigned long long)entry, (unsigned long long)end);
		KTAP_EXPECT(memmem(vm.ram + 0x1000000, end - 0x1000000, "Linux version ", 14),
			    "%s: no kernel banner in the loaded image", path);
		/*
		 * Byte for byte what xz/zstd and the ELF's program headers say, both
		 * when it decompresses in place (first segment where it belongs) and
		 * when @min forbids that and the ELF is copied down from above @max.
		 */
		elf = tool_decompress(path, off, len, &elf_len);
		KTAP_EXPECT(elf && elf_len > 0x10000, "%s: the xz/zstd tool could not decompress it", path);
		bad = image_matches(vm.ram, elf, elf_len, 0x100000, init_end + (16 << 20));
		KTAP_EXPECT(!bad, "%s, in place: %s", path, bad);
		memset(vm.ram, 0xa5, init_end + (16 << 20));
		memset(vm.ram, 0, 0x1000000);
		ret = sluice_vmlinux_load(&vm, fd, off, len, 0x1000000, init_end, VM_RAM, -1, &load, &entry, &end,
					  &why);
		KTAP_EXPECT(!ret, "%s, copied: %s (%d)", path, why, ret);
		bad = image_matches(vm.ram, elf, elf_len, 0x1000000, init_end + (16 << 20));
		KTAP_EXPECT(!bad, "%s, copied: %s", path, bad);
		free(elf);
		KTAP_EXPECT(sluice_vmlinux_load(&vm, fd, off, len, 0x100000, init_end, init_end + (8 << 20), -1, &load,
						&entry, &end, &why) == -ENOSPC, "%s: no room, yet loaded", path);
		/* The same payload cut short: refused. */
		tfd = mkstemp(trunc);
		KTAP_SYSCALL(tfd);
		unlink(trunc);
		strcpy(trunc, "/tmp/sluice-vmlinux-XXXXXX");
		{
			uint8_t *buf = malloc(len / 2);

			KTAP_EXPECT(buf && pread(fd, buf, len / 2, (off_t)off) == (ssize_t)(len / 2) &&
				    pwrite(tfd, buf, len / 2, 0) == (ssize_t)(len / 2), "copy");
			KTAP_EXPECT(sluice_vmlinux_load(&vm, tfd, 0, len / 2, 0x100000, init_end, VM_RAM, -1, &load,
							&entry, &end, &why) < 0, "%s: half a payload loaded", path);
			buf[0] ^= 0x55;	/* no known magic */
			KTAP_EXPECT(pwrite(tfd, buf, len / 2, 0) == (ssize_t)(len / 2), "rewrite");
			KTAP_EXPECT(sluice_vmlinux_load(&vm, tfd, 0, len / 2, 0x100000, init_end, VM_RAM, -1, &load,
							&entry, &end, &why) == -EOPNOTSUPP,
				    "%s: unknown compression accepted", path);
			free(buf);
		}
		close(tfd);
		close(fd);
		ktap_diag("%s: entry %#llx, image end %#llx", path, (unsigned long long)entry, (unsigned long long)end);
		tried++;
	}
	closedir(d);
	munmap(vm.ram, VM_RAM);
	if (!tried)
		return KTAP_SKIP;	/* no kernel installed (make deps installs two) */
	return KTAP_PASS;
}

/* The entry files (vmlinux-*) in @dir. */
static int cache_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += !strncmp(de->d_name, "vmlinux-", 8);
	closedir(d);
	return n;
}

/* The one entry file in @dir, into @path; false when there is none. */
static bool cache_entry(const char *dir, char *path, size_t size)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d)))
		if (!strncmp(de->d_name, "vmlinux-", 8)) {
			snprintf(path, size, "%s/%s", dir, de->d_name);
			found = true;
		}
	closedir(d);
	return found;
}

/*
 * The decompressed-kernel cache: the first load of each installed kernel
 * decompresses and stores its ELF; the next reads it back, and guest memory
 * is byte for byte the same, in place and copied.  A damaged entry (cut
 * short, header of another payload, an ELF that does not parse) is a miss:
 * the payload decompresses again and the entry is rewritten.  Stores keep
 * the 4 most recently used entries.  The directory must be ours and closed
 * to others, and a --kernel-cache that cannot be used fails the boot.
 */
static enum ktap_result vmlinux_cache(void)
{
	struct sluice_vm vm = { .low_size = VM_RAM, .ram_size = VM_RAM };
	char dir[] = "/tmp/sluice-kcache-XXXXXX", path[512], entry_path[600], err[256];
	struct sluice_config cfg = { 0 };
	struct sluice_kcache_key key;
	enum sluice_kernel_load load;
	uint64_t off, init_end, entry, end, elf_len;
	const char *why, *bad;
	int tried = 0, fd, cfd, efd, ret, i;
	uint8_t *elf, junk[4096];
	size_t tool_len;
	struct stat st;
	uint32_t len;
	DIR *d;

	vm.ram = mmap(NULL, VM_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	KTAP_EXPECT(vm.ram != MAP_FAILED, "mmap");
	KTAP_EXPECT(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	cfd = sluice_kcache_open(dir, &why);
	KTAP_EXPECT(cfd >= 0, "%s: %s", dir, why);
	d = opendir("/boot");
	KTAP_EXPECT(d, "/boot: %s", strerror(errno));
	while ((fd = next_kernel_fd(d, path, sizeof(path), &off, &len, &init_end)) >= 0) {
		elf = tool_decompress(path, off, len, &tool_len);
		KTAP_EXPECT(elf && tool_len > 0x10000, "%s: the xz/zstd tool could not decompress it", path);
		for (i = 0; i < 7; i++) {
			/* 0: stored; 1, 2: from the cache, in place and copied; 3-5: damaged, stored again; 6: hit. */
			static const enum sluice_kernel_load want[] = {
				SLUICE_KERNEL_DECOMPRESSED_STORED, SLUICE_KERNEL_CACHED, SLUICE_KERNEL_CACHED,
				SLUICE_KERNEL_DECOMPRESSED_STORED, SLUICE_KERNEL_DECOMPRESSED_STORED,
				SLUICE_KERNEL_DECOMPRESSED_STORED, SLUICE_KERNEL_CACHED,
			};
			uint64_t min = i == 2 ? 0x1000000 : 0x100000;

			if (i >= 3 && i <= 5) {
				KTAP_EXPECT(cache_entry(dir, entry_path, sizeof(entry_path)), "%s: no entry", path);
				efd = open(entry_path, O_RDWR);
				KTAP_SYSCALL(efd);
				KTAP_SYSCALL(fstat(efd, &st));
				if (i == 3)		/* cut short */
					KTAP_SYSCALL(ftruncate(efd, st.st_size - 4096));
				else if (i == 4)	/* another payload's header (its key) */
					KTAP_EXPECT(pwrite(efd, "\xff", 1, 24) == 1, "pwrite");
				else			/* the header fits, the ELF is junk */
					KTAP_EXPECT(!memset(junk, 0x5a, sizeof(junk)) ||
						    pwrite(efd, junk, sizeof(junk), SLUICE_KCACHE_HDR) == sizeof(junk),
						    "pwrite");
				close(efd);
			}
			/* As in vmlinux_from_bzimage: the copy must overwrite stale RAM, in place starts zeroed. */
			memset(vm.ram, i == 2 ? 0xa5 : 0, init_end + (16 << 20));
			memset(vm.ram, 0, min);
			ret = sluice_vmlinux_load(&vm, fd, off, len, min, init_end, VM_RAM, cfd, &load, &entry, &end,
						  &why);
			KTAP_EXPECT(!ret, "%s, load %d: %s (%d)", path, i, why, ret);
			KTAP_EXPECT(load == want[i], "%s, load %d: %s, expected %s", path, i, sluice_kernel_load_name(load),
				    sluice_kernel_load_name(want[i]));
			bad = image_matches(vm.ram, elf, tool_len, min, init_end + (16 << 20));
			KTAP_EXPECT(!bad, "%s, load %d: %s", path, i, bad);
			KTAP_EXPECT(cache_entries(dir) == 1, "%s, load %d: %d entries", path, i, cache_entries(dir));
		}
		free(elf);
		close(fd);
		/* A plain boot of it: the whole path, with the directory named on the command line. */
		cfg.kernel = path;
		cfg.kernel_cache = dir;
		ret = sluice_boot_load(&vm, &cfg, err, sizeof(err));
		KTAP_EXPECT(!ret && vm.kernel_load == SLUICE_KERNEL_CACHED, "%s: boot: %s, %s", path, ret ? err : "",
			    sluice_kernel_load_name(vm.kernel_load));
		KTAP_EXPECT(cache_entry(dir, entry_path, sizeof(entry_path)) && !unlink(entry_path), "unlink");
		tried++;
	}
	closedir(d);

	/* Eviction: of 6 entries stored in turn (the 2nd used again), the 4 most recently used stay. */
	memset(junk, 0x11, sizeof(junk));
	for (i = 0; i < 6; i++) {
		struct timespec t[2] = { { .tv_sec = 1000000 + i }, { .tv_sec = 1000000 + i } };

		junk[0] = (uint8_t)i;
		sluice_kcache_key(junk, sizeof(junk), &key);
		KTAP_EXPECT(!sluice_kcache_store(cfd, &key, junk, 100 + i), "store %d", i);
		KTAP_EXPECT(cache_entry(dir, entry_path, sizeof(entry_path)), "entry");
		/* Distinct, ordered mtimes (stores within one second would tie). */
		{
			char name[64];

			snprintf(name, sizeof(name), "vmlinux-%016llx%016llx", (unsigned long long)key.h[0],
				 (unsigned long long)key.h[1]);
			KTAP_SYSCALL(utimensat(cfd, name, t, 0));
		}
		if (i == 3) {
			/* Entry 1 is used again: a hit makes it the most recent. */
			junk[0] = 1;
			sluice_kcache_key(junk, sizeof(junk), &key);
			efd = sluice_kcache_lookup(cfd, &key, &elf_len);
			KTAP_EXPECT(efd >= 0 && elf_len == 101, "lookup of entry 1");
			close(efd);
		}
	}
	KTAP_EXPECT(cache_entries(dir) == 4, "%d entries after 6 stores", cache_entries(dir));
	for (i = 0; i < 6; i++) {
		junk[0] = (uint8_t)i;
		sluice_kcache_key(junk, sizeof(junk), &key);
		efd = sluice_kcache_lookup(cfd, &key, &elf_len);
		KTAP_EXPECT((efd >= 0) == (i != 0 && i != 2), "entry %d %s", i, efd >= 0 ? "kept" : "evicted");
		if (efd >= 0)
			close(efd);
	}
	/* Keys: the length and every byte count. */
	{
		struct sluice_kcache_key a, b;

		sluice_kcache_key(junk, sizeof(junk), &a);
		junk[sizeof(junk) - 1] ^= 1;
		sluice_kcache_key(junk, sizeof(junk), &b);
		KTAP_EXPECT(a.h[0] != b.h[0] && a.h[1] != b.h[1], "the last byte does not change the key");
		sluice_kcache_key(junk, sizeof(junk) - 1, &b);
		KTAP_EXPECT(a.h[0] != b.h[0] && b.payload_len == sizeof(junk) - 1, "the length does not change the key");
	}
	close(cfd);

	/* A directory others may write to is refused, and so is a --kernel-cache that cannot be used. */
	KTAP_SYSCALL(chmod(dir, 0777));
	KTAP_EXPECT(sluice_kcache_open(dir, &why) == -EPERM, "a world-writable cache directory accepted");
	KTAP_SYSCALL(chmod(dir, 0700));
	if (tried) {
		cfg.kernel_cache = "/proc/sluice-no-such-dir";
		ret = sluice_boot_load(&vm, &cfg, err, sizeof(err));
		KTAP_EXPECT(ret < 0 && strstr(err, "--kernel-cache /proc/sluice-no-such-dir"),
			    "a cache directory that cannot be made: %d, '%s'", ret, ret ? err : "");
		ktap_diag("%s", err);
	}
	d = opendir(dir);
	KTAP_EXPECT(d, "opendir");
	{
		struct dirent *de;

		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
	KTAP_SYSCALL(rmdir(dir));
	munmap(vm.ram, VM_RAM);
	if (!tried)
		return KTAP_SKIP;	/* no kernel installed (make deps installs two) */
	return KTAP_PASS;
}

/*
 * A copy of the file @path in a new temporary file, with @len bytes at @off
 * XORed with 0x5a (nothing when @len is 0); its path in @tmp (unlink it), or -1.
 */
static int corrupt_copy(const char *path, uint64_t off, size_t len, char *tmp)
{
	uint8_t *buf = NULL;
	ssize_t n = -1;
	int fd, tfd;
	size_t i;
	off_t sz;

	strcpy(tmp, "/tmp/sluice-bzimage-XXXXXX");
	fd = open(path, O_RDONLY);
	tfd = mkstemp(tmp);
	if (fd < 0 || tfd < 0)
		goto out;
	sz = lseek(fd, 0, SEEK_END);
	buf = malloc(sz);
	if (!buf || pread(fd, buf, sz, 0) != sz || off + len > (uint64_t)sz)
		goto out;
	for (i = 0; i < len; i++)
		buf[off + i] ^= 0x5a;
	n = pwrite(tfd, buf, sz, 0) == sz ? 0 : -1;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	if (tfd >= 0)
		close(tfd);
	if (n && tfd >= 0)
		unlink(tmp);
	return n ? -1 : 0;
}

/*
 * A payload that parses (its ELF headers decompress) but is corrupt further
 * on: the VMM's decompressor fails after it read the ELF's entry, and the
 * boot falls back to the bzImage with the bzImage's 64-bit entry
 * (load address + 0x200), not the vmlinux's.
 */
static enum ktap_result vmlinux_corrupt_falls_back(void)
{
	struct sluice_vm vm = { .low_size = VM_RAM, .ram_size = VM_RAM };
	struct sluice_config cfg = { .kernel_cache = "off" };
	enum sluice_kernel_load load;
	uint64_t off, init_end, entry = 0, end;
	char path[512], tmp[32], err[256];
	struct setup_header h;
	const char *why;
	int tried = 0, fd, ret;
	uint32_t len;
	DIR *d;

	vm.ram = mmap(NULL, VM_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	KTAP_EXPECT(vm.ram != MAP_FAILED, "mmap");
	unsetenv("SLUICE_GUEST_DECOMPRESS");
	d = opendir("/boot");
	KTAP_EXPECT(d, "/boot: %s", strerror(errno));
	while (next_kernel(d, path, sizeof(path), &off, &len, &init_end)) {
		KTAP_EXPECT(!corrupt_copy(path, off + len / 2, 4096, tmp), "%s: copy", path);
		/* The loader itself: fails, and says nothing of an entry. */
		fd = open(tmp, O_RDONLY);
		KTAP_SYSCALL(fd);
		ret = sluice_vmlinux_load(&vm, fd, off, len, 0x100000, init_end, VM_RAM, -1, &load, &entry, &end,
					  &why);
		close(fd);
		KTAP_EXPECT(ret < 0, "%s: a corrupt payload loaded", path);
		KTAP_EXPECT(!entry, "%s: failed, yet set the entry to %#llx", path, (unsigned long long)entry);
		/* The whole boot: the bzImage's entry. */
		cfg.kernel = tmp;
		memset(vm.ram, 0, VM_RAM);
		ret = sluice_boot_load(&vm, &cfg, err, sizeof(err));
		KTAP_EXPECT(!ret, "%s: %s", path, err);
		memcpy(&h, vm.ram + 0x7000 + 0x1f1, sizeof(h));
		KTAP_EXPECT(vm.entry == h.code32_start + 0x200 && h.code32_start == h.pref_address,
			    "%s: entry %#llx, load address %#x", path, (unsigned long long)vm.entry, h.code32_start);
		unlink(tmp);
		ktap_diag("%s, corrupt: %s; entry %#llx", path, why, (unsigned long long)vm.entry);
		tried++;
	}
	closedir(d);
	munmap(vm.ram, VM_RAM);
	return tried ? KTAP_PASS : KTAP_SKIP;
}

/* Where kernels run: aligned up, never below pref_address (LOAD_PHYSICAL_ADDR). */
static enum ktap_result kernel_run_addr(void)
{
	make_image();
	hdr()->relocatable_kernel = 1;
	hdr()->kernel_alignment = 0x200000;
	hdr()->pref_address = 0x1000000;
	KTAP_EXPECT(sluice_kernel_run_addr(hdr(), 0x100000) == 0x1000000, "1 MiB");
	KTAP_EXPECT(sluice_kernel_run_addr(hdr(), 0x1000000) == 0x1000000, "16 MiB");
	KTAP_EXPECT(sluice_kernel_run_addr(hdr(), 0x1100000) == 0x1200000, "17 MiB, aligned up");
	hdr()->relocatable_kernel = 0;
	KTAP_EXPECT(sluice_kernel_run_addr(hdr(), 0x100000) == 0x1000000, "not relocatable");
	return KTAP_PASS;
}

/*
 * sluice_boot_load() of @kernel (and @initrd, or NULL) into a guest of @mem
 * bytes: its result, the reason in @err, the initrd's place in *@initrd_addr.
 */
static int boot_in(const char *kernel, const char *initrd, uint64_t mem, char *err, size_t errlen,
		   uint64_t *initrd_addr)
{
	struct sluice_vm vm = { .low_size = mem, .ram_size = mem };
	struct sluice_config cfg = { .kernel = kernel, .initrd = initrd, .kernel_cache = "off" };
	struct boot_params *bp;
	int ret;

	vm.ram = mmap(NULL, mem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm.ram == MAP_FAILED)
		return -ENOMEM;
	err[0] = 0;
	ret = sluice_boot_load(&vm, &cfg, err, errlen);
	bp = (struct boot_params *)(vm.ram + 0x7000);
	*initrd_addr = bp->hdr.ramdisk_image | (uint64_t)bp->ext_ramdisk_image << 32;
	munmap(vm.ram, mem);
	return ret;
}

/* A temporary file of @len bytes (@data, or zeroes); its path in @tmp. */
static int temp_file(const void *data, size_t len, char *tmp)
{
	int fd;

	strcpy(tmp, "/tmp/sluice-boot-XXXXXX");
	fd = mkstemp(tmp);
	if (fd < 0)
		return -1;
	if (data ? write(fd, data, len) != (ssize_t)len : ftruncate(fd, len)) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * A relocatable kernel that does not fit at pref_address still runs there
 * (its startup code decompresses to at least LOAD_PHYSICAL_ADDR): loading it
 * at 1 MiB instead is refused when [pref_address, + init_size) is not RAM,
 * and the initrd always goes above that area, or is refused.
 */
static enum ktap_result kernel_footprint_small_mem(void)
{
	char kpath[32], ipath[32], err[256];
	uint64_t initrd_addr;
	int ret;

	make_image();
	hdr()->relocatable_kernel = 1;
	hdr()->kernel_alignment = 0x200000;
	hdr()->pref_address = 0x1000000;
	hdr()->init_size = 0x800000;
	image[0x200] = 0xeb;	/* the jump over the header, which sizes it: up to 0x268 */
	image[0x201] = 0x66;
	KTAP_EXPECT(!temp_file(image, sizeof(image), kpath), "kernel file");
	KTAP_EXPECT(!temp_file(NULL, 4 << 20, ipath), "initrd file");
	setenv("SLUICE_GUEST_DECOMPRESS", "1", 1);

	ret = boot_in(kpath, NULL, 20 << 20, err, sizeof(err), &initrd_addr);
	KTAP_EXPECT(ret == -ENOMEM && strstr(err, "needs guest RAM up to 0x1800000") && !strchr(err, '\n'),
		    "20 MiB: %d '%s'", ret, err);
	ret = boot_in(kpath, NULL, 24 << 20, err, sizeof(err), &initrd_addr);
	KTAP_EXPECT(!ret, "24 MiB, no initrd: %s", err);
	ret = boot_in(kpath, ipath, 28 << 20, err, sizeof(err), &initrd_addr);
	KTAP_EXPECT(!ret && initrd_addr == 24 << 20, "28 MiB: %d '%s' initrd at %#llx", ret, err,
		    (unsigned long long)initrd_addr);
	ret = boot_in(kpath, ipath, (27 << 20) + 0x800, err, sizeof(err), &initrd_addr);
	KTAP_EXPECT(ret == -ENOMEM && strstr(err, "does not fit"), "27 MiB: %d '%s' initrd at %#llx", ret, err,
		    (unsigned long long)initrd_addr);

	/* The installed kernels: refused just below their footprint, the initrd above it otherwise. */
	{
		uint64_t off, init_end, mem;
		char path[512];
		uint32_t len;
		DIR *d = opendir("/boot");

		while (d && next_kernel(d, path, sizeof(path), &off, &len, &init_end)) {
			mem = init_end & ~0xfffffULL;
			ret = boot_in(path, NULL, mem, err, sizeof(err), &initrd_addr);
			KTAP_EXPECT(ret == -ENOMEM && strstr(err, "needs guest RAM"), "%s in %llu MiB: %d '%s'", path,
				    (unsigned long long)(mem >> 20), ret, err);
			mem += 6 << 20;
			ret = boot_in(path, ipath, mem, err, sizeof(err), &initrd_addr);
			KTAP_EXPECT(!ret && initrd_addr >= init_end && initrd_addr + (4 << 20) <= mem,
				    "%s in %llu MiB: %d '%s', initrd at %#llx, kernel up to %#llx", path,
				    (unsigned long long)(mem >> 20), ret, err, (unsigned long long)initrd_addr,
				    (unsigned long long)init_end);
			ret = boot_in(path, ipath, 72 << 20, err, sizeof(err), &initrd_addr);
			KTAP_EXPECT(ret || initrd_addr >= init_end, "%s in 72 MiB: initrd at %#llx inside the kernel",
				    path, (unsigned long long)initrd_addr);
			ktap_diag("%s, 72 MiB + 4 MiB initrd: %s", path, ret ? err : "fits");
		}
		if (d)
			closedir(d);
	}
	unsetenv("SLUICE_GUEST_DECOMPRESS");
	unlink(kpath);
	unlink(ipath);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(bzimage_accepted), KTAP_CASE(bzimage_refused), KTAP_CASE(ram_split),
	  KTAP_CASE(e820_low_only), KTAP_CASE(e820_pci_hole), KTAP_CASE(vmlinux_from_bzimage),
	  KTAP_CASE(vmlinux_corrupt_falls_back), KTAP_CASE(vmlinux_cache), KTAP_CASE(kernel_run_addr), KTAP_CASE(kernel_footprint_small_mem))
