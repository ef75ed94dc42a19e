// SPDX-License-Identifier: GPL-2.0
/* test_control.c - the control socket's connections without KVM: flow control. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "ktap.h"
#include "vmm.h"

static struct sluice_vm vm = { .nr_cpus = 2, .ram_size = 256 << 20, .vm_fd = -1, .exit_fd = -1 };
static char sock_path[64];
static struct sluice_control *ctl;

/* The main loop for @ms milliseconds (the test is the VMM's main thread); how many dispatches. */
static unsigned int pump(unsigned int ms)
{
	gint64 end = g_get_monotonic_time() + ms * 1000LL;
	unsigned int n = 0;

	while (g_get_monotonic_time() < end) {
		if (g_main_context_iteration(NULL, FALSE))
			n++;
		else
			g_usleep(1000);
	}
	return n;
}

/* A blocking connection to the control socket, or -1. */
static int client(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(a.sun_path, sock_path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static const char status_req[] = "{\"execute\":\"query-status\"}\n";

static enum ktap_result setup(void)
{
	char *err = NULL;

	pthread_mutex_init(&vm.exit_lock, NULL);
	pthread_cond_init(&vm.exit_cond, NULL);
	snprintf(sock_path, sizeof(sock_path), "/tmp/sluice-ctl-test-%d.sock", getpid());
	ctl = sluice_control_new(&vm, sock_path, &err);
	KTAP_EXPECT(ctl, "%s", err);
	return KTAP_PASS;
}

#define FLOOD_LINES	3000

struct flood {
	int fd;
	unsigned int replies, status, errors;
	bool done;
};

/*
 * The client: every request in one send (query-status and an unknown
 * command in turn), a pause so that the VMM's answers fill the socket, then
 * read every answer.
 */
static void *flood_client(void *arg)
{
	static const char bad_req[] = "{\"execute\":\"frob\"}\n";
	struct flood *f = arg;
	GString *req = g_string_new(NULL);
	char buf[65536], *line = NULL;
	size_t have = 0, cap = 0;
	unsigned int i;
	ssize_t n;

	for (i = 0; i < FLOOD_LINES; i++)
		g_string_append(req, i % 2 ? bad_req : status_req);
	if (send(f->fd, req->str, req->len, MSG_NOSIGNAL) != (ssize_t)req->len)
		goto out;
	usleep(300 * 1000);
	while (f->replies < FLOOD_LINES && (n = read(f->fd, buf, sizeof(buf))) > 0) {
		if (have + n > cap) {
			cap = (have + n) * 2;
			line = realloc(line, cap);
		}
		memcpy(line + have, buf, n);
		have += n;
		for (char *nl; (nl = memchr(line, '\n', have)); ) {
			*nl = 0;
			/* In order: even replies are query-status, odd ones the error. */
			if (f->replies % 2 == 0 && strstr(line, "\"status\":\"running\""))
				f->status++;
			else if (f->replies % 2 == 1 && strstr(line, "unknown command 'frob'"))
				f->errors++;
			f->replies++;
			have -= nl + 1 - line;
			memmove(line, nl + 1, have);
		}
	}
out:
	free(line);
	g_string_free(req, TRUE);
	f->done = true;
	return NULL;
}

/*
 * A client that sends 3000 requests before it reads any answer gets all
 * 3000, in order: the answers wait in the VMM (the socket is non-blocking)
 * instead of the client being dropped at the first EAGAIN.
 */
static enum ktap_result flood_before_reading(void)
{
	struct flood f = { 0 };
	gint64 end;
	pthread_t t;

	f.fd = client();
	KTAP_SYSCALL(f.fd);
	KTAP_EXPECT(!pthread_create(&t, NULL, flood_client, &f), "thread");
	end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
	while (!f.done && g_get_monotonic_time() < end)
		pump(10);
	KTAP_EXPECT(f.done, "the client still waits after 20 s: %u replies", f.replies);
	pthread_join(t, NULL);
	close(f.fd);
	KTAP_EXPECT(f.replies == FLOOD_LINES && f.status == FLOOD_LINES / 2 && f.errors == FLOOD_LINES / 2,
		    "%u replies (%u status, %u errors) of %u", f.replies, f.status, f.errors, FLOOD_LINES);
	pump(50);
	return KTAP_PASS;
}

static enum ktap_result teardown(void)
{
	sluice_control_free(ctl);
	KTAP_EXPECT(access(sock_path, F_OK) < 0, "the socket file stays");
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(setup), KTAP_CASE(flood_before_reading), KTAP_CASE(teardown))
