/* SPDX-License-Identifier: GPL-2.0 */
/* qcow2.h - internals of the qcow2 driver: on-disk layout constants, per-image state, caches, shared helpers. */
#ifndef SLUICE_QCOW2_H
#define SLUICE_QCOW2_H

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include <glib.h>

#include "block-int.h"
#include "block.h"
#include "coroutine.h"

/* ---- on-disk format (docs/interop/qcow2.txt) ---- */

#define QCOW2_MAGIC			0x514649fbu	/* "QFI\xfb" */
#define QCOW2_V2_HEADER_SIZE		72
#define QCOW2_V3_HEADER_SIZE		104
#define QCOW2_HEADER_SIZE_COMPRESSION	112	/* v3 header with compression_type, padded to 8 */

#define QCOW2_MIN_CLUSTER_BITS		9
#define QCOW2_MAX_CLUSTER_BITS		21
#define QCOW2_MAX_BACKING_NAME		1023
#define QCOW2_MAX_REFTABLE_SIZE		(8u << 20)	/* bytes, as QEMU */
#define QCOW2_MAX_L1_SIZE		(32u << 20)	/* bytes, as QEMU */
#define QCOW2_MAX_SNAPSHOTS		65536
#define QCOW2_MAX_HOST_OFFSET		((1ull << 56) - 1)
#define QCOW2_MAX_BACKING_DEPTH		32

/* Header field offsets we rewrite in place (everything else is kept byte for byte). */
#define QCOW2_HDR_SIZE_OFF		24
#define QCOW2_HDR_L1_SIZE_OFF		36	/* l1_size (4) + l1_table_offset (8) */
#define QCOW2_HDR_REFTABLE_OFF		48	/* refcount_table_offset (8) + clusters (4) */
#define QCOW2_HDR_INCOMPAT_OFF		72
#define QCOW2_HDR_AUTOCLEAR_OFF		88

#define QCOW2_INCOMPAT_DIRTY		(1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT		(1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE	(1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION	(1ull << 3)
#define QCOW2_INCOMPAT_EXTL2		(1ull << 4)
#define QCOW2_INCOMPAT_KNOWN		(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
					 QCOW2_INCOMPAT_COMPRESSION)
#define QCOW2_COMPAT_LAZY_REFCOUNTS	(1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS		(1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW	(1ull << 1)

#define QCOW2_EXT_END			0x00000000u
#define QCOW2_EXT_BACKING_FORMAT	0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE		0x6803f857u
#define QCOW2_EXT_BITMAPS		0x23852875u
#define QCOW2_EXT_CRYPTO		0x0537be77u
#define QCOW2_EXT_DATA_FILE		0x44415441u

#define QCOW2_COMPRESSION_ZLIB		0
#define QCOW2_COMPRESSION_ZSTD		1

/* L1 / L2 entries. */
#define QCOW2_OFLAG_COPIED		(1ull << 63)
#define QCOW2_OFLAG_COMPRESSED		(1ull << 62)
#define QCOW2_OFLAG_ZERO		(1ull << 0)
#define QCOW2_L1E_OFFSET_MASK		0x00fffffffffffe00ull
#define QCOW2_L2E_OFFSET_MASK		0x00fffffffffffe00ull
#define QCOW2_L1E_RESERVED		0x7f000000000001ffull
#define QCOW2_L2E_STD_RESERVED		0x3f000000000001feull

/* What an L2 entry means. */
enum qcow2_cluster_type {
	QCOW2_CLUSTER_UNALLOCATED,	/* backing file or zeros */
	QCOW2_CLUSTER_ZERO_PLAIN,	/* reads as zeros, no host cluster */
	QCOW2_CLUSTER_ZERO_ALLOC,	/* reads as zeros, host cluster kept */
	QCOW2_CLUSTER_NORMAL,
	QCOW2_CLUSTER_COMPRESSED,
};

/* Overlap check categories (what a metadata write must not hit). */
#define QCOW2_OL_HEADER			(1u << 0)
#define QCOW2_OL_ACTIVE_L1		(1u << 1)
#define QCOW2_OL_ACTIVE_L2		(1u << 2)
#define QCOW2_OL_REFCOUNT_TABLE		(1u << 3)
#define QCOW2_OL_REFCOUNT_BLOCK		(1u << 4)
#define QCOW2_OL_SNAPSHOT_TABLE		(1u << 5)
#define QCOW2_OL_INACTIVE_L1		(1u << 6)
#define QCOW2_OL_ALL			0x7fu

