// SPDX-License-Identifier: GPL-2.0
/* pci.c - PCI bus 0: host bridge at 00.0, configuration mechanism #1 (0xcf8/0xcfc), BAR sizing and placement, MMIO and port dispatch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "pci.h"
#include "vmm.h"

#define PORT_PCI_ADDR	0xcf8
#define PORT_PCI_DATA	0xcfc
#define CONF1_ENABLE	0x80000000u

static void put_le(uint8_t *p, unsigned int len, uint32_t v)
{
	unsigned int i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le(const uint8_t *p, unsigned int len)
{
	uint32_t v = 0;
	unsigned int i;

	for (i = 0; i < len; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

/* Any thread, build time or bus lock held. */
void sluice_pci_set_wmask(struct sluice_pci_dev *dev, unsigned int off, unsigned int len, uint32_t mask)
{
	put_le(dev->wmask + off, len, mask);
}

/* Main thread, before the vCPUs run: the fixed part of a type 0 header. */
static void header_init(struct sluice_pci_dev *dev, uint16_t vendor, uint16_t device, uint32_t class_code,
			uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(dev->cfg, 0, sizeof(dev->cfg));
	memset(dev->wmask, 0, sizeof(dev->wmask));
	put_le(dev->cfg + PCI_VENDOR_ID, 2, vendor);
	put_le(dev->cfg + PCI_DEVICE_ID, 2, device);
	/* Memory decoding on, as firmware would leave it; the guest may turn it off and on. */
	put_le(dev->cfg + PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	sluice_pci_set_wmask(dev, PCI_COMMAND, 2,
			     PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	put_le(dev->cfg + PCI_CLASS_REVISION, 4, class_code << 8 | 0x01);
	dev->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	put_le(dev->cfg + PCI_SUBSYSTEM_VENDOR_ID, 2, subsys_vendor);
	put_le(dev->cfg + PCI_SUBSYSTEM_ID, 2, subsys_id);
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	dev->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	dev->wmask[PCI_LATENCY_TIMER] = 0xff;
	dev->next_cap = 0x40;
}

/* Main thread. */
int sluice_pci_init(struct sluice_vm *vm)
{
	struct sluice_pci_bus *bus = calloc(1, sizeof(*bus));

	if (!bus)
		return -ENOMEM;
	pthread_mutex_init(&bus->lock, NULL);
	bus->vm = vm;
	bus->mmio_next = SLUICE_PCI_MMIO_START;
	bus->io_next = SLUICE_PCI_IO_START;
	vm->pci = bus;
	/* The host bridge: class 06.00 makes Linux's conf1 sanity check accept the bus. */
	return sluice_pci_dev_init(vm, &bus->host_bridge, 0x8086, 0x0d57, 0x060000, 0, 0);
}

/* Main thread, after the vCPUs stopped. */
void sluice_pci_exit(struct sluice_vm *vm)
{
	if (!vm->pci)
		return;
	pthread_mutex_destroy(&vm->pci->lock);
	free(vm->pci);
	vm->pci = NULL;
}

/* Main thread, before the vCPUs run. */
int sluice_pci_dev_init(struct sluice_vm *vm, struct sluice_pci_dev *dev, uint16_t vendor, uint16_t device,
			uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id)
{
	struct sluice_pci_bus *bus = vm->pci;
	unsigned int slot;

	for (slot = 0; slot < SLUICE_PCI_MAX_DEVS; slot++)
		if (!bus->devs[slot])
			break;
	if (slot == SLUICE_PCI_MAX_DEVS)
		return -ENOSPC;
	header_init(dev, vendor, device, class_code, subsys_vendor, subsys_id);
	dev->bus = bus;
	dev->slot = slot;
	bus->devs[slot] = dev;
	return 0;
}

/* Main thread, before the vCPUs run. */
int sluice_pci_dev_add_bar(struct sluice_pci_dev *dev, unsigned int bar, uint32_t size)
{
	struct sluice_pci_bus *bus = dev->bus;
	uint64_t addr;

	if (bar >= SLUICE_PCI_NR_BARS || size < 4096 || (size & (size - 1)))
		return -EINVAL;
	addr = (bus->mmio_next + size - 1) & ~(uint64_t)(size - 1);
	if (addr + size > SLUICE_PCI_MMIO_END)
		return -ENOSPC;
	bus->mmio_next = addr + size;
	dev->bar_size[bar] = size;
	dev->bar_addr[bar] = addr;
	put_le(dev->cfg + PCI_BASE_ADDRESS_0 + 4 * bar, 4, (uint32_t)addr | PCI_BASE_ADDRESS_MEM_TYPE_32);
	sluice_pci_set_wmask(dev, PCI_BASE_ADDRESS_0 + 4 * bar, 4, ~(size - 1));
	return 0;
}

/*
 * Main thread, before the vCPUs run.  Port decoding is turned on with it, as
 * firmware leaves a device whose I/O BAR it assigned.  The upper 16 bits of
 * the BAR are hardwired to 0: x86 ports are 16-bit.
 */
int sluice_pci_dev_add_io_bar(struct sluice_pci_dev *dev, unsigned int bar, uint32_t size)
{
	struct sluice_pci_bus *bus = dev->bus;
	uint32_t addr;

	if (bar >= SLUICE_PCI_NR_BARS || size < 4 || size > 256 || (size & (size - 1)))
		return -EINVAL;
	addr = (bus->io_next + size - 1) & ~(size - 1);
	if (addr + size > SLUICE_PCI_IO_END)
		return -ENOSPC;
	bus->io_next = addr + size;
	dev->bar_size[bar] = size;
	dev->bar_addr[bar] = addr;
	dev->bar_io |= 1u << bar;
	put_le(dev->cfg + PCI_BASE_ADDRESS_0 + 4 * bar, 4, addr | PCI_BASE_ADDRESS_SPACE_IO);
	sluice_pci_set_wmask(dev, PCI_BASE_ADDRESS_0 + 4 * bar, 4, ~(size - 1) & 0xffff);
	put_le(dev->cfg + PCI_COMMAND, 2, get_le(dev->cfg + PCI_COMMAND, 2) | PCI_COMMAND_IO);
	return 0;
}

/* Main thread, before the vCPUs run. */
int sluice_pci_dev_add_cap(struct sluice_pci_dev *dev, const void *data, unsigned int len)
{
	unsigned int off = dev->next_cap;
	uint8_t *p;

	len = (len + 3) & ~3u;
	if (off + len > 256)
		return -ENOSPC;
	memcpy(dev->cfg + off, data, len);
	/* Link: the new capability goes at the end of the list. */
	if (!dev->cfg[PCI_CAPABILITY_LIST]) {
		dev->cfg[PCI_CAPABILITY_LIST] = off;
	} else {
		p = dev->cfg + dev->cfg[PCI_CAPABILITY_LIST];
		while (p[PCI_CAP_LIST_NEXT])
			p = dev->cfg + p[PCI_CAP_LIST_NEXT];
		p[PCI_CAP_LIST_NEXT] = off;
	}
	dev->cfg[off + PCI_CAP_LIST_NEXT] = 0;
	put_le(dev->cfg + PCI_STATUS, 2, get_le(dev->cfg + PCI_STATUS, 2) | PCI_STATUS_CAP_LIST);
	dev->next_cap = off + len;
	return off;
}

/* Any thread; takes the bus lock. */
uint32_t sluice_pci_cfg_read(struct sluice_pci_dev *dev, unsigned int off, unsigned int len)
{
	uint32_t v;

	pthread_mutex_lock(&dev->bus->lock);
	v = get_le(dev->cfg + off, len);
	pthread_mutex_unlock(&dev->bus->lock);
	return v;
}

/*
 * vCPU thread, bus lock held: a config write through the writable mask.  BARs
 * that changed address are reported in @moved (old address in @old).
 */
static void cfg_write(struct sluice_pci_dev *dev, unsigned int off, const uint8_t *data, unsigned int len,
		      bool *moved, uint64_t *old)
{
	unsigned int i, bar;

	for (i = 0; i < len; i++)
		dev->cfg[off + i] = (dev->cfg[off + i] & ~dev->wmask[off + i]) | (data[i] & dev->wmask[off + i]);
	for (bar = 0; bar < SLUICE_PCI_NR_BARS; bar++) {
		uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * bar, v, size = dev->bar_size[bar], mask;

		if (!size || off + len <= reg || off >= reg + 4)
			continue;
		mask = dev->bar_io & (1u << bar) ? (uint32_t)PCI_BASE_ADDRESS_IO_MASK & 0xffff :
						   (uint32_t)PCI_BASE_ADDRESS_MEM_MASK;
		v = get_le(dev->cfg + reg, 4) & mask;
		/* All ones (sizing) is not an address. */
		if (v == (~(size - 1) & mask) || v == 0 || v == dev->bar_addr[bar])
			continue;
		old[bar] = dev->bar_addr[bar];
		dev->bar_addr[bar] = v;
		moved[bar] = true;
	}
}

/* vCPU threads: one access to 0xcf8-0xcff.  Takes the bus lock; device callbacks run after it is dropped. */
void sluice_pci_port_io(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data, unsigned int size)
{
	struct sluice_pci_bus *bus = vm->pci;
	bool moved[SLUICE_PCI_NR_BARS] = { false };
	uint64_t old[SLUICE_PCI_NR_BARS];
	struct sluice_pci_dev *dev = NULL;
	unsigned int off = 0, bar;

	pthread_mutex_lock(&bus->lock);
	if (port == PORT_PCI_ADDR && size == 4) {
		if (is_write)
			bus->addr = get_le(data, 4);
		else
			put_le(data, 4, bus->addr);
		goto out_unlock;
	}
	if (port < PORT_PCI_DATA) {
		/* 0xcf9 is handled by the caller; other bytes of the address port float high. */
		if (!is_write)
			memset(data, 0xff, size);
		goto out_unlock;
	}
	off = (bus->addr & 0xfc) + (port - PORT_PCI_DATA);
	/* Bus 0, function 0 only; offsets beyond 256 do not exist with conf1. */
	if ((bus->addr & CONF1_ENABLE) && !((bus->addr >> 16) & 0xff) && !((bus->addr >> 8) & 7) &&
	    off + size <= 256)
		dev = bus->devs[(bus->addr >> 11) & 0x1f];
	if (!dev) {
		if (!is_write)
			memset(data, 0xff, size);
		goto out_unlock;
	}
	if (!is_write) {
		memcpy(data, dev->cfg + off, size);
		goto out_unlock;
	}
	cfg_write(dev, off, data, size, moved, old);
	pthread_mutex_unlock(&bus->lock);
	if (dev->ops && dev->ops->config_written)
		dev->ops->config_written(dev, off, size);
	for (bar = 0; bar < SLUICE_PCI_NR_BARS; bar++)
		if (moved[bar] && dev->ops && dev->ops->bar_moved)
			dev->ops->bar_moved(dev, bar, old[bar], dev->bar_addr[bar]);
	return;

out_unlock:
	pthread_mutex_unlock(&bus->lock);
}

/*
 * vCPU threads: hand an access of @len bytes at @addr to the BAR of the
 * given kind (memory or I/O) that contains it; false when none does.
 */
static bool bar_dispatch(struct sluice_pci_bus *bus, bool io, uint64_t addr, bool is_write, uint8_t *data,
			 unsigned int len)
{
	struct sluice_pci_dev *dev;
	unsigned int slot, bar;
	uint64_t base;

	for (slot = 0; slot < SLUICE_PCI_MAX_DEVS; slot++) {
		dev = bus->devs[slot];
		if (!dev || !dev->ops || !dev->ops->bar_access)
			continue;
		for (bar = 0; bar < SLUICE_PCI_NR_BARS; bar++) {
			if (!dev->bar_size[bar] || !(dev->bar_io & (1u << bar)) != !io)
				continue;
			base = __atomic_load_n(&dev->bar_addr[bar], __ATOMIC_ACQUIRE);
			if (addr < base || addr + len > base + dev->bar_size[bar])
				continue;
			dev->ops->bar_access(dev, bar, addr - base, is_write, data, len);
			return true;
		}
	}
	return false;
}

/* vCPU threads: dispatch an MMIO exit to the memory BAR that contains it; false when none does. */
bool sluice_pci_mmio(struct sluice_vm *vm, uint64_t addr, bool is_write, uint8_t *data, unsigned int len)
{
	struct sluice_pci_bus *bus = vm->pci;

	if (!bus || addr < SLUICE_PCI_MMIO_START || addr >= SLUICE_PCI_MMIO_END)
		return false;
	return bar_dispatch(bus, false, addr, is_write, data, len);
}

/* vCPU threads: dispatch a port I/O exit to the I/O BAR that contains it; false when none does. */
bool sluice_pci_pio(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data, unsigned int len)
{
	struct sluice_pci_bus *bus = vm->pci;

	if (!bus || port < SLUICE_PCI_IO_START)
		return false;
	return bar_dispatch(bus, true, port, is_write, data, len);
}
