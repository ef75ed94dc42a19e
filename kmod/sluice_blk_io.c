// SPDX-License-Identifier: GPL-2.0
/* sluice_blk_io.c - virtio-blk requests: parse a chain, submit kiocbs (IOCB_DIRECT where possible), complete them. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/falloc.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "sluice_blk.h"
#include "sluice_blk_trace.h"

#define SLUICE_BLK_SECTOR_SHIFT	9

/* Process context.  Feature bits the module serves (the VMM offers a subset to the guest). */
u64 sluice_blk_features(void)
{
	return (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
	       (1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
	       (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) |
	       (1ULL << VIRTIO_BLK_F_TOPOLOGY) | (1ULL << VIRTIO_BLK_F_MQ) |
	       (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES) |
	       (1ULL << VIRTIO_BLK_F_RO);
}

/* Any context.  Finish @req with @status after @written bytes went to the guest. */
static void sluice_blk_finish(struct sluice_blk_req *req, u8 status, u32 written)
{
	req->status_val = status;
	req->written = written;
	sluice_blk_queue_complete(req);
}

/* Any context (often the block layer's completion IRQ): a read or write kiocb is done. */
static void sluice_blk_rw_done(struct kiocb *iocb, long ret)
{
	struct sluice_blk_req *req = container_of(iocb, struct sluice_blk_req, iocb);

	if (req->is_write && S_ISREG(file_inode(iocb->ki_filp)->i_mode))
		kiocb_end_write(iocb);
	sluice_blk_extent_put(req);
	if (ret == req->data_len)
		sluice_blk_finish(req, VIRTIO_BLK_S_OK, req->is_write ? 1 : req->data_len + 1);
	else
		sluice_blk_finish(req, VIRTIO_BLK_S_IOERR, 1);
}

/*
 * sluice_blk_wq (process context, no user memory touched): the fsync of a
 * FLUSH, off the worker so the queue's other requests go on meanwhile.  It
 * covers every write completed before the FLUSH was popped, as virtio asks.
 * The backend stays until the queues stopped, which waits for this request.
 */
static void sluice_blk_flush_work(struct work_struct *work)
{
	struct sluice_blk_req *req = container_of(work, struct sluice_blk_req, work);

	sluice_blk_finish(req, vfs_fsync(req->q->disk->backend, 1) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK, 1);
}

/* Worker.  Are all buffers and the offset aligned for O_DIRECT on @file? */
static bool sluice_blk_dio_aligned(const struct sluice_blk_req *req, struct file *file)
{
	unsigned int mask = 511, i;

	if (S_ISBLK(file_inode(file)->i_mode))
		mask = bdev_logical_block_size(I_BDEV(file->f_mapping->host)) - 1;
	if (req->sector & (mask >> SLUICE_BLK_SECTOR_SHIFT))
		return false;
	for (i = 0; i < req->nr_iov; i++)
		if (((unsigned long)req->iov[i].iov_base | req->iov[i].iov_len) & mask)
			return false;
	return true;
}

/* Worker.  Submit a read or write; completes through sluice_blk_rw_done(). */
static void sluice_blk_submit_rw(struct sluice_blk_req *req)
{
	struct sluice_blk_queue *q = req->q;
	struct file *file = q->disk->backend;
	bool direct = (file->f_mode & FMODE_CAN_ODIRECT) && sluice_blk_dio_aligned(req, file);
	u64 pos = req->sector << SLUICE_BLK_SECTOR_SHIFT;
	ssize_t ret;
	int reason;

	if (q->disk->extents) {
		reason = sluice_blk_extent_translate(req, &pos);
		if (reason)
			return sluice_blk_forward(req, reason, q->dsegs, req->nr_dsegs);
	}
retry:
	init_sync_kiocb(&req->iocb, file);
	req->iocb.ki_pos = pos;
	req->iocb.ki_complete = sluice_blk_rw_done;
	/*
	 * init_sync_kiocb() copies O_APPEND from the file (fcntl can set it
	 * after SET_BACKEND refused it): it would put every guest write at EOF.
	 */
	req->iocb.ki_flags &= ~IOCB_APPEND;
	/* A backend opened O_DIRECT starts with IOCB_DIRECT: the page-cache retry must drop it. */
	if (direct)
		req->iocb.ki_flags |= IOCB_DIRECT;
	else
		req->iocb.ki_flags &= ~IOCB_DIRECT;
	req->direct = direct;
	/* Counted before submission: once queued, @req may complete and be reaped at any time. */
	if (!direct)
		atomic64_inc(&q->buffered);
	iov_iter_init(&req->iter, req->is_write ? ITER_SOURCE : ITER_DEST, req->iov, req->nr_iov,
		      req->data_len);
	if (req->is_write) {
		if (S_ISREG(file_inode(file)->i_mode))
			kiocb_start_write(&req->iocb);
		req->iocb.ki_flags |= IOCB_WRITE;
		ret = file->f_op->write_iter(&req->iocb, &req->iter);
	} else {
		ret = file->f_op->read_iter(&req->iocb, &req->iter);
	}
	if (ret == -EIOCBQUEUED)
		return;
	if (ret == -EINVAL && direct) {
		/* The filesystem refused O_DIRECT for this request: go through the page cache. */
		if (req->is_write && S_ISREG(file_inode(file)->i_mode))
			kiocb_end_write(&req->iocb);
		direct = false;
		goto retry;
	}
	sluice_blk_rw_done(&req->iocb, ret);
}

/* One range of a DISCARD / WRITE_ZEROES, checked and decoded by the worker. */
struct sluice_blk_dwz_range {
	u64 pos, bytes;
	int mode;			/* FALLOC_FL_* */
};

/*
 * sluice_blk_wq (process context, no user memory touched): the fallocate()s
 * of a DISCARD / WRITE_ZEROES, off the worker like a FLUSH, since punching or
 * zeroing a range may take a filesystem a while.
 */
static void sluice_blk_dwz_work(struct work_struct *work)
{
	struct sluice_blk_req *req = container_of(work, struct sluice_blk_req, work);
	struct sluice_blk_dwz_range *r = req->dwz;
	struct file *backend = req->q->disk->backend;
	const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	u8 status = VIRTIO_BLK_S_OK;
	u32 i;

	for (i = 0; i < req->dwz_n; i++) {
		int ret = vfs_fallocate(backend, r[i].mode, r[i].pos, r[i].bytes);

		if (ret == -EOPNOTSUPP && req->type == VIRTIO_BLK_T_WRITE_ZEROES && r[i].mode != punch)
			ret = vfs_fallocate(backend, punch, r[i].pos, r[i].bytes);
		if (ret == -EOPNOTSUPP && req->type == VIRTIO_BLK_T_DISCARD)
			continue;	/* discard is advisory */
		if (ret) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
	}
	kfree(req->dwz);
	req->dwz = NULL;
	sluice_blk_finish(req, status, 1);
}

/*
 * Worker.  DISCARD / WRITE_ZEROES: read and check the guest's array of
 * virtio_blk_discard_write_zeroes (it is in guest memory, which only the
 * worker can reach), then hand the ranges to sluice_blk_wq.
 */
static void sluice_blk_discard_zeroes(struct sluice_blk_req *req)
{
	struct sluice_blk_disk *disk = req->q->disk;
	struct virtio_blk_discard_write_zeroes seg;
	struct sluice_blk_dwz_range *r;
	struct iov_iter it;
	u32 i, n, used = 0;
	u8 status;

	if (disk->readonly)
		return sluice_blk_finish(req, VIRTIO_BLK_S_IOERR, 1);
	if (!req->data_len || req->data_len % sizeof(seg))
		return sluice_blk_finish(req, VIRTIO_BLK_S_UNSUPP, 1);
	n = req->data_len / sizeof(seg);
	if (n > SLUICE_BLK_MAX_DWZ_SEG)		/* more than the VMM lets a driver send */
		return sluice_blk_finish(req, VIRTIO_BLK_S_UNSUPP, 1);
	r = kmalloc_array(n, sizeof(*r), GFP_KERNEL_ACCOUNT);
	if (!r)
		return sluice_blk_finish(req, VIRTIO_BLK_S_IOERR, 1);
	iov_iter_init(&it, ITER_SOURCE, req->iov, req->nr_iov, req->data_len);
	for (i = 0; i < n; i++) {
		u64 sector, bytes;
		u32 flags;

		status = VIRTIO_BLK_S_IOERR;
		if (copy_from_iter(&seg, sizeof(seg), &it) != sizeof(seg))
			goto out_free;
		sector = le64_to_cpu(seg.sector);
		bytes = (u64)le32_to_cpu(seg.num_sectors) << SLUICE_BLK_SECTOR_SHIFT;
		flags = le32_to_cpu(seg.flags);
		status = VIRTIO_BLK_S_UNSUPP;
		if (req->type == VIRTIO_BLK_T_DISCARD && flags)
			goto out_free;
		if (req->type == VIRTIO_BLK_T_WRITE_ZEROES && (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			goto out_free;
		status = VIRTIO_BLK_S_IOERR;
		if (sector > disk->capacity >> SLUICE_BLK_SECTOR_SHIFT ||
		    bytes > disk->capacity - (sector << SLUICE_BLK_SECTOR_SHIFT))
			goto out_free;
		if (!bytes)
			continue;
		r[used].pos = sector << SLUICE_BLK_SECTOR_SHIFT;
		r[used].bytes = bytes;
		r[used].mode = (req->type == VIRTIO_BLK_T_DISCARD || (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)) ?
			       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		used++;
	}
	req->dwz = r;
	req->dwz_n = used;
	INIT_WORK(&req->work, sluice_blk_dwz_work);
	queue_work(sluice_blk_wq, &req->work);	/* in flight until it completes: stop waits for it */
	return;

out_free:
	kfree(r);
	sluice_blk_finish(req, status, 1);
}

/*
 * Worker.  The data buffers: the @n buffers of @src minus @skip leading bytes
 * (the header) and @drop trailing bytes (the status), as guest ranges in
 * q->dsegs (for forwarding) and as user addresses in req->iov (for I/O).
 * Every range lies inside a buffer the walker checked against guest RAM.
 */
static void sluice_blk_data_bufs(struct sluice_blk_req *req, const struct sluice_vq_seg *src,
				 unsigned int n, u32 skip, u32 drop)
{
	struct sluice_blk_queue *q = req->q;
	u32 total = 0, i;

	req->nr_iov = 0;
	for (i = 0; i < n; i++)
		total += src[i].len;
	total -= skip + drop;
	req->data_len = total;
	for (i = 0; i < n && total; i++) {
		u32 len = src[i].len;
		u64 gpa = src[i].gpa;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		gpa += skip;
		len -= skip;
		skip = 0;
		if (len > total)
			len = total;
		q->dsegs[req->nr_iov] = (struct sluice_vq_seg){ .gpa = gpa, .len = len, .write = src[i].write };
		req->iov[req->nr_iov].iov_base = sluice_blk_gpa_to_user(q->disk, gpa, len);
		req->iov[req->nr_iov].iov_len = len;
		req->nr_iov++;
		total -= len;
	}
	req->nr_dsegs = req->nr_iov;
}

/*
 * Worker.  Parse the chain (@segs, walked and validated) into a request and start it.
 * Every outcome ends in sluice_blk_queue_complete() except a chain without a
 * header or status byte, which breaks the queue (the request is dropped).
 */
void sluice_blk_req_submit(struct sluice_blk_req *req, const struct sluice_vq_seg *segs,
			   unsigned int nsegs, u32 out_bytes, u32 in_bytes)
{
	struct sluice_blk_queue *q = req->q;
	struct sluice_blk_disk *disk = q->disk;
	struct iovec *tr = q->tr;
	struct virtio_blk_outhdr hdr;
	unsigned int i, nout = 0;
	struct iov_iter it;
	u64 bytes;

	for (i = 0; i < nsegs; i++) {
		tr[i].iov_base = sluice_blk_gpa_to_user(disk, segs[i].gpa, segs[i].len);
		tr[i].iov_len = segs[i].len;
		if (!tr[i].iov_base)
			goto out_malformed;
		if (!segs[i].write)
			nout++;
	}
	if (out_bytes < sizeof(hdr) || in_bytes < 1)
		goto out_malformed;
	iov_iter_init(&it, ITER_SOURCE, tr, nout, out_bytes);
	if (copy_from_iter(&hdr, sizeof(hdr), &it) != sizeof(hdr))
		goto out_malformed;
	req->ext_gen = -1;
	req->type = le32_to_cpu(hdr.type);
	req->sector = le64_to_cpu(hdr.sector);
	req->status = (u8 __user *)tr[nsegs - 1].iov_base + tr[nsegs - 1].iov_len - 1;

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_GET_ID:
		sluice_blk_data_bufs(req, segs + nout, nsegs - nout, 0, 1);
		break;
	default:
		sluice_blk_data_bufs(req, segs, nout, sizeof(hdr), 0);
		break;
	}
	trace_req_start(disk->name, q->index, req->head, req->type, req->sector, req->data_len);

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		req->is_write = req->type == VIRTIO_BLK_T_OUT;
		bytes = req->data_len;
		if ((req->is_write && disk->readonly) || bytes % 512 ||
		    req->sector > disk->capacity >> SLUICE_BLK_SECTOR_SHIFT ||
		    bytes > disk->capacity - (req->sector << SLUICE_BLK_SECTOR_SHIFT))
			return sluice_blk_finish(req, VIRTIO_BLK_S_IOERR, 1);
		if (!bytes)
			return sluice_blk_finish(req, VIRTIO_BLK_S_OK, 1);
		sluice_blk_queue_pin_status(req);	/* lets the completion answer from its own context */
		return sluice_blk_submit_rw(req);
	case VIRTIO_BLK_T_FLUSH:
		if (disk->extents)	/* userspace's metadata caches must reach the disk too */
			return sluice_blk_forward(req, SLUICE_BLK_FWD_METADATA, q->dsegs, req->nr_dsegs);
		INIT_WORK(&req->work, sluice_blk_flush_work);
		queue_work(sluice_blk_wq, &req->work);	/* in flight until it completes: stop waits for it */
		return;
	case VIRTIO_BLK_T_GET_ID: {
		u32 n = min_t(u32, req->data_len, VIRTIO_BLK_ID_BYTES);

		iov_iter_init(&it, ITER_DEST, req->iov, req->nr_iov, n);
		if (copy_to_iter(disk->serial, n, &it) != n)
			return sluice_blk_finish(req, VIRTIO_BLK_S_IOERR, 1);
		return sluice_blk_finish(req, VIRTIO_BLK_S_OK, n + 1);
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (disk->extents)	/* they change what clusters mean: userspace's metadata */
			return sluice_blk_forward(req, SLUICE_BLK_FWD_METADATA, q->dsegs, req->nr_dsegs);
		return sluice_blk_discard_zeroes(req);
	default:
		return sluice_blk_finish(req, VIRTIO_BLK_S_UNSUPP, 1);
	}

out_malformed:
	/* No status byte to answer through: the chain is malformed and the queue stops. */
	sluice_blk_queue_break(q, "request without header or status byte");
	kfree(req);
	/* As a completion would: a DRAIN that saw this request in flight sleeps until inflight is 0. */
	if (atomic_dec_and_test(&q->inflight))
		wake_up_all(&q->idle_wq);
}
