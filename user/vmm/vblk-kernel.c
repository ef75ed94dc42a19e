// SPDX-License-Identifier: GPL-2.0
/* vblk-kernel.c - virtio-blk on the kernel dataplane (/dev/sluice-blk): the glue between the device and sluice_blk.ko. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/virtio_blk.h>

#include <glib.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"
#include "iothread.h"
#include "iov.h"
#include "kdp.h"
#include "qcow2.h"
#include "virtio-blk.h"
#include "vmm.h"

/* The kernel dataplane's state of one disk (vblk->kernel). */
struct vblk_kernel {
	struct sluice_kdp *kdp;
	int img_fd;			/* the image, as the module reads and writes it */
	char name[32];			/* /sys/class/sluice_blk/<name> */
	int err_fd[SLUICE_VIRTIO_MAX_QUEUES];	/* the module stopped a queue on a malformed chain */
	bool queue_started[SLUICE_VIRTIO_MAX_QUEUES];

	/* qcow2: the module serves mapped clusters; the rest comes here on the upcall rings. */
	bool qcow2;
	unsigned int cluster_bits;
	struct sluice_blk_ring_hdr *req_ring, *done_ring;
	size_t req_bytes, done_bytes;
	int notify_fd, done_fd;
	struct sluice_aio_ctx *ctx;	/* the image's ctx: upcalls are served there */
	unsigned int upcalls;		/* atomic: upcall coroutines running */
	uint64_t upcalls_served;	/* atomic */
	/* The image's ctx only (upcall coroutines): see vblk_kernel_revoke_begin(). */
	unsigned int revoking;		/* cluster changes running */
	uint64_t map_gen;		/* bumped when one starts and when it ends */
	bool premapping;		/* atomic: vblk_kernel_co_premap() runs */
	bool premap_stop;		/* atomic: the disk goes; it ends at its next chunk */
};

#define VBLK_KERNEL_RING	256	/* upcall ring entries */

/* One forwarded request being served. */
struct vblk_kernel_upcall {
	struct sluice_vblk *vblk;
	struct sluice_blk_upcall_req rec;
};

/* Main thread (main loop): the module stopped a queue; the device needs a reset, the VM runs on. */
static void vblk_kernel_err_read(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;
	struct vblk_kernel *k = q->vblk->kernel;
	uint64_t v;

	if (read(k->err_fd[q->index], &v, sizeof(v)) != sizeof(v))
		return;
	fprintf(stderr, "sluice: drive %s queue %u: sluice_blk stopped the queue on a malformed chain "
		"(see dmesg); device needs a reset\n", q->vblk->id, q->index);
	__atomic_store_n(&q->broken, true, __ATOMIC_RELAXED);
	sluice_virtio_pci_needs_reset(&q->vblk->vpci);
}

/*
 * Coroutine in the image's ctx.  Freeing clusters (discard, zeroes) or moving
 * data away from them (COW of a shared cluster) must not race with the
 * installs of concurrent forwarded requests: one that looked its clusters up
 * before the change, and installs after the revoke, would hand the module a
 * cluster about to be freed and reused.  A change runs between
 * revoke_begin() and revoke_end(); an install is skipped while another change
 * runs, or if one started or ended since the installing request began (the
 * next miss forwards again and maps what is there then).  Returns the
 * generation the changing request itself may install under.
 */
static uint64_t vblk_kernel_revoke_begin(struct vblk_kernel *k)
{
	k->revoking++;
	return ++k->map_gen;
}

static void vblk_kernel_revoke_end(struct vblk_kernel *k)
{
	k->map_gen++;
	k->revoking--;
}

/*
 * Coroutine in the image's ctx, graph reader lock held: look up the runs of
 * allocated clusters in [off, off + len) (up to @max, into @ext) and install
 * them in the module, unless a cluster change ran since @gen (k->map_gen when
 * the caller began, or what revoke_begin() returned, then @own = 1).  Returns
 * the number of runs looked up, -EAGAIN when a change ran (nothing installed),
 * or the lookup's or the first refused install's -errno.
 */
