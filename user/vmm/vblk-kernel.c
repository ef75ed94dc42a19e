// SPDX-License-Identifier: GPL-2.0
/* vblk-kernel.c - virtio-blk on the kernel dataplane (/dev/sluice-blk): the glue between the device and sluice_blk.ko. */
#include <errno.h>

#include <glib.h>

#include "virtio-blk.h"

/*
 * Main thread, at setup (dataplane=kernel or auto): open /dev/sluice-blk,
 * SET_OWNER, SET_MEM_TABLE (vblk->vm's RAM regions), SET_BACKEND.  Returns 0
 * and keeps its state in vblk->kernel, or -errno with *@errp.  auto falls
 * back to the user dataplane on any error.
 */
int sluice_vblk_kernel_attach(struct sluice_vblk *vblk, char **errp)
{
	*errp = g_strdup("dataplane=kernel: not implemented yet");
	return -ENOTSUP;
}

/*
 * vCPU thread, transport lock and vblk->state_lock held, at DRIVER_OK: per
 * enabled queue, vblk->queues[i].{size, desc_gpa, avail_gpa, used_gpa,
 * kick_fd, call_fd} and the negotiated vblk->features go to SET_FEATURES,
 * SET_VRING_NUM/ADDR/BASE/KICK/CALL and SET_VRING_ENABLE.
 */
int sluice_vblk_kernel_start(struct sluice_vblk *vblk)
{
	return -ENOTSUP;
}

/* vCPU thread, locks as above, at device reset: SET_VRING_ENABLE(0) on every queue (waits for requests). */
void sluice_vblk_kernel_stop(struct sluice_vblk *vblk)
{
}

/* Main thread, vCPUs stopped: close the device. */
void sluice_vblk_kernel_detach(struct sluice_vblk *vblk)
{
}
