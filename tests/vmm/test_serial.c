// SPDX-License-Identifier: GPL-2.0
/* test_serial.c - the 16550's output without KVM: bytes reach the output, and full output never blocks a stop. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ktap.h"
#include "vmm.h"

static struct sluice_vm vm = { .vm_fd = -1 };
static volatile bool thr_written;

/* The "vCPU": one byte to the THR. */
static void *thr_write(void *arg)
{
	uint8_t c = 'x';

	sluice_serial_io(&vm, 0x3f8, true, &c);
	thr_written = true;
	return NULL;
}

/* Fill the pipe whose write end is @fd until it would block. */
static void fill_pipe(int fd)
{
	static const char junk[4096];
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (write(fd, junk, sizeof(junk)) > 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
		;
	while (write(fd, junk, 1) > 0)
		;
	fcntl(fd, F_SETFL, fl);
}

static enum ktap_result output_reaches_pipe(void)
{
	int p[2];
	char c = 0;

	KTAP_SYSCALL(pipe(p));
	vm.stopping = false;
	sluice_serial_init(&vm, -1, p[1]);
	thr_write(NULL);
	KTAP_EXPECT(read(p[0], &c, 1) == 1 && c == 'x', "read %c", c);
	sluice_serial_exit(&vm);
	close(p[0]);
	close(p[1]);
	return KTAP_PASS;
}

/*
 * A vCPU writing to a full stdout pipe that nobody reads waits, but not
 * through a stop: it returns (the byte dropped) soon after vm->stopping is
 * set, even though no signal interrupts it, and at once when already set.
 */
static enum ktap_result full_output_stops(void)
{
	struct timespec ts;
	pthread_t t;
	int p[2], ret;

	KTAP_SYSCALL(pipe(p));
	fill_pipe(p[1]);
	vm.stopping = false;
	thr_written = false;
	sluice_serial_init(&vm, -1, p[1]);
	KTAP_EXPECT(!pthread_create(&t, NULL, thr_write, NULL), "thread");
	usleep(300 * 1000);
	KTAP_EXPECT(!thr_written, "wrote to a full pipe");
	vm.stopping = true;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	ret = pthread_timedjoin_np(t, NULL, &ts);
	KTAP_EXPECT(!ret, "the vCPU still blocked 5 s after the stop: %s", strerror(ret));
	KTAP_EXPECT(thr_written, "not written");
	/* Already stopping: no wait at all. */
	thr_written = false;
	thr_write(NULL);
	KTAP_EXPECT(thr_written, "not written");
	sluice_serial_exit(&vm);
	close(p[0]);
	close(p[1]);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(output_reaches_pipe), KTAP_CASE(full_output_stops))
