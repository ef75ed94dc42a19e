// SPDX-License-Identifier: GPL-2.0
/* sluice_blk_queue.c - one worker per virtqueue: kick wake-ups, the vhost-style kick loop, used ring and signals. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/vmalloc.h>
#include <linux/memcontrol.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio_ring.h>
#include <linux/virtio_config.h>

#include <linux/sched/task.h>
#include <linux/virtio_blk.h>

#include "sluice_blk.h"
#define CREATE_TRACE_POINTS
#include "sluice_blk_trace.h"

static unsigned int weight = SLUICE_BLK_WEIGHT;
module_param(weight, uint, 0644);
MODULE_PARM_DESC(weight, "requests a queue pops before letting completions run (default 256)");

static unsigned int poll_ns = 32768;
module_param(poll_ns, uint, 0644);
MODULE_PARM_DESC(poll_ns, "ns a worker with requests in flight first polls its ring before asking for kicks (default 32768, 0: off)");

static unsigned int inline_kick = 4;
module_param(inline_kick, uint, 0644);
MODULE_PARM_DESC(inline_kick, "requests the kicking thread pops itself when its queue is idle (default 4, 0: all on the worker)");

static bool direct_complete = true;
module_param(direct_complete, bool, 0644);
MODULE_PARM_DESC(direct_complete, "a read or write completion writes its used entry and signals from its own context (default Y; N: through the worker)");

static unsigned int poll_max_ns = 262144;
module_param(poll_max_ns, uint, 0644);
MODULE_PARM_DESC(poll_max_ns, "ns the adaptive poll window may grow to (default 262144; at most poll_ns: fixed window)");

/* Ring layouts (virtio 1.x 2.7.6 and 2.7.8), all little-endian. */
struct sluice_blk_avail {
	__le16 flags;
	__le16 idx;
	__le16 ring[];		/* then: __le16 used_event */
};

struct sluice_blk_used_elem {
	__le32 id;
	__le32 len;
};

struct sluice_blk_used {
	__le16 flags;
	__le16 idx;
	struct sluice_blk_used_elem ring[];	/* then: __le16 avail_event */
};

static bool sluice_blk_event_idx(const struct sluice_blk_queue *q)
{
	return q->disk->features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
}

/* Worker.  Mark the queue broken: the VMM sees it on the err eventfd and puts the device in NEEDS_RESET. */
void sluice_blk_queue_break(struct sluice_blk_queue *q, const char *why)
{
	if (q->broken)
		return;		/* said once: the rest is fallout (e.g. the owner's memory is gone) */
	pr_warn_ratelimited("%s: queue %u stopped: %s\n", q->disk->name, q->index, why);
	q->broken = true;
	if (q->err)
		sluice_blk_eventfd_signal(q->err);
}

/* Worker.  Ask the driver to kick us again (after the ring was found empty). */
static int sluice_blk_enable_notify(struct sluice_blk_queue *q)
{
	struct sluice_blk_used __user *used = q->used;

	if (sluice_blk_event_idx(q))
		return put_user(cpu_to_le16(q->last_avail), (__le16 __user *)&used->ring[q->num]);
	return put_user(cpu_to_le16(0), &used->flags);
}

/* Worker.  We are polling the ring: kicks are useless until we sleep again. */
static int sluice_blk_disable_notify(struct sluice_blk_queue *q)
{
	struct sluice_blk_used __user *used = q->used;

	if (sluice_blk_event_idx(q))
		return 0;	/* the event index stays behind: no kick */
	return put_user(cpu_to_le16(VRING_USED_F_NO_NOTIFY), &used->flags);
}

/*
 * Any context.  Does the driver want to hear of used entries [@old, used_idx)?
 * @v is what it wrote: used_event with EVENT_IDX, else avail->flags.
 */
static bool sluice_blk_driver_wants(const struct sluice_blk_queue *q, __le16 v, u16 old)
{
	if (sluice_blk_event_idx(q))
		return sluice_vq_need_event(le16_to_cpu(v), q->used_idx, old);
	return !(le16_to_cpu(v) & VRING_AVAIL_F_NO_INTERRUPT);
}

/* Any context.  Signal the call eventfd (the guest's interrupt). */
static void sluice_blk_call(struct sluice_blk_queue *q)
{
	if (!q->call)
		return;
	sluice_blk_eventfd_signal(q->call);
	atomic64_inc(&q->signals);
}

