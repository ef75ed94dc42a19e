// SPDX-License-Identifier: GPL-2.0
/* virtio-blk.c - the virtio-blk device: config space, features, and the user dataplane (kick loop, one coroutine per request, batched completions). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"
#include "iothread.h"
#include "iov.h"
#include "virtio-blk.h"
#include "vmm.h"

#define SECTOR_SHIFT	9
#define SECTOR_SIZE	512

/* A request in flight: lives from pop to completion, then goes back to the queue's free list. */
struct sluice_vblk_req {
	struct sluice_vblk_queue *q;
	struct sluice_vblk_req *next;		/* free list */
	uint16_t head;
	struct virtio_blk_outhdr hdr;
	uint8_t *status;
	uint32_t in_len;			/* bytes the device wrote, status included */
	uint64_t out_len, in_data_len;		/* data bytes after the header / before the status */
	int nout, nin;				/* iov[0, nout): device-readable data; then nin writable */
	struct iovec iov[SLUICE_VBLK_MAX_SEGS];
};

static struct sluice_vblk *vblk_list;		/* main thread */

/* ---- drive options ---- */

const char *sluice_dataplane_name(enum sluice_dataplane dp)
{
	switch (dp) {
	case SLUICE_DATAPLANE_USER: return "user";
	case SLUICE_DATAPLANE_KERNEL: return "kernel";
	case SLUICE_DATAPLANE_AUTO: return "auto";
	}
	return "?";
}

/* Any thread. */
void sluice_drive_opts_free(struct sluice_drive_opts *o)
{
	unsigned int i;

	if (!o)
		return;
	g_free(o->file);
	g_free(o->format);
	g_free(o->id);
	for (i = 0; i < o->nr_iothreads; i++)
		g_free(o->iothreads[i]);
	g_free(o);
}

static int parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Any thread.  Values cannot contain commas (no escaping). */
int sluice_drive_opts_parse(const char *spec, struct sluice_drive_opts **out, char **errp)
{
	struct sluice_drive_opts *o = g_new0(struct sluice_drive_opts, 1);
	char **kv = g_strsplit(spec, ",", -1);
	unsigned int i;
	int ret = -EINVAL;

	for (i = 0; kv[i]; i++) {
		char *eq = strchr(kv[i], '='), *key = kv[i], *val;

		if (!*key)
			continue;
		if (!eq) {
			*errp = g_strdup_printf("--drive: '%s' is not key=value", key);
			goto err_free;
		}
		*eq = 0;
		val = eq + 1;
		if (!strcmp(key, "file")) {
			g_free(o->file);
			o->file = g_strdup(val);
		} else if (!strcmp(key, "format")) {
			if (strcmp(val, "raw") && strcmp(val, "qcow2")) {
				*errp = g_strdup_printf("--drive: format '%s': expected raw or qcow2", val);
				goto err_free;
			}
			g_free(o->format);
			o->format = g_strdup(val);
		} else if (!strcmp(key, "id")) {
			if (!*val || strlen(val) >= 32) {
				*errp = g_strdup_printf("--drive: id '%s': 1 to 31 characters", val);
				goto err_free;
			}
			g_free(o->id);
			o->id = g_strdup(val);
		} else if (!strcmp(key, "dataplane")) {
			if (!strcmp(val, "user"))
				o->dataplane = SLUICE_DATAPLANE_USER;
			else if (!strcmp(val, "kernel"))
				o->dataplane = SLUICE_DATAPLANE_KERNEL;
			else if (!strcmp(val, "auto"))
				o->dataplane = SLUICE_DATAPLANE_AUTO;
			else {
				*errp = g_strdup_printf("--drive: dataplane '%s': expected user, kernel or auto", val);
				goto err_free;
			}
		} else if (!strcmp(key, "queues")) {
			if (parse_uint(val, 1, SLUICE_VIRTIO_MAX_QUEUES, &o->queues)) {
				*errp = g_strdup_printf("--drive: queues '%s': expected 1 to %d", val,
							SLUICE_VIRTIO_MAX_QUEUES);
				goto err_free;
			}
		} else if (!strcmp(key, "queue-size")) {
			if (parse_uint(val, 4, SLUICE_VBLK_MAX_QSIZE, &o->queue_size) ||
			    (o->queue_size & (o->queue_size - 1))) {
				*errp = g_strdup_printf("--drive: queue-size '%s': a power of 2 from 4 to %d", val,
							SLUICE_VBLK_MAX_QSIZE);
				goto err_free;
			}
		} else if (!strcmp(key, "iothread")) {
			char **names = g_strsplit(val, ":", -1);
			unsigned int n;

			for (n = 0; names[n]; n++) {
				if (!*names[n] || o->nr_iothreads == SLUICE_VBLK_MAX_IOTHREADS) {
					*errp = g_strdup_printf("--drive: iothread '%s': 1 to %d names separated by ':'",
								val, SLUICE_VBLK_MAX_IOTHREADS);
					g_strfreev(names);
					goto err_free;
				}
				o->iothreads[o->nr_iothreads++] = g_strdup(names[n]);
			}
			g_strfreev(names);
		} else if (!strcmp(key, "cache")) {
			if (!strcmp(val, "none"))
				o->cache_none = true;
			else if (!strcmp(val, "writeback"))
				o->cache_none = false;
			else {
				*errp = g_strdup_printf("--drive: cache '%s': expected none or writeback", val);
				goto err_free;
			}
		} else if (!strcmp(key, "readonly")) {
			if (!strcmp(val, "on"))
				o->readonly = true;
			else if (!strcmp(val, "off"))
				o->readonly = false;
			else {
				*errp = g_strdup_printf("--drive: readonly '%s': expected on or off", val);
				goto err_free;
			}
		} else if (!strcmp(key, "notify")) {
			if (!strcmp(val, "auto"))
				o->notify = SLUICE_VIRTIO_NOTIFY_AUTO;
			else if (!strcmp(val, "pio"))
				o->notify = SLUICE_VIRTIO_NOTIFY_PIO;
			else if (!strcmp(val, "mmio"))
				o->notify = SLUICE_VIRTIO_NOTIFY_MMIO;
			else {
				*errp = g_strdup_printf("--drive: notify '%s': expected auto, pio or mmio", val);
				goto err_free;
			}
		} else {
			*errp = g_strdup_printf("--drive: unknown key '%s'", key);
			goto err_free;
		}
	}
	if (!o->file || !*o->file) {
		*errp = g_strdup("--drive: file=PATH is required");
		goto err_free;
	}
	if (!o->format) {
		*errp = g_strdup("--drive: format=raw|qcow2 is required");
		goto err_free;
	}
	g_strfreev(kv);
	*out = o;
	return 0;

err_free:
	g_strfreev(kv);
	sluice_drive_opts_free(o);
	return ret;
}