/* ---- caches ---- */

struct qcow2_cache_entry {
	uint64_t offset;		/* host offset of the table, 0: free slot */
	void *table;			/* cluster_size bytes */
	uint64_t lru;			/* larger: used more recently */
	bool dirty;
};

/*
 * A write-back cache of one kind of metadata table (L2 or refcount blocks).
 * Dependencies keep QEMU's safe order: before a dirty table of this cache
 * is written, @depends is flushed (written and the file synced), and with
 * @depends_on_flush the file is synced first (data written before the
 * entries that point at it).  All of it under the image's lock.
 */
struct qcow2_cache {
	struct qcow2_cache_entry *entries;
	unsigned int size;
	uint64_t lru_counter;
	struct qcow2_cache *depends;
	bool depends_on_flush;
	unsigned int ol_self;		/* QCOW2_OL_* of the tables it holds */
};

/* ---- per-image state ---- */

/* In-flight guest-range requests, to serialise what must not overlap. */
enum qcow2_req_kind {
	QCOW2_REQ_READ,
	QCOW2_REQ_WRITE,	/* in place, clusters already ours */
	QCOW2_REQ_ALLOC,	/* allocating clusters: one at a time per cluster */
	QCOW2_REQ_LINK,		/* an ALLOC about to free the old clusters: new reads wait */
	QCOW2_REQ_DISCARD,	/* discard, write-zeroes, truncate: excludes everything */
	QCOW2_REQ_FREE,		/* never in flight: what freeing host clusters waits for (reads) */
};

struct qcow2_req {
	enum qcow2_req_kind kind;
	uint64_t start, end;		/* guest clusters [start, end), in cluster units */
	struct qcow2_req *next;
	struct sluice_co_queue waiters;	/* under the image lock */
};

struct qcow2_state {
	struct sluice_bds *bs;

	/* Immutable after open. */
	unsigned int version;
	unsigned int cluster_bits;
	uint64_t cluster_size;
	unsigned int l2_bits;		/* entries per L2 table = 1 << l2_bits */
	unsigned int refcount_order;
	unsigned int refcount_bits;
	uint64_t refcount_max;
	unsigned int rb_bits;		/* entries per refcount block = 1 << rb_bits */
	unsigned int header_length;
	unsigned int compression_type;
	unsigned int csize_shift;
	uint64_t csize_mask;
	uint64_t cluster_offset_mask;
	uint64_t compat_features;
	uint64_t autoclear_features;
	/* The bitmaps extension as opened (used by check while the autoclear bit says they are valid). */
	uint32_t nb_bitmaps;
	uint64_t bitmap_dir_size;
	uint64_t bitmap_dir_offset;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t *snapshot_l1;		/* [2 * i]: offset, [2 * i + 1]: bytes, of each snapshot's L1 */
	uint64_t snapshot_table_bytes;
	char *backing_file;		/* as in the header */
	char *backing_format;		/* from the extension, or NULL */
	bool read_only;

	/* All fields below are under @lock (C cannot name a member in guarded_by: functions say TSA_REQUIRES). */
	struct sluice_co_mutex lock;

	uint64_t size;		/* guest bytes */
	uint64_t incompat_features;
	bool corrupt;		/* set at runtime: all writes fail */
	uint64_t *l1_table;	/* host-endian */
	uint32_t l1_size;
	uint64_t l1_table_offset;
	uint64_t *refcount_table;	/* host-endian */
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint64_t refcount_table_entries;
	uint64_t refcount_table_used;		/* 1 + the last nonzero entry: the overlap check's bound */
	uint64_t free_cluster_index;
	uint64_t free_byte_offset;	/* compressed writes: next free byte in a shared cluster, 0: none */
	uint64_t data_end;		/* file length at open or end of the last allocation, if more:
					 * the file reads as zeros beyond it (it may be grown further ahead) */
	struct qcow2_cache l2_cache;
	struct qcow2_cache rb_cache;
	struct qcow2_req *reqs;

	struct sluice_bds *backing;	/* opened read-only, or NULL */
};

static inline uint64_t qcow2_offset_into_cluster(const struct qcow2_state *s, uint64_t off)
{
	return off & (s->cluster_size - 1);
}

