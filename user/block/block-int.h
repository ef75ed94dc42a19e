/* SPDX-License-Identifier: GPL-2.0 */
/* block-int.h - internals shared by block.c, block-backend.c and the drivers (not for users of the block layer). */
#ifndef SLUICE_BLOCK_INT_H
#define SLUICE_BLOCK_INT_H

#include <stddef.h>
#include <sys/uio.h>

#include "block.h"

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

/* Any thread: the root @bs of @blk left its last drained section: restart its waiting requests. */
void sluice_blk_root_drained_end(struct sluice_blk *blk);

/* Any thread: requests of @blk on their way to or inside the graph (parked ones excluded); drain waits for 0. */
unsigned int sluice_blk_active(struct sluice_blk *blk);

/*
 * Any thread: wake every drain waiter, after a count a drain waits for went
 * to 0.  Takes no node: the caller must not touch the node or backend whose
 * count it dropped, as a drainer may free them as soon as it sees the 0.
 */
void sluice_block_drain_kick(void);

/* Request bookkeeping of a node (any thread; the dec wakes a drain waiting for 0). */
void sluice_bds_inc_in_flight(struct sluice_bds *bs);
void sluice_bds_dec_in_flight(struct sluice_bds *bs);

/* iovec helpers: iov.h (public, the VMM uses them too). */
#include "iov.h"

#endif /* SLUICE_BLOCK_INT_H */
