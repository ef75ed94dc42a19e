// SPDX-License-Identifier: GPL-2.0
/* qcow2-compress.c - compressed clusters: raw deflate (zlib, window 2^12) and zstd, as QEMU writes them. */
#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include <zlib.h>
#include <zstd.h>

#include "qcow2.h"

/* Any context: raw deflate stream into exactly @dst_len bytes (trailing input is sector padding). */
static int zlib_decompress(void *dst, size_t dst_len, const void *src, size_t src_len)
{
	z_stream z;
	int ret;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)src;
	z.avail_in = src_len;
	z.next_out = dst;
	z.avail_out = dst_len;
	ret = inflate(&z, Z_FINISH);
	/* QEMU accepts a full output buffer even when the stream has not ended (padding). */
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0)
		ret = 0;
	else
		ret = -EIO;
	inflateEnd(&z);
	return ret;
}

/* Any context: zstd frames until @dst_len bytes are out; what follows is padding. */
static int zstd_decompress(void *dst, size_t dst_len, const void *src, size_t src_len)
{
	ZSTD_DStream *d = ZSTD_createDStream();
	ZSTD_outBuffer out = { .dst = dst, .size = dst_len };
	ZSTD_inBuffer in = { .src = src, .size = src_len };
	int ret = 0;

	if (!d)
		return -ENOMEM;
	while (out.pos < out.size) {
		size_t last_in = in.pos, last_out = out.pos;
		size_t r = ZSTD_decompressStream(d, &out, &in);

		if (ZSTD_isError(r)) {
			ret = -EIO;
			break;
		}
		/* No progress possible: the data ends short of a cluster. */
		if (out.pos < out.size && last_in == in.pos && last_out == out.pos) {
			ret = -EIO;
			break;
		}
	}
	ZSTD_freeDStream(d);
	return ret;
}

/* Any context: see qcow2.h. */
int qcow2_decompress(unsigned int type, void *dst, size_t dst_len, const void *src, size_t src_len)
{
	switch (type) {
	case QCOW2_COMPRESSION_ZLIB:
		return zlib_decompress(dst, dst_len, src, src_len);
	case QCOW2_COMPRESSION_ZSTD:
		return zstd_decompress(dst, dst_len, src, src_len);
	default:
		return -ENOTSUP;
	}
}

/* Any context: see qcow2.h. */
ssize_t qcow2_compress(unsigned int type, void *dst, size_t dst_len, const void *src, size_t src_len)
{
	z_stream z;
	size_t r;
	int ret;

	switch (type) {
	case QCOW2_COMPRESSION_ZLIB:
		memset(&z, 0, sizeof(z));
		if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			return -ENOMEM;
		z.next_in = (Bytef *)src;
		z.avail_in = src_len;
		z.next_out = dst;
		z.avail_out = dst_len;
		ret = deflate(&z, Z_FINISH);
		r = dst_len - z.avail_out;
		deflateEnd(&z);
		if (ret != Z_STREAM_END || r >= src_len)
			return -ENOSPC;
		return r;
	case QCOW2_COMPRESSION_ZSTD:
		r = ZSTD_compress(dst, dst_len, src, src_len, ZSTD_CLEVEL_DEFAULT);
		if (ZSTD_isError(r) || r >= src_len)
			return -ENOSPC;
		return r;
	default:
		return -ENOTSUP;
	}
}