/* Worker.  Tell the driver about new used entries, once per batch, if it wants to hear. */
static void sluice_blk_signal(struct sluice_blk_queue *q, u16 old)
{
	struct sluice_blk_avail __user *avail = q->avail;
	bool ev = sluice_blk_event_idx(q);
	__le16 v;

	/* Our used idx store before reading the driver's event/flags; pairs with the mb in virtqueue_enable_cb. */
	smp_mb();
	if (get_user(v, ev ? &avail->ring[q->num] : &avail->flags))
		return sluice_blk_queue_break(q, ev ? "cannot read used_event" : "cannot read avail flags");
	if (sluice_blk_driver_wants(q, v, old))
		sluice_blk_call(q);
}

/*
 * Process context, owner's mm.  Pin and map the @len bytes at user address
 * @uaddr (a ring) into @map; the kernel address of @uaddr, or NULL.  A ring
 * written from a completion's context must be in swap-backed memory (anon or
 * shmem: the VMM's guest RAM), whose pages are dirtied by a flag alone.
 */
static void *sluice_blk_map_ring(void __user *uaddr, size_t len, struct sluice_blk_ring_map *map)
{
	unsigned long start = (unsigned long)uaddr;
	unsigned int n = DIV_ROUND_UP(offset_in_page(start) + len, PAGE_SIZE), i;
	int got;

	map->n = 0;
	if (n > ARRAY_SIZE(map->pages))
		return NULL;
	/*
	 * FOLL_WRITE even for the avail ring, which we only read: a read pin of
	 * guest RAM the driver has not written yet would be the shared zero page
	 * (6.1 pins it), which the driver's first store replaces.
	 */
	got = pin_user_pages_fast(start & PAGE_MASK, n, FOLL_LONGTERM | FOLL_WRITE, map->pages);
	if (got > 0)
		map->n = got;
	if (got != (int)n)
		goto out_unpin;
	for (i = 0; i < n; i++)
		if (!folio_test_swapbacked(page_folio(map->pages[i])))
			goto out_unpin;
	map->vaddr = vmap(map->pages, n, VM_MAP, PAGE_KERNEL);
	if (!map->vaddr)
		goto out_unpin;
	return map->vaddr + offset_in_page(start);

out_unpin:
	unpin_user_pages(map->pages, map->n);
	map->n = 0;
	return NULL;
}

/* Process context.  Undo sluice_blk_map_ring(); @dirty: the kernel wrote through it. */
static void sluice_blk_unmap_ring(struct sluice_blk_ring_map *map, bool dirty)
{
	if (!map->n)
		return;
	vunmap(map->vaddr);
	unpin_user_pages_dirty_lock(map->pages, map->n, dirty);
	map->n = 0;
	map->vaddr = NULL;
}

/*
 * Worker, in a pass (q->pass_lock, disk->rings_sem read).  Map the rings for
 * direct completions, once per start or table change; on failure (a ring in
 * file-backed memory, say) completions keep going through the worker.
 */
static void sluice_blk_map_rings_kernel(struct sluice_blk_queue *q)
{
	void *a, *u;

	if (q->kused || q->map_tried || !READ_ONCE(direct_complete))
		return;
	q->map_tried = true;
	a = sluice_blk_map_ring(q->avail, 6 + 2 * q->num, &q->avail_map);
	u = a ? sluice_blk_map_ring(q->used, 6 + 8 * q->num, &q->used_map) : NULL;
	if (!u) {
		sluice_blk_unmap_ring(&q->avail_map, false);
		return;
	}
	spin_lock_irq(&q->used_lock);
	q->kavail = a;
	q->kused = u;
	spin_unlock_irq(&q->used_lock);
}

/*
 * Process context, no pass running (SET_MEM_TABLE under rings_sem write, or
 * a stopped queue).  Completions go back to the worker; one writing through
 * the mapping now finishes first (used_lock).
 */
void sluice_blk_queue_unmap_rings(struct sluice_blk_queue *q)
{
	spin_lock_irq(&q->used_lock);
	q->kavail = NULL;
	q->kused = NULL;
	spin_unlock_irq(&q->used_lock);
	sluice_blk_unmap_ring(&q->used_map, true);
	sluice_blk_unmap_ring(&q->avail_map, false);
	q->map_tried = false;
}

/*
 * A pass (worker or inline), process context.  Pin the page of @req's status
 * byte while it is in flight, so that its completion can write it from any
 * context; left NULL (the worker writes it) when the rings are not mapped.
 */
void sluice_blk_queue_pin_status(struct sluice_blk_req *req)
{
	struct page *page;

	if (!READ_ONCE(req->q->kused) || !READ_ONCE(direct_complete))
		return;
	if (pin_user_pages_fast((unsigned long)req->status, 1, FOLL_WRITE, &page) != 1)
		return;
	if (!folio_test_swapbacked(page_folio(page))) {
		unpin_user_page(page);
		return;
	}
	req->status_page = page;
}

