// SPDX-License-Identifier: GPL-2.0
/* kmod_dataplane.c - lab test: play the guest driver over shared memory + eventfds against sluice_blk.ko's queues. */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/sluice_blk.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "ktap.h"

#define DEV		"/dev/" SLUICE_BLK_DEVICE_NAME
#define QNUM		128
#define SLOTS		(QNUM / 4)		/* 4 descriptors per request slot */
#define RAM_A_GPA	0x0ULL
#define RAM_B_GPA	0x40000000ULL
#define RAM_SIZE	(8u << 20)
#define DESC_GPA	0x1000ULL
#define AVAIL_GPA	0x2000ULL
#define USED_GPA	0x3000ULL
#define HDR_GPA(s)	(0x10000ULL + (s) * 64)	/* 16-byte header, status at +32 */
#define IND_GPA(s)	(0x20000ULL + (s) * 256)	/* an indirect table per slot */
#define DATA_GPA(s)	(RAM_B_GPA + (uint64_t)(s) * 0x40000)	/* 256 KiB per slot */
#define IMG_SIZE	(64u << 20)

/* struct sluice_blk_mem_table with room for two regions (same layout as its flexible array). */
struct mem_table2 {
	struct {
		__u32 nregions;
		__u32 reserved;
	} t;
	struct sluice_blk_mem_region r[2];
};
_Static_assert(sizeof(((struct mem_table2 *)0)->t) == sizeof(struct sluice_blk_mem_table),
	       "mem_table2 must match struct sluice_blk_mem_table");

/* One disk played by this process: its fd, guest RAM, rings and eventfds. */
struct drv {
	int fd, kick, call, err;
	uint8_t *ram_a, *ram_b;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx, used_seen;
	uint64_t features;
	char name[32];
	int img;
	int memfd;			/* RAM A's memfd when setup_memfd, else -1 */
};

static const char *scratch_dir(void)
{
	const char *s = getenv("SLUICE_LAB_SCRATCH");

	return s && *s ? s : ".";
}

static void *gpa(struct drv *d, uint64_t g)
{
	if (g >= RAM_B_GPA)
		return d->ram_b + (g - RAM_B_GPA);
	return d->ram_a + g;
}

static int open_image(const char *name, unsigned int size)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s.img", scratch_dir(), name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, size) < 0)
		return -1;
	return fd;
}

/* Set by a case before drv_setup(): the capacity passed to SET_BACKEND, and a step before the queue starts. */
static uint64_t setup_capacity;
static int (*setup_hook)(struct drv *d);
/* Set by a case before drv_setup(): RAM A is a memfd (MAP_SHARED), so it can be mapped a second time. */
static bool setup_memfd;
/* Set by a case before drv_setup(): RAM A (the rings) is a file on the scratch disk, MAP_SHARED. */
static bool setup_file_ram;

/* Open and fully set up a disk with one queue; returns 0 or -errno (diagnosed). */
/* Everything after SET_OWNER: memory, features, backend, queue 0 (also after a RESET). */
static int drv_config(struct drv *d, uint32_t flags)
{
	struct mem_table2 mt = { .t.nregions = 2 };
	struct sluice_blk_backend b = { .flags = flags };
	struct sluice_blk_vring_state num = { 0, QNUM }, base = { 0, 0 }, en = { 0, 1 };
	struct sluice_blk_vring_addr addr = { .index = 0, .desc_gpa = DESC_GPA,
					      .avail_gpa = AVAIL_GPA, .used_gpa = USED_GPA };
	struct sluice_blk_vring_file f;
	const char *name = d->name;

	mt.r[0] = (struct sluice_blk_mem_region){ RAM_A_GPA, RAM_SIZE, (uintptr_t)d->ram_a, 0 };
	mt.r[1] = (struct sluice_blk_mem_region){ RAM_B_GPA, RAM_SIZE, (uintptr_t)d->ram_b, 0 };
	b.fd = d->img;
	b.capacity = setup_capacity;
	snprintf(b.name, sizeof(b.name), "%s", name);
	memcpy(b.serial, "sluice-serial-0001xy", 20);

#define SETUP_IOCTL(req, arg)								\
	do {										\
		if (ioctl(d->fd, req, arg) < 0) {					\
			ktap_diag("%s: %s: %s", name, #req, strerror(errno));		\
			return -errno;							\
		}									\
	} while (0)
	SETUP_IOCTL(SLUICE_BLK_SET_MEM_TABLE, &mt);
	SETUP_IOCTL(SLUICE_BLK_SET_FEATURES, &d->features);
	SETUP_IOCTL(SLUICE_BLK_SET_BACKEND, &b);
	if (setup_hook && setup_hook(d))
		return -EINVAL;
	SETUP_IOCTL(SLUICE_BLK_SET_VRING_NUM, &num);
	SETUP_IOCTL(SLUICE_BLK_SET_VRING_ADDR, &addr);
	SETUP_IOCTL(SLUICE_BLK_SET_VRING_BASE, &base);
	f = (struct sluice_blk_vring_file){ 0, d->kick };
	SETUP_IOCTL(SLUICE_BLK_SET_VRING_KICK, &f);
	f.fd = d->call;
	SETUP_IOCTL(SLUICE_BLK_SET_VRING_CALL, &f);
	f.fd = d->err;
	SETUP_IOCTL(SLUICE_BLK_SET_VRING_ERR, &f);
	SETUP_IOCTL(SLUICE_BLK_SET_VRING_ENABLE, &en);
#undef SETUP_IOCTL
	return 0;
}

static int drv_setup(struct drv *d, const char *name, uint64_t features, uint32_t flags)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->features = features;
	d->fd = open(DEV, O_RDWR | O_CLOEXEC);
	if (setup_file_ram) {
		char ram[48];

		snprintf(ram, sizeof(ram), "%s-ram", name);
		d->memfd = open_image(ram, RAM_SIZE);
	} else {
		d->memfd = setup_memfd ? memfd_create("ram_a", MFD_CLOEXEC) : -1;
	}
	if (d->memfd >= 0 && ftruncate(d->memfd, RAM_SIZE) == 0)
		d->ram_a = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d->memfd, 0);
	else if (setup_memfd || setup_file_ram)
		d->ram_a = MAP_FAILED;
	else
		d->ram_a = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	d->ram_b = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	d->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->img = open_image(name, IMG_SIZE);
	if (d->fd < 0 || d->ram_a == MAP_FAILED || d->ram_b == MAP_FAILED || d->kick < 0 ||
	    d->call < 0 || d->err < 0 || d->img < 0) {
		ktap_diag("setup of %s: %s", name, strerror(errno));
		return -errno;
	}
	d->desc = gpa(d, DESC_GPA);
	d->avail = gpa(d, AVAIL_GPA);
	d->used = gpa(d, USED_GPA);
	if (ioctl(d->fd, SLUICE_BLK_SET_OWNER, NULL) < 0) {
		ktap_diag("%s: SLUICE_BLK_SET_OWNER: %s", name, strerror(errno));
		return -errno;
	}
	return drv_config(d, flags);
}

static void drv_close(struct drv *d)
{
	if (d->fd >= 0)
		close(d->fd);
	close(d->kick);
	close(d->call);
	close(d->err);
	close(d->img);
	if (d->memfd >= 0)
		close(d->memfd);
	munmap(d->ram_a, RAM_SIZE);
	munmap(d->ram_b, RAM_SIZE);
	d->fd = -1;
}

static void set_desc(struct vring_desc *t, unsigned int i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	t[i].addr = htole64(addr);
	t[i].len = htole32(len);
	t[i].flags = htole16(flags);
	t[i].next = htole16(next);
}

