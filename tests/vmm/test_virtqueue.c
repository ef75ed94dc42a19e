// SPDX-License-Identifier: GPL-2.0
/* test_virtqueue.c - virtqueue processing without KVM: ring pop/push/notify rules and virtio-blk requests over a raw image in fake guest RAM. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>

#include "aio.h"
#include "block.h"
#include "ktap.h"
#include "virtio-blk.h"
#include "virtqueue.h"
#include "vmm.h"

#define RAM_SIZE	(4 << 20)
#define QSIZE		16
#define DESC		0x1000
#define AVAIL		0x2000
#define USED		0x3000
#define DATA		0x10000

static uint8_t *ram;
static struct sluice_vm vm;

static void *fake_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	return gpa < RAM_SIZE && len <= RAM_SIZE - gpa ? ram + gpa : NULL;
}

static const struct sluice_gmem gmem = { .to_hva = fake_to_hva };

static struct vring_desc *desc(unsigned int i)
{
	return (struct vring_desc *)(ram + DESC) + i;
}

static struct vring_avail *avail(void)
{
	return (struct vring_avail *)(ram + AVAIL);
}

static struct vring_used *used(void)
{
	return (struct vring_used *)(ram + USED);
}

static void set_desc(unsigned int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc(i)->addr = htole64(addr);
	desc(i)->len = htole32(len);
	desc(i)->flags = htole16(flags);
	desc(i)->next = htole16(next);
}

/* Offer head @head in the avail ring. */
static void offer(uint16_t head)
{
	uint16_t idx = le16toh(avail()->idx);

	avail()->ring[idx % QSIZE] = htole16(head);
	avail()->idx = htole16(idx + 1);
}

static void reset_ram(void)
{
	if (!ram)
		ram = aligned_alloc(4096, RAM_SIZE);
	memset(ram, 0, RAM_SIZE);
	vm.ram = ram;
	vm.low_size = RAM_SIZE;
	vm.ram_size = RAM_SIZE;
}

static enum ktap_result ring_pop_push_flags(void)
{
	struct sluice_vq_seg segs[8];
	uint32_t out, in;
	unsigned int n;
	struct sluice_vring vr;
	enum sluice_vq_err err;
	uint16_t head;

	reset_ram();
	KTAP_EXPECT(sluice_vring_init(&vr, &gmem, QSIZE, DESC, AVAIL, USED, false, true) == 0, "init");
	KTAP_EXPECT(sluice_vring_pop(&vr, &head, segs, 8, &n, &out, &in, &err) == 0, "empty ring popped");
	set_desc(0, DATA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA + 512, 1, VRING_DESC_F_WRITE, 0);
	offer(0);
	KTAP_EXPECT(sluice_vring_pop(&vr, &head, segs, 8, &n, &out, &in, &err) == 1, "err %d", err);
	KTAP_EXPECT(head == 0 && n == 2 && out == 16 && in == 1 && segs[1].write, "chain %u %u %u", n, out, in);
	sluice_vring_disable_notify(&vr);
	KTAP_EXPECT(le16toh(used()->flags) == VRING_USED_F_NO_NOTIFY, "notify not disabled");
	KTAP_EXPECT(!sluice_vring_enable_notify(&vr) && used()->flags == 0, "enable_notify");
	offer(0);
	KTAP_EXPECT(sluice_vring_enable_notify(&vr), "a new entry not seen by the re-check");
	sluice_vring_push(&vr, 0, 1);
	KTAP_EXPECT(used()->idx == 0, "published before publish");
	KTAP_EXPECT(sluice_vring_publish(&vr) && le16toh(used()->idx) == 1, "publish");
	KTAP_EXPECT(le32toh(used()->ring[0].id) == 0 && le32toh(used()->ring[0].len) == 1, "used entry");
	avail()->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	sluice_vring_push(&vr, 0, 1);
	KTAP_EXPECT(!sluice_vring_publish(&vr) && le16toh(used()->idx) == 2, "NO_INTERRUPT ignored");
	KTAP_EXPECT(!sluice_vring_publish(&vr), "nothing new, yet a notification");
	return KTAP_PASS;
}

static enum ktap_result ring_event_idx(void)
{
	uint16_t *used_event = (uint16_t *)&avail()->ring[QSIZE], *avail_event;
	struct sluice_vq_seg segs[8];
	struct sluice_vring vr;
	enum sluice_vq_err err;
	uint32_t out, in;
	unsigned int n, i;
	uint16_t head;

