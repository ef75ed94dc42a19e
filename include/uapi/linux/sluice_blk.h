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
#define SLUICE_BLK_API_VERSION	3

/* 0xB7 is unused in Documentation/userspace-api/ioctl/ioctl-number.rst. */
#define SLUICE_BLK_IOC_MAGIC	0xB7

#define SLUICE_BLK_MAX_QUEUES	16
/* Ranges in one DISCARD / WRITE_ZEROES the module accepts: the VMM's max_discard_seg / max_write_zeroes_seg. */
#define SLUICE_BLK_MAX_DWZ_SEG	16
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
/*
 * The backend is an image whose metadata userspace owns (qcow2): guest
 * offsets are translated through the extent map, and any request the map
 * does not fully cover is forwarded to userspace on the upcall ring.
 */
#define SLUICE_BLK_BACKEND_F_EXTENTS	(1u << 1)

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

/* Extent map (SLUICE_BLK_BACKEND_F_EXTENTS): guest clusters -> host offsets in the backend file. */
#define SLUICE_BLK_EXTENT_F_WRITABLE	(1u << 0)	/* writes may go there (refcount 1, no COW) */

struct sluice_blk_extent {
	__u64 guest_offset;	/* multiple of the cluster size */
	__u64 length;		/* multiple of the cluster size */
	__u64 host_offset;	/* multiple of the cluster size */
	__u32 flags;		/* SLUICE_BLK_EXTENT_F_* */
	__u32 reserved;		/* must be 0 */
};

struct sluice_blk_extents {
	__u32 nr;		/* entries in ext[], <= 1024 per call */
	__u32 reserved;		/* must be 0 */
	struct sluice_blk_extent ext[];
};

/* A guest byte range (UNMAP_EXTENTS: revoked; the call returns once no kernel request uses it). */
struct sluice_blk_range {
	__u64 offset;
	__u64 length;
};

/* The extent mode's parameters, before any extent is mapped. */
struct sluice_blk_extent_config {
	__u32 cluster_bits;	/* 9..21 */
	__u32 reserved;
};

/*
 * The upcall channel: two rings in the owner's memory.  The module produces
 * requests (req ring) and signals notify_fd; userspace serves them, produces
 * completions (done ring) and signals done_fd.  Each ring starts with a
 * struct sluice_blk_ring_hdr; producers write entries, then (release) prod;
 * consumers read prod (acquire), the entries, then write cons.
 */
struct sluice_blk_upcall {
	__u64 req_ring;		/* user address: hdr + entries x struct sluice_blk_upcall_req */
	__u64 done_ring;	/* user address: hdr + entries x struct sluice_blk_upcall_done */
	__u32 entries;		/* a power of 2, 1..4096, both rings */
	__s32 notify_fd;	/* eventfd the module signals after producing requests */
	__s32 done_fd;		/* eventfd userspace signals after producing completions */
	__u32 reserved;		/* must be 0 */
};

struct sluice_blk_ring_hdr {
	__u32 prod;
	__u32 cons;
	__u32 reserved[14];	/* producer and consumer on separate cache lines in spirit; must be 0 */
};

#define SLUICE_BLK_UPCALL_MAX_SEGS	128

/* One forwarded virtio-blk request: userspace does it on guest memory and reports its status. */
struct sluice_blk_upcall_req {
	__u64 id;		/* echoed in the completion */
	__u32 queue;
	__u32 type;		/* VIRTIO_BLK_T_* */
	__u64 sector;
	__u32 data_len;		/* bytes of data buffers */
	__u16 nsegs;		/* data buffers in segs[] */
	__u16 reason;		/* SLUICE_BLK_FWD_* */
	struct {
		__u64 gpa;
		__u32 len;
		__u32 write;	/* device-writable (reads fill it) */
	} segs[SLUICE_BLK_UPCALL_MAX_SEGS];
};

#define SLUICE_BLK_FWD_UNMAPPED		1	/* some cluster has no extent */
#define SLUICE_BLK_FWD_READONLY		2	/* a write to a read-only extent (COW) */
#define SLUICE_BLK_FWD_SPLIT		3	/* extents not contiguous on the host */
#define SLUICE_BLK_FWD_METADATA		4	/* discard / write-zeroes / flush: userspace's call */

struct sluice_blk_upcall_done {
	__u64 id;
	__u32 written;		/* bytes written into the guest's buffers (reads) */
	__u8 status;		/* VIRTIO_BLK_S_* */
	__u8 reserved[3];
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

/* Extent mode (backend set with SLUICE_BLK_BACKEND_F_EXTENTS; queues stopped). */
#define SLUICE_BLK_SET_EXTENT_CONFIG	_IOW(SLUICE_BLK_IOC_MAGIC, 0x20, struct sluice_blk_extent_config)
#define SLUICE_BLK_SET_UPCALL		_IOW(SLUICE_BLK_IOC_MAGIC, 0x21, struct sluice_blk_upcall)
/* Map extents (replacing overlapping ones); any time. */
#define SLUICE_BLK_MAP_EXTENTS		_IOW(SLUICE_BLK_IOC_MAGIC, 0x22, struct sluice_blk_extents)
/* Revoke a range and wait until no kernel request in flight uses what it mapped. */
#define SLUICE_BLK_UNMAP_EXTENTS	_IOW(SLUICE_BLK_IOC_MAGIC, 0x23, struct sluice_blk_range)

#endif /* _UAPI_LINUX_SLUICE_BLK_H */
