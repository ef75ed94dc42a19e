// SPDX-License-Identifier: GPL-2.0
/* sluice_blk_mem.c - the guest memory table: guest physical ranges to the owner's user addresses, bounds-checked. */
#include <linux/overflow.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "sluice_blk.h"

/* Any context, @mt stable.  The user address of [@gpa, @gpa + @len) in one region of @mt, else NULL. */
static void __user *sluice_blk_mt_lookup(const struct sluice_blk_memtable *mt, u64 gpa, u64 len)
{
	u32 i;

	for (i = 0; mt && i < mt->nregions; i++) {
		const struct sluice_blk_mem_region *r = &mt->regions[i];

		if (gpa >= r->guest_phys_addr && len <= r->memory_size &&
		    gpa - r->guest_phys_addr <= r->memory_size - len)
			return u64_to_user_ptr(r->userspace_addr + (gpa - r->guest_phys_addr));
	}
	return NULL;
}

/*
 * Any context.  The user address of [@gpa, @gpa + @len) if it lies inside one
 * region of the table, else NULL.  The result is only meaningful to a thread
 * using the owner's mm (the queue workers).
 */
void __user *sluice_blk_gpa_to_user(struct sluice_blk_disk *disk, u64 gpa, u64 len)
{
	void __user *uaddr;

	rcu_read_lock();
	uaddr = sluice_blk_mt_lookup(rcu_dereference(disk->mem), gpa, len);
	rcu_read_unlock();
	return uaddr;
}

/*
 * Process context, disk->lock held, @mt stable.  The user addresses of @q's
 * avail and used rings through @mt (their event words included); -EINVAL,
 * and nothing stored, if any of its three rings is not inside guest RAM.
 * The descriptor table is only checked: the walker translates it per read.
 */
int sluice_blk_map_rings(const struct sluice_blk_queue *q, const struct sluice_blk_memtable *mt,
			 void __user **avail, void __user **used)
{
	void __user *a = sluice_blk_mt_lookup(mt, q->avail_gpa, 6 + 2ULL * q->num);
	void __user *u = sluice_blk_mt_lookup(mt, q->used_gpa, 6 + 8ULL * q->num);

	if (!q->rings_set || !sluice_blk_mt_lookup(mt, q->desc_gpa, 16ULL * q->num) || !a || !u)
		return -EINVAL;
	*avail = a;
	*used = u;
	return 0;
}

/* Walker callbacks (worker thread, owner's mm in use). */
static bool sluice_blk_mem_valid(void *opaque, __u64 gpa, __u64 len)
{
	return sluice_blk_gpa_to_user(opaque, gpa, len) != NULL;
}

static int sluice_blk_mem_read(void *opaque, __u64 gpa, void *dst, __u32 len)
{
	void __user *src = sluice_blk_gpa_to_user(opaque, gpa, len);

	if (!src || copy_from_user(dst, src, len))
		return -EFAULT;
	return 0;
}

const struct sluice_vq_mem_ops sluice_blk_vq_mem_ops = {
	.read	= sluice_blk_mem_read,
	.valid	= sluice_blk_mem_valid,
};

/*
 * Process context (SET_MEM_TABLE ioctl), disk->lock held.  Validates, then
 * replaces the table under RCU.  The ring addresses of running queues move
 * with it, in the same write section of rings_sem, so a worker's next pass
 * uses the new table for its rings as for its buffers; a table without a
 * running queue's rings is refused (-EBUSY: stop the queue first).  Stopped
 * queues translate their rings when they start.
 */
int sluice_blk_set_mem_table(struct sluice_blk_disk *disk, void __user *arg)
{
	struct sluice_blk_mem_table hdr;
	struct sluice_blk_memtable *mt, *old;
	void __user *avail, *used;
	u32 i, j;

	if (copy_from_user(&hdr, arg, sizeof(hdr)))
		return -EFAULT;
	if (!hdr.nregions || hdr.nregions > SLUICE_BLK_MAX_REGIONS || hdr.reserved)
		return -EINVAL;
	/* Its size is the VMM's choice: charged to the VMM. */
	mt = kzalloc(struct_size(mt, regions, hdr.nregions), GFP_KERNEL_ACCOUNT);
	if (!mt)
		return -ENOMEM;
	mt->nregions = hdr.nregions;
	if (copy_from_user(mt->regions, (u8 __user *)arg + sizeof(hdr),
			   hdr.nregions * sizeof(mt->regions[0]))) {
		kfree(mt);
		return -EFAULT;
	}
	for (i = 0; i < mt->nregions; i++) {
		const struct sluice_blk_mem_region *r = &mt->regions[i];
		u64 end;

		if (!r->memory_size || r->reserved ||
		    check_add_overflow(r->guest_phys_addr, r->memory_size - 1, &end) ||
		    check_add_overflow(r->userspace_addr, r->memory_size - 1, &end) ||
		    !access_ok(u64_to_user_ptr(r->userspace_addr), r->memory_size))
			goto out_invalid;
		for (j = 0; j < i; j++) {
			const struct sluice_blk_mem_region *o = &mt->regions[j];

			if (r->guest_phys_addr <= o->guest_phys_addr + o->memory_size - 1 &&
			    o->guest_phys_addr <= r->guest_phys_addr + r->memory_size - 1)
				goto out_invalid;	/* overlapping guest ranges */
		}
	}
	/* q->worker only changes under disk->lock: the set of running queues is stable. */
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		const struct sluice_blk_queue *q = &disk->queues[i];

		if (q->worker && sluice_blk_map_rings(q, mt, &avail, &used))
			goto out_busy;
	}
	down_write(&disk->rings_sem);
	old = rcu_replace_pointer(disk->mem, mt, lockdep_is_held(&disk->lock));
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		struct sluice_blk_queue *q = &disk->queues[i];

		if (!q->worker)
			continue;
		/* The pinned rings go with the old table: the worker's next pass maps the new ones. */
		sluice_blk_queue_unmap_rings(q);
		WARN_ON(sluice_blk_map_rings(q, mt, &q->avail, &q->used));	/* checked above */
	}
	up_write(&disk->rings_sem);
	if (old)
		kfree_rcu(old, rcu);
	return 0;

out_busy:
	kfree(mt);
	return -EBUSY;
out_invalid:
	kfree(mt);
	return -EINVAL;
}

/* Process context (release / reset), no queue running. */
void sluice_blk_free_mem_table(struct sluice_blk_disk *disk)
{
	struct sluice_blk_memtable *old = rcu_replace_pointer(disk->mem, NULL, true);

	if (old)
		kfree_rcu(old, rcu);
}
