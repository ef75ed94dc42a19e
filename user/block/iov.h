/* SPDX-License-Identifier: GPL-2.0 */
/* iov.h - iovec helpers shared by the block layer and its users (the VMM's virtio-blk). */
#ifndef SLUICE_IOV_H
#define SLUICE_IOV_H

#include <stddef.h>
#include <sys/uio.h>

/* All pure, any thread. */
size_t sluice_iov_size(const struct iovec *iov, int niov);
/* Copy up to @n bytes of @iov, from byte @skip on, to @buf; returns the bytes copied. */
size_t sluice_iov_to_buf(const struct iovec *iov, int niov, size_t skip, void *buf, size_t n);
/* Copy @n bytes of @buf into @iov from byte @skip on; returns the bytes copied. */
size_t sluice_iov_from_buf(const struct iovec *iov, int niov, size_t skip, const void *buf, size_t n);
size_t sluice_iov_memset(const struct iovec *iov, int niov, size_t skip, int c, size_t n);
/*
 * Copy the part of @iov from byte @skip on, @n bytes, into @dst (at most
 * @dst_max entries).  Returns the number of entries used, or -EINVAL if it
 * does not fit.
 */
int sluice_iov_slice(struct iovec *dst, int dst_max, const struct iovec *iov, int niov,
		     size_t skip, size_t n);

#endif /* SLUICE_IOV_H */
