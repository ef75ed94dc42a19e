/* SPDX-License-Identifier: GPL-2.0 */
/* vmm.h - the sluice VMM's shared state: the VM, its memory map, vCPUs, devices and the exit protocol. */
#ifndef SLUICE_VMM_H
#define SLUICE_VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#define SLUICE_MAX_CPUS		64
#define SLUICE_DEFAULT_MEM	(256ULL << 20)
#define SLUICE_MIN_MEM		(16ULL << 20)

/* Guest physical memory map (see Documentation/vmm.rst). */
#define SLUICE_PCI_HOLE_START	0xc0000000ULL	/* RAM above 3 GiB is relocated to 4 GiB */
#define SLUICE_HIGH_RAM_START	0x100000000ULL
#define SLUICE_IDENTITY_MAP	0xfffbc000ULL	/* one page, KVM_SET_IDENTITY_MAP_ADDR */
#define SLUICE_TSS_ADDR		0xfffbd000ULL	/* three pages, KVM_SET_TSS_ADDR */
#define SLUICE_IOAPIC_ADDR	0xfec00000U
#define SLUICE_LAPIC_ADDR	0xfee00000U

/* Low memory used by the boot path. */
#define SLUICE_GDT_ADDR		0x0500ULL
#define SLUICE_BOOT_PARAMS	0x7000ULL
#define SLUICE_PML4_ADDR	0x9000ULL	/* PML4, PDPT, then four page directories */
#define SLUICE_CMDLINE_ADDR	0x20000ULL
#define SLUICE_CMDLINE_MAX	0x10000U
#define SLUICE_EBDA_START	0x9fc00ULL	/* RAM ends here below 1 MiB */
#define SLUICE_MPTABLE_ADDR	0xf0000ULL	/* MP floating pointer + config table */
#define SLUICE_KERNEL_MIN	0x100000ULL

/* PCI: devices' BARs are placed in this window of the PCI hole (below the IOAPIC). */
#define SLUICE_PCI_MMIO_START	0xe0000000ULL
#define SLUICE_PCI_MMIO_END	0xfe000000ULL
/* ... and I/O BARs in this port range (above the legacy ISA ports, as firmware places them). */
#define SLUICE_PCI_IO_START	0xc000u
#define SLUICE_PCI_IO_END	0x10000u
/* GSIs 0-23 are the PIC/IOAPIC pins; MSI routes start above them. */
#define SLUICE_MSI_GSI_BASE	24
#define SLUICE_MSI_MAX		256

struct sluice_drive_opts;

/* How the kernel reached guest memory (query-status "kernel-load"). */
enum sluice_kernel_load {
	SLUICE_KERNEL_BZIMAGE,			/* as a bzImage: the guest decompresses it */
	SLUICE_KERNEL_DECOMPRESSED,		/* decompressed here */
	SLUICE_KERNEL_DECOMPRESSED_STORED,	/* decompressed here, and kept in the kernel cache */
	SLUICE_KERNEL_CACHED,			/* from the kernel cache */
};

/* What the user asked for on the command line. */
#define SLUICE_MAX_DRIVES	16
#define SLUICE_MAX_IOTHREADS	64
struct sluice_config {
	const char *kernel;
	const char *initrd;
	const char *append;
	const char *kernel_cache;	/* --kernel-cache: a directory, "off", or NULL for the default */
	unsigned int nr_cpus;
	uint64_t mem_size;
	const char *control;
	unsigned int nr_drives;
	struct sluice_drive_opts *drives[SLUICE_MAX_DRIVES];
	unsigned int nr_iothreads;
	const char *iothreads[SLUICE_MAX_IOTHREADS];
};

struct sluice_vm;

struct sluice_vcpu {
	struct sluice_vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

/* The 16550 UART at 0x3f8; the fields are protected by @lock. */
#define SLUICE_SERIAL_FIFO	64
struct sluice_serial {
	pthread_mutex_t lock;
	pthread_cond_t space;
	struct sluice_vm *vm;
	int out_fd;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thri_pending;
	bool irq_level;
	uint8_t rx[SLUICE_SERIAL_FIFO];
	unsigned int rx_head, rx_count;
	int in_fd;
	bool in_thread_started;
	pthread_t in_thread;
};

/* The i8042 keyboard controller (i8042.c); the fields are protected by @lock. */
#define SLUICE_I8042_DATA	0x60
#define SLUICE_I8042_CMD	0x64
struct sluice_i8042 {
	pthread_mutex_t lock;
	uint8_t ctr;		/* controller configuration byte */
	uint8_t outp;		/* output port */
	uint8_t out;		/* output buffer */
	bool out_full;
	bool out_aux;
	bool last_cmd;		/* the last write went to 0x64 */
	uint8_t pending;	/* a command waiting for its parameter at 0x60, or 0 */
};

struct sluice_vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;

	uint8_t *ram;
	uint64_t ram_size;
	uint64_t low_size;	/* RAM at GPA 0 .. low_size */
	uint64_t high_size;	/* RAM at 4 GiB .. 4 GiB + high_size */

	struct kvm_cpuid2 *cpuid;
	unsigned int nr_cpus;
	struct sluice_vcpu *vcpus;

	uint64_t entry;		/* 64-bit entry point of the kernel */
	enum sluice_kernel_load kernel_load;

