// SPDX-License-Identifier: GPL-2.0
/* sluice_blk_extent.c - qcow2 on the kernel dataplane: the extent map and the upcall rings to userspace. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/overflow.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio_blk.h>

#include "sluice_blk.h"

/*
 * The coherency protocol (Documentation/kmod.rst, "qcow2 on the kernel dataplane"):
 *
 * Userspace owns all qcow2 metadata; the module only maps guest clusters to
 * host clusters it was told about.  A worker translates a request under
 * rcu_read_lock() and pins the current generation (ext_inflight[gen]++)
 * before it drops the RCU lock.  UNMAP_EXTENTS erases the entries, waits
 * for an RCU grace period (every translation that could have seen them has
 * pinned its generation), flips the generation and waits until the old one
 * has no request in flight.  When it returns, no kernel request uses the
 * revoked host clusters and userspace may free or rewrite them.
 */

#define SLUICE_BLK_MAX_EXTENTS_PER_CALL	1024

/* Process context (open). */
void sluice_blk_extent_init(struct sluice_blk_disk *disk)
{
	xa_init(&disk->ext_map);
	xa_init_flags(&disk->fwd, XA_FLAGS_ALLOC);
	init_waitqueue_head(&disk->ext_wq);
	mutex_init(&disk->fwd_lock);
	INIT_LIST_HEAD(&disk->fwd_pending);
	disk->cluster_bits = 16;
}

/* Process context (ioctl, reset, release), queues stopped: drop the upcall channel. */
static void sluice_blk_upcall_free(struct sluice_blk_disk *disk)
{
	if (disk->fwd_done_wqh)
		remove_wait_queue(disk->fwd_done_wqh, &disk->fwd_done_wait);
	disk->fwd_done_wqh = NULL;
	if (disk->fwd_done_file)
		fput(disk->fwd_done_file);
	disk->fwd_done_file = NULL;
	if (disk->fwd_notify)
		eventfd_ctx_put(disk->fwd_notify);
	disk->fwd_notify = NULL;
	disk->req_ring = disk->done_ring = NULL;
}

/* Process context (reset / release), no queue running, nothing forwarded. */
void sluice_blk_extent_free(struct sluice_blk_disk *disk)
{
	sluice_blk_upcall_free(disk);
	xa_destroy(&disk->ext_map);
	atomic_set(&disk->ext_clusters, 0);
	disk->extents = false;
}

/* Process context (ioctl), disk->lock held. */
int sluice_blk_set_extent_config(struct sluice_blk_disk *disk, void __user *arg)
{
	struct sluice_blk_extent_config c;
	int i;

	if (copy_from_user(&c, arg, sizeof(c)))
		return -EFAULT;
	if (c.reserved || c.cluster_bits < 9 || c.cluster_bits > 21)
		return -EINVAL;
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++)
		if (disk->queues[i].worker)
			return -EBUSY;
	if (atomic_read(&disk->ext_clusters))
		return -EBUSY;
	disk->cluster_bits = c.cluster_bits;
	return 0;
}

