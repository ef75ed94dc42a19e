// SPDX-License-Identifier: GPL-2.0
/* sluice_blk_main.c - module entry, /dev/sluice-blk misc device and its file operations. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <uapi/linux/sluice_blk.h>

/*
 * One open file description of /dev/sluice-blk: one disk.  Later patches hang
 * the memory table, the queues and the backend off this structure.
 */
struct sluice_blk_disk {
	struct file *file;	/* the open file that owns this disk */
};

/* Process context (open(2)); no locks held. */
static int sluice_blk_open(struct inode *inode, struct file *file)
{
	struct sluice_blk_disk *disk;

	disk = kzalloc(sizeof(*disk), GFP_KERNEL);
	if (!disk)
		return -ENOMEM;
	disk->file = file;
	file->private_data = disk;
	return nonseekable_open(inode, file);
}

/* Process context (last fput); no locks held.  Nothing of the disk outlives it. */
static int sluice_blk_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	file->private_data = NULL;
	return 0;
}

/* Process context (ioctl(2)); no locks held. */
static long sluice_blk_ioctl(struct file *file, unsigned int cmd,
			     unsigned long arg)
{
	switch (cmd) {
	case SLUICE_BLK_GET_API_VERSION:
		return SLUICE_BLK_API_VERSION;
	default:
		return -ENOTTY;
	}
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

static int __init sluice_blk_init(void)
{
	int ret;

	ret = misc_register(&sluice_blk_misc);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", SLUICE_BLK_DEVICE_NAME, ret);
		return ret;
	}
	pr_info("ABI v%d ready on /dev/%s\n", SLUICE_BLK_API_VERSION,
		SLUICE_BLK_DEVICE_NAME);
	return 0;
}

static void __exit sluice_blk_exit(void)
{
	misc_deregister(&sluice_blk_misc);
}

module_init(sluice_blk_init);
module_exit(sluice_blk_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("sluice in-kernel virtio-blk dataplane");
MODULE_AUTHOR("The sluice developers");
