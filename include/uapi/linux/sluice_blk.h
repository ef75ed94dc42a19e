/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* sluice_blk.h - ioctl ABI of /dev/sluice-blk, shared by sluice_blk.ko and the sluice VMM. */
#ifndef _UAPI_LINUX_SLUICE_BLK_H
#define _UAPI_LINUX_SLUICE_BLK_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* The misc device node: one open file description drives one disk. */
#define SLUICE_BLK_DEVICE_NAME	"sluice-blk"

/*
 * ABI version.  Bumped on any incompatible change; userspace checks it with
 * SLUICE_BLK_GET_API_VERSION before issuing any other ioctl.
 */
#define SLUICE_BLK_API_VERSION	1

/* The ioctl magic; 0xB7 is unused in Documentation/userspace-api/ioctl/ioctl-number.rst. */
#define SLUICE_BLK_IOC_MAGIC	0xB7

/* Returns SLUICE_BLK_API_VERSION as the ioctl's (non-negative) return value. */
#define SLUICE_BLK_GET_API_VERSION	_IO(SLUICE_BLK_IOC_MAGIC, 0x00)

#endif /* _UAPI_LINUX_SLUICE_BLK_H */