/* Process context (ioctl), disk->lock held.  Extents replace what they overlap. */
int sluice_blk_map_extents(struct sluice_blk_disk *disk, void __user *arg)
{
	u64 mask = (1ULL << disk->cluster_bits) - 1, end;
	struct sluice_blk_extents hdr;
	struct sluice_blk_extent e;
	u32 i;
	int ret;

	if (!disk->extents)
		return -EINVAL;
	if (copy_from_user(&hdr, arg, sizeof(hdr)))
		return -EFAULT;
	if (hdr.reserved || hdr.nr > SLUICE_BLK_MAX_EXTENTS_PER_CALL)
		return -EINVAL;
	for (i = 0; i < hdr.nr; i++) {
		unsigned long c, n, host;

		if (copy_from_user(&e, (u8 __user *)arg + sizeof(hdr) + i * sizeof(e), sizeof(e)))
			return -EFAULT;
		if (e.reserved || (e.flags & ~SLUICE_BLK_EXTENT_F_WRITABLE) || !e.length ||
		    ((e.guest_offset | e.length | e.host_offset) & mask) ||
		    check_add_overflow(e.guest_offset, e.length, &end) || end > disk->capacity ||
		    check_add_overflow(e.host_offset, e.length, &end) || (end >> disk->cluster_bits) > (LONG_MAX >> 2))
			return -EINVAL;
		c = e.guest_offset >> disk->cluster_bits;
		host = e.host_offset >> disk->cluster_bits;
		for (n = 0; n < (e.length >> disk->cluster_bits); n++) {
			void *v = xa_mk_value(((host + n) << 1) | (e.flags & SLUICE_BLK_EXTENT_F_WRITABLE));
			void *old;

			/*
			 * One extent may span billions of clusters: disk->lock is a
			 * mutex, so yield the CPU, and let a killed owner go (what
			 * was stored so far maps what it asked for, only less).
			 */
			if (fatal_signal_pending(current))
				return -EINTR;
			cond_resched();
			/* The VMM decides how many clusters are mapped: its memcg pays for the nodes. */
			old = xa_store(&disk->ext_map, c + n, v, GFP_KERNEL_ACCOUNT);
			ret = xa_err(old);
			if (ret)
				return ret;
			if (!old)
				atomic_inc(&disk->ext_clusters);
		}
	}
	return 0;
}

/* Process context (ioctl), disk->lock held.  Returns once no kernel request uses the range. */
int sluice_blk_unmap_extents(struct sluice_blk_disk *disk, void __user *arg)
{
	struct sluice_blk_range r;
	unsigned long first, last, idx;
	void *entry;
	u64 end;
	int old;

	if (!disk->extents)
		return -EINVAL;
	if (copy_from_user(&r, arg, sizeof(r)))
		return -EFAULT;
	if (!r.length || r.offset >= disk->capacity)
		return -EINVAL;
	/*
	 * A range past the end of the disk means "to the end", and so does one
	 * whose end does not fit in 64 bits (length U64_MAX): wrapped, its end
	 * would lie below the offset and nothing would be revoked.
	 */
	if (check_add_overflow(r.offset, r.length, &end))
		end = U64_MAX;
	first = r.offset >> disk->cluster_bits;
	last = (min(end, disk->capacity) - 1) >> disk->cluster_bits;
	xa_for_each_range(&disk->ext_map, idx, entry, first, last) {
		xa_erase(&disk->ext_map, idx);
		atomic_dec(&disk->ext_clusters);
	}
	/* Every translation that may have seen an erased entry has pinned its generation. */
	synchronize_rcu();
	old = disk->ext_gen;
	WRITE_ONCE(disk->ext_gen, !old);
	/* Pairs with the atomic_dec_and_test() in sluice_blk_extent_put(). */
	wait_event(disk->ext_wq, !atomic_read(&disk->ext_inflight[old]));
	return 0;
}

/*
 * Worker.  Translate @req (IN/OUT) through the extent map.  0 with *@host_pos
 * and the generation pinned (release with sluice_blk_extent_put()), or a
 * SLUICE_BLK_FWD_* reason to forward the request instead.
 */
int sluice_blk_extent_translate(struct sluice_blk_req *req, u64 *host_pos)
{
	struct sluice_blk_disk *disk = req->q->disk;
	u64 pos = req->sector << 9, mask = (1ULL << disk->cluster_bits) - 1;
	unsigned long c, first = pos >> disk->cluster_bits;
	unsigned long last = (pos + req->data_len - 1) >> disk->cluster_bits;
	unsigned long host0 = 0;
	int reason = 0, gen;

	rcu_read_lock();
	gen = READ_ONCE(disk->ext_gen);
	atomic_inc(&disk->ext_inflight[gen]);
	for (c = first; c <= last && !reason; c++) {
		void *v = xa_load(&disk->ext_map, c);
		unsigned long val;

		if (!v) {
			reason = SLUICE_BLK_FWD_UNMAPPED;
			break;
		}
		val = xa_to_value(v);
		if (req->is_write && !(val & SLUICE_BLK_EXTENT_F_WRITABLE))
			reason = SLUICE_BLK_FWD_READONLY;
		else if (c == first)
			host0 = val >> 1;
		else if ((val >> 1) != host0 + (c - first))
			reason = SLUICE_BLK_FWD_SPLIT;
	}
	rcu_read_unlock();
	if (reason) {
		if (atomic_dec_and_test(&disk->ext_inflight[gen]))
			wake_up(&disk->ext_wq);
		atomic64_inc(&disk->ext_misses);
		return reason;
	}
	req->ext_gen = gen;
	*host_pos = ((u64)host0 << disk->cluster_bits) | (pos & mask);
	atomic64_inc(&disk->ext_hits);
	return 0;
}

