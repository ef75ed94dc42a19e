// SPDX-License-Identifier: GPL-2.0
/* test_virtio_pci.c - the virtio-pci transport without KVM: device status (NEEDS_RESET vs driver writes), Bus Master off and on, notify capabilities. */
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/virtio_config.h>

#include "ktap.h"
#include "pci.h"
#include "virtio-pci.h"
#include "vmm.h"

#define CC_GFSELECT	0x08
#define CC_GF		0x0c
#define CC_STATUS	0x14
#define S_FEAT		(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK)

static struct sluice_vm vm;
static struct sluice_virtio_pci vp, vp_mmio;
static unsigned int starts, resets, stops;

/* A device with one queue that only counts start and reset (vCPU thread, transport lock held). */
static uint64_t dev_features(void *dev) { return 0; }
static unsigned int dev_num_queues(void *dev) { return 1; }
static uint16_t dev_queue_size(void *dev) { return 16; }
static void dev_config_read(void *dev, unsigned int off, uint8_t *data, unsigned int len) { memset(data, 0, len); }
static void dev_config_write(void *dev, unsigned int off, const uint8_t *data, unsigned int len) { }
static int dev_start(void *dev, uint64_t features) { starts++; return 0; }
static void dev_reset(void *dev) { resets++; }
static void dev_stop(void *dev) { stops++; }

static const struct sluice_virtio_dev_ops dev_ops = {
	.name = "test", .device_type = 2, .class_code = 0x018000,
	.get_features = dev_features, .num_queues = dev_num_queues, .max_queue_size = dev_queue_size,
	.config_read = dev_config_read, .config_write = dev_config_write,
	.start = dev_start, .reset = dev_reset, .stop = dev_stop,
};

/* A guest write of @len bytes to BAR 0 at @off, as a vCPU's MMIO exit. */
static void bar_write(uint64_t off, uint32_t v, unsigned int len)
{
	uint8_t data[4] = { v, v >> 8, v >> 16, v >> 24 };

	sluice_pci_mmio(&vm, vp.pci.bar_addr[0] + off, true, data, len);
}

static uint8_t status_read(void)
{
	uint8_t data;

	sluice_pci_mmio(&vm, vp.pci.bar_addr[0] + CC_STATUS, false, &data, 1);
	return data;
}

/* A guest config access of @len bytes at @off of @dev through 0xcf8/0xcfc. */
static uint32_t cfg_access(struct sluice_pci_dev *dev, unsigned int off, bool is_write, uint32_t v,
			   unsigned int len)
{
	uint8_t addr[4], data[4] = { v, v >> 8, v >> 16, v >> 24 };
	uint32_t a = 0x80000000u | dev->slot << 11 | (off & 0xfc);

	memcpy(addr, &a, 4);
	sluice_pci_port_io(&vm, 0xcf8, true, addr, 4);
	sluice_pci_port_io(&vm, 0xcfc + (off & 3), is_write, data, len);
	return data[0] | data[1] << 8 | data[2] << 16 | (uint32_t)data[3] << 24;
}

/* A guest write of the PCI command register through 0xcf8/0xcfc. */
static void command_write(uint16_t cmd)
{
	cfg_access(&vp.pci, PCI_COMMAND, true, cmd, 2);
}

