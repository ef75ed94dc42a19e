/* SPDX-License-Identifier: GPL-2.0 */
/* block.h - the block graph: nodes (format over protocol), drivers, the backend handle, in-flight tracking, drain. */
#ifndef SLUICE_BLOCK_H
#define SLUICE_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "annotations.h"
#include "coroutine.h"

struct sluice_aio_ctx;
struct sluice_bds;

/* Open flags (sluice_bds_open / sluice_blk_open). */
#define SLUICE_BDRV_O_RDWR	0x0001	/* writable; read-only otherwise */
#define SLUICE_BDRV_O_NOCACHE	0x0002	/* cache=none: O_DIRECT on the host file */
#define SLUICE_BDRV_O_THREADS	0x0004	/* aio=threads: a thread pool instead of io_uring */
#define SLUICE_BDRV_O_CREATE	0x0008	/* internal to create */

/* Request flags. */
#define SLUICE_BDRV_REQ_FUA		0x0001
#define SLUICE_BDRV_REQ_MAY_UNMAP	0x0002	/* write-zeroes may deallocate */
#define SLUICE_BDRV_REQ_NO_FALLBACK	0x0004	/* write-zeroes: fail rather than write buffers */

/* sluice_bds_co_block_status() answer bits (as qemu's BDRV_BLOCK_*). */
#define SLUICE_BLOCK_DATA	0x01
#define SLUICE_BLOCK_ZERO	0x02
#define SLUICE_BLOCK_ALLOCATED	0x04
#define SLUICE_BLOCK_OFFSET_VALID 0x08

/*
 * A driver: a format (raw, qcow2) sits on a child node; a protocol (file)
 * talks to the host.  One file per driver, each exporting one const table
 * with designated initialisers.  co_* callbacks run in coroutine context in
 * the node's ctx, with the graph reader lock held by the caller chain.
 * Offsets and sizes are in bytes; callbacks return 0 / bytes or -errno.
 */
struct sluice_block_driver {
	const char *format_name;
	size_t instance_size;			/* bs->opaque is zeroed to this size */
	bool is_protocol;			/* opens a filename; else opens a format over bs->file */
	/*
	 * Requests may run in any ctx at once (state thread-safe or per
	 * request; io_uring of the ctx the request runs in): a backend whose
	 * whole graph is multiqueue runs each request in its caller's ctx.
	 */
	bool multiqueue;

	/* Main thread (or the node's ctx thread during creation); not a coroutine. */
	int (*open)(struct sluice_bds *bs, const char *filename, int flags, char **errp);
	void (*close)(struct sluice_bds *bs);
	/* Create an image (protocol: the file; format: on an opened, empty protocol node). */
	int (*create)(const char *filename, uint64_t size, const char *options, char **errp);

	int coroutine_fn (*co_preadv)(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				      struct iovec *iov, int niov, int flags);
	int coroutine_fn (*co_pwritev)(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags);
	int coroutine_fn (*co_flush)(struct sluice_bds *bs);
	int coroutine_fn (*co_pdiscard)(struct sluice_bds *bs, uint64_t offset, uint64_t bytes);
	int coroutine_fn (*co_pwrite_zeroes)(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					     int flags);
	int coroutine_fn (*co_truncate)(struct sluice_bds *bs, uint64_t size);
	/* Status of [offset, offset+bytes): returns SLUICE_BLOCK_* bits, *pnum = bytes it covers, *map = host offset. */
	int coroutine_fn (*co_block_status)(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					    uint64_t *pnum, uint64_t *map, struct sluice_bds **file);
	int64_t (*getlength)(struct sluice_bds *bs);
	/* Host space used, in bytes (for info), or -errno. */
	int64_t (*get_allocated_size)(struct sluice_bds *bs);
};

