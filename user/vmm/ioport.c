// SPDX-License-Identifier: GPL-2.0
/* ioport.c - port I/O and MMIO exits: the serial port, the reset paths and the legacy ports Linux probes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

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
	/* A device's I/O BAR (pci.c); notify writes land here only when no ioeventfd caught them. */
	if (sluice_pci_pio(vm, port, is_write, data, size))
		return;
	/* The POST port, PCI data (no devices), absent devices: reads float high, writes vanish. */
	if (!is_write)
		memset(data, 0xff, size);
}

/*
 * Main thread, after the vCPUs exist (the ring is a page of their mapping).  Let
 * KVM queue writes to the PCI address port 0xcf8-0xcfb instead of exiting:
 * configuration mechanism #1 is an address write and a data access, and only
 * the data access needs an answer, so every config access costs one exit, not
 * two (Linux scans all 256 buses this way on AMD family 0Fh-15h for a GART).
 * The queued writes take effect before the next exit any vCPU handles; that
 * holds for the reset byte at 0xcf9 too, which Linux always follows with an
 * access that exits.  0, or -errno when KVM cannot (then every write exits).
 */
int sluice_ioport_coalesce(struct sluice_vm *vm)
{
	struct kvm_coalesced_mmio_zone zone = { .addr = PORT_PCI_ADDR, .size = 4, .pio = 1 };
	long page = sysconf(_SC_PAGESIZE);
	int off;

	off = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	if (off <= 0 || ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0 || !vm->nr_cpus ||
	    (off + 1) * page > vm->vcpu_mmap_size)
		return -EOPNOTSUPP;
	if (ioctl(vm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &zone) < 0)
		return -errno;
	pthread_mutex_init(&vm->coalesced_lock, NULL);
	vm->coalesced_max = (page - sizeof(struct kvm_coalesced_mmio_ring)) / sizeof(struct kvm_coalesced_mmio);
	vm->coalesced = (struct kvm_coalesced_mmio_ring *)((uint8_t *)vm->vcpus[0].run + off * page);
	return 0;
}

/*
 * vCPU threads, before handling an exit: apply the port writes KVM queued, in
 * the order the guest made them.  Takes coalesced_lock.
 */
void sluice_ioport_flush(struct sluice_vcpu *vcpu)
{
	struct kvm_coalesced_mmio_ring *ring = vcpu->vm->coalesced;
	struct kvm_coalesced_mmio *e;
	uint32_t first;

	if (!ring || __atomic_load_n(&ring->first, __ATOMIC_RELAXED) == __atomic_load_n(&ring->last, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&vcpu->vm->coalesced_lock);
	first = ring->first;
	/* The entry before the index; pairs with the smp_wmb() before KVM advances ring->last. */
	while (first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) {
		if (first >= vcpu->vm->coalesced_max)
			break;		/* not KVM's doing: leave the ring alone */
		e = &ring->coalesced_mmio[first];
		if (e->pio && e->len && e->len <= sizeof(e->data))
			port_access(vcpu, (uint16_t)e->phys_addr, true, e->data, e->len);
		first = (first + 1) % vcpu->vm->coalesced_max;
		/* Done with the entry before KVM may reuse it; pairs with its read of first under its lock. */
		__atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vcpu->vm->coalesced_lock);
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