/* used_lock held, rings mapped.  @req's used entry at used_idx. */
static void sluice_blk_used_put_kernel(struct sluice_blk_queue *q, const struct sluice_blk_req *req)
{
	struct sluice_blk_used *used = q->kused;

	used->ring[q->used_idx % q->num].id = cpu_to_le32(req->head);
	used->ring[q->used_idx % q->num].len = cpu_to_le32(req->written);
	q->used_idx++;
}

/*
 * used_lock held, rings mapped.  Publish used_idx to the driver; true if it
 * asked to be told (EVENT_IDX: used_event crossed since the last publish).
 */
static bool sluice_blk_publish_kernel(struct sluice_blk_queue *q)
{
	struct sluice_blk_avail *avail = q->kavail;
	struct sluice_blk_used *used = q->kused;
	u16 old = q->used_pub;

	/* Before the index: a kick that follows the driver's read of it counts nothing outstanding. */
	WRITE_ONCE(q->used_pub, q->used_idx);
	/* Used elements (and status bytes) before the index; pairs with the driver's rmb after it reads used->idx. */
	smp_wmb();
	WRITE_ONCE(used->idx, cpu_to_le16(q->used_idx));
	/* Our used idx store before reading the driver's event/flags; pairs with the mb in virtqueue_enable_cb. */
	smp_mb();
	return sluice_blk_driver_wants(q, sluice_blk_event_idx(q) ? READ_ONCE(avail->ring[q->num]) :
				       READ_ONCE(avail->flags), old);
}

/* Any context.  A finished request's used entry is out: count it, trace it, free it. */
static void sluice_blk_retire(struct sluice_blk_queue *q, struct sluice_blk_req *req)
{
	atomic64_inc(&q->completed);
	if (req->status_val == VIRTIO_BLK_S_IOERR)
		atomic64_inc(&q->errors);
	else if (req->status_val == VIRTIO_BLK_S_UNSUPP)
		atomic64_inc(&q->unsupported);
	else if (req->type == VIRTIO_BLK_T_IN)
		atomic64_add(req->data_len, &q->bytes_read);
	else if (req->type == VIRTIO_BLK_T_OUT)
		atomic64_add(req->data_len, &q->bytes_written);
	trace_req_done(q->disk->name, q->index, req->head, req->type, req->sector,
		       req->data_len, req->status_val,
		       ktime_to_ns(ktime_sub(ktime_get(), req->start)), req->fwd_reason);
	kfree(req);
	atomic_dec(&q->inflight);
}

static void sluice_blk_wake_worker(struct sluice_blk_queue *q);

/*
 * Any context (kiocb completion, often the backend's IRQ), inside the
 * 'completing' window.  With the rings mapped and the status byte pinned,
 * answer the driver from here: status byte, used entry, index, and the call
 * signal if it asked, with no wake-up of the worker on the way out.  False
 * when the worker must do it.
 */
static bool sluice_blk_complete_direct(struct sluice_blk_queue *q, struct sluice_blk_req *req)
{
	unsigned long flags;
	bool need;
	u8 *p;

	/*
	 * Only the one request in flight: with others, the worker's batch (one
	 * wake-up, one signal for many) is cheaper for the guest than a signal each.
	 */
	if (!req->status_page || atomic_read(&q->inflight) != 1)
		return false;
	spin_lock_irqsave(&q->used_lock, flags);
	if (!q->kused) {
		spin_unlock_irqrestore(&q->used_lock, flags);
		return false;	/* unmapped since it was pinned: the worker writes it (and unpins) */
	}
	p = kmap_local_page(req->status_page);
	p[offset_in_page(req->status)] = req->status_val;
	kunmap_local(p);
	set_page_dirty(req->status_page);	/* swap-backed: a flag (checked when pinned) */
	sluice_blk_used_put_kernel(q, req);
	need = sluice_blk_publish_kernel(q);
	spin_unlock_irqrestore(&q->used_lock, flags);
	unpin_user_page(req->status_page);
	if (need)
		sluice_blk_call(q);
	atomic64_inc(&q->direct);
	sluice_blk_retire(q, req);
	if (READ_ONCE(q->throttled) && atomic_read(&q->inflight) < q->num)
		sluice_blk_wake_worker(q);	/* it stopped popping at num in flight */
	if (!atomic_read(&q->inflight))
		wake_up_all(&q->idle_wq);
	return true;
}

