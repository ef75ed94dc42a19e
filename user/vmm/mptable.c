// SPDX-License-Identifier: GPL-2.0
/* mptable.c - the Intel MultiProcessor Specification 1.4 tables: CPUs, the ISA bus, the IOAPIC and its interrupts. */
#include <errno.h>
#include <string.h>

#include "vmm.h"

/* The structures, as laid out by the MP specification 1.4, chapter 4. */
struct mp_floating {
	char signature[4];		/* "_MP_" */
	uint32_t config_addr;
	uint8_t length;			/* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mp_config {
	char signature[4];		/* "PCMP" */
	uint16_t base_length;
	uint8_t spec_rev;
	uint8_t checksum;
	char oem_id[8];
	char product_id[12];
	uint32_t oem_table;
	uint16_t oem_table_size;
	uint16_t entry_count;
	uint32_t lapic_addr;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mp_processor {
	uint8_t type;			/* 0 */
	uint8_t lapic_id;
	uint8_t lapic_version;
	uint8_t flags;
	uint32_t signature;
	uint32_t features;
	uint32_t reserved[2];
} __attribute__((packed));

struct mp_bus {
	uint8_t type;			/* 1 */
	uint8_t bus_id;
	char bus_type[6];
} __attribute__((packed));

struct mp_ioapic {
	uint8_t type;			/* 2 */
	uint8_t id;
	uint8_t version;
	uint8_t flags;
	uint32_t addr;
} __attribute__((packed));

struct mp_intsrc {
	uint8_t type;			/* 3: I/O interrupt, 4: local interrupt */
	uint8_t irq_type;
	uint16_t flags;
	uint8_t src_bus;
	uint8_t src_irq;
	uint8_t dst_apic;
	uint8_t dst_pin;
} __attribute__((packed));

#define MP_PROCESSOR		0
#define MP_BUS			1
#define MP_IOAPIC		2
#define MP_IOINTSRC		3
#define MP_LINTSRC		4
#define MP_INT			0
#define MP_NMI			1
#define MP_EXTINT		3
#define MP_CPU_ENABLED		1
#define MP_CPU_BSP		2
#define LAPIC_VERSION		0x14
#define IOAPIC_VERSION		0x11
#define ISA_BUS_ID		0

static uint8_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return -sum;
}

static void cpu_signature(struct sluice_vm *vm, uint32_t *eax, uint32_t *edx)
{
	uint32_t i;

	*eax = 0x600;
	*edx = 0x201;		/* FPU, APIC */
	for (i = 0; i < vm->cpuid->nent; i++) {
		if (vm->cpuid->entries[i].function == 1) {
			*eax = vm->cpuid->entries[i].eax;
			*edx = vm->cpuid->entries[i].edx;
		}
	}
}

/*
 * Write the MP floating pointer and configuration table at SLUICE_MPTABLE_ADDR (the BIOS
 * area the kernel scans): one processor entry per vCPU (APIC id = vCPU index), the ISA
 * bus, the IOAPIC (id = nr_cpus) with ISA IRQs 0-15 on the same pins (KVM's default GSI
 * routing; 2 is the cascade) and LINT0/LINT1 as ExtINT/NMI.  Main thread.
 */
int sluice_mptable_write(struct sluice_vm *vm)
{
	const size_t room = 0x10000;
	struct mp_floating *mpf;
	struct mp_config *mpc;
	uint32_t sig, features;
	unsigned int i, entries = 0;
	uint8_t *base, *p;
	uint8_t ioapic_id = vm->nr_cpus;

	base = sluice_gpa_to_hva(vm, SLUICE_MPTABLE_ADDR, room);
	if (!base)
		return -ENOMEM;
	memset(base, 0, room);
	mpf = (struct mp_floating *)base;
	mpc = (struct mp_config *)(base + 16);
	p = (uint8_t *)(mpc + 1);
	cpu_signature(vm, &sig, &features);

	for (i = 0; i < vm->nr_cpus; i++) {
		struct mp_processor *cpu = (struct mp_processor *)p;

		cpu->type = MP_PROCESSOR;
		cpu->lapic_id = i;
		cpu->lapic_version = LAPIC_VERSION;
		cpu->flags = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0);
		cpu->signature = sig;
		cpu->features = features;
		p += sizeof(*cpu);
		entries++;
	}

	{
		struct mp_bus *bus = (struct mp_bus *)p;

		bus->type = MP_BUS;
		bus->bus_id = ISA_BUS_ID;
		memcpy(bus->bus_type, "ISA   ", 6);
		p += sizeof(*bus);
		entries++;
	}
	{
		struct mp_ioapic *ioapic = (struct mp_ioapic *)p;

		ioapic->type = MP_IOAPIC;
		ioapic->id = ioapic_id;
		ioapic->version = IOAPIC_VERSION;
		ioapic->flags = 1;
		ioapic->addr = SLUICE_IOAPIC_ADDR;
		p += sizeof(*ioapic);
		entries++;
	}
	for (i = 0; i < 16; i++) {
		struct mp_intsrc *src = (struct mp_intsrc *)p;

		if (i == 2)
			continue;
		src->type = MP_IOINTSRC;
		src->irq_type = MP_INT;
		src->flags = 0;		/* conforming: edge, active high for ISA */
		src->src_bus = ISA_BUS_ID;
		src->src_irq = i;
		src->dst_apic = ioapic_id;
		src->dst_pin = i;
		p += sizeof(*src);
		entries++;
	}
	for (i = 0; i < 2; i++) {
		struct mp_intsrc *lint = (struct mp_intsrc *)p;

		lint->type = MP_LINTSRC;
		lint->irq_type = i == 0 ? MP_EXTINT : MP_NMI;
		lint->flags = 0;
		lint->src_bus = ISA_BUS_ID;
		lint->src_irq = 0;
		lint->dst_apic = 0xff;	/* every local APIC */
		lint->dst_pin = i;
		p += sizeof(*lint);
		entries++;
	}

	memcpy(mpc->signature, "PCMP", 4);
	mpc->base_length = p - (uint8_t *)mpc;
	mpc->spec_rev = 4;
	memcpy(mpc->oem_id, "SLUICE  ", 8);
	memcpy(mpc->product_id, "SLUICE VMM  ", 12);
	mpc->entry_count = entries;
	mpc->lapic_addr = SLUICE_LAPIC_ADDR;
	mpc->checksum = checksum(mpc, mpc->base_length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->config_addr = SLUICE_MPTABLE_ADDR + 16;
	mpf->length = 1;
	mpf->spec_rev = 4;
	mpf->checksum = checksum(mpf, sizeof(*mpf));
	return 0;
}
