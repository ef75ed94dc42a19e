/* SPDX-License-Identifier: GPL-2.0 */
/* sluice_blk.h - sluice_blk.ko internals: the disk, its queues, its requests, and what the .c files share. */
#ifndef SLUICE_BLK_INTERNAL_H
#define SLUICE_BLK_INTERNAL_H

#include <linux/cpumask.h>
#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/kobject.h>
#include <linux/llist.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/rwsem.h>
#include <linux/sched.h>
#include <linux/task_work.h>
#include <linux/uio.h>
#include <linux/version.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <uapi/linux/sluice_blk.h>

#include "vq_walk.h"

/* Requests a queue starts before it lets completions and other work run (vhost's weight). */
#define SLUICE_BLK_WEIGHT		256
/* No inline passes while this share of recent kicks (x256) showed a depth beyond 1: 1 in 8. */
#define SLUICE_BLK_KICK_BUSY_MAX	32
/* Buffers in one request's chain, header and status included. */
#define SLUICE_BLK_MAX_SEGS		130

struct sluice_blk_disk;
struct sluice_blk_dwz_range;

/* The memory table, replaced as a whole (RCU). */
struct sluice_blk_memtable {
	struct rcu_head rcu;
	u32 nregions;
	struct sluice_blk_mem_region regions[];
};

/* One in-flight request: from pop to used-ring entry. */
struct sluice_blk_req {
	struct sluice_blk_queue *q;
	struct llist_node done_node;	/* on q->done when complete */
	struct kiocb iocb;
	struct iov_iter iter;
	u16 head;
	u32 type;
	u64 sector;
	u32 data_len;			/* bytes of data buffers */
	u32 written;			/* bytes written into the guest (used len) */
	void __user *status;		/* the status byte */
	struct page *status_page;	/* its page, pinned while in flight for a direct completion, or NULL */
	u8 status_val;
	bool is_write;
	bool direct;
	s8 ext_gen;			/* extent generation pinned while in flight, or -1 */
	u32 fwd_id;			/* slot in disk->fwd while forwarded */
	u32 fwd_seq;			/* disk->fwd_seq when forwarded: the id's upper half */
	u8 fwd_reason;			/* SLUICE_BLK_FWD_* once forwarded, else 0 */
	struct list_head fwd_node;	/* on disk->fwd_pending while the req ring is full, else empty */
	struct sluice_blk_upcall_req *fwd_rec;	/* the record to forward (kmalloc'd) */
	ktime_t start;
	struct work_struct work;	/* FLUSH, DISCARD, WRITE_ZEROES: they run on sluice_blk_wq */
	struct sluice_blk_dwz_range *dwz;	/* DISCARD / WRITE_ZEROES: the checked ranges */
	u32 dwz_n;
	unsigned int nr_iov;
	unsigned int nr_dsegs;		/* its data buffers in q->dsegs (worker, until submitted) */
	struct iovec iov[SLUICE_BLK_MAX_SEGS];
};

/* One virtqueue served by one worker thread. */
struct sluice_blk_queue {
	struct sluice_blk_disk *disk;
	u32 index;
	u16 num;			/* queue size, 0 until SET_VRING_NUM */
	u16 last_avail;			/* next avail entry to pop (worker) */
	u16 used_idx;			/* next used entry to write (worker) */
	u64 desc_gpa, avail_gpa, used_gpa;	/* the rings, guest physical (SET_VRING_ADDR) */
	bool rings_set;			/* the GPAs above were given for this num */
	/*
	 * The avail and used rings in the owner's mm: translated through the
	 * table at start and again by each SET_MEM_TABLE while running (under
	 * disk->rings_sem), never kept across a table change.
	 */
	void __user *avail, *used;
	/*
	 * The avail and used rings pinned and mapped into the kernel (by the
	 * worker's first pass after a start or a table change), so that a
	 * completion writes its used entry and signals from its own context
	 * (often the backend's IRQ) instead of waking the worker.  NULL when not
	 * mapped: completions then go through the worker.  used_lock orders
	 * every used-ring writer while mapped: used_idx, used_pub and the ring.
	 */
	spinlock_t used_lock;
	void *kavail, *kused;
	struct sluice_blk_ring_map {
		struct page *pages[4];
		unsigned int n;
		void *vaddr;
	} avail_map, used_map;
	bool map_tried;			/* worker: mapping was tried since the last start / table change */
	u16 used_pub;			/* used idx last published to the driver */
	bool enabled;
	bool broken;			/* malformed chain seen: stopped until reset */
	bool throttled;			/* stopped popping at num in flight (worker) */
	bool polling;			/* worker: the ring was empty, notifications left off, poll it */
	u32 poll_cur;			/* worker: this queue's poll window now, ns (adaptive) */
	u64 sleep_start;		/* worker: when a poll that found nothing sent it to sleep, or 0 */
	bool fwd_closed;		/* under disk->fwd_lock: stopping, forward nothing more */

