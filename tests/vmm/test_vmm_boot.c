// SPDX-License-Identifier: GPL-2.0
/* test_vmm_boot.c - unit tests of the VMM's boot path without KVM: bzImage header checks, RAM split and e820 map. */
#include <stdint.h>
#include <string.h>

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

KTAP_MAIN(KTAP_CASE(bzimage_accepted), KTAP_CASE(bzimage_refused), KTAP_CASE(ram_split),
	  KTAP_CASE(e820_low_only), KTAP_CASE(e820_pci_hole))