/* Any context (kiocb completion).  Unpin @req's extent generation. */
void sluice_blk_extent_put(struct sluice_blk_req *req)
{
	struct sluice_blk_disk *disk = req->q->disk;

	if (req->ext_gen < 0)
		return;
	/* Pairs with the wait_event() in sluice_blk_unmap_extents(). */
	if (atomic_dec_and_test(&disk->ext_inflight[req->ext_gen]))
		wake_up(&disk->ext_wq);
	req->ext_gen = -1;
}

/* Any context (eventfd_signal on done_fd): wake every running worker to reap completions. */
static int sluice_blk_fwd_done_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct sluice_blk_disk *disk = container_of(wait, struct sluice_blk_disk, fwd_done_wait);
	int i;

	if (!(key_to_poll(key) & EPOLLIN))
		return 0;
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		struct sluice_blk_queue *q = &disk->queues[i];
		struct task_struct *t = READ_ONCE(q->worker);

		if (t && atomic_read(&q->inflight)) {
			set_bit(1, &q->work);
			wake_up_process(t);
		}
	}
	return 0;
}

static void sluice_blk_fwd_done_proc(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct sluice_blk_disk *disk = container_of(pt, struct sluice_blk_disk, fwd_done_pt);

	disk->fwd_done_wqh = wqh;
	add_wait_queue(wqh, &disk->fwd_done_wait);
}

/* Process context (ioctl), disk->lock held, queues stopped: the two rings and their eventfds. */
int sluice_blk_set_upcall(struct sluice_blk_disk *disk, void __user *arg)
{
	struct sluice_blk_upcall u;
	struct eventfd_ctx *notify;
	struct file *done;
	u64 req_bytes, done_bytes;
	int i;

	if (!disk->extents)
		return -EINVAL;
	if (copy_from_user(&u, arg, sizeof(u)))
		return -EFAULT;
	if (u.reserved || !u.entries || u.entries > 4096 || (u.entries & (u.entries - 1)))
		return -EINVAL;
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++)
		if (disk->queues[i].worker)
			return -EBUSY;
	req_bytes = sizeof(struct sluice_blk_ring_hdr) + (u64)u.entries * sizeof(struct sluice_blk_upcall_req);
	done_bytes = sizeof(struct sluice_blk_ring_hdr) + (u64)u.entries * sizeof(struct sluice_blk_upcall_done);
	if (!access_ok(u64_to_user_ptr(u.req_ring), req_bytes) ||
	    !access_ok(u64_to_user_ptr(u.done_ring), done_bytes) || (u.req_ring | u.done_ring) % 8)
		return -EINVAL;
	notify = eventfd_ctx_fdget(u.notify_fd);
	if (IS_ERR(notify))
		return PTR_ERR(notify);
	done = fget(u.done_fd);
	if (!done) {
		eventfd_ctx_put(notify);
		return -EBADF;
	}
	{
		struct eventfd_ctx *ctx = eventfd_ctx_fileget(done);

		if (IS_ERR(ctx)) {
			fput(done);
			eventfd_ctx_put(notify);
			return -EINVAL;
		}
		eventfd_ctx_put(ctx);
	}
	sluice_blk_upcall_free(disk);	/* an earlier channel, if any */
	disk->fwd_notify = notify;
	disk->fwd_done_file = done;
	disk->req_ring = u64_to_user_ptr(u.req_ring);
	disk->done_ring = u64_to_user_ptr(u.done_ring);
	disk->ring_entries = u.entries;
	init_waitqueue_func_entry(&disk->fwd_done_wait, sluice_blk_fwd_done_wakeup);
	init_poll_funcptr(&disk->fwd_done_pt, sluice_blk_fwd_done_proc);
	vfs_poll(done, &disk->fwd_done_pt);
	return 0;
}