/* Put head @head on the avail ring, without a kick. */
static void drv_publish(struct drv *d, uint16_t head)
{
	d->avail->ring[d->avail_idx % QNUM] = htole16(head);
	d->avail_idx++;
	/* ring entry before idx; pairs with the module's smp_rmb after it reads avail->idx */
	__atomic_store_n(&d->avail->idx, htole16(d->avail_idx), __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void drv_kick(struct drv *d)
{
	uint64_t one = 1;

	if (write(d->kick, &one, sizeof(one)) != sizeof(one))
		ktap_diag("kick: %s", strerror(errno));
}

/* Post head @head on the avail ring and kick. */
static void drv_post(struct drv *d, uint16_t head)
{
	drv_publish(d, head);
	drv_kick(d);
}

/*
 * Build request slot @s: header, optional data buffer (@len bytes at DATA_GPA(s)),
 * status; through an indirect table when @indirect.  Returns the head.
 */
static uint16_t drv_req(struct drv *d, unsigned int s, uint32_t type, uint64_t sector, uint32_t len,
			bool indirect)
{
	struct virtio_blk_outhdr *h = gpa(d, HDR_GPA(s));
	struct vring_desc *t = indirect ? gpa(d, IND_GPA(s)) : d->desc;
	unsigned int base = indirect ? 0 : s * 4, n = 0;
	bool dev_writes = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;

	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	*(uint8_t *)gpa(d, HDR_GPA(s) + 32) = 0xee;
	set_desc(t, base + n, HDR_GPA(s), 16, VRING_DESC_F_NEXT, (uint16_t)(base + n + 1));
	n++;
	if (len) {
		set_desc(t, base + n, DATA_GPA(s), len,
			 VRING_DESC_F_NEXT | (dev_writes ? VRING_DESC_F_WRITE : 0), (uint16_t)(base + n + 1));
		n++;
	}
	set_desc(t, base + n, HDR_GPA(s) + 32, 1, VRING_DESC_F_WRITE, 0);
	if (indirect)
		set_desc(d->desc, s * 4, IND_GPA(s), (n + 1) * 16, VRING_DESC_F_INDIRECT, 0);
	return (uint16_t)(s * 4);
}

static uint8_t drv_status(struct drv *d, unsigned int s)
{
	return *(volatile uint8_t *)gpa(d, HDR_GPA(s) + 32);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until @n more used entries appeared (10 s max); returns how many did. */
static unsigned int drv_wait(struct drv *d, unsigned int n)
{
	double end = now_s() + 10;
	unsigned int got = 0;

	for (;;) {
		uint16_t idx = le16toh(__atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE));
		struct pollfd p = { .fd = d->call, .events = POLLIN };
		uint64_t v;

		got = (uint16_t)(idx - d->used_seen);
		if (got >= n || now_s() > end)
			break;
		/* with EVENT_IDX: ask for a signal at the next used entry */
		*(volatile uint16_t *)&d->avail->ring[QNUM] = htole16(idx);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (poll(&p, 1, 100) > 0 && read(d->call, &v, sizeof(v)) < 0)
			break;
	}
	d->used_seen = (uint16_t)(d->used_seen + got);
	return got;
}

/* Run one request in slot 0 synchronously; returns its status byte, or -1 on timeout. */
static int drv_run(struct drv *d, uint32_t type, uint64_t sector, uint32_t len, bool indirect)
{
	drv_post(d, drv_req(d, 0, type, sector, len, indirect));
	if (drv_wait(d, 1) != 1)
		return -1;
	return drv_status(d, 0);
}

static int get_stats(struct drv *d, struct sluice_blk_queue_stats *st)
{
	memset(st, 0, sizeof(*st));
	return ioctl(d->fd, SLUICE_BLK_GET_STATS, st);
}

static bool err_signalled(struct drv *d)
{
	struct pollfd p = { .fd = d->err, .events = POLLIN };

	return poll(&p, 1, 3000) == 1;
}

static uint64_t default_features(void)
{
	return (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
	       (1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << VIRTIO_BLK_F_FLUSH) |
	       (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
}

static int sysfs_read(const char *disk, const char *attr, char *buf, size_t len)
{
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/class/sluice_blk/%s/%s", disk, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return 0;
}

/* Write @val to the file at @path (sysfs); 0 or -errno. */
static int write_file(const char *path, const char *val)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static int sysfs_write(const char *disk, const char *attr, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), "/sys/class/sluice_blk/%s/%s", disk, attr);
	return write_file(path, val);
}

/* ---- cases ---- */

static enum ktap_result setup_rejects_bad_arguments(void)
{
	struct mem_table2 mt = { .t.nregions = 2 };
	struct sluice_blk_vring_state st = { 0, 100 };
	struct sluice_blk_backend b = { .name = "bad" };
	uint64_t feat = 1ULL << 63;
	int fd, pfd[2], img;
	uint8_t *ram;

	KTAP_SYSCALL(fd = open(DEV, O_RDWR | O_CLOEXEC));
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_MEM_TABLE, &mt) < 0 && errno == EINVAL,
		    "mem table before SET_OWNER accepted");
	KTAP_SYSCALL(ioctl(fd, SLUICE_BLK_SET_OWNER));
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_OWNER) < 0 && errno == EBUSY, "second SET_OWNER");
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mt.r[0] = (struct sluice_blk_mem_region){ 0, RAM_SIZE, (uintptr_t)ram, 0 };
	mt.r[1] = (struct sluice_blk_mem_region){ RAM_SIZE / 2, RAM_SIZE, (uintptr_t)ram, 0 };
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_MEM_TABLE, &mt) < 0 && errno == EINVAL, "overlap");
	mt.t.nregions = 0;
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_MEM_TABLE, &mt) < 0 && errno == EINVAL, "0 regions");
	mt.t.nregions = 1;
	mt.r[0].memory_size = 0;
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_MEM_TABLE, &mt) < 0 && errno == EINVAL, "empty region");
	mt.r[0].memory_size = RAM_SIZE;
	mt.r[0].guest_phys_addr = ~0ULL - 4096;
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_MEM_TABLE, &mt) < 0 && errno == EINVAL, "wrapping region");
	mt.r[0].guest_phys_addr = 0;
	KTAP_SYSCALL(ioctl(fd, SLUICE_BLK_SET_MEM_TABLE, &mt));
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_FEATURES, &feat) < 0 && errno == EINVAL, "unknown feature");
	feat = 0;
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_FEATURES, &feat) < 0 && errno == EINVAL, "no VERSION_1");
	b.fd = 999;
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_BACKEND, &b) < 0 && errno == EBADF, "bad fd");
	KTAP_SYSCALL(pipe(pfd));
	b.fd = pfd[0];
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_BACKEND, &b) < 0 && errno == EINVAL, "pipe as backend");
	img = open_image("badargs", 1 << 20);
	b.fd = img;
	strcpy(b.name, "a/b");
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_BACKEND, &b) < 0 && errno == EINVAL, "name with /");
	strcpy(b.name, "badargs");
	b.capacity = 2 << 20;
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_BACKEND, &b) < 0 && errno == EINVAL, "capacity > file");
	b.capacity = 0;
	KTAP_SYSCALL(fcntl(img, F_SETFL, fcntl(img, F_GETFL) | O_APPEND));
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_BACKEND, &b) < 0 && errno == EINVAL, "O_APPEND backend");
	KTAP_SYSCALL(fcntl(img, F_SETFL, fcntl(img, F_GETFL) & ~O_APPEND));
	b.capacity = 0;
	KTAP_SYSCALL(ioctl(fd, SLUICE_BLK_SET_BACKEND, &b));
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_BACKEND, &b) < 0 && errno == EBUSY, "second backend");
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_VRING_NUM, &st) < 0 && errno == EINVAL, "num 100");
	st.index = SLUICE_BLK_MAX_QUEUES;
	st.num = 64;
	KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_VRING_NUM, &st) < 0 && errno == EINVAL, "queue 16");
	st.index = 0;
	KTAP_SYSCALL(ioctl(fd, SLUICE_BLK_SET_VRING_NUM, &st));
	{
		struct sluice_blk_vring_addr a = { .index = 0, .desc_gpa = RAM_SIZE - 16,
						   .avail_gpa = 0x2000, .used_gpa = 0x3000 };
		struct sluice_blk_vring_state en = { 0, 1 };
		struct sluice_blk_vring_file kf = { 0, pfd[0] };

		KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_VRING_ADDR, &a) < 0 && errno == EINVAL,
			    "desc table past RAM");
		a.desc_gpa = 0x1008;
		KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_VRING_ADDR, &a) < 0 && errno == EINVAL,
			    "misaligned desc");
		KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_VRING_KICK, &kf) < 0 && errno == EINVAL,
			    "pipe as kick eventfd");
		KTAP_EXPECT(ioctl(fd, SLUICE_BLK_SET_VRING_ENABLE, &en) < 0 && errno == EINVAL,
			    "enable without rings");
	}
	KTAP_EXPECT(ioctl(fd, _IOW(SLUICE_BLK_IOC_MAGIC, 0x7f, int), 0) < 0 && errno == ENOTTY, "ENOTTY");
	close(pfd[0]);
	close(pfd[1]);
	close(img);
	close(fd);
	munmap(ram, RAM_SIZE);
	return KTAP_PASS;
}

static enum ktap_result not_owner_is_refused(void)
{
	struct sluice_blk_vring_state st = { 0, 64 };
	int fd, status;
	pid_t pid;

	KTAP_SYSCALL(fd = open(DEV, O_RDWR | O_CLOEXEC));
	KTAP_SYSCALL(ioctl(fd, SLUICE_BLK_SET_OWNER));
	pid = fork();
	if (pid == 0)
		_exit(ioctl(fd, SLUICE_BLK_SET_VRING_NUM, &st) < 0 && errno == EPERM ? 0 : 1);
	waitpid(pid, &status, 0);
	close(fd);
	KTAP_EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another mm changed the disk");
	return KTAP_PASS;
}

/* Random reads and writes in flight together; the image and the guest agree with a shadow. */
static enum ktap_result rw_against_shadow(void)
{
	static uint8_t shadow[IMG_SIZE];
	struct sluice_blk_queue_stats st;
	unsigned int round, s, total = 0;
	struct drv d;
	char buf[64];
	uint8_t *file;

	KTAP_EXPECT(drv_setup(&d, "rw0", default_features(), 0) == 0, "setup");
	memset(shadow, 0, sizeof(shadow));
	srand(7);
	for (round = 0; round < 40; round++) {
		uint64_t sec[SLOTS];
		uint32_t len[SLOTS];
		bool wr[SLOTS];

		/* non-overlapping slots per round: slot s owns a 2 MiB stripe */
		for (s = 0; s < SLOTS; s++) {
			len[s] = (uint32_t)(1 + rand() % 128) * 512;
			sec[s] = ((uint64_t)s * (2 << 20) + (uint64_t)(rand() % 2048) * 512) / 512;
			wr[s] = rand() % 2;
			if (wr[s]) {
				uint8_t *p = gpa(&d, DATA_GPA(s));
				uint32_t i;

				for (i = 0; i < len[s]; i++)
					p[i] = (uint8_t)rand();
				memcpy(shadow + sec[s] * 512, p, len[s]);
			}
			drv_post(&d, drv_req(&d, s, wr[s] ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, sec[s],
					     len[s], rand() % 2));
		}
		KTAP_EXPECT(drv_wait(&d, SLOTS) == SLOTS, "round %u: completions missing", round);
		total += SLOTS;
		for (s = 0; s < SLOTS; s++) {
			KTAP_EXPECT(drv_status(&d, s) == VIRTIO_BLK_S_OK, "round %u slot %u status %u",
				    round, s, drv_status(&d, s));
			if (!wr[s])
				KTAP_EXPECT(!memcmp(gpa(&d, DATA_GPA(s)), shadow + sec[s] * 512, len[s]),
					    "round %u slot %u: read data differs", round, s);
		}
	}
	file = mmap(NULL, IMG_SIZE, PROT_READ, MAP_SHARED, d.img, 0);
	KTAP_EXPECT(file != MAP_FAILED, "mmap image");
	KTAP_EXPECT(!memcmp(file, shadow, IMG_SIZE), "image differs from the shadow");
	munmap(file, IMG_SIZE);
	KTAP_SYSCALL(get_stats(&d, &st));
	KTAP_EXPECT(st.completed == total && st.inflight == 0 && !st.errors && !st.broken,
		    "stats: completed %llu inflight %llu errors %llu", (unsigned long long)st.completed,
		    (unsigned long long)st.inflight, (unsigned long long)st.errors);
	KTAP_EXPECT(!sysfs_read("rw0", "queues/0/completed", buf, sizeof(buf)) && atoi(buf) == (int)total,
		    "sysfs completed '%s', expected %u", buf, total);
	/* 512-aligned requests on ext4 (the lab's scratch disk) must all be O_DIRECT kiocbs. */
	KTAP_EXPECT(!sysfs_read("rw0", "queues/0/buffered", buf, sizeof(buf)) && !strcmp(buf, "0"),
		    "%s requests went through the page cache", buf);
	drv_close(&d);
	return KTAP_PASS;
}

