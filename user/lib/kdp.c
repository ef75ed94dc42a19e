// SPDX-License-Identifier: GPL-2.0
/* kdp.c - the kernel dataplane client: the VMM's side of the /dev/sluice-blk ioctls. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <glib.h>

#include "kdp.h"

#define KDP_DEV	"/dev/" SLUICE_BLK_DEVICE_NAME

struct sluice_kdp {
	int fd;
};

int sluice_kdp_probe(const char **why)
{
	int fd = open(KDP_DEV, O_RDWR | O_CLOEXEC), v, err;

	if (fd < 0) {
		err = errno;
		*why = err == ENOENT ? "sluice_blk module not loaded (no " KDP_DEV ")" :
		       err == EACCES ? "no permission to open " KDP_DEV : "cannot open " KDP_DEV;
		return -err;
	}
	v = ioctl(fd, SLUICE_BLK_GET_API_VERSION);
	close(fd);
	if (v != SLUICE_BLK_API_VERSION) {
		*why = "sluice_blk module speaks another ABI version (rebuild it with this VMM)";
		return -EPROTO;
	}
	*why = NULL;
	return 0;
}

int sluice_kdp_open(struct sluice_kdp **out, const struct sluice_kdp_region *regions,
		    unsigned int nregions, char **errp)
{
	struct sluice_blk_mem_table *mt;
	struct sluice_kdp *k;
	const char *why;
	unsigned int i;
	int ret;

	ret = sluice_kdp_probe(&why);
	if (ret) {
		*errp = g_strdup_printf("dataplane=kernel: %s", why);
		return ret;
	}
	if (!nregions || nregions > SLUICE_BLK_MAX_REGIONS) {
		*errp = g_strdup_printf("dataplane=kernel: %u RAM regions (the module takes 1..%d)", nregions,
					SLUICE_BLK_MAX_REGIONS);
		return -EINVAL;
	}
	k = g_new0(struct sluice_kdp, 1);
	k->fd = open(KDP_DEV, O_RDWR | O_CLOEXEC);
	if (k->fd < 0) {
		ret = -errno;
		*errp = g_strdup_printf("dataplane=kernel: open %s: %s", KDP_DEV, strerror(errno));
		goto err_free;
	}
	if (ioctl(k->fd, SLUICE_BLK_SET_OWNER) < 0) {
		ret = -errno;
		*errp = g_strdup_printf("dataplane=kernel: SET_OWNER: %s", strerror(errno));
		goto err_close;
	}
	mt = g_malloc0(sizeof(*mt) + nregions * sizeof(mt->regions[0]));
	mt->nregions = nregions;
	for (i = 0; i < nregions; i++) {
		mt->regions[i].guest_phys_addr = regions[i].gpa;
		mt->regions[i].memory_size = regions[i].size;
		mt->regions[i].userspace_addr = (uintptr_t)regions[i].hva;
	}
	ret = ioctl(k->fd, SLUICE_BLK_SET_MEM_TABLE, mt) < 0 ? -errno : 0;
	g_free(mt);
	if (ret) {
		*errp = g_strdup_printf("dataplane=kernel: SET_MEM_TABLE: %s", strerror(-ret));
		goto err_close;
	}
	*out = k;
	return 0;

err_close:
	close(k->fd);
err_free:
	g_free(k);
	return ret;
}

void sluice_kdp_close(struct sluice_kdp *k)
{
	if (!k)
		return;
	close(k->fd);	/* stops every queue: requests in flight complete first */
	g_free(k);
}

int sluice_kdp_set_backend(struct sluice_kdp *k, int fd, uint64_t capacity, bool readonly,
			   const char *name, const char serial[20], char **errp)
{
	struct sluice_blk_backend b = {
		.fd = fd,
		.flags = readonly ? SLUICE_BLK_BACKEND_F_READONLY : 0,
		.capacity = capacity,
	};

	g_strlcpy(b.name, name, sizeof(b.name));
	memcpy(b.serial, serial, sizeof(b.serial));
	if (ioctl(k->fd, SLUICE_BLK_SET_BACKEND, &b) < 0) {
		int err = errno;

		*errp = g_strdup_printf("dataplane=kernel: SET_BACKEND '%s': %s%s", name, strerror(err),
					err == EEXIST ? " (a disk of that name is already served)" : "");
		return -err;
	}
	return 0;
}

int sluice_kdp_set_extent_backend(struct sluice_kdp *k, int fd, uint64_t capacity, bool readonly,
				  const char *name, const char serial[20], unsigned int cluster_bits,
				  char **errp)
{
	struct sluice_blk_backend b = {
		.fd = fd,
		.flags = SLUICE_BLK_BACKEND_F_EXTENTS | (readonly ? SLUICE_BLK_BACKEND_F_READONLY : 0),
		.capacity = capacity,
	};
	struct sluice_blk_extent_config c = { .cluster_bits = cluster_bits };

	g_strlcpy(b.name, name, sizeof(b.name));
	memcpy(b.serial, serial, sizeof(b.serial));
	if (ioctl(k->fd, SLUICE_BLK_SET_BACKEND, &b) < 0) {
		int err = errno;

		*errp = g_strdup_printf("dataplane=kernel: SET_BACKEND '%s' (qcow2 extents): %s", name,
					strerror(err));
		return -err;
	}
	if (ioctl(k->fd, SLUICE_BLK_SET_EXTENT_CONFIG, &c) < 0) {
		*errp = g_strdup_printf("dataplane=kernel: cluster size 2^%u: %s", cluster_bits, strerror(errno));
		return -errno;
	}
	return 0;
}

