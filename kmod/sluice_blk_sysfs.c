// SPDX-License-Identifier: GPL-2.0
/* sluice_blk_sysfs.c - /sys/class/sluice_blk/<disk>/ and its queues/<N>/ knobs (cpu) and counters. */
#include <linux/cpumask.h>
#include <linux/device.h>
#include <linux/kobject.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/version.h>

#include "sluice_blk.h"

static struct class sluice_blk_class = {
	.name	= "sluice_blk",
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 4, 0)
	.owner	= THIS_MODULE,
#endif
};

/* Disk attributes (process context, sysfs read). */
static ssize_t capacity_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sluice_blk_disk *disk = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%llu\n", disk->capacity);
}
static DEVICE_ATTR_RO(capacity);

static ssize_t readonly_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sluice_blk_disk *disk = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%d\n", disk->readonly);
}
static DEVICE_ATTR_RO(readonly);

static ssize_t features_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sluice_blk_disk *disk = dev_get_drvdata(dev);

	return sysfs_emit(buf, "0x%llx\n", disk->features);
}
static DEVICE_ATTR_RO(features);

/* Extent mode: mapped clusters, and requests the map served / did not serve. */
static ssize_t extents_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sluice_blk_disk *disk = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%d\n", atomic_read(&disk->ext_clusters));
}
static DEVICE_ATTR_RO(extents);

static ssize_t extent_hits_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sluice_blk_disk *disk = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(&disk->ext_hits));
}
static DEVICE_ATTR_RO(extent_hits);

static ssize_t extent_misses_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sluice_blk_disk *disk = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(&disk->ext_misses));
}
static DEVICE_ATTR_RO(extent_misses);

static struct attribute *sluice_blk_disk_attrs[] = {
	&dev_attr_extents.attr,
	&dev_attr_extent_hits.attr,
	&dev_attr_extent_misses.attr,
	&dev_attr_capacity.attr,
	&dev_attr_readonly.attr,
	&dev_attr_features.attr,
	NULL,
};
ATTRIBUTE_GROUPS(sluice_blk_disk);

/*
 * /sys/class/sluice_blk/<disk>/queues/<index>: a kobject of its own, made by
 * kobject_create_and_add(), not one embedded in the queue.  A kobject lives
 * until its last reference is dropped (with CONFIG_DEBUG_KOBJECT_RELEASE
 * seconds after the last kobject_put) and must never be reused; and this
 * one's release is the kernel's own kfree, so nothing of the module runs
 * when it goes, even after rmmod.  Its attributes reach the queue through
 * the disk's device (the grandparent, whose drvdata is the disk) and the
 * kobject's name, only while it is in sysfs: kobject_del waits for the
 * readers, before the disk may go.
 */
static struct sluice_blk_queue *to_queue(struct kobject *kobj)
{
	struct sluice_blk_disk *disk = dev_get_drvdata(kobj_to_dev(kobj->parent->parent));
	unsigned int i;

	/* The name is ours ("%u", a valid index): this cannot fail. */
	if (WARN_ON_ONCE(kstrtouint(kobject_name(kobj), 10, &i) || i >= SLUICE_BLK_MAX_QUEUES))
		i = 0;
	return &disk->queues[i];
}

/* Queue attributes (process context, sysfs). */
static ssize_t cpu_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct sluice_blk_queue *q = to_queue(kobj);
	ssize_t ret;

	mutex_lock(&q->cpu_lock);
	ret = sysfs_emit(buf, "%*pbl\n", cpumask_pr_args(q->cpus));
	mutex_unlock(&q->cpu_lock);
	return ret;
}

/* Accepts a CPU list ("0", "0-1", "0,2"); the worker moves at once. */
static ssize_t cpu_store(struct kobject *kobj, struct kobj_attribute *attr, const char *buf,
			 size_t count)
{
	cpumask_var_t mask;
	int ret;

	if (!alloc_cpumask_var(&mask, GFP_KERNEL))
		return -ENOMEM;
	ret = cpulist_parse(buf, mask);
	if (!ret && !cpumask_intersects(mask, cpu_online_mask))
		ret = -EINVAL;
	if (!ret)
		ret = sluice_blk_queue_set_cpus(to_queue(kobj), mask);
	free_cpumask_var(mask);
	return ret ? ret : count;
}
static struct kobj_attribute sluice_blk_attr_cpu = __ATTR(cpu, 0644, cpu_show, cpu_store);

#define SLUICE_BLK_COUNTER(field)							\
static ssize_t field##_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)	\
{											\
	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(&to_queue(kobj)->field));	\
}											\
static struct kobj_attribute sluice_blk_attr_##field = __ATTR_RO(field)