static inline uint64_t qcow2_start_of_cluster(const struct qcow2_state *s, uint64_t off)
{
	return off & ~(s->cluster_size - 1);
}

static inline uint64_t qcow2_size_to_clusters(const struct qcow2_state *s, uint64_t size)
{
	return (size + s->cluster_size - 1) >> s->cluster_bits;
}

/* Entries needed in the L1 table for @size guest bytes. */
static inline uint64_t qcow2_l1_entries_for(const struct qcow2_state *s, uint64_t size)
{
	unsigned int shift = s->cluster_bits + s->l2_bits;

	return (size + (1ull << shift) - 1) >> shift;
}

/* Unaligned big-endian accessors for header bytes (pure). */
static inline uint16_t get_be16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return be16toh(v);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

/*
 * Open flag (with SLUICE_BDRV_O_RDWR) for the repair of 'sluice-img check -r':
 * a corrupt or dirty image opens read/write; the check clears the bits once
 * the image is consistent.
 */
#define QCOW2_O_REPAIR			0x0100

/* ---- qcow2.c ---- */

/*
 * Main thread (or a coroutine: then called directly): run @fn(@opaque) in a
 * coroutine, polling this thread's ctx.  @fn runs with the graph lock shared:
 * taken here for a main-thread caller; a coroutine caller holds it already.
 */
int qcow2_run_sync(int (*fn)(void *opaque), void *opaque);

/* Coroutine, image lock held: write @len bytes of @buf at host @offset after an overlap check against @ign-less metadata. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_write_meta(struct qcow2_state *s, uint64_t offset, const void *buf,
				     uint64_t len, unsigned int ign) TSA_REQUIRES(s->lock);
/* Coroutine: read @len bytes at host @offset into @buf. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_read_file(struct qcow2_state *s, uint64_t offset, void *buf, uint64_t len);
/* Coroutine, image lock held: mark the image corrupt (header bit, in memory), log why; returns -EIO. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
	TSA_REQUIRES(s->lock) __attribute__((format(printf, 2, 3)));
/* Coroutine, image lock held: 0 if [offset, offset+len) touches no metadata outside @ign, else QCOW2_OL_* hit. */
unsigned int coroutine_fn qcow2_co_check_overlap(struct qcow2_state *s, unsigned int ign,
						 uint64_t offset, uint64_t len) TSA_REQUIRES(s->lock);
/* Image lock held: does the one-cluster table at host offset @off lie inside the file (0 counts as no table)? */
static inline bool qcow2_table_in_file(const struct qcow2_state *s, uint64_t off)
{
	return !off || (off <= s->data_end && s->data_end - off >= s->cluster_size);
}
/* Open, or image lock held: @n refcount table entries read from disk to host order; sets refcount_table_used. */
void qcow2_reftable_from_disk(struct qcow2_state *s, uint64_t *table, uint64_t n);
/* Coroutine, image lock held: overlap check that marks the image corrupt on a hit (-EIO). */
int coroutine_fn GRAPH_RDLOCK qcow2_co_pre_write_check(struct qcow2_state *s, unsigned int ign, uint64_t offset,
					  uint64_t len) TSA_REQUIRES(s->lock);
/*
 * Coroutine, image lock held (dropped while waiting): until no read of guest
 * clusters [start, end) but @self (NULL: none) is in flight.  Before freeing
 * host clusters that such reads may be using.
 */
void coroutine_fn qcow2_co_wait_reads(struct qcow2_state *s, const struct qcow2_req *self, uint64_t start,
				      uint64_t end) TSA_REQUIRES(s->lock);

/* ---- qcow2-cache.c ---- */

/* Open (not a coroutine): a cache of @size tables. */
int qcow2_cache_init(struct qcow2_state *s, struct qcow2_cache *c, unsigned int size,
		     unsigned int ol_self);
/* Close: free the tables (dirty ones must have been flushed). */
void qcow2_cache_destroy(struct qcow2_cache *c);
/* Coroutine, image lock held: the table at @offset, read if not cached.  Valid until the lock is dropped. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_get(struct qcow2_state *s, struct qcow2_cache *c, uint64_t offset,
				    void **table) TSA_REQUIRES(s->lock);
/* Coroutine, image lock held: a slot for a new table at @offset, not read (caller fills it and marks it dirty). */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_get_empty(struct qcow2_state *s, struct qcow2_cache *c,
					  uint64_t offset, void **table) TSA_REQUIRES(s->lock);