	struct eventfd_ctx *kick, *call, *err;
	struct file *kick_file;
	wait_queue_entry_t kick_wait;	/* on the kick eventfd's wait queue */
	wait_queue_head_t *kick_wqh;
	poll_table kick_pt;

	struct task_struct *worker;
	unsigned long work;		/* bit 0: the avail ring may have news */
	/*
	 * Every pass over the rings (the worker's, and the inline pass a kick
	 * on an idle queue runs in the kicking thread, sluice_blk_queue.c)
	 * holds pass_lock: last_avail, used_idx, throttled and the scratch
	 * arrays below have one user at a time.
	 */
	struct mutex pass_lock;
	struct task_struct *pass_owner;	/* under pass_lock: the task in a pass, which reaps before it ends */
	bool inline_live;		/* under pass_lock: started, inline passes may run */
	int kick_busy;			/* kicks that show depth > 1, moving average x256 (sluice_blk_kick_busy()) */
	u16 kick_avail;			/* last_avail at the last kick (kicks only) */
	unsigned long inline_state;	/* bit 0: inline_tw is queued on a thread */
	struct callback_head inline_tw;	/* that thread's task work: sluice_blk_inline_pass() */
	atomic64_t inline_passes;	/* inline passes that popped at least one request */
	atomic64_t direct;		/* completions written from their own context, not by the worker */
	struct llist_head done;		/* completed requests, pushed from any context */
	atomic_t inflight;
	atomic_t completing;		/* completions between llist_add and wake_up_process */
	wait_queue_head_t idle_wq;	/* woken when inflight drops to 0 */
	struct mutex cpu_lock;		/* cpus and worker for sysfs; nests inside disk->lock */
	cpumask_var_t cpus;		/* where the worker may run (sysfs cpu) */

	struct sluice_vq_seg segs[SLUICE_BLK_MAX_SEGS];	/* worker scratch for one chain */
	struct iovec tr[SLUICE_BLK_MAX_SEGS];		/* worker scratch: its buffers translated */
	struct sluice_vq_seg dsegs[SLUICE_BLK_MAX_SEGS];	/* worker scratch: the data buffers */

	struct kobject *kobj;		/* queues/<index> (sluice_blk_sysfs.c), NULL when not shown */

	/* counters, read lock-free by sysfs and GET_STATS */
	atomic64_t completed, errors, unsupported, kicks, signals, bytes_read, bytes_written;
	atomic64_t buffered;		/* reads/writes that went through the page cache */
	atomic64_t fallback;		/* requests forwarded to userspace (extent mode) */
};

/* One open of /dev/sluice-blk. */
struct sluice_blk_disk {
	struct file *file;		/* our open file: a pending inline pass holds a reference */
	struct mutex lock;		/* ioctls, sysfs registration */
	struct mm_struct *mm;		/* owner's mm (mmget at SET_OWNER, mmput at release) */
	struct task_struct *owner;
	struct sluice_blk_memtable __rcu *mem;
	/*
	 * Read by each worker over a pass that touches its rings, written by
	 * SET_MEM_TABLE around publishing a table and moving the running
	 * queues' ring addresses: no pass sees a new table with old addresses.
	 */
	struct rw_semaphore rings_sem;
	u64 features;			/* accepted by the driver */
	struct file *backend;
	u64 capacity;			/* bytes */
	bool readonly;
	char name[32];
	char serial[20];
	struct device *dev;		/* the sysfs class device, once a backend is set */
	struct kobject *queues_kobj;