/* Any context (kiocb completion may be an IRQ).  Answer the driver, here or through the worker. */
void sluice_blk_queue_complete(struct sluice_blk_req *req)
{
	struct sluice_blk_queue *q = req->q;

	/* The worker may exit as soon as it reaped us: stop waits for 'completing' to drop (it holds a task ref). */
	atomic_inc(&q->completing);
	if (in_task() && READ_ONCE(q->pass_owner) == current) {
		/* Done inside a pass (a RAM disk, a refused request): the pass reaps it with the rest. */
		llist_add(&req->done_node, &q->done);
	} else if (!sluice_blk_complete_direct(q, req)) {
		llist_add(&req->done_node, &q->done);
		wake_up_process(q->worker);
	}
	atomic_dec(&q->completing);
}

/*
 * Worker, in a pass.  Write status bytes and used entries for every finished
 * request, then publish and signal once.  With the rings mapped, direct
 * completions write the same ring meanwhile: entries and index under used_lock.
 */
static void sluice_blk_reap(struct sluice_blk_queue *q)
{
	struct sluice_blk_used __user *used = q->used;
	struct llist_node *list = llist_del_all(&q->done);
	bool mapped = q->kused;	/* stable in a pass: only passes map, only non-passes unmap */
	struct sluice_blk_req *req, *tmp;
	u16 old = q->used_idx;
	bool need;

	if (!list)
		return;
	list = llist_reverse_order(list);
	llist_for_each_entry_safe(req, tmp, list, done_node) {
		struct sluice_blk_used_elem e = {
			.id = cpu_to_le32(req->head),
			.len = cpu_to_le32(req->written),
		};

		if (put_user(req->status_val, (u8 __user *)req->status))
			sluice_blk_queue_break(q, "cannot write the status byte");
		if (req->status_page)
			unpin_user_page(req->status_page);
		if (mapped) {
			spin_lock_irq(&q->used_lock);
			sluice_blk_used_put_kernel(q, req);
			spin_unlock_irq(&q->used_lock);
		} else {
			if (copy_to_user(&used->ring[q->used_idx % q->num], &e, sizeof(e)))
				sluice_blk_queue_break(q, "cannot write the used ring");
			q->used_idx++;
		}
		sluice_blk_retire(q, req);
	}
	if (mapped) {
		spin_lock_irq(&q->used_lock);
		need = sluice_blk_publish_kernel(q);
		spin_unlock_irq(&q->used_lock);
		if (need)
			sluice_blk_call(q);
	} else {
		WRITE_ONCE(q->used_pub, q->used_idx);	/* before the index, as in sluice_blk_publish_kernel() */
		/* Used elements before the index; pairs with the driver's rmb after it reads used->idx. */
		smp_wmb();
		if (put_user(cpu_to_le16(q->used_idx), &used->idx))
			sluice_blk_queue_break(q, "cannot write used idx");
		sluice_blk_signal(q, old);
	}
	if (q->throttled && atomic_read(&q->inflight) < q->num) {
		q->throttled = false;
		set_bit(0, &q->work);
	}
	if (!atomic_read(&q->inflight))
		wake_up_all(&q->idle_wq);
}

/* Worker.  Pop one chain and start its request; false when the queue broke. */
static bool sluice_blk_pop(struct sluice_blk_queue *q, u16 head)
{
	struct sluice_vq_ring vq = {
		.size = q->num,
		.indirect = q->disk->features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC),
		.desc_gpa = q->desc_gpa,
		.ops = &sluice_blk_vq_mem_ops,
		.opaque = q->disk,
	};
	struct sluice_blk_req *req;
	enum sluice_vq_err err;
	unsigned int nsegs;
	u32 out, in;

	err = sluice_vq_walk_chain(&vq, head, q->segs, SLUICE_BLK_MAX_SEGS, &nsegs, &out, &in);
	if (err) {
		sluice_blk_queue_break(q, sluice_vq_strerror(err));
		return false;
	}
	req = kzalloc(sizeof(*req), GFP_KERNEL_ACCOUNT);
	if (!req) {
		sluice_blk_queue_break(q, "out of memory");
		return false;
	}
	req->q = q;
	INIT_LIST_HEAD(&req->fwd_node);
	req->head = head;
	req->start = ktime_get();
	atomic_inc(&q->inflight);
	sluice_blk_req_submit(req, q->segs, nsegs, out, in);
	return !q->broken;
}

/*
 * A pass (q->pass_lock, disk->rings_sem read).  The kick loop: notifications
 * off, pop everything, notifications on and check again before sleeping.  At
 * most @budget requests per call (then bit 0 of q->work says there is more),
 * so completions (and other queues on this CPU) get their turn.
 */
