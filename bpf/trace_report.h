/* SPDX-License-Identifier: GPL-2.0 */
/* trace_report.h - sluice-trace's reports: latency histograms as text, JSON and SVG (no BPF: testable on the host). */
#ifndef SLUICE_TRACE_REPORT_H
#define SLUICE_TRACE_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include <linux/types.h>

#include "sluice_trace.h"

/* One histogram as read from the BPF map (key.gen is ignored here). */
struct trace_hist_rec {
	struct sluice_trace_hist_key key;
	struct sluice_trace_hist h;
};

/* A set of histograms, merged by key. */
struct trace_hists {
	struct trace_hist_rec *v;
	size_t n;
	size_t cap;
};

/* Which fields the histograms are split on (the keys' other fields are not printed). */
struct trace_split {
	int disk;
	int queue;
	int op;
};

/* Add @h into the histogram of @k (created when new); 0 or -ENOMEM. */
int trace_hists_add(struct trace_hists *s, const struct sluice_trace_hist_key *k,
		    const struct sluice_trace_hist *h);
/* Order: dataplane, disk, queue, op. */
void trace_hists_sort(struct trace_hists *s);
void trace_hists_reset(struct trace_hists *s);
void trace_hists_free(struct trace_hists *s);
/* Requests in the histograms of one dataplane. */
unsigned long long trace_hists_total(const struct trace_hists *s, unsigned int dataplane);

const char *trace_dataplane_name(unsigned int dataplane);
const char *trace_op_name(unsigned int op);
const char *trace_fallback_name(unsigned int fallback);
/* A disk's name: the module's, or "PID:0xBLK" for a user-dataplane backend. */
void trace_disk_label(char *buf, size_t len, const char *disk, __u64 blk, __u32 pid);

/* The values slot @s holds (see sluice_trace.h): [lo, hi]; the last slot is open above. */
unsigned long long trace_slot_lo(unsigned int s);
unsigned long long trace_slot_hi(unsigned int s);
/* The slot of value @v (the same as the BPF side's). */
unsigned int trace_slot_of(unsigned long long v);

/* The text report of one histogram, biolatency-style; @unit is "usecs" or "msecs". */
void trace_print_hist(FILE *f, const struct trace_hist_rec *r, const struct trace_split *split,
		      const char *unit);
/* One histogram as a JSON object (no newline). */
void trace_print_hist_json(FILE *f, const struct trace_hist_rec *r, const struct trace_split *split,
			   const char *unit);
/* @s as a JSON string literal, quotes included. */
void trace_json_str(FILE *f, const char *s);

/*
 * The histograms as an SVG image: one panel per histogram, a bar per
 * non-empty bucket between the first and the last non-empty one, labelled
 * axes, one x axis for all.  @title and @subtitle (may be NULL) head the
 * picture.  Returns 0 or -errno (write error).
 */
int trace_plot_svg(FILE *f, const struct trace_hists *s, const struct trace_split *split,
		   const char *unit, const char *title, const char *subtitle);

#endif /* SLUICE_TRACE_REPORT_H */
