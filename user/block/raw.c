// SPDX-License-Identifier: GPL-2.0
/* raw.c - the "raw" format driver: a pass-through layer over its protocol child (bs->file). */
#include <errno.h>

#include "block-int.h"
#include "block.h"

/*
 * Main thread: bs->file is open.  Requests pass through unaligned: the
 * protocol node, which knows the host file's end, does any bounce/RMW.
 */
static int raw_open(struct sluice_bds *bs, const char *filename, int flags, char **errp)
{
	if (!bs->file)
		return -EINVAL;
	bs->request_alignment = 1;
	bs->max_transfer = bs->file->max_transfer;
	return 0;
}

/* Coroutine in the node's ctx. */
static int coroutine_fn GRAPH_RDLOCK raw_co_preadv(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				      struct iovec *iov, int niov, int flags)
{
	return sluice_bds_co_preadv(bs->file, offset, bytes, iov, niov, flags);
}

/* Coroutine in the node's ctx. */
static int coroutine_fn GRAPH_RDLOCK raw_co_pwritev(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags)
{
	return sluice_bds_co_pwritev(bs->file, offset, bytes, iov, niov, flags);
}

/* Coroutine in the node's ctx. */
static int coroutine_fn GRAPH_RDLOCK raw_co_flush(struct sluice_bds *bs)
{
	return sluice_bds_co_flush(bs->file);
}

/* Coroutine in the node's ctx. */
static int coroutine_fn GRAPH_RDLOCK raw_co_pdiscard(struct sluice_bds *bs, uint64_t offset, uint64_t bytes)
{
	return sluice_bds_co_pdiscard(bs->file, offset, bytes);
}

/* Coroutine in the node's ctx; the child falls back to writing buffers if it must. */
static int coroutine_fn GRAPH_RDLOCK raw_co_pwrite_zeroes(struct sluice_bds *bs, uint64_t offset,
					     uint64_t bytes, int flags)
{
	return sluice_bds_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

/* Coroutine in the node's ctx. */
static int coroutine_fn GRAPH_RDLOCK raw_co_truncate(struct sluice_bds *bs, uint64_t size)
{
	return sluice_bds_co_truncate(bs->file, size);
}

/* Coroutine in the node's ctx: the child's answer, same offsets. */
static int coroutine_fn GRAPH_RDLOCK raw_co_block_status(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					    uint64_t *pnum, uint64_t *map, struct sluice_bds **file)
{
	return sluice_bds_co_block_status(bs->file, offset, bytes, pnum, map, file);
}

/* Any thread: the child's cached length. */
static int64_t raw_getlength(struct sluice_bds *bs)
{
	return __atomic_load_n(&bs->file->total_bytes, __ATOMIC_RELAXED);
}

/* Any thread. */
static int64_t raw_get_allocated_size(struct sluice_bds *bs)
{
	if (!bs->file->drv->get_allocated_size)
		return -ENOTSUP;
	return bs->file->drv->get_allocated_size(bs->file);
}

/* Main thread: a raw image is just the file. */
static int raw_create(const char *filename, uint64_t size, const char *options, char **errp)
{
	return sluice_bdrv_file.create(filename, size, options, errp);
}

const struct sluice_block_driver sluice_bdrv_raw = {
	.format_name		= "raw",
	.instance_size		= 0,
	.is_protocol		= false,
	.multiqueue		= true,
	.open			= raw_open,
	.create			= raw_create,
	.co_preadv		= raw_co_preadv,
	.co_pwritev		= raw_co_pwritev,
	.co_flush		= raw_co_flush,
	.co_pdiscard		= raw_co_pdiscard,
	.co_pwrite_zeroes	= raw_co_pwrite_zeroes,
	.co_truncate		= raw_co_truncate,
	.co_block_status	= raw_co_block_status,
	.getlength		= raw_getlength,
	.get_allocated_size	= raw_get_allocated_size,
};