	reset_ram();
	avail_event = (uint16_t *)&used()->ring[QSIZE];
	KTAP_EXPECT(sluice_vring_init(&vr, &gmem, QSIZE, DESC, AVAIL, USED, true, true) == 0, "init");
	set_desc(0, DATA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA + 512, 1, VRING_DESC_F_WRITE, 0);
	for (i = 0; i < 3; i++)
		offer(0);
	for (i = 0; i < 3; i++)
		KTAP_EXPECT(sluice_vring_pop(&vr, &head, segs, 8, &n, &out, &in, &err) == 1, "pop %u", i);
	KTAP_EXPECT(!sluice_vring_enable_notify(&vr) && le16toh(*avail_event) == 3, "avail_event %u",
		    le16toh(*avail_event));
	/* The driver wants an interrupt once entry 2 (idx 3) is used. */
	*used_event = htole16(2);
	sluice_vring_push(&vr, 0, 1);
	sluice_vring_push(&vr, 0, 1);
	KTAP_EXPECT(!sluice_vring_publish(&vr), "interrupt before used_event was passed");
	sluice_vring_push(&vr, 0, 1);
	KTAP_EXPECT(sluice_vring_publish(&vr), "no interrupt when used_event was passed");
	return KTAP_PASS;
}

static enum ktap_result ring_malformed(void)
{
	struct sluice_vq_seg segs[64];
	struct sluice_vring vr;
	enum sluice_vq_err err;
	uint32_t out, in;
	unsigned int n;
	uint16_t head;

	reset_ram();
	KTAP_EXPECT(sluice_vring_init(&vr, &gmem, QSIZE, DESC + 8, AVAIL, USED, false, true) == -EINVAL,
		    "misaligned table accepted");
	KTAP_EXPECT(sluice_vring_init(&vr, &gmem, QSIZE, DESC, RAM_SIZE - 8, USED, false, true) == -EFAULT,
		    "avail ring outside RAM accepted");
	KTAP_EXPECT(sluice_vring_init(&vr, &gmem, 12, DESC, AVAIL, USED, false, true) == -EINVAL, "size 12");
	KTAP_EXPECT(sluice_vring_init(&vr, &gmem, QSIZE, DESC, AVAIL, USED, false, true) == 0, "init");
	set_desc(0, DATA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA, 16, VRING_DESC_F_NEXT, 0);	/* loop */
	offer(0);
	KTAP_EXPECT(sluice_vring_pop(&vr, &head, segs, 64, &n, &out, &in, &err) == -EIO && err == SLUICE_VQ_ERR_LOOP,
		    "loop: err %d", err);
	reset_ram();
	KTAP_EXPECT(sluice_vring_init(&vr, &gmem, QSIZE, DESC, AVAIL, USED, false, true) == 0, "init");
	avail()->idx = htole16(QSIZE + 1);
	KTAP_EXPECT(sluice_vring_pop(&vr, &head, segs, 64, &n, &out, &in, &err) == -EIO &&
		    err == SLUICE_VQ_ERR_AVAIL_JUMP, "jump: err %d", err);
	return KTAP_PASS;
}

/* A virtio-blk disk over a 1 MiB raw file, queue 0 served by this thread's loop. */
static struct sluice_vblk *vblk;
static char img[] = "/tmp/sluice-vq-XXXXXX";

static enum ktap_result engine_setup(void)
{
	struct sluice_vblk_queue *q;
	char *err = NULL;
	int fd;

	reset_ram();
	fd = mkstemp(img);
	KTAP_SYSCALL(fd);
	KTAP_SYSCALL(ftruncate(fd, 1 << 20));
	close(fd);
	vblk = g_new0(struct sluice_vblk, 1);
	vblk->vm = &vm;
	strcpy(vblk->id, "vq-test");
	memcpy(vblk->serial, "vq-test", 7);
	vblk->blk = sluice_blk_new_open(img, "raw", SLUICE_BDRV_O_RDWR, &err);
	KTAP_EXPECT(vblk->blk, "open: %s", err);
	vblk->capacity = 1 << 20;
	vblk->nr_queues = 1;
	q = &vblk->queues[0];
	q->vblk = vblk;
	q->ctx = sluice_block_main_ctx();
	q->size = QSIZE;
	q->desc_gpa = DESC;
	q->avail_gpa = AVAIL;
	q->used_gpa = USED;
	q->kick_fd = eventfd(0, EFD_NONBLOCK);
	q->call_fd = eventfd(0, EFD_NONBLOCK);
	q->enabled = true;
	sluice_vblk_queue_attach(q);
	KTAP_EXPECT(q->serving && !q->broken, "queue not serving");
	return KTAP_PASS;
}

/* Run the loop until @n used entries are published (or give up). */
static bool wait_used(uint16_t n)
{
	int i;

	for (i = 0; i < 5000 && le16toh(used()->idx) != n; i++) {
		if (!sluice_aio_poll(sluice_block_main_ctx(), false))
			usleep(200);
	}
	return le16toh(used()->idx) == n;
}

