// SPDX-License-Identifier: GPL-2.0
/*
 * control.c - the control socket: a unix stream socket, one JSON object per line:
 * {"execute": "query-block", "arguments": {...}} -> {"return": ...} or {"error": {"class", "desc"}}.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

#include "block.h"
#include "control.h"
#include "iothread.h"
#include "json.h"
#include "kdp.h"
#include "virtio-blk.h"
#include "vmm.h"

#define CONTROL_MAX_LINE	65536
#define CONTROL_OUT_HIGH	65536		/* no more answers while this much output is pending */
#define CONTROL_MAX_PENDING	(1 << 20)	/* unread replies beyond this close the client */
#define CONTROL_MAX_CLIENTS	16
#define CONTROL_ACCEPT_RETRY_MS	1000

/* One connection; main thread only.  Exactly one of @in_watch, @out_watch is set, or neither after EOF. */
struct control_client {
	struct sluice_control *c;
	int fd;
	guint in_watch;		/* reading, while no output is pending */
	guint out_watch;	/* writing, while output is pending */
	GString *in;		/* received, not yet answered */
	GString *out;		/* answered, not yet sent */
	bool eof;
	struct control_client *next;
};

/* Main thread only. */
struct sluice_control {
	struct sluice_vm *vm;
	char *path;
	int fd;
	guint watch;		/* accepting; 0 while paused */
	guint retry;		/* the timeout that resumes accepting after EMFILE */
	bool closing;
	unsigned int nr_clients;
	struct control_client *clients;
};

static void error_reply(GString *out, const char *cls, const char *desc)
{
	struct sluice_json_writer w;

	sluice_jw_init(&w, out);
	sluice_jw_object_begin(&w, NULL);
	sluice_jw_object_begin(&w, "error");
	sluice_jw_string(&w, "class", cls);
	sluice_jw_string(&w, "desc", desc);
	sluice_jw_object_end(&w);
	sluice_jw_object_end(&w);
}

static void cmd_query_status(struct sluice_vm *vm, const struct sluice_json *args, struct sluice_json_writer *w)
{
	sluice_jw_object_begin(w, "return");
	sluice_jw_string(w, "status", "running");
	sluice_jw_int(w, "pid", getpid());
	sluice_jw_uint(w, "vcpus", vm->nr_cpus);
	sluice_jw_uint(w, "memory", vm->ram_size);
	sluice_jw_string(w, "kernel-load", sluice_kernel_load_name(vm->kernel_load));
	sluice_jw_object_end(w);
}

static void cmd_query_iothreads(struct sluice_vm *vm, const struct sluice_json *args,
				struct sluice_json_writer *w)
{
	struct sluice_iothread *t = NULL;

	sluice_jw_array_begin(w, "return");
	while ((t = sluice_iothread_next(t))) {
		sluice_jw_object_begin(w, NULL);
		sluice_jw_string(w, "id", sluice_iothread_id(t));
		sluice_jw_int(w, "thread-id", sluice_iothread_tid(t));
		sluice_jw_object_end(w);
	}
	sluice_jw_array_end(w);
}

static void cmd_query_block(struct sluice_vm *vm, const struct sluice_json *args, struct sluice_json_writer *w)
{
	struct sluice_vblk *v;
	unsigned int i;

	sluice_jw_array_begin(w, "return");
	for (v = sluice_vblk_first(); v; v = v->next) {
		sluice_jw_object_begin(w, NULL);
		sluice_jw_string(w, "id", v->id);
		sluice_jw_string(w, "image", v->opts->file);
		sluice_jw_string(w, "format", v->opts->format);
		sluice_jw_string(w, "dataplane", sluice_dataplane_name(v->dataplane));
		if (v->dataplane == SLUICE_DATAPLANE_KERNEL)
			sluice_jw_string(w, "kernel-disk", sluice_vblk_kernel_name(v));
		sluice_jw_string(w, "cache", v->opts->cache_none ? "none" : "writeback");
		sluice_jw_bool(w, "readonly", v->readonly);
		sluice_jw_string(w, "notify", sluice_virtio_notify_name(v->vpci.notify));
		sluice_jw_uint(w, "capacity", v->capacity);
		sluice_jw_uint(w, "queues", v->nr_queues);
		sluice_jw_uint(w, "queue-size", v->queue_size);
		sluice_jw_array_begin(w, "queue-map");
		for (i = 0; i < v->nr_queues; i++) {
			struct sluice_vblk_queue *q = &v->queues[i];

			sluice_jw_object_begin(w, NULL);
			sluice_jw_uint(w, "queue", i);
			if (v->dataplane == SLUICE_DATAPLANE_USER) {
				sluice_jw_string(w, "iothread", sluice_iothread_id(q->iothread));
				sluice_jw_int(w, "thread-id", sluice_iothread_tid(q->iothread));
			}
			if (v->dataplane == SLUICE_DATAPLANE_KERNEL) {
				struct sluice_blk_queue_stats st;

				/* The module's counters; user-requests proves userspace served none. */
				if (sluice_vblk_kernel_queue_stats(v, i, &st))
					memset(&st, 0, sizeof(st));
				sluice_jw_uint(w, "requests", st.completed);
				sluice_jw_uint(w, "inflight", st.inflight);
				sluice_jw_bool(w, "broken", st.broken ||
					       __atomic_load_n(&q->broken, __ATOMIC_RELAXED));
				sluice_jw_uint(w, "errors", st.errors);
				sluice_jw_uint(w, "kicks", st.kicks);
				sluice_jw_uint(w, "signals", st.signals);
				sluice_jw_uint(w, "bytes-read", st.bytes_read);
				sluice_jw_uint(w, "bytes-written", st.bytes_written);
				sluice_jw_uint(w, "user-requests", __atomic_load_n(&q->requests, __ATOMIC_RELAXED));
			} else {
				sluice_jw_uint(w, "requests", __atomic_load_n(&q->requests, __ATOMIC_RELAXED));
				sluice_jw_uint(w, "inflight", __atomic_load_n(&q->inflight, __ATOMIC_RELAXED));
				sluice_jw_bool(w, "broken", __atomic_load_n(&q->broken, __ATOMIC_RELAXED));
			}
			sluice_jw_object_end(w);
		}
		sluice_jw_array_end(w);
		sluice_jw_object_end(w);
	}
	sluice_jw_array_end(w);
}

