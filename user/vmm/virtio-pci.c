// SPDX-License-Identifier: GPL-2.0
/* virtio-pci.c - the virtio 1.x PCI transport: capabilities in BAR 0, common config, device status and reset, MSI-X over irqfds, ioeventfd notify. */
#include <cpuid.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>

#include "virtio-pci.h"
#include "vmm.h"

/* BAR 0 layout. */
#define VIRTIO_PCI_VENDOR	0x1af4
#define VP_BAR_SIZE		0x8000
#define VP_COMMON_OFF		0x0000
#define VP_COMMON_LEN		0x0038
#define VP_ISR_OFF		0x1000
#define VP_DEVCFG_OFF		0x2000
#define VP_DEVCFG_LEN		0x1000
#define VP_NOTIFY_OFF		0x3000
#define VP_NOTIFY_MULT		4
#define VP_MSIX_TABLE_OFF	0x4000
#define VP_MSIX_PBA_OFF		0x5000
/* BAR 1 (I/O, PIO notify only): the notify port at offset 0, every queue. */
#define VP_PIO_BAR		1
#define VP_PIO_BAR_SIZE		4

/* Common configuration offsets (virtio 1.x, 4.1.4.3). */
enum {
	CC_DFSELECT = 0x00, CC_DF = 0x04, CC_GFSELECT = 0x08, CC_GF = 0x0c,
	CC_MSIX_CONFIG = 0x10, CC_NUM_QUEUES = 0x12, CC_STATUS = 0x14, CC_CFG_GEN = 0x15,
	CC_Q_SELECT = 0x16, CC_Q_SIZE = 0x18, CC_Q_MSIX = 0x1a, CC_Q_ENABLE = 0x1c,
	CC_Q_NOFF = 0x1e, CC_Q_DESC_LO = 0x20, CC_Q_DESC_HI = 0x24, CC_Q_AVAIL_LO = 0x28,
	CC_Q_AVAIL_HI = 0x2c, CC_Q_USED_LO = 0x30, CC_Q_USED_HI = 0x34,
};

