// SPDX-License-Identifier: GPL-2.0
/* virtqueue.c - split virtqueue device side: ring setup checks, pop (through sluice_vq_walk_chain), used ring, EVENT_IDX. */
#include <errno.h>
#include <string.h>

#include "virtqueue.h"

/* Any thread: the walker's memory ops over a struct sluice_gmem. */
static int gmem_read(void *opaque, __u64 gpa, void *dst, __u32 len)
{
	const struct sluice_gmem *mem = opaque;
	void *src = mem->to_hva(mem->opaque, gpa, len);

	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

static bool gmem_valid(void *opaque, __u64 gpa, __u64 len)
{
	const struct sluice_gmem *mem = opaque;

	return mem->to_hva(mem->opaque, gpa, len) != NULL;
}

static const struct sluice_vq_mem_ops gmem_ops = {
	.read = gmem_read,
	.valid = gmem_valid,
};

/* Serving thread, queue stopped. */
int sluice_vring_init(struct sluice_vring *vr, const struct sluice_gmem *mem, uint16_t size,
		      uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect)
{
	uint64_t avail_len = 4 + 2ULL * size + 2, used_len = 4 + 8ULL * size + 2;

	memset(vr, 0, sizeof(*vr));
	if (!size || (size & (size - 1)) || size > 32768)
		return -EINVAL;
	if ((desc_gpa & 15) || (avail_gpa & 1) || (used_gpa & 3))
		return -EINVAL;
	vr->mem = *mem;
	if (!mem->to_hva(mem->opaque, desc_gpa, 16ULL * size))
		return -EFAULT;
	vr->avail = mem->to_hva(mem->opaque, avail_gpa, avail_len);
	vr->used = mem->to_hva(mem->opaque, used_gpa, used_len);
	if (!vr->avail || !vr->used)
		return -EFAULT;
	vr->size = size;
	vr->event_idx = event_idx;
	vr->desc_gpa = desc_gpa;
	vr->avail_gpa = avail_gpa;
	vr->used_gpa = used_gpa;
	vr->walk.size = size;
	vr->walk.indirect = indirect;
	vr->walk.desc_gpa = desc_gpa;
	vr->walk.ops = &gmem_ops;
	vr->walk.opaque = &vr->mem;
	/* The used ring starts where the guest left it after a reset: at 0. */
	vr->used_idx = vr->published_idx = vr->signalled_idx = le16toh(__atomic_load_n(&vr->used->idx, __ATOMIC_ACQUIRE));
	vr->last_avail_idx = vr->used_idx;
	return 0;
}

static uint16_t avail_idx(const struct sluice_vring *vr)
{
	return le16toh(__atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE));
}

/* Serving thread. */
int sluice_vring_pop(struct sluice_vring *vr, uint16_t *head, struct sluice_vq_seg *segs, unsigned int max,
		     unsigned int *nsegs, uint32_t *out_bytes, uint32_t *in_bytes, enum sluice_vq_err *err)
{
	int n = sluice_vq_avail_pending(avail_idx(vr), vr->last_avail_idx, vr->size, err);

	if (n < 0)
		return -EIO;
	if (!n)
		return 0;
	/* The acquire load of avail->idx orders this read after it. */
	*head = le16toh(vr->avail->ring[vr->last_avail_idx & (vr->size - 1)]);
	*err = sluice_vq_walk_chain(&vr->walk, *head, segs, max, nsegs, out_bytes, in_bytes);
	if (*err != SLUICE_VQ_OK)
		return -EIO;
	vr->last_avail_idx++;
	return 1;
}

/* Serving thread. */
void sluice_vring_disable_notify(struct sluice_vring *vr)
{
	/* With EVENT_IDX, avail_event simply stays behind; without, the flag asks for silence. */
	if (!vr->event_idx)
		__atomic_store_n(&vr->used->flags, htole16(VRING_USED_F_NO_NOTIFY), __ATOMIC_RELAXED);
}

/* Serving thread. */
bool sluice_vring_enable_notify(struct sluice_vring *vr)
{
	uint16_t *avail_event = (uint16_t *)&vr->used->ring[vr->size];

	if (vr->event_idx)
		__atomic_store_n(avail_event, htole16(vr->last_avail_idx), __ATOMIC_RELAXED);
	else
		__atomic_store_n(&vr->used->flags, 0, __ATOMIC_RELAXED);
	/* The guest writes avail->idx then reads our flag/event: a full barrier on our side too. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx(vr) != vr->last_avail_idx;
}

/* Serving thread.  The ring entries are read after a pop sees this index (acquire in avail_idx). */
bool sluice_vring_avail_pending(struct sluice_vring *vr)
{
	return avail_idx(vr) != vr->last_avail_idx;
}

/* Serving thread. */
void sluice_vring_push(struct sluice_vring *vr, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &vr->used->ring[vr->used_idx & (vr->size - 1)];

	e->id = htole32(head);
	e->len = htole32(len);
	vr->used_idx++;
}

/* Serving thread. */
bool sluice_vring_publish(struct sluice_vring *vr)
{
	uint16_t old = vr->signalled_idx, new_idx = vr->used_idx;
	uint16_t *used_event = (uint16_t *)&vr->avail->ring[vr->size];
	bool notify;

	if (new_idx == vr->published_idx)
		return false;
	/* Entries before the index. */
	__atomic_store_n(&vr->used->idx, htole16(new_idx), __ATOMIC_RELEASE);
	vr->published_idx = new_idx;
	/* The index before reading the guest's wish (it may have just re-enabled interrupts). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vr->event_idx)
		notify = sluice_vq_need_event(le16toh(__atomic_load_n(used_event, __ATOMIC_RELAXED)), new_idx, old);
	else
		notify = !(le16toh(__atomic_load_n(&vr->avail->flags, __ATOMIC_RELAXED)) & VRING_AVAIL_F_NO_INTERRUPT);
	vr->signalled_idx = new_idx;
	return notify;
}