static enum ktap_result flush_getid_discard_zeroes(void)
{
	struct virtio_blk_discard_write_zeroes *dz;
	struct stat before, after;
	struct drv d;
	uint8_t *p;
	int i;

	KTAP_EXPECT(drv_setup(&d, "ops0", default_features(), 0) == 0, "setup");
	p = gpa(&d, DATA_GPA(0));
	memset(p, 0xab, 1 << 20);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, 0, 1 << 18, false) == VIRTIO_BLK_S_OK, "write");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_FLUSH, 0, 0, false) == VIRTIO_BLK_S_OK, "flush");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_GET_ID, 0, 20, false) == VIRTIO_BLK_S_OK, "get id");
	KTAP_EXPECT(!memcmp(p, "sluice-serial-0001xy", 20), "serial '%.20s'", (char *)p);
	KTAP_EXPECT(le32toh(d.used->ring[(d.used_seen - 1) % QNUM].len) == 21, "get id used len");

	fsync(d.img);
	fstat(d.img, &before);
	dz = (void *)p;
	dz->sector = htole64(0);
	dz->num_sectors = htole32(256);	/* 128 KiB */
	dz->flags = 0;
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_DISCARD, 0, 16, false) == VIRTIO_BLK_S_OK, "discard");
	fstat(d.img, &after);
	KTAP_EXPECT(after.st_blocks < before.st_blocks, "discard freed nothing (%lld -> %lld blocks)",
		    (long long)before.st_blocks, (long long)after.st_blocks);
	KTAP_EXPECT(lseek(d.img, 0, SEEK_HOLE) == 0, "no hole at 0");

	dz->sector = htole64(256);
	dz->num_sectors = htole32(8);
	dz->flags = 0;
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false) == VIRTIO_BLK_S_OK, "wz");
	memset(p, 0x55, 8192);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 260, 8192, false) == VIRTIO_BLK_S_OK, "read back");
	for (i = 0; i < 8192; i++) {
		uint8_t want = i < 4 * 512 ? 0 : 0xab;	/* sectors 260-263 zeroed, 264- still 0xab */

		KTAP_EXPECT(p[i] == want, "byte %d is 0x%x, expected 0x%x", i, p[i], want);
	}
	dz->flags = htole32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_DISCARD, 0, 16, false) == VIRTIO_BLK_S_UNSUPP,
		    "discard with UNMAP flag");
	/* Several ranges in one request, all applied (off the worker); more than the limit: refused. */
	memset(p, 0xab, 1 << 16);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, 1024, 1 << 16, false) == VIRTIO_BLK_S_OK, "write for ranges");
	for (i = 0; i < 3; i++)
		dz[i] = (struct virtio_blk_discard_write_zeroes){ .sector = htole64(1024 + (uint64_t)i * 16),
								   .num_sectors = htole32(8), .flags = 0 };
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 3 * 16, false) == VIRTIO_BLK_S_OK, "wz x3");
	memset(p, 0x55, 3 * 8192);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 1024, 3 * 8192, false) == VIRTIO_BLK_S_OK, "read ranges back");
	for (i = 0; i < 3 * 8192; i++) {
		uint8_t want = (i % 8192) < 4096 ? 0 : 0xab;

		KTAP_EXPECT(p[i] == want, "ranges: byte %d is 0x%x, expected 0x%x", i, p[i], want);
	}
	for (i = 0; i < SLUICE_BLK_MAX_DWZ_SEG + 1; i++)
		dz[i] = (struct virtio_blk_discard_write_zeroes){ .sector = htole64((uint64_t)i * 8),
								   .num_sectors = htole32(8), .flags = 0 };
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_DISCARD, 0, (SLUICE_BLK_MAX_DWZ_SEG + 1) * 16, false) ==
		    VIRTIO_BLK_S_UNSUPP, "discard with %d ranges", SLUICE_BLK_MAX_DWZ_SEG + 1);
	KTAP_EXPECT(drv_run(&d, 0x1234, 0, 0, false) == VIRTIO_BLK_S_UNSUPP, "unknown type");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, 1024, false) == VIRTIO_BLK_S_IOERR,
		    "read across the end");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, ~0ULL >> 1, 512, false) == VIRTIO_BLK_S_IOERR,
		    "huge sector");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 100, false) == VIRTIO_BLK_S_IOERR,
		    "length not a multiple of 512");
	drv_close(&d);
	return KTAP_PASS;
}

static enum ktap_result readonly_disk(void)
{
	struct drv d;

	KTAP_EXPECT(drv_setup(&d, "ro0", default_features(), SLUICE_BLK_BACKEND_F_READONLY) == 0, "setup");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, 0, 4096, false) == VIRTIO_BLK_S_IOERR, "write on RO");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_FLUSH, 0, 0, false) == VIRTIO_BLK_S_OK, "flush on RO");
	drv_close(&d);
	return KTAP_PASS;
}

static enum ktap_result without_event_idx(void)
{
	uint64_t f = default_features() & ~(1ULL << VIRTIO_RING_F_EVENT_IDX);
	struct sluice_blk_queue_stats st;
	struct drv d;
	int i;

	KTAP_EXPECT(drv_setup(&d, "noevt0", f, 0) == 0, "setup");
	for (i = 0; i < 50; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, i % 2) == VIRTIO_BLK_S_OK,
			    "read %d", i);
	KTAP_SYSCALL(get_stats(&d, &st));
	KTAP_EXPECT(st.signals >= 1 && st.kicks >= 1, "signals %llu kicks %llu",
		    (unsigned long long)st.signals, (unsigned long long)st.kicks);
	drv_close(&d);
	return KTAP_PASS;
}

/* One malformed chain per kind: the queue breaks, the err eventfd fires, a healthy disk carries on. */
static enum ktap_result attack_cases(void)
{
	static const char *const names[] = {
		"loop", "nested indirect", "indirect length 17", "head >= size", "avail jump",
		"zero length", "outside RAM", "readable after writable", "no status byte",
	};
	struct sluice_blk_queue_stats st;
	struct drv healthy, d;
	unsigned int k;

	KTAP_EXPECT(drv_setup(&healthy, "healthy0", default_features(), 0) == 0, "setup healthy");
	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		char name[32];
		struct vring_desc *ind;

		snprintf(name, sizeof(name), "attack%u", k);
		KTAP_EXPECT(drv_setup(&d, name, default_features(), 0) == 0, "setup %s", name);
		ind = gpa(&d, IND_GPA(0));
		drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 4096, false);
		switch (k) {
		case 0:
			d.desc[2].next = htole16(1);	/* 0 -> 1 -> 2 -> 1 ... */
			d.desc[2].flags = htole16(VRING_DESC_F_WRITE | VRING_DESC_F_NEXT);
			break;
		case 1:
			drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 4096, true);
			set_desc(ind, 1, IND_GPA(1), 32, VRING_DESC_F_INDIRECT, 0);
			break;
		case 2:
			set_desc(d.desc, 0, IND_GPA(0), 17, VRING_DESC_F_INDIRECT, 0);
			break;
		case 3:
			d.avail->ring[0] = htole16(QNUM);
			d.avail_idx = 1;
			__atomic_store_n(&d.avail->idx, htole16(1), __ATOMIC_RELEASE);
			break;
		case 4:
			d.avail_idx = QNUM + 1;
			__atomic_store_n(&d.avail->idx, htole16(QNUM + 1), __ATOMIC_RELEASE);
			break;
		case 5:
			d.desc[1].len = 0;
			break;
		case 6:
			d.desc[1].addr = htole64(RAM_B_GPA + RAM_SIZE - 2048);
			break;
		case 7:
			d.desc[1].flags = htole16(VRING_DESC_F_NEXT);	/* readable after... */
			d.desc[0].flags = htole16(VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
			break;
		case 8:
			d.desc[0].flags = 0;		/* header only: no status byte */
			break;
		}
		if (k == 3 || k == 4) {
			uint64_t one = 1;

			if (write(d.kick, &one, 8) != 8)
				return KTAP_FAIL;
		} else {
			drv_post(&d, 0);
		}
		KTAP_EXPECT(err_signalled(&d), "%s: no error signalled", names[k]);
		KTAP_SYSCALL(get_stats(&d, &st));
		KTAP_EXPECT(st.broken && st.completed == 0, "%s: broken %u completed %llu", names[k],
			    st.broken, (unsigned long long)st.completed);
		KTAP_EXPECT(drv_run(&healthy, VIRTIO_BLK_T_IN, k, 4096, false) == VIRTIO_BLK_S_OK,
			    "healthy disk after %s", names[k]);
		drv_close(&d);
	}
	drv_close(&healthy);
	return KTAP_PASS;
}

