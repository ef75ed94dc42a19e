// SPDX-License-Identifier: GPL-2.0
/* ioport.c - port I/O and MMIO exits: the serial port, the reset paths and the legacy ports Linux probes. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pci.h"
#include "vmm.h"

#define PORT_KBD_DATA		0x60
#define PORT_KBD_STATUS		0x64
#define PORT_CMOS_INDEX		0x70
#define PORT_CMOS_DATA		0x71
#define PORT_POST		0x80
#define PORT_SYSCTRL_A		0x92
#define PORT_PCI_ADDR		0xcf8
#define PORT_PCI_RESET		0xcf9
#define PORT_PCI_DATA		0xcfc
#define PORT_SERIAL		0x3f8

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* A read-only MC146818 RTC/CMOS: the host's UTC time in BCD, 24-hour mode, never updating. */
static uint8_t cmos_read(uint8_t index)
{
	struct tm tm;
	time_t now = time(NULL);

	gmtime_r(&now, &tm);
	switch (index) {
	case 0x00: return bcd(tm.tm_sec);
	case 0x02: return bcd(tm.tm_min);
	case 0x04: return bcd(tm.tm_hour);
	case 0x06: return bcd(tm.tm_wday + 1);
	case 0x07: return bcd(tm.tm_mday);
	case 0x08: return bcd(tm.tm_mon + 1);
	case 0x09: return bcd(tm.tm_year % 100);
	case 0x32: return bcd(19 + tm.tm_year / 100);
	case 0x0a: return 0x26;		/* 32.768 kHz, 1024 Hz; no update in progress */
	case 0x0b: return 0x02;		/* 24-hour, BCD, no interrupts */
	case 0x0c: return 0x00;
	case 0x0d: return 0x80;		/* battery good */
	default: return 0x00;
	}
}

/*
 * One access of @size bytes to @port; @data holds the value written or receives the
 * value read.  vCPU threads.
 */
static void port_access(struct sluice_vcpu *vcpu, uint16_t port, bool is_write, uint8_t *data,
			unsigned int size)
{
	struct sluice_vm *vm = vcpu->vm;

	if (port >= PORT_SERIAL && port < PORT_SERIAL + 8 && size == 1) {
		sluice_serial_io(vm, port, is_write, data);
		return;
	}
	if ((port == PORT_KBD_DATA || port == PORT_KBD_STATUS) && size == 1) {
		sluice_i8042_io(vm, port, is_write, data);	/* i8042.c; 0xfe at 0x64 resets */
		return;
	}
	if (port == PORT_SYSCTRL_A) {
		if (!is_write)
			*data = 0x02;		/* A20 enabled */
		else if (*data & 1)
			sluice_vm_request_exit(vm, 0, "guest reset (port 0x92)");
		return;
	}
	if (port == PORT_PCI_RESET && size == 1) {
		if (!is_write)
			*data = 0;
		else if (*data & 0x04)
			sluice_vm_request_exit(vm, 0, "guest reset (port 0xcf9)");
		return;
	}
	if (port >= PORT_PCI_ADDR && port + size <= PORT_PCI_DATA + 4 && vm->pci) {
		/* Configuration mechanism #1 (pci.c). */
		sluice_pci_port_io(vm, port, is_write, data, size);
		return;
	}
	if (port == PORT_CMOS_INDEX) {
		if (is_write)
			vm->cmos_index = *data & 0x7f;
		else
			*data = 0xff;
		return;
	}
	if (port == PORT_CMOS_DATA) {
		if (!is_write)
			*data = cmos_read(vm->cmos_index);
		return;
	}
	/* The POST port, PCI data (no devices), absent devices: reads float high, writes vanish. */
	if (!is_write)
		memset(data, 0xff, size);
}

/* KVM_EXIT_IO: every repetition of a (possibly string) port access. vCPU threads. */
void sluice_ioport_exit(struct sluice_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint32_t i;

	for (i = 0; i < run->io.count; i++) {
		port_access(vcpu, run->io.port, run->io.direction == KVM_EXIT_IO_OUT, data, run->io.size);
		data += run->io.size;
	}
}

/* KVM_EXIT_MMIO: PCI BARs; elsewhere reads return all ones and writes are dropped. vCPU threads. */
void sluice_mmio_exit(struct sluice_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	if (run->mmio.len <= sizeof(run->mmio.data) &&
	    sluice_pci_mmio(vcpu->vm, run->mmio.phys_addr, run->mmio.is_write, run->mmio.data, run->mmio.len))
		return;
	if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
}
