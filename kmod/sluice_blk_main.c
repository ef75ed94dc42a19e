// SPDX-License-Identifier: GPL-2.0
/* sluice_blk_main.c - module entry, /dev/sluice-blk, and the ioctls that set up one disk per open file. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ctype.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio_config.h>

#include "sluice_blk.h"

/* Process context (open(2)); no locks held.  A fresh disk with idle queues. */
static int sluice_blk_open(struct inode *inode, struct file *file)
{
	struct sluice_blk_disk *disk;
	int i;

	/*
	 * About 107 KB (the queues' scratch arrays): kvzalloc, not an order-5
	 * kzalloc.  Charged to the opener, who decides how many disks exist.
	 */
	disk = kvzalloc(sizeof(*disk), GFP_KERNEL_ACCOUNT);
	if (!disk)
		return -ENOMEM;
	mutex_init(&disk->lock);
	init_rwsem(&disk->rings_sem);
	sluice_blk_extent_init(disk);
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		struct sluice_blk_queue *q = &disk->queues[i];

		q->disk = disk;
		q->index = i;
		init_llist_head(&q->done);
		init_waitqueue_head(&q->idle_wq);
		mutex_init(&q->cpu_lock);
		mutex_init(&q->pass_lock);
		spin_lock_init(&q->used_lock);
		if (!zalloc_cpumask_var(&q->cpus, GFP_KERNEL_ACCOUNT))
			goto out_free_cpumasks;
		cpumask_copy(q->cpus, cpu_possible_mask);
	}
	file->private_data = disk;
	disk->file = file;
	return nonseekable_open(inode, file);

out_free_cpumasks:
	while (i-- > 0)
		free_cpumask_var(disk->queues[i].cpus);
	kvfree(disk);
	return -ENOMEM;
}

/* Process context, disk->lock held.  Drop a queue's eventfds (the queue is stopped). */
static void sluice_blk_queue_put_files(struct sluice_blk_queue *q)
{
	if (q->kick_file)
		fput(q->kick_file);
	if (q->call)
		eventfd_ctx_put(q->call);
	if (q->err)
		eventfd_ctx_put(q->err);
	q->kick_file = NULL;
	q->call = NULL;
	q->err = NULL;
}

/* Process context, disk->lock held.  Back to the state after SET_OWNER. */
static void sluice_blk_reset(struct sluice_blk_disk *disk)
{
	int i;

	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		struct sluice_blk_queue *q = &disk->queues[i];

		sluice_blk_queue_stop(q);	/* cancels its forwarded requests first */
		sluice_blk_queue_put_files(q);
		q->num = 0;
		q->rings_set = false;
		q->avail = q->used = NULL;
		q->last_avail = 0;
		q->broken = false;
		/* A reset disk starts counting afresh, as a new one would. */
		atomic64_set(&q->completed, 0);
		atomic64_set(&q->errors, 0);
		atomic64_set(&q->unsupported, 0);
		atomic64_set(&q->kicks, 0);
		atomic64_set(&q->signals, 0);
		atomic64_set(&q->bytes_read, 0);
		atomic64_set(&q->bytes_written, 0);
		atomic64_set(&q->buffered, 0);
		atomic64_set(&q->fallback, 0);
		atomic64_set(&q->inline_passes, 0);
		atomic64_set(&q->direct, 0);
	}
	sluice_blk_sysfs_del_disk(disk);
	if (disk->backend)
		fput(disk->backend);
	disk->backend = NULL;
	sluice_blk_free_mem_table(disk);
	sluice_blk_extent_free(disk);
	disk->features = 0;
}

/* Process context (last fput: close or the owner's death); no locks held. */
static int sluice_blk_release(struct inode *inode, struct file *file)
{
	struct sluice_blk_disk *disk = file->private_data;
	int i;

	mutex_lock(&disk->lock);
	sluice_blk_reset(disk);
	mutex_unlock(&disk->lock);
	if (disk->mm)
		mmput(disk->mm);	/* after the workers stopped: the last user may tear it down */
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++)
		free_cpumask_var(disk->queues[i].cpus);
	synchronize_rcu();	/* no one translates through the freed table any more */
	kvfree(disk);
	return 0;
}

