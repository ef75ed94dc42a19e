// SPDX-License-Identifier: GPL-2.0
/* vblk-kernel.c - virtio-blk on the kernel dataplane (/dev/sluice-blk): the glue between the device and sluice_blk.ko. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>

#include "aio.h"
#include "block.h"
#include "kdp.h"
#include "virtio-blk.h"
#include "vmm.h"

/* The kernel dataplane's state of one disk (vblk->kernel). */
struct vblk_kernel {
	struct sluice_kdp *kdp;
	int img_fd;			/* the image, as the module reads and writes it */
	char name[32];			/* /sys/class/sluice_blk/<name> */
	int err_fd[SLUICE_VIRTIO_MAX_QUEUES];	/* the module stopped a queue on a malformed chain */
	bool queue_started[SLUICE_VIRTIO_MAX_QUEUES];
};

/* Main thread (main loop): the module stopped a queue; the device needs a reset, the VM runs on. */
static void vblk_kernel_err_read(void *opaque)
{
	struct sluice_vblk_queue *q = opaque;
	struct vblk_kernel *k = q->vblk->kernel;
	uint64_t v;

	if (read(k->err_fd[q->index], &v, sizeof(v)) != sizeof(v))
		return;
	fprintf(stderr, "sluice: drive %s queue %u: sluice_blk stopped the queue on a malformed chain "
		"(see dmesg); device needs a reset\n", q->vblk->id, q->index);
	__atomic_store_n(&q->broken, true, __ATOMIC_RELAXED);
	sluice_virtio_pci_needs_reset(&q->vblk->vpci);
}

/* Main thread: undo vblk_kernel_attach's steps; safe on a partly built state. */
static void vblk_kernel_free(struct sluice_vblk *vblk, struct vblk_kernel *k)
{
	unsigned int i;

	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES; i++) {
		if (k->err_fd[i] < 0)
			continue;
		sluice_aio_set_fd_handler(sluice_block_main_ctx(), k->err_fd[i], NULL, NULL, NULL);
		close(k->err_fd[i]);
	}
	sluice_kdp_close(k->kdp);	/* stops the module's queues; their requests finish first */
	if (k->img_fd >= 0)
		close(k->img_fd);
	g_free(k);
	vblk->kernel = NULL;
}

/*
 * Main thread, at setup (dataplane=kernel or auto): open /dev/sluice-blk, bind
 * it to this process, give it guest RAM and the image.  Returns 0 and keeps
 * its state in vblk->kernel, or -errno with *@errp (auto then falls back to
 * the user dataplane).
 */