static void __sluice_blk_handle_kick(struct sluice_blk_queue *q, bool may_poll, unsigned int budget)
{
	struct sluice_blk_avail __user *avail = q->avail;
	enum sluice_vq_err err;
	__le16 v;
	int pending;

	q->throttled = false;	/* set again below if still at num in flight */
	if (sluice_blk_disable_notify(q))
		return sluice_blk_queue_break(q, "cannot write used flags");
	while (!q->broken) {
		if (get_user(v, &avail->idx))
			return sluice_blk_queue_break(q, "cannot read avail idx");
		pending = sluice_vq_avail_pending(le16_to_cpu(v), q->last_avail, q->num, &err);
		if (pending < 0)
			return sluice_blk_queue_break(q, sluice_vq_strerror(err));
		if (!pending) {
			/*
			 * More completions are coming, and with them the driver's next
			 * requests: poll for those (notifications stay off, so no kick
			 * exits) rather than ask for a kick.  The worker enables them
			 * when a poll window passes idle.
			 */
			if (may_poll && atomic_read(&q->inflight)) {
				q->polling = true;
				return;
			}
			if (sluice_blk_enable_notify(q))
				return sluice_blk_queue_break(q, "cannot write used flags");
			/* Enable before re-reading idx; pairs with the mb in the driver's virtqueue_kick_prepare. */
			smp_mb();
			if (get_user(v, &avail->idx))
				return sluice_blk_queue_break(q, "cannot read avail idx");
			if (le16_to_cpu(v) == q->last_avail)
				return;
			sluice_blk_disable_notify(q);
			continue;
		}
		/* Ring entries after the index; pairs with the driver's wmb before it publishes avail->idx. */
		smp_rmb();
		while (pending--) {
			/*
			 * A driver cannot have more than num requests in flight; one that
			 * re-posts heads anyway is throttled here, so memory stays bounded.
			 * The reap that brings inflight back under num resumes us.
			 */
			if (atomic_read(&q->inflight) >= q->num) {
				q->throttled = true;
				return;
			}
			if (!budget--) {
				set_bit(0, &q->work);	/* more to do: come back after the completions */
				return;
			}
			if (get_user(v, &avail->ring[q->last_avail % q->num]))
				return sluice_blk_queue_break(q, "cannot read the avail ring");
			WRITE_ONCE(q->last_avail, q->last_avail + 1);	/* read by kicks (sluice_blk_kick_busy()) */
			if (!sluice_blk_pop(q, le16_to_cpu(v)))
				return;
		}
	}
}

/*
 * A pass (q->pass_lock, disk->rings_sem read).  Pop under a block plug, as
 * io_uring submits: the bios of one pass reach the device as a batch (one
 * doorbell instead of one per request).
 */
static void sluice_blk_handle_kick(struct sluice_blk_queue *q, bool may_poll, unsigned int budget)
{
	struct blk_plug plug;

	blk_start_plug(&plug);
	__sluice_blk_handle_kick(q, may_poll, budget);
	blk_finish_plug(&plug);
}

/*
 * Worker, notifications off: spin up to poll_ns for a completion or a new
 * avail entry.  True if one came; false when the window passed (or we
 * should yield the CPU), and the caller must ask for kicks again.
 */
static bool sluice_blk_poll(struct sluice_blk_queue *q)
{
	struct sluice_blk_avail __user *avail = q->avail;
	u64 end = ktime_get_ns() + q->poll_cur;
	__le16 v;

	do {
		if (!llist_empty(&q->done))
			return true;
		if (get_user(v, &avail->idx) || le16_to_cpu(v) != q->last_avail)
			return true;	/* news (or a fault the kick pass reports) */
		if (need_resched() || kthread_should_stop())
			return false;
		cpu_relax();
	} while (ktime_get_ns() < end);
	return false;
}

/*
 * Worker, woken after a poll window passed idle (q->sleep_start).  Adapt the
 * window the way KVM's halt polling does: the event came within the largest
 * window, so a longer poll would have caught it (double, up to poll_max_ns);
 * it came later, so polling was waste (halve, down to poll_ns).
 */
static void sluice_blk_poll_adapt(struct sluice_blk_queue *q)
{
	u32 base = READ_ONCE(poll_ns), cap = max(READ_ONCE(poll_max_ns), base);
	u64 slept = ktime_get_ns() - q->sleep_start;

	q->sleep_start = 0;
	if (slept < cap)
		q->poll_cur = min_t(u64, (u64)q->poll_cur * 2, cap);
	else
		q->poll_cur = max(q->poll_cur / 2, base);
}