/* Main thread.  Returns an error description (g_free) or NULL. */
static char *cmd_set_queue_iothread(struct sluice_vm *vm, const struct sluice_json *args,
				    struct sluice_json_writer *w)
{
	const struct sluice_json *drive = sluice_json_get(args, "drive");
	const struct sluice_json *queue = sluice_json_get(args, "queue");
	const struct sluice_json *iothread = sluice_json_get(args, "iothread");
	struct sluice_iothread *t;
	struct sluice_vblk *v;
	char *err = NULL;

	if (!drive || drive->type != SLUICE_JSON_STRING || !queue || queue->type != SLUICE_JSON_NUMBER ||
	    !queue->is_int || !iothread || iothread->type != SLUICE_JSON_STRING)
		return g_strdup("arguments: {\"drive\": ID, \"queue\": N, \"iothread\": NAME}");
	v = sluice_vblk_find(drive->string);
	if (!v)
		return g_strdup_printf("no drive %s", drive->string);
	/* Checked here, as an int64: 4294967296 must not become queue 0. */
	if (queue->integer < 0 || queue->integer >= v->nr_queues)
		return g_strdup_printf("queue %" G_GINT64_FORMAT " out of range: drive %s has %u queues",
				       (gint64)queue->integer, v->id, v->nr_queues);
	t = sluice_iothread_find(iothread->string);
	if (!t)
		return g_strdup_printf("no iothread %s", iothread->string);
	if (sluice_vblk_set_queue_iothread(v, queue->integer, t, &err))
		return err;
	sluice_jw_object_begin(w, "return");
	sluice_jw_object_end(w);
	return NULL;
}

/* Main thread. */
char *sluice_control_handle(struct sluice_vm *vm, const char *line, size_t len)
{
	const struct sluice_json *exec, *args;
	struct sluice_json_writer w;
	GString *out = g_string_new(NULL);
	struct sluice_json *req;
	char *err = NULL;

	req = sluice_json_parse(line, len, &err);
	if (!req) {
		error_reply(out, "GenericError", err);
		g_free(err);
		return g_string_free(out, FALSE);
	}
	exec = sluice_json_get(req, "execute");
	args = sluice_json_get(req, "arguments");
	if (!exec || exec->type != SLUICE_JSON_STRING) {
		error_reply(out, "GenericError", "expected {\"execute\": COMMAND[, \"arguments\": {...}]}");
		goto out_free;
	}
	if (args && args->type != SLUICE_JSON_OBJECT) {
		error_reply(out, "GenericError", "\"arguments\" must be an object");
		goto out_free;
	}
	sluice_jw_init(&w, out);
	sluice_jw_object_begin(&w, NULL);
	if (!strcmp(exec->string, "query-status")) {
		cmd_query_status(vm, args, &w);
	} else if (!strcmp(exec->string, "query-iothreads")) {
		cmd_query_iothreads(vm, args, &w);
	} else if (!strcmp(exec->string, "query-block")) {
		cmd_query_block(vm, args, &w);
	} else if (!strcmp(exec->string, "set-queue-iothread")) {
		err = cmd_set_queue_iothread(vm, args, &w);
	} else if (!strcmp(exec->string, "inject-nmi")) {
		int ret = sluice_irq_inject_nmi(vm);

		if (ret)
			err = g_strdup_printf("cannot inject an NMI: %s", strerror(-ret));
		sluice_jw_object_begin(&w, "return");
		sluice_jw_object_end(&w);
	} else if (!strcmp(exec->string, "quit")) {
		sluice_jw_object_begin(&w, "return");
		sluice_jw_object_end(&w);
		sluice_vm_request_exit(vm, 0, "quit (control socket)");
	} else {
		err = g_strdup_printf("unknown command '%s' (query-status, query-iothreads, query-block, "
				      "set-queue-iothread, inject-nmi, quit)", exec->string);
	}
	if (err) {
		g_string_truncate(out, 0);
		error_reply(out, "GenericError", err);
		g_free(err);
	} else {
		sluice_jw_object_end(&w);
	}
out_free:
	sluice_json_free(req);
	return g_string_free(out, FALSE);
}

