/* SPDX-License-Identifier: GPL-2.0 */
/* kdp.h - the kernel dataplane client: drive one sluice_blk.ko disk (/dev/sluice-blk) from userspace. */
#ifndef SLUICE_KDP_H
#define SLUICE_KDP_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/sluice_blk.h>

/* One region of guest RAM as the VMM maps it. */
struct sluice_kdp_region {
	uint64_t gpa;
	uint64_t size;
	void *hva;
};

struct sluice_kdp;

/*
 * Any thread.  0 when /dev/sluice-blk can be opened and speaks our ABI,
 * else -errno with a one-line reason in *@why (static string).
 */
int sluice_kdp_probe(const char **why);

/*
 * Main thread (the disk's owner is the calling process).  Open a disk, bind
 * it to this process and give it guest RAM.  -errno and *@errp (g_malloc'd)
 * on failure.
 */
int sluice_kdp_open(struct sluice_kdp **out, const struct sluice_kdp_region *regions,
		    unsigned int nregions, char **errp);
void sluice_kdp_close(struct sluice_kdp *k);

/* Main thread.  The backend: an open raw image or block device. */
int sluice_kdp_set_backend(struct sluice_kdp *k, int fd, uint64_t capacity, bool readonly,
			   const char *name, const char serial[20], char **errp);

/*
 * Main thread.  qcow2 (extent mode): the backend is the image file, @capacity
 * its virtual size; then the cluster size and the upcall rings (see
 * Documentation/kmod.rst).  Rings: hdr + @entries records each, in our memory.
 */
int sluice_kdp_set_extent_backend(struct sluice_kdp *k, int fd, uint64_t capacity, bool readonly,
				  const char *name, const char serial[20], unsigned int cluster_bits,
				  char **errp);
int sluice_kdp_set_upcall(struct sluice_kdp *k, void *req_ring, void *done_ring, unsigned int entries,
			  int notify_fd, int done_fd, char **errp);
/* Any thread.  Map guest clusters to host clusters / revoke a range (returns once no kernel request uses it). */
int sluice_kdp_map(struct sluice_kdp *k, uint64_t guest, uint64_t len, uint64_t host, bool writable);
int sluice_kdp_unmap(struct sluice_kdp *k, uint64_t guest, uint64_t len);

/* Feature bits the module serves; the ones the driver accepted (queues stopped). */
uint64_t sluice_kdp_features(struct sluice_kdp *k);
int sluice_kdp_set_features(struct sluice_kdp *k, uint64_t features);

/* What the module needs to serve one queue. */
struct sluice_kdp_queue {
	uint16_t size;
	uint16_t last_avail;		/* next avail index (0 after a reset) */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	int kick_fd;			/* the queue's ioeventfd */
	int call_fd;			/* the irqfd of the queue's MSI-X vector */
	int err_fd;			/* signalled when the module stopped the queue on a malformed chain */
};

/* Main thread.  Hand queue @idx to the module / take it back (its in-flight requests finish first). */
int sluice_kdp_start_queue(struct sluice_kdp *k, unsigned int idx, const struct sluice_kdp_queue *q,
			   char **errp);
int sluice_kdp_stop_queue(struct sluice_kdp *k, unsigned int idx, uint16_t *last_avail);
/* Any thread.  The module's counters for queue @idx. */
int sluice_kdp_stats(struct sluice_kdp *k, unsigned int idx, struct sluice_blk_queue_stats *st);
/* Main thread.  Stop every queue and forget the backend (device reset). */
int sluice_kdp_reset(struct sluice_kdp *k);

#endif /* SLUICE_KDP_H */
