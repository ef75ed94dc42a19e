/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* sluice_blk.h - ioctl ABI of /dev/sluice-blk, shared by sluice_blk.ko and the sluice VMM. */
#ifndef _UAPI_LINUX_SLUICE_BLK_H
#define _UAPI_LINUX_SLUICE_BLK_H

#include <linux/types.h>
#include <linux/ioctl.h>

/*
 * The misc device node.  One open file description drives one disk: its
 * owner (the VMM process whose mm holds guest RAM), its memory table, its
 * virtqueues and its backend.  Closing it (or the owner dying) stops the
 * queues, completes or cancels every request in flight and frees the disk.
 *
 * Order of use (vhost-like):
 *   SLUICE_BLK_GET_API_VERSION, SLUICE_BLK_SET_OWNER, SLUICE_BLK_SET_MEM_TABLE,
 *   SLUICE_BLK_GET_FEATURES / SLUICE_BLK_SET_FEATURES (the driver's accepted set),
 *   SLUICE_BLK_SET_BACKEND, then per queue SET_VRING_NUM, SET_VRING_ADDR,
 *   SET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL [, SET_VRING_ERR] and
 *   SET_VRING_ENABLE(1).  SET_VRING_ENABLE(0) or GET_VRING_BASE stops a queue
 *   (in-flight requests complete first).
 * Errors: -ENOTTY unknown ioctl, -EINVAL bad argument, -EPERM not the owner,
 * -EBUSY state change on a running queue, -EFAULT bad user pointer.
 */
#define SLUICE_BLK_DEVICE_NAME	"sluice-blk"

/* ABI version.  Bumped on any incompatible change; check it before any other ioctl. */
#define SLUICE_BLK_API_VERSION	2

/* 0xB7 is unused in Documentation/userspace-api/ioctl/ioctl-number.rst. */
#define SLUICE_BLK_IOC_MAGIC	0xB7

#define SLUICE_BLK_MAX_QUEUES	16
#define SLUICE_BLK_MAX_REGIONS	16
#define SLUICE_BLK_MAX_QUEUE_SIZE 1024

/* One region of guest RAM: [guest_phys_addr, +memory_size) is at userspace_addr in the owner. */
struct sluice_blk_mem_region {
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
	__u64 reserved;		/* must be 0 */
};

struct sluice_blk_mem_table {
	__u32 nregions;		/* <= SLUICE_BLK_MAX_REGIONS */
	__u32 reserved;		/* must be 0 */
	struct sluice_blk_mem_region regions[];
};

/* A queue's number (SET_VRING_NUM: size; SET/GET_VRING_BASE: next avail index). */
struct sluice_blk_vring_state {
	__u32 index;
	__u32 num;
};

/* A queue's rings, as guest physical addresses (translated through the memory table). */
struct sluice_blk_vring_addr {
	__u32 index;
	__u32 flags;		/* must be 0 */
	__u64 desc_gpa;
	__u64 avail_gpa;
	__u64 used_gpa;
};

/* An eventfd for a queue: kick (guest -> module), call (irqfd), err.  fd -1 removes it. */
struct sluice_blk_vring_file {
	__u32 index;
	__s32 fd;
};

#define SLUICE_BLK_BACKEND_F_READONLY	(1u << 0)

/* The disk's backend: a raw image file or a block device, opened by the VMM. */
struct sluice_blk_backend {
	__s32 fd;
	__u32 flags;		/* SLUICE_BLK_BACKEND_F_* */
	__u64 capacity;		/* bytes the guest sees; 0: the size of fd */
	char name[32];		/* sysfs name (/sys/class/sluice_blk/<name>), NUL-terminated */
	char serial[20];	/* VIRTIO_BLK_T_GET_ID answer (not NUL-terminated when 20 long) */
	__u32 reserved[3];	/* must be 0 */
};