	/* Extent mode (SLUICE_BLK_BACKEND_F_EXTENTS): see sluice_blk_extent.c. */
	bool extents;
	u32 cluster_bits;
	struct xarray ext_map;		/* guest cluster -> xa value (host cluster << 1 | writable) */
	atomic_t ext_clusters;		/* mapped clusters */
	int ext_gen;			/* 0/1, flipped by each revoke (disk->lock) */
	atomic_t ext_inflight[2];	/* kernel requests translated under each generation */
	wait_queue_head_t ext_wq;
	atomic64_t ext_hits, ext_misses;
	struct mutex fwd_lock;		/* the upcall rings and fwd_pending */
	struct sluice_blk_ring_hdr __user *req_ring, *done_ring;
	u32 ring_entries;
	struct eventfd_ctx *fwd_notify;
	struct file *fwd_done_file;
	wait_queue_entry_t fwd_done_wait;
	wait_queue_head_t *fwd_done_wqh;
	poll_table fwd_done_pt;
	struct xarray fwd;		/* id -> forwarded request */
	struct list_head fwd_pending;	/* forwarded, waiting for room on the req ring */
	u32 fwd_seq;			/* under fwd_lock: forwards so far */

	struct sluice_blk_queue queues[SLUICE_BLK_MAX_QUEUES];
};

/* sluice_blk_mem.c */
extern const struct sluice_vq_mem_ops sluice_blk_vq_mem_ops;
extern struct workqueue_struct *sluice_blk_wq;	/* sluice_blk_main.c: FLUSH, DISCARD, WRITE_ZEROES */
void __user *sluice_blk_gpa_to_user(struct sluice_blk_disk *disk, u64 gpa, u64 len);
int sluice_blk_map_rings(const struct sluice_blk_queue *q, const struct sluice_blk_memtable *mt,
			 void __user **avail, void __user **used);
int sluice_blk_set_mem_table(struct sluice_blk_disk *disk, void __user *arg);
void sluice_blk_free_mem_table(struct sluice_blk_disk *disk);

/* sluice_blk_queue.c */
int sluice_blk_queue_start(struct sluice_blk_queue *q);
void sluice_blk_queue_stop(struct sluice_blk_queue *q);
void sluice_blk_queue_complete(struct sluice_blk_req *req);
void sluice_blk_queue_pin_status(struct sluice_blk_req *req);
void sluice_blk_queue_unmap_rings(struct sluice_blk_queue *q);
void sluice_blk_queue_break(struct sluice_blk_queue *q, const char *why);
int sluice_blk_queue_set_cpus(struct sluice_blk_queue *q, const struct cpumask *mask);

/* sluice_blk_io.c */
void sluice_blk_req_submit(struct sluice_blk_req *req, const struct sluice_vq_seg *segs,
			   unsigned int nsegs, u32 out_bytes, u32 in_bytes);
u64 sluice_blk_features(void);

/* sluice_blk_extent.c */
void sluice_blk_extent_init(struct sluice_blk_disk *disk);
void sluice_blk_extent_free(struct sluice_blk_disk *disk);
int sluice_blk_set_extent_config(struct sluice_blk_disk *disk, void __user *arg);
int sluice_blk_map_extents(struct sluice_blk_disk *disk, void __user *arg);
int sluice_blk_unmap_extents(struct sluice_blk_disk *disk, void __user *arg);
int sluice_blk_set_upcall(struct sluice_blk_disk *disk, void __user *arg);
int sluice_blk_extent_translate(struct sluice_blk_req *req, u64 *host_pos);
void sluice_blk_extent_put(struct sluice_blk_req *req);
void sluice_blk_forward(struct sluice_blk_req *req, u16 reason, const struct sluice_vq_seg *dsegs,
			unsigned int n);
void sluice_blk_fwd_reap(struct sluice_blk_disk *disk);
void sluice_blk_fwd_cancel(struct sluice_blk_disk *disk, struct sluice_blk_queue *q);

/* sluice_blk_sysfs.c */
int sluice_blk_sysfs_init(void);
void sluice_blk_sysfs_exit(void);
int sluice_blk_sysfs_add_disk(struct sluice_blk_disk *disk);
int sluice_blk_sysfs_add_queue(struct sluice_blk_queue *q);
void sluice_blk_sysfs_del_disk(struct sluice_blk_disk *disk);

/* eventfd_signal() lost its count argument in 6.8. */
static inline void sluice_blk_eventfd_signal(struct eventfd_ctx *ctx)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

#endif /* SLUICE_BLK_INTERNAL_H */
