// SPDX-License-Identifier: GPL-2.0
/* kmod_abi.c - lab test of /dev/sluice-blk's ioctl ABI as far as it exists: version, unknown ioctls, one disk per open. */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/sluice_blk.h>

#include "ktap.h"

#define DEV "/dev/" SLUICE_BLK_DEVICE_NAME

static enum ktap_result api_version(void)
{
	int fd, v;

	KTAP_SYSCALL(fd = open(DEV, O_RDWR | O_CLOEXEC));
	v = ioctl(fd, SLUICE_BLK_GET_API_VERSION);
	close(fd);
	KTAP_EXPECT(v == SLUICE_BLK_API_VERSION, "version %d (errno %d), expected %d",
		    v, v < 0 ? errno : 0, SLUICE_BLK_API_VERSION);
	return KTAP_PASS;
}

static enum ktap_result unknown_ioctl_enotty(void)
{
	static const unsigned long bad[] = {
		_IO(SLUICE_BLK_IOC_MAGIC, 0xff),
		_IOW(SLUICE_BLK_IOC_MAGIC, 0x7f, int),
		_IO('T', 0x01),
		0,
	};
	size_t i;
	int fd, r;

	KTAP_SYSCALL(fd = open(DEV, O_RDWR | O_CLOEXEC));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		r = ioctl(fd, bad[i], 0);
		if (r != -1 || errno != ENOTTY) {
			close(fd);
			KTAP_EXPECT(0, "ioctl 0x%lx returned %d errno %d, expected ENOTTY",
				    bad[i], r, errno);
		}
	}
	close(fd);
	return KTAP_PASS;
}

static enum ktap_result not_seekable(void)
{
	off_t o;
	int fd;

	KTAP_SYSCALL(fd = open(DEV, O_RDWR | O_CLOEXEC));
	errno = 0;
	o = lseek(fd, 4096, SEEK_SET);
	close(fd);
	KTAP_EXPECT(o == -1 && errno == ESPIPE, "lseek returned %lld errno %d", (long long)o, errno);
	return KTAP_PASS;
}

static enum ktap_result many_opens(void)
{
	int fds[64];
	size_t i;

	for (i = 0; i < 64; i++) {
		fds[i] = open(DEV, O_RDWR | O_CLOEXEC);
		KTAP_EXPECT(fds[i] >= 0, "open #%zu: %s", i, strerror(errno));
	}
	for (i = 0; i < 64; i++) {
		KTAP_EXPECT(ioctl(fds[i], SLUICE_BLK_GET_API_VERSION) == SLUICE_BLK_API_VERSION,
			    "fd #%zu lost its disk", i);
	}
	for (i = 0; i < 64; i++)
		close(fds[i]);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(api_version), KTAP_CASE(unknown_ioctl_enotty),
	  KTAP_CASE(not_seekable), KTAP_CASE(many_opens))
