/* SPDX-License-Identifier: GPL-2.0 */
/* virtio-pci.h - the virtio 1.x PCI transport (modern only): capabilities, common config, MSI-X, ioeventfd notify (MMIO or port). */
#ifndef SLUICE_VIRTIO_PCI_H
#define SLUICE_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

struct sluice_vm;
struct sluice_virtio_pci;

#define SLUICE_VIRTIO_MAX_QUEUES	16
#define SLUICE_VIRTIO_NO_VECTOR		0xffff

/*
 * Where the driver kicks a queue: the notify capability it finds first.
 * MMIO: one address per queue in BAR 0.  PIO: one port in I/O BAR 1 for all
 * queues, the queue index as the value written (QEMU's modern-pio-notify).
 * A port write exits with its port and value decoded by the CPU; an MMIO
 * write without KVM's fast MMIO path (which only VMX has) goes through its
 * instruction emulator.  AUTO picks PIO on AMD/Hygon hosts, MMIO elsewhere.
 */
enum sluice_virtio_notify {
	SLUICE_VIRTIO_NOTIFY_AUTO,
	SLUICE_VIRTIO_NOTIFY_MMIO,
	SLUICE_VIRTIO_NOTIFY_PIO,
};

/*
 * A virtio device behind the transport (virtio-blk.c): one const table.
 * Callbacks run on vCPU threads with the transport lock held; they must not
 * take it again nor wait for anything that does.
 */
struct sluice_virtio_dev_ops {
	const char *name;
	uint16_t device_type;			/* VIRTIO_ID_*; PCI device id = 0x1040 + type */
	uint32_t class_code;			/* PCI class/subclass/prog-if */
	uint64_t (*get_features)(void *dev);
	unsigned int (*num_queues)(void *dev);
	uint16_t (*max_queue_size)(void *dev);
	/* Device-specific configuration (the device-config capability). */
	void (*config_read)(void *dev, unsigned int off, uint8_t *data, unsigned int len);
	void (*config_write)(void *dev, unsigned int off, const uint8_t *data, unsigned int len);
	/* DRIVER_OK: serve the enabled queues (sluice_virtio_pci_queue()); non-zero sets NEEDS_RESET. */
	int (*start)(void *dev, uint64_t features);
	/* Reset (status 0): stop serving and wait until no request touches guest memory. */
	void (*reset)(void *dev);
	/*
	 * Bus Master turned off while started: stop serving and wait like
	 * reset, but keep what only a reset forgets (NULL: reset is used).
	 */
	void (*stop)(void *dev);
};

/*
 * A queue as the driver set it up: everything a dataplane needs (the kernel
 * dataplane passes exactly these to /dev/sluice-blk).
 */
struct sluice_virtio_queue {
	uint16_t size;
	uint16_t msix_vector;
	bool enabled;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	int kick_fd;		/* eventfd bound to the queue's notify address (ioeventfd) */
	int call_fd;		/* the irqfd of the queue's vector, or -1 (NO_VECTOR) */
	bool ioeventfd_bound;
	bool pio_bound;		/* the notify port is bound too (PIO) */
	uint64_t notify_addr;	/* guest physical address of the bound ioeventfd */
	uint16_t notify_port;	/* the bound port (PIO) */
};

/* One MSI-X vector: table entry, its GSI and eventfd (irqfd). */
struct sluice_msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl;
	int gsi;
	int fd;
	bool irqfd_bound;
};

struct sluice_virtio_pci {
	struct sluice_pci_dev pci;
	struct sluice_vm *vm;
	const struct sluice_virtio_dev_ops *ops;
	void *dev;
	/* Set by the device before init (AUTO is resolved there); constant after. */
	enum sluice_virtio_notify notify;
	pthread_mutex_t lock;			/* everything below except status and isr (atomics) */
	uint64_t host_features, guest_features;
	uint32_t dfselect, gfselect;
	uint16_t msix_config;
	uint8_t status;				/* atomic: IOThreads set NEEDS_RESET */
	uint8_t config_generation;
	uint8_t isr;				/* atomic */
	uint16_t queue_select;
	unsigned int nr_queues;
	struct sluice_virtio_queue queues[SLUICE_VIRTIO_MAX_QUEUES];
	unsigned int nr_vectors;
	struct sluice_msix_vector vectors[SLUICE_VIRTIO_MAX_QUEUES + 1];
	int msix_cap;				/* config space offset of the MSI-X capability */
	bool started;				/* ops->start succeeded and no reset since */
	bool dma_off;				/* the driver's last command write cleared Bus Master */
};

/* Main thread, before the vCPUs run: create the PCI function for @dev. */
int sluice_virtio_pci_init(struct sluice_virtio_pci *vp, struct sluice_vm *vm,
			   const struct sluice_virtio_dev_ops *ops, void *dev);
/* Any thread: "mmio" or "pio". */
const char *sluice_virtio_notify_name(enum sluice_virtio_notify notify);
/* Main thread, vCPUs stopped. */
void sluice_virtio_pci_exit(struct sluice_virtio_pci *vp);

/* Device callbacks (start/reset), transport lock held: the driver's view of queue @i. */
const struct sluice_virtio_queue *sluice_virtio_pci_queue(struct sluice_virtio_pci *vp, unsigned int i);

/*
 * Any thread (IOThreads on a malformed chain): the device is broken; set
 * NEEDS_RESET and raise the configuration-change interrupt.  Lock-free.
 */
void sluice_virtio_pci_needs_reset(struct sluice_virtio_pci *vp);

#endif /* SLUICE_VIRTIO_PCI_H */