/* Worker, disk->fwd_lock held.  Put @req's record on the req ring: 0, -ENOSPC (full) or -EFAULT. */
static int sluice_blk_fwd_push(struct sluice_blk_disk *disk, struct sluice_blk_req *req)
{
	struct sluice_blk_upcall_req __user *ring = (void __user *)(disk->req_ring + 1);
	u32 prod, cons;

	if (get_user(prod, &disk->req_ring->prod) || get_user(cons, &disk->req_ring->cons))
		return -EFAULT;
	if (prod - cons >= disk->ring_entries)
		return -ENOSPC;
	req->fwd_rec->id = (u64)req->fwd_seq << 32 | req->fwd_id;
	if (copy_to_user(&ring[prod & (disk->ring_entries - 1)], req->fwd_rec, sizeof(*req->fwd_rec)))
		return -EFAULT;
	/* The entry before prod; pairs with userspace's acquire load of prod. */
	smp_wmb();
	return put_user(prod + 1, &disk->req_ring->prod);
}

/* Worker.  Finish @req with @status (forwarding failed or was cancelled). */
static void sluice_blk_fwd_fail(struct sluice_blk_req *req, u8 status)
{
	kfree(req->fwd_rec);
	req->fwd_rec = NULL;
	req->status_val = status;
	req->written = 1;
	sluice_blk_queue_complete(req);
}

/*
 * Worker.  Hand @req to userspace: its data buffers (@dsegs, guest physical)
 * go on the req ring with @reason; the completion comes back on the done ring.
 */
void sluice_blk_forward(struct sluice_blk_req *req, u16 reason, const struct sluice_vq_seg *dsegs,
			unsigned int n)
{
	struct sluice_blk_queue *q = req->q;
	struct sluice_blk_disk *disk = q->disk;
	struct sluice_blk_upcall_req *rec;
	unsigned int i;
	u32 id;
	int ret;

	if (!disk->req_ring || n > SLUICE_BLK_UPCALL_MAX_SEGS)
		return sluice_blk_fwd_fail(req, VIRTIO_BLK_S_IOERR);
	req->fwd_reason = reason;
	rec = kzalloc(sizeof(*rec), GFP_KERNEL_ACCOUNT);
	if (!rec)
		return sluice_blk_fwd_fail(req, VIRTIO_BLK_S_IOERR);
	rec->queue = q->index;
	rec->type = req->type;
	rec->sector = req->sector;
	rec->data_len = req->data_len;
	rec->nsegs = n;
	rec->reason = reason;
	for (i = 0; i < n; i++) {
		rec->segs[i].gpa = dsegs[i].gpa;
		rec->segs[i].len = dsegs[i].len;
		rec->segs[i].write = dsegs[i].write;
	}
	req->fwd_rec = rec;

	/*
	 * Under fwd_lock from here: a queue stop cancels what is in the table
	 * and closes the queue in one critical section, so a request is either
	 * cancelled with the others or refused here, never half-forwarded.
	 */
	mutex_lock(&disk->fwd_lock);
	if (q->fwd_closed || xa_alloc(&disk->fwd, &id, req, xa_limit_32b, GFP_KERNEL_ACCOUNT)) {
		mutex_unlock(&disk->fwd_lock);
		return sluice_blk_fwd_fail(req, VIRTIO_BLK_S_IOERR);
	}
	req->fwd_id = id;
	/* Table slots are reused at once: the sequence tells a late or replayed completion from this one. */
	req->fwd_seq = ++disk->fwd_seq;
	atomic64_inc(&q->fallback);
	ret = list_empty(&disk->fwd_pending) ? sluice_blk_fwd_push(disk, req) : -ENOSPC;
	if (ret == -ENOSPC)
		list_add_tail(&req->fwd_node, &disk->fwd_pending);
	else if (ret == -EFAULT)
		xa_erase(&disk->fwd, id);
	mutex_unlock(&disk->fwd_lock);
	if (ret == -EFAULT) {
		sluice_blk_queue_break(q, "cannot write the upcall ring");
		return sluice_blk_fwd_fail(req, VIRTIO_BLK_S_IOERR);
	}
	if (!ret)
		sluice_blk_eventfd_signal(disk->fwd_notify);
}

