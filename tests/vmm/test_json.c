// SPDX-License-Identifier: GPL-2.0
/* test_json.c - the control socket's JSON reader and writer, and command dispatch, without KVM. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "json.h"
#include "iothread.h"
#include "ktap.h"
#include "pci.h"
#include "virtio-blk.h"
#include "vmm.h"

static enum ktap_result parse_values(void)
{
	const char *text = " {\"a\": [1, -2, 3.5, 1e3, true, false, null], \"s\": \"x\\\"\\\\\\n\\u00e9\\ud83d\\ude00\","
			   " \"o\": {}, \"e\": [], \"big\": 9007199254740993} ";
	const struct sluice_json *a, *s;
	struct sluice_json *v;
	char *err = NULL;

	v = sluice_json_parse(text, strlen(text), &err);
	KTAP_EXPECT(v, "parse failed: %s", err);
	KTAP_EXPECT(v->type == SLUICE_JSON_OBJECT && v->n == 5, "type %d n %zu", v->type, v->n);
	a = sluice_json_get(v, "a");
	KTAP_EXPECT(a && a->type == SLUICE_JSON_ARRAY && a->n == 7, "array");
	KTAP_EXPECT(a->items[0]->is_int && a->items[0]->integer == 1, "1");
	KTAP_EXPECT(a->items[1]->is_int && a->items[1]->integer == -2, "-2");
	KTAP_EXPECT(!a->items[2]->is_int && a->items[2]->number == 3.5, "3.5");
	KTAP_EXPECT(!a->items[3]->is_int && a->items[3]->number == 1000, "1e3");
	KTAP_EXPECT(a->items[4]->type == SLUICE_JSON_BOOL && a->items[4]->boolean, "true");
	KTAP_EXPECT(a->items[5]->type == SLUICE_JSON_BOOL && !a->items[5]->boolean, "false");
	KTAP_EXPECT(a->items[6]->type == SLUICE_JSON_NULL, "null");
	s = sluice_json_get(v, "s");
	KTAP_EXPECT(s && !strcmp(s->string, "x\"\\\n\xc3\xa9\xf0\x9f\x98\x80"), "string '%s'", s ? s->string : "");
	KTAP_EXPECT(sluice_json_get(v, "o")->n == 0 && sluice_json_get(v, "e")->n == 0, "empty containers");
	KTAP_EXPECT(sluice_json_get(v, "big")->integer == 9007199254740993LL, "64-bit integer exact");
	KTAP_EXPECT(!sluice_json_get(v, "missing") && !sluice_json_get(a, "a"), "lookups");
	sluice_json_free(v);
	return KTAP_PASS;
}

static enum ktap_result parse_rejects(void)
{
	static const char *const bad[] = {
		"", " ", "{", "}", "[1,]", "[1 2]", "{\"a\"}", "{\"a\":}", "{a:1}", "01", "-", "1.", "1e", "+1",
		"\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"a\nb\"", "tru", "nul", "1 2",
		"[]]", "{\"a\":1,}", "\xff",
	};
	char deep[100];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *err = NULL;
		struct sluice_json *v = sluice_json_parse(bad[i], strlen(bad[i]), &err);

		KTAP_EXPECT(!v && err && strstr(err, "JSON syntax error"), "'%s' accepted", bad[i]);
		g_free(err);
	}
	memset(deep, '[', sizeof(deep));
	{
		char *err = NULL;

		KTAP_EXPECT(!sluice_json_parse(deep, sizeof(deep), &err) && strstr(err, "deep"), "depth 100");
		g_free(err);
	}
	return KTAP_PASS;
}

static enum ktap_result writer_roundtrip(void)
{
	GString *out = g_string_new(NULL);
	struct sluice_json_writer w;
	struct sluice_json *v;
	char *err = NULL;

	sluice_jw_init(&w, out);
	sluice_jw_object_begin(&w, NULL);
	sluice_jw_string(&w, "q\"k", "a\"b\\c\n\x01");
	sluice_jw_int(&w, "i", -5);
	sluice_jw_uint(&w, "u", 18446744073709551615ULL);
	sluice_jw_bool(&w, "b", true);
	sluice_jw_null(&w, "n");
	sluice_jw_array_begin(&w, "arr");
	sluice_jw_int(&w, NULL, 1);
	sluice_jw_object_begin(&w, NULL);
	sluice_jw_object_end(&w);
	sluice_jw_array_end(&w);
	sluice_jw_object_end(&w);
	KTAP_EXPECT(!strcmp(out->str, "{\"q\\\"k\":\"a\\\"b\\\\c\\n\\u0001\",\"i\":-5,\"u\":18446744073709551615,"
				  "\"b\":true,\"n\":null,\"arr\":[1,{}]}"), "wrote %s", out->str);
	v = sluice_json_parse(out->str, out->len, &err);
	KTAP_EXPECT(v, "reparse: %s", err);
	KTAP_EXPECT(!strcmp(sluice_json_get(v, "q\"k")->string, "a\"b\\c\n\x01"), "string round trip");
	sluice_json_free(v);
	g_string_free(out, TRUE);
	return KTAP_PASS;
}

static enum ktap_result control_dispatch(void)
{
	static struct sluice_vm vm = { .nr_cpus = 2, .ram_size = 256 << 20, .exit_fd = -1 };
	char *r;

	pthread_mutex_init(&vm.exit_lock, NULL);
	pthread_cond_init(&vm.exit_cond, NULL);
	r = sluice_control_handle(&vm, "{\"execute\":\"query-status\"}", 26);
	KTAP_EXPECT(strstr(r, "\"return\":{\"status\":\"running\"") && strstr(r, "\"vcpus\":2"), "%s", r);
	g_free(r);
	r = sluice_control_handle(&vm, "{\"execute\":\"query-block\"}", 25);
	KTAP_EXPECT(!strcmp(r, "{\"return\":[]}"), "%s", r);
	g_free(r);
	r = sluice_control_handle(&vm, "{\"execute\":\"frob\"}", 18);
	KTAP_EXPECT(strstr(r, "\"error\":{\"class\":\"GenericError\",\"desc\":\"unknown command 'frob'"), "%s", r);
	g_free(r);
	r = sluice_control_handle(&vm, "[1]", 3);
	KTAP_EXPECT(strstr(r, "\"error\""), "%s", r);
	g_free(r);
	r = sluice_control_handle(&vm, "{\"execute\":\"set-queue-iothread\",\"arguments\":{\"drive\":\"x\"}}", 58);
	KTAP_EXPECT(strstr(r, "\"error\"") && strstr(r, "arguments"), "%s", r);
	g_free(r);
	r = sluice_control_handle(&vm, "{\"execute\":\"quit\"}", 18);
	KTAP_EXPECT(!strcmp(r, "{\"return\":{}}") && vm.exit_requested && vm.exit_status == 0, "%s", r);
	g_free(r);
	return KTAP_PASS;
}

/* Raw UTF-8 in strings: well-formed passes, anything else is a syntax error that says so. */
static enum ktap_result parse_utf8(void)
{
	static const char *const bad[] = {
		"\"\xff\"", "\"\x80\"", "\"a\xc3\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"",
		"\"\xf4\x90\x80\x80\"", "\"\xf8\x88\x80\x80\x80\"", "\"\xe2\x82\"", "{\"\xfe\":1}",
		"\"\xc3\xa9\xe2\x28\xa1\"",
	};
	const char *good = "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf\"";
	struct sluice_json *v;
	char *err = NULL;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = sluice_json_parse(bad[i], strlen(bad[i]), &err);
		KTAP_EXPECT(!v && err && strstr(err, "invalid UTF-8"), "bad[%zu] accepted (%s)", i, err);
		g_free(err);
		err = NULL;
	}
	v = sluice_json_parse(good, strlen(good), &err);
	KTAP_EXPECT(v && v->len == strlen(good) - 2 && !memcmp(v->string, good + 1, v->len), "good: %s", err);
	sluice_json_free(v);
	return KTAP_PASS;
}