static enum ktap_result stop_and_restart(void)
{
	struct sluice_blk_vring_state s = { 0, 0 }, en = { 0, 1 };
	struct drv d;
	int i;

	KTAP_EXPECT(drv_setup(&d, "restart0", default_features(), 0) == 0, "setup");
	for (i = 0; i < 5; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read");
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_GET_VRING_BASE, &s));
	KTAP_EXPECT(s.num == 5, "base %u after 5 requests", s.num);
	/* stopped: a posted request is not served */
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 4096, false));
	usleep(200000);
	KTAP_EXPECT(le16toh(d.used->idx) == 5, "a stopped queue served a request");
	s.num = 5;
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_SET_VRING_BASE, &s));
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_SET_VRING_ENABLE, &en));
	KTAP_EXPECT(drv_wait(&d, 1) == 1, "the pending request was not served after restart");
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read after restart");
	drv_close(&d);
	return KTAP_PASS;
}

/* Point the driver's view of RAM A at @ram (the rings live there). */
static void drv_move_ram_a(struct drv *d, uint8_t *ram)
{
	d->ram_a = ram;
	d->desc = gpa(d, DESC_GPA);
	d->avail = gpa(d, AVAIL_GPA);
	d->used = gpa(d, USED_GPA);
}

/*
 * SET_MEM_TABLE while the queue runs: a table mapping the same GPAs at a
 * second mapping of the same memfd is taken, and the worker's rings move
 * with it (the old mapping is then replaced by unrelated zero pages, where
 * a stale worker would read an avail idx of 0 and write its used entries);
 * a table without the rings' region is refused while running, accepted
 * while stopped, and then the queue does not start until the rings are
 * back in guest RAM.
 */
static enum ktap_result mem_table_moves_rings(void)
{
	struct sluice_blk_vring_state off = { 0, 0 }, on = { 0, 1 };
	struct sluice_blk_queue_stats st;
	struct mem_table2 mt = { .t.nregions = 2 };
	uint8_t *old_a, *new_a;
	struct drv d;
	int i, ret;

	setup_memfd = true;
	ret = drv_setup(&d, "memmove0", default_features(), 0);
	setup_memfd = false;
	KTAP_EXPECT(ret == 0, "setup");
	for (i = 0; i < 3; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read");
	old_a = d.ram_a;
	new_a = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d.memfd, 0);
	KTAP_EXPECT(new_a != MAP_FAILED, "second mapping: %s", strerror(errno));
	mt.r[0] = (struct sluice_blk_mem_region){ RAM_A_GPA, RAM_SIZE, (uintptr_t)new_a, 0 };
	mt.r[1] = (struct sluice_blk_mem_region){ RAM_B_GPA, RAM_SIZE, (uintptr_t)d.ram_b, 0 };
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_SET_MEM_TABLE, &mt));
	drv_move_ram_a(&d, new_a);
	/* No request was in flight: nothing may use the old addresses any more. */
	KTAP_EXPECT(mmap(old_a, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			 -1, 0) == old_a, "replace the old mapping: %s", strerror(errno));
	for (i = 0; i < 5; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, i % 2) == VIRTIO_BLK_S_OK,
			    "read %d after the move", i);
	KTAP_EXPECT(le16toh(d.used->idx) == 8, "used idx %u in the new mapping, expected 8",
		    le16toh(d.used->idx));
	KTAP_EXPECT(!old_a[USED_GPA] && !old_a[USED_GPA + 2], "the worker wrote to the old mapping");
	KTAP_SYSCALL(get_stats(&d, &st));
	KTAP_EXPECT(st.completed == 8 && !st.broken && !st.errors, "completed %llu broken %u errors %llu",
		    (unsigned long long)st.completed, st.broken, (unsigned long long)st.errors);

	/* RAM B only: the rings would leave guest RAM. */
	mt.t.nregions = 1;
	mt.r[0] = mt.r[1];
	KTAP_EXPECT(ioctl(d.fd, SLUICE_BLK_SET_MEM_TABLE, &mt) < 0 && errno == EBUSY,
		    "a table without the rings, queue running: %s", strerror(errno));
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK,
		    "read after the refused table");
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_SET_VRING_ENABLE, &off));
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_SET_MEM_TABLE, &mt));
	KTAP_EXPECT(ioctl(d.fd, SLUICE_BLK_SET_VRING_ENABLE, &on) < 0 && errno == EINVAL,
		    "a queue started with its rings outside guest RAM: %s", strerror(errno));
	mt.t.nregions = 2;
	mt.r[0] = (struct sluice_blk_mem_region){ RAM_A_GPA, RAM_SIZE, (uintptr_t)new_a, 0 };
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_SET_MEM_TABLE, &mt));
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_SET_VRING_ENABLE, &on));
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read after restart");
	munmap(old_a, RAM_SIZE);
	drv_close(&d);
	return KTAP_PASS;
}

/* Is @needle in a kernel log record written since this test started (/dev/kmsg from the start)? */
static bool kmsg_has(const char *needle)
{
	char rec[2048];
	bool found = false;
	ssize_t n;
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return false;
	while ((n = read(fd, rec, sizeof(rec) - 1)) != 0) {
		if (n < 0) {
			if (errno == EPIPE)
				continue;	/* overwritten records: go on */
			break;			/* EAGAIN: the end */
		}
		rec[n] = 0;
		if (strstr(rec, needle))
			found = true;
	}
	close(fd);
	return found;
}

/* DRAIN waits for in-flight requests; RESET goes back to just after SET_OWNER; the disk then serves again. */
static enum ktap_result reset_drain_and_reuse(void)
{
	char buf[64];
	struct drv d;
	int i;

	KTAP_EXPECT(drv_setup(&d, "reset0", default_features(), 0) == 0, "setup");
	for (i = 0; i < 8; i++)
		drv_post(&d, drv_req(&d, i, VIRTIO_BLK_T_OUT, i * 8, 4096, false));
	KTAP_EXPECT(drv_wait(&d, 8) == 8, "8 writes not served");
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_DRAIN, NULL));
	KTAP_EXPECT(sysfs_read("reset0", "queues/0/inflight", buf, sizeof(buf)) == 0 && !strcmp(buf, "0"),
		    "inflight after DRAIN: '%s'", buf);
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_RESET, NULL));
	KTAP_EXPECT(access("/sys/class/sluice_blk/reset0", F_OK) < 0, "the disk is still in sysfs after RESET");
	/* Still the owner, but not configured any more: a posted request is not served. */
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 4096, false));
	usleep(200000);
	KTAP_EXPECT(le16toh(d.used->idx) == 8, "a reset disk served a request");
	memset(d.desc, 0, 4096);
	memset(d.avail, 0, 4096);
	memset(d.used, 0, 4096);
	d.avail_idx = d.used_seen = 0;
	KTAP_EXPECT(drv_config(&d, 0) == 0, "configure again after RESET");
	for (i = 0; i < 4; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, i * 8, 4096, false) == VIRTIO_BLK_S_OK, "read after RESET");
	KTAP_EXPECT(sysfs_read("reset0", "queues/0/completed", buf, sizeof(buf)) == 0 && atoi(buf) == 4,
		    "queues/0/completed after reuse: '%s'", buf);
	drv_close(&d);
	KTAP_EXPECT(!kmsg_has("tried to init an initialized object"), "the kernel warned about a kobject");
	return KTAP_PASS;
}

static int count_workers(void)
{
	struct dirent *e;
	int n = 0;
	DIR *dir = opendir("/proc");

	while (dir && (e = readdir(dir))) {
		char path[300], comm[64] = "";
		int fd;

		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (read(fd, comm, sizeof(comm) - 1) > 0 && !strncmp(comm, "sluice-blk-", 11))
			n++;
		close(fd);
	}
	if (dir)
		closedir(dir);
	return n;
}

static bool wait_no_workers(void)
{
	int i;

	for (i = 0; i < 100 && count_workers(); i++)
		usleep(50000);
	if (count_workers())
		system("for p in /proc/[0-9]*; do case $(cat $p/comm) in sluice-blk-*) echo \"# left: $(cat $p/comm) $(cat $p/stat | cut -d' ' -f3)\"; cat $p/stack | sed 's/^/#   /';; esac; done");
	return !count_workers();
}

static enum ktap_result close_with_requests_in_flight(void)
{
	unsigned int s, round;
	struct drv d;

	for (round = 0; round < 5; round++) {
		KTAP_EXPECT(drv_setup(&d, "inflight0", default_features(), 0) == 0, "setup");
		for (s = 0; s < SLOTS; s++)
			drv_post(&d, drv_req(&d, s, s % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
					     (uint64_t)s * 512, 256 << 10, false));
		drv_close(&d);	/* at once, with up to 32 x 256 KiB in flight */
	}
	KTAP_EXPECT(wait_no_workers(), "%d workers left after close", count_workers());
	return KTAP_PASS;
}

static enum ktap_result sigkill_with_requests_in_flight(void)
{
	char buf[16] = "";
	int p[2], status, fd;
	pid_t pid;