/* A request: header at DATA + 0x100 * slot, data at DATA + 0x10000 * (slot + 1), status after the header. */
static void request(unsigned int slot, uint32_t type, uint64_t sector, uint32_t len, bool data_in)
{
	uint64_t hdr = DATA + 0x100 * slot, buf = DATA + 0x10000 * (slot + 1);
	struct virtio_blk_outhdr *h = (void *)(ram + hdr);
	unsigned int d = slot * 3;

	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	ram[hdr + 16] = 0xaa;
	set_desc(d, hdr, 16, VRING_DESC_F_NEXT, d + 1);
	if (len) {
		set_desc(d + 1, buf, len, VRING_DESC_F_NEXT | (data_in ? VRING_DESC_F_WRITE : 0), d + 2);
		set_desc(d + 2, hdr + 16, 1, VRING_DESC_F_WRITE, 0);
	} else {
		set_desc(d, hdr, 16, VRING_DESC_F_NEXT, d + 2);
		set_desc(d + 2, hdr + 16, 1, VRING_DESC_F_WRITE, 0);
	}
	offer(d);
}

static uint8_t status_of(unsigned int slot)
{
	return ram[DATA + 0x100 * slot + 16];
}

static enum ktap_result engine_requests(void)
{
	struct sluice_vblk_queue *q = &vblk->queues[0];
	uint8_t *wbuf = ram + DATA + 0x10000, *rbuf = ram + DATA + 0x20000, back[4096];
	struct virtio_blk_discard_write_zeroes *dz;
	uint64_t calls;
	int fd;

	memset(wbuf, 0x5c, 4096);
	request(0, VIRTIO_BLK_T_OUT, 8, 4096, false);
	sluice_vblk_queue_process(q);
	KTAP_EXPECT(wait_used(1) && status_of(0) == VIRTIO_BLK_S_OK, "write: status %u", status_of(0));
	KTAP_EXPECT(read(q->call_fd, &calls, 8) == 8 && calls >= 1, "no irqfd write");
	request(1, VIRTIO_BLK_T_IN, 8, 4096, true);
	request(2, VIRTIO_BLK_T_FLUSH, 0, 0, false);
	request(3, VIRTIO_BLK_T_GET_ID, 0, 20, true);
	request(4, 0x77, 0, 0, false);
	sluice_vblk_queue_process(q);
	KTAP_EXPECT(wait_used(5), "used idx %u", le16toh(used()->idx));
	KTAP_EXPECT(status_of(1) == VIRTIO_BLK_S_OK && !memcmp(rbuf, wbuf, 4096), "read back");
	KTAP_EXPECT(status_of(2) == VIRTIO_BLK_S_OK, "flush %u", status_of(2));
	KTAP_EXPECT(status_of(3) == VIRTIO_BLK_S_OK && !memcmp(ram + DATA + 0x40000, "vq-test", 8), "get_id");
	KTAP_EXPECT(status_of(4) == VIRTIO_BLK_S_UNSUPP, "unknown type: %u", status_of(4));
	fd = open(img, O_RDONLY);
	KTAP_EXPECT(pread(fd, back, 4096, 8 * 512) == 4096 && !memcmp(back, wbuf, 4096), "image content");
	/* Out of range, then write-zeroes over the written sector. */
	request(0, VIRTIO_BLK_T_IN, 2048, 512, true);
	dz = (void *)(ram + DATA + 0x20000);
	dz->sector = htole64(8);
	dz->num_sectors = htole32(8);
	dz->flags = 0;
	request(1, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false);
	sluice_vblk_queue_process(q);
	KTAP_EXPECT(wait_used(7), "used idx %u", le16toh(used()->idx));
	KTAP_EXPECT(status_of(0) == VIRTIO_BLK_S_IOERR, "read past the end: %u", status_of(0));
	KTAP_EXPECT(status_of(1) == VIRTIO_BLK_S_OK, "write zeroes: %u", status_of(1));
	memset(wbuf, 0, 4096);
	KTAP_EXPECT(pread(fd, back, 4096, 8 * 512) == 4096 && !memcmp(back, wbuf, 4096), "not zeroed");
	close(fd);
	KTAP_EXPECT(__atomic_load_n(&q->requests, __ATOMIC_RELAXED) == 7, "requests %lu",
		    (unsigned long)q->requests);
	return KTAP_PASS;
}

/*
 * A guest that re-offers heads without waiting for their completions: with
 * the node drained nothing completes, so every popped request stays in
 * flight.  The engine must stop popping at the ring size (memory stays
 * bounded) and pick the rest up once completions come.
 */
static enum ktap_result engine_flood_bounded(void)
{
	struct sluice_vblk_queue *q = &vblk->queues[0];
	struct sluice_bds *bs = sluice_blk_bs(vblk->blk);
	uint16_t start = le16toh(used()->idx);
	unsigned int i, round;

