// SPDX-License-Identifier: GPL-2.0
/* trace_kdriver.c - drive an exact number of requests through sluice_blk.ko's queues (no VM), for sluice-trace's tests. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/sluice_blk.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#define USAGE									\
	"usage: trace_kdriver [-o LIST] DISK R/W/F [R/W/F...]\n"		\
	"  one disk DISK (image in $SLUICE_LAB_SCRATCH), one queue per R/W/F: R reads of\n" \
	"  4 KiB, W writes of 8 KiB and F flushes, one at a time; LIST gets a line per\n" \
	"  request: DISK QUEUE OP SECTOR BYTES\n"

#define MAX_Q		SLUICE_BLK_MAX_QUEUES
#define QNUM		16
#define RAM_SIZE	(16u << 20)
#define IMG_SIZE	(64u << 20)
#define READ_BYTES	4096u
#define WRITE_BYTES	8192u
/* Per queue q: rings and the header in its own 64 KiB, data in the upper half of RAM. */
#define Q_BASE(q)	(0x10000ULL * (q))
#define DESC_GPA(q)	(Q_BASE(q) + 0x0000)
#define AVAIL_GPA(q)	(Q_BASE(q) + 0x1000)
#define USED_GPA(q)	(Q_BASE(q) + 0x2000)
#define HDR_GPA(q)	(Q_BASE(q) + 0x3000)	/* 16-byte header, status at +32 */
#define DATA_GPA(q)	(0x800000ULL + 0x10000ULL * (q))

struct kqueue {
	int kick, call;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx, used_seen;
};

/* struct sluice_blk_mem_table with room for one region (the same layout as its flexible array). */
struct mem_table1 {
	__u32 nregions;
	__u32 reserved;
	struct sluice_blk_mem_region r[1];
};
_Static_assert(sizeof(struct sluice_blk_mem_table) == 8, "mem_table1 must match struct sluice_blk_mem_table");

static uint8_t *ram;
static int dev_fd;
static struct kqueue queues[MAX_Q];

static void *gpa(uint64_t g)
{
	return ram + g;
}