	struct sluice_serial serial;
	struct sluice_i8042 i8042;
	struct sluice_pci_bus *pci;

	/* MSI routes (irq.c), under irq_lock: GSI SLUICE_MSI_GSI_BASE + i is msi[i] when msi_used[i]. */
	pthread_mutex_t irq_lock;
	unsigned int nr_msi;
	struct kvm_irq_routing_msi msi[SLUICE_MSI_MAX];
	bool msi_valid[SLUICE_MSI_MAX];

	/*
	 * Port writes KVM queues instead of exiting (the PCI address port, ioport.c): the
	 * VM's ring, drained by whichever vCPU thread handles an exit next, under
	 * coalesced_lock.  NULL when KVM cannot coalesce port I/O.
	 */
	struct kvm_coalesced_mmio_ring *coalesced;
	unsigned int coalesced_max;
	pthread_mutex_t coalesced_lock;

	int exit_fd;		/* eventfd written by sluice_vm_request_exit(): wakes the main loop */
	uint8_t cmos_index;

	/* The exit protocol: the first request wins; the main thread waits for it. */
	pthread_mutex_t exit_lock;
	pthread_cond_t exit_cond;
	bool exit_requested;
	int exit_status;
	char exit_reason[128];
	volatile bool stopping;
};

/* kvm.c */
int sluice_kvm_init(struct sluice_vm *vm, const struct sluice_config *cfg);
void sluice_kvm_exit(struct sluice_vm *vm);
void *sluice_gpa_to_hva(struct sluice_vm *vm, uint64_t gpa, uint64_t len);
void sluice_vm_request_exit(struct sluice_vm *vm, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int sluice_irq_line(struct sluice_vm *vm, unsigned int irq, int level);
void sluice_ram_layout(uint64_t ram_size, uint64_t *low, uint64_t *high);

/* cpu.c */
int sluice_vcpus_create(struct sluice_vm *vm);
int sluice_vcpus_start(struct sluice_vm *vm);
void sluice_vcpus_stop(struct sluice_vm *vm);
void sluice_vcpus_destroy(struct sluice_vm *vm);

/* boot.c */
#define SLUICE_E820_MAX	8
struct sluice_e820 {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};
int sluice_e820_layout(uint64_t low_size, uint64_t high_size, struct sluice_e820 *map, unsigned int max);
int sluice_bzimage_check(const uint8_t *image, size_t len, uint64_t file_size, const char **why);
int sluice_boot_load(struct sluice_vm *vm, const struct sluice_config *cfg, char *err, size_t errlen);
struct setup_header;
uint64_t sluice_kernel_run_addr(const struct setup_header *hdr, uint64_t load_addr);
/* vmlinux.c */
int sluice_vmlinux_load(struct sluice_vm *vm, int fd, uint64_t off, uint32_t len, uint64_t min, uint64_t max,
			uint64_t scratch_end, int cache_fd, enum sluice_kernel_load *load, uint64_t *entry,
			uint64_t *end, const char **why);

/* kcache.c: the decompressed-kernel cache (main thread) */
#define SLUICE_KCACHE_HDR	64
struct sluice_kcache_key {
	uint64_t payload_len;
	uint64_t h[2];
};
const char *sluice_kernel_load_name(enum sluice_kernel_load load);
void sluice_kcache_key(const uint8_t *payload, size_t len, struct sluice_kcache_key *key);
int sluice_kcache_open(const char *dir, const char **why);
int sluice_kcache_lookup(int dirfd, const struct sluice_kcache_key *key, uint64_t *elf_len);
int sluice_kcache_store(int dirfd, const struct sluice_kcache_key *key, const uint8_t *elf, uint64_t len);

/* mptable.c */
int sluice_mptable_write(struct sluice_vm *vm);

/* serial.c */
int sluice_serial_init(struct sluice_vm *vm, int in_fd, int out_fd);
int sluice_serial_start_input(struct sluice_vm *vm);
void sluice_serial_exit(struct sluice_vm *vm);
void sluice_serial_io(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data);

/* i8042.c */
void sluice_i8042_init(struct sluice_vm *vm);
void sluice_i8042_exit(struct sluice_vm *vm);
void sluice_i8042_io(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data);

/* irq.c: MSI routes, irqfds and ioeventfds.  Any thread (they serialise on irq_lock / in KVM). */
int sluice_irq_init(struct sluice_vm *vm);
int sluice_msi_gsi_alloc(struct sluice_vm *vm);
int sluice_msi_route_set(struct sluice_vm *vm, int gsi, uint64_t addr, uint32_t data, bool valid);
int sluice_irqfd(struct sluice_vm *vm, int fd, int gsi, bool assign);
int sluice_irq_inject_nmi(struct sluice_vm *vm);
int sluice_ioeventfd(struct sluice_vm *vm, uint64_t addr, unsigned int len, int fd, bool assign);
int sluice_pio_eventfd(struct sluice_vm *vm, uint16_t port, unsigned int len, uint64_t match, int fd, bool assign);

/* ioport.c */
int sluice_ioport_coalesce(struct sluice_vm *vm);
void sluice_ioport_flush(struct sluice_vcpu *vcpu);
void sluice_ioport_exit(struct sluice_vcpu *vcpu);
void sluice_mmio_exit(struct sluice_vcpu *vcpu);

#endif /* SLUICE_VMM_H */
