// SPDX-License-Identifier: GPL-2.0
/* cpu.c - vCPUs: CPUID, MSRs, LAPIC LVTs, 64-bit long-mode entry state and the KVM_RUN threads. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm.h"

#define SIG_VCPU_KICK	SIGUSR1

#define MSR_IA32_TSC		0x10
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_MTRR_DEF_TYPE	0x2ff
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102

#define X86_CR0_PE		(1U << 0)
#define X86_CR0_ET		(1U << 4)
#define X86_CR0_PG		(1U << 31)
#define X86_CR4_PAE		(1U << 5)
#define EFER_LME		(1U << 8)
#define EFER_LMA		(1U << 10)

#define APIC_LVT0		0x350
#define APIC_LVT1		0x360
#define APIC_MODE_NMI		0x4
#define APIC_MODE_EXTINT	0x7

/* The kvm_run of the vCPU running on this thread, for the kick signal. */
static __thread struct kvm_run *current_run;

/* SIG_VCPU_KICK handler: make this thread's next (or current) KVM_RUN return. vCPU threads. */
static void vcpu_kick_handler(int sig)
{
	if (current_run)
		current_run->immediate_exit = 1;
}

/* Main thread, before the vCPU first runs: its CPUID (KVM's supported set, adjusted per vCPU). */
static int set_cpuid(struct sluice_vcpu *vcpu)
{
	struct sluice_vm *vm = vcpu->vm;
	struct kvm_cpuid2 *cpuid;
	bool tsc_deadline;
	size_t size;
	uint32_t i;
	int ret = 0;

	/*
	 * KVM's in-kernel LAPIC emulates the TSC-deadline timer, but
	 * KVM_GET_SUPPORTED_CPUID does not report it: advertise it when KVM
	 * can, so that Linux need not calibrate the LAPIC timer against the PIT
	 * at boot (slow, and unreliable when nested).
	 */
	tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	size = sizeof(*cpuid) + vm->cpuid->nent * sizeof(cpuid->entries[0]);
	cpuid = malloc(size);
	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, vm->cpuid, size);
	for (i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			/* initial APIC id, logical processor count; the hypervisor bit */
			e->ebx = (e->ebx & 0x0000ffff) | (vcpu->id << 24) |
				 ((vm->nr_cpus & 0xff) << 16);
			e->ecx |= 1U << 31;
			if (tsc_deadline)
				e->ecx |= 1U << 24;	/* TSC-deadline timer mode */
			if (vm->nr_cpus > 1)
				e->edx |= 1U << 28;	/* HTT: the count above is valid */
			break;
		case 0xb:
		case 0x1f:
			e->edx = vcpu->id;	/* x2APIC id */
			break;
		case 6:
			e->ecx &= ~(1U << 3);	/* no energy-performance bias MSR */
			break;
		default:
			break;
		}
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0)
		ret = -errno;
	free(cpuid);
	return ret;
}

static int set_msrs(struct sluice_vcpu *vcpu)
{
	static const struct { uint32_t index; uint64_t data; } init[] = {
		{ MSR_IA32_SYSENTER_CS, 0 },
		{ MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 },
		{ MSR_LSTAR, 0 },
		{ MSR_CSTAR, 0 },
		{ MSR_SYSCALL_MASK, 0 },
		{ MSR_KERNEL_GS_BASE, 0 },
		{ MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, 1 },		/* fast strings */
		{ MSR_MTRR_DEF_TYPE, (1 << 11) | 6 },	/* MTRRs on, default write-back */
	};
	const size_t n = sizeof(init) / sizeof(init[0]);
	struct kvm_msrs *msrs;
	size_t i;
	int ret;

	msrs = calloc(1, sizeof(*msrs) + n * sizeof(msrs->entries[0]));
	if (!msrs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		msrs->entries[i].index = init[i].index;
		msrs->entries[i].data = init[i].data;
	}
	msrs->nmsrs = n;
	ret = ioctl(vcpu->fd, KVM_SET_MSRS, msrs);
	if (ret < 0) {
		ret = -errno;
	} else if ((size_t)ret != n) {
		/* KVM_SET_MSRS returns how many it set; a short count names the first refused MSR. */
		fprintf(stderr, "sluice: vcpu %u: KVM refused MSR 0x%x\n", vcpu->id,
			msrs->entries[ret].index);
		ret = -EINVAL;
	} else {
		ret = 0;
	}
	free(msrs);
	return ret;
}