static gboolean control_accept(gint fd, GIOCondition cond, gpointer opaque);

/* Main thread: accept connections again, unless at the client limit or closing. */
static void accept_resume(struct sluice_control *c)
{
	if (!c->watch && !c->closing && c->nr_clients < CONTROL_MAX_CLIENTS)
		c->watch = g_unix_fd_add(c->fd, G_IO_IN, control_accept, c);
}

/* Main thread (GLib timeout): a while after accept() ran out of file descriptors, try again. */
static gboolean accept_retry(gpointer opaque)
{
	struct sluice_control *c = opaque;

	c->retry = 0;
	accept_resume(c);
	return G_SOURCE_REMOVE;
}

/*
 * Main thread: stop accepting (the listening socket stays readable, so the
 * watch would fire again at once); with @retry, try again after
 * CONTROL_ACCEPT_RETRY_MS even if no client goes away.
 */
static void accept_pause(struct sluice_control *c, bool retry)
{
	if (c->watch)
		g_source_remove(c->watch);
	c->watch = 0;
	if (retry && !c->retry)
		c->retry = g_timeout_add(CONTROL_ACCEPT_RETRY_MS, accept_retry, c);
}

/* Main thread: close @cl; a client slot is free again. */
static void client_free(struct control_client *cl)
{
	struct sluice_control *c = cl->c;
	struct control_client **p;

	for (p = &c->clients; *p; p = &(*p)->next) {
		if (*p == cl) {
			*p = cl->next;
			break;
		}
	}
	if (cl->in_watch)
		g_source_remove(cl->in_watch);
	if (cl->out_watch)
		g_source_remove(cl->out_watch);
	close(cl->fd);
	g_string_free(cl->in, TRUE);
	g_string_free(cl->out, TRUE);
	g_free(cl);
	c->nr_clients--;
	accept_resume(c);
}

/* Main thread: send what the socket takes of @cl's pending output; 0 (maybe some left), or -errno. */
static int client_flush(struct control_client *cl)
{
	size_t done = 0;
	ssize_t n;
	int ret = 0;

	while (done < cl->out->len) {
		n = send(cl->fd, cl->out->str + done, cl->out->len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EPIPE;
			break;
		}
		done += n;
	}
	g_string_erase(cl->out, 0, done);
	return ret;
}

/* Main thread: answer @cl's complete lines into its output, while less than CONTROL_OUT_HIGH is pending. */
static void client_answer(struct control_client *cl)
{
	char *nl, *reply;
	size_t len;

	while (cl->out->len < CONTROL_OUT_HIGH && (nl = memchr(cl->in->str, '\n', cl->in->len))) {
		len = nl - cl->in->str;
		if (len) {
			reply = sluice_control_handle(cl->c->vm, cl->in->str, len);
			g_string_append(cl->out, reply);
			g_string_append_c(cl->out, '\n');
			g_free(reply);
		}
		g_string_erase(cl->in, 0, len + 1);
	}
}

static gboolean client_readable(gint fd, GIOCondition cond, gpointer opaque);
static gboolean client_writable(gint fd, GIOCondition cond, gpointer opaque);

/*
 * Main thread: move @cl on: answer its lines, send the answers, and watch
 * for what it waits for next.  While output is pending its input is not
 * read (a client that sends faster than it reads is slowed down, not
 * dropped); more than CONTROL_MAX_PENDING unread bytes, an over-long line,
 * a send error or the end of its input with everything sent close it.
 * false when @cl was freed.
 */
