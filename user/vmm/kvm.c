// SPDX-License-Identifier: GPL-2.0
/* kvm.c - /dev/kvm: API checks, the VM, its in-kernel irqchip and PIT, guest RAM with the PCI hole, exit requests. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm.h"

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
};

/*
 * Split @ram_size into the RAM below the PCI hole (at GPA 0) and the RAM relocated
 * above 4 GiB.  Any thread; pure.
 */
void sluice_ram_layout(uint64_t ram_size, uint64_t *low, uint64_t *high)
{
	*low = ram_size < SLUICE_PCI_HOLE_START ? ram_size : SLUICE_PCI_HOLE_START;
	*high = ram_size - *low;
}

/*
 * Host pointer for guest physical range [@gpa, @gpa + @len), or NULL when the range is
 * not entirely inside one RAM region.  Any thread.
 */
void *sluice_gpa_to_hva(struct sluice_vm *vm, uint64_t gpa, uint64_t len)
{
	if (gpa < vm->low_size && len <= vm->low_size - gpa)
		return vm->ram + gpa;
	if (gpa >= SLUICE_HIGH_RAM_START && gpa - SLUICE_HIGH_RAM_START < vm->high_size &&
	    len <= vm->high_size - (gpa - SLUICE_HIGH_RAM_START))
		return vm->ram + vm->low_size + (gpa - SLUICE_HIGH_RAM_START);
	return NULL;
}

/*
 * Ask the main thread to end the VM with @status; the first request wins, later ones
 * are ignored.  Any thread (vCPU threads on reset/poweroff/errors, the main thread on signals).
 */
void sluice_vm_request_exit(struct sluice_vm *vm, int status, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->exit_lock);
	if (!vm->exit_requested) {
		vm->exit_requested = true;
		vm->exit_status = status;
		va_start(ap, fmt);
		vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
		va_end(ap);
		pthread_cond_broadcast(&vm->exit_cond);
		if (vm->exit_fd >= 0)
			eventfd_write(vm->exit_fd, 1);
	}
	pthread_mutex_unlock(&vm->exit_lock);
}

/* Set ISA interrupt line @irq (PIC and IOAPIC pin) to @level.  Any thread. */
int sluice_irq_line(struct sluice_vm *vm, unsigned int irq, int level)
{
	struct kvm_irq_level line = { .irq = irq, .level = level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &line) < 0 ? -errno : 0;
}

static int set_region(struct sluice_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -errno : 0;
}

static int check_caps(struct sluice_vm *vm)
{
	size_t i;
	int v;

	v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		fprintf(stderr, "sluice: /dev/kvm API version %d, expected %d\n", v, KVM_API_VERSION);
		return -EINVAL;
	}
	for (i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			fprintf(stderr, "sluice: /dev/kvm lacks %s\n", required_caps[i].name);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

static int get_supported_cpuid(struct sluice_vm *vm)
{
	struct kvm_cpuid2 *cpuid;
	unsigned int nent = 64;

	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
		if (!cpuid)
			return -ENOMEM;
		cpuid->nent = nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		free(cpuid);
		if (errno != E2BIG || nent >= 4096) {
			fprintf(stderr, "sluice: KVM_GET_SUPPORTED_CPUID: %s\n", strerror(errno));
			return -errno;
		}
		nent *= 2;
	}
	vm->cpuid = cpuid;
	return 0;
}

/*
 * Main thread: anonymous guest RAM on a 2 MiB boundary, transparent huge
 * pages asked for (as QEMU does): with the guest-physical layout also 2 MiB
 * aligned, KVM maps the guest with 2 MiB nested page table entries, which
 * cuts nested page walks and TLB misses for every guest access.  KSM may
 * merge it (MADV_MERGEABLE) when ksmd runs.  NULL with errno on failure;
 * unmapped with munmap(ram, size).
 */