/* Worker thread: serve one queue with the owner's mm until stopped and idle. */
static int sluice_blk_worker(void *data)
{
	struct sluice_blk_queue *q = data;
	struct mem_cgroup *memcg, *old_memcg;
	bool may_poll = true, idle_poll = false;

	kthread_use_mm(q->disk->mm);
	/*
	 * What the worker allocates on the guest's behalf (requests, discard
	 * ranges, upcall records: GFP_KERNEL_ACCOUNT) is charged to the
	 * owner's memcg, as the VMM's own allocations would be, not to root.
	 */
	memcg = get_mem_cgroup_from_mm(q->disk->mm);
	old_memcg = set_active_memcg(memcg);
	q->poll_cur = READ_ONCE(poll_ns);
	q->sleep_start = 0;
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (kthread_should_stop() && !atomic_read(&q->inflight) && llist_empty(&q->done)) {
			__set_current_state(TASK_RUNNING);
			break;
		}
		if (!(READ_ONCE(q->work) & 3) && llist_empty(&q->done)) {
			if (q->polling) {
				/* The kick pass left notifications off: look before sleeping. */
				__set_current_state(TASK_RUNNING);
				q->polling = false;
				if (q->poll_cur < READ_ONCE(poll_ns))
					q->poll_cur = READ_ONCE(poll_ns);	/* raised since */
				down_read(&q->disk->rings_sem);
				may_poll = sluice_blk_poll(q);	/* idle window: the next pass asks for kicks */
				up_read(&q->disk->rings_sem);
				idle_poll = !may_poll;
				set_bit(0, &q->work);
				continue;
			}
			if (idle_poll) {
				/* The last window passed idle and nothing came since: time this sleep. */
				q->sleep_start = ktime_get_ns();
				idle_poll = false;
			}
			schedule();
			continue;
		}
		__set_current_state(TASK_RUNNING);
		if (q->sleep_start)
			sluice_blk_poll_adapt(q);
		/* SET_MEM_TABLE moves q->avail and q->used only between passes. */
		down_read(&q->disk->rings_sem);
		mutex_lock(&q->pass_lock);
		q->pass_owner = current;
		sluice_blk_map_rings_kernel(q);
		if (test_and_clear_bit(1, &q->work))
			sluice_blk_fwd_reap(q->disk);	/* userspace finished forwarded requests */
		sluice_blk_reap(q);
		if (test_and_clear_bit(0, &q->work) && !q->broken && !kthread_should_stop()) {
			sluice_blk_handle_kick(q, may_poll && READ_ONCE(poll_ns), weight ? weight : SLUICE_BLK_WEIGHT);
			may_poll = true;
		}
		sluice_blk_reap(q);
		q->pass_owner = NULL;
		mutex_unlock(&q->pass_lock);
		up_read(&q->disk->rings_sem);
		cond_resched();
	}
	set_active_memcg(old_memcg);
	mem_cgroup_put(memcg);
	kthread_unuse_mm(q->disk->mm);
	return 0;
}

/* Any context.  Give the ring to the worker: a pass is due. */
static void sluice_blk_wake_worker(struct sluice_blk_queue *q)
{
	struct task_struct *t;

	set_bit(0, &q->work);
	/* queue_stop clears q->worker, then synchronize_rcu() before it drops the task. */
	rcu_read_lock();
	t = READ_ONCE(q->worker);
	if (t)
		wake_up_process(t);
	rcu_read_unlock();
}

/*
 * Task work of the thread that kicked an idle queue (sluice_blk_kick_inline()):
 * process context, on that thread's way back to the guest (KVM runs task work
 * before it re-enters) or to userspace, so with the owner's mm.  One pass of
 * at most inline_kick pops, notifications back on at its end (not left off
 * for a polling worker: at depth 1 it would spin through every request's
 * disk time, see kmod.rst).
 * It reaps what completed inside it (a RAM disk's bios), later completions
 * answer directly or through the worker as any.  What this pass cannot do
 * (the worker is in a pass, SET_MEM_TABLE is running, the budget ran out,
 * the thread is exiting and has no mm) is handed to the worker.  Takes
 * q->pass_lock and disk->rings_sem, both by trylock: a vCPU never waits for
 * the worker.
 */
static void sluice_blk_inline_pass(struct callback_head *cb)
{
	struct sluice_blk_queue *q = container_of(cb, struct sluice_blk_queue, inline_tw);
	struct sluice_blk_disk *disk = q->disk;
	struct file *file = disk->file;
	bool handed = true;
	u16 last;

	/*
	 * From here a new kick may queue another pass.  The bit cleared before
	 * this pass reads avail->idx; pairs with the test_and_set_bit() in
	 * sluice_blk_kick_inline(): a kick that found the bit still set relies on
	 * us to see its entries.
	 */
	clear_bit(0, &q->inline_state);
	smp_mb__after_atomic();
	if (current->mm == disk->mm && mutex_trylock(&q->pass_lock)) {
		if (!q->inline_live) {
			handed = false;	/* stopped: the next start looks at the ring */
		} else if (down_read_trylock(&disk->rings_sem)) {
			last = q->last_avail;
			q->pass_owner = current;
			if (!q->broken)
				sluice_blk_handle_kick(q, false, READ_ONCE(inline_kick) ? : 1);
			sluice_blk_reap(q);	/* what completed inside the pass */
			q->pass_owner = NULL;
			up_read(&disk->rings_sem);
			if (q->last_avail != last)
				atomic64_inc(&q->inline_passes);
			handed = test_bit(0, &q->work);	/* the budget ran out: more for the worker */
		}
		mutex_unlock(&q->pass_lock);
	}
	if (handed)
		sluice_blk_wake_worker(q);
	fput(file);	/* the last one defers our release to this thread's next task work */
}