int sluice_kdp_set_upcall(struct sluice_kdp *k, void *req_ring, void *done_ring, unsigned int entries,
			  int notify_fd, int done_fd, char **errp)
{
	struct sluice_blk_upcall u = {
		.req_ring = (uintptr_t)req_ring, .done_ring = (uintptr_t)done_ring, .entries = entries,
		.notify_fd = notify_fd, .done_fd = done_fd,
	};

	if (ioctl(k->fd, SLUICE_BLK_SET_UPCALL, &u) < 0) {
		*errp = g_strdup_printf("dataplane=kernel: SET_UPCALL: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int sluice_kdp_map(struct sluice_kdp *k, uint64_t guest, uint64_t len, uint64_t host, bool writable)
{
	uint64_t buf[(sizeof(struct sluice_blk_extents) + sizeof(struct sluice_blk_extent)) / 8] = { 0 };
	struct sluice_blk_extents *m = (struct sluice_blk_extents *)buf;

	m->nr = 1;
	m->ext[0] = (struct sluice_blk_extent){
		.guest_offset = guest, .length = len, .host_offset = host,
		.flags = writable ? SLUICE_BLK_EXTENT_F_WRITABLE : 0,
	};
	return ioctl(k->fd, SLUICE_BLK_MAP_EXTENTS, m) < 0 ? -errno : 0;
}

int sluice_kdp_unmap(struct sluice_kdp *k, uint64_t guest, uint64_t len)
{
	struct sluice_blk_range r = { .offset = guest, .length = len };

	return ioctl(k->fd, SLUICE_BLK_UNMAP_EXTENTS, &r) < 0 ? -errno : 0;
}

uint64_t sluice_kdp_features(struct sluice_kdp *k)
{
	uint64_t f = 0;

	if (ioctl(k->fd, SLUICE_BLK_GET_FEATURES, &f) < 0)
		return 0;
	return f;
}

int sluice_kdp_set_features(struct sluice_kdp *k, uint64_t features)
{
	return ioctl(k->fd, SLUICE_BLK_SET_FEATURES, &features) < 0 ? -errno : 0;
}

int sluice_kdp_start_queue(struct sluice_kdp *k, unsigned int idx, const struct sluice_kdp_queue *q,
			   char **errp)
{
	struct sluice_blk_vring_state num = { idx, q->size }, base = { idx, q->last_avail };
	struct sluice_blk_vring_state en = { idx, 1 };
	struct sluice_blk_vring_addr addr = {
		.index = idx, .desc_gpa = q->desc_gpa, .avail_gpa = q->avail_gpa, .used_gpa = q->used_gpa,
	};
	struct sluice_blk_vring_file kick = { idx, q->kick_fd }, call = { idx, q->call_fd };
	struct sluice_blk_vring_file err = { idx, q->err_fd };
	const char *what;

#define KDP_IOCTL(req, arg)					\
	do {							\
		if (ioctl(k->fd, req, arg) < 0) {		\
			what = #req;				\
			goto out_fail;				\
		}						\
	} while (0)
	KDP_IOCTL(SLUICE_BLK_SET_VRING_NUM, &num);
	KDP_IOCTL(SLUICE_BLK_SET_VRING_ADDR, &addr);
	KDP_IOCTL(SLUICE_BLK_SET_VRING_BASE, &base);
	KDP_IOCTL(SLUICE_BLK_SET_VRING_KICK, &kick);
	KDP_IOCTL(SLUICE_BLK_SET_VRING_CALL, &call);
	KDP_IOCTL(SLUICE_BLK_SET_VRING_ERR, &err);
	KDP_IOCTL(SLUICE_BLK_SET_VRING_ENABLE, &en);
#undef KDP_IOCTL
	return 0;

out_fail:
	*errp = g_strdup_printf("dataplane=kernel: queue %u: %s: %s", idx, what + strlen("SLUICE_BLK_"),
				strerror(errno));
	return -errno;
}

int sluice_kdp_stop_queue(struct sluice_kdp *k, unsigned int idx, uint16_t *last_avail)
{
	struct sluice_blk_vring_state s = { idx, 0 };

	if (ioctl(k->fd, SLUICE_BLK_GET_VRING_BASE, &s) < 0)
		return -errno;
	if (last_avail)
		*last_avail = (uint16_t)s.num;
	return 0;
}

int sluice_kdp_stats(struct sluice_kdp *k, unsigned int idx, struct sluice_blk_queue_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->index = idx;
	return ioctl(k->fd, SLUICE_BLK_GET_STATS, st) < 0 ? -errno : 0;
}

int sluice_kdp_reset(struct sluice_kdp *k)
{
	return ioctl(k->fd, SLUICE_BLK_RESET) < 0 ? -errno : 0;
}