static uint8_t *ram_map(uint64_t size)
{
	const uint64_t huge = 2ull << 20;
	uint8_t *p, *ram;
	uint64_t head;

	p = mmap(NULL, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	ram = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
	head = (uint64_t)(ram - p);
	if (head)
		munmap(p, head);
	munmap(ram + size, huge - head);
	madvise(ram, size, MADV_HUGEPAGE);
	madvise(ram, size, MADV_MERGEABLE);
	return ram;
}

/*
 * Open /dev/kvm, check it, create the VM with its irqchip and PIT and give it
 * @cfg->mem_size of RAM.  Prints a one-line reason on failure.  Main thread.
 */
int sluice_kvm_init(struct sluice_vm *vm, const struct sluice_config *cfg)
{
	/*
	 * KVM_PIT_SPEAKER_DUMMY: KVM also serves port 0x61 (NMI status and
	 * control: PIT channel 2's gate and output, refresh toggle; SERR and
	 * IOCHK clear).  Without it 0x61 reads float high, and a guest's NMI
	 * handler takes every NMI for a PCI SERR plus an IOCHK error instead of
	 * an unknown NMI.
	 */
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t identity = SLUICE_IDENTITY_MAP;
	int max_cpus, ret;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		fprintf(stderr, "sluice: cannot open /dev/kvm: %s\n", strerror(errno));
		return ret;
	}
	ret = check_caps(vm);
	if (ret)
		goto err_close_kvm;
	max_cpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_cpus <= 0)
		max_cpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_cpus > 0 && cfg->nr_cpus > (unsigned int)max_cpus) {
		fprintf(stderr, "sluice: --cpus %u exceeds this KVM's limit of %d\n", cfg->nr_cpus, max_cpus);
		ret = -EINVAL;
		goto err_close_kvm;
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		ret = -EINVAL;
		fprintf(stderr, "sluice: KVM_GET_VCPU_MMAP_SIZE: %s\n", strerror(errno));
		goto err_close_kvm;
	}
	ret = get_supported_cpuid(vm);
	if (ret)
		goto err_close_kvm;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		fprintf(stderr, "sluice: KVM_CREATE_VM: %s\n", strerror(errno));
		goto err_free_cpuid;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)SLUICE_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) {
		ret = -errno;
		fprintf(stderr, "sluice: KVM_SET_TSS_ADDR/IDENTITY_MAP_ADDR: %s\n", strerror(errno));
		goto err_close_vm;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = -errno;
		fprintf(stderr, "sluice: KVM_CREATE_IRQCHIP: %s\n", strerror(errno));
		goto err_close_vm;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		fprintf(stderr, "sluice: KVM_CREATE_PIT2: %s\n", strerror(errno));
		goto err_close_vm;
	}

	vm->ram_size = cfg->mem_size;
	sluice_ram_layout(vm->ram_size, &vm->low_size, &vm->high_size);
	vm->ram = ram_map(vm->ram_size);
	if (!vm->ram) {
		ret = -errno;
		fprintf(stderr, "sluice: cannot allocate %llu bytes of guest memory: %s\n",
			(unsigned long long)vm->ram_size, strerror(errno));
		goto err_close_vm;
	}
	ret = set_region(vm, 0, 0, vm->low_size, vm->ram);
	if (!ret && vm->high_size)
		ret = set_region(vm, 1, SLUICE_HIGH_RAM_START, vm->high_size, vm->ram + vm->low_size);
	if (ret) {
		fprintf(stderr, "sluice: KVM_SET_USER_MEMORY_REGION: %s\n", strerror(-ret));
		goto err_unmap_ram;
	}
	return 0;

err_unmap_ram:
	munmap(vm->ram, vm->ram_size);
	vm->ram = NULL;
err_close_vm:
	close(vm->vm_fd);
	vm->vm_fd = -1;
err_free_cpuid:
	free(vm->cpuid);
	vm->cpuid = NULL;
err_close_kvm:
	close(vm->kvm_fd);
	vm->kvm_fd = -1;
	return ret;
}

/* Undo sluice_kvm_init(); the vCPUs are gone already.  Main thread. */
void sluice_kvm_exit(struct sluice_vm *vm)
{
	if (vm->ram)
		munmap(vm->ram, vm->ram_size);
	vm->ram = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	vm->vm_fd = -1;
	free(vm->cpuid);
	vm->cpuid = NULL;
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->kvm_fd = -1;
}
