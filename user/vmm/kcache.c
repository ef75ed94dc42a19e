// SPDX-License-Identifier: GPL-2.0
/* kcache.c - the decompressed-kernel cache: a bzImage's vmlinux kept on disk, keyed by its payload's bytes. */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm.h"

/*
 * An entry is one file, "vmlinux-<32 hex digits of the key>": a 64-byte
 * header, then the ELF exactly as the payload decompresses.  It is written
 * to a temporary name, synced and renamed, so a reader sees a whole entry or
 * none; a header that does not match (format, key, length, file size) is a
 * miss.  At most SLUICE_KCACHE_KEEP entries stay: a hit touches its entry's
 * mtime, a store drops the least recently used beyond that.
 */
#define SLUICE_KCACHE_MAGIC	"sluice-vmlinux-1"
#define SLUICE_KCACHE_KEEP	4

struct sluice_kcache_hdr {
	char magic[16];
	uint64_t payload_len;		/* the rest little-endian */
	uint64_t key[2];
	uint64_t elf_len;
	uint8_t reserved[16];
};

_Static_assert(sizeof(struct sluice_kcache_hdr) == SLUICE_KCACHE_HDR, "entry header size");

/* Any thread.  What query-status says of @load. */
const char *sluice_kernel_load_name(enum sluice_kernel_load load)
{
	static const char *const names[] = {
		[SLUICE_KERNEL_BZIMAGE] = "bzimage",
		[SLUICE_KERNEL_DECOMPRESSED] = "decompressed",
		[SLUICE_KERNEL_DECOMPRESSED_STORED] = "decompressed-stored",
		[SLUICE_KERNEL_CACHED] = "cached",
	};

	return (unsigned int)load < sizeof(names) / sizeof(names[0]) ? names[load] : "unknown";
}

/* Any thread.  One 64-bit lane of the key: multiply-rotate over little-endian words, then a final mix. */
static uint64_t kcache_lane(const uint8_t *p, size_t len, uint64_t seed, uint64_t mul)
{
	uint64_t h = seed ^ (len * mul), w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h ^= le64toh(w) * mul;
		h = (h << 29 | h >> 35) * 0x9e3779b97f4a7c15ULL;
	}
	for (w = 0; i < len; i++)
		w = w << 8 | p[i];
	h ^= w * mul;
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	return h ^ h >> 31;
}

/* Any thread.  The key of a payload: its length and two independent 64-bit lanes over its bytes. */
void sluice_kcache_key(const uint8_t *payload, size_t len, struct sluice_kcache_key *key)
{
	key->payload_len = len;
	key->h[0] = kcache_lane(payload, len, 0x243f6a8885a308d3ULL, 0xff51afd7ed558ccdULL);
	key->h[1] = kcache_lane(payload, len, 0x13198a2e03707344ULL, 0xc4ceb9fe1a85ec53ULL);
}

/* Any thread.  The entry's file name: "vmlinux-" and the key's 32 hex digits. */
static void kcache_name(const struct sluice_kcache_key *key, char *name, size_t len)
{
	snprintf(name, len, "vmlinux-%016llx%016llx", (unsigned long long)key->h[0], (unsigned long long)key->h[1]);
}

/* Main thread.  mkdir that accepts an existing directory. */
static int kcache_mkdir(const char *path)
{
	return mkdir(path, 0700) && errno != EEXIST ? -errno : 0;
}

/*
 * Main thread.  Open the cache directory: @dir, or with @dir NULL the
 * default, $XDG_CACHE_HOME/sluice or else $HOME/.cache/sluice (created
 * 0700).  It must be a real directory of ours that nobody else may write
 * to: an entry is a kernel the guest will run.  The directory's fd, or
 * -errno with the reason in @why.
 */
int sluice_kcache_open(const char *dir, const char **why)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char path[4096];
	struct stat st;
	int fd;

	if (dir) {
		snprintf(path, sizeof(path), "%s", dir);
	} else if (xdg && xdg[0] == '/') {
		snprintf(path, sizeof(path), "%s/sluice", xdg);
		kcache_mkdir(xdg);
	} else if (home && home[0] == '/') {
		snprintf(path, sizeof(path), "%s/.cache", home);
		kcache_mkdir(path);
		snprintf(path, sizeof(path), "%s/.cache/sluice", home);
	} else {
		*why = "neither XDG_CACHE_HOME nor HOME is an absolute path";
		return -ENOENT;
	}
	*why = "cannot be created";
	fd = kcache_mkdir(path);
	if (fd)
		return fd;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	*why = "cannot be opened (or is a symbolic link)";
	if (fd < 0)
		return -errno;
	*why = "is not a directory owned by this user and closed to others";
	if (fstat(fd, &st) || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(fd);
		return -EPERM;
	}
	*why = NULL;
	return fd;
}