/* Image lock held: the table (from get) was modified. */
void qcow2_cache_mark_dirty(struct qcow2_cache *c, const void *table);
/* Image lock held: forget the table at @offset (the cluster was freed); its contents are dropped. */
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset);
/* Image lock held: @c's dirty tables may only be written after @dep is flushed. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_set_dependency(struct qcow2_state *s, struct qcow2_cache *c,
					       struct qcow2_cache *dep) TSA_REQUIRES(s->lock);
/* Image lock held: @c's dirty tables may only be written after a file flush. */
void qcow2_cache_depends_on_flush(struct qcow2_cache *c);
/* Coroutine, image lock held: write every dirty table (dependencies first), no final sync. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_write(struct qcow2_state *s, struct qcow2_cache *c)
	TSA_REQUIRES(s->lock);
/* Coroutine, image lock held: write every dirty table, then sync the file. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_flush(struct qcow2_state *s, struct qcow2_cache *c)
	TSA_REQUIRES(s->lock);

/* ---- qcow2-refcount.c ---- */

/* Coroutine, image lock held: refcount of host cluster @cluster_index into *@ref. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_refcount(struct qcow2_state *s, uint64_t cluster_index, uint64_t *ref)
	TSA_REQUIRES(s->lock);
/* Coroutine, image lock held: add @delta to the refcounts of the host clusters covering [offset, offset+len). */
int coroutine_fn GRAPH_RDLOCK qcow2_co_update_refcount(struct qcow2_state *s, uint64_t offset, uint64_t len,
					  int delta) TSA_REQUIRES(s->lock);
/*
 * Coroutine, image lock held: allocate up to @n contiguous host clusters
 * (at least one); *@nb_out gets how many.  Returns the host offset or -errno.
 */
int64_t coroutine_fn GRAPH_RDLOCK qcow2_co_alloc_clusters(struct qcow2_state *s, uint64_t n, uint64_t *nb_out)
	TSA_REQUIRES(s->lock);
/* Coroutine, image lock held: drop one reference to each cluster of [offset, offset+len). */
int coroutine_fn GRAPH_RDLOCK qcow2_co_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t len)
	TSA_REQUIRES(s->lock);
/* Coroutine, image lock held: free what a (compressed or normal) L2 entry points at. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_free_l2_entry(struct qcow2_state *s, uint64_t l2e) TSA_REQUIRES(s->lock);
/* Coroutine, image lock held: make the protocol node at least @end bytes long (writes past its end fail). */
int coroutine_fn GRAPH_RDLOCK qcow2_co_grow_file(struct qcow2_state *s, uint64_t end) TSA_REQUIRES(s->lock);
/* Refcount block entry helpers (pure). */
uint64_t qcow2_rb_get(const struct qcow2_state *s, const void *rb, uint64_t index);
void qcow2_rb_set(const struct qcow2_state *s, void *rb, uint64_t index, uint64_t value);

/* ---- qcow2.c: for the kernel dataplane (user/vmm/vblk-kernel.c) ---- */

/* A run of guest clusters stored contiguously on the host. */
struct qcow2_extent {
	uint64_t offset;		/* guest */
	uint64_t bytes;
	uint64_t host;
	bool writable;			/* COPIED: may be written in place */
};

unsigned int qcow2_cluster_bits(struct sluice_bds *bs);
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_extents(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				      struct qcow2_extent *out, unsigned int max);

/* ---- qcow2-cluster.c ---- */

/* One step of a guest-range mapping: how [offset, offset + bytes) is stored. */
struct qcow2_map {
	enum qcow2_cluster_type type;
	uint64_t bytes;			/* guest bytes this answer covers (>= 1) */
	uint64_t host;			/* NORMAL / ZERO_ALLOC: host offset of @offset */
	uint64_t l2e;			/* the (first) L2 entry */
	bool copied;			/* NORMAL: every cluster has COPIED (writable in place) */
};

/* Coroutine, image lock held: how guest @offset is stored, for up to @bytes (stops at a change of kind or L2 table). */
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_mapping(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
				      struct qcow2_map *map) TSA_REQUIRES(s->lock);