/*
 * The kick's context (atomic: the kick eventfd's wait-queue lock).  A kick on
 * an idle queue (nothing in flight, the worker asleep with nothing to do),
 * from a thread of the owner (a vCPU in KVM_RUN, or a write(2) of the
 * eventfd), is served by that thread itself on its way out of the kernel:
 * the request reaches the backend without a wake-up of the worker, which at
 * low queue depth is most of its way in.  Busy queues stay with the worker,
 * which batches and polls.  True when the pass is queued (or already was).
 */
static bool sluice_blk_kick_inline(struct sluice_blk_queue *q)
{
	struct file *file = q->disk->file;
	struct task_struct *t = current;

	if (!READ_ONCE(inline_kick) || !in_task() || (t->flags & (PF_KTHREAD | PF_EXITING)) ||
	    t->mm != q->disk->mm || atomic_read(&q->inflight) || READ_ONCE(q->polling) ||
	    test_bit(0, &q->work) || !llist_empty(&q->done))
		return false;
	/*
	 * A driver whose recent kicks showed a depth beyond 1 (guest threads that
	 * drain the queue now and then, see sluice_blk_kick_busy()): its
	 * submissions stay off the vCPU, which is then the bottleneck.  In the
	 * lab, inline passes at 4k QD32 cost a third of the IOPS on an image file.
	 */
	if (READ_ONCE(q->kick_busy) >= SLUICE_BLK_KICK_BUSY_MAX)
		return false;
	/* Queued and not yet started: it will read avail->idx after this kick's entries. */
	if (test_and_set_bit(0, &q->inline_state))
		return true;
	/*
	 * The pass keeps the disk, and with it this module, until it ran; not
	 * when the file is already on its way to release (f_count 0).
	 */
	if (!atomic_long_inc_not_zero(&file->f_count))
		goto out_clear;
	init_task_work(&q->inline_tw, sluice_blk_inline_pass);
	if (!task_work_add(t, &q->inline_tw, TWA_RESUME))
		return true;
	fput(file);
out_clear:
	clear_bit(0, &q->inline_state);
	return false;
}

/*
 * The kick's context (the kick eventfd's wait-queue lock, which serialises
 * kicks).  Does this kick show a driver at a queue depth beyond 1?  It does
 * when requests of this queue are still unanswered (popped, no used entry
 * published yet), or when more than one request was popped since the last
 * kick (the driver posted while notifications were off, or several per
 * kick).  A driver at depth 1 waits for each answer and kicks for each
 * request; guest threads at depth show one or the other even when their
 * vCPU, the bottleneck, keeps the ring nearly empty.  A moving average over
 * the last kicks (1/8 each, x256): the inline rule's evidence.  Racy reads
 * of last_avail and used_pub: a hint, never a correctness matter; used_pub
 * moves before the used index the driver reads (see its writers).
 */
static void sluice_blk_kick_busy(struct sluice_blk_queue *q)
{
	u16 popped = READ_ONCE(q->last_avail);
	int avg = READ_ONCE(q->kick_busy), sample;

	sample = popped != READ_ONCE(q->used_pub) || (u16)(popped - q->kick_avail) > 1 ? 256 : 0;
	q->kick_avail = popped;
	WRITE_ONCE(q->kick_busy, avg + (sample - avg) / 8);
}

/* Any context (eventfd_signal on the kick eventfd, e.g. KVM's ioeventfd): a pass is due. */
static int sluice_blk_kick_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct sluice_blk_queue *q = container_of(wait, struct sluice_blk_queue, kick_wait);
	__poll_t mask = key_to_poll(key);

	if (!(mask & EPOLLIN))
		return 0;
	atomic64_inc(&q->kicks);
	sluice_blk_kick_busy(q);
	if (!sluice_blk_kick_inline(q))
		sluice_blk_wake_worker(q);
	return 0;
}