	sluice_bds_drained_begin(bs);
	for (round = 0; round < 2; round++) {
		for (i = 0; i < QSIZE; i++)
			request(0, VIRTIO_BLK_T_IN, 0, 4096, true);
		sluice_vblk_queue_process(q);
		sluice_aio_poll(sluice_block_main_ctx(), false);
		KTAP_EXPECT(__atomic_load_n(&q->inflight, __ATOMIC_RELAXED) <= QSIZE,
			    "round %u: %u in flight on a ring of %u", round, q->inflight, QSIZE);
	}
	KTAP_EXPECT(__atomic_load_n(&q->inflight, __ATOMIC_RELAXED) == QSIZE, "%u in flight, want %u",
		    q->inflight, QSIZE);
	KTAP_EXPECT(le16toh(used()->idx) == start, "requests completed on a drained node");
	sluice_bds_drained_end(bs);
	KTAP_EXPECT(wait_used(start + 2 * QSIZE), "used %u, want %u", le16toh(used()->idx), start + 2 * QSIZE);
	KTAP_EXPECT(!q->broken, "flood broke the queue");
	return KTAP_PASS;
}

/*
 * A queue move (set-queue-iothread: stop, then resume elsewhere) keeps the
 * ring indices: a guest that scribbles on used->idx meanwhile cannot make
 * the device restart from its value.
 */
static enum ktap_result engine_move_keeps_indices(void)
{
	struct sluice_vblk_queue *q = &vblk->queues[0];
	uint16_t last_avail = q->vring.last_avail_idx, used_idx = q->vring.used_idx;

	KTAP_EXPECT(le16toh(used()->idx) == used_idx, "used idx %u, shadow %u", le16toh(used()->idx), used_idx);
	sluice_vblk_queue_stop(q);
	KTAP_EXPECT(!q->serving, "still serving after the stop");
	used()->idx = htole16(used_idx + 7);		/* the guest writes its (device-owned) used->idx */
	sluice_vblk_queue_resume(q);
	KTAP_EXPECT(q->serving && !q->broken, "not serving after the move");
	KTAP_EXPECT(q->vring.last_avail_idx == last_avail && q->vring.used_idx == used_idx &&
		    q->vring.published_idx == used_idx,
		    "indices re-read: last_avail %u (was %u), used %u (was %u)", q->vring.last_avail_idx,
		    last_avail, q->vring.used_idx, used_idx);
	request(0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
	sluice_vblk_queue_process(q);
	KTAP_EXPECT(wait_used(used_idx + 1) && status_of(0) == VIRTIO_BLK_S_OK, "used idx %u, want %u",
		    le16toh(used()->idx), used_idx + 1);
	KTAP_EXPECT(le32toh(used()->ring[used_idx % QSIZE].id) == 0, "used entry in the wrong slot");
	return KTAP_PASS;
}

static enum ktap_result engine_malformed_needs_reset(void)
{
	struct sluice_vblk_queue *q = &vblk->queues[0];
	uint16_t d = 9, used_idx;

	/* A request without a status byte: the device needs a reset; the process lives on. */
	set_desc(d, DATA, 16, 0, 0);
	offer(d);
	sluice_vblk_queue_process(q);
	KTAP_EXPECT(q->broken, "queue not broken");
	KTAP_EXPECT(vblk->vpci.status & 0x40, "NEEDS_RESET not set: status 0x%x", vblk->vpci.status);
	/*
	 * A completion pushed its used entry but its flush BH has not run
	 * (inflight is already 0): the stop must publish it, broken or not.
	 */
	used_idx = q->vring.used_idx;
	sluice_vring_push(&q->vring, 3, 1);
	sluice_vblk_queue_stop(q);
	KTAP_EXPECT(!q->serving, "still serving");
	KTAP_EXPECT(le16toh(used()->idx) == (uint16_t)(used_idx + 1), "pushed entry not published: used idx %u",
		    le16toh(used()->idx));
	/* Moving a broken queue neither mends it nor restarts it from the guest's indices. */
	used()->idx = htole16(used_idx + 9);
	sluice_vblk_queue_resume(q);
	KTAP_EXPECT(q->broken && !q->serving, "a move revived a broken queue");
	request(0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
	sluice_vblk_queue_process(q);
	KTAP_EXPECT(q->vring.used_idx == (uint16_t)(used_idx + 1), "a broken queue took a request");
	sluice_vblk_queue_stop(q);
	sluice_blk_unref(vblk->blk);
	unlink(img);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(ring_pop_push_flags), KTAP_CASE(ring_event_idx), KTAP_CASE(ring_malformed),
	  KTAP_CASE(engine_setup), KTAP_CASE(engine_requests), KTAP_CASE(engine_flood_bounded),
	  KTAP_CASE(engine_move_keeps_indices), KTAP_CASE(engine_malformed_needs_reset))