static bool client_run(struct control_client *cl)
{
	static const char too_long[] = "{\"error\":{\"class\":\"GenericError\",\"desc\":\"line too long\"}}\n";
	bool more;

	do {
		client_answer(cl);
		if (cl->out->len > CONTROL_MAX_PENDING) {
			fprintf(stderr, "sluice: control socket: a client left %zu bytes of replies unread, "
				"disconnected\n", cl->out->len);
			goto out_close;
		}
		if (client_flush(cl))
			goto out_close;
		more = memchr(cl->in->str, '\n', cl->in->len);
	} while (!cl->out->len && more);
	if (!more && cl->in->len > CONTROL_MAX_LINE) {
		g_string_append(cl->out, too_long);
		client_flush(cl);	/* best effort */
		goto out_close;
	}
	if (!cl->out->len && cl->eof)
		goto out_close;
	if (cl->out->len) {
		if (cl->in_watch)
			g_source_remove(cl->in_watch);
		cl->in_watch = 0;
		if (!cl->out_watch)
			cl->out_watch = g_unix_fd_add(cl->fd, G_IO_OUT | G_IO_HUP | G_IO_ERR, client_writable, cl);
	} else {
		if (cl->out_watch)
			g_source_remove(cl->out_watch);
		cl->out_watch = 0;
		if (!cl->in_watch && !cl->eof)
			cl->in_watch = g_unix_fd_add(cl->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, client_readable, cl);
	}
	return true;

out_close:
	client_free(cl);
	return false;
}

/* Main thread (GLib watch, only while no output is pending): read, answer every complete line. */
static gboolean client_readable(gint fd, GIOCondition cond, gpointer opaque)
{
	struct control_client *cl = opaque;
	char buf[4096];
	ssize_t n;

	n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return G_SOURCE_CONTINUE;
	if (n < 0) {
		client_free(cl);
		return G_SOURCE_CONTINUE;	/* the watch is gone with the client */
	}
	if (n)
		g_string_append_len(cl->in, buf, n);
	else
		cl->eof = true;		/* answer what came, send it, then close */
	client_run(cl);
	return G_SOURCE_CONTINUE;	/* client_run() removed the watch if it had to */
}

/* Main thread (GLib watch, only while output is pending): send more, then answer the lines that waited. */
static gboolean client_writable(gint fd, GIOCondition cond, gpointer opaque)
{
	client_run(opaque);
	return G_SOURCE_CONTINUE;	/* client_run() removed the watch if it had to */
}

/*
 * Main thread (GLib watch): a new connection.  At CONTROL_MAX_CLIENTS, or
 * when accept() runs out of file descriptors or memory, the watch is removed
 * (connections then wait in the listen backlog) and comes back when a
 * client goes away, or after CONTROL_ACCEPT_RETRY_MS for the latter.
 */
static gboolean control_accept(gint fd, GIOCondition cond, gpointer opaque)
{
	struct sluice_control *c = opaque;
	struct control_client *cl;
	int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (cfd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			if (!c->retry)
				fprintf(stderr, "sluice: control socket: accept: %s; not accepting for a while\n",
					strerror(errno));
			accept_pause(c, true);
		}
		return G_SOURCE_CONTINUE;
	}
	cl = g_new0(struct control_client, 1);
	cl->c = c;
	cl->fd = cfd;
	cl->in = g_string_new(NULL);
	cl->out = g_string_new(NULL);
	cl->in_watch = g_unix_fd_add(cfd, G_IO_IN | G_IO_HUP | G_IO_ERR, client_readable, cl);
	cl->next = c->clients;
	c->clients = cl;
	if (++c->nr_clients >= CONTROL_MAX_CLIENTS)
		accept_pause(c, false);
	return G_SOURCE_CONTINUE;
}

/* Main thread. */
struct sluice_control *sluice_control_new(struct sluice_vm *vm, const char *path, char **errp)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct sluice_control *c;
	mode_t old_mask;
	int fd, ret;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		*errp = g_strdup_printf("--control %s: path too long", path);
		return NULL;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*errp = g_strdup_printf("--control %s: socket: %s", path, strerror(errno));
		return NULL;
	}
	unlink(path);
	old_mask = umask(0077);		/* the socket is created 0600 */
	ret = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old_mask);
	if (ret < 0 || chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		*errp = g_strdup_printf("--control %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	c = g_new0(struct sluice_control, 1);
	c->vm = vm;
	c->fd = fd;
	c->path = g_strdup(path);
	c->watch = g_unix_fd_add(fd, G_IO_IN, control_accept, c);
	return c;
}

/* Main thread. */
void sluice_control_free(struct sluice_control *c)
{
	if (!c)
		return;
	c->closing = true;
	while (c->clients)
		client_free(c->clients);
	if (c->retry)
		g_source_remove(c->retry);
	if (c->watch)
		g_source_remove(c->watch);
	close(c->fd);
	unlink(c->path);
	g_free(c->path);
	g_free(c);
}