/* ---- the request engine (serving thread) ---- */

static void *gmem_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	return sluice_gpa_to_hva(opaque, gpa, len);
}

/* Serving thread: the device is broken; say why, stop the queue, ask the driver for a reset. */
static void vblk_queue_broken(struct sluice_vblk_queue *q, const char *why)
{
	if (q->broken)
		return;
	q->broken = true;
	fprintf(stderr, "sluice: drive %s queue %u: %s; device needs a reset\n", q->vblk->id, q->index, why);
	sluice_virtio_pci_needs_reset(&q->vblk->vpci);
}

/* Serving thread: a request is over; its used entry waits for the batch's flush. */
static void vblk_req_done(struct sluice_vblk_req *req, uint8_t status)
{
	struct sluice_vblk_queue *q = req->q;

	*req->status = status;
	sluice_vring_push(&q->vring, req->head, req->in_len);
	req->next = q->free_reqs;
	q->free_reqs = req;
	__atomic_sub_fetch(&q->inflight, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&q->requests, 1, __ATOMIC_RELAXED);
	sluice_bh_schedule(q->flush_bh);
}

static bool range_ok(struct sluice_vblk *vblk, uint64_t sector, uint64_t bytes)
{
	uint64_t off;

	if (sector > vblk->capacity >> SECTOR_SHIFT)
		return false;
	off = sector << SECTOR_SHIFT;
	return bytes <= vblk->capacity - off;
}

