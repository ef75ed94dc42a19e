// SPDX-License-Identifier: GPL-2.0
/* test_ioport.c - unit tests of the VMM's port I/O without KVM: queued (coalesced) PCI address writes drained in order. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ktap.h"
#include "pci.h"
#include "vmm.h"

#define RING_PAGE 4096

static struct kvm_coalesced_mmio_ring *ring_setup(struct sluice_vm *vm, struct sluice_vcpu *vcpu)
{
	struct kvm_coalesced_mmio_ring *ring = aligned_alloc(RING_PAGE, RING_PAGE);

	memset(vm, 0, sizeof(*vm));
	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	if (!ring || sluice_pci_init(vm))
		return NULL;
	memset(ring, 0, RING_PAGE);
	vm->coalesced = ring;
	vm->coalesced_max = (RING_PAGE - sizeof(*ring)) / sizeof(struct kvm_coalesced_mmio);
	pthread_mutex_init(&vm->coalesced_lock, NULL);
	return ring;
}

/* What KVM does for a queued write: fill the entry at last, then advance last. */
static void ring_push(struct sluice_vm *vm, uint64_t port, uint32_t value, uint32_t len, uint32_t pio)
{
	struct kvm_coalesced_mmio *e = &vm->coalesced->coalesced_mmio[vm->coalesced->last];

	memset(e, 0, sizeof(*e));
	e->phys_addr = port;
	e->len = len;
	e->pio = pio;
	memcpy(e->data, &value, len);
	vm->coalesced->last = (vm->coalesced->last + 1) % vm->coalesced_max;
}

static uint32_t port_read(struct sluice_vm *vm, uint16_t port)
{
	uint32_t v = 0;

	sluice_pci_port_io(vm, port, false, (uint8_t *)&v, 4);
	return v;
}

static void ring_teardown(struct sluice_vm *vm)
{
	free(vm->coalesced);
	sluice_pci_exit(vm);
}

/* Address writes queued across the ring's wrap are applied in order; the data port then sees the last. */
static enum ktap_result queued_addr_writes_apply_in_order(void)
{
	struct sluice_vm vm;
	struct sluice_vcpu vcpu;
	struct kvm_coalesced_mmio_ring *ring = ring_setup(&vm, &vcpu);
	uint32_t class;

	KTAP_EXPECT(ring, "no ring or PCI bus");
	ring->first = ring->last = vm.coalesced_max - 2;
	ring_push(&vm, 0xcf8, 0x80001000, 4, 1);	/* slot 2: nothing there */
	ring_push(&vm, 0xcf8, 0x80000800, 4, 1);	/* slot 1 */
	ring_push(&vm, 0xcf8, 0x80000008, 4, 1);	/* slot 0, class/revision */
	KTAP_EXPECT(ring->last == 1, "the test's ring did not wrap (last %u)", ring->last);
	sluice_ioport_flush(&vcpu);
	KTAP_EXPECT(ring->first == ring->last, "ring not drained: first %u last %u", ring->first, ring->last);
	KTAP_EXPECT(port_read(&vm, 0xcf8) == 0x80000008, "address latch %#x, not the last write", port_read(&vm, 0xcf8));
	class = port_read(&vm, 0xcfc);
	KTAP_EXPECT(class >> 8 == 0x060000, "class/revision of 00.0 read %#x: the host bridge is 0x0600xx", class);
	/* An empty ring is left as it is. */
	sluice_ioport_flush(&vcpu);
	KTAP_EXPECT(ring->first == 1 && ring->last == 1, "empty ring moved");
	ring_teardown(&vm);
	return KTAP_PASS;
}

/* An MMIO entry (none is registered) is dropped, and a first index outside the ring stops the drain. */
static enum ktap_result odd_entries_are_skipped(void)
{
	struct sluice_vm vm;
	struct sluice_vcpu vcpu;
	struct kvm_coalesced_mmio_ring *ring = ring_setup(&vm, &vcpu);

	KTAP_EXPECT(ring, "no ring or PCI bus");
	ring_push(&vm, 0xcf8, 0x80000000, 4, 1);
	ring_push(&vm, 0xfee00000, 0x12345678, 4, 0);
	sluice_ioport_flush(&vcpu);
	KTAP_EXPECT(ring->first == 2 && port_read(&vm, 0xcf8) == 0x80000000, "first %u latch %#x", ring->first,
		    port_read(&vm, 0xcf8));
	ring->first = vm.coalesced_max + 5;
	ring->last = 3;
	sluice_ioport_flush(&vcpu);
	KTAP_EXPECT(ring->first == vm.coalesced_max + 5, "a corrupt first index was followed");
	ring_teardown(&vm);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(queued_addr_writes_apply_in_order), KTAP_CASE(odd_entries_are_skipped))
