// SPDX-License-Identifier: GPL-2.0
/* sluice-ctl.c - the control socket's client: send one command (key=value arguments or raw JSON), print the answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "json.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluice-ctl SOCKET COMMAND [KEY=VALUE...]\n"
		"       sluice-ctl SOCKET '{\"execute\": ..., \"arguments\": {...}}'\n"
		"Send one command to a sluice control socket (--control) and print its JSON answer.\n"
		"Commands: query-status, query-iothreads, query-block,\n"
		"          set-queue-iothread drive=ID queue=N iothread=NAME, inject-nmi, quit.\n"
		"A VALUE made of digits is sent as a number, anything else as a string.\n"
		"Exit status: 0 on a \"return\" answer, 1 on an \"error\" answer, 2 on a usage or connection error.\n");
}

/* Build {"execute": argv[0], "arguments": {k: v, ...}}. */
static char *build_request(int argc, char **argv)
{
	GString *out = g_string_new(NULL);
	struct sluice_json_writer w;
	int i;

	sluice_jw_init(&w, out);
	sluice_jw_object_begin(&w, NULL);
	sluice_jw_string(&w, "execute", argv[0]);
	if (argc > 1) {
		sluice_jw_object_begin(&w, "arguments");
		for (i = 1; i < argc; i++) {
			char *eq = strchr(argv[i], '='), *end;
			long long v;

			if (!eq) {
				g_string_free(out, TRUE);
				return NULL;
			}
			*eq = 0;
			errno = 0;
			v = strtoll(eq + 1, &end, 10);
			if (eq[1] && !*end && !errno)
				sluice_jw_int(&w, argv[i], v);
			else
				sluice_jw_string(&w, argv[i], eq + 1);
		}
		sluice_jw_object_end(&w);
	}
	sluice_jw_object_end(&w);
	return g_string_free(out, FALSE);
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	GString *reply = g_string_new(NULL);
	struct sluice_json *v;
	char buf[4096], *req, *err = NULL;
	ssize_t n;
	int fd, ret;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc < 3) {
		usage(stderr);
		return 2;
	}
	req = argv[2][0] == '{' ? g_strdup(argv[2]) : build_request(argc - 2, argv + 2);
	if (!req) {
		fprintf(stderr, "sluice-ctl: arguments are KEY=VALUE\n");
		return 2;
	}
	if (strlen(argv[1]) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "sluice-ctl: %s: path too long\n", argv[1]);
		return 2;
	}
	strcpy(addr.sun_path, argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		fprintf(stderr, "sluice-ctl: cannot connect to %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req) || write(fd, "\n", 1) != 1) {
		fprintf(stderr, "sluice-ctl: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	g_free(req);
	while (!memchr(reply->str, '\n', reply->len)) {
		n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			fprintf(stderr, "sluice-ctl: %s: connection closed without an answer\n", argv[1]);
			return 2;
		}
		g_string_append_len(reply, buf, n);
	}
	close(fd);
	fputs(reply->str, stdout);
	v = sluice_json_parse(reply->str, reply->len, &err);
	if (!v) {
		fprintf(stderr, "sluice-ctl: bad answer: %s\n", err);
		return 2;
	}
	ret = sluice_json_get(v, "error") ? 1 : 0;
	sluice_json_free(v);
	g_string_free(reply, TRUE);
	return ret;
}