/* A queue whose state the caller may change: exists and is stopped. */
static struct sluice_blk_queue *sluice_blk_stopped_queue(struct sluice_blk_disk *disk, u32 index,
							 int *err)
{
	if (index >= SLUICE_BLK_MAX_QUEUES) {
		*err = -EINVAL;
		return NULL;
	}
	if (disk->queues[index].worker) {
		*err = -EBUSY;
		return NULL;
	}
	return &disk->queues[index];
}

/* Process context, disk->lock held. */
static int sluice_blk_set_backend(struct sluice_blk_disk *disk, void __user *argp)
{
	struct sluice_blk_backend b;
	struct file *file;
	umode_t mode;
	u64 size;
	int i, ret;

	if (copy_from_user(&b, argp, sizeof(b)))
		return -EFAULT;
	if (b.flags & ~(SLUICE_BLK_BACKEND_F_READONLY | SLUICE_BLK_BACKEND_F_EXTENTS) ||
	    b.reserved[0] || b.reserved[1] ||
	    b.reserved[2] || b.capacity % 512)
		return -EINVAL;
	if (disk->backend)
		return -EBUSY;
	if (!b.name[0] || strnlen(b.name, sizeof(b.name)) == sizeof(b.name))
		return -EINVAL;
	for (i = 0; b.name[i]; i++)
		if (!isalnum(b.name[i]) && !strchr("-_.", b.name[i]))
			return -EINVAL;
	file = fget(b.fd);
	if (!file)
		return -EBADF;
	mode = file_inode(file)->i_mode;
	ret = -EINVAL;
	if ((!S_ISREG(mode) && !S_ISBLK(mode)) || !file->f_op->read_iter ||
	    !file->f_op->write_iter || !(file->f_mode & FMODE_READ))
		goto out_put;
	/* Guest writes go to the sector they name, never to EOF. */
	if (file->f_flags & O_APPEND)
		goto out_put;
	ret = -EBADF;
	if (!(b.flags & SLUICE_BLK_BACKEND_F_READONLY) && !(file->f_mode & FMODE_WRITE))
		goto out_put;
	size = i_size_read(file->f_mapping->host) & ~511ULL;
	ret = -EINVAL;
	if (b.flags & SLUICE_BLK_BACKEND_F_EXTENTS) {
		if (!b.capacity)	/* the virtual size: the file holds metadata too */
			goto out_put;
	} else if (b.capacity > size || (!b.capacity && !size)) {
		goto out_put;
	}
	disk->extents = b.flags & SLUICE_BLK_BACKEND_F_EXTENTS;
	disk->backend = file;
	disk->capacity = b.capacity ? b.capacity : size;
	disk->readonly = b.flags & SLUICE_BLK_BACKEND_F_READONLY;
	memcpy(disk->name, b.name, sizeof(disk->name));
	memcpy(disk->serial, b.serial, sizeof(disk->serial));
	ret = sluice_blk_sysfs_add_disk(disk);
	if (ret) {
		disk->backend = NULL;
		goto out_put;
	}
	return 0;

out_put:
	fput(file);
	return ret;
}

/* Process context, disk->lock held. */
static int sluice_blk_set_vring_addr(struct sluice_blk_disk *disk, void __user *argp)
{
	struct sluice_blk_vring_addr a;
	struct sluice_blk_queue *q;
	u64 old_desc, old_avail, old_used;
	void __user *avail, *used;
	bool old_set;
	int err = 0;

	if (copy_from_user(&a, argp, sizeof(a)))
		return -EFAULT;
	q = sluice_blk_stopped_queue(disk, a.index, &err);
	if (!q)
		return err;
	if (a.flags || !q->num || a.desc_gpa % 16 || a.avail_gpa % 2 || a.used_gpa % 4)
		return -EINVAL;
	old_desc = q->desc_gpa;
	old_avail = q->avail_gpa;
	old_used = q->used_gpa;
	old_set = q->rings_set;
	q->desc_gpa = a.desc_gpa;
	q->avail_gpa = a.avail_gpa;
	q->used_gpa = a.used_gpa;
	q->rings_set = true;
	/*
	 * Checked against today's table so a bad address fails here, but only
	 * the GPAs are kept: queue start translates them through the table of
	 * that moment.  A refused address leaves the previous ones in place.
	 */
	if (sluice_blk_map_rings(q, rcu_dereference_protected(disk->mem, lockdep_is_held(&disk->lock)),
				 &avail, &used)) {
		q->desc_gpa = old_desc;
		q->avail_gpa = old_avail;
		q->used_gpa = old_used;
		q->rings_set = old_set;
		return -EINVAL;
	}
	return 0;
}

