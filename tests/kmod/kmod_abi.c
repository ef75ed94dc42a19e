// SPDX-License-Identifier: GPL-2.0
/* kmod_abi.c - lab test of /dev/sluice-blk's ioctl ABI as far as it exists: version, unknown ioctls, one disk per open. */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
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

/* Every command of the ABI: its number is right in the variants below, its size or direction is not. */
static const unsigned long real_cmds[] = {
	SLUICE_BLK_GET_API_VERSION, SLUICE_BLK_SET_OWNER, SLUICE_BLK_RESET, SLUICE_BLK_SET_MEM_TABLE,
	SLUICE_BLK_GET_FEATURES, SLUICE_BLK_SET_FEATURES, SLUICE_BLK_SET_BACKEND, SLUICE_BLK_DRAIN,
	SLUICE_BLK_GET_STATS, SLUICE_BLK_SET_VRING_NUM, SLUICE_BLK_SET_VRING_ADDR,
	SLUICE_BLK_SET_VRING_BASE, SLUICE_BLK_GET_VRING_BASE, SLUICE_BLK_SET_VRING_KICK,
	SLUICE_BLK_SET_VRING_CALL, SLUICE_BLK_SET_VRING_ERR, SLUICE_BLK_SET_VRING_ENABLE,
	SLUICE_BLK_SET_EXTENT_CONFIG, SLUICE_BLK_SET_UPCALL, SLUICE_BLK_MAP_EXTENTS,
	SLUICE_BLK_UNMAP_EXTENTS,
};

/*
 * Send every wrong-size / wrong-direction variant of the real commands on @fd:
 * each must fail with ENOTTY.  0, or -1 after a diagnostic naming @who.
 */
static int wrong_variants_enotty(int fd, const char *who)
{
	static const unsigned int dirs[] = { _IOC_NONE, _IOC_WRITE, _IOC_READ, _IOC_READ | _IOC_WRITE };
	static unsigned char buf[1 << 14];	/* any size the variants name: a stray copy stays inside */
	size_t i, d, z;

	for (i = 0; i < sizeof(real_cmds) / sizeof(real_cmds[0]); i++) {
		unsigned long cmd = real_cmds[i];
		unsigned int size = _IOC_SIZE(cmd);
		unsigned int sizes[] = { size, size + 8, size ? 0 : 4, size ? size - 1 : 1 };

		for (d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
			for (z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
				unsigned long v = _IOC(dirs[d], SLUICE_BLK_IOC_MAGIC, _IOC_NR(cmd), sizes[z]);
				int r;

				if (v == cmd)
					continue;
				memset(buf, 0, sizeof(buf));
				errno = 0;
				r = ioctl(fd, v, buf);
				if (r != -1 || errno != ENOTTY) {
					ktap_diag("%s: ioctl 0x%lx (variant of 0x%lx) returned %d errno %d, expected ENOTTY",
						  who, v, cmd, r, errno);
					return -1;
				}
			}
		}
	}
	return 0;
}

/* A real command number with the wrong size or direction is unknown: ENOTTY, whoever asks. */
static enum ktap_result wrong_size_or_dir_enotty(void)
{
	int fd, status, r;
	pid_t pid;

	KTAP_SYSCALL(fd = open(DEV, O_RDWR | O_CLOEXEC));
	r = wrong_variants_enotty(fd, "no owner yet");
	if (r) {
		close(fd);
		KTAP_EXPECT(0, "a disk without owner answered a malformed command");
	}
	if (ioctl(fd, SLUICE_BLK_SET_OWNER) < 0) {
		close(fd);
		KTAP_SYSCALL(-1);
	}
	r = wrong_variants_enotty(fd, "owner");
	if (r) {
		close(fd);
		KTAP_EXPECT(0, "the owner was answered a malformed command");
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(wrong_variants_enotty(fd, "not the owner (another mm)") ? 1 : 0);
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		close(fd);
		KTAP_SYSCALL(-1);
	}
	close(fd);
	KTAP_EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "a process other than the owner was answered a malformed command");
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
	  KTAP_CASE(wrong_size_or_dir_enotty), KTAP_CASE(not_seekable), KTAP_CASE(many_opens))