/* Offer VERSION_1 (driver features word 1, bit 0) and reach FEATURES_OK. */
static void negotiate(void)
{
	bar_write(CC_STATUS, 0, 1);
	bar_write(CC_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
	bar_write(CC_GFSELECT, 1, 4);
	bar_write(CC_GF, 1, 4);
	bar_write(CC_STATUS, S_FEAT, 1);
}

static enum ktap_result setup(void)
{
	vm.vm_fd = -1;		/* KVM calls fail; the transport lives on without ioeventfds/irqfds */
	pthread_mutex_init(&vm.irq_lock, NULL);
	KTAP_EXPECT(sluice_pci_init(&vm) == 0, "pci init");
	vp.notify = SLUICE_VIRTIO_NOTIFY_PIO;
	KTAP_EXPECT(sluice_virtio_pci_init(&vp, &vm, &dev_ops, NULL) == 0, "virtio-pci init");
	vp_mmio.notify = SLUICE_VIRTIO_NOTIFY_MMIO;
	KTAP_EXPECT(sluice_virtio_pci_init(&vp_mmio, &vm, &dev_ops, NULL) == 0, "second virtio-pci init");
	/* As firmware leaves it: port decoding on only for the device with an I/O BAR. */
	KTAP_EXPECT(cfg_access(&vp.pci, PCI_COMMAND, false, 0, 2) & PCI_COMMAND_IO, "port decoding off");
	negotiate();
	KTAP_EXPECT(status_read() == S_FEAT, "FEATURES_OK did not stick: 0x%x", status_read());
	return KTAP_PASS;
}

/* NEEDS_RESET survives driver writes, keeps DRIVER_OK from starting the device, and only status 0 clears it. */
static enum ktap_result needs_reset_kept(void)
{
	negotiate();
	starts = resets = 0;
	sluice_virtio_pci_needs_reset(&vp);
	bar_write(CC_STATUS, S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK, 1);
	KTAP_EXPECT(status_read() == (S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET),
		    "status 0x%x", status_read());
	KTAP_EXPECT(!starts, "a device that needs a reset was started");
	bar_write(CC_STATUS, S_FEAT, 1);
	KTAP_EXPECT(status_read() & VIRTIO_CONFIG_S_NEEDS_RESET, "the driver cleared NEEDS_RESET");
	bar_write(CC_STATUS, 0, 1);
	KTAP_EXPECT(status_read() == 0 && resets == 1, "status 0x%x after reset, %u resets", status_read(), resets);
	negotiate();
	bar_write(CC_STATUS, S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK, 1);
	KTAP_EXPECT(starts == 1, "not started after the reset");
	return KTAP_PASS;
}

/* The "IOThread": sets NEEDS_RESET once per round, while the "vCPU" writes the status. */
static unsigned int round_go, round_done;

static void *iothread_fn(void *opaque)
{
	unsigned int r, rounds = (uintptr_t)opaque;

	for (r = 1; r <= rounds; r++) {
		while (__atomic_load_n(&round_go, __ATOMIC_ACQUIRE) != r)
			;
		sluice_virtio_pci_needs_reset(&vp);
		__atomic_store_n(&round_done, r, __ATOMIC_RELEASE);
	}
	return NULL;
}

/*
 * A driver status write racing an IOThread's NEEDS_RESET must not wipe it:
 * the write is a compare-and-swap, not a load and a later store.
 */
static enum ktap_result needs_reset_race(void)
{
	const unsigned int rounds = 100000;
	unsigned int r, i, lost = 0;
	pthread_t t;

	negotiate();
	KTAP_EXPECT(pthread_create(&t, NULL, iothread_fn, (void *)(uintptr_t)rounds) == 0, "thread");
	for (r = 1; r <= rounds; r++) {
		/* What a reset leaves, without the reset's cost: status back to FEATURES_OK. */
		__atomic_store_n(&vp.status, S_FEAT, __ATOMIC_RELEASE);
		__atomic_store_n(&round_go, r, __ATOMIC_RELEASE);
		for (i = 0; i < 4 || __atomic_load_n(&round_done, __ATOMIC_ACQUIRE) != r; i++)
			bar_write(CC_STATUS, S_FEAT, 1);
		if (!(status_read() & VIRTIO_CONFIG_S_NEEDS_RESET))
			lost++;
	}
	pthread_join(t, NULL);
	KTAP_EXPECT(!lost, "a driver write wiped NEEDS_RESET in %u of %u rounds", lost, rounds);
	bar_write(CC_STATUS, 0, 1);
	return KTAP_PASS;
}

/*
 * Bus Master off while the device runs stops its DMA (QEMU's
 * virtio_write_config): the device is stopped (not reset), DRIVER_OK drops,
 * the rest of the status stays; DRIVER_OK again starts it afresh.
 */
static enum ktap_result bus_master_off_stops(void)
{
	negotiate();
	starts = resets = stops = 0;
	command_write(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	bar_write(CC_STATUS, S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK, 1);
	KTAP_EXPECT(starts == 1 && vp.started, "not started");
	command_write(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	KTAP_EXPECT(!stops && vp.started, "stopped with Bus Master still on");
	command_write(PCI_COMMAND_MEMORY);
	KTAP_EXPECT(stops == 1 && !resets && !vp.started, "%u stops, %u resets", stops, resets);
	KTAP_EXPECT(status_read() == S_FEAT, "status 0x%x, want 0x%x", status_read(), S_FEAT);
	command_write(PCI_COMMAND_MEMORY);
	KTAP_EXPECT(stops == 1, "a stopped device stopped again");
	command_write(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	bar_write(CC_STATUS, S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK, 1);
	KTAP_EXPECT(starts == 2 && vp.started, "not started again");
	/* A device that needs a reset keeps NEEDS_RESET through the stop. */
	sluice_virtio_pci_needs_reset(&vp);
	command_write(PCI_COMMAND_MEMORY);
	KTAP_EXPECT(stops == 2 && status_read() == (S_FEAT | VIRTIO_CONFIG_S_NEEDS_RESET), "status 0x%x",
		    status_read());
	bar_write(CC_STATUS, 0, 1);
	KTAP_EXPECT(status_read() == 0 && resets == 1, "reset");
	return KTAP_PASS;
}

/*
 * DRIVER_OK written while Bus Master is off (QEMU: the device is disabled):
 * kept in the status, but the device starts only once Bus Master is on.
 * Before any command write (the reset value) the device is not disabled.
 */
static enum ktap_result driver_ok_waits_for_bus_master(void)
{
	negotiate();
	starts = stops = 0;
	command_write(PCI_COMMAND_MEMORY);
	bar_write(CC_STATUS, S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK, 1);
	KTAP_EXPECT(!starts && !vp.started, "started with Bus Master off");
	KTAP_EXPECT(status_read() == (S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK), "status 0x%x", status_read());
	command_write(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	KTAP_EXPECT(starts == 1 && vp.started, "not started when Bus Master came on");
	command_write(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	KTAP_EXPECT(starts == 1, "started twice");
	/* Needs a reset: Bus Master on again does not start it. */
	command_write(PCI_COMMAND_MEMORY);
	bar_write(CC_STATUS, S_FEAT | VIRTIO_CONFIG_S_DRIVER_OK, 1);
	sluice_virtio_pci_needs_reset(&vp);
	command_write(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	KTAP_EXPECT(starts == 1 && !vp.started, "a device that needs a reset was started");
	bar_write(CC_STATUS, 0, 1);
	return KTAP_PASS;
}

/*
 * The virtio notify capabilities of @dev, in list order, as a driver walks
 * them: fills @bar and @mult (up to 4) and returns how many there are.
 */
static unsigned int notify_caps(struct sluice_pci_dev *dev, unsigned int *bar, uint32_t *mult, uint32_t *len)
{
	unsigned int pos = cfg_access(dev, PCI_CAPABILITY_LIST, false, 0, 1), n = 0, guard = 0;

	while (pos && guard++ < 48) {
		if (cfg_access(dev, pos, false, 0, 1) == PCI_CAP_ID_VNDR &&
		    cfg_access(dev, pos + 3, false, 0, 1) == 2 /* VIRTIO_PCI_CAP_NOTIFY_CFG */ && n < 4) {
			bar[n] = cfg_access(dev, pos + 4, false, 0, 1);
			len[n] = cfg_access(dev, pos + 12, false, 0, 4);
			mult[n++] = cfg_access(dev, pos + 16, false, 0, 4);
		}
		pos = cfg_access(dev, pos + 1, false, 0, 1);
	}
	return n;
}

/* Main thread: the number of kicks @fd holds (0 if none), which it then forgets. */
static uint64_t kicks(int fd)
{
	uint64_t v = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, 0) == 1 && read(fd, &v, sizeof(v)) != sizeof(v))
		v = 0;
	return v;
}

/*
 * notify=pio: an I/O BAR 1 of 4 ports (sized as a PCI I/O BAR, upper bits
 * hardwired to 0), a notify capability on it with
 * multiplier 0 before the MMIO one, so a driver that takes the first one it
 * can map kicks with a port write of the queue index.  Without ioeventfds
 * (no KVM here) the write exits and the transport kicks the queue itself;
 * a bad index, a byte write or a read kicks nothing.  The BAR can move.
 */
static enum ktap_result pio_notify(void)
{
	unsigned int bar[4], n;
	uint32_t mult[4], len[4], reg, port;
	uint8_t data[2] = { 0, 0 };

	n = notify_caps(&vp.pci, bar, mult, len);
	KTAP_EXPECT(n == 2, "%u notify capabilities", n);
	KTAP_EXPECT(bar[0] == 1 && mult[0] == 0 && len[0] == 2, "first: BAR %u, mult %u, len %u", bar[0], mult[0],
		    len[0]);
	KTAP_EXPECT(bar[1] == 0 && mult[1] == 4, "second: BAR %u, mult %u", bar[1], mult[1]);
	reg = cfg_access(&vp.pci, PCI_BASE_ADDRESS_1, false, 0, 4);
	KTAP_EXPECT((reg & PCI_BASE_ADDRESS_SPACE) == PCI_BASE_ADDRESS_SPACE_IO && reg >= SLUICE_PCI_IO_START &&
		    reg < 0x10000, "BAR 1 = 0x%x", reg);
	cfg_access(&vp.pci, PCI_BASE_ADDRESS_1, true, 0xffffffff, 4);
	KTAP_EXPECT(cfg_access(&vp.pci, PCI_BASE_ADDRESS_1, false, 0, 4) == 0xfffd, "sizing read 0x%x",
		    cfg_access(&vp.pci, PCI_BASE_ADDRESS_1, false, 0, 4));
	cfg_access(&vp.pci, PCI_BASE_ADDRESS_1, true, reg, 4);
	port = reg & PCI_BASE_ADDRESS_IO_MASK;
	KTAP_EXPECT(vp.pci.bar_addr[1] == port, "BAR 1 decodes at 0x%llx after sizing",
		    (unsigned long long)vp.pci.bar_addr[1]);

	kicks(vp.queues[0].kick_fd);
	KTAP_EXPECT(sluice_pci_pio(&vm, port, true, data, 2), "the notify port is not dispatched");
	KTAP_EXPECT(kicks(vp.queues[0].kick_fd) == 1, "queue 0 not kicked");
	data[0] = 1;		/* the device has one queue */
	sluice_pci_pio(&vm, port, true, data, 2);
	data[0] = 0;
	sluice_pci_pio(&vm, port, true, data, 1);
	sluice_pci_pio(&vm, port, false, data, 2);
	KTAP_EXPECT(!kicks(vp.queues[0].kick_fd) && !data[0] && !data[1], "a bad notify kicked or read back");
	KTAP_EXPECT(!sluice_pci_pio(&vm, port + 4, true, data, 2), "a port past the BAR was dispatched");
	KTAP_EXPECT(!sluice_pci_pio(&vm, 0x80, true, data, 1), "a legacy port was dispatched");

	/* The guest moves the BAR: the new port kicks, the old one is nobody's. */
	cfg_access(&vp.pci, PCI_BASE_ADDRESS_1, true, 0xd000 | PCI_BASE_ADDRESS_SPACE_IO, 4);
	KTAP_EXPECT(!sluice_pci_pio(&vm, port, true, data, 2), "the old port still decodes");
	KTAP_EXPECT(sluice_pci_pio(&vm, 0xd000, true, data, 2) && kicks(vp.queues[0].kick_fd) == 1,
		    "the moved port does not kick");
	cfg_access(&vp.pci, PCI_BASE_ADDRESS_1, true, reg, 4);
	KTAP_EXPECT(!strcmp(sluice_virtio_notify_name(vp.notify), "pio"), "name %s",
		    sluice_virtio_notify_name(vp.notify));
	return KTAP_PASS;
}

/* notify=mmio: no I/O BAR, one notify capability (BAR 0, multiplier 4); a write there kicks. */
static enum ktap_result mmio_notify(void)
{
	unsigned int bar[4], n;
	uint32_t mult[4], len[4];
	uint8_t data[2] = { 0, 0 };

	n = notify_caps(&vp_mmio.pci, bar, mult, len);
	KTAP_EXPECT(n == 1 && bar[0] == 0 && mult[0] == 4, "%u notify capabilities, BAR %u, mult %u", n, bar[0],
		    mult[0]);
	KTAP_EXPECT(!cfg_access(&vp_mmio.pci, PCI_BASE_ADDRESS_1, false, 0, 4) && !vp_mmio.pci.bar_size[1],
		    "an I/O BAR without PIO notify");
	KTAP_EXPECT(!(cfg_access(&vp_mmio.pci, PCI_COMMAND, false, 0, 2) & PCI_COMMAND_IO), "port decoding on");
	kicks(vp_mmio.queues[0].kick_fd);
	KTAP_EXPECT(sluice_pci_mmio(&vm, vp_mmio.pci.bar_addr[0] + 0x3000, true, data, 2) &&
		    kicks(vp_mmio.queues[0].kick_fd) == 1, "an MMIO notify write did not kick");
	KTAP_EXPECT(!strcmp(sluice_virtio_notify_name(vp_mmio.notify), "mmio"), "name");
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(setup), KTAP_CASE(needs_reset_kept), KTAP_CASE(needs_reset_race),
	  KTAP_CASE(bus_master_off_stops), KTAP_CASE(driver_ok_waits_for_bus_master), KTAP_CASE(pio_notify),
	  KTAP_CASE(mmio_notify))
