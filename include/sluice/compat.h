/* SPDX-License-Identifier: GPL-2.0 */
/* compat.h - the few types and helpers that let shared C build both in sluice_blk.ko and in userspace. */
#ifndef SLUICE_COMPAT_H
#define SLUICE_COMPAT_H

#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/string.h>
#include <linux/types.h>
#include <asm/byteorder.h>
#define sluice_le16_to_cpu(x)	le16_to_cpu(x)
#define sluice_le32_to_cpu(x)	le32_to_cpu(x)
#define sluice_le64_to_cpu(x)	le64_to_cpu(x)
#else
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <linux/types.h>
#define sluice_le16_to_cpu(x)	le16toh(x)
#define sluice_le32_to_cpu(x)	le32toh(x)
#define sluice_le64_to_cpu(x)	le64toh(x)
#endif

#endif /* SLUICE_COMPAT_H */