/* Process context (vfs_poll from queue start): hook our wait entry on the kick eventfd. */
static void sluice_blk_kick_queue_proc(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct sluice_blk_queue *q = container_of(pt, struct sluice_blk_queue, kick_pt);

	q->kick_wqh = wqh;
	add_wait_queue(wqh, &q->kick_wait);
}

/* Process context (ioctl), disk->lock held.  Start the worker and listen to kicks. */
int sluice_blk_queue_start(struct sluice_blk_queue *q)
{
	struct sluice_blk_disk *disk = q->disk;
	struct task_struct *t;
	__poll_t mask;
	__le16 v;

	if (q->worker)
		return 0;
	if (!q->num || !q->kick_file || !disk->backend || !disk->mm)
		return -EINVAL;
	/*
	 * The table may have changed since SET_VRING_ADDR (or since the last
	 * stop): translate the rings through the one in force now.  No worker
	 * runs, so no rings_sem.
	 */
	if (sluice_blk_map_rings(q, rcu_dereference_protected(disk->mem, lockdep_is_held(&disk->lock)),
				 &q->avail, &q->used))
		return -EINVAL;
	/* Called by the owner (ioctl): its mm is current.  Resume where the used ring stands. */
	if (get_user(v, &((struct sluice_blk_used __user *)q->used)->idx))
		return -EFAULT;
	q->used_idx = le16_to_cpu(v);
	q->used_pub = q->used_idx;
	q->map_tried = false;
	q->kick_busy = 0;
	q->kick_avail = q->last_avail;
	q->broken = false;
	q->polling = false;
	mutex_lock(&disk->fwd_lock);
	q->fwd_closed = false;
	mutex_unlock(&disk->fwd_lock);
	t = kthread_create(sluice_blk_worker, q, "sluice-blk-%s/%u", disk->name, q->index);
	if (IS_ERR(t))
		return PTR_ERR(t);
	get_task_struct(t);	/* late wake-ups from completions stay safe after it exits */
	mutex_lock(&q->cpu_lock);
	set_cpus_allowed_ptr(t, q->cpus);
	q->worker = t;
	mutex_unlock(&q->cpu_lock);
	mutex_lock(&q->pass_lock);
	q->inline_live = true;
	mutex_unlock(&q->pass_lock);
	init_waitqueue_func_entry(&q->kick_wait, sluice_blk_kick_wakeup);
	init_poll_funcptr(&q->kick_pt, sluice_blk_kick_queue_proc);
	q->kick_wqh = NULL;
	set_bit(0, &q->work);	/* look at the ring once: kicks may predate us */
	wake_up_process(t);
	mask = vfs_poll(q->kick_file, &q->kick_pt);
	if (mask & EPOLLIN)
		sluice_blk_kick_wakeup(&q->kick_wait, 0, 0, poll_to_key(EPOLLIN));
	q->enabled = true;
	return 0;
}

/* Process context (ioctl, release), disk->lock held.  Stop listening, let in-flight requests finish, stop the worker. */
void sluice_blk_queue_stop(struct sluice_blk_queue *q)
{
	struct task_struct *t;

	if (!q->worker)
		return;
	if (q->kick_wqh)
		remove_wait_queue(q->kick_wqh, &q->kick_wait);
	q->kick_wqh = NULL;
	q->enabled = false;
	/*
	 * No kick callback runs any more; an inline pass still queued on some
	 * thread finds inline_live false and does nothing (it holds the file,
	 * so not even a release waits for it).  One running now ends first.
	 */
	mutex_lock(&q->pass_lock);
	q->inline_live = false;
	mutex_unlock(&q->pass_lock);
	sluice_blk_fwd_cancel(q->disk, q);	/* never wait for a userspace that may be gone */
	mutex_lock(&q->cpu_lock);
	kthread_stop(q->worker);	/* returns once inflight reached 0 and all were reaped */
	while (atomic_read(&q->completing))
		cpu_relax();
	sluice_blk_queue_unmap_rings(q);	/* no pass and no completion is left */
	t = q->worker;
	WRITE_ONCE(q->worker, NULL);
	/* The upcall done wake-up reads q->worker under a spinlock: let it finish with @t. */
	synchronize_rcu();
	put_task_struct(t);
	mutex_unlock(&q->cpu_lock);
}

/* Process context (sysfs store), takes q->cpu_lock.  Move the worker at once; remembered for later starts. */
int sluice_blk_queue_set_cpus(struct sluice_blk_queue *q, const struct cpumask *mask)
{
	int ret = 0;

	mutex_lock(&q->cpu_lock);
	if (q->worker)
		ret = set_cpus_allowed_ptr(q->worker, mask);
	if (!ret)
		cpumask_copy(q->cpus, mask);	/* reads show only a mask that is in effect */
	mutex_unlock(&q->cpu_lock);
	return ret;
}
