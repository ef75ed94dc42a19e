// SPDX-License-Identifier: GPL-2.0
/* file.c - the "file" protocol driver: host regular files and block devices through io_uring or the thread pool. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <glib.h>
#include <liburing.h>

#include "aio.h"
#include "block-int.h"
#include "block.h"
#include "coroutine.h"
#include "thread-pool.h"

/* Largest iovec array copied on the stack when a request must be resumed (larger ones: heap). */
#define FILE_IOV_MAX	64
/* Largest single-buffer transfer put in one SQE (its length field is 32 bits). */
#define FILE_RW_MAX	(1u << 30)

/* Set at open; the nowait_* fields change at run time from any ctx (atomics, relaxed). */
struct file_state {
	int fd;
	bool is_bdev;
	bool use_threads;		/* aio=threads */
	bool direct;			/* O_DIRECT */
	bool in_memory;			/* tmpfs/ramfs: buffered I/O is a memory copy, done inline */
	bool nowait_read_broken;	/* RWF_NOWAIT reads refused: stop trying */
	bool nowait_write_broken;	/* RWF_NOWAIT writes refused: stop trying */
	unsigned int nowait_write_misses; /* consecutive RWF_NOWAIT writes that did nothing */
};

/* An io_uring request of a coroutine; lives on the coroutine's stack. */
struct file_uring_req {
	struct sluice_aio_uring_req req;
	struct sluice_co *co;
	int res;
};

/* A blocking call for the thread pool. */
struct file_pool_req {
	int fd;
	int op;				/* FILE_OP_* */
	uint64_t offset;
	uint64_t bytes;
	const struct iovec *iov;
	int niov;
	int rw_flags;
	int mode;			/* fallocate mode */
};

enum {
	FILE_OP_READ,
	FILE_OP_WRITE,
	FILE_OP_FLUSH,
	FILE_OP_FALLOCATE,
	FILE_OP_BLKDISCARD,
	FILE_OP_TRUNCATE,
};

/* Worker thread: one blocking syscall; 0 / bytes or -errno. */
static int file_pool_fn(void *opaque)
{
	struct file_pool_req *r = opaque;
	uint64_t range[2];
	ssize_t n;

	switch (r->op) {
	case FILE_OP_READ:
		n = preadv2(r->fd, r->iov, r->niov, r->offset, r->rw_flags);
		return n < 0 ? -errno : (int)n;
	case FILE_OP_WRITE:
		n = pwritev2(r->fd, r->iov, r->niov, r->offset, r->rw_flags);
		return n < 0 ? -errno : (int)n;
	case FILE_OP_FLUSH:
		return fdatasync(r->fd) < 0 ? -errno : 0;
	case FILE_OP_FALLOCATE:
		return fallocate(r->fd, r->mode, r->offset, r->bytes) < 0 ? -errno : 0;
	case FILE_OP_BLKDISCARD:
		range[0] = r->offset;
		range[1] = r->bytes;
		return ioctl(r->fd, BLKDISCARD, range) < 0 ? -errno : 0;
	case FILE_OP_TRUNCATE:
		return ftruncate(r->fd, r->offset) < 0 ? -errno : 0;
	}
	return -EINVAL;
}

/* Home thread of the ring, from the loop: the CQE of a request arrived. */
static void file_uring_cb(struct sluice_aio_uring_req *req, int res)
{
	struct file_uring_req *r = container_of(req, struct file_uring_req, req);

	r->res = res;
	sluice_aio_co_wake(r->co);
}

/* Coroutine: queue @sqe (already prepared) for @r and yield until its CQE. */
static int coroutine_fn file_co_uring_wait(struct io_uring_sqe *sqe, struct file_uring_req *r)
{
	r->co = sluice_co_self();
	sluice_aio_sqe_set_req(sqe, &r->req);
	sluice_co_yield();
	return r->res;
}

/*
 * Coroutine in the node's ctx: one read or write attempt of @iov at
 * @offset; returns the bytes moved (maybe short) or -errno.
 */
