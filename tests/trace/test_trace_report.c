// SPDX-License-Identifier: GPL-2.0
/* test_trace_report.c - unit test of sluice-trace's reports: log2 slots, merging, text, JSON and SVG output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktap.h"
#include "trace_report.h"

static struct sluice_trace_hist_key mkkey(unsigned int dp, const char *disk, unsigned int queue,
					  unsigned int op)
{
	struct sluice_trace_hist_key k;

	memset(&k, 0, sizeof(k));
	k.dataplane = (__u8)dp;
	snprintf(k.disk, sizeof(k.disk), "%s", disk);
	k.queue = queue;
	k.op = (__u8)op;
	return k;
}

/* A histogram holding @n requests of latency @ns each, in usecs slots. */
static struct sluice_trace_hist mkhist(unsigned long long n, unsigned long long ns)
{
	struct sluice_trace_hist h;

	memset(&h, 0, sizeof(h));
	h.slots[trace_slot_of(ns / 1000)] = n;
	h.count = n;
	h.sum_ns = n * ns;
	h.min_ns = ns;
	h.max_ns = ns;
	return h;
}

static size_t count_str(const char *hay, const char *needle)
{
	size_t n = 0;

	for (hay = strstr(hay, needle); hay; hay = strstr(hay + 1, needle))
		n++;
	return n;
}

/* @s as diagnostics, line by line. */
static void diag_lines(const char *s)
{
	const char *nl;

	for (; *s; s = nl + 1) {
		nl = strchrnul(s, '\n');
		ktap_diag("%.*s", (int)(nl - s), s);
		if (!*nl)
			break;
	}
}

/* Run @call with f_ writing into @buf (caller frees). */
#define CAPTURE(buf, len, call)						\
	do {								\
		FILE *f_ = open_memstream(&(buf), &(len));		\
		KTAP_EXPECT(f_, "open_memstream");			\
		call;							\
		fclose(f_);						\
	} while (0)

static enum ktap_result slots_cover_every_value(void)
{
	static const unsigned long long vals[] = {
		0, 1, 2, 3, 4, 5, 7, 8, 1000, 1023, 1024, 1ULL << 30, (1ULL << 31) - 1,
	};
	unsigned int s;
	size_t i;

	KTAP_EXPECT(trace_slot_lo(0) == 0 && trace_slot_hi(0) == 0, "slot 0 is {0}");
	for (s = 1; s < SLUICE_TRACE_SLOTS; s++)
		KTAP_EXPECT(trace_slot_lo(s) == trace_slot_hi(s - 1) + 1, "slot %u not contiguous", s);
	for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		s = trace_slot_of(vals[i]);
		KTAP_EXPECT(trace_slot_lo(s) <= vals[i] && vals[i] <= trace_slot_hi(s),
			    "%llu in slot %u [%llu, %llu]", vals[i], s, trace_slot_lo(s), trace_slot_hi(s));
	}
	KTAP_EXPECT(trace_slot_of(~0ULL) == SLUICE_TRACE_SLOTS - 1, "huge values in the last slot");
	return KTAP_PASS;
}

static enum ktap_result merge_by_key(void)
{
	struct sluice_trace_hist_key a = mkkey(SLUICE_TRACE_DP_KERNEL, "d0", 1, SLUICE_TRACE_OP_READ);
	struct sluice_trace_hist_key b = a;
	struct sluice_trace_hist ha = mkhist(3, 5000), hb = mkhist(2, 900000);
	struct trace_hists s = {};

	b.gen = 1;	/* another interval of the same histogram */
	KTAP_EXPECT(!trace_hists_add(&s, &a, &ha) && !trace_hists_add(&s, &b, &hb), "add");
	KTAP_EXPECT(s.n == 1, "%zu histograms, expected 1", s.n);
	KTAP_EXPECT(s.v[0].h.count == 5 && s.v[0].h.min_ns == 5000 && s.v[0].h.max_ns == 900000,
		    "count %llu min %llu max %llu", (unsigned long long)s.v[0].h.count,
		    (unsigned long long)s.v[0].h.min_ns, (unsigned long long)s.v[0].h.max_ns);
	KTAP_EXPECT(s.v[0].h.slots[trace_slot_of(5)] == 3 && s.v[0].h.slots[trace_slot_of(900)] == 2,
		    "slots not summed");
	b = mkkey(SLUICE_TRACE_DP_USER, "", SLUICE_TRACE_NO_QUEUE, SLUICE_TRACE_OP_ANY);
	KTAP_EXPECT(!trace_hists_add(&s, &b, &hb), "add");
	b = mkkey(SLUICE_TRACE_DP_KERNEL, "a0", 0, SLUICE_TRACE_OP_WRITE);
	KTAP_EXPECT(!trace_hists_add(&s, &b, &hb), "add");
	trace_hists_sort(&s);
	KTAP_EXPECT(s.n == 3 && !strcmp(s.v[0].key.disk, "a0") && !strcmp(s.v[1].key.disk, "d0") &&
		    s.v[2].key.dataplane == SLUICE_TRACE_DP_USER, "order: kernel a0, kernel d0, user");
	KTAP_EXPECT(trace_hists_total(&s, SLUICE_TRACE_DP_KERNEL) == 7 &&
		    trace_hists_total(&s, SLUICE_TRACE_DP_USER) == 2, "totals");
	trace_hists_free(&s);
	return KTAP_PASS;
}