/* Process context, disk->lock held.  KICK keeps the file (for polling), CALL/ERR the eventfd context. */
static int sluice_blk_set_vring_file(struct sluice_blk_disk *disk, unsigned int cmd,
				     void __user *argp)
{
	struct sluice_blk_vring_file f;
	struct sluice_blk_queue *q;
	struct eventfd_ctx *ctx = NULL;
	struct file *file = NULL;
	int err = 0;

	if (copy_from_user(&f, argp, sizeof(f)))
		return -EFAULT;
	q = sluice_blk_stopped_queue(disk, f.index, &err);
	if (!q)
		return err;
	if (f.fd >= 0) {
		file = fget(f.fd);
		if (!file)
			return -EBADF;
		ctx = eventfd_ctx_fileget(file);
		if (IS_ERR(ctx)) {
			fput(file);
			return -EINVAL;	/* not an eventfd */
		}
	} else if (f.fd != -1) {
		return -EBADF;
	}
	switch (cmd) {
	case SLUICE_BLK_SET_VRING_KICK:
		if (ctx)
			eventfd_ctx_put(ctx);
		if (q->kick_file)
			fput(q->kick_file);
		q->kick_file = file;
		return 0;
	case SLUICE_BLK_SET_VRING_CALL:
		if (q->call)
			eventfd_ctx_put(q->call);
		q->call = ctx;
		break;
	default:
		if (q->err)
			eventfd_ctx_put(q->err);
		q->err = ctx;
		break;
	}
	if (file)
		fput(file);
	return 0;
}

/* Process context, disk->lock held. */
static int sluice_blk_get_stats(struct sluice_blk_disk *disk, void __user *argp)
{
	struct sluice_blk_queue_stats st;
	struct sluice_blk_queue *q;

	if (copy_from_user(&st, argp, sizeof(st)))
		return -EFAULT;
	if (st.index >= SLUICE_BLK_MAX_QUEUES)
		return -EINVAL;
	q = &disk->queues[st.index];
	st = (struct sluice_blk_queue_stats){ .index = st.index };
	st.completed = atomic64_read(&q->completed);
	st.inflight = atomic_read(&q->inflight);
	st.errors = atomic64_read(&q->errors);
	st.unsupported = atomic64_read(&q->unsupported);
	st.kicks = atomic64_read(&q->kicks);
	st.signals = atomic64_read(&q->signals);
	st.bytes_read = atomic64_read(&q->bytes_read);
	st.bytes_written = atomic64_read(&q->bytes_written);
	st.broken = q->broken;
	return copy_to_user(argp, &st, sizeof(st)) ? -EFAULT : 0;
}