static int coroutine_fn file_co_rw_once(struct file_state *s, bool write, uint64_t offset,
					const struct iovec *iov, int niov, int rw_flags)
{
	struct file_uring_req r = { .req.cb = file_uring_cb };
	struct io_uring_sqe *sqe;

	if (s->in_memory && !s->direct) {
		/*
		 * tmpfs and ramfs have no disk to wait for (RWF_NOWAIT is refused
		 * there on some kernels): a ring round trip would only add latency.
		 */
		ssize_t n = write ? pwritev2(s->fd, iov, niov, offset, rw_flags)
				  : preadv2(s->fd, iov, niov, offset, 0);

		return n < 0 ? -errno : (int)MIN(n, (ssize_t)INT_MAX);
	}
	if (s->use_threads) {
		struct file_pool_req pr = {
			.fd = s->fd, .op = write ? FILE_OP_WRITE : FILE_OP_READ,
			.offset = offset, .iov = iov, .niov = niov, .rw_flags = rw_flags,
		};

		return sluice_thread_pool_co_submit(file_pool_fn, &pr);
	}
	sqe = sluice_aio_get_sqe(sluice_aio_current());
	if (!sqe)
		return -EAGAIN;
	if (niov == 1) {
		/* The SQE length is 32 bits: never let a huge buffer wrap (the caller resumes short I/O). */
		unsigned int len = MIN(iov[0].iov_len, (size_t)FILE_RW_MAX);

		if (write)
			io_uring_prep_write(sqe, s->fd, iov[0].iov_base, len, offset);
		else
			io_uring_prep_read(sqe, s->fd, iov[0].iov_base, len, offset);
	} else {
		if (write)
			io_uring_prep_writev(sqe, s->fd, iov, niov, offset);
		else
			io_uring_prep_readv(sqe, s->fd, iov, niov, offset);
	}
	sqe->rw_flags = rw_flags;
	return file_co_uring_wait(sqe, &r);
}

/*
 * Coroutine in the node's ctx: move all @bytes, resuming short transfers
 * where they stopped.  Only the first @bytes of @iov are used (the block
 * layer checked that it holds that many).  Reads at EOF are zero-filled (the
 * node may be longer than the file, e.g. an O_DIRECT tail block).  For
 * buffered I/O try the page cache inline first (RWF_NOWAIT) and queue only
 * what is left.
 */
static int coroutine_fn file_co_rw(struct sluice_bds *bs, bool write, uint64_t offset,
				   uint64_t bytes, struct iovec *iov, int niov, int flags)
{
	struct file_state *s = bs->opaque;
	int rw_flags = (write && (flags & SLUICE_BDRV_REQ_FUA)) ? RWF_DSYNC : 0;
	struct iovec local[FILE_IOV_MAX], *slice = local, *cur = iov;
	int ncur = niov, eagain = 0, ret = 0;
	uint64_t done = 0;
	bool *broken = write ? &s->nowait_write_broken : &s->nowait_read_broken;

	/* Resumed or trimmed requests need a copy of (part of) @iov; big ones on the heap. */
	if (niov > FILE_IOV_MAX)
		slice = g_new(struct iovec, niov);
	if (sluice_iov_size(iov, niov) != bytes) {
		ncur = sluice_iov_slice(slice, MAX(niov, FILE_IOV_MAX), iov, niov, 0, bytes);
		if (ncur < 0) {
			ret = -EINVAL;
			goto out;
		}
		cur = slice;
	}
	if (!s->direct && !__atomic_load_n(broken, __ATOMIC_RELAXED) && !rw_flags) {
		ssize_t n = write ? pwritev2(s->fd, cur, ncur, offset, RWF_NOWAIT)
				  : preadv2(s->fd, cur, ncur, offset, RWF_NOWAIT);

		if (n == (ssize_t)bytes) {
			if (write)
				__atomic_store_n(&s->nowait_write_misses, 0, __ATOMIC_RELAXED);
			goto out;
		}
		if (n > 0)
			done = n;
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			__atomic_store_n(broken, true, __ATOMIC_RELAXED);	/* EOPNOTSUPP and the like */
		else if (n == 0 && !write)
			goto eof;
		/* A filesystem that never writes without waiting: stop asking. */
		if (write && n <= 0 &&
		    __atomic_add_fetch(&s->nowait_write_misses, 1, __ATOMIC_RELAXED) >= 64)
			__atomic_store_n(broken, true, __ATOMIC_RELAXED);
	}
	while (done < bytes) {
		int n;

		if (done) {
			ncur = sluice_iov_slice(slice, MAX(niov, FILE_IOV_MAX), iov, niov, done,
						bytes - done);
			if (ncur < 0) {
				ret = -EINVAL;
				goto out;
			}
			cur = slice;
		}
		n = file_co_rw_once(s, write, offset + done, cur, ncur, rw_flags);
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN && ++eagain < 1000) {
			/*
			 * No SQE (the ring is full) or the device said "later": let
			 * the loop reap completions first, backing off to 1 ms.
			 */
			sluice_co_sleep_ns((int64_t)MIN(eagain, 100) * 10000);
			continue;
		}
		if (n < 0) {
			ret = n;
			goto out;
		}
		if (n == 0) {
			if (write) {
				ret = -EIO;
				goto out;
			}
			goto eof;
		}
		done += n;
		/*
		 * An O_DIRECT read that stopped on an unaligned byte stopped at EOF
		 * (the file's tail): a retry there would be refused.  One that
		 * stopped on an aligned byte (a fault in the buffer, a signal, a
		 * network filesystem) is resumed like any other short transfer.
		 */
		if (!write && s->direct && done < bytes && done % bs->request_alignment)
			goto eof;
	}
	goto out;