static int coroutine_fn GRAPH_RDLOCK vblk_kernel_co_install(struct sluice_vblk *vblk, uint64_t off, uint64_t len,
							    uint64_t gen, unsigned int own,
							    struct qcow2_extent *ext, unsigned int max)
{
	struct vblk_kernel *k = vblk->kernel;
	int i, n, ret = 0;

	n = qcow2_co_get_extents(sluice_blk_bs(vblk->blk), off, len, ext, max);
	if (n < 0)
		return n;
	/* No yield from here to the ioctls: the check stays true while they run. */
	if (k->map_gen != gen || k->revoking != own)
		return -EAGAIN;
	for (i = 0; i < n; i++) {
		int r = sluice_kdp_map(k->kdp, ext[i].offset, ext[i].bytes, ext[i].host,
				       ext[i].writable && !vblk->readonly);

		if (r && !ret)
			ret = r;
	}
	return ret ? ret : n;
}

/*
 * Coroutine in the image's ctx: after a forwarded read or write, hand the
 * clusters now allocated in [off, off + len) to the module, so the next
 * request there stays in the kernel.  @gen, @own: as vblk_kernel_co_install().
 */
static void coroutine_fn GRAPH_RDLOCK vblk_kernel_co_map(struct sluice_vblk *vblk, uint64_t off, uint64_t len,
					    uint64_t gen, unsigned int own)
{
	struct qcow2_extent ext[16];

	vblk_kernel_co_install(vblk, off, len, gen, own, ext, G_N_ELEMENTS(ext));
}

/*
 * At most this many clusters are mapped ahead (vblk_kernel_co_premap): 4 Mi,
 * 256 GiB of 64 KiB clusters, some 36 MiB of the module's extent map at worst;
 * about the reach of QEMU's default qcow2 L2 cache.
 */
#define VBLK_KERNEL_PREMAP_MAX	(4ULL << 20)

/*
 * Coroutine in the image's ctx, started at attach: hand the module every
 * allocated cluster of the image, so that the first request to one is served
 * in the kernel too.  (Else each cluster's first request is forwarded here and
 * maps it on its way back: random reads over a fresh VM's disk pay a round trip
 * to userspace per cluster.)  It runs beside the guest's requests, one chunk of
 * runs at a time, under their install rule (vblk_kernel_co_map): a chunk that
 * overlapped a cluster change is looked up again.  It ends after
 * VBLK_KERNEL_PREMAP_MAX clusters, on an error (forwarded requests still map
 * what they touch), or when the disk goes (k->premap_stop).
 */
static void coroutine_fn vblk_kernel_co_premap(void *opaque)
{
	struct sluice_vblk *vblk = opaque;
	struct vblk_kernel *k = vblk->kernel;
	struct qcow2_extent ext[64];
	uint64_t off = 0, clusters = 0;
	int i, n;

	while (off < vblk->capacity && clusters < VBLK_KERNEL_PREMAP_MAX &&
	       !__atomic_load_n(&k->premap_stop, __ATOMIC_ACQUIRE)) {
		if (k->revoking) {
			sluice_co_sleep_ns(100 * 1000);
			continue;
		}
		sluice_graph_co_rdlock();
		n = vblk_kernel_co_install(vblk, off, vblk->capacity - off, k->map_gen, 0, ext, G_N_ELEMENTS(ext));
		sluice_graph_co_rdunlock();
		if (n == -EAGAIN)
			continue;
		if (n < 0 || n < (int)G_N_ELEMENTS(ext))
			break;		/* a lookup error or refusal (ENOMEM), or the rest had fewer runs */
		for (i = 0; i < n; i++)
			clusters += ext[i].bytes >> k->cluster_bits;
		off = ext[n - 1].offset + ext[n - 1].bytes;
		sluice_co_sleep_ns(0);	/* let the guest's requests in between chunks */
	}
	__atomic_store_n(&k->premapping, false, __ATOMIC_RELEASE);
}