SLUICE_BLK_COUNTER(completed);
SLUICE_BLK_COUNTER(errors);
SLUICE_BLK_COUNTER(unsupported);
SLUICE_BLK_COUNTER(kicks);
SLUICE_BLK_COUNTER(signals);
SLUICE_BLK_COUNTER(bytes_read);
SLUICE_BLK_COUNTER(bytes_written);
SLUICE_BLK_COUNTER(buffered);
SLUICE_BLK_COUNTER(fallback);
SLUICE_BLK_COUNTER(inline_passes);
SLUICE_BLK_COUNTER(direct);

static ssize_t inflight_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&to_queue(kobj)->inflight));
}
static struct kobj_attribute sluice_blk_attr_inflight = __ATTR_RO(inflight);

static ssize_t broken_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", READ_ONCE(to_queue(kobj)->broken));
}
static struct kobj_attribute sluice_blk_attr_broken = __ATTR_RO(broken);

/* The worker's pid (0 when stopped), to find it in /proc. */
static ssize_t worker_pid_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct sluice_blk_queue *q = to_queue(kobj);
	pid_t pid = 0;

	mutex_lock(&q->cpu_lock);
	if (q->worker)
		pid = task_pid_nr(q->worker);
	mutex_unlock(&q->cpu_lock);
	return sysfs_emit(buf, "%d\n", pid);
}
static struct kobj_attribute sluice_blk_attr_worker_pid = __ATTR_RO(worker_pid);

static struct attribute *sluice_blk_queue_attrs[] = {
	&sluice_blk_attr_cpu.attr,
	&sluice_blk_attr_completed.attr,
	&sluice_blk_attr_inflight.attr,
	&sluice_blk_attr_errors.attr,
	&sluice_blk_attr_unsupported.attr,
	&sluice_blk_attr_kicks.attr,
	&sluice_blk_attr_signals.attr,
	&sluice_blk_attr_bytes_read.attr,
	&sluice_blk_attr_bytes_written.attr,
	&sluice_blk_attr_buffered.attr,
	&sluice_blk_attr_fallback.attr,
	&sluice_blk_attr_inline_passes.attr,
	&sluice_blk_attr_direct.attr,
	&sluice_blk_attr_broken.attr,
	&sluice_blk_attr_worker_pid.attr,
	NULL,
};
ATTRIBUTE_GROUPS(sluice_blk_queue);

/* Process context, disk->lock held.  Show queue @q under the disk (once it has a size). */
int sluice_blk_sysfs_add_queue(struct sluice_blk_queue *q)
{
	struct kobject *kobj;
	char name[12];
	int ret;

	if (q->kobj || !q->disk->queues_kobj)
		return 0;
	/* A fresh one each time: the one shown before a RESET may still be on its way out. */
	snprintf(name, sizeof(name), "%u", q->index);
	kobj = kobject_create_and_add(name, q->disk->queues_kobj);
	if (!kobj)
		return -ENOMEM;
	ret = sysfs_create_groups(kobj, sluice_blk_queue_groups);
	if (ret) {
		kobject_del(kobj);
		kobject_put(kobj);
		return ret;
	}
	q->kobj = kobj;
	return 0;
}

/* Process context, disk->lock held (SET_BACKEND).  /sys/class/sluice_blk/<name>/ and its queues. */
int sluice_blk_sysfs_add_disk(struct sluice_blk_disk *disk)
{
	struct device *dev;
	int i, ret;

	dev = device_create_with_groups(&sluice_blk_class, NULL, MKDEV(0, 0), disk,
					sluice_blk_disk_groups, "%s", disk->name);
	if (IS_ERR(dev))
		return PTR_ERR(dev);
	disk->dev = dev;
	disk->queues_kobj = kobject_create_and_add("queues", &dev->kobj);
	if (!disk->queues_kobj) {
		ret = -ENOMEM;
		goto out_destroy_device;
	}
	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		if (!disk->queues[i].num)
			continue;
		ret = sluice_blk_sysfs_add_queue(&disk->queues[i]);
		if (ret)
			goto out_del_queues;
	}
	return 0;

out_del_queues:
	sluice_blk_sysfs_del_disk(disk);
	return ret;
out_destroy_device:
	device_unregister(dev);
	disk->dev = NULL;
	return ret;
}

/* Process context, disk->lock held or the disk being released.  Removes everything sysfs shows of it. */
void sluice_blk_sysfs_del_disk(struct sluice_blk_disk *disk)
{
	int i;

	for (i = 0; i < SLUICE_BLK_MAX_QUEUES; i++) {
		struct sluice_blk_queue *q = &disk->queues[i];

		if (!q->kobj)
			continue;
		kobject_del(q->kobj);	/* no attribute reaches @q after this */
		kobject_put(q->kobj);
		q->kobj = NULL;
	}
	kobject_put(disk->queues_kobj);
	disk->queues_kobj = NULL;
	if (disk->dev)
		device_unregister(disk->dev);
	disk->dev = NULL;
}

int sluice_blk_sysfs_init(void)
{
	return class_register(&sluice_blk_class);
}

void sluice_blk_sysfs_exit(void)
{
	class_unregister(&sluice_blk_class);
}
