// SPDX-License-Identifier: GPL-2.0
/* broken_init.c - a module named sluice_blk whose init fails: make check must fail the kmod suite with it. */
#include <linux/module.h>

static int __init sluice_blk_broken_init(void)
{
	return -ENODEV;
}
module_init(sluice_blk_broken_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("sluice test: a module whose init fails");