/*
 * The graph lock (graph-lock.c).  Readers are requests: the backend layer
 * holds it shared for a request's life, in whichever IOThread runs it; it is
 * a per-thread count, no shared cache line, while no writer is about.  The
 * writer is the main thread changing the graph (closing a node, detaching a
 * child, moving nodes between IOThreads), usually drained: it waits for
 * every reader in the process to leave, and new readers park until it is
 * done.  A reader must not take it again (the inner one would wait for a
 * writer that waits for the outer one).
 */
struct TSA_CAPABILITY("graph-lock") sluice_graph_lock_cap {
	int unused;
};
extern struct sluice_graph_lock_cap sluice_graph_lock;
#define GRAPH_RDLOCK	TSA_REQUIRES_SHARED(sluice_graph_lock)
#define GRAPH_WRLOCK	TSA_REQUIRES(sluice_graph_lock)

/* Coroutine, any ctx. */
void coroutine_fn sluice_graph_co_rdlock(void) TSA_ACQUIRE_SHARED(sluice_graph_lock);
void coroutine_fn sluice_graph_co_rdunlock(void) TSA_RELEASE_SHARED(sluice_graph_lock);
/* Main thread (or any thread that is not in a coroutine), not nested. */
void sluice_graph_wrlock(void) TSA_ACQUIRE(sluice_graph_lock);
void sluice_graph_wrunlock(void) TSA_RELEASE(sluice_graph_lock);
/* Any thread: a writer holds the lock or waits for it. */
bool sluice_graph_writer_active(void);

/* A node of the graph. */
struct sluice_bds {
	const struct sluice_block_driver *drv;
	void *opaque;				/* driver state, drv->instance_size bytes */
	char *filename;
	char node_name[32];
	int open_flags;
	unsigned int refcnt;			/* main thread */
	struct sluice_bds *file;		/* the child (format nodes), or NULL */
	struct sluice_bds *backing;		/* backing node (qcow2), opened and unref'd by the driver; read-only */
	struct sluice_aio_ctx *ctx;		/* where its requests run */

	uint32_t request_alignment;		/* min I/O alignment the driver needs (512 with O_DIRECT) */
	uint32_t max_transfer;			/* 0: unlimited */
	bool read_only;

	unsigned int in_flight;			/* atomic: requests inside this node */
	unsigned int quiesce_counter;		/* atomic: > 0 while drained */

	/* Private to block.c / block-backend.c. */
	int64_t total_bytes;			/* cached length (open, truncate, getlength) */
	struct sluice_co_rwlock rmw_lock;	/* with request_alignment > 1: RMW writer vs other writes */
	struct sluice_blk *blk;			/* the backend whose root this is, or NULL (main thread) */
};

/*
 * The main thread's loop: the ctx current on the thread that first calls
 * this (or a new one, "main", made current there).  New nodes start in it.
 * Main thread.
 */
struct sluice_aio_ctx *sluice_block_main_ctx(void);

/* Main thread.  Open @filename with format @fmt ("raw", "file", later "qcow2"; NULL probes). */
struct sluice_bds *sluice_bds_open(const char *filename, const char *fmt, int flags, char **errp);
void sluice_bds_ref(struct sluice_bds *bs);
void sluice_bds_unref(struct sluice_bds *bs);
/* Main thread, drained, holding the graph writer lock: move @bs and its children to @ctx. */
void sluice_bds_set_aio_context(struct sluice_bds *bs, struct sluice_aio_ctx *ctx) GRAPH_WRLOCK;
const struct sluice_block_driver *sluice_bdrv_find_format(const char *name);
int sluice_bdrv_create(const char *fmt, const char *filename, uint64_t size, const char *options,
		       char **errp);