/* Worker.  Consume the done ring: complete each forwarded request on its own queue. */
void sluice_blk_fwd_reap(struct sluice_blk_disk *disk)
{
	struct sluice_blk_upcall_done __user *ring;
	struct sluice_blk_req *req, *tmp;
	bool pushed = false;
	u32 prod, cons;

	if (!disk->done_ring)
		return;
	ring = (void __user *)(disk->done_ring + 1);
	mutex_lock(&disk->fwd_lock);
	if (get_user(prod, &disk->done_ring->prod) || get_user(cons, &disk->done_ring->cons))
		goto out_unlock;
	/* Entries after prod; pairs with userspace's release store of prod. */
	smp_rmb();
	if (prod - cons > disk->ring_entries)
		cons = prod - disk->ring_entries;	/* a lying producer: take the last ring's worth */
	for (; cons != prod; cons++) {
		struct sluice_blk_upcall_done d;

		if (copy_from_user(&d, &ring[cons & (disk->ring_entries - 1)], sizeof(d)))
			break;
		/*
		 * Only a completion for the request that holds this slot now, and
		 * only once it is on the req ring: an entry for a cancelled request
		 * whose slot was reused, or one replayed by a lying producer, must
		 * not finish (and free) a request still waiting on fwd_pending.
		 */
		req = xa_load(&disk->fwd, (unsigned long)(d.id & U32_MAX));
		if (!req || req->fwd_seq != (u32)(d.id >> 32) || !list_empty(&req->fwd_node))
			continue;	/* unknown, stale or cancelled: nothing to complete */
		xa_erase(&disk->fwd, (unsigned long)(d.id & U32_MAX));
		kfree(req->fwd_rec);
		req->fwd_rec = NULL;
		if (d.status > VIRTIO_BLK_S_UNSUPP) {
			req->status_val = VIRTIO_BLK_S_IOERR;
			req->written = 1;
		} else {
			req->status_val = d.status;
			req->written = min_t(u32, d.written, req->data_len + 1);
			if (!req->written)
				req->written = 1;
		}
		sluice_blk_queue_complete(req);
	}
	/* The entries were read before their slots are given back; pairs with userspace's acquire of cons. */
	smp_mb();
	put_user(cons, &disk->done_ring->cons);
	/* Room freed on the req ring: push what waited. */
	list_for_each_entry_safe(req, tmp, &disk->fwd_pending, fwd_node) {
		if (sluice_blk_fwd_push(disk, req))
			break;
		list_del_init(&req->fwd_node);
		pushed = true;
	}
out_unlock:
	mutex_unlock(&disk->fwd_lock);
	if (pushed)
		sluice_blk_eventfd_signal(disk->fwd_notify);
}

/*
 * Process context, disk->lock held: cancel the forwarded requests of @q (all
 * queues when NULL) with IOERR, so stopping a queue never waits for a
 * userspace that may be gone.  A late completion for them is ignored.
 */
void sluice_blk_fwd_cancel(struct sluice_blk_disk *disk, struct sluice_blk_queue *q)
{
	struct sluice_blk_req *req, *tmp;
	unsigned long id;

	mutex_lock(&disk->fwd_lock);
	for (id = 0; id < SLUICE_BLK_MAX_QUEUES; id++)
		if (!q || q == &disk->queues[id])
			disk->queues[id].fwd_closed = true;	/* the worker forwards no more */
	list_for_each_entry_safe(req, tmp, &disk->fwd_pending, fwd_node)
		if (!q || req->q == q)
			list_del_init(&req->fwd_node);
	xa_for_each(&disk->fwd, id, req) {
		if (q && req->q != q)
			continue;
		xa_erase(&disk->fwd, id);
		kfree(req->fwd_rec);
		req->fwd_rec = NULL;
		req->status_val = VIRTIO_BLK_S_IOERR;
		req->written = 1;
		sluice_blk_queue_complete(req);
	}
	mutex_unlock(&disk->fwd_lock);
}
