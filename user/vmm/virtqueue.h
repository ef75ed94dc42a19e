/* SPDX-License-Identifier: GPL-2.0 */
/* virtqueue.h - a split virtqueue seen from the device: pop chains (with the shared walker), push used entries, notifications. */
#ifndef SLUICE_VIRTQUEUE_H
#define SLUICE_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_ring.h>

#include <sluice/vq_walk.h>

/*
 * Guest memory as a virtqueue sees it: @to_hva returns the host pointer of
 * [gpa, gpa + len) when the range is inside one RAM region, else NULL.  The
 * VMM passes sluice_gpa_to_hva; unit tests pass a buffer.  Any thread.
 */
struct sluice_gmem {
	void *(*to_hva)(void *opaque, uint64_t gpa, uint64_t len);
	void *opaque;
};

/*
 * One split ring.  All fields belong to the thread that serves the queue
 * (its IOThread); the setup functions run while nobody serves it.
 */
struct sluice_vring {
	uint16_t size;
	bool event_idx;			/* VIRTIO_RING_F_EVENT_IDX negotiated */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	struct vring_avail *avail;	/* host pointers, checked to lie in RAM */
	struct vring_used *used;
	uint16_t last_avail_idx;	/* next avail entry to pop */
	uint16_t used_idx;		/* next used entry to fill (published by sluice_vring_publish) */
	uint16_t published_idx;		/* used->idx as last written */
	uint16_t signalled_idx;		/* used->idx when the guest was last notified */
	struct sluice_gmem mem;
	struct sluice_vq_ring walk;	/* what sluice_vq_walk_chain() needs */
};

/*
 * Set @vr up over the rings at the given guest addresses (queue of @size, a
 * power of 2).  Returns 0, or -EINVAL (bad size, misaligned) / -EFAULT (a
 * ring outside RAM).  Serving thread, queue stopped.  The indices start
 * from used->idx as the guest left it: only for a fresh start (DRIVER_OK
 * after a reset); a queue that merely moves to another thread keeps its
 * struct sluice_vring as it is.
 */
int sluice_vring_init(struct sluice_vring *vr, const struct sluice_gmem *mem, uint16_t size,
		      uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect);

/*
 * Pop the next chain: 1 with *@head and the segments filled, 0 when the
 * ring is empty, -EIO with *@err set for a malformed ring or chain (the
 * device must then stop the queue and ask for a reset).  Serving thread.
 */
int sluice_vring_pop(struct sluice_vring *vr, uint16_t *head, struct sluice_vq_seg *segs, unsigned int max,
		     unsigned int *nsegs, uint32_t *out_bytes, uint32_t *in_bytes, enum sluice_vq_err *err);

/* Serving thread: ask the guest not to notify (used flags / avail_event left behind). */
void sluice_vring_disable_notify(struct sluice_vring *vr);
/*
 * Serving thread: ask for notifications again, then re-check the ring.
 * Returns true when entries arrived meanwhile (keep processing); a bad
 * avail index is reported by the next pop.
 */
bool sluice_vring_enable_notify(struct sluice_vring *vr);

/* Serving thread: has the guest made entries available that were not popped yet (poll mode)? */
bool sluice_vring_avail_pending(struct sluice_vring *vr);
/* Serving thread: fill the next used entry (not yet visible to the guest). */
void sluice_vring_push(struct sluice_vring *vr, uint16_t head, uint32_t len);
/*
 * Serving thread: make the pushed entries visible (used->idx) and say
 * whether the guest wants an interrupt for them (EVENT_IDX or flags).
 */
bool sluice_vring_publish(struct sluice_vring *vr);

#endif /* SLUICE_VIRTQUEUE_H */