/* Process context (ioctl(2)), takes disk->lock. */
static long sluice_blk_ioctl_locked(struct sluice_blk_disk *disk, unsigned int cmd,
				    void __user *argp)
{
	struct sluice_blk_vring_state s;
	struct sluice_blk_queue *q;
	u64 features;
	int i, err = 0;

	switch (cmd) {
	case SLUICE_BLK_SET_OWNER:
		if (disk->mm)
			return -EBUSY;
		if (!current->mm)
			return -EINVAL;
		/*
		 * A user reference, as vhost takes: the workers fault pages in
		 * through this mm, so its address space must outlive them even
		 * when the owner dies first (exit_mm runs before exit_files
		 * closes this fd).  Dropped at release.
		 */
		mmget(current->mm);
		disk->mm = current->mm;
		return 0;
	case SLUICE_BLK_GET_FEATURES:
		return put_user(sluice_blk_features(), (u64 __user *)argp);
	case SLUICE_BLK_GET_STATS:
		return sluice_blk_get_stats(disk, argp);
	}

	/*
	 * Exact commands, not _IOC_NR ranges, and before the owner check: a
	 * known number with the wrong size or direction is an unknown ioctl,
	 * -ENOTTY for everyone, not -EINVAL/-EPERM for whoever is not the owner.
	 */
	switch (cmd) {
	case SLUICE_BLK_RESET:
	case SLUICE_BLK_SET_MEM_TABLE:
	case SLUICE_BLK_SET_FEATURES:
	case SLUICE_BLK_SET_BACKEND:
	case SLUICE_BLK_SET_VRING_NUM:
	case SLUICE_BLK_SET_VRING_ADDR:
	case SLUICE_BLK_SET_VRING_BASE:
	case SLUICE_BLK_GET_VRING_BASE:
	case SLUICE_BLK_SET_VRING_KICK:
	case SLUICE_BLK_SET_VRING_CALL:
	case SLUICE_BLK_SET_VRING_ERR:
	case SLUICE_BLK_SET_VRING_ENABLE:
	case SLUICE_BLK_SET_EXTENT_CONFIG:
	case SLUICE_BLK_SET_UPCALL:
	case SLUICE_BLK_MAP_EXTENTS:
	case SLUICE_BLK_UNMAP_EXTENTS:
		break;
	default:
		return -ENOTTY;
	}

	/* Everything else changes the disk: only its owner may. */
	if (!disk->mm)
		return -EINVAL;
	if (disk->mm != current->mm)
		return -EPERM;

	switch (cmd) {
	case SLUICE_BLK_RESET:
		sluice_blk_reset(disk);
		return 0;
	case SLUICE_BLK_SET_MEM_TABLE:
		return sluice_blk_set_mem_table(disk, argp);
	case SLUICE_BLK_SET_FEATURES:
		if (get_user(features, (u64 __user *)argp))
			return -EFAULT;
		if ((features & ~sluice_blk_features()) || !(features & (1ULL << VIRTIO_F_VERSION_1)))
			return -EINVAL;
		for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++)
			if (disk->queues[i].worker)
				return -EBUSY;
		disk->features = features;
		return 0;
	case SLUICE_BLK_SET_BACKEND:
		return sluice_blk_set_backend(disk, argp);
	case SLUICE_BLK_SET_VRING_NUM:
		if (copy_from_user(&s, argp, sizeof(s)))
			return -EFAULT;
		q = sluice_blk_stopped_queue(disk, s.index, &err);
		if (!q)
			return err;
		if (!s.num || s.num > SLUICE_BLK_MAX_QUEUE_SIZE || (s.num & (s.num - 1)))
			return -EINVAL;
		q->num = s.num;
		q->rings_set = false;	/* addresses were checked against the old size */
		return sluice_blk_sysfs_add_queue(q);
	case SLUICE_BLK_SET_VRING_ADDR:
		return sluice_blk_set_vring_addr(disk, argp);
	case SLUICE_BLK_SET_VRING_BASE:
		if (copy_from_user(&s, argp, sizeof(s)))
			return -EFAULT;
		q = sluice_blk_stopped_queue(disk, s.index, &err);
		if (!q)
			return err;
		if (s.num > 0xffff)
			return -EINVAL;
		q->last_avail = s.num;
		return 0;
	case SLUICE_BLK_GET_VRING_BASE:
		if (copy_from_user(&s, argp, sizeof(s)))
			return -EFAULT;
		if (s.index >= SLUICE_BLK_MAX_QUEUES)
			return -EINVAL;
		q = &disk->queues[s.index];
		sluice_blk_queue_stop(q);
		s.num = q->last_avail;
		return copy_to_user(argp, &s, sizeof(s)) ? -EFAULT : 0;
	case SLUICE_BLK_SET_VRING_KICK:
	case SLUICE_BLK_SET_VRING_CALL:
	case SLUICE_BLK_SET_VRING_ERR:
		return sluice_blk_set_vring_file(disk, cmd, argp);
	case SLUICE_BLK_SET_EXTENT_CONFIG:
		return sluice_blk_set_extent_config(disk, argp);
	case SLUICE_BLK_SET_UPCALL:
		return sluice_blk_set_upcall(disk, argp);
	case SLUICE_BLK_MAP_EXTENTS:
		return sluice_blk_map_extents(disk, argp);
	case SLUICE_BLK_UNMAP_EXTENTS:
		return sluice_blk_unmap_extents(disk, argp);
	case SLUICE_BLK_SET_VRING_ENABLE:
		if (copy_from_user(&s, argp, sizeof(s)))
			return -EFAULT;
		if (s.index >= SLUICE_BLK_MAX_QUEUES || s.num > 1)
			return -EINVAL;
		q = &disk->queues[s.index];
		if (!s.num) {
			sluice_blk_queue_stop(q);
			return 0;
		}
		return sluice_blk_queue_start(q);
	default:
		return -ENOTTY;
	}
}