/* IOThread (the image's ctx, through sluice_aio_run_sync): start vblk_kernel_co_premap(). */
static void vblk_kernel_start_premap(void *opaque)
{
	sluice_co_enter(sluice_co_create(vblk_kernel_co_premap, opaque));
}

/*
 * Coroutine in the image's ctx: may a write of [off, off + len) copy a cluster
 * the module may read in place (NORMAL but shared: not COPIED)?  Then that
 * cluster's refcount drops and it may be freed: the write must revoke first.
 */
static bool coroutine_fn GRAPH_RDLOCK vblk_kernel_co_write_cows(struct sluice_vblk *vblk, uint64_t off, uint64_t len)
{
	struct qcow2_extent ext[16];
	int i, n;

	n = qcow2_co_get_extents(sluice_blk_bs(vblk->blk), off, len, ext, 16);
	if (n < 0)
		return true;
	for (i = 0; i < n; i++)
		if (!ext[i].writable)
			return true;
	return n == 16;		/* more runs than we looked at: assume the worst */
}

/* Coroutine in the image's ctx: DISCARD / WRITE_ZEROES ranges, each revoked in the module first. */
static uint8_t coroutine_fn vblk_kernel_co_discard(struct sluice_vblk *vblk, uint32_t type,
						   struct iovec *iov, unsigned int n, uint32_t len)
{
	struct virtio_blk_discard_write_zeroes seg[SLUICE_VBLK_MAX_DWZ_SEG];
	struct vblk_kernel *k = vblk->kernel;
	uint32_t i, nseg = len / sizeof(seg[0]);

