// SPDX-License-Identifier: GPL-2.0
/* kvm_smoke.c - lab test: /dev/kvm creates a VM, runs real-mode code to PIO, MMIO and HLT exits, has the VMM's caps. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "ktap.h"

#define GUEST_MEM	0x4000
#define CODE_GPA	0x1000
#define MMIO_GPA	0x8000	/* outside the memory slot: an MMIO exit */

static int kvm_fd = -1;

static enum ktap_result api_version(void)
{
	int v;

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	KTAP_EXPECT(kvm_fd >= 0, "open /dev/kvm: %s", strerror(errno));
	v = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
	KTAP_EXPECT(v == KVM_API_VERSION, "KVM_GET_API_VERSION %d, expected %d", v, KVM_API_VERSION);
	return KTAP_PASS;
}

static enum ktap_result vmm_capabilities(void)
{
	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_IRQCHIP, "IRQCHIP" },
		{ KVM_CAP_PIT2, "PIT2" },
		{ KVM_CAP_IRQFD, "IRQFD" },
		{ KVM_CAP_IOEVENTFD, "IOEVENTFD" },
		{ KVM_CAP_IRQ_ROUTING, "IRQ_ROUTING" },
		{ KVM_CAP_SIGNAL_MSI, "SIGNAL_MSI" },
		{ KVM_CAP_USER_MEMORY, "USER_MEMORY" },
		{ KVM_CAP_EXT_CPUID, "EXT_CPUID" },
	};
	size_t i;

	KTAP_SKIP_IF(kvm_fd < 0, "no /dev/kvm");
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		KTAP_EXPECT(ioctl(kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) > 0,
			    "KVM_CAP_%s missing", caps[i].name);
	return KTAP_PASS;
}

/*
 * 16-bit real mode at CODE_GPA:
 *	mov dx, 0x3f8; mov al, 'S'; out dx, al
 *	mov byte [MMIO_GPA], 0x42
 *	hlt
 */
static const uint8_t guest_code[] = {
	0xba, 0xf8, 0x03, 0xb0, 'S', 0xee,
	0xc6, 0x06, MMIO_GPA & 0xff, MMIO_GPA >> 8, 0x42,
	0xf4,
};

static enum ktap_result run_guest(void)
{
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	int vm, vcpu, mmap_size, ret = KTAP_FAIL;
	uint8_t *mem;

	KTAP_SKIP_IF(kvm_fd < 0, "no /dev/kvm");
	KTAP_SYSCALL(vm = ioctl(kvm_fd, KVM_CREATE_VM, 0));
	mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	KTAP_EXPECT(mem != MAP_FAILED, "mmap guest memory: %s", strerror(errno));
	memcpy(mem + CODE_GPA, guest_code, sizeof(guest_code));
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = GUEST_MEM,
		.userspace_addr = (uintptr_t)mem,
	};
	KTAP_SYSCALL(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region));
	KTAP_SYSCALL(vcpu = ioctl(vm, KVM_CREATE_VCPU, 0));
	KTAP_SYSCALL(mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0));
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	KTAP_EXPECT(run != MAP_FAILED, "mmap kvm_run: %s", strerror(errno));

	KTAP_SYSCALL(ioctl(vcpu, KVM_GET_SREGS, &sregs));
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	KTAP_SYSCALL(ioctl(vcpu, KVM_SET_SREGS, &sregs));
	regs = (struct kvm_regs){ .rip = CODE_GPA, .rflags = 0x2 };
	KTAP_SYSCALL(ioctl(vcpu, KVM_SET_REGS, &regs));

	KTAP_SYSCALL(ioctl(vcpu, KVM_RUN, 0));
	KTAP_EXPECT(run->exit_reason == KVM_EXIT_IO, "exit %u, expected IO", run->exit_reason);
	KTAP_EXPECT(run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8 &&
		    run->io.size == 1 && run->io.count == 1 &&
		    *((uint8_t *)run + run->io.data_offset) == 'S',
		    "unexpected PIO exit: dir %u port 0x%x size %u", run->io.direction,
		    run->io.port, run->io.size);

	KTAP_SYSCALL(ioctl(vcpu, KVM_RUN, 0));
	KTAP_EXPECT(run->exit_reason == KVM_EXIT_MMIO, "exit %u, expected MMIO", run->exit_reason);
	KTAP_EXPECT(run->mmio.phys_addr == MMIO_GPA && run->mmio.is_write && run->mmio.len == 1 &&
		    run->mmio.data[0] == 0x42, "unexpected MMIO exit at 0x%llx",
		    (unsigned long long)run->mmio.phys_addr);

	KTAP_SYSCALL(ioctl(vcpu, KVM_RUN, 0));
	KTAP_EXPECT(run->exit_reason == KVM_EXIT_HLT, "exit %u, expected HLT", run->exit_reason);
	KTAP_SYSCALL(ioctl(vcpu, KVM_GET_REGS, &regs));
	KTAP_EXPECT(regs.rip == CODE_GPA + sizeof(guest_code), "rip 0x%llx after hlt",
		    (unsigned long long)regs.rip);
	ret = KTAP_PASS;

	munmap(run, mmap_size);
	close(vcpu);
	munmap(mem, GUEST_MEM);
	close(vm);
	return ret;
}

KTAP_MAIN(KTAP_CASE(api_version), KTAP_CASE(vmm_capabilities), KTAP_CASE(run_guest))