/* Pure: the type of an L2 entry. */
enum qcow2_cluster_type qcow2_l2e_type(const struct qcow2_state *s, uint64_t l2e);
/* Coroutine, image lock held: the L2 table for guest @offset (allocated/COWed when @alloc) and the index in it. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_get_l2(struct qcow2_state *s, uint64_t offset, bool alloc,
				 uint64_t **l2, unsigned int *index) TSA_REQUIRES(s->lock);
/*
 * Coroutine, image lock held: point the L2 entries of guest clusters
 * [offset, offset + n clusters) at @host.. (COPIED); frees what they
 * pointed at before.  Data must already be written.
 */
int coroutine_fn GRAPH_RDLOCK qcow2_co_link_l2(struct qcow2_state *s, uint64_t offset, uint64_t n, uint64_t host)
	TSA_REQUIRES(s->lock);
/*
 * Coroutine, image lock held: make whole guest clusters [offset, offset +
 * n clusters) zero (@zero, v3) or unallocated, freeing host clusters unless
 * @keep_alloc (zero only).
 */
int coroutine_fn GRAPH_RDLOCK qcow2_co_zero_or_discard(struct qcow2_state *s, uint64_t offset, uint64_t n,
					  bool zero, bool keep_alloc) TSA_REQUIRES(s->lock);
/* Coroutine, image lock held: grow the L1 table to @entries. */
int coroutine_fn GRAPH_RDLOCK qcow2_co_grow_l1(struct qcow2_state *s, uint64_t entries) TSA_REQUIRES(s->lock);

/* ---- qcow2-compress.c ---- */

/* Any context: decompress @src into exactly @dst_len bytes of @dst; -EIO on bad data. */
int qcow2_decompress(unsigned int type, void *dst, size_t dst_len, const void *src, size_t src_len);
/* Any context: compress @src into @dst (at most @dst_len); returns the size, -ENOSPC if it does not shrink, -errno. */
ssize_t qcow2_compress(unsigned int type, void *dst, size_t dst_len, const void *src, size_t src_len);

/* ---- qcow2-check.c ---- */

/* What 'check' found (the fields of qemu-img check's report). */
struct qcow2_check_result {
	uint64_t corruptions;
	uint64_t leaks;
	uint64_t check_errors;
	uint64_t corruptions_fixed;
	uint64_t leaks_fixed;
	uint64_t total_clusters;	/* guest clusters */
	uint64_t allocated_clusters;
	uint64_t fragmented_clusters;
	uint64_t compressed_clusters;
	uint64_t image_end_offset;
};

#define QCOW2_FIX_LEAKS		1
#define QCOW2_FIX_ERRORS	2

/*
 * Main thread, @bs a qcow2 node (read/write with QCOW2_O_REPAIR for @fix):
 * rebuild the refcounts from the header, L1/L2 tables, snapshots and the
 * refcount structures and compare them with the image's; report problems on
 * stderr in qemu-img's words; with @fix, repair (leaks: lower the refcounts;
 * errors: raise refcounts, fix COPIED flags) and check again.  0 or -errno
 * (the check could not complete).
 */
int qcow2_check(struct sluice_bds *bs, int fix, struct qcow2_check_result *res);

/*
 * Coroutine in the node's ctx: write one whole guest cluster at the
 * cluster-aligned @offset compressed (@buf holds cluster_size bytes; the
 * last partial cluster zero-padded).  Data that does not shrink is written
 * as a normal cluster.  For convert -c: not overlap-safe against concurrent
 * writes to the same cluster.
 */
int coroutine_fn GRAPH_RDLOCK qcow2_co_pwrite_compressed(struct sluice_bds *bs, uint64_t offset, const void *buf);

/* What 'info' shows of a qcow2 node (any thread, a snapshot of the state). */
struct qcow2_info {
	unsigned int version;
	uint64_t cluster_size;
	unsigned int compression_type;
	bool lazy_refcounts;
	unsigned int refcount_bits;
	bool corrupt;
	bool dirty;
	const char *backing_file;	/* as in the header, or NULL */
	const char *backing_format;	/* or NULL */
};

/* Any thread: fill @info if @bs is a qcow2 node; false otherwise. */
bool qcow2_get_info(struct sluice_bds *bs, struct qcow2_info *info);

extern const struct sluice_block_driver sluice_bdrv_qcow2;

#endif /* SLUICE_QCOW2_H */
