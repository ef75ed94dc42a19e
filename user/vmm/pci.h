/* SPDX-License-Identifier: GPL-2.0 */
/* pci.h - PCI bus 0: the host bridge, configuration mechanism #1, BARs in the PCI hole and the I/O window, BAR dispatch. */
#ifndef SLUICE_PCI_H
#define SLUICE_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct sluice_vm;
struct sluice_pci_dev;

#define SLUICE_PCI_MAX_DEVS	32
#define SLUICE_PCI_NR_BARS	6

/* A device's callbacks.  vCPU threads, without the bus lock held. */
struct sluice_pci_dev_ops {
	/* An access of @len bytes at @off inside BAR @bar (memory or I/O). */
	void (*bar_access)(struct sluice_pci_dev *dev, unsigned int bar, uint64_t off, bool is_write,
			   uint8_t *data, unsigned int len);
	/* After a config space write of @len bytes at @off (the new value is in dev->cfg). */
	void (*config_written)(struct sluice_pci_dev *dev, unsigned int off, unsigned int len);
	/* BAR @bar now decodes at @addr (or stopped decoding: @addr 0). */
	void (*bar_moved)(struct sluice_pci_dev *dev, unsigned int bar, uint64_t old_addr, uint64_t addr);
};

/*
 * A function on bus 0.  cfg/wmask are under the bus lock; the device reads
 * its own capability fields from cfg under that lock (sluice_pci_cfg_read).
 */
struct sluice_pci_dev {
	struct sluice_pci_bus *bus;
	const struct sluice_pci_dev_ops *ops;
	void *opaque;
	unsigned int slot;
	uint8_t cfg[256];
	uint8_t wmask[256];		/* writable bits of cfg */
	uint32_t bar_size[SLUICE_PCI_NR_BARS];
	uint64_t bar_addr[SLUICE_PCI_NR_BARS];	/* decoding address (0: not decoding) */
	uint8_t bar_io;			/* bit n: BAR n is an I/O BAR (port addresses) */
	uint8_t next_cap;		/* where the next capability goes (build time) */
};

struct sluice_pci_bus {
	struct sluice_vm *vm;
	pthread_mutex_t lock;
	uint32_t addr;			/* 0xcf8 */
	struct sluice_pci_dev *devs[SLUICE_PCI_MAX_DEVS];
	struct sluice_pci_dev host_bridge;
	uint64_t mmio_next;		/* BAR allocator in [SLUICE_PCI_MMIO_START, END) */
	uint32_t io_next;		/* I/O BAR allocator in [SLUICE_PCI_IO_START, END) */
};

/* Main thread, before the vCPUs start. */
int sluice_pci_init(struct sluice_vm *vm);
void sluice_pci_exit(struct sluice_vm *vm);
/* Fill the header of @dev (type 0) and put it in the first free slot. */
int sluice_pci_dev_init(struct sluice_vm *vm, struct sluice_pci_dev *dev, uint16_t vendor, uint16_t device,
			uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id);
/* A 32-bit memory BAR of @size bytes (a power of 2 >= 4 KiB), placed in the PCI MMIO window. */
int sluice_pci_dev_add_bar(struct sluice_pci_dev *dev, unsigned int bar, uint32_t size);
/* An I/O BAR of @size ports (a power of 2 from 4 to 256), placed in the PCI I/O window. */
int sluice_pci_dev_add_io_bar(struct sluice_pci_dev *dev, unsigned int bar, uint32_t size);
/* Append a capability of @len bytes (@data[0] is its id); returns its offset or -ENOSPC. */
int sluice_pci_dev_add_cap(struct sluice_pci_dev *dev, const void *data, unsigned int len);
/* Make @len bytes at @off guest-writable with mask @mask (little-endian, up to 4 bytes). */
void sluice_pci_set_wmask(struct sluice_pci_dev *dev, unsigned int off, unsigned int len, uint32_t mask);
/* Any thread: read @len bytes of @dev's config space at @off (takes the bus lock). */
uint32_t sluice_pci_cfg_read(struct sluice_pci_dev *dev, unsigned int off, unsigned int len);

/*
 * vCPU threads: port I/O to 0xcf8-0xcff; MMIO inside a memory BAR; port I/O
 * inside an I/O BAR.  The BAR ones return false when no BAR matches.
 */
void sluice_pci_port_io(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data, unsigned int size);
bool sluice_pci_mmio(struct sluice_vm *vm, uint64_t addr, bool is_write, uint8_t *data, unsigned int len);
bool sluice_pci_pio(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data, unsigned int len);

#endif /* SLUICE_PCI_H */