static int die(const char *what)
{
	fprintf(stderr, "trace_kdriver: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void kioctl(unsigned long req, void *arg, const char *name)
{
	if (ioctl(dev_fd, req, arg) < 0)
		die(name);
}

static void setup_queue(unsigned int q)
{
	struct sluice_blk_vring_state num = { q, QNUM }, base = { q, 0 }, en = { q, 1 };
	struct sluice_blk_vring_addr addr = { .index = q, .desc_gpa = DESC_GPA(q),
					      .avail_gpa = AVAIL_GPA(q), .used_gpa = USED_GPA(q) };
	struct sluice_blk_vring_file f;
	struct kqueue *k = &queues[q];

	k->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	k->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (k->kick < 0 || k->call < 0)
		die("eventfd");
	k->desc = gpa(DESC_GPA(q));
	k->avail = gpa(AVAIL_GPA(q));
	k->used = gpa(USED_GPA(q));
	kioctl(SLUICE_BLK_SET_VRING_NUM, &num, "SET_VRING_NUM");
	kioctl(SLUICE_BLK_SET_VRING_ADDR, &addr, "SET_VRING_ADDR");
	kioctl(SLUICE_BLK_SET_VRING_BASE, &base, "SET_VRING_BASE");
	f = (struct sluice_blk_vring_file){ q, k->kick };
	kioctl(SLUICE_BLK_SET_VRING_KICK, &f, "SET_VRING_KICK");
	f.fd = k->call;
	kioctl(SLUICE_BLK_SET_VRING_CALL, &f, "SET_VRING_CALL");
	kioctl(SLUICE_BLK_SET_VRING_ENABLE, &en, "SET_VRING_ENABLE");
}

static void setup_disk(const char *name, unsigned int nq)
{
	struct mem_table1 mt = { .nregions = 1 };
	struct sluice_blk_backend b = { 0 };
	uint64_t features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_BLK_F_FLUSH);
	const char *dir = getenv("SLUICE_LAB_SCRATCH");
	char path[512];
	unsigned int q;
	int img;

	snprintf(path, sizeof(path), "%s/%s.img", dir && *dir ? dir : ".", name);
	img = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (img < 0 || ftruncate(img, IMG_SIZE) < 0)
		die(path);
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap");
	dev_fd = open("/dev/" SLUICE_BLK_DEVICE_NAME, O_RDWR | O_CLOEXEC);
	if (dev_fd < 0)
		die("/dev/" SLUICE_BLK_DEVICE_NAME);
	mt.r[0] = (struct sluice_blk_mem_region){ 0, RAM_SIZE, (uintptr_t)ram, 0 };
	b.fd = img;
	snprintf(b.name, sizeof(b.name), "%s", name);
	memcpy(b.serial, "sluice-trace-test-01", 20);
	kioctl(SLUICE_BLK_SET_OWNER, NULL, "SET_OWNER");
	kioctl(SLUICE_BLK_SET_MEM_TABLE, &mt, "SET_MEM_TABLE");
	kioctl(SLUICE_BLK_SET_FEATURES, &features, "SET_FEATURES");
	kioctl(SLUICE_BLK_SET_BACKEND, &b, "SET_BACKEND");
	for (q = 0; q < nq; q++)
		setup_queue(q);
}

static void set_desc(struct vring_desc *d, unsigned int i, uint64_t addr, uint32_t len, uint16_t flags)
{
	d[i].addr = htole64(addr);
	d[i].len = htole32(len);
	d[i].flags = htole16(flags);
	d[i].next = htole16((uint16_t)(i + 1));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One request on queue @q, waited for; returns its status byte. */
static int run_req(unsigned int q, uint32_t type, uint64_t sector, uint32_t len)
{
	struct kqueue *k = &queues[q];
	struct virtio_blk_outhdr *h = gpa(HDR_GPA(q));
	volatile uint8_t *status = gpa(HDR_GPA(q) + 32);
	unsigned int n = 0;
	uint64_t one = 1;
	double end;

	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	*status = 0xee;
	set_desc(k->desc, n++, HDR_GPA(q), 16, VRING_DESC_F_NEXT);
	if (len)
		set_desc(k->desc, n++, DATA_GPA(q), len,
			 VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0));
	set_desc(k->desc, n, HDR_GPA(q) + 32, 1, VRING_DESC_F_WRITE);
	k->avail->ring[k->avail_idx % QNUM] = htole16(0);
	k->avail_idx++;
	__atomic_store_n(&k->avail->idx, htole16(k->avail_idx), __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (write(k->kick, &one, sizeof(one)) != sizeof(one))
		die("kick");
	end = now_s() + 20;
	while ((uint16_t)le16toh(__atomic_load_n(&k->used->idx, __ATOMIC_ACQUIRE)) == k->used_seen) {
		struct pollfd p = { .fd = k->call, .events = POLLIN };
		uint64_t v;

		if (now_s() > end) {
			fprintf(stderr, "trace_kdriver: queue %u: no completion after 20 s\n", q);
			exit(1);
		}
		if (poll(&p, 1, 50) > 0 && read(k->call, &v, sizeof(v)) < 0 && errno != EAGAIN)
			die("call eventfd");
	}
	k->used_seen++;
	return *status;
}

int main(int argc, char **argv)
{
	unsigned int nq, q, counts[MAX_Q][3], i;
	const char *list_path = NULL, *disk;
	FILE *list = NULL;
	int opt;

	while ((opt = getopt(argc, argv, "o:h")) != -1) {
		switch (opt) {
		case 'o':
			list_path = optarg;
			break;
		default:
			fputs(USAGE, opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (argc - optind < 2 || argc - optind - 1 > MAX_Q) {
		fputs(USAGE, stderr);
		return 2;
	}
	disk = argv[optind];
	nq = (unsigned int)(argc - optind - 1);
	for (q = 0; q < nq; q++) {
		char extra;

		if (sscanf(argv[optind + 1 + q], "%u/%u/%u%c", &counts[q][0], &counts[q][1],
			   &counts[q][2], &extra) != 3 || counts[q][0] > 1000 || counts[q][1] > 1000 ||
		    counts[q][2] > 1000) {
			fprintf(stderr, "trace_kdriver: bad R/W/F '%s'\n", argv[optind + 1 + q]);
			return 2;
		}
	}
	if (list_path) {
		list = fopen(list_path, "w");
		if (!list)
			die(list_path);
	}
	setup_disk(disk, nq);
	for (q = 0; q < nq; q++) {
		static const struct {
			uint32_t type;
			uint32_t bytes;
			const char *name;
		} ops[3] = {
			{ VIRTIO_BLK_T_IN, READ_BYTES, "read" },
			{ VIRTIO_BLK_T_OUT, WRITE_BYTES, "write" },
			{ VIRTIO_BLK_T_FLUSH, 0, "flush" },
		};
		unsigned int o;

		for (o = 0; o < 3; o++) {
			for (i = 0; i < counts[q][o]; i++) {
				uint64_t sector = ops[o].bytes ? (uint64_t)(q * 1000 + i) * 16 : 0;
				int st = run_req(q, ops[o].type, sector, ops[o].bytes);

				if (st != VIRTIO_BLK_S_OK) {
					fprintf(stderr, "trace_kdriver: queue %u %s %u: status %d\n", q,
						ops[o].name, i, st);
					return 1;
				}
				if (list)
					fprintf(list, "%s %u %s %llu %u\n", disk, q, ops[o].name,
						(unsigned long long)sector, ops[o].bytes);
			}
		}
	}
	if (list && fclose(list))
		die(list_path);
	close(dev_fd);
	return 0;
}
