// SPDX-License-Identifier: GPL-2.0
/* test_control.c - the control socket's connections without KVM: flow control, the client limit, EMFILE. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* Is a reply waiting on @fd within @ms, with the main loop running meanwhile? */
static bool reply_within(int fd, unsigned int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	unsigned int i;

	for (i = 0; i < ms; i += 10) {
		pump(10);
		if (poll(&p, 1, 0) == 1)
			return true;
	}
	return false;
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

/* 16 clients are served; the 17th waits in the backlog until one of them goes. */
static enum ktap_result client_limit(void)
{
	int fds[17], i;
	char buf[256];

	for (i = 0; i < 17; i++) {
		fds[i] = client();
		KTAP_SYSCALL(fds[i]);
		KTAP_EXPECT(write(fds[i], status_req, strlen(status_req)) > 0, "request %d", i);
		pump(5);
	}
	for (i = 0; i < 16; i++) {
		KTAP_EXPECT(reply_within(fds[i], 2000), "client %d: no reply", i);
		KTAP_EXPECT(read(fds[i], buf, sizeof(buf)) > 0, "client %d: read", i);
	}
	KTAP_EXPECT(!reply_within(fds[16], 300), "a 17th client was served");
	close(fds[0]);
	KTAP_EXPECT(reply_within(fds[16], 2000), "the 17th client was not served after one went away");
	for (i = 1; i < 17; i++)
		close(fds[i]);
	pump(50);
	return KTAP_PASS;
}

/*
 * accept() failing with EMFILE does not make the main loop spin on the
 * still-readable socket; accepting resumes by itself once descriptors are
 * free again.
 */
static enum ktap_result emfile_no_spin(void)
{
	struct rlimit old, low;
	unsigned int spins;
	int fd, next;

	pump(50);
	KTAP_SYSCALL(getrlimit(RLIMIT_NOFILE, &old));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	KTAP_SYSCALL(fd);
	next = dup(0);
	KTAP_SYSCALL(next);
	close(next);
	low = old;
	low.rlim_cur = next;	/* the next descriptor would be beyond the limit */
	KTAP_SYSCALL(setrlimit(RLIMIT_NOFILE, &low));
	{
		struct sockaddr_un a = { .sun_family = AF_UNIX };

		strcpy(a.sun_path, sock_path);
		KTAP_SYSCALL(connect(fd, (struct sockaddr *)&a, sizeof(a)));
	}
	spins = pump(300);
	KTAP_SYSCALL(setrlimit(RLIMIT_NOFILE, &old));
	KTAP_EXPECT(spins < 10, "%u dispatches in 300 ms with accept() failing", spins);
	KTAP_EXPECT(write(fd, status_req, strlen(status_req)) > 0, "request");
	KTAP_EXPECT(reply_within(fd, 3000), "not accepted once descriptors were free");
	close(fd);
	pump(50);
	return KTAP_PASS;
}

/*
 * inject-nmi without a VM (vm_fd -1 here: KVM_SIGNAL_MSI fails) answers an
 * error naming the cause, not an empty "return"; a VM's NMIs are tested by
 * booting a guest (tests/vmm/boot.sh).
 */
static enum ktap_result inject_nmi_error(void)
{
	static const char req[] = "{\"execute\": \"inject-nmi\"}";
	char *answer = sluice_control_handle(&vm, req, strlen(req));

	KTAP_EXPECT(answer && strstr(answer, "\"error\"") && !strstr(answer, "\"return\"") &&
		    strstr(answer, "cannot inject an NMI: Bad file descriptor"), "answer: %s", answer ? answer : "(none)");
	g_free(answer);
	return KTAP_PASS;
}

static enum ktap_result teardown(void)
{
	sluice_control_free(ctl);
	KTAP_EXPECT(access(sock_path, F_OK) < 0, "the socket file stays");
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(setup), KTAP_CASE(flood_before_reading), KTAP_CASE(client_limit), KTAP_CASE(emfile_no_spin),
	  KTAP_CASE(inject_nmi_error), KTAP_CASE(teardown))