	if (vblk->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (!len || len % sizeof(seg[0]) || nseg > SLUICE_VBLK_MAX_DWZ_SEG)
		return VIRTIO_BLK_S_UNSUPP;
	if (sluice_iov_to_buf(iov, (int)n, 0, seg, len) != len)
		return VIRTIO_BLK_S_IOERR;
	for (i = 0; i < nseg; i++) {
		uint64_t off = le64toh(seg[i].sector) << 9, bytes = (uint64_t)le32toh(seg[i].num_sectors) << 9;
		uint32_t flags = le32toh(seg[i].flags);
		int ret;

		if (off > vblk->capacity || bytes > vblk->capacity - off)
			return VIRTIO_BLK_S_IOERR;
		if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ||
		    (type == VIRTIO_BLK_T_DISCARD && flags))
			return VIRTIO_BLK_S_UNSUPP;
		if (!bytes)
			continue;
		/* The clusters may be freed or rewritten: no kernel request may use them any more. */
		vblk_kernel_revoke_begin(k);
		if (sluice_kdp_unmap(k->kdp, off, bytes)) {
			vblk_kernel_revoke_end(k);
			return VIRTIO_BLK_S_IOERR;
		}
		if (type == VIRTIO_BLK_T_DISCARD)
			ret = sluice_blk_co_pdiscard(vblk->blk, off, bytes);
		else
			ret = sluice_blk_co_pwrite_zeroes(vblk->blk, off, bytes,
							  flags ? SLUICE_BDRV_REQ_MAY_UNMAP : 0);
		vblk_kernel_revoke_end(k);
		if (ret < 0 && !(type == VIRTIO_BLK_T_DISCARD && ret == -ENOTSUP))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* Coroutine in the image's ctx: serve one forwarded request with the qcow2 driver, post its completion. */
static void coroutine_fn vblk_kernel_co_upcall(void *opaque)
{
	struct vblk_kernel_upcall *u = opaque;
	struct sluice_vblk *vblk = u->vblk;
	struct vblk_kernel *k = vblk->kernel;
	struct sluice_blk_upcall_req *r = &u->rec;
	struct sluice_blk_upcall_done *ring = (void *)(k->done_ring + 1);
	struct iovec iov[SLUICE_BLK_UPCALL_MAX_SEGS];
	uint64_t off = r->sector << 9, one = 1, gen = k->map_gen;
	uint32_t written = 1, prod;
	uint8_t status = VIRTIO_BLK_S_IOERR;
	unsigned int i, n = MIN(r->nsegs, SLUICE_BLK_UPCALL_MAX_SEGS), own = 0;
	bool cows;

	for (i = 0; i < n; i++) {
		iov[i].iov_base = sluice_gpa_to_hva(vblk->vm, r->segs[i].gpa, r->segs[i].len);
		iov[i].iov_len = r->segs[i].len;
		if (!iov[i].iov_base)
			goto out_post;
	}
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		if (sluice_blk_co_preadv(vblk->blk, off, r->data_len, iov, n, 0) < 0)
			break;
		status = VIRTIO_BLK_S_OK;
		written = r->data_len + 1;
		sluice_graph_co_rdlock();	/* node-level; the sluice_blk_co_* calls lock for themselves */
		vblk_kernel_co_map(vblk, off, r->data_len, gen, 0);
		sluice_graph_co_rdunlock();
		break;
	case VIRTIO_BLK_T_OUT:
		if (vblk->readonly)
			break;
		sluice_graph_co_rdlock();
		cows = vblk_kernel_co_write_cows(vblk, off, r->data_len);
		sluice_graph_co_rdunlock();
		if (cows) {
			gen = vblk_kernel_revoke_begin(k);
			own = 1;
			if (sluice_kdp_unmap(k->kdp, off, r->data_len))
				goto out_revoked;
		}
		if (sluice_blk_co_pwritev(vblk->blk, off, r->data_len, iov, n, 0) < 0)
			goto out_revoked;
		status = VIRTIO_BLK_S_OK;
		sluice_graph_co_rdlock();
		vblk_kernel_co_map(vblk, off, r->data_len, gen, own);
		sluice_graph_co_rdunlock();
out_revoked:
		if (own)
			vblk_kernel_revoke_end(k);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = sluice_blk_co_flush(vblk->blk) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = vblk_kernel_co_discard(vblk, r->type, iov, n, r->data_len);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
out_post:
	/*
	 * Only this ctx produces on the done ring.  More requests can be in
	 * flight than it has entries (the request ring is emptied as it is
	 * read): wait for the module to reap rather than overwrite an entry it
	 * has not read.  Its cons store follows its reads of the entries; this
	 * acquire pairs with that.
	 */
	for (;;) {
		prod = k->done_ring->prod;
		if (prod - __atomic_load_n(&k->done_ring->cons, __ATOMIC_ACQUIRE) < VBLK_KERNEL_RING)
			break;
		sluice_co_sleep_ns(50 * 1000);
	}
	ring[prod & (VBLK_KERNEL_RING - 1)] = (struct sluice_blk_upcall_done){
		.id = r->id, .written = written, .status = status,
	};
	/* The entry before prod; pairs with the module's smp_rmb after it reads prod. */
	__atomic_store_n(&k->done_ring->prod, prod + 1, __ATOMIC_RELEASE);
	if (write(k->done_fd, &one, sizeof(one)) != sizeof(one))
		fprintf(stderr, "sluice: drive %s: cannot signal the module: %s\n", vblk->id, strerror(errno));
	__atomic_fetch_add(&k->upcalls_served, 1, __ATOMIC_RELAXED);
	__atomic_fetch_sub(&k->upcalls, 1, __ATOMIC_RELEASE);
	g_free(u);
}

/* IOThread (the image's ctx): the module forwarded requests; one coroutine each. */
static void vblk_kernel_upcall_read(void *opaque)
{
	struct sluice_vblk *vblk = opaque;
	struct vblk_kernel *k = vblk->kernel;
	struct sluice_blk_upcall_req *ring = (void *)(k->req_ring + 1);
	uint32_t prod, cons = k->req_ring->cons;
	uint64_t v;

	if (read(k->notify_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	/* Entries after prod; pairs with the module's smp_wmb before it writes prod. */
	prod = __atomic_load_n(&k->req_ring->prod, __ATOMIC_ACQUIRE);
	if (prod - cons > VBLK_KERNEL_RING)
		return;		/* cannot happen with a sane module: leave the ring alone */
	for (; cons != prod; cons++) {
		struct vblk_kernel_upcall *u = g_new(struct vblk_kernel_upcall, 1);

		u->vblk = vblk;
		u->rec = ring[cons & (VBLK_KERNEL_RING - 1)];
		__atomic_fetch_add(&k->upcalls, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&k->req_ring->cons, cons + 1, __ATOMIC_RELEASE);
		sluice_co_enter(sluice_co_create(vblk_kernel_co_upcall, u));
	}
}

/* IOThread (the image's ctx, through sluice_aio_run_sync): start / stop listening to upcalls. */
static void vblk_kernel_watch_upcalls(void *opaque)
{
	struct sluice_vblk *vblk = opaque;
	struct vblk_kernel *k = vblk->kernel;

	sluice_aio_set_fd_handler(k->ctx, k->notify_fd, vblk_kernel_upcall_read, NULL, vblk);
}

static void vblk_kernel_unwatch_upcalls(void *opaque)
{
	struct sluice_vblk *vblk = opaque;
	struct vblk_kernel *k = vblk->kernel;

	sluice_aio_set_fd_handler(k->ctx, k->notify_fd, NULL, NULL, NULL);
}

/* Any thread: wait until no upcall coroutine runs (they finish on their own, in the image's ctx). */
static void vblk_kernel_wait_upcalls(struct vblk_kernel *k)
{
	while (__atomic_load_n(&k->upcalls, __ATOMIC_ACQUIRE))
		usleep(1000);
}

/* Main thread, at attach: the qcow2 image goes to the module in extent mode, with the upcall rings. */
static int vblk_kernel_attach_qcow2(struct sluice_vblk *vblk, struct vblk_kernel *k, char **errp)
{
	int ret;

	k->qcow2 = true;
	k->cluster_bits = qcow2_cluster_bits(sluice_blk_bs(vblk->blk));
	if (!k->cluster_bits) {
		*errp = g_strdup("dataplane=kernel: the image did not open as qcow2");
		return -EINVAL;
	}
	ret = sluice_kdp_set_extent_backend(k->kdp, k->img_fd, vblk->capacity, vblk->readonly, k->name,
					    vblk->serial, k->cluster_bits, errp);
	if (ret)
		return ret;
	k->req_bytes = sizeof(*k->req_ring) + VBLK_KERNEL_RING * sizeof(struct sluice_blk_upcall_req);
	k->done_bytes = sizeof(*k->done_ring) + VBLK_KERNEL_RING * sizeof(struct sluice_blk_upcall_done);
	k->req_ring = mmap(NULL, k->req_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	k->done_ring = mmap(NULL, k->done_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	k->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	k->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (k->req_ring == MAP_FAILED || k->done_ring == MAP_FAILED || k->notify_fd < 0 || k->done_fd < 0) {
		*errp = g_strdup_printf("dataplane=kernel: upcall rings: %s", strerror(errno));
		return -ENOMEM;
	}
	ret = sluice_kdp_set_upcall(k->kdp, k->req_ring, k->done_ring, VBLK_KERNEL_RING, k->notify_fd,
				    k->done_fd, errp);
	if (ret)
		return ret;
	k->ctx = sluice_blk_get_aio_context(vblk->blk);
	sluice_aio_run_sync(k->ctx, vblk_kernel_watch_upcalls, vblk);
	__atomic_store_n(&k->premapping, true, __ATOMIC_RELEASE);
	sluice_aio_run_sync(k->ctx, vblk_kernel_start_premap, vblk);
	return 0;
}

/* Main thread: undo vblk_kernel_attach's steps; safe on a partly built state. */
static void vblk_kernel_free(struct sluice_vblk *vblk, struct vblk_kernel *k)
{
	unsigned int i;

	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES; i++) {
		if (k->err_fd[i] < 0)
			continue;
		sluice_aio_set_fd_handler(sluice_block_main_ctx(), k->err_fd[i], NULL, NULL, NULL);
		close(k->err_fd[i]);
	}
	if (k->ctx)
		sluice_aio_run_sync(k->ctx, vblk_kernel_unwatch_upcalls, vblk);
	/* The premap coroutine uses the module's fd: it ends before the close. */
	__atomic_store_n(&k->premap_stop, true, __ATOMIC_RELEASE);
	while (__atomic_load_n(&k->premapping, __ATOMIC_ACQUIRE))
		usleep(1000);
	sluice_kdp_close(k->kdp);	/* stops the module's queues, cancels what was forwarded */
	vblk_kernel_wait_upcalls(k);
	if (k->req_ring && k->req_ring != MAP_FAILED)
		munmap(k->req_ring, k->req_bytes);
	if (k->done_ring && k->done_ring != MAP_FAILED)
		munmap(k->done_ring, k->done_bytes);
	if (k->notify_fd >= 0)
		close(k->notify_fd);
	if (k->done_fd >= 0)
		close(k->done_fd);
	if (k->img_fd >= 0)
		close(k->img_fd);
	g_free(k);
	vblk->kernel = NULL;
}

/*
 * Main thread, at setup (dataplane=kernel or auto): open /dev/sluice-blk, bind
 * it to this process, give it guest RAM and the image.  Returns 0 and keeps
 * its state in vblk->kernel, or -errno with *@errp (auto then falls back to
 * the user dataplane).
 */
int sluice_vblk_kernel_attach(struct sluice_vblk *vblk, char **errp)
{
	struct sluice_vm *vm = vblk->vm;
	struct sluice_kdp_region regions[2] = {
		{ .gpa = 0, .size = vm->low_size, .hva = vm->ram },
		{ .gpa = SLUICE_HIGH_RAM_START, .size = vm->high_size, .hva = vm->ram + vm->low_size },
	};
	struct vblk_kernel *k;
	unsigned int i;
	int ret;

	if (strcmp(vblk->opts->format, "raw") && strcmp(vblk->opts->format, "qcow2")) {
		*errp = g_strdup_printf("dataplane=kernel: format=%s is not served by sluice_blk", vblk->opts->format);
		return -ENOTSUP;
	}
	k = g_new0(struct vblk_kernel, 1);
	k->img_fd = k->notify_fd = k->done_fd = -1;
	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES; i++)
		k->err_fd[i] = -1;
	vblk->kernel = k;

	ret = sluice_kdp_open(&k->kdp, regions, vm->high_size ? 2 : 1, errp);
	if (ret)
		goto err_free;
	k->img_fd = open(vblk->opts->file, (vblk->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (k->img_fd < 0) {
		ret = -errno;
		*errp = g_strdup_printf("dataplane=kernel: cannot open %s: %s", vblk->opts->file, strerror(errno));
		goto err_free;
	}
	/* The drive id names the disk in sysfs; another VMM may use the same id: then add our pid. */
	g_strlcpy(k->name, vblk->id, sizeof(k->name));
	{
		char path[96];

		snprintf(path, sizeof(path), "/sys/class/sluice_blk/%s", k->name);
		if (access(path, F_OK) == 0)
			snprintf(k->name, sizeof(k->name), "%.20s.%d", vblk->id, (int)getpid());
	}
	if (!strcmp(vblk->opts->format, "qcow2"))
		ret = vblk_kernel_attach_qcow2(vblk, k, errp);
	else
		ret = sluice_kdp_set_backend(k->kdp, k->img_fd, vblk->capacity, vblk->readonly, k->name,
					     vblk->serial, errp);
	if (ret)
		goto err_free;
	for (i = 0; i < vblk->nr_queues; i++) {
		k->err_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (k->err_fd[i] < 0) {
			ret = -errno;
			*errp = g_strdup_printf("dataplane=kernel: eventfd: %s", strerror(errno));
			goto err_free;
		}
		sluice_aio_set_fd_handler(sluice_block_main_ctx(), k->err_fd[i], vblk_kernel_err_read, NULL,
					  &vblk->queues[i]);
	}
	if (vblk->opts->dataplane == SLUICE_DATAPLANE_AUTO)
		fprintf(stderr, "sluice: drive %s: dataplane=auto: served by sluice_blk.ko (/sys/class/sluice_blk/%s)\n",
			vblk->id, k->name);
	return 0;

err_free:
	vblk_kernel_free(vblk, k);
	return ret;
}

/*
 * vCPU thread, transport lock and vblk->state_lock held, at DRIVER_OK: the
 * negotiated ring features and every enabled queue go to the module, which
 * serves them from now on.  Non-zero puts the device in NEEDS_RESET.
 */
int sluice_vblk_kernel_start(struct sluice_vblk *vblk)
{
	struct vblk_kernel *k = vblk->kernel;
	uint64_t features = vblk->features & sluice_kdp_features(k->kdp);
	unsigned int i;
	int ret;

	ret = sluice_kdp_set_features(k->kdp, features);
	if (ret) {
		fprintf(stderr, "sluice: drive %s: dataplane=kernel: features 0x%llx refused: %s\n", vblk->id,
			(unsigned long long)features, strerror(-ret));
		return ret;
	}
	for (i = 0; i < vblk->nr_queues; i++) {
		struct sluice_vblk_queue *q = &vblk->queues[i];
		struct sluice_kdp_queue kq = {
			.size = q->size, .last_avail = 0,
			.desc_gpa = q->desc_gpa, .avail_gpa = q->avail_gpa, .used_gpa = q->used_gpa,
			.kick_fd = q->kick_fd, .call_fd = q->call_fd, .err_fd = k->err_fd[i],
		};
		char *err = NULL;

		if (!q->enabled)
			continue;
		ret = sluice_kdp_start_queue(k->kdp, i, &kq, &err);
		if (ret) {
			fprintf(stderr, "sluice: drive %s: %s\n", vblk->id, err);
			g_free(err);
			sluice_vblk_kernel_stop(vblk);
			return ret;
		}
		k->queue_started[i] = true;
		__atomic_store_n(&q->broken, false, __ATOMIC_RELAXED);
	}
	return 0;
}

/* vCPU thread, locks as above, at device reset: the module stops each queue once its requests finished. */
void sluice_vblk_kernel_stop(struct sluice_vblk *vblk)
{
	struct vblk_kernel *k = vblk->kernel;
	unsigned int i;

	vblk_kernel_wait_upcalls(k);	/* forwarded requests being served finish first */

	for (i = 0; i < vblk->nr_queues; i++) {
		if (!k->queue_started[i])
			continue;
		sluice_kdp_stop_queue(k->kdp, i, NULL);
		k->queue_started[i] = false;
	}
}

/* Any thread: the module's counters of queue @qi (query-block). */
int sluice_vblk_kernel_queue_stats(struct sluice_vblk *vblk, unsigned int qi, struct sluice_blk_queue_stats *st)
{
	struct vblk_kernel *k = vblk->kernel;

	if (!k)
		return -ENODEV;
	return sluice_kdp_stats(k->kdp, qi, st);
}

/* Any thread: the module's name of the disk (/sys/class/sluice_blk/<name>). */
const char *sluice_vblk_kernel_name(struct sluice_vblk *vblk)
{
	struct vblk_kernel *k = vblk->kernel;

	return k ? k->name : NULL;
}

/* Main thread, vCPUs stopped: close the device (the module finishes what is in flight). */
void sluice_vblk_kernel_detach(struct sluice_vblk *vblk)
{
	if (vblk->kernel)
		vblk_kernel_free(vblk, vblk->kernel);
}