/* Per-queue counters (GET_STATS: set index, read the rest). */
struct sluice_blk_queue_stats {
	__u32 index;
	__u32 reserved;
	__u64 completed;	/* requests completed (any status) */
	__u64 inflight;		/* requests submitted, not yet completed */
	__u64 errors;		/* completed with VIRTIO_BLK_S_IOERR */
	__u64 unsupported;	/* completed with VIRTIO_BLK_S_UNSUPP */
	__u64 kicks;		/* kick eventfd wake-ups */
	__u64 signals;		/* call eventfd signals (one per batch) */
	__u64 bytes_read;
	__u64 bytes_written;
	__u32 broken;		/* non-zero: the queue saw a malformed chain and stopped */
	__u32 reserved2;
};

/* Returns SLUICE_BLK_API_VERSION as the ioctl's return value. */
#define SLUICE_BLK_GET_API_VERSION	_IO(SLUICE_BLK_IOC_MAGIC, 0x00)
/* Bind the disk to the calling process's mm (once). */
#define SLUICE_BLK_SET_OWNER		_IO(SLUICE_BLK_IOC_MAGIC, 0x01)
/* Stop all queues, drop the backend and the memory table (owner stays). */
#define SLUICE_BLK_RESET		_IO(SLUICE_BLK_IOC_MAGIC, 0x02)
#define SLUICE_BLK_SET_MEM_TABLE	_IOW(SLUICE_BLK_IOC_MAGIC, 0x03, struct sluice_blk_mem_table)
/* Virtio feature bits the module can serve / the ones the driver accepted. */
#define SLUICE_BLK_GET_FEATURES		_IOR(SLUICE_BLK_IOC_MAGIC, 0x04, __u64)
#define SLUICE_BLK_SET_FEATURES		_IOW(SLUICE_BLK_IOC_MAGIC, 0x05, __u64)
#define SLUICE_BLK_SET_BACKEND		_IOW(SLUICE_BLK_IOC_MAGIC, 0x06, struct sluice_blk_backend)
/* Wait until no request is in flight on any queue. */
#define SLUICE_BLK_DRAIN		_IO(SLUICE_BLK_IOC_MAGIC, 0x07)
#define SLUICE_BLK_GET_STATS		_IOWR(SLUICE_BLK_IOC_MAGIC, 0x08, struct sluice_blk_queue_stats)

#define SLUICE_BLK_SET_VRING_NUM	_IOW(SLUICE_BLK_IOC_MAGIC, 0x10, struct sluice_blk_vring_state)
#define SLUICE_BLK_SET_VRING_ADDR	_IOW(SLUICE_BLK_IOC_MAGIC, 0x11, struct sluice_blk_vring_addr)
#define SLUICE_BLK_SET_VRING_BASE	_IOW(SLUICE_BLK_IOC_MAGIC, 0x12, struct sluice_blk_vring_state)
/* Stops the queue (waits for its requests) and returns its next avail index. */
#define SLUICE_BLK_GET_VRING_BASE	_IOWR(SLUICE_BLK_IOC_MAGIC, 0x13, struct sluice_blk_vring_state)
#define SLUICE_BLK_SET_VRING_KICK	_IOW(SLUICE_BLK_IOC_MAGIC, 0x14, struct sluice_blk_vring_file)
#define SLUICE_BLK_SET_VRING_CALL	_IOW(SLUICE_BLK_IOC_MAGIC, 0x15, struct sluice_blk_vring_file)
#define SLUICE_BLK_SET_VRING_ERR	_IOW(SLUICE_BLK_IOC_MAGIC, 0x16, struct sluice_blk_vring_file)
/* num 1: start serving the queue; num 0: stop it (in-flight requests complete first). */
#define SLUICE_BLK_SET_VRING_ENABLE	_IOW(SLUICE_BLK_IOC_MAGIC, 0x17, struct sluice_blk_vring_state)

#endif /* _UAPI_LINUX_SLUICE_BLK_H */