int sluice_vblk_kernel_attach(struct sluice_vblk *vblk, char **errp)
{
	struct sluice_vm *vm = vblk->vm;
	struct sluice_kdp_region regions[2] = {
		{ .gpa = 0, .size = vm->low_size, .hva = vm->ram },
		{ .gpa = SLUICE_HIGH_RAM_START, .size = vm->high_size, .hva = vm->ram + vm->low_size },
	};
	struct vblk_kernel *k;
	unsigned int i;
	int ret;

	if (strcmp(vblk->opts->format, "raw")) {
		*errp = g_strdup_printf("dataplane=kernel: format=%s is not served by sluice_blk yet (raw only)",
					vblk->opts->format);
		return -ENOTSUP;
	}
	k = g_new0(struct vblk_kernel, 1);
	k->img_fd = -1;
	for (i = 0; i < SLUICE_VIRTIO_MAX_QUEUES; i++)
		k->err_fd[i] = -1;
	vblk->kernel = k;

	ret = sluice_kdp_open(&k->kdp, regions, vm->high_size ? 2 : 1, errp);
	if (ret)
		goto err_free;
	k->img_fd = open(vblk->opts->file, (vblk->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (k->img_fd < 0) {
		ret = -errno;
		*errp = g_strdup_printf("dataplane=kernel: cannot open %s: %s", vblk->opts->file, strerror(errno));
		goto err_free;
	}
	/* The drive id names the disk in sysfs; another VMM may use the same id: then add our pid. */
	g_strlcpy(k->name, vblk->id, sizeof(k->name));
	ret = sluice_kdp_set_backend(k->kdp, k->img_fd, vblk->capacity, vblk->readonly, k->name,
				     vblk->serial, errp);
	if (ret == -EEXIST) {
		g_free(*errp);
		*errp = NULL;
		snprintf(k->name, sizeof(k->name), "%.20s.%d", vblk->id, (int)getpid());
		ret = sluice_kdp_set_backend(k->kdp, k->img_fd, vblk->capacity, vblk->readonly, k->name,
					     vblk->serial, errp);
	}
	if (ret)
		goto err_free;
	for (i = 0; i < vblk->nr_queues; i++) {
		k->err_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (k->err_fd[i] < 0) {
			ret = -errno;
			*errp = g_strdup_printf("dataplane=kernel: eventfd: %s", strerror(errno));
			goto err_free;
		}
		sluice_aio_set_fd_handler(sluice_block_main_ctx(), k->err_fd[i], vblk_kernel_err_read, NULL,
					  &vblk->queues[i]);
	}
	if (vblk->opts->dataplane == SLUICE_DATAPLANE_AUTO)
		fprintf(stderr, "sluice: drive %s: dataplane=auto: served by sluice_blk.ko (/sys/class/sluice_blk/%s)\n",
			vblk->id, k->name);
	return 0;

err_free:
	vblk_kernel_free(vblk, k);
	return ret;
}

/*
 * vCPU thread, transport lock and vblk->state_lock held, at DRIVER_OK: the
 * negotiated ring features and every enabled queue go to the module, which
 * serves them from now on.  Non-zero puts the device in NEEDS_RESET.
 */
int sluice_vblk_kernel_start(struct sluice_vblk *vblk)
{
	struct vblk_kernel *k = vblk->kernel;
	uint64_t features = vblk->features & sluice_kdp_features(k->kdp);
	unsigned int i;
	int ret;

	ret = sluice_kdp_set_features(k->kdp, features);
	if (ret) {
		fprintf(stderr, "sluice: drive %s: dataplane=kernel: features 0x%llx refused: %s\n", vblk->id,
			(unsigned long long)features, strerror(-ret));
		return ret;
	}
	for (i = 0; i < vblk->nr_queues; i++) {
		struct sluice_vblk_queue *q = &vblk->queues[i];
		struct sluice_kdp_queue kq = {
			.size = q->size, .last_avail = 0,
			.desc_gpa = q->desc_gpa, .avail_gpa = q->avail_gpa, .used_gpa = q->used_gpa,
			.kick_fd = q->kick_fd, .call_fd = q->call_fd, .err_fd = k->err_fd[i],
		};
		char *err = NULL;

		if (!q->enabled)
			continue;
		ret = sluice_kdp_start_queue(k->kdp, i, &kq, &err);
		if (ret) {
			fprintf(stderr, "sluice: drive %s: %s\n", vblk->id, err);
			g_free(err);
			sluice_vblk_kernel_stop(vblk);
			return ret;
		}
		k->queue_started[i] = true;
		__atomic_store_n(&q->broken, false, __ATOMIC_RELAXED);
	}
	return 0;
}

/* vCPU thread, locks as above, at device reset: the module stops each queue once its requests finished. */
void sluice_vblk_kernel_stop(struct sluice_vblk *vblk)
{
	struct vblk_kernel *k = vblk->kernel;
	unsigned int i;

	for (i = 0; i < vblk->nr_queues; i++) {
		if (!k->queue_started[i])
			continue;
		sluice_kdp_stop_queue(k->kdp, i, NULL);
		k->queue_started[i] = false;
	}
}

/* Any thread: the module's counters of queue @qi (query-block). */
int sluice_vblk_kernel_queue_stats(struct sluice_vblk *vblk, unsigned int qi, struct sluice_blk_queue_stats *st)
{
	struct vblk_kernel *k = vblk->kernel;

	if (!k)
		return -ENODEV;
	return sluice_kdp_stats(k->kdp, qi, st);
}

/* Any thread: the module's name of the disk (/sys/class/sluice_blk/<name>). */
const char *sluice_vblk_kernel_name(struct sluice_vblk *vblk)
{
	struct vblk_kernel *k = vblk->kernel;

	return k ? k->name : NULL;
}

/* Main thread, vCPUs stopped: close the device (the module finishes what is in flight). */
void sluice_vblk_kernel_detach(struct sluice_vblk *vblk)
{
	if (vblk->kernel)
		vblk_kernel_free(vblk, vblk->kernel);
}