	KTAP_SYSCALL(pipe(p));
	pid = fork();
	if (pid == 0) {
		struct drv d;
		unsigned int s;

		if (drv_setup(&d, "killed0", default_features(), 0))
			_exit(1);
		for (s = 0; s < SLOTS; s++)
			drv_post(&d, drv_req(&d, s, VIRTIO_BLK_T_OUT, (uint64_t)s * 512, 256 << 10, false));
		if (write(p[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	KTAP_EXPECT(read(p[0], buf, 1) == 1, "child did not start");
	usleep(20000);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(p[0]);
	KTAP_EXPECT(wait_no_workers(), "%d workers left after SIGKILL", count_workers());
	fd = open("/sys/module/sluice_blk/refcnt", O_RDONLY | O_CLOEXEC);
	KTAP_EXPECT(fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0, "refcnt unreadable");
	close(fd);
	KTAP_EXPECT(atoi(buf) == 0, "module refcnt %s after the owner died", buf);
	return KTAP_PASS;
}

/* Re-post the same head over and over without waiting: inflight stays bounded by the queue size. */
static enum ktap_result flood_without_completions(void)
{
	struct sluice_blk_queue_stats st;
	unsigned int i, j, max = 0;
	struct drv d;

	KTAP_EXPECT(drv_setup(&d, "flood0", default_features(), 0) == 0, "setup");
	drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 256 << 10, false);
	for (i = 0; i < 200; i++) {
		for (j = 0; j < QNUM / 2; j++) {
			d.avail->ring[d.avail_idx % QNUM] = 0;
			d.avail_idx++;
		}
		__atomic_store_n(&d.avail->idx, htole16(d.avail_idx), __ATOMIC_RELEASE);
		{
			uint64_t one = 1;

			if (write(d.kick, &one, 8) != 8)
				return KTAP_FAIL;
		}
		KTAP_SYSCALL(get_stats(&d, &st));
		if (st.inflight > max)
			max = (unsigned int)st.inflight;
		KTAP_EXPECT(st.inflight <= QNUM, "inflight %llu > queue size", (unsigned long long)st.inflight);
		if (st.broken)
			break;	/* an avail jump is a legitimate reason to stop */
		usleep(1000);
	}
	ktap_diag("max inflight seen: %u (queue size %u)", max, QNUM);
	drv_close(&d);
	KTAP_EXPECT(wait_no_workers(), "workers left");
	return KTAP_PASS;
}

static int worker_cpus(const char *disk, char *out, size_t len)
{
	char buf[64], path[64], line[256];
	FILE *f;

	if (sysfs_read(disk, "queues/0/worker_pid", buf, sizeof(buf)) || !atoi(buf))
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", atoi(buf));
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Cpus_allowed_list:", 18))
			sscanf(line + 18, "%63s", out);
	fclose(f);
	(void)len;
	return 0;
}

static enum ktap_result cpu_knob(void)
{
	char buf[64] = "", cpus[64] = "";
	struct drv d;

	KTAP_SKIP_IF(sysconf(_SC_NPROCESSORS_ONLN) < 2, "needs 2 CPUs");
	KTAP_EXPECT(drv_setup(&d, "cpu0", default_features(), 0) == 0, "setup");
	KTAP_EXPECT(!sysfs_write("cpu0", "queues/0/cpu", "1"), "write 1");
	KTAP_EXPECT(!sysfs_read("cpu0", "queues/0/cpu", buf, sizeof(buf)) && !strcmp(buf, "1"), "read '%s'", buf);
	KTAP_EXPECT(!worker_cpus("cpu0", cpus, sizeof(cpus)) && !strcmp(cpus, "1"), "worker on '%s'", cpus);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "I/O on cpu 1");
	KTAP_EXPECT(!sysfs_write("cpu0", "queues/0/cpu", "0"), "write 0");
	KTAP_EXPECT(!worker_cpus("cpu0", cpus, sizeof(cpus)) && !strcmp(cpus, "0"), "worker on '%s'", cpus);
	KTAP_EXPECT(sysfs_write("cpu0", "queues/0/cpu", "abc") == -EINVAL, "'abc' accepted");
	KTAP_EXPECT(sysfs_write("cpu0", "queues/0/cpu", "64") != 0, "offline cpu accepted");
	KTAP_EXPECT(!sysfs_write("cpu0", "queues/0/cpu", "0-1"), "write 0-1");
	KTAP_EXPECT(!worker_cpus("cpu0", cpus, sizeof(cpus)) && !strcmp(cpus, "0-1"), "worker on '%s'", cpus);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "I/O after moves");
	drv_close(&d);
	return KTAP_PASS;
}

static int trace_write(const char *file, const char *val)
{
	char path[128];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/sys/kernel/tracing/%s", file);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static enum ktap_result tracepoints(void)
{
	char line[512];
	int starts = 0, dones = 0, i;
	struct drv d;
	FILE *f;

	KTAP_SKIP_IF(access("/sys/kernel/tracing/events/sluice_blk", F_OK), "no tracefs");
	KTAP_EXPECT(drv_setup(&d, "trace0", default_features(), 0) == 0, "setup");
	KTAP_EXPECT(!trace_write("trace", "") && !trace_write("events/sluice_blk/enable", "1"), "enable");
	for (i = 0; i < 10; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, false) == VIRTIO_BLK_S_OK, "io");
	trace_write("events/sluice_blk/enable", "0");
	f = fopen("/sys/kernel/tracing/trace", "r");
	KTAP_EXPECT(f, "open trace");
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "req_start:") && strstr(line, "disk=trace0"))
			starts++;
		if (strstr(line, "req_done:") && strstr(line, "disk=trace0") && strstr(line, "bytes=4096 status=0"))
			dones++;
	}
	fclose(f);
	drv_close(&d);
	KTAP_EXPECT(starts == 10 && dones == 10, "%d req_start, %d req_done, expected 10 each", starts, dones);
	return KTAP_PASS;
}


/* ---- qcow2 mode: the extent map and the upcall rings ---- */

#define CL		(64 << 10)	/* cluster size of the extent tests */
#define UP_ENTRIES	16

static struct sluice_blk_ring_hdr *up_req, *up_done;
static int up_notify = -1, up_donefd = -1;

