/* SPDX-License-Identifier: GPL-2.0 */
/* virtio-blk.h - the virtio-blk device: drive options, per-queue state, the user dataplane and the hooks of the kernel one. */
#ifndef SLUICE_VIRTIO_BLK_H
#define SLUICE_VIRTIO_BLK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_blk.h>
#include <linux/sluice_blk.h>

#include "virtio-pci.h"
#include "virtqueue.h"

struct sluice_vm;
struct sluice_blk;
struct sluice_bh;
struct sluice_aio_ctx;
struct sluice_iothread;

enum sluice_dataplane {
	SLUICE_DATAPLANE_USER,
	SLUICE_DATAPLANE_KERNEL,
	SLUICE_DATAPLANE_AUTO,
};

#define SLUICE_VBLK_MAX_IOTHREADS	SLUICE_VIRTIO_MAX_QUEUES
#define SLUICE_VBLK_DEFAULT_QSIZE	256
#define SLUICE_VBLK_MAX_QSIZE		1024
/* Data segments per request (config seg_max); chains carry two more (header, status). */
#define SLUICE_VBLK_SEG_MAX		126
#define SLUICE_VBLK_MAX_SEGS		(SLUICE_VBLK_SEG_MAX + 2)
#define SLUICE_VBLK_MAX_DWZ_SEG		SLUICE_BLK_MAX_DWZ_SEG	/* discard / write-zeroes ranges per request (uapi: the module's too) */
/* Requests popped per kick before the loop lets other work run (weight cap). */
#define SLUICE_VBLK_WEIGHT		256

/* One --drive, parsed (sluice_drive_opts_parse). */
struct sluice_drive_opts {
	char *file;
	char *format;
	char *id;
	enum sluice_dataplane dataplane;
	unsigned int queues;		/* 0: one per vCPU (up to 16) */
	unsigned int queue_size;	/* 0: the default */
	unsigned int nr_iothreads;
	char *iothreads[SLUICE_VBLK_MAX_IOTHREADS];
	bool cache_none;
	bool readonly;
	enum sluice_virtio_notify notify;
};

/* Any thread: parse "file=PATH,format=raw|qcow2[,id=..]..."; 0 or -EINVAL with *@errp (g_free it). */
int sluice_drive_opts_parse(const char *spec, struct sluice_drive_opts **out, char **errp);
void sluice_drive_opts_free(struct sluice_drive_opts *o);
const char *sluice_dataplane_name(enum sluice_dataplane dp);

struct sluice_vblk_req;

/*
 * One virtqueue of a disk.  @iothread/@ctx change only under the disk's
 * state_lock with the queue stopped (main thread); the ring fields belong to
 * @ctx's thread while @serving.
 */
struct sluice_vblk_queue {
	struct sluice_vblk *vblk;
	unsigned int index;
	struct sluice_iothread *iothread;
	struct sluice_aio_ctx *ctx;

	/* The driver's setup, copied at DRIVER_OK (kernel dataplane: passed to the module). */
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	int kick_fd, call_fd;
	bool enabled;

	/* Serving thread's: */
	struct sluice_vring vring;
	struct sluice_bh *kick_bh;	/* continue after the weight cap / when requests free up */
	struct sluice_bh *flush_bh;	/* publish used entries, one irqfd write per batch */
	bool serving;
	bool broken;
	bool throttled;			/* stopped popping: every request slot is in flight */
	bool notify_off;		/* serving thread: ring empty, notifications left off while its loop polls */
	struct sluice_vblk_req *free_reqs;
	struct sluice_vq_seg segs[SLUICE_VBLK_MAX_SEGS];

	unsigned int inflight;		/* atomic */
	uint64_t requests;		/* atomic: completed requests */
};

/* One virtio-blk disk. */
struct sluice_vblk {
	struct sluice_vm *vm;
	struct sluice_drive_opts *opts;
	char id[32];
	enum sluice_dataplane dataplane;	/* the one in use (auto resolved) */
	struct sluice_blk *blk;
	uint64_t capacity;		/* bytes */
	bool readonly;
	unsigned int nr_queues;
	uint16_t queue_size;
	struct sluice_vblk_queue queues[SLUICE_VIRTIO_MAX_QUEUES];
	struct virtio_blk_config config;
	char serial[VIRTIO_BLK_ID_BYTES];
	uint64_t features;		/* negotiated, at DRIVER_OK */
	bool started;			/* under state_lock */
	pthread_mutex_t state_lock;	/* start/reset (vCPU threads) vs queue moves (main thread) */
	struct sluice_virtio_pci vpci;
	void *kernel;			/* vblk-kernel.c's state */
	struct sluice_vblk *next;
};

/* Main thread, before the vCPUs run: open the image, pick IOThreads, create the PCI function. */
int sluice_vblk_create(struct sluice_vm *vm, struct sluice_drive_opts *opts, struct sluice_vblk **out,
		       char **errp);
/* Main thread, vCPUs stopped. */
void sluice_vblk_destroy(struct sluice_vblk *vblk);
/* Main thread: the disks, in creation order. */
struct sluice_vblk *sluice_vblk_first(void);
struct sluice_vblk *sluice_vblk_find(const char *id);
/*
 * Main thread: serve queue @qi from @t from now on: stop it, wait for its
 * requests, move, resume.  The guest keeps running.  0 or -errno + *@errp.
 */
int sluice_vblk_set_queue_iothread(struct sluice_vblk *vblk, unsigned int qi, struct sluice_iothread *t,
				   char **errp);

/* virtio-blk feature bits this device offers (no transport bits); pure. */
uint64_t sluice_vblk_features(bool readonly);

/*
 * The request engine, exposed for the unit tests (no KVM): serve @q's ring
 * (kick handler body) and run the completions.  Serving thread.
 */
void sluice_vblk_queue_process(struct sluice_vblk_queue *q);
/* Serving thread: start serving @q from its setup fields (vring checks, BHs, kick handler, a first pass). */
void sluice_vblk_queue_attach(struct sluice_vblk_queue *q);
/* Any thread: stop taking requests from @q, wait for the ones in flight, publish them. */
void sluice_vblk_queue_stop(struct sluice_vblk_queue *q);
/*
 * Serving thread: serve @q again after sluice_vblk_queue_stop() (a move to
 * another IOThread), with the ring indices it had; a broken queue stays stopped.
 */
void sluice_vblk_queue_resume(struct sluice_vblk_queue *q);

/* vblk-kernel.c: the kernel dataplane (dataplane=kernel|auto).  Main thread unless said otherwise. */
int sluice_vblk_kernel_attach(struct sluice_vblk *vblk, char **errp);
/* vCPU thread, DRIVER_OK: hand the queues (vblk->queues[i]: size, GPAs, kick/call fds) to the module. */
int sluice_vblk_kernel_start(struct sluice_vblk *vblk);
/* vCPU thread, device reset: stop the module's queues, wait for their requests. */
void sluice_vblk_kernel_stop(struct sluice_vblk *vblk);
void sluice_vblk_kernel_detach(struct sluice_vblk *vblk);
struct sluice_blk_queue_stats;
/* Any thread: the module's counters of queue @qi; its name for the disk (sysfs). */
int sluice_vblk_kernel_queue_stats(struct sluice_vblk *vblk, unsigned int qi, struct sluice_blk_queue_stats *st);
const char *sluice_vblk_kernel_name(struct sluice_vblk *vblk);

#endif /* SLUICE_VIRTIO_BLK_H */