/* Coroutine: the node-level request API (alignment, bounds and in-flight handled here). */
int coroutine_fn sluice_bds_co_preadv(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				      struct iovec *iov, int niov, int flags) GRAPH_RDLOCK;
int coroutine_fn sluice_bds_co_pwritev(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags) GRAPH_RDLOCK;
int coroutine_fn sluice_bds_co_flush(struct sluice_bds *bs) GRAPH_RDLOCK;
int coroutine_fn sluice_bds_co_pdiscard(struct sluice_bds *bs, uint64_t offset, uint64_t bytes) GRAPH_RDLOCK;
int coroutine_fn sluice_bds_co_pwrite_zeroes(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					     int flags) GRAPH_RDLOCK;
int coroutine_fn sluice_bds_co_truncate(struct sluice_bds *bs, uint64_t size) GRAPH_RDLOCK;
int coroutine_fn sluice_bds_co_block_status(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					    uint64_t *pnum, uint64_t *map, struct sluice_bds **file) GRAPH_RDLOCK;
int64_t sluice_bds_getlength(struct sluice_bds *bs);

/*
 * Drain (main thread or the node's ctx thread, not a coroutine): begin
 * quiesces @bs and its children: waits until no request is in flight in them;
 * until the matching end, new backend requests wait.  Nests.
 */
void sluice_bds_drained_begin(struct sluice_bds *bs);
void sluice_bds_drained_end(struct sluice_bds *bs);

/*
 * The backend handle (BlockBackend): what users (virtio-blk, tools) hold.
 * Requests wait while the node is drained, count as in flight, and run in
 * the calling coroutine's thread (which must be the node's ctx thread).
 */
struct sluice_blk;

/* Request types, as reported by the blk_req_start / blk_req_done USDT probes. */
enum sluice_blk_op {
	SLUICE_BLK_OP_READ = 0,
	SLUICE_BLK_OP_WRITE = 1,
	SLUICE_BLK_OP_FLUSH = 2,
	SLUICE_BLK_OP_DISCARD = 3,
	SLUICE_BLK_OP_WRITE_ZEROES = 4,
	SLUICE_BLK_OP_TRUNCATE = 5,
};

struct sluice_blk *sluice_blk_new_open(const char *filename, const char *fmt, int flags, char **errp);
void sluice_blk_unref(struct sluice_blk *blk);
struct sluice_bds *sluice_blk_bs(struct sluice_blk *blk);
int64_t sluice_blk_getlength(struct sluice_blk *blk);
void sluice_blk_set_aio_context(struct sluice_blk *blk, struct sluice_aio_ctx *ctx);
struct sluice_aio_ctx *sluice_blk_get_aio_context(struct sluice_blk *blk);
unsigned int sluice_blk_in_flight(struct sluice_blk *blk);

int coroutine_fn sluice_blk_co_preadv(struct sluice_blk *blk, uint64_t offset, uint64_t bytes,
				      struct iovec *iov, int niov, int flags);
int coroutine_fn sluice_blk_co_pwritev(struct sluice_blk *blk, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags);
int coroutine_fn sluice_blk_co_flush(struct sluice_blk *blk);
int coroutine_fn sluice_blk_co_pdiscard(struct sluice_blk *blk, uint64_t offset, uint64_t bytes);
int coroutine_fn sluice_blk_co_pwrite_zeroes(struct sluice_blk *blk, uint64_t offset, uint64_t bytes,
					     int flags);
int coroutine_fn sluice_blk_co_truncate(struct sluice_blk *blk, uint64_t size);

/* Not a coroutine: run one request to completion from outside coroutine context (tools, tests). */
int sluice_blk_pread(struct sluice_blk *blk, uint64_t offset, uint64_t bytes, void *buf, int flags);
int sluice_blk_pwrite(struct sluice_blk *blk, uint64_t offset, uint64_t bytes, const void *buf, int flags);

/* Registry of drivers (block.c). */
extern const struct sluice_block_driver sluice_bdrv_file;
extern const struct sluice_block_driver sluice_bdrv_raw;
extern const struct sluice_block_driver sluice_bdrv_qcow2;

#endif /* SLUICE_BLOCK_H */