static int extent_hook(struct drv *d)
{
	struct sluice_blk_extent_config c = { .cluster_bits = 16 };
	struct sluice_blk_upcall u = { .entries = UP_ENTRIES };
	size_t rb = sizeof(*up_req) + UP_ENTRIES * sizeof(struct sluice_blk_upcall_req);
	size_t db = sizeof(*up_done) + UP_ENTRIES * sizeof(struct sluice_blk_upcall_done);

	up_req = mmap(NULL, rb, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	up_done = mmap(NULL, db, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	up_notify = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	up_donefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u.req_ring = (uintptr_t)up_req;
	u.done_ring = (uintptr_t)up_done;
	u.notify_fd = up_notify;
	u.done_fd = up_donefd;
	if (ioctl(d->fd, SLUICE_BLK_SET_EXTENT_CONFIG, &c) || ioctl(d->fd, SLUICE_BLK_SET_UPCALL, &u)) {
		ktap_diag("extent setup: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* A 16 MiB disk @name in extent mode with the upcall rings: 0 or -1. */
static int extent_setup(struct drv *d, const char *name)
{
	int ret;

	setup_capacity = 16 << 20;
	setup_hook = extent_hook;
	ret = drv_setup(d, name, default_features(), SLUICE_BLK_BACKEND_F_EXTENTS);
	setup_capacity = 0;
	setup_hook = NULL;
	return ret;
}

/* Close a disk of extent_setup() and its upcall eventfds. */
static void extent_close(struct drv *d)
{
	drv_close(d);
	close(up_notify);
	close(up_donefd);
	up_notify = up_donefd = -1;
}

static int map_extent(struct drv *d, uint64_t goff, uint64_t len, uint64_t hoff, bool writable)
{
	struct {
		struct {
			__u32 nr, reserved;
		} h;
		struct sluice_blk_extent e;
	} m = { { 1, 0 }, { goff, len, hoff, writable ? SLUICE_BLK_EXTENT_F_WRITABLE : 0, 0 } };

	return ioctl(d->fd, SLUICE_BLK_MAP_EXTENTS, &m);
}

/* The next forwarded request (waits up to 3 s), or NULL. */
static struct sluice_blk_upcall_req *next_upcall(void)
{
	struct sluice_blk_upcall_req *ring = (void *)(up_req + 1);
	double end = now_s() + 3;

	while (__atomic_load_n(&up_req->prod, __ATOMIC_ACQUIRE) == up_req->cons) {
		struct pollfd p = { .fd = up_notify, .events = POLLIN };
		uint64_t v;

		if (now_s() > end)
			return NULL;
		if (poll(&p, 1, 100) > 0 && read(up_notify, &v, 8) < 0)
			return NULL;
	}
	return &ring[up_req->cons++ & (UP_ENTRIES - 1)];
}

static void post_done(uint64_t id, uint8_t status, uint32_t written)
{
	struct sluice_blk_upcall_done *ring = (void *)(up_done + 1);
	uint32_t prod = up_done->prod;
	uint64_t one = 1;
	int n;

	/* Never overwrite an entry the module has not read (3 s at most). */
	for (n = 0; n < 3000 && prod - __atomic_load_n(&up_done->cons, __ATOMIC_ACQUIRE) >= UP_ENTRIES; n++)
		usleep(1000);

	ring[prod & (UP_ENTRIES - 1)] = (struct sluice_blk_upcall_done){ .id = id, .written = written,
									   .status = status };
	__atomic_store_n(&up_done->prod, prod + 1, __ATOMIC_RELEASE);
	if (write(up_donefd, &one, 8) != 8)
		ktap_diag("done kick: %s", strerror(errno));
}

static long sysfs_num(const char *disk, const char *attr)
{
	char buf[64] = "";

	return sysfs_read(disk, attr, buf, sizeof(buf)) ? -1 : atol(buf);
}

static bool file_has(int fd, uint64_t off, const uint8_t *want, size_t len)
{
	static uint8_t buf[1 << 20];

	return pread(fd, buf, len, (off_t)off) == (ssize_t)len && !memcmp(buf, want, len);
}

static enum ktap_result extent_map_and_upcall(void)
{
	struct sluice_blk_upcall_req *r;
	struct sluice_blk_range rg;
	struct drv d;
	uint8_t *p;
	uint64_t id;
	int i;

	KTAP_EXPECT(!extent_setup(&d, "ext0"), "extent-mode setup");
	p = gpa(&d, DATA_GPA(0));
	KTAP_SYSCALL(map_extent(&d, 0, 2 * CL, 10 * CL, true));	/* guest 0,1 -> host 10,11 */
	KTAP_SYSCALL(map_extent(&d, 2 * CL, CL, 5 * CL, false));	/* guest 2 -> host 5, read-only */
	KTAP_EXPECT(map_extent(&d, 100, CL, 0, true) < 0 && errno == EINVAL, "unaligned extent");
	KTAP_EXPECT(map_extent(&d, 16 << 20, CL, 0, true) < 0 && errno == EINVAL, "extent past the capacity");
	KTAP_EXPECT(sysfs_num("ext0", "extents") == 3, "%ld clusters mapped", sysfs_num("ext0", "extents"));

	/* Inside one writable cluster, then across two contiguous ones: served in the kernel. */
	memset(p, 0xa1, 8192);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, 8, 8192, false) == VIRTIO_BLK_S_OK, "write in cluster 0");
	KTAP_EXPECT(file_has(d.img, 10 * CL + 4096, p, 8192), "data not at host cluster 10 + 4 KiB");
	memset(p, 0xa2, 2 * CL);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, CL / 512 - 8, 8192, false) == VIRTIO_BLK_S_OK, "write across");
	KTAP_EXPECT(file_has(d.img, 11 * CL - 4096, p, 8192), "data not at host clusters 10/11");
	memset(p, 0, 8192);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, CL / 512 - 8, 8192, false) == VIRTIO_BLK_S_OK && p[0] == 0xa2 &&
		    p[8191] == 0xa2, "read back across clusters");
	KTAP_EXPECT(sysfs_num("ext0", "extent_hits") == 3 && sysfs_num("ext0", "queues/0/fallback") == 0,
		    "hits %ld fallback %ld", sysfs_num("ext0", "extent_hits"), sysfs_num("ext0", "queues/0/fallback"));

	/* A write to the read-only cluster: forwarded; "userspace" copies it (COW) and maps the copy. */
	memset(p, 0xb3, 4096);
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_OUT, 2 * CL / 512, 4096, false));
	r = next_upcall();
	KTAP_EXPECT(r, "no upcall for a write to a read-only cluster");
	KTAP_EXPECT(r->type == VIRTIO_BLK_T_OUT && r->sector == 2 * CL / 512 && r->data_len == 4096 &&
		    r->nsegs == 1 && r->segs[0].gpa == DATA_GPA(0) && r->segs[0].len == 4096 && !r->segs[0].write &&
		    r->reason == SLUICE_BLK_FWD_READONLY && r->queue == 0,
		    "record: type %u sector %llu len %u nsegs %u reason %u", r->type, (unsigned long long)r->sector,
		    r->data_len, r->nsegs, r->reason);
	KTAP_EXPECT(pwrite(d.img, gpa(&d, r->segs[0].gpa), 4096, 20 * CL) == 4096, "cow write");
	id = r->id;
	KTAP_SYSCALL(map_extent(&d, 2 * CL, CL, 20 * CL, true));
	usleep(100000);
	KTAP_EXPECT(le16toh(d.used->idx) == d.used_seen, "completed before userspace answered");
	post_done(id, VIRTIO_BLK_S_OK, 1);
	KTAP_EXPECT(drv_wait(&d, 1) == 1 && drv_status(&d, 0) == VIRTIO_BLK_S_OK, "forwarded write not completed");
	memset(p, 0xb4, 4096);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, 2 * CL / 512 + 8, 4096, false) == VIRTIO_BLK_S_OK, "2nd write");
	KTAP_EXPECT(file_has(d.img, 20 * CL + 4096, p, 4096), "the next write to the copy did not stay in the kernel");
	KTAP_EXPECT(sysfs_num("ext0", "queues/0/fallback") == 1, "fallback %ld", sysfs_num("ext0", "queues/0/fallback"));

	/* A read of an unmapped cluster: userspace fills the buffer (e.g. from a backing file). */
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 3 * CL / 512, 8192, false));
	r = next_upcall();
	KTAP_EXPECT(r && r->reason == SLUICE_BLK_FWD_UNMAPPED && r->segs[0].write, "unmapped read not forwarded");
	memset(gpa(&d, r->segs[0].gpa), 0xc5, 8192);
	post_done(r->id, VIRTIO_BLK_S_OK, 8193);
	KTAP_EXPECT(drv_wait(&d, 1) == 1 && drv_status(&d, 0) == VIRTIO_BLK_S_OK && p[0] == 0xc5 && p[8191] == 0xc5,
		    "forwarded read");
	KTAP_EXPECT(le32toh(d.used->ring[(d.used_seen - 1) % QNUM].len) == 8193, "used len of a forwarded read");

	/* Discard and flush belong to userspace in this mode; a bad status becomes IOERR. */
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false));
	r = next_upcall();
	KTAP_EXPECT(r && r->type == VIRTIO_BLK_T_FLUSH && r->reason == SLUICE_BLK_FWD_METADATA, "flush upcall");
	id = r->id;
	post_done(id + 1000, VIRTIO_BLK_S_OK, 1);	/* an unknown id: ignored */
	post_done(id, 99, 1);				/* a bad status: IOERR */
	KTAP_EXPECT(drv_wait(&d, 1) == 1 && drv_status(&d, 0) == VIRTIO_BLK_S_IOERR, "bad status not IOERR");

	/* Revoking: the next read of cluster 0 goes to userspace. */
	rg = (struct sluice_blk_range){ 0, CL };
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_UNMAP_EXTENTS, &rg));
	KTAP_EXPECT(sysfs_num("ext0", "extents") == 2, "%ld clusters after unmap", sysfs_num("ext0", "extents"));
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 4096, false));
	r = next_upcall();
	KTAP_EXPECT(r && r->reason == SLUICE_BLK_FWD_UNMAPPED, "read of a revoked cluster not forwarded");
	post_done(r->id, VIRTIO_BLK_S_OK, 4097);
	KTAP_EXPECT(drv_wait(&d, 1) == 1, "completion after revoke");

	/* Revoke while kernel requests are in flight: it returns, they complete. */
	for (i = 0; i < 8; i++)
		drv_post(&d, drv_req(&d, (unsigned int)i, VIRTIO_BLK_T_IN, CL / 512 + (uint64_t)i * 16, 8192, false));
	rg = (struct sluice_blk_range){ CL, CL };
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_UNMAP_EXTENTS, &rg));
	for (i = 0; i < 8; i++) {	/* the late ones went to userspace */
		struct sluice_blk_upcall_req *u = (up_req->prod != up_req->cons) ? next_upcall() : NULL;

		if (u)
			post_done(u->id, VIRTIO_BLK_S_OK, u->data_len + 1);
	}
	KTAP_EXPECT(drv_wait(&d, 8) == 8, "requests around a revoke did not all complete");

	/* Close with a forwarded request nobody will answer: no hang, no worker left. */
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 5 * CL / 512, 4096, false));
	KTAP_EXPECT(next_upcall(), "no upcall before close");
	extent_close(&d);
	KTAP_EXPECT(wait_no_workers(), "workers left after closing with a forwarded request");
	return KTAP_PASS;
}

/*
 * Completion ids on the done ring are checked, not trusted: an entry naming a
 * request that still waits for room on the req ring, or an old entry replayed
 * after its table slot went to a new request, completes nothing (either once
 * freed a request that was still queued).  Every real answer still lands.
 */
static enum ktap_result upcall_stale_ids(void)
{
	struct sluice_blk_upcall_req *ring, *r;
	uint64_t ids[UP_ENTRIES], guess, old;
	struct drv d;
	unsigned int i, n;

	KTAP_EXPECT(!extent_setup(&d, "ext1"), "extent-mode setup");
	ring = (void *)(up_req + 1);
	/* Nothing is mapped: every read goes to userspace.  Fill the req ring without reading it. */
	for (i = 0; i < UP_ENTRIES; i++)
		drv_post(&d, drv_req(&d, i, VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, false));
	for (n = 0; n < 300 && __atomic_load_n(&up_req->prod, __ATOMIC_ACQUIRE) - up_req->cons < UP_ENTRIES; n++)
		usleep(10000);
	KTAP_EXPECT(up_req->prod - up_req->cons == UP_ENTRIES, "req ring holds %u", up_req->prod - up_req->cons);
	for (i = 0; i < UP_ENTRIES; i++)
		ids[i] = ring[(up_req->cons + i) & (UP_ENTRIES - 1)].id;
	/* One more: it waits in the kernel for room.  Answer it before it was ever handed out. */
	drv_post(&d, drv_req(&d, UP_ENTRIES, VIRTIO_BLK_T_IN, 999, 4096, false));
	usleep(100000);
	guess = (ids[UP_ENTRIES - 1] & ~(uint64_t)UINT32_MAX) + (1ull << 32) + UP_ENTRIES;
	post_done(guess, VIRTIO_BLK_S_OK, 4097);
	post_done(UP_ENTRIES, VIRTIO_BLK_S_OK, 4097);
	usleep(200000);
	KTAP_EXPECT(le16toh(d.used->idx) == d.used_seen, "a request still waiting for the ring completed");
	/* Now the real answers: the waiting one is handed out once there is room, and answered too. */
	for (i = 0; i < UP_ENTRIES; i++) {
		r = next_upcall();
		KTAP_EXPECT(r && r->id == ids[i], "record %u: id %llx", i, r ? (unsigned long long)r->id : 0ull);
		post_done(r->id, VIRTIO_BLK_S_OK, 4097);
	}
	r = next_upcall();
	KTAP_EXPECT(r && r->sector == 999, "the waiting request was never handed out");
	post_done(r->id, VIRTIO_BLK_S_OK, 4097);
	KTAP_EXPECT(drv_wait(&d, UP_ENTRIES + 1) == UP_ENTRIES + 1, "not all %u answered requests completed",
		    UP_ENTRIES + 1);
	for (i = 0; i <= UP_ENTRIES; i++)
		KTAP_EXPECT(drv_status(&d, i) == VIRTIO_BLK_S_OK, "slot %u status %u", i, drv_status(&d, i));
	/* A new request takes a freed slot; the old answer for that slot, replayed, must not finish it. */
	old = ids[0];
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 4242, 4096, false));
	r = next_upcall();
	KTAP_EXPECT(r && r->sector == 4242, "no upcall for the new request");
	KTAP_EXPECT((r->id & UINT32_MAX) == (old & UINT32_MAX) && r->id != old,
		    "slot reuse: old id %llx new id %llx", (unsigned long long)old, (unsigned long long)r->id);
	post_done(old, VIRTIO_BLK_S_IOERR, 1);
	usleep(200000);
	KTAP_EXPECT(le16toh(d.used->idx) == d.used_seen, "a replayed answer completed the slot's new request");
	post_done(r->id, VIRTIO_BLK_S_OK, 4097);
	KTAP_EXPECT(drv_wait(&d, 1) == 1 && drv_status(&d, 0) == VIRTIO_BLK_S_OK, "the new request's answer");
	extent_close(&d);
	KTAP_EXPECT(wait_no_workers(), "workers left");
	return KTAP_PASS;
}