static int set_lapic(struct sluice_vcpu *vcpu)
{
	struct kvm_lapic_state lapic;
	uint32_t *lvt0 = (uint32_t *)&lapic.regs[APIC_LVT0];
	uint32_t *lvt1 = (uint32_t *)&lapic.regs[APIC_LVT1];

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	/* As a PC's BIOS leaves them: LINT0 is the 8259's ExtINT, LINT1 the NMI. */
	*lvt0 = (*lvt0 & ~0x10700U) | (APIC_MODE_EXTINT << 8);
	*lvt1 = (*lvt1 & ~0x10700U) | (APIC_MODE_NMI << 8);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

/* Identity-map the first 4 GiB with 2 MiB pages: PML4, one PDPT, four page directories. */
static int build_page_tables(struct sluice_vm *vm)
{
	uint64_t *pml4, *pdpt, *pd;
	unsigned int i;

	pml4 = sluice_gpa_to_hva(vm, SLUICE_PML4_ADDR, 6 * 4096);
	if (!pml4)
		return -ENOMEM;
	memset(pml4, 0, 6 * 4096);
	pdpt = pml4 + 512;
	pd = pml4 + 1024;
	pml4[0] = (SLUICE_PML4_ADDR + 0x1000) | 0x3;		/* present, writable */
	for (i = 0; i < 4; i++)
		pdpt[i] = (SLUICE_PML4_ADDR + 0x2000 + i * 0x1000) | 0x3;
	for (i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;		/* present, writable, 2 MiB */
	return 0;
}

static int set_boot_state(struct sluice_vcpu *vcpu)
{
	struct sluice_vm *vm = vcpu->vm;
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb,
		.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = 0x18, .type = 0x3,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint64_t *gdt;
	int ret;

	gdt = sluice_gpa_to_hva(vm, SLUICE_GDT_ADDR, 4 * sizeof(uint64_t));
	if (!gdt)
		return -ENOMEM;
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffULL;	/* 0x10: 64-bit code, as __BOOT_CS */
	gdt[3] = 0x00cf93000000ffffULL;	/* 0x18: flat data, as __BOOT_DS */
	ret = build_page_tables(vm);
	if (ret)
		return ret;

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.gdt.base = SLUICE_GDT_ADDR;
	sregs.gdt.limit = 4 * sizeof(uint64_t) - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cs = code;
	sregs.ds = data;
	sregs.es = data;
	sregs.fs = data;
	sregs.gs = data;
	sregs.ss = data;
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
	sregs.cr3 = SLUICE_PML4_ADDR;
	sregs.cr4 = X86_CR4_PAE;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = vm->entry;
	regs.rsi = SLUICE_BOOT_PARAMS;
	regs.rsp = SLUICE_BOOT_PARAMS;	/* not used by the 64-bit entry, but sane */
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

/*
 * Create every vCPU with its CPUID, MSRs and LAPIC; the boot CPU also gets the long-mode
 * entry state (the others wait for INIT/SIPI in the in-kernel LAPIC).  The kernel must be
 * loaded (vm->entry set).  Main thread.
 */
int sluice_vcpus_create(struct sluice_vm *vm)
{
	unsigned int i;
	int ret;

	vm->vcpus = calloc(vm->nr_cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (i = 0; i < vm->nr_cpus; i++) {
		struct sluice_vcpu *vcpu = &vm->vcpus[i];

		vcpu->vm = vm;
		vcpu->id = i;
		vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (vcpu->fd < 0) {
			ret = -errno;
			fprintf(stderr, "sluice: KVM_CREATE_VCPU %u: %s\n", i, strerror(errno));
			goto err_destroy;
		}
		vcpu->run = mmap(NULL, vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				 vcpu->fd, 0);
		if (vcpu->run == MAP_FAILED) {
			ret = -errno;
			vcpu->run = NULL;
			fprintf(stderr, "sluice: mmap of vcpu %u: %s\n", i, strerror(errno));
			goto err_destroy;
		}
		ret = set_cpuid(vcpu);
		if (ret) {
			fprintf(stderr, "sluice: KVM_SET_CPUID2 on vcpu %u: %s\n", i, strerror(-ret));
			goto err_destroy;
		}
		ret = set_msrs(vcpu);
		if (!ret)
			ret = set_lapic(vcpu);
		if (!ret && i == 0)
			ret = set_boot_state(vcpu);
		if (ret) {
			fprintf(stderr, "sluice: initialising vcpu %u: %s\n", i, strerror(-ret));
			goto err_destroy;
		}
	}
	return 0;

err_destroy:
	sluice_vcpus_destroy(vm);
	return ret;
}

static void handle_system_event(struct sluice_vcpu *vcpu)
{
	switch (vcpu->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		sluice_vm_request_exit(vcpu->vm, 0, "guest powered off");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		sluice_vm_request_exit(vcpu->vm, 0, "guest reset");
		break;
	default:
		sluice_vm_request_exit(vcpu->vm, 1, "vcpu %u: system event %u", vcpu->id,
				       vcpu->run->system_event.type);
		break;
	}
}

/* Handle one exit of KVM_RUN. vCPU thread. */
static void handle_exit(struct sluice_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	sluice_ioport_flush(vcpu);	/* queued port writes come before whatever this exit does */
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		sluice_ioport_exit(vcpu);
		break;
	case KVM_EXIT_MMIO:
		sluice_mmio_exit(vcpu);
		break;
	case KVM_EXIT_SHUTDOWN: {
		struct kvm_regs regs;

		/*
		 * A triple fault: what a PC does then is reset.  Not a clean
		 * reboot, though: say so (a guest that crashed this way prints
		 * nothing itself).
		 */
		if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0)
			fprintf(stderr, "sluice: vcpu %u: triple fault at rip 0x%llx, rsp 0x%llx; resetting\n",
				vcpu->id, (unsigned long long)regs.rip, (unsigned long long)regs.rsp);
		else
			fprintf(stderr, "sluice: vcpu %u: triple fault; resetting\n", vcpu->id);
		sluice_vm_request_exit(vcpu->vm, 0, "guest reset (triple fault on vcpu %u)", vcpu->id);
		break;
	}
	case KVM_EXIT_HLT:
		sluice_vm_request_exit(vcpu->vm, 0, "guest halted");
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		handle_system_event(vcpu);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		sluice_vm_request_exit(vcpu->vm, 1, "vcpu %u: entry failed, reason 0x%llx",
				       vcpu->id,
				       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		sluice_vm_request_exit(vcpu->vm, 1, "vcpu %u: KVM internal error, suberror %u",
				       vcpu->id, run->internal.suberror);
		break;
	case KVM_EXIT_INTR:
		break;
	default:
		sluice_vm_request_exit(vcpu->vm, 1, "vcpu %u: unhandled exit reason %u", vcpu->id,
				       run->exit_reason);
		break;
	}
}

/* The vCPU thread: KVM_RUN until the VM stops. */
static void *vcpu_thread(void *arg)
{
	struct sluice_vcpu *vcpu = arg;
	struct sluice_vm *vm = vcpu->vm;
	char name[16];
	sigset_t set;

	snprintf(name, sizeof(name), "vcpu%u", vcpu->id);
	pthread_setname_np(pthread_self(), name);
	current_run = vcpu->run;
	sigemptyset(&set);
	sigaddset(&set, SIG_VCPU_KICK);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (!vm->stopping) {
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->run->immediate_exit = 0;
				continue;
			}
			sluice_vm_request_exit(vm, 1, "vcpu %u: KVM_RUN: %s", vcpu->id, strerror(errno));
			break;
		}
		handle_exit(vcpu);
		if (vm->exit_requested)
			break;
	}
	return NULL;
}

/*
 * Install the kick signal's handler and start one thread per vCPU.  The kick is only
 * ever sent to vCPU threads (sluice_vcpus_stop()).  Main thread.
 */
int sluice_vcpus_start(struct sluice_vm *vm)
{
	struct sigaction sa;
	unsigned int i;
	int ret;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = vcpu_kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIG_VCPU_KICK, &sa, NULL) < 0)
		return -errno;
	for (i = 0; i < vm->nr_cpus; i++) {
		ret = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (ret) {
			fprintf(stderr, "sluice: cannot start vcpu %u: %s\n", i, strerror(ret));
			return -ret;
		}
		vm->vcpus[i].started = true;
	}
	return 0;
}

/* Stop and join every vCPU thread. Main thread. */
void sluice_vcpus_stop(struct sluice_vm *vm)
{
	unsigned int i;

	vm->stopping = true;
	__sync_synchronize();
	for (i = 0; i < vm->nr_cpus; i++) {
		if (vm->vcpus && vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, SIG_VCPU_KICK);
	}
	for (i = 0; i < vm->nr_cpus; i++) {
		if (vm->vcpus && vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
}

/* Close the vCPUs (threads already stopped). Main thread. */
void sluice_vcpus_destroy(struct sluice_vm *vm)
{
	unsigned int i;

	if (!vm->vcpus)
		return;
	for (i = 0; i < vm->nr_cpus; i++) {
		struct sluice_vcpu *vcpu = &vm->vcpus[i];

		if (vcpu->run)
			munmap(vcpu->run, vm->vcpu_mmap_size);
		if (vcpu->fd > 0)
			close(vcpu->fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
}