static enum ktap_result text_report(void)
{
	struct trace_split split = { .disk = 1, .queue = 1, .op = 1 };
	struct trace_hist_rec r = { .key = mkkey(SLUICE_TRACE_DP_KERNEL, "vda", 2, SLUICE_TRACE_OP_WRITE) };
	char *out = NULL;
	size_t len;

	r.h = mkhist(4, 3000);		/* 3 us: slot [2, 3] */
	r.h.slots[trace_slot_of(100)] = 1;	/* and one in [64, 127] */
	r.h.count = 5;
	r.h.sum_ns += 100000;
	r.h.max_ns = 100000;
	CAPTURE(out, len, trace_print_hist(f_, &r, &split, "usecs"));
	diag_lines(out);
	KTAP_EXPECT(strstr(out, "kernel, disk vda, queue 2, op write: 5 requests"), "title");
	KTAP_EXPECT(count_str(out, "\n") == 2 + 6, "a line per slot from [2,3] to [64,127]");
	KTAP_EXPECT(strstr(out, "2 -> 3") && strstr(out, "64 -> 127"), "ranges");
	KTAP_EXPECT(strstr(out, "|****************************************|"), "the largest bar is full");
	free(out);
	return KTAP_PASS;
}

static enum ktap_result json_report(void)
{
	struct trace_split split = { .disk = 1, .queue = 1, .op = 1 };
	struct trace_hist_rec r = { .key = mkkey(SLUICE_TRACE_DP_USER, "", SLUICE_TRACE_NO_QUEUE,
						 SLUICE_TRACE_OP_READ) };
	char *out = NULL;
	size_t len;

	r.key.pid = 42;
	r.key.blk = 0xabc0;
	r.h = mkhist(7, 2500000);	/* 2500 us: [2048, 4095] */
	CAPTURE(out, len, trace_print_hist_json(f_, &r, &split, "usecs"));
	diag_lines(out);
	KTAP_EXPECT(strstr(out, "\"dataplane\": \"user\", \"disk\": \"42:0xabc0\", \"pid\": 42, \"queue\": null, \"op\": \"read\", \"count\": 7"),
		    "keys");
	KTAP_EXPECT(strstr(out, "\"buckets\": [{\"lo\": 2048, \"hi\": 4095, \"count\": 7}]"), "buckets");
	free(out);
	return KTAP_PASS;
}

static enum ktap_result svg_has_a_bar_per_bucket(void)
{
	struct trace_split split = { .disk = 1, .op = 0, .queue = 0 };
	struct sluice_trace_hist_key k1 = mkkey(SLUICE_TRACE_DP_KERNEL, "a<b&c", 0, 0);
	struct sluice_trace_hist_key k2 = mkkey(SLUICE_TRACE_DP_KERNEL, "d1", 0, 0);
	struct sluice_trace_hist h1 = mkhist(3, 5000), h2 = mkhist(1, 70000000);
	struct trace_hists s = {};
	char *out = NULL;
	size_t len;

	h1.slots[trace_slot_of(300)] = 2;
	h1.count += 2;
	KTAP_EXPECT(!trace_hists_add(&s, &k1, &h1) && !trace_hists_add(&s, &k2, &h2), "add");
	trace_hists_sort(&s);
	CAPTURE(out, len, KTAP_EXPECT(!trace_plot_svg(f_, &s, &split, "usecs", "t", "sub"), "plot"));
	KTAP_EXPECT(!strncmp(out, "<?xml", 5) && strstr(out, "<svg xmlns=\"http://www.w3.org/2000/svg\""),
		    "an SVG document");
	KTAP_EXPECT(len > 7 && !strcmp(out + len - 7, "</svg>\n"), "closed");
	KTAP_EXPECT(count_str(out, "<rect class=\"bar\"") == 3, "3 bars (2 + 1 non-empty buckets)");
	KTAP_EXPECT(count_str(out, "<g class=\"hist\"") == 2 && count_str(out, "</g>") == 2, "2 panels");
	KTAP_EXPECT(strstr(out, "a&lt;b&amp;c") && !strstr(out, "a<b"), "names escaped");
	KTAP_EXPECT(strstr(out, "requests</text>") && strstr(out, "latency, usecs"), "axis labels");
	free(out);
	out = NULL;
	trace_hists_reset(&s);
	CAPTURE(out, len, KTAP_EXPECT(!trace_plot_svg(f_, &s, &split, "msecs", "t", NULL), "plot"));
	KTAP_EXPECT(strstr(out, "no requests traced") && !strstr(out, "<rect class=\"bar\""),
		    "an empty picture says so");
	free(out);
	trace_hists_free(&s);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(slots_cover_every_value), KTAP_CASE(merge_by_key), KTAP_CASE(text_report),
	  KTAP_CASE(json_report), KTAP_CASE(svg_has_a_bar_per_bucket))