/* O_APPEND set on the backend after SET_BACKEND: a guest write still lands at its sector, not at EOF. */
static enum ktap_result append_set_later(void)
{
	struct stat sb;
	struct drv d;
	uint8_t *p;

	KTAP_EXPECT(drv_setup(&d, "app0", default_features(), 0) == 0, "setup");
	KTAP_SYSCALL(fcntl(d.img, F_SETFL, fcntl(d.img, F_GETFL) | O_APPEND));
	p = gpa(&d, DATA_GPA(0));
	memset(p, 0x5a, 8192);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, 16, 8192, false) == VIRTIO_BLK_S_OK, "write");
	KTAP_EXPECT(file_has(d.img, 16 * 512, p, 8192), "the write is not at sector 16");
	KTAP_SYSCALL(fstat(d.img, &sb));
	KTAP_EXPECT(sb.st_size == IMG_SIZE, "image grew to %lld bytes", (long long)sb.st_size);
	drv_close(&d);
	return KTAP_PASS;
}

/* UNMAP_EXTENTS with length UINT64_MAX ("to the end") from an offset > 0: its end wraps, yet it revokes. */
static enum ktap_result extent_unmap_to_end(void)
{
	struct sluice_blk_range rg = { CL, UINT64_MAX };
	struct sluice_blk_upcall_req *r;
	struct drv d;

	KTAP_EXPECT(!extent_setup(&d, "ext2"), "extent-mode setup");
	KTAP_SYSCALL(map_extent(&d, 0, 4 * CL, 10 * CL, true));	/* guest 0-3 -> host 10-13 */
	KTAP_EXPECT(sysfs_num("ext2", "extents") == 4, "%ld clusters mapped", sysfs_num("ext2", "extents"));
	KTAP_SYSCALL(ioctl(d.fd, SLUICE_BLK_UNMAP_EXTENTS, &rg));
	KTAP_EXPECT(sysfs_num("ext2", "extents") == 1, "%ld clusters after unmapping from cluster 1 to the end",
		    sysfs_num("ext2", "extents"));
	/* Cluster 0 is still served in the kernel, cluster 3 goes to userspace. */
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read of cluster 0");
	KTAP_EXPECT(sysfs_num("ext2", "queues/0/fallback") == 0, "cluster 0 was forwarded");
	drv_post(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 3 * CL / 512, 4096, false));
	r = next_upcall();
	KTAP_EXPECT(r && r->reason == SLUICE_BLK_FWD_UNMAPPED, "read of revoked cluster 3 not forwarded");
	post_done(r->id, VIRTIO_BLK_S_OK, 4097);
	KTAP_EXPECT(drv_wait(&d, 1) == 1 && drv_status(&d, 0) == VIRTIO_BLK_S_OK, "forwarded read");
	extent_close(&d);
	KTAP_EXPECT(wait_no_workers(), "workers left");
	return KTAP_PASS;
}

/*
 * Not a test: "kmod_dataplane bench SECONDS QD read|write" keeps QD 4 KiB random requests
 * in flight on one queue for SECONDS and prints "IOPS: N" (compare with fio on the same file).
 */
static int param_write(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/module/sluice_blk/parameters/%s", name);
	return write_file(path, val);
}

/*
 * A kick on an idle queue from a thread of the owner is served by that thread
 * (an inline pass, counted in queues/N/inline_passes): data right either way,
 * a burst beyond the inline budget finished by the worker, a kick from another
 * mm (a forked child) and inline_kick=0 left to the worker.
 */
static enum ktap_result inline_kick(void)
{
	long before, after;
	unsigned int i, s;
	pid_t pid;
	int status;
	struct drv d;
	uint8_t *p;

	KTAP_EXPECT(!param_write("inline_kick", "4"), "inline_kick=4");
	KTAP_EXPECT(drv_setup(&d, "inl0", default_features(), 0) == 0, "setup");
	/* One request at a time: the queue is idle at each kick. */
	for (i = 0; i < 32; i++) {
		p = gpa(&d, DATA_GPA(0));
		memset(p, 0x40 + i, 4096);
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, i * 8, 4096, false) == VIRTIO_BLK_S_OK, "write %u", i);
		memset(p, 0, 4096);
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, i * 8, 4096, i % 2) == VIRTIO_BLK_S_OK, "read %u", i);
		KTAP_EXPECT(p[0] == 0x40 + i && p[4095] == 0x40 + i, "read %u: %#x, expected %#x", i, p[0], 0x40 + i);
	}
	after = sysfs_num("inl0", "queues/0/inline_passes");
	ktap_diag("64 requests one at a time: %ld inline passes, %ld direct completions", after,
		  sysfs_num("inl0", "queues/0/direct"));
	KTAP_EXPECT(after >= 1 && after <= 64, "%ld inline passes for 64 kicks on an idle queue", after);

	/* 16 requests and one kick: 4 popped inline, the rest by the worker. */
	before = after;
	for (s = 0; s < 16; s++)
		drv_publish(&d, drv_req(&d, s, VIRTIO_BLK_T_IN, s * 8, 4096, false));
	drv_kick(&d);
	KTAP_EXPECT(drv_wait(&d, 16) == 16, "burst of 16: completions missing");
	for (s = 0; s < 16; s++)
		KTAP_EXPECT(drv_status(&d, s) == VIRTIO_BLK_S_OK, "burst slot %u status %u", s, drv_status(&d, s));
	after = sysfs_num("inl0", "queues/0/inline_passes");
	KTAP_EXPECT(after - before <= 1, "burst: %ld inline passes", after - before);

	/* A kick from another mm: the worker serves it. */
	before = after;
	drv_publish(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 4096, false));
	KTAP_SYSCALL(pid = fork());
	if (!pid) {
		uint64_t one = 1;

		_exit(write(d.kick, &one, sizeof(one)) == sizeof(one) ? 0 : 1);
	}
	KTAP_SYSCALL(waitpid(pid, &status, 0));
	KTAP_EXPECT(drv_wait(&d, 1) == 1 && drv_status(&d, 0) == VIRTIO_BLK_S_OK, "kick from a child");
	after = sysfs_num("inl0", "queues/0/inline_passes");
	KTAP_EXPECT(after == before, "a child's kick ran %ld inline passes", after - before);

	/* Off: every pop on the worker. */
	KTAP_EXPECT(!param_write("inline_kick", "0"), "inline_kick=0");
	for (i = 0; i < 16; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, i * 8, 4096, false) == VIRTIO_BLK_S_OK, "read %u, off", i);
	KTAP_EXPECT(sysfs_num("inl0", "queues/0/inline_passes") == after, "inline passes with inline_kick=0");
	KTAP_EXPECT(!param_write("inline_kick", "4"), "inline_kick=4 again");
	drv_close(&d);
	return KTAP_PASS;
}

/*
 * Kicks that come while a request is still unanswered, or after more than one
 * request was posted, turn inline passes off until the driver has kicked at
 * depth 1 for a while (a moving average over kicks, sluice_blk_kick_busy()).
 * The unanswered request is a read of an unmapped cluster, forwarded to us
 * and held; no polling: no timing involved.
 */
static enum ktap_result inline_busy_kicks(void)
{
	struct sluice_blk_upcall_req *r;
	long idle, before, after;
	unsigned int i;
	struct drv d;
	uint8_t *p;