eof:
	sluice_iov_memset(iov, niov, done, 0, bytes - done);
out:
	if (slice != local)
		g_free(slice);
	return ret;
}

/* Coroutine in the node's ctx. */
static int coroutine_fn file_co_preadv(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
				       struct iovec *iov, int niov, int flags)
{
	return file_co_rw(bs, false, offset, bytes, iov, niov, flags);
}

/*
 * Coroutine in the node's ctx.  An O_DIRECT write of the last, partial
 * block of a regular file (a block layer RMW) grows the file to the block
 * end: cut it back to the node's length.
 */
static int coroutine_fn file_co_pwritev(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					struct iovec *iov, int niov, int flags)
{
	struct file_state *s = bs->opaque;
	int ret = file_co_rw(bs, true, offset, bytes, iov, niov, flags);

	if (s->direct && !s->is_bdev && offset + bytes > (uint64_t)bs->total_bytes &&
	    ftruncate(s->fd, bs->total_bytes) < 0 && ret >= 0)
		ret = -errno;
	return ret;
}

/* Coroutine in the node's ctx: run a non-I/O syscall in the pool. */
static int coroutine_fn file_co_pool(struct file_state *s, int op, uint64_t offset,
				     uint64_t bytes, int mode)
{
	struct file_pool_req pr = {
		.fd = s->fd, .op = op, .offset = offset, .bytes = bytes, .mode = mode,
	};

	return sluice_thread_pool_co_submit(file_pool_fn, &pr);
}

/* Coroutine in the node's ctx: fdatasync. */
static int coroutine_fn file_co_flush(struct sluice_bds *bs)
{
	struct file_state *s = bs->opaque;
	struct file_uring_req r = { .req.cb = file_uring_cb };
	struct io_uring_sqe *sqe;

	if (s->use_threads)
		return file_co_pool(s, FILE_OP_FLUSH, 0, 0, 0);
	sqe = sluice_aio_get_sqe(sluice_aio_current());
	if (!sqe)
		return file_co_pool(s, FILE_OP_FLUSH, 0, 0, 0);
	io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
	return file_co_uring_wait(sqe, &r);
}

/* Map "the filesystem cannot" errnos to -ENOTSUP. */
static int file_notsup(int ret)
{
	if (ret == -EOPNOTSUPP || ret == -ENOTTY || ret == -ENOSYS)
		return -ENOTSUP;
	return ret;
}

/* Coroutine in the node's ctx: punch a hole (file) or BLKDISCARD (block device). */
static int coroutine_fn file_co_pdiscard(struct sluice_bds *bs, uint64_t offset, uint64_t bytes)
{
	struct file_state *s = bs->opaque;

	if (s->is_bdev)
		return file_notsup(file_co_pool(s, FILE_OP_BLKDISCARD, offset, bytes, 0));
	return file_notsup(file_co_pool(s, FILE_OP_FALLOCATE, offset, bytes,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE));
}