/*
 * Main thread.  The entry of @key in @dirfd: its fd (the ELF starts at
 * SLUICE_KCACHE_HDR) and the ELF's length in *@elf_len, or -ENOENT.
 */
int sluice_kcache_lookup(int dirfd, const struct sluice_kcache_key *key, uint64_t *elf_len)
{
	struct sluice_kcache_hdr h;
	char name[64];
	struct stat st;
	uint64_t n;
	int fd;

	kcache_name(key, name, sizeof(name));
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    pread(fd, &h, sizeof(h), 0) != sizeof(h))
		goto out_miss;
	n = le64toh(h.elf_len);
	if (memcmp(h.magic, SLUICE_KCACHE_MAGIC, sizeof(h.magic)) || le64toh(h.payload_len) != key->payload_len ||
	    le64toh(h.key[0]) != key->h[0] || le64toh(h.key[1]) != key->h[1] || !n ||
	    (uint64_t)st.st_size != SLUICE_KCACHE_HDR + n)
		goto out_miss;
	futimens(fd, NULL);	/* recently used: the store's eviction keeps it */
	*elf_len = n;
	return fd;

out_miss:
	close(fd);
	return -ENOENT;
}

/* Main thread.  Drop the least recently used entries beyond SLUICE_KCACHE_KEEP (and stale temporaries). */
static void kcache_evict(int dirfd)
{
	struct { char name[64]; struct timespec t; } keep[SLUICE_KCACHE_KEEP + 1];
	unsigned int n = 0, i, j;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd = dup(dirfd);

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		bool tmp = !strncmp(de->d_name, ".vmlinux-", 9);

		if ((strncmp(de->d_name, "vmlinux-", 8) && !tmp) || strlen(de->d_name) >= sizeof(keep[0].name) ||
		    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (tmp) {
			/* Another store's, unless an hour old (that store died). */
			if (st.st_mtime + 3600 < time(NULL))
				unlinkat(dirfd, de->d_name, 0);
			continue;
		}
		/* Insert by mtime, newest first; what falls off the end goes. */
		for (i = 0; i < n && (keep[i].t.tv_sec > st.st_mtim.tv_sec ||
				      (keep[i].t.tv_sec == st.st_mtim.tv_sec && keep[i].t.tv_nsec >= st.st_mtim.tv_nsec)); i++)
			;
		if (i == SLUICE_KCACHE_KEEP) {
			unlinkat(dirfd, de->d_name, 0);
			continue;
		}
		if (n == SLUICE_KCACHE_KEEP)
			unlinkat(dirfd, keep[--n].name, 0);
		for (j = n++; j > i; j--)
			keep[j] = keep[j - 1];
		memcpy(keep[i].name, de->d_name, strlen(de->d_name) + 1);	/* shorter than name: checked above */
		keep[i].t = st.st_mtim;
	}
	closedir(d);
}

/*
 * Main thread.  Keep @elf (@len bytes, the payload of @key decompressed) in
 * @dirfd: written under a temporary name, synced, then renamed into place.
 * 0 or -errno; a failed store leaves no entry behind.
 */
int sluice_kcache_store(int dirfd, const struct sluice_kcache_key *key, const uint8_t *elf, uint64_t len)
{
	struct sluice_kcache_hdr h = { .magic = SLUICE_KCACHE_MAGIC };
	char name[64], tmp[96];
	uint64_t done = 0;
	uint32_t tag;
	ssize_t w;
	int fd, ret = -EIO;

	kcache_name(key, name, sizeof(name));
	/* A name of our own (pid and a random tag: stores may run at once, even in other pid namespaces). */
	if (getrandom(&tag, sizeof(tag), 0) != sizeof(tag))
		tag = (uint32_t)time(NULL);
	snprintf(tmp, sizeof(tmp), ".%s.%d.%08x", name, (int)getpid(), tag);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	h.payload_len = htole64(key->payload_len);
	h.key[0] = htole64(key->h[0]);
	h.key[1] = htole64(key->h[1]);
	h.elf_len = htole64(len);
	w = write(fd, &h, sizeof(h));
	if (w != sizeof(h))
		goto out_unlink;
	while (done < len) {
		w = write(fd, elf + done, len - done > (1 << 30) ? 1 << 30 : len - done);
		if (w <= 0)
			goto out_unlink;
		done += (uint64_t)w;
	}
	/* Data on disk before the name: a crash must not leave a whole-looking entry of zeros. */
	w = -1;
	if (fdatasync(fd) || renameat(dirfd, tmp, dirfd, name))
		goto out_unlink;
	close(fd);
	kcache_evict(dirfd);
	return 0;

out_unlink:
	if (w < 0)
		ret = -errno;	/* else a short write: -EIO */
	close(fd);
	unlinkat(dirfd, tmp, 0);
	return ret;
}