/* The writer's output is valid UTF-8 whatever it is given: bad bytes are U+FFFD, one each. */
static enum ktap_result writer_utf8(void)
{
	GString *out = g_string_new(NULL);
	struct sluice_json *v;
	char *err = NULL, *r;

	sluice_json_quote(out, "a\xff" "b\xc3\xa9\xe2\x82" "c\xed\xa0\x80\xf0\x9f\x98\x80");
	KTAP_EXPECT(!strcmp(out->str, "\"a\\ufffdb\xc3\xa9\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffd\xf0\x9f\x98\x80\""),
		    "wrote %s", out->str);
	KTAP_EXPECT(g_utf8_validate(out->str, out->len, NULL), "not UTF-8");
	v = sluice_json_parse(out->str, out->len, &err);
	KTAP_EXPECT(v && !strcmp(v->string, "a\xef\xbf\xbd" "b\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd" "c"
				       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xf0\x9f\x98\x80"), "reparse: %s", err);
	sluice_json_free(v);
	g_string_free(out, TRUE);
	/* A request with bad bytes: an error reply that is itself valid. */
	r = sluice_control_handle(NULL, "{\"execute\":\"\xff\"}", 15);
	KTAP_EXPECT(strstr(r, "invalid UTF-8") && g_utf8_validate(r, -1, NULL), "%s", r);
	g_free(r);
	return KTAP_PASS;
}

/* A request line for set-queue-iothread of queue @queue (JSON number text) of drive d0 to io0. */
static char *set_queue(struct sluice_vm *vm, const char *queue)
{
	char *line = g_strdup_printf("{\"execute\":\"set-queue-iothread\",\"arguments\":{\"drive\":\"d0\","
				     "\"queue\":%s,\"iothread\":\"io0\"}}", queue);
	char *r = sluice_control_handle(vm, line, strlen(line));

	g_free(line);
	return r;
}

/*
 * set-queue-iothread's queue is range-checked as the int64 it was sent as:
 * negative, the queue count and 2^32 (which an unsigned int makes 0) are
 * refused and move nothing; queue 1 of 2 moves.
 */
static enum ktap_result set_queue_range(void)
{
	static const char *const bad[] = { "-1", "2", "4294967296", "4294967297", "9223372036854775807" };
	static struct sluice_vm vm = { .nr_cpus = 2, .vm_fd = -1, .exit_fd = -1 };
	char img[] = "/tmp/sluice-json-XXXXXX", *spec, *err = NULL, *r;
	struct sluice_iothread *io0, *io1;
	struct sluice_drive_opts *opts;
	struct sluice_vblk *v;
	size_t i;
	int fd;

	fd = mkstemp(img);
	KTAP_SYSCALL(fd);
	KTAP_SYSCALL(ftruncate(fd, 1 << 20));
	close(fd);
	io1 = sluice_iothread_new("io1");
	io0 = sluice_iothread_new("io0");
	KTAP_EXPECT(io0 && io1, "iothreads");
	sluice_irq_init(&vm);
	KTAP_EXPECT(!sluice_pci_init(&vm), "pci");
	spec = g_strdup_printf("file=%s,format=raw,id=d0,queues=2,iothread=io1", img);
	KTAP_EXPECT(!sluice_drive_opts_parse(spec, &opts, &err), "%s: %s", spec, err);
	KTAP_EXPECT(!sluice_vblk_create(&vm, opts, &v, &err), "create: %s", err);
	unlink(img);
	g_free(spec);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = set_queue(&vm, bad[i]);
		KTAP_EXPECT(strstr(r, "\"error\"") && strstr(r, "out of range") && strstr(r, "has 2 queues"),
			    "queue %s: %s", bad[i], r);
		g_free(r);
	}
	KTAP_EXPECT(v->queues[0].iothread == io1 && v->queues[1].iothread == io1, "a refused request moved a queue");
	r = set_queue(&vm, "1");
	KTAP_EXPECT(!strcmp(r, "{\"return\":{}}"), "queue 1: %s", r);
	g_free(r);
	KTAP_EXPECT(v->queues[0].iothread == io1 && v->queues[1].iothread == io0, "queue 1 did not move");
	sluice_vblk_destroy(v);
	sluice_drive_opts_free(opts);
	sluice_pci_exit(&vm);
	sluice_iothread_free(io0);
	sluice_iothread_free(io1);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(parse_values), KTAP_CASE(parse_rejects), KTAP_CASE(writer_roundtrip), KTAP_CASE(parse_utf8),
	  KTAP_CASE(writer_utf8), KTAP_CASE(control_dispatch), KTAP_CASE(set_queue_range))
