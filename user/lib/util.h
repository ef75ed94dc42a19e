/* SPDX-License-Identifier: GPL-2.0 */
/* util.h - small helpers shared by sluice's userspace: size parsing and formatting, whole reads. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parse a size the way qemu-img and qemu-io do: a decimal number with an
 * optional suffix b (bytes), k/K, m/M, g/G, t/T, p/P, e/E (powers of 1024).
 * A bare number means bytes.  Returns 0, -EINVAL for a malformed string or
 * -ERANGE when the value does not fit in 63 bits.  Thread-safe.
 */
int sluice_parse_size(const char *str, uint64_t *out);

/* Format @bytes as qemu does ("1 GiB", "512 KiB", "4.5 MiB") into @buf; returns @buf. */
char *sluice_format_size(uint64_t bytes, char *buf, size_t len);

/*
 * Any thread.  All @len bytes at @off of @fd into @buf, in as many pread()s
 * as it takes (EINTR retried): 0, -errno, or -EIO when the file ends first.
 */
int sluice_pread_all(int fd, void *buf, uint64_t len, uint64_t off);

#endif /* SLUICE_UTIL_H */