static uint32_t rd_le(const uint8_t *p, unsigned int len)
{
	uint32_t v = 0;
	unsigned int i;

	for (i = 0; i < len && i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void wr_le(uint8_t *p, unsigned int len, uint64_t v)
{
	unsigned int i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t status_get(struct sluice_virtio_pci *vp)
{
	return __atomic_load_n(&vp->status, __ATOMIC_ACQUIRE);
}

/* Any thread: raise the configuration-change interrupt (ISR bit 1 + the config vector). */
static void config_interrupt(struct sluice_virtio_pci *vp)
{
	uint16_t vec = __atomic_load_n(&vp->msix_config, __ATOMIC_ACQUIRE);

	__atomic_or_fetch(&vp->isr, VIRTIO_PCI_ISR_CONFIG, __ATOMIC_SEQ_CST);
	if (vec < vp->nr_vectors)
		eventfd_write(vp->vectors[vec].fd, 1);
}

/* Any thread, lock-free. */
void sluice_virtio_pci_needs_reset(struct sluice_virtio_pci *vp)
{
	uint8_t old = __atomic_fetch_or(&vp->status, VIRTIO_CONFIG_S_NEEDS_RESET, __ATOMIC_SEQ_CST);

	/* Only a driver that is running can be told. */
	if ((old & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_NEEDS_RESET))
		config_interrupt(vp);
}

/* Transport lock held. */
const struct sluice_virtio_queue *sluice_virtio_pci_queue(struct sluice_virtio_pci *vp, unsigned int i)
{
	return i < vp->nr_queues ? &vp->queues[i] : NULL;
}

/*
 * vCPU thread, transport lock held: bind or unbind vector @i's irqfd so that
 * it delivers exactly while MSI-X is on and neither the function nor the
 * vector is masked.  Signals sent while unbound stay in the eventfd (the
 * pending bit) and fire on binding.
 */
static void vector_update(struct sluice_virtio_pci *vp, unsigned int i)
{
	struct sluice_msix_vector *v = &vp->vectors[i];
	uint16_t ctl = sluice_pci_cfg_read(&vp->pci, vp->msix_cap + PCI_MSIX_FLAGS, 2);
	bool on = (ctl & PCI_MSIX_FLAGS_ENABLE) && !(ctl & PCI_MSIX_FLAGS_MASKALL) &&
		  !(v->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
	int ret;

	if (on) {
		ret = sluice_msi_route_set(vp->vm, v->gsi, (uint64_t)v->addr_hi << 32 | v->addr_lo, v->data, true);
		if (!ret && !v->irqfd_bound)
			ret = sluice_irqfd(vp->vm, v->fd, v->gsi, true);
		if (ret)
			fprintf(stderr, "sluice: %s: MSI-X vector %u: %s\n", vp->ops->name, i, strerror(-ret));
		else
			v->irqfd_bound = true;
	} else if (v->irqfd_bound) {
		sluice_irqfd(vp->vm, v->fd, v->gsi, false);
		v->irqfd_bound = false;
	}
}

/*
 * vCPU thread, transport lock held: bind queue @i's notify address (and its
 * notify port with PIO) to its kick eventfd, or unbind them.
 */
static void notify_bind(struct sluice_virtio_pci *vp, unsigned int i, bool bind)
{
	struct sluice_virtio_queue *q = &vp->queues[i];
	int ret;

	if (bind == q->ioeventfd_bound)
		return;
	if (bind)
		q->notify_addr = vp->pci.bar_addr[0] + VP_NOTIFY_OFF + i * VP_NOTIFY_MULT;
	ret = sluice_ioeventfd(vp->vm, q->notify_addr, 0, q->kick_fd, bind);
	if (ret && bind) {
		/* Not fatal: the notify write then exits and is forwarded by bar_access. */
		fprintf(stderr, "sluice: %s: queue %u: ioeventfd: %s\n", vp->ops->name, i, strerror(-ret));
		return;
	}
	q->ioeventfd_bound = bind;
	if (vp->notify != SLUICE_VIRTIO_NOTIFY_PIO || bind == q->pio_bound)
		return;
	if (bind)
		q->notify_port = (uint16_t)vp->pci.bar_addr[VP_PIO_BAR];
	ret = sluice_pio_eventfd(vp->vm, q->notify_port, 2, i, q->kick_fd, bind);
	if (ret && bind) {
		fprintf(stderr, "sluice: %s: queue %u: port ioeventfd: %s\n", vp->ops->name, i, strerror(-ret));
		return;
	}
	q->pio_bound = bind;
}

/* vCPU thread, transport lock held: status 0.  Stops the device, forgets the driver's setup. */
static void device_reset(struct sluice_virtio_pci *vp)
{
	uint64_t junk;
	unsigned int i;

	vp->ops->reset(vp->dev);
	vp->started = false;
	for (i = 0; i < vp->nr_queues; i++) {
		struct sluice_virtio_queue *q = &vp->queues[i];

		notify_bind(vp, i, false);
		/* Stale kicks must not reach the next incarnation. */
		while (read(q->kick_fd, &junk, sizeof(junk)) == sizeof(junk))
			;
		q->size = vp->ops->max_queue_size(vp->dev);
		q->msix_vector = SLUICE_VIRTIO_NO_VECTOR;
		q->enabled = false;
		q->desc_gpa = q->avail_gpa = q->used_gpa = 0;
		q->call_fd = -1;
	}
	vp->guest_features = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->queue_select = 0;
	__atomic_store_n(&vp->msix_config, SLUICE_VIRTIO_NO_VECTOR, __ATOMIC_RELEASE);
	__atomic_store_n(&vp->isr, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&vp->status, 0, __ATOMIC_RELEASE);
}

/*
 * vCPU thread, transport lock held: DRIVER_OK is set (just written, or
 * Bus Master just came back on): start the device unless it runs already,
 * needs a reset, or may not do DMA.  Like QEMU, a DRIVER_OK written while
 * Bus Master is off is kept in the status, and the device starts when the
 * driver turns Bus Master on.
 */
static void device_start(struct sluice_virtio_pci *vp)
{
	unsigned int i;
	int ret;

	if (vp->started || vp->dma_off || (status_get(vp) & VIRTIO_CONFIG_S_NEEDS_RESET))
		return;
	for (i = 0; i < vp->nr_queues; i++) {
		struct sluice_virtio_queue *q = &vp->queues[i];

		q->call_fd = q->msix_vector < vp->nr_vectors ? vp->vectors[q->msix_vector].fd : -1;
	}
	ret = vp->ops->start(vp->dev, vp->guest_features);
	if (ret) {
		fprintf(stderr, "sluice: %s: cannot start the device: %s\n", vp->ops->name, strerror(-ret));
		sluice_virtio_pci_needs_reset(vp);
		return;
	}
	vp->started = true;
}

/*
 * vCPU thread, transport lock held: the driver wrote the device status.
 * IOThreads may set NEEDS_RESET at any moment (sluice_virtio_pci_needs_reset,
 * lock-free), so the new value replaces the old one by compare-and-swap:
 * their bit is never lost, and the transitions below are judged against the
 * value really replaced.  Only status 0 (a reset) clears NEEDS_RESET.
 */
static void status_write(struct sluice_virtio_pci *vp, uint8_t val)
{
	uint8_t old, new;

	if (!val) {
		device_reset(vp);
		return;
	}
	old = status_get(vp);
	do {
		new = val;
		if ((new & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
			/* Only what we offered, and never without VERSION_1: else FEATURES_OK does not stick. */
			if ((vp->guest_features & ~vp->host_features) ||
			    !(vp->guest_features & (1ULL << VIRTIO_F_VERSION_1)))
				new &= ~VIRTIO_CONFIG_S_FEATURES_OK;
		}
		/* NEEDS_RESET is the device's: the driver cannot clear it but by a reset. */
		new |= old & VIRTIO_CONFIG_S_NEEDS_RESET;
	} while (!__atomic_compare_exchange_n(&vp->status, &old, new, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	if ((new & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK))
		device_start(vp);
}

/* vCPU thread, transport lock held. */
static void common_read(struct sluice_virtio_pci *vp, unsigned int off, uint8_t *data, unsigned int len)
{
	struct sluice_virtio_queue *q = vp->queue_select < vp->nr_queues ? &vp->queues[vp->queue_select] : NULL;
	uint64_t v = 0;
	unsigned int base = off & ~3u;

	switch (base) {
	case CC_DFSELECT: v = vp->dfselect; break;
	case CC_DF: v = vp->dfselect < 2 ? (uint32_t)(vp->host_features >> (32 * vp->dfselect)) : 0; break;
	case CC_GFSELECT: v = vp->gfselect; break;
	case CC_GF: v = vp->gfselect < 2 ? (uint32_t)(vp->guest_features >> (32 * vp->gfselect)) : 0; break;
	case CC_MSIX_CONFIG:
		v = vp->msix_config | (uint32_t)vp->nr_queues << 16;
		break;
	case CC_STATUS:
		v = status_get(vp) | (uint32_t)vp->config_generation << 8 | (uint32_t)vp->queue_select << 16;
		break;
	case CC_Q_SIZE:
		v = q ? (q->size | (uint32_t)q->msix_vector << 16) : 0;
		break;
	case CC_Q_ENABLE:
		v = q ? (q->enabled | (uint32_t)vp->queue_select << 16) : 0;
		break;
	case CC_Q_DESC_LO: v = q ? (uint32_t)q->desc_gpa : 0; break;
	case CC_Q_DESC_HI: v = q ? (uint32_t)(q->desc_gpa >> 32) : 0; break;
	case CC_Q_AVAIL_LO: v = q ? (uint32_t)q->avail_gpa : 0; break;
	case CC_Q_AVAIL_HI: v = q ? (uint32_t)(q->avail_gpa >> 32) : 0; break;
	case CC_Q_USED_LO: v = q ? (uint32_t)q->used_gpa : 0; break;
	case CC_Q_USED_HI: v = q ? (uint32_t)(q->used_gpa >> 32) : 0; break;
	default: break;
	}
	/* (queue_notify_off, at 0x1e, is the queue index: the upper half of CC_Q_ENABLE's word.) */
	v >>= 8 * (off - base);
	wr_le(data, len, v);
}

static void set_lo(uint64_t *p, uint32_t v)
{
	*p = (*p & ~0xffffffffULL) | v;
}

static void set_hi(uint64_t *p, uint32_t v)
{
	*p = (*p & 0xffffffffULL) | (uint64_t)v << 32;
}

/* vCPU thread, transport lock held. */
static void common_write(struct sluice_virtio_pci *vp, unsigned int off, const uint8_t *data, unsigned int len)
{
	struct sluice_virtio_queue *q = vp->queue_select < vp->nr_queues ? &vp->queues[vp->queue_select] : NULL;
	uint32_t val = rd_le(data, len);
	bool queue_locked = q && q->enabled;	/* the ring set-up of an enabled queue is fixed */
	uint8_t tmp[4];

	/* 64-bit writes of the ring addresses: two halves. */
	if (len == 8 && (off == CC_Q_DESC_LO || off == CC_Q_AVAIL_LO || off == CC_Q_USED_LO)) {
		memcpy(tmp, data + 4, 4);
		common_write(vp, off, data, 4);
		common_write(vp, off + 4, tmp, 4);
		return;
	}
	switch (off) {
	case CC_DFSELECT: vp->dfselect = val; return;
	case CC_GFSELECT: vp->gfselect = val; return;
	case CC_GF:
		if (vp->gfselect < 2 && !(status_get(vp) & VIRTIO_CONFIG_S_FEATURES_OK)) {
			if (vp->gfselect)
				set_hi(&vp->guest_features, val);
			else
				set_lo(&vp->guest_features, val);
		}
		return;
	case CC_MSIX_CONFIG:
		__atomic_store_n(&vp->msix_config,
				 val < vp->nr_vectors ? (uint16_t)val : SLUICE_VIRTIO_NO_VECTOR, __ATOMIC_RELEASE);
		return;
	case CC_STATUS:
		status_write(vp, (uint8_t)val);
		return;
	case CC_Q_SELECT:
		vp->queue_select = val;
		return;
	default:
		break;
	}
	if (!q || queue_locked)
		return;
	switch (off) {
	case CC_Q_SIZE:
		/* Any power of 2 up to the maximum. */
		if (val && val <= vp->ops->max_queue_size(vp->dev) && !(val & (val - 1)))
			q->size = val;
		return;
	case CC_Q_MSIX:
		q->msix_vector = val < vp->nr_vectors ? (uint16_t)val : SLUICE_VIRTIO_NO_VECTOR;
		return;
	case CC_Q_ENABLE:
		if (val == 1) {
			q->enabled = true;
			notify_bind(vp, vp->queue_select, true);
		}
		return;
	case CC_Q_DESC_LO: set_lo(&q->desc_gpa, val); return;
	case CC_Q_DESC_HI: set_hi(&q->desc_gpa, val); return;
	case CC_Q_AVAIL_LO: set_lo(&q->avail_gpa, val); return;
	case CC_Q_AVAIL_HI: set_hi(&q->avail_gpa, val); return;
	case CC_Q_USED_LO: set_lo(&q->used_gpa, val); return;
	case CC_Q_USED_HI: set_hi(&q->used_gpa, val); return;
	default:
		return;
	}
}

/* vCPU thread, transport lock held: the MSI-X table (4- or 8-byte accesses). */
static void msix_access(struct sluice_virtio_pci *vp, unsigned int off, bool is_write, uint8_t *data,
			unsigned int len)
{
	unsigned int i = off / PCI_MSIX_ENTRY_SIZE, word = (off % PCI_MSIX_ENTRY_SIZE) / 4;
	struct sluice_msix_vector *v;
	uint32_t *f[4];

	if (i >= vp->nr_vectors || (off & 3) || (len != 4 && len != 8)) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	v = &vp->vectors[i];
	f[0] = &v->addr_lo;
	f[1] = &v->addr_hi;
	f[2] = &v->data;
	f[3] = &v->ctrl;
	if (!is_write) {
		wr_le(data, 4, *f[word]);
		if (len == 8)
			wr_le(data + 4, 4, word < 3 ? *f[word + 1] : 0);
		return;
	}
	*f[word] = rd_le(data, 4);
	if (len == 8 && word < 3)
		*f[word + 1] = rd_le(data + 4, 4);
	v->ctrl &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
	vector_update(vp, i);
}

/* vCPU threads: an access to BAR 0 or 1 (notify writes land here only when no ioeventfd caught them). */
static void vp_bar_access(struct sluice_pci_dev *pci, unsigned int bar, uint64_t off, bool is_write,
			  uint8_t *data, unsigned int len)
{
	struct sluice_virtio_pci *vp = pci->opaque;
	unsigned int i;

	if (bar == VP_PIO_BAR && vp->notify == SLUICE_VIRTIO_NOTIFY_PIO) {
		/* The driver writes the queue index (16 bits) at offset 0. */
		i = rd_le(data, len);
		if (is_write && !off && len == 2 && i < vp->nr_queues)
			eventfd_write(vp->queues[i].kick_fd, 1);
		else if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (bar != 0) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (off >= VP_NOTIFY_OFF && off < VP_NOTIFY_OFF + SLUICE_VIRTIO_MAX_QUEUES * VP_NOTIFY_MULT) {
		i = (off - VP_NOTIFY_OFF) / VP_NOTIFY_MULT;
		if (is_write && i < vp->nr_queues)
			eventfd_write(vp->queues[i].kick_fd, 1);
		else if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (off == VP_ISR_OFF) {
		if (!is_write)
			wr_le(data, len, __atomic_exchange_n(&vp->isr, 0, __ATOMIC_SEQ_CST));
		return;
	}
	pthread_mutex_lock(&vp->lock);
	if (off < VP_COMMON_OFF + VP_COMMON_LEN && off + len <= VP_COMMON_LEN) {
		if (is_write)
			common_write(vp, off, data, len);
		else
			common_read(vp, off, data, len);
	} else if (off >= VP_DEVCFG_OFF && off + len <= VP_DEVCFG_OFF + VP_DEVCFG_LEN) {
		if (is_write)
			vp->ops->config_write(vp->dev, off - VP_DEVCFG_OFF, data, len);
		else
			vp->ops->config_read(vp->dev, off - VP_DEVCFG_OFF, data, len);
	} else if (off >= VP_MSIX_TABLE_OFF && off < VP_MSIX_PBA_OFF) {
		msix_access(vp, off - VP_MSIX_TABLE_OFF, is_write, data, len);
	} else if (!is_write) {
		/* The PBA (pending signals wait in the eventfds instead) and holes read 0. */
		memset(data, 0, len);
	}
	pthread_mutex_unlock(&vp->lock);
}

/*
 * vCPU thread, transport lock held: the driver turned Bus Master off.  Like
 * QEMU (virtio_write_config), the device stops its DMA: queue processing
 * stops, in-flight requests are waited for, DRIVER_OK is dropped from the
 * status (NEEDS_RESET and the rest stay), and the driver's queue setup is
 * kept, so writing DRIVER_OK again starts the device afresh.
 */
static void bus_master_off(struct sluice_virtio_pci *vp)
{
	uint8_t old = status_get(vp);

	if (vp->started) {
		if (vp->ops->stop)
			vp->ops->stop(vp->dev);
		else
			vp->ops->reset(vp->dev);
		vp->started = false;
	}
	/* A compare-and-swap, as in status_write: an IOThread may be setting NEEDS_RESET. */
	while ((old & VIRTIO_CONFIG_S_DRIVER_OK) &&
	       !__atomic_compare_exchange_n(&vp->status, &old, old & ~VIRTIO_CONFIG_S_DRIVER_OK, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

/* vCPU threads, no lock held (takes the transport lock): Bus Master, MSI-X enable or function mask changed. */
static void vp_config_written(struct sluice_pci_dev *pci, unsigned int off, unsigned int len)
{
	struct sluice_virtio_pci *vp = pci->opaque;
	unsigned int i, ctl = vp->msix_cap + PCI_MSIX_FLAGS;
	bool command = off < PCI_COMMAND + 2 && off + len > PCI_COMMAND;
	bool msix = off + len > ctl && off < ctl + 2;

	if (!command && !msix)
		return;
	pthread_mutex_lock(&vp->lock);
	if (command) {
		/*
		 * As QEMU: only a command write that clears Bus Master disables
		 * the device (the reset value, never written, does not).
		 */
		vp->dma_off = !(sluice_pci_cfg_read(&vp->pci, PCI_COMMAND, 2) & PCI_COMMAND_MASTER);
		if (vp->dma_off)
			bus_master_off(vp);
		else if (status_get(vp) & VIRTIO_CONFIG_S_DRIVER_OK)
			device_start(vp);
	}
	if (msix)
		for (i = 0; i < vp->nr_vectors; i++)
			vector_update(vp, i);
	pthread_mutex_unlock(&vp->lock);
}

/* vCPU threads: BAR 0 or the notify port moved; follow with the bound notify addresses. */
static void vp_bar_moved(struct sluice_pci_dev *pci, unsigned int bar, uint64_t old_addr, uint64_t addr)
{
	struct sluice_virtio_pci *vp = pci->opaque;
	unsigned int i;

	if (bar != 0 && bar != VP_PIO_BAR)
		return;
	pthread_mutex_lock(&vp->lock);
	for (i = 0; i < vp->nr_queues; i++) {
		if (!vp->queues[i].ioeventfd_bound)
			continue;
		notify_bind(vp, i, false);
		notify_bind(vp, i, true);
	}
	pthread_mutex_unlock(&vp->lock);
}

static const struct sluice_pci_dev_ops vp_pci_ops = {
	.bar_access = vp_bar_access,
	.config_written = vp_config_written,
	.bar_moved = vp_bar_moved,
};

/* Main thread: one virtio vendor capability; @mult is the notify multiplier (notify capabilities only, else < 0). */
static int add_virtio_cap(struct sluice_virtio_pci *vp, uint8_t type, uint8_t bar, uint32_t off, uint32_t len,
			  int mult)
{
	uint8_t cap[20] = { 0 };

	cap[0] = PCI_CAP_ID_VNDR;
	cap[2] = mult >= 0 ? 20 : 16;
	cap[3] = type;
	cap[4] = bar;
	wr_le(cap + 8, 4, off);
	wr_le(cap + 12, 4, len);
	if (mult >= 0)
		wr_le(cap + 16, 4, mult);
	return sluice_pci_dev_add_cap(&vp->pci, cap, cap[2]);
}

/* Any thread. */
const char *sluice_virtio_notify_name(enum sluice_virtio_notify notify)
{
	return notify == SLUICE_VIRTIO_NOTIFY_PIO ? "pio" : "mmio";
}

/* Main thread: AUTO's choice, by the host CPU's vendor (AMD's SVM has no fast MMIO path in KVM). */
static enum sluice_virtio_notify notify_resolve(enum sluice_virtio_notify notify)
{
	unsigned int eax, ebx, ecx, edx;

	if (notify != SLUICE_VIRTIO_NOTIFY_AUTO)
		return notify;
	if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx))
		return SLUICE_VIRTIO_NOTIFY_MMIO;
	/* "AuthenticAMD" / "HygonGenuine" in EBX, EDX, ECX. */
	if ((ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163) ||
	    (ebx == 0x6f677948 && edx == 0x6e65476e && ecx == 0x656e6975))
		return SLUICE_VIRTIO_NOTIFY_PIO;
	return SLUICE_VIRTIO_NOTIFY_MMIO;
}

/* Main thread, before the vCPUs run. */
int sluice_virtio_pci_init(struct sluice_virtio_pci *vp, struct sluice_vm *vm,
			   const struct sluice_virtio_dev_ops *ops, void *dev)
{
	uint8_t msix[12] = { 0 };
	unsigned int i;
	int ret;

	vp->vm = vm;
	vp->ops = ops;
	vp->dev = dev;
	pthread_mutex_init(&vp->lock, NULL);
	vp->host_features = ops->get_features(dev) | (1ULL << VIRTIO_F_VERSION_1);
	vp->nr_queues = ops->num_queues(dev);
	if (!vp->nr_queues || vp->nr_queues > SLUICE_VIRTIO_MAX_QUEUES)
		return -EINVAL;
	vp->nr_vectors = vp->nr_queues + 1;
	vp->msix_config = SLUICE_VIRTIO_NO_VECTOR;
	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES; i++)
		vp->queues[i].kick_fd = vp->queues[i].call_fd = -1;
	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES + 1; i++)
		vp->vectors[i].fd = -1;
	for (i = 0; i < vp->nr_queues; i++) {
		vp->queues[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->queues[i].kick_fd < 0)
			goto err_close_fds;
		vp->queues[i].size = ops->max_queue_size(dev);
		vp->queues[i].msix_vector = SLUICE_VIRTIO_NO_VECTOR;
	}
	for (i = 0; i < vp->nr_vectors; i++) {
		vp->vectors[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
		vp->vectors[i].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->vectors[i].fd < 0)
			goto err_close_fds;
		vp->vectors[i].gsi = sluice_msi_gsi_alloc(vm);
		if (vp->vectors[i].gsi < 0) {
			ret = vp->vectors[i].gsi;
			goto err_close_fds_ret;
		}
	}

	vp->pci.ops = &vp_pci_ops;
	vp->pci.opaque = vp;
	ret = sluice_pci_dev_init(vm, &vp->pci, VIRTIO_PCI_VENDOR, 0x1040 + ops->device_type,
				  ops->class_code, VIRTIO_PCI_VENDOR, 0x1100);
	if (ret)
		goto err_close_fds_ret;
	ret = sluice_pci_dev_add_bar(&vp->pci, 0, VP_BAR_SIZE);
	if (ret)
		goto err_close_fds_ret;
	vp->notify = notify_resolve(vp->notify);
	if (vp->notify == SLUICE_VIRTIO_NOTIFY_PIO) {
		ret = sluice_pci_dev_add_io_bar(&vp->pci, VP_PIO_BAR, VP_PIO_BAR_SIZE);
		if (ret)
			goto err_close_fds_ret;
	}
	if (add_virtio_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, 0, VP_COMMON_OFF, VP_COMMON_LEN, -1) < 0 ||
	    add_virtio_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, 0, VP_ISR_OFF, 1, -1) < 0 ||
	    add_virtio_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, 0, VP_DEVCFG_OFF, VP_DEVCFG_LEN, -1) < 0 ||
	    /* The driver takes the first notify capability it can map: the port one, when there is one. */
	    (vp->notify == SLUICE_VIRTIO_NOTIFY_PIO &&
	     add_virtio_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VP_PIO_BAR, 0, 2, 0) < 0) ||
	    add_virtio_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, 0, VP_NOTIFY_OFF,
			   SLUICE_VIRTIO_MAX_QUEUES * VP_NOTIFY_MULT, VP_NOTIFY_MULT) < 0) {
		ret = -ENOSPC;
		goto err_close_fds_ret;
	}
	msix[0] = PCI_CAP_ID_MSIX;
	wr_le(msix + PCI_MSIX_FLAGS, 2, vp->nr_vectors - 1);
	wr_le(msix + PCI_MSIX_TABLE, 4, VP_MSIX_TABLE_OFF | 0);
	wr_le(msix + PCI_MSIX_PBA, 4, VP_MSIX_PBA_OFF | 0);
	ret = sluice_pci_dev_add_cap(&vp->pci, msix, sizeof(msix));
	if (ret < 0)
		goto err_close_fds_ret;
	vp->msix_cap = ret;
	sluice_pci_set_wmask(&vp->pci, vp->msix_cap + PCI_MSIX_FLAGS, 2,
			     PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	return 0;

err_close_fds:
	ret = -errno;
err_close_fds_ret:
	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES; i++)
		if (vp->queues[i].kick_fd >= 0)
			close(vp->queues[i].kick_fd);
	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES + 1; i++)
		if (vp->vectors[i].fd >= 0)
			close(vp->vectors[i].fd);
	pthread_mutex_destroy(&vp->lock);
	return ret;
}

/* Main thread, vCPUs stopped: stop the device, release the eventfds. */
void sluice_virtio_pci_exit(struct sluice_virtio_pci *vp)
{
	unsigned int i;

	pthread_mutex_lock(&vp->lock);
	device_reset(vp);
	for (i = 0; i < vp->nr_vectors; i++) {
		if (vp->vectors[i].irqfd_bound)
			sluice_irqfd(vp->vm, vp->vectors[i].fd, vp->vectors[i].gsi, false);
		close(vp->vectors[i].fd);
	}
	for (i = 0; i < vp->nr_queues; i++)
		close(vp->queues[i].kick_fd);
	pthread_mutex_unlock(&vp->lock);
	pthread_mutex_destroy(&vp->lock);
}