	KTAP_EXPECT(!param_write("inline_kick", "4"), "inline_kick=4");
	/*
	 * No polling: a polling worker may see the next request before its kick
	 * and take it, which would blur what the kicks alone decide.
	 */
	KTAP_EXPECT(!param_write("poll_ns", "0"), "poll_ns=0");
	KTAP_EXPECT(!extent_setup(&d, "inl1"), "extent-mode setup");
	KTAP_SYSCALL(map_extent(&d, 0, CL, 10 * CL, true));	/* guest cluster 0; cluster 1 unmapped */
	p = gpa(&d, DATA_GPA(0));
	memset(p, 0x5a, 4096);
	KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_OUT, 0, 4096, false) == VIRTIO_BLK_S_OK, "write of cluster 0");
	for (i = 0; i < 16; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read %u, depth 1", i);
	before = sysfs_num("inl1", "queues/0/inline_passes");
	KTAP_EXPECT(before >= 1, "no inline pass in 17 kicks at depth 1");
	idle = before;

	/* A read of cluster 1 held in userspace; 24 requests, each kicked with it outstanding. */
	drv_post(&d, drv_req(&d, 1, VIRTIO_BLK_T_IN, CL / 512, 4096, false));
	r = next_upcall();
	KTAP_EXPECT(r && r->reason == SLUICE_BLK_FWD_UNMAPPED, "read of cluster 1 not forwarded");
	before = sysfs_num("inl1", "queues/0/inline_passes");	/* that kick found the queue idle */
	for (i = 0; i < 24; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read %u, depth 2", i);
	post_done(r->id, VIRTIO_BLK_S_OK, 4097);
	KTAP_EXPECT(drv_wait(&d, 1) == 1 && drv_status(&d, 1) == VIRTIO_BLK_S_OK, "the forwarded read");
	after = sysfs_num("inl1", "queues/0/inline_passes");
	KTAP_EXPECT(after == before, "%ld inline passes with a request outstanding", after - before);

	/* Depth 1 again: the average of 24 busy kicks needs 16 idle ones to fall under 1 in 8. */
	for (i = 0; i < 8; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read %u, after", i);
	after = sysfs_num("inl1", "queues/0/inline_passes");
	KTAP_EXPECT(after == before, "%ld inline passes right after busy kicks", after - before);
	for (i = 0; i < 32; i++) {
		memset(p, 0, 4096);
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read %u, later", i);
		KTAP_EXPECT(p[0] == 0x5a && p[4095] == 0x5a, "read %u: data %#x", i, p[0]);
	}
	after = sysfs_num("inl1", "queues/0/inline_passes");
	ktap_diag("depth 1: %ld inline passes of 17 kicks; busy: 0 of 24; then %ld of 40", idle,
		  after - before);
	KTAP_EXPECT(after > before, "inline passes did not come back at depth 1");

	/* Two requests per kick, nothing unanswered at the kicks: depth 2 all the same. */
	for (i = 0; i < 24; i++) {
		drv_publish(&d, drv_req(&d, 0, VIRTIO_BLK_T_IN, 0, 4096, false));
		drv_publish(&d, drv_req(&d, 2, VIRTIO_BLK_T_IN, 8, 4096, false));
		drv_kick(&d);
		KTAP_EXPECT(drv_wait(&d, 2) == 2, "pair %u: completions missing", i);
		KTAP_EXPECT(drv_status(&d, 0) == VIRTIO_BLK_S_OK && drv_status(&d, 2) == VIRTIO_BLK_S_OK,
			    "pair %u: status %u %u", i, drv_status(&d, 0), drv_status(&d, 2));
	}
	before = sysfs_num("inl1", "queues/0/inline_passes");
	for (i = 0; i < 8; i++)
		KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, 0, 4096, false) == VIRTIO_BLK_S_OK, "read %u, after pairs", i);
	after = sysfs_num("inl1", "queues/0/inline_passes");
	KTAP_EXPECT(after == before, "%ld inline passes right after kicks of two requests", after - before);
	KTAP_EXPECT(!param_write("poll_ns", "32768"), "poll_ns=32768 (its default) again");
	extent_close(&d);
	KTAP_EXPECT(wait_no_workers(), "workers left");
	return KTAP_PASS;
}

/*
 * Completions answer from their own context (queues/N/direct) when the rings
 * are in anon or shmem memory; with the rings in a file mapping, or with
 * direct_complete=N, every one goes through the worker.  Data right in all.
 */
static enum ktap_result direct_completions(void)
{
	static const char *const names[] = { "dir0", "dir1", "dir2" };
	unsigned int v, i, s;
	long direct, completed;
	struct drv d;
	uint8_t *p;

	for (v = 0; v < 3; v++) {
		setup_file_ram = v == 1;
		KTAP_EXPECT(!param_write("direct_complete", v == 2 ? "N" : "Y"), "direct_complete");
		KTAP_EXPECT(drv_setup(&d, names[v], default_features(), 0) == 0, "setup %s", names[v]);
		setup_file_ram = false;
		for (i = 0; i < 8; i++) {
			for (s = 0; s < SLOTS; s++) {
				p = gpa(&d, DATA_GPA(s));
				memset(p, (int)(i * SLOTS + s), 8192);
				drv_post(&d, drv_req(&d, s, VIRTIO_BLK_T_OUT, (uint64_t)s * 64, 8192, s % 2));
			}
			KTAP_EXPECT(drv_wait(&d, SLOTS) == SLOTS, "%s round %u: writes missing", names[v], i);
			for (s = 0; s < SLOTS; s++) {
				memset(gpa(&d, DATA_GPA(s)), 0xff, 8192);
				drv_post(&d, drv_req(&d, s, VIRTIO_BLK_T_IN, (uint64_t)s * 64, 8192, s % 2));
			}
			KTAP_EXPECT(drv_wait(&d, SLOTS) == SLOTS, "%s round %u: reads missing", names[v], i);
			for (s = 0; s < SLOTS; s++) {
				p = gpa(&d, DATA_GPA(s));
				KTAP_EXPECT(drv_status(&d, s) == VIRTIO_BLK_S_OK && p[0] == (uint8_t)(i * SLOTS + s) &&
					    p[8191] == (uint8_t)(i * SLOTS + s), "%s round %u slot %u: status %u data %#x",
					    names[v], i, s, drv_status(&d, s), p[0]);
			}
		}
		/* One at a time: each is the only request in flight, the case for a direct completion. */
		for (i = 0; i < 16; i++) {
			memset(gpa(&d, DATA_GPA(0)), 0xff, 4096);
			KTAP_EXPECT(drv_run(&d, VIRTIO_BLK_T_IN, (uint64_t)(i % SLOTS) * 64, 4096, false) ==
				    VIRTIO_BLK_S_OK && *(uint8_t *)gpa(&d, DATA_GPA(0)) == (uint8_t)(7 * SLOTS + i % SLOTS),
				    "%s: single read %u", names[v], i);
		}
		direct = sysfs_num(names[v], "queues/0/direct");
		completed = sysfs_num(names[v], "queues/0/completed");
		ktap_diag("%s: %ld of %ld completions direct", names[v], direct, completed);
		KTAP_EXPECT(completed == 16 * SLOTS + 16, "%s: %ld completed", names[v], completed);
		if (v == 0)
			KTAP_EXPECT(direct > 0, "anon rings: no direct completion");
		else
			KTAP_EXPECT(direct == 0, "%s: %ld direct completions", v == 1 ? "file-backed rings" :
				    "direct_complete=N", direct);
		drv_close(&d);
	}
	KTAP_EXPECT(!param_write("direct_complete", "Y"), "direct_complete=Y again");
	return KTAP_PASS;
}

static int bench(int secs, unsigned int qd, bool write)
{
	uint64_t done = 0;
	double end;
	struct drv d;
	unsigned int s;

	if (qd < 1 || qd > SLOTS || secs < 1 || drv_setup(&d, "bench0", default_features(), 0))
		return 1;
	srand(1);
	for (s = 0; s < qd; s++)
		drv_post(&d, drv_req(&d, s, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
				     (uint64_t)(rand() % (IMG_SIZE / 4096)) * 8, 4096, false));
	end = now_s() + secs;
	while (now_s() < end) {
		uint16_t idx = le16toh(__atomic_load_n(&d.used->idx, __ATOMIC_ACQUIRE));

		if (idx == d.used_seen) {
			struct pollfd p = { .fd = d.call, .events = POLLIN };
			uint64_t v;

			*(volatile uint16_t *)&d.avail->ring[QNUM] = htole16(idx);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (le16toh(__atomic_load_n(&d.used->idx, __ATOMIC_ACQUIRE)) == idx &&
			    poll(&p, 1, 100) > 0 && read(d.call, &v, sizeof(v)) < 0)
				break;
			continue;
		}
		while (d.used_seen != idx) {
			s = le32toh(d.used->ring[d.used_seen % QNUM].id) / 4;
			d.used_seen++;
			done++;
			drv_post(&d, drv_req(&d, s, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
					     (uint64_t)(rand() % (IMG_SIZE / 4096)) * 8, 4096, false));
		}
	}
	printf("IOPS: %.0f\n", done / (double)secs);
	drv_close(&d);
	return 0;
}

static const struct ktap_case kmod_dataplane_cases[] = {
	KTAP_CASE(setup_rejects_bad_arguments), KTAP_CASE(not_owner_is_refused),
	KTAP_CASE(rw_against_shadow), KTAP_CASE(flush_getid_discard_zeroes), KTAP_CASE(readonly_disk),
	KTAP_CASE(without_event_idx), KTAP_CASE(attack_cases), KTAP_CASE(stop_and_restart), KTAP_CASE(mem_table_moves_rings),
	KTAP_CASE(reset_drain_and_reuse),
	KTAP_CASE(close_with_requests_in_flight), KTAP_CASE(sigkill_with_requests_in_flight),
	KTAP_CASE(flood_without_completions), KTAP_CASE(cpu_knob), KTAP_CASE(tracepoints),
	KTAP_CASE(append_set_later), KTAP_CASE(extent_map_and_upcall), KTAP_CASE(upcall_stale_ids),
	KTAP_CASE(extent_unmap_to_end), KTAP_CASE(inline_kick), KTAP_CASE(direct_completions),
	KTAP_CASE(inline_busy_kicks),
};

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "bench"))
		return bench(atoi(argv[2]), (unsigned int)atoi(argv[3]), !strcmp(argv[4], "write"));
	return ktap_run(kmod_dataplane_cases, sizeof(kmod_dataplane_cases) / sizeof(kmod_dataplane_cases[0]));
}