/* Coroutine in the node's ctx: zero a range without writing buffers, or -ENOTSUP. */
static int coroutine_fn file_co_pwrite_zeroes(struct sluice_bds *bs, uint64_t offset,
					      uint64_t bytes, int flags)
{
	struct file_state *s = bs->opaque;
	int ret = -ENOTSUP;

	if (flags & SLUICE_BDRV_REQ_MAY_UNMAP) {
		ret = file_notsup(file_co_pool(s, FILE_OP_FALLOCATE, offset, bytes,
					       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE));
		if (ret != -ENOTSUP && ret != -EINVAL)
			goto out;
	}
	ret = file_notsup(file_co_pool(s, FILE_OP_FALLOCATE, offset, bytes,
				       FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE));
	if (ret == -EINVAL)
		ret = -ENOTSUP;
out:
	if (ret == 0 && (flags & SLUICE_BDRV_REQ_FUA))
		ret = file_co_flush(bs);
	return ret;
}

/* Coroutine in the node's ctx: ftruncate (regular files only). */
static int coroutine_fn file_co_truncate(struct sluice_bds *bs, uint64_t size)
{
	struct file_state *s = bs->opaque;

	if (s->is_bdev)
		return (int64_t)size == bs->total_bytes ? 0 : -ENOTSUP;
	return file_co_pool(s, FILE_OP_TRUNCATE, size, 0, 0);
}

/*
 * Coroutine in the node's ctx: data or hole at @offset, by SEEK_DATA /
 * SEEK_HOLE (lseek does not block for long on local filesystems).
 */
static int coroutine_fn file_co_block_status(struct sluice_bds *bs, uint64_t offset, uint64_t bytes,
					     uint64_t *pnum, uint64_t *map, struct sluice_bds **file)
{
	struct file_state *s = bs->opaque;
	off_t data, hole;

	*map = offset;
	*file = bs;
	*pnum = bytes;
	if (s->is_bdev)
		return SLUICE_BLOCK_DATA | SLUICE_BLOCK_ALLOCATED | SLUICE_BLOCK_OFFSET_VALID;

	data = lseek(s->fd, offset, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO)	/* a hole up to EOF (or past EOF) */
			return SLUICE_BLOCK_ZERO | SLUICE_BLOCK_OFFSET_VALID;
		/* SEEK_DATA unsupported: everything is data. */
		return SLUICE_BLOCK_DATA | SLUICE_BLOCK_ALLOCATED | SLUICE_BLOCK_OFFSET_VALID;
	}
	if ((uint64_t)data > offset) {
		*pnum = MIN(bytes, (uint64_t)data - offset);
		return SLUICE_BLOCK_ZERO | SLUICE_BLOCK_OFFSET_VALID;
	}
	hole = lseek(s->fd, offset, SEEK_HOLE);
	if (hole > (off_t)offset)
		*pnum = MIN(bytes, (uint64_t)hole - offset);
	return SLUICE_BLOCK_DATA | SLUICE_BLOCK_ALLOCATED | SLUICE_BLOCK_OFFSET_VALID;
}

/* Any thread. */
static int64_t file_getlength(struct sluice_bds *bs)
{
	struct file_state *s = bs->opaque;
	struct stat st;
	uint64_t size;

	if (s->is_bdev) {
		if (ioctl(s->fd, BLKGETSIZE64, &size) < 0)
			return -errno;
		return size;
	}
	if (fstat(s->fd, &st) < 0)
		return -errno;
	return st.st_size;
}

/* Any thread. */
static int64_t file_get_allocated_size(struct sluice_bds *bs)
{
	struct file_state *s = bs->opaque;
	struct stat st;

	if (fstat(s->fd, &st) < 0)
		return -errno;
	return (int64_t)st.st_blocks * 512;
}