/* Coroutine, serving thread: discard or write-zeroes ranges. */
static uint8_t coroutine_fn vblk_co_dwz(struct sluice_vblk_req *req, bool zeroes)
{
	struct sluice_vblk *vblk = req->q->vblk;
	struct virtio_blk_discard_write_zeroes r;
	uint64_t n = req->out_len / sizeof(r), i;
	int ret;

	if (vblk->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (!n || req->out_len % sizeof(r) || n > SLUICE_VBLK_MAX_DWZ_SEG)
		return VIRTIO_BLK_S_UNSUPP;
	for (i = 0; i < n; i++) {
		uint64_t sector, bytes;
		uint32_t flags;

		sluice_iov_to_buf(req->iov, req->nout, i * sizeof(r), &r, sizeof(r));
		sector = le64toh(r.sector);
		bytes = (uint64_t)le32toh(r.num_sectors) << SECTOR_SHIFT;
		flags = le32toh(r.flags);
		if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP || (!zeroes && flags))
			return VIRTIO_BLK_S_UNSUPP;
		if (!range_ok(vblk, sector, bytes))
			return VIRTIO_BLK_S_IOERR;
		if (!bytes)
			continue;
		if (zeroes)
			ret = sluice_blk_co_pwrite_zeroes(vblk->blk, sector << SECTOR_SHIFT, bytes,
							  (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ?
							  SLUICE_BDRV_REQ_MAY_UNMAP : 0);
		else
			ret = sluice_blk_co_pdiscard(vblk->blk, sector << SECTOR_SHIFT, bytes);
		/* A discard the host cannot do is still a valid (advisory) discard. */
		if (ret < 0 && !(!zeroes && (ret == -ENOTSUP || ret == -EOPNOTSUPP)))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* Coroutine, serving thread: one request from header to status. */
static void coroutine_fn vblk_co_req(void *opaque)
{
	struct sluice_vblk_req *req = opaque;
	struct sluice_vblk *vblk = req->q->vblk;
	uint32_t type = le32toh(req->hdr.type);
	uint64_t sector = le64toh(req->hdr.sector);
	uint8_t status = VIRTIO_BLK_S_OK;
	int ret;

	req->in_len = 1;
	switch (type & ~VIRTIO_BLK_T_BARRIER) {
	case VIRTIO_BLK_T_IN:
		if (req->in_data_len % SECTOR_SIZE || !range_ok(vblk, sector, req->in_data_len)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		ret = sluice_blk_co_preadv(vblk->blk, sector << SECTOR_SHIFT, req->in_data_len,
					   req->iov + req->nout, req->nin, 0);
		if (ret < 0)
			status = VIRTIO_BLK_S_IOERR;
		else
			req->in_len += req->in_data_len;
		break;
	case VIRTIO_BLK_T_OUT:
		if (vblk->readonly || req->out_len % SECTOR_SIZE || !range_ok(vblk, sector, req->out_len)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		ret = sluice_blk_co_pwritev(vblk->blk, sector << SECTOR_SHIFT, req->out_len, req->iov, req->nout, 0);
		if (ret < 0)
			status = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (sluice_blk_co_flush(vblk->blk) < 0)
			status = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_GET_ID:
		req->in_len += sluice_iov_from_buf(req->iov + req->nout, req->nin, 0, vblk->serial,
					  MIN(sizeof(vblk->serial), req->in_data_len));
		break;
	case VIRTIO_BLK_T_DISCARD:
		status = vblk_co_dwz(req, false);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = vblk_co_dwz(req, true);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	vblk_req_done(req, status);
}

/*
 * Serving thread: turn a walked chain into a request: header from the first
 * 16 readable bytes, data iovecs, status byte = last writable byte.  NULL
 * with *@why for a chain a virtio-blk driver must not send.
 */
static struct sluice_vblk_req *vblk_req_build(struct sluice_vblk_queue *q, uint16_t head, unsigned int nsegs,
					      uint32_t out_bytes, uint32_t in_bytes, const char **why)
{
	struct sluice_vblk_req *req;
	size_t hdr_left = sizeof(req->hdr);
	unsigned int i;

	if (out_bytes < sizeof(req->hdr) || in_bytes < 1) {
		*why = "request without a header or a status byte";
		return NULL;
	}
	req = q->free_reqs;
	if (req)
		q->free_reqs = req->next;
	else
		req = g_new(struct sluice_vblk_req, 1);
	req->q = q;
	req->head = head;
	req->nout = req->nin = 0;
	req->out_len = out_bytes - sizeof(req->hdr);
	req->in_data_len = in_bytes - 1;
	for (i = 0; i < nsegs; i++) {
		const struct sluice_vq_seg *s = &q->segs[i];
		uint8_t *p = sluice_gpa_to_hva(q->vblk->vm, s->gpa, s->len);	/* the walker checked it */
		size_t len = s->len;

		if (!s->write && hdr_left) {
			size_t n = MIN(hdr_left, len);

			memcpy((uint8_t *)&req->hdr + sizeof(req->hdr) - hdr_left, p, n);
			hdr_left -= n;
			p += n;
			len -= n;
			if (!len)
				continue;
		}
		if (s->write && i == nsegs - 1) {
			req->status = p + len - 1;
			len--;
			if (!len)
				continue;
		}
		req->iov[req->nout + req->nin].iov_base = p;
		req->iov[req->nout + req->nin].iov_len = len;
		if (s->write)
			req->nin++;
		else
			req->nout++;
	}
	return req;
}

/* Serving thread: the kick loop.  Pops under the weight cap, one coroutine per request. */
void sluice_vblk_queue_process(struct sluice_vblk_queue *q)
{
	unsigned int budget = SLUICE_VBLK_WEIGHT, nsegs;
	uint32_t out_bytes, in_bytes;
	struct sluice_vblk_req *req;
	enum sluice_vq_err err;
	const char *why;
	uint16_t head;
	int ret;

	if (!q->serving || q->broken)
		return;
	for (;;) {
		sluice_vring_disable_notify(&q->vring);
		while (budget) {
			/* At most one request per ring slot: a guest cannot make us allocate more. */
			if (__atomic_load_n(&q->inflight, __ATOMIC_ACQUIRE) >= q->vring.size) {
				q->throttled = true;
				return;
			}
			ret = sluice_vring_pop(&q->vring, &head, q->segs, SLUICE_VBLK_MAX_SEGS, &nsegs,
					       &out_bytes, &in_bytes, &err);
			if (!ret)
				break;
			if (ret < 0) {
				vblk_queue_broken(q, sluice_vq_strerror(err));
				return;
			}
			req = vblk_req_build(q, head, nsegs, out_bytes, in_bytes, &why);
			if (!req) {
				vblk_queue_broken(q, why);
				return;
			}
			__atomic_add_fetch(&q->inflight, 1, __ATOMIC_RELAXED);
			budget--;
			sluice_co_enter(sluice_co_create(vblk_co_req, req));
		}
		if (!budget) {
			/* Let the loop breathe; notifications stay off until we come back. */
			sluice_bh_schedule(q->kick_bh);
			return;
		}
		/*
		 * Ring empty with requests in flight: their completions bring the
		 * driver's next requests, and the loop polls for them
		 * (vblk_kick_poll).  Leave notifications off meanwhile, so those
		 * cost no kick exits; vblk_kick_poll_end turns them on before the
		 * loop sleeps.
		 */
		if (__atomic_load_n(&q->inflight, __ATOMIC_ACQUIRE)) {
			q->notify_off = true;
			return;
		}
		if (!sluice_vring_enable_notify(&q->vring))
			return;
	}
}

/* Serving thread (fd handler): the guest notified the queue. */
static void vblk_kick_read(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;
	uint64_t v;

	if (read(q->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	sluice_vblk_queue_process(q);
}

/*
 * Serving thread (its loop's poll mode): did the guest add requests we have
 * not popped?  Then the loop runs vblk_kick_read() without waiting for the
 * kick's wake-up.
 */
static bool vblk_kick_poll(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;

	return q->serving && !q->throttled && !__atomic_load_n(&q->broken, __ATOMIC_RELAXED) &&
	       sluice_vring_avail_pending(&q->vring);
}

/*
 * Serving thread (its loop, about to sleep): notifications back on if the
 * kick loop left them off; true when the guest added requests meanwhile
 * (then the loop runs vblk_kick_read() instead of sleeping).
 */
static bool vblk_kick_poll_end(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;

	if (!q->notify_off)
		return false;
	q->notify_off = false;
	if (!q->serving || __atomic_load_n(&q->broken, __ATOMIC_RELAXED))
		return false;
	return sluice_vring_enable_notify(&q->vring);
}

static void vblk_kick_bh(void *opaque)
{
	sluice_vblk_queue_process(opaque);
}

/* Serving thread (BH): publish the batch of used entries; one irqfd write when the guest wants it. */
static void vblk_flush_bh(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;

	if (sluice_vring_publish(&q->vring) && q->call_fd >= 0)
		eventfd_write(q->call_fd, 1);
	if (q->throttled && __atomic_load_n(&q->inflight, __ATOMIC_ACQUIRE) < q->vring.size) {
		q->throttled = false;
		sluice_vblk_queue_process(q);
	}
}

/*
 * Serving thread (@q->ctx's), through sluice_aio_run_sync, queue stopped:
 * serve @q's ring as it stands (BHs, kick handler, a first pass).
 */
static void vblk_queue_serve(struct sluice_vblk_queue *q)
{
	q->throttled = false;
	q->notify_off = false;
	q->kick_bh = sluice_bh_new(q->ctx, vblk_kick_bh, q);
	q->flush_bh = sluice_bh_new(q->ctx, vblk_flush_bh, q);
	q->serving = true;
	sluice_aio_set_fd_handler(q->ctx, q->kick_fd, vblk_kick_read, NULL, q);
	sluice_aio_set_fd_poll(q->ctx, q->kick_fd, vblk_kick_poll);
	sluice_aio_set_fd_poll_end(q->ctx, q->kick_fd, vblk_kick_poll_end);
	sluice_vblk_queue_process(q);
}

/*
 * Serving thread, through sluice_aio_run_sync from the vCPU thread's
 * DRIVER_OK (disk state_lock held): start serving @q from its setup fields.
 * The ring indices are set up afresh here and only here; @q->broken was
 * cleared by the device reset that came before.
 */
static void vblk_queue_attach(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;
	struct sluice_gmem mem = { .to_hva = gmem_to_hva, .opaque = q->vblk->vm };
	int ret;

	if (q->broken)
		return;
	ret = sluice_vring_init(&q->vring, &mem, q->size, q->desc_gpa, q->avail_gpa, q->used_gpa,
				q->vblk->features & (1ULL << VIRTIO_RING_F_EVENT_IDX),
				q->vblk->features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC));
	if (ret) {
		vblk_queue_broken(q, ret == -EFAULT ? "rings outside guest RAM" : "misaligned rings");
		return;
	}
	vblk_queue_serve(q);
}

/*
 * Serving thread (the new one), through sluice_aio_run_sync from the main
 * thread's queue move (disk state_lock held), after vblk_queue_stop(): serve
 * @q again with the ring indices it had (last_avail_idx, the used index
 * shadows), never re-read from guest-writable memory.  A broken queue stays
 * stopped until the device reset.
 */
static void vblk_queue_resume(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;

	if (q->broken)
		return;
	vblk_queue_serve(q);
}

/* Serving thread: stop taking new requests (in-flight ones go on). */
static void vblk_queue_quiesce(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;

	if (!q->kick_bh)
		return;
	sluice_aio_set_fd_handler(q->ctx, q->kick_fd, NULL, NULL, NULL);
	sluice_bh_cancel(q->kick_bh);
	q->serving = false;
}

/*
 * Serving thread, no request in flight: publish what is left, drop the BHs
 * and the request pool.  The last completions may have pushed used entries
 * whose flush BH has not run (inflight drops in vblk_req_done, before the
 * BH): they are published here, broken queue or not (as the flush BH does),
 * so that deleting the BH loses none.
 */
static void vblk_queue_detach(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;
	struct sluice_vblk_req *req;

	if (!q->kick_bh)
		return;
	if (sluice_vring_publish(&q->vring) && q->call_fd >= 0)
		eventfd_write(q->call_fd, 1);
	sluice_bh_delete(q->kick_bh);
	sluice_bh_delete(q->flush_bh);
	q->kick_bh = q->flush_bh = NULL;
	while ((req = q->free_reqs)) {
		q->free_reqs = req->next;
		g_free(req);
	}
}

static void nop(void *opaque)
{
}

/* Any thread but the queue's: stop @q and wait until its requests are done. */
static void vblk_queue_stop(struct sluice_vblk_queue *q)
{
	sluice_aio_run_sync(q->ctx, vblk_queue_quiesce, q);
	while (__atomic_load_n(&q->inflight, __ATOMIC_ACQUIRE)) {
		usleep(1000);
		sluice_aio_run_sync(q->ctx, nop, NULL);
	}
	sluice_aio_run_sync(q->ctx, vblk_queue_detach, q);
}

/* Serving thread (tests; the device uses sluice_aio_run_sync): start serving @q. */
void sluice_vblk_queue_attach(struct sluice_vblk_queue *q)
{
	vblk_queue_attach(q);
}

/* Any thread: stop serving @q once its requests are done. */
void sluice_vblk_queue_stop(struct sluice_vblk_queue *q)
{
	vblk_queue_stop(q);
}

/* Serving thread (tests; moves use sluice_aio_run_sync): serve @q again after a stop, indices kept. */
void sluice_vblk_queue_resume(struct sluice_vblk_queue *q)
{
	vblk_queue_resume(q);
}

/* ---- the virtio device (transport callbacks: vCPU threads, transport lock held) ---- */

uint64_t sluice_vblk_features(bool readonly)
{
	uint64_t f = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
		     1ULL << VIRTIO_BLK_F_TOPOLOGY | 1ULL << VIRTIO_BLK_F_MQ | 1ULL << VIRTIO_BLK_F_DISCARD |
		     1ULL << VIRTIO_BLK_F_WRITE_ZEROES | 1ULL << VIRTIO_RING_F_EVENT_IDX |
		     1ULL << VIRTIO_RING_F_INDIRECT_DESC;

	if (readonly)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	return f;
}

static uint64_t vblk_get_features(void *dev)
{
	struct sluice_vblk *vblk = dev;

	return sluice_vblk_features(vblk->readonly);
}

static unsigned int vblk_num_queues(void *dev)
{
	return ((struct sluice_vblk *)dev)->nr_queues;
}

static uint16_t vblk_max_queue_size(void *dev)
{
	return ((struct sluice_vblk *)dev)->queue_size;
}

static void vblk_config_read(void *dev, unsigned int off, uint8_t *data, unsigned int len)
{
	struct sluice_vblk *vblk = dev;

	if (off + len > sizeof(vblk->config)) {
		memset(data, 0, len);
		return;
	}
	memcpy(data, (uint8_t *)&vblk->config + off, len);
}

static void vblk_config_write(void *dev, unsigned int off, const uint8_t *data, unsigned int len)
{
	/* Nothing is writable: CONFIG_WCE is not offered. */
}

static int vblk_start(void *dev, uint64_t features)
{
	struct sluice_vblk *vblk = dev;
	unsigned int i;
	int ret = 0;

	pthread_mutex_lock(&vblk->state_lock);
	vblk->features = features;
	for (i = 0; i < vblk->nr_queues; i++) {
		const struct sluice_virtio_queue *vq = sluice_virtio_pci_queue(&vblk->vpci, i);
		struct sluice_vblk_queue *q = &vblk->queues[i];

		q->enabled = vq->enabled;
		q->size = vq->size;
		q->desc_gpa = vq->desc_gpa;
		q->avail_gpa = vq->avail_gpa;
		q->used_gpa = vq->used_gpa;
		q->kick_fd = vq->kick_fd;
		q->call_fd = vq->call_fd;
	}
	if (vblk->dataplane == SLUICE_DATAPLANE_KERNEL) {
		ret = sluice_vblk_kernel_start(vblk);
	} else {
		for (i = 0; i < vblk->nr_queues; i++)
			if (vblk->queues[i].enabled)
				sluice_aio_run_sync(vblk->queues[i].ctx, vblk_queue_attach, &vblk->queues[i]);
	}
	vblk->started = !ret;
	pthread_mutex_unlock(&vblk->state_lock);
	return ret;
}

/*
 * vCPU thread, transport lock held (Bus Master off, or a reset): stop every
 * queue and wait for its requests; a broken queue stays broken.
 */
static void vblk_stop(void *dev)
{
	struct sluice_vblk *vblk = dev;
	unsigned int i;

	pthread_mutex_lock(&vblk->state_lock);
	if (vblk->started) {
		if (vblk->dataplane == SLUICE_DATAPLANE_KERNEL) {
			sluice_vblk_kernel_stop(vblk);
		} else {
			for (i = 0; i < vblk->nr_queues; i++)
				if (vblk->queues[i].enabled)
					vblk_queue_stop(&vblk->queues[i]);
		}
	}
	for (i = 0; i < vblk->nr_queues; i++)
		vblk->queues[i].enabled = false;
	vblk->started = false;
	pthread_mutex_unlock(&vblk->state_lock);
}

/* vCPU thread, transport lock held (status 0): stop every queue, wait for its requests, forget it was broken. */
static void vblk_reset(void *dev)
{
	struct sluice_vblk *vblk = dev;
	unsigned int i;

	vblk_stop(dev);
	/* The only place a broken queue is mended: the driver reset the device. */
	pthread_mutex_lock(&vblk->state_lock);
	for (i = 0; i < vblk->nr_queues; i++)
		__atomic_store_n(&vblk->queues[i].broken, false, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&vblk->state_lock);
}

static const struct sluice_virtio_dev_ops vblk_virtio_ops = {
	.name = "virtio-blk",
	.device_type = VIRTIO_ID_BLOCK,
	.class_code = 0x018000,		/* mass storage, other */
	.get_features = vblk_get_features,
	.num_queues = vblk_num_queues,
	.max_queue_size = vblk_max_queue_size,
	.config_read = vblk_config_read,
	.config_write = vblk_config_write,
	.start = vblk_start,
	.reset = vblk_reset,
	.stop = vblk_stop,
};

/* ---- setup and control (main thread) ---- */

static void vblk_config_init(struct sluice_vblk *vblk)
{
	struct virtio_blk_config *c = &vblk->config;

	memset(c, 0, sizeof(*c));
	c->capacity = htole64(vblk->capacity >> SECTOR_SHIFT);
	c->seg_max = htole32(SLUICE_VBLK_SEG_MAX);
	c->blk_size = htole32(SECTOR_SIZE);
	c->physical_block_exp = 0;
	c->alignment_offset = 0;
	c->min_io_size = htole16(1);
	c->opt_io_size = htole32(0);
	c->wce = 1;
	c->num_queues = htole16(vblk->nr_queues);
	c->max_discard_sectors = htole32(1u << 21);
	c->max_discard_seg = htole32(SLUICE_VBLK_MAX_DWZ_SEG);
	c->discard_sector_alignment = htole32(8);
	c->max_write_zeroes_sectors = htole32(1u << 21);
	c->max_write_zeroes_seg = htole32(SLUICE_VBLK_MAX_DWZ_SEG);
	c->write_zeroes_may_unmap = 1;
}

/* Main thread: the IOThread called @name, created on first use by the caller's list. */
static struct sluice_iothread *iothread_pick(const struct sluice_drive_opts *o, unsigned int qi, char **errp)
{
	static struct sluice_iothread *rr;	/* round-robin over every IOThread, across disks */
	struct sluice_iothread *t;

	if (o->nr_iothreads) {
		t = sluice_iothread_find(o->iothreads[qi % o->nr_iothreads]);
		if (!t)
			*errp = g_strdup_printf("--drive: no --iothread id=%s", o->iothreads[qi % o->nr_iothreads]);
		return t;
	}
	rr = sluice_iothread_next(rr);
	if (!rr)
		rr = sluice_iothread_next(NULL);
	if (!rr)
		*errp = g_strdup("no IOThread to serve the disk");
	return rr;
}

/* Main thread, before the vCPUs run. */
int sluice_vblk_create(struct sluice_vm *vm, struct sluice_drive_opts *opts, struct sluice_vblk **out,
		       char **errp)
{
	static unsigned int nr_disks;
	struct sluice_vblk *vblk = g_new0(struct sluice_vblk, 1), **tail;
	int64_t len;
	unsigned int i;
	char *err = NULL;
	int flags, ret;

	vblk->vm = vm;
	vblk->opts = opts;
	pthread_mutex_init(&vblk->state_lock, NULL);
	if (opts->id)
		snprintf(vblk->id, sizeof(vblk->id), "%s", opts->id);
	else
		snprintf(vblk->id, sizeof(vblk->id), "disk%u", nr_disks);
	if (sluice_vblk_find(vblk->id)) {
		*errp = g_strdup_printf("--drive: id %s is used twice", vblk->id);
		ret = -EEXIST;
		goto err_free;
	}
	/* GET_ID: the id, NUL-padded (not terminated when 20 long). */
	memcpy(vblk->serial, vblk->id, MIN(strlen(vblk->id), sizeof(vblk->serial)));
	vblk->readonly = opts->readonly;
	vblk->nr_queues = opts->queues ? opts->queues : MIN(vm->nr_cpus, SLUICE_VIRTIO_MAX_QUEUES);
	vblk->queue_size = opts->queue_size ? opts->queue_size : SLUICE_VBLK_DEFAULT_QSIZE;

	flags = (opts->readonly ? 0 : SLUICE_BDRV_O_RDWR) | (opts->cache_none ? SLUICE_BDRV_O_NOCACHE : 0);
	vblk->blk = sluice_blk_new_open(opts->file, opts->format, flags, &err);
	if (!vblk->blk) {
		*errp = g_strdup_printf("--drive %s: %s", opts->file, err ? err : "cannot open");
		g_free(err);
		ret = -EIO;
		goto err_free;
	}
	len = sluice_blk_getlength(vblk->blk);
	if (len < 0) {
		*errp = g_strdup_printf("--drive %s: cannot get its size: %s", opts->file, strerror(-len));
		ret = len;
		goto err_unref_blk;
	}
	vblk->capacity = (uint64_t)len & ~(uint64_t)(SECTOR_SIZE - 1);

	for (i = 0; i < vblk->nr_queues; i++) {
		struct sluice_vblk_queue *q = &vblk->queues[i];

		q->vblk = vblk;
		q->index = i;
		q->kick_fd = q->call_fd = -1;
		q->iothread = iothread_pick(opts, i, errp);
		if (!q->iothread) {
			ret = -ENOENT;
			goto err_unref_blk;
		}
		q->ctx = sluice_iothread_ctx(q->iothread);
	}
	/* The image's requests run where queue 0 runs; other queues' requests hop there and back. */
	sluice_blk_set_aio_context(vblk->blk, vblk->queues[0].ctx);

	vblk->dataplane = SLUICE_DATAPLANE_USER;
	if (opts->dataplane != SLUICE_DATAPLANE_USER) {
		ret = sluice_vblk_kernel_attach(vblk, &err);
		if (!ret) {
			vblk->dataplane = SLUICE_DATAPLANE_KERNEL;
		} else if (opts->dataplane == SLUICE_DATAPLANE_KERNEL) {
			*errp = g_strdup_printf("--drive %s: %s", opts->file, err ? err : strerror(-ret));
			g_free(err);
			goto err_unref_blk;
		} else {
			g_free(err);	/* auto: the user dataplane serves it */
			err = NULL;
		}
	}
	vblk_config_init(vblk);
	vblk->vpci.notify = opts->notify;
	ret = sluice_virtio_pci_init(&vblk->vpci, vm, &vblk_virtio_ops, vblk);
	if (ret) {
		*errp = g_strdup_printf("--drive %s: cannot create its PCI device: %s", opts->file, strerror(-ret));
		goto err_kernel_detach;
	}
	for (tail = &vblk_list; *tail; tail = &(*tail)->next)
		;
	*tail = vblk;
	nr_disks++;
	*out = vblk;
	return 0;

err_kernel_detach:
	if (vblk->dataplane == SLUICE_DATAPLANE_KERNEL)
		sluice_vblk_kernel_detach(vblk);
err_unref_blk:
	sluice_blk_unref(vblk->blk);
err_free:
	pthread_mutex_destroy(&vblk->state_lock);
	g_free(vblk);
	return ret;
}

/* Main thread, vCPUs stopped. */
void sluice_vblk_destroy(struct sluice_vblk *vblk)
{
	struct sluice_vblk **p;

	sluice_virtio_pci_exit(&vblk->vpci);
	if (vblk->dataplane == SLUICE_DATAPLANE_KERNEL)
		sluice_vblk_kernel_detach(vblk);
	sluice_blk_unref(vblk->blk);
	for (p = &vblk_list; *p; p = &(*p)->next) {
		if (*p == vblk) {
			*p = vblk->next;
			break;
		}
	}
	pthread_mutex_destroy(&vblk->state_lock);
	g_free(vblk);
}

struct sluice_vblk *sluice_vblk_first(void)
{
	return vblk_list;
}

struct sluice_vblk *sluice_vblk_find(const char *id)
{
	struct sluice_vblk *v;

	for (v = vblk_list; v; v = v->next)
		if (!strcmp(v->id, id))
			return v;
	return NULL;
}

/* Main thread. */
int sluice_vblk_set_queue_iothread(struct sluice_vblk *vblk, unsigned int qi, struct sluice_iothread *t,
				   char **errp)
{
	struct sluice_vblk_queue *q;
	bool running;

	if (qi >= vblk->nr_queues) {
		*errp = g_strdup_printf("drive %s has %u queues", vblk->id, vblk->nr_queues);
		return -EINVAL;
	}
	if (vblk->dataplane != SLUICE_DATAPLANE_USER) {
		*errp = g_strdup_printf("drive %s: queues of the kernel dataplane have no IOThread", vblk->id);
		return -EINVAL;
	}
	q = &vblk->queues[qi];
	pthread_mutex_lock(&vblk->state_lock);
	if (q->iothread == t)
		goto out_unlock;
	running = vblk->started && q->enabled;
	if (running)
		vblk_queue_stop(q);
	q->iothread = t;
	q->ctx = sluice_iothread_ctx(t);
	if (running)
		sluice_aio_run_sync(q->ctx, vblk_queue_resume, q);
out_unlock:
	pthread_mutex_unlock(&vblk->state_lock);
	return 0;
}
