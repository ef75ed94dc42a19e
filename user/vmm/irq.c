// SPDX-License-Identifier: GPL-2.0
/* irq.c - KVM GSI routing with MSI routes, irqfds and ioeventfds: how devices talk to the guest without exits. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm.h"

#define NR_IOAPIC_PINS	24
#define NR_PIC_PINS	16

/* Main thread, before any device: the routing lock. */
int sluice_irq_init(struct sluice_vm *vm)
{
	pthread_mutex_init(&vm->irq_lock, NULL);
	vm->nr_msi = 0;
	return 0;
}

/*
 * Push the whole routing table to KVM: KVM_SET_GSI_ROUTING replaces KVM's
 * default table, so the PIC and IOAPIC pins are restated (GSI n -> IOAPIC pin
 * n; GSIs 0-15 also to the PICs), then every valid MSI route.  Caller holds
 * irq_lock.
 */
static int commit_routes(struct sluice_vm *vm)
{
	struct kvm_irq_routing *r;
	unsigned int i, n = 0;
	int ret;

	r = calloc(1, sizeof(*r) + (NR_IOAPIC_PINS + NR_PIC_PINS + SLUICE_MSI_MAX) * sizeof(r->entries[0]));
	if (!r)
		return -ENOMEM;
	for (i = 0; i < NR_IOAPIC_PINS; i++) {
		r->entries[n].gsi = i;
		r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		r->entries[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		r->entries[n].u.irqchip.pin = i;
		n++;
		if (i < NR_PIC_PINS) {
			r->entries[n].gsi = i;
			r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
			r->entries[n].u.irqchip.irqchip = i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			r->entries[n].u.irqchip.pin = i % 8;
			n++;
		}
	}
	for (i = 0; i < vm->nr_msi; i++) {
		if (!vm->msi_valid[i])
			continue;
		r->entries[n].gsi = SLUICE_MSI_GSI_BASE + i;
		r->entries[n].type = KVM_IRQ_ROUTING_MSI;
		r->entries[n].u.msi = vm->msi[i];
		n++;
	}
	r->nr = n;
	ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	return ret;
}

/* Any thread: reserve a GSI for one MSI vector (no route until sluice_msi_route_set()). */
int sluice_msi_gsi_alloc(struct sluice_vm *vm)
{
	int gsi = -ENOSPC;

	pthread_mutex_lock(&vm->irq_lock);
	if (vm->nr_msi < SLUICE_MSI_MAX) {
		vm->msi_valid[vm->nr_msi] = false;
		gsi = SLUICE_MSI_GSI_BASE + vm->nr_msi++;
	}
	pthread_mutex_unlock(&vm->irq_lock);
	return gsi;
}

/* Any thread (vCPU threads on MSI-X table writes): set or drop @gsi's MSI route.  Takes irq_lock. */
int sluice_msi_route_set(struct sluice_vm *vm, int gsi, uint64_t addr, uint32_t data, bool valid)
{
	unsigned int i = gsi - SLUICE_MSI_GSI_BASE;
	int ret = 0;

	if (gsi < SLUICE_MSI_GSI_BASE || i >= SLUICE_MSI_MAX)
		return -EINVAL;
	pthread_mutex_lock(&vm->irq_lock);
	if (vm->msi_valid[i] != valid || vm->msi[i].address_lo != (uint32_t)addr ||
	    vm->msi[i].address_hi != (uint32_t)(addr >> 32) || vm->msi[i].data != data) {
		memset(&vm->msi[i], 0, sizeof(vm->msi[i]));
		vm->msi[i].address_lo = (uint32_t)addr;
		vm->msi[i].address_hi = (uint32_t)(addr >> 32);
		vm->msi[i].data = data;
		vm->msi_valid[i] = valid;
		ret = commit_routes(vm);
	}
	pthread_mutex_unlock(&vm->irq_lock);
	return ret;
}

/*
 * Any thread: bind (or unbind) eventfd @fd to @gsi.  A signal that arrived
 * while unbound is delivered when binding (KVM polls the eventfd then): that
 * is how a masked MSI-X vector's pending bit works here.
 */
int sluice_irqfd(struct sluice_vm *vm, int fd, int gsi, bool assign)
{
	struct kvm_irqfd irqfd = {
		.fd = fd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	return ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

/*
 * Any thread (the control socket's inject-nmi): an NMI to every vCPU, as a
 * PC's NMI button or QEMU's inject-nmi gives.  Each is an MSI with delivery
 * mode NMI to one APIC id in physical mode (APIC id = vCPU index, at most
 * SLUICE_MAX_CPUS < 255), so no vCPU thread has to be stopped for it.  A
 * guest that takes an NMI it cannot explain reports it, or with
 * unknown_nmi_panic on its command line panics with a backtrace of what it
 * was doing: how a hung guest says where it hangs.  0 or the first -errno.
 */
int sluice_irq_inject_nmi(struct sluice_vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_cpus; i++) {
		struct kvm_msi msi = {
			.address_lo = 0xfee00000u | i << 12,
			.data = 4u << 8,	/* delivery mode NMI (edge, vector ignored) */
		};

		if (ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
			return -errno;
	}
	return 0;
}

/* Any thread: register @ioev with KVM, or (!@assign) remove it. */
static int ioeventfd_set(struct sluice_vm *vm, struct kvm_ioeventfd ioev, bool assign)
{
	if (!assign)
		ioev.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &ioev) < 0 ? -errno : 0;
}

/*
 * Any thread: signal @fd on every guest write to MMIO @addr (@len 0: a write
 * of any length, which KVM can take on its fast MMIO path without decoding
 * the instruction, where the CPU reports its length).
 */
int sluice_ioeventfd(struct sluice_vm *vm, uint64_t addr, unsigned int len, int fd, bool assign)
{
	return ioeventfd_set(vm, (struct kvm_ioeventfd){ .addr = addr, .len = len, .fd = fd }, assign);
}

/* Any thread: signal @fd on every guest write of @len bytes of value @match to @port. */
int sluice_pio_eventfd(struct sluice_vm *vm, uint16_t port, unsigned int len, uint64_t match, int fd, bool assign)
{
	return ioeventfd_set(vm, (struct kvm_ioeventfd){
		.datamatch = match, .addr = port, .len = len, .fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH,
	}, assign);
}