/* Main thread: the O_DIRECT alignment of an open fd. */
static uint32_t file_dio_alignment(struct file_state *s)
{
	int ssz = 0;

	if (s->is_bdev) {
		if (ioctl(s->fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
			return ssz;
		return 512;
	}
#ifdef STATX_DIOALIGN
	{
		struct statx stx;

		if (statx(s->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
		    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
			uint32_t a = MAX(stx.stx_dio_offset_align, stx.stx_dio_mem_align);

			/* The block layer needs a power of two. */
			if (!(a & (a - 1)))
				return a;
		}
	}
#endif
	return 4096;
}

/* Main thread. */
static int file_open(struct sluice_bds *bs, const char *filename, int flags, char **errp)
{
	struct file_state *s = bs->opaque;
	int oflags = O_CLOEXEC;
	struct stat st;

	oflags |= (flags & SLUICE_BDRV_O_RDWR) ? O_RDWR : O_RDONLY;
	if (flags & SLUICE_BDRV_O_NOCACHE)
		oflags |= O_DIRECT;
	s->fd = open(filename, oflags);
	if (s->fd < 0) {
		int err = errno;

		if (errp) {
			if (err == EINVAL && (oflags & O_DIRECT))
				*errp = g_strdup_printf("Could not open '%s': cache=none (O_DIRECT) is not supported here: %s",
							filename, strerror(err));
			else
				*errp = g_strdup_printf("Could not open '%s': %s", filename,
							strerror(err));
		}
		return -err;
	}
	if (fstat(s->fd, &st) < 0) {
		int err = errno;

		if (errp)
			*errp = g_strdup_printf("Could not stat '%s': %s", filename, strerror(err));
		goto err_close_fd;
	}
	if (S_ISBLK(st.st_mode)) {
		s->is_bdev = true;
	} else if (S_ISREG(st.st_mode)) {
		struct statfs sfs;

		s->in_memory = !fstatfs(s->fd, &sfs) &&
			       (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
	} else if (!S_ISREG(st.st_mode)) {
		if (errp)
			*errp = g_strdup_printf("'%s' is not a regular file or a block device",
						filename);
		errno = EINVAL;
		goto err_close_fd;
	}
	s->use_threads = flags & SLUICE_BDRV_O_THREADS;
	s->direct = flags & SLUICE_BDRV_O_NOCACHE;
	bs->request_alignment = s->direct ? file_dio_alignment(s) : 1;
	bs->max_transfer = 1u << 30;
	return 0;

err_close_fd:
	{
		int err = errno;

		close(s->fd);
		s->fd = -1;
		return -err;
	}
}

/* Main thread, drained. */
static void file_close(struct sluice_bds *bs)
{
	struct file_state *s = bs->opaque;

	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

/* Main thread: create (or truncate) @filename at @size bytes. */
static int file_create(const char *filename, uint64_t size, const char *options, char **errp)
{
	struct stat st;
	int fd, err;

	fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = errno;
		if (errp)
			*errp = g_strdup_printf("Could not create '%s': %s", filename, strerror(err));
		return -err;
	}
	if (fstat(fd, &st) < 0)
		goto err_errno;
	if (S_ISBLK(st.st_mode)) {
		close(fd);
		return 0;	/* a device keeps its size */
	}
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, size) < 0)
		goto err_errno;
	close(fd);
	return 0;

err_errno:
	err = errno;
	if (errp)
		*errp = g_strdup_printf("Could not resize '%s' to %llu bytes: %s", filename,
					(unsigned long long)size, strerror(err));
	close(fd);
	return -err;
}

const struct sluice_block_driver sluice_bdrv_file = {
	.format_name		= "file",
	.instance_size		= sizeof(struct file_state),
	.is_protocol		= true,
	.multiqueue		= true,
	.open			= file_open,
	.close			= file_close,
	.create			= file_create,
	.co_preadv		= file_co_preadv,
	.co_pwritev		= file_co_pwritev,
	.co_flush		= file_co_flush,
	.co_pdiscard		= file_co_pdiscard,
	.co_pwrite_zeroes	= file_co_pwrite_zeroes,
	.co_truncate		= file_co_truncate,
	.co_block_status	= file_co_block_status,
	.getlength		= file_getlength,
	.get_allocated_size	= file_get_allocated_size,
};