/* Process context (ioctl(2)); no locks held. */
/*
 * Process context (ioctl), disk->lock NOT held: wait until no queue has a
 * request in flight.  Waiting without the lock keeps GET_STATS (query-block)
 * and the other ioctls of the disk usable meanwhile; the queues live as long
 * as the disk and inflight is atomic, so a concurrent reconfiguration only
 * changes what is waited for.
 */
static long sluice_blk_drain(struct sluice_blk_disk *disk)
{
	int i;

	mutex_lock(&disk->lock);
	i = !disk->mm ? -EINVAL : disk->mm != current->mm ? -EPERM : 0;
	mutex_unlock(&disk->lock);
	if (i)
		return i;
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		struct sluice_blk_queue *q = &disk->queues[i];

		if (wait_event_interruptible(q->idle_wq, !atomic_read(&q->inflight)))
			return -EINTR;
	}
	return 0;
}

static long sluice_blk_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct sluice_blk_disk *disk = file->private_data;
	long ret;

	if (cmd == SLUICE_BLK_GET_API_VERSION)
		return SLUICE_BLK_API_VERSION;
	if (_IOC_TYPE(cmd) != SLUICE_BLK_IOC_MAGIC)
		return -ENOTTY;
	if (cmd == SLUICE_BLK_DRAIN)
		return sluice_blk_drain(disk);
	mutex_lock(&disk->lock);
	ret = sluice_blk_ioctl_locked(disk, cmd, (void __user *)arg);
	mutex_unlock(&disk->lock);
	return ret;
}

static const struct file_operations sluice_blk_fops = {
	.owner		= THIS_MODULE,
	.open		= sluice_blk_open,
	.release	= sluice_blk_release,
	.unlocked_ioctl	= sluice_blk_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

static struct miscdevice sluice_blk_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= SLUICE_BLK_DEVICE_NAME,
	.fops	= &sluice_blk_fops,
	.mode	= 0600,
};

struct workqueue_struct *sluice_blk_wq;

static int __init sluice_blk_init(void)
{
	int ret;

	/* Flushes run here, off the queue workers (an fsync must not stall a queue's other requests). */
	sluice_blk_wq = alloc_workqueue("sluice_blk", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!sluice_blk_wq)
		return -ENOMEM;
	ret = sluice_blk_sysfs_init();
	if (ret) {
		pr_err("cannot register class sluice_blk: %d\n", ret);
		goto out_destroy_wq;
	}
	ret = misc_register(&sluice_blk_misc);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", SLUICE_BLK_DEVICE_NAME, ret);
		goto out_sysfs_exit;
	}
	pr_info("ABI v%d ready on /dev/%s\n", SLUICE_BLK_API_VERSION, SLUICE_BLK_DEVICE_NAME);
	return 0;

out_sysfs_exit:
	sluice_blk_sysfs_exit();
out_destroy_wq:
	destroy_workqueue(sluice_blk_wq);
	return ret;
}

static void __exit sluice_blk_exit(void)
{
	misc_deregister(&sluice_blk_misc);
	sluice_blk_sysfs_exit();
	destroy_workqueue(sluice_blk_wq);	/* waits for a flush work still returning */
}

module_init(sluice_blk_init);
module_exit(sluice_blk_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("sluice in-kernel virtio-blk dataplane");
MODULE_AUTHOR("The sluice developers");
