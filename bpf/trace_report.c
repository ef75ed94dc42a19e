// SPDX-License-Identifier: GPL-2.0
/* trace_report.c - sluice-trace's reports: latency histograms as text, JSON and a hand-written SVG. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "trace_report.h"

int trace_hists_add(struct trace_hists *s, const struct sluice_trace_hist_key *k,
		    const struct sluice_trace_hist *h)
{
	struct trace_hist_rec *r = NULL;
	struct sluice_trace_hist_key key = *k;
	size_t i;

	key.gen = 0;
	for (i = 0; i < s->n; i++) {
		if (!memcmp(&s->v[i].key, &key, sizeof(key))) {
			r = &s->v[i];
			break;
		}
	}
	if (!r) {
		if (s->n == s->cap) {
			size_t cap = s->cap ? 2 * s->cap : 16;
			struct trace_hist_rec *v = realloc(s->v, cap * sizeof(*v));

			if (!v)
				return -ENOMEM;
			s->v = v;
			s->cap = cap;
		}
		r = &s->v[s->n++];
		memset(r, 0, sizeof(*r));
		r->key = key;
		r->h.min_ns = ~0ULL;
	}
	for (i = 0; i < SLUICE_TRACE_SLOTS; i++)
		r->h.slots[i] += h->slots[i];
	r->h.count += h->count;
	r->h.sum_ns += h->sum_ns;
	if (h->count && h->min_ns < r->h.min_ns)
		r->h.min_ns = h->min_ns;
	if (h->count && h->max_ns > r->h.max_ns)
		r->h.max_ns = h->max_ns;
	return 0;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct sluice_trace_hist_key *x = &((const struct trace_hist_rec *)a)->key;
	const struct sluice_trace_hist_key *y = &((const struct trace_hist_rec *)b)->key;
	int c;

	if (x->dataplane != y->dataplane)
		return x->dataplane < y->dataplane ? -1 : 1;
	c = strncmp(x->disk, y->disk, sizeof(x->disk));
	if (c)
		return c;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	if (x->queue != y->queue)
		return x->queue < y->queue ? -1 : 1;
	if (x->op != y->op)
		return x->op < y->op ? -1 : 1;
	return 0;
}

void trace_hists_sort(struct trace_hists *s)
{
	if (s->n)
		qsort(s->v, s->n, sizeof(*s->v), rec_cmp);
}

void trace_hists_reset(struct trace_hists *s)
{
	s->n = 0;
}

void trace_hists_free(struct trace_hists *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

unsigned long long trace_hists_total(const struct trace_hists *s, unsigned int dataplane)
{
	unsigned long long n = 0;
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->v[i].key.dataplane == dataplane)
			n += s->v[i].h.count;
	return n;
}

const char *trace_dataplane_name(unsigned int dataplane)
{
	static const char *const names[] = {
		[SLUICE_TRACE_DP_KERNEL] = "kernel",
		[SLUICE_TRACE_DP_USER] = "user",
		[SLUICE_TRACE_DP_FALLBACK] = "kernel->user",
	};

	return dataplane < SLUICE_TRACE_DP_MAX ? names[dataplane] : "?";
}

const char *trace_op_name(unsigned int op)
{
	static const char *const names[] = {
		[SLUICE_TRACE_OP_READ] = "read",
		[SLUICE_TRACE_OP_WRITE] = "write",
		[SLUICE_TRACE_OP_FLUSH] = "flush",
		[SLUICE_TRACE_OP_DISCARD] = "discard",
		[SLUICE_TRACE_OP_WRITE_ZEROES] = "write_zeroes",
		[SLUICE_TRACE_OP_GET_ID] = "get_id",
		[SLUICE_TRACE_OP_TRUNCATE] = "truncate",
		[SLUICE_TRACE_OP_OTHER] = "other",
		[SLUICE_TRACE_OP_ANY] = "any",
	};

	return op < SLUICE_TRACE_OP_MAX ? names[op] : "?";
}

const char *trace_fallback_name(unsigned int fallback)
{
	static const char *const names[] = {
		[SLUICE_TRACE_FB_NONE] = "-",
		[SLUICE_TRACE_FB_ALLOC] = "alloc",
		[SLUICE_TRACE_FB_COW] = "cow",
		[SLUICE_TRACE_FB_BACKING] = "backing",
		[SLUICE_TRACE_FB_COMPRESSED] = "compressed",
		[SLUICE_TRACE_FB_OTHER] = "other",
	};

	return fallback <= SLUICE_TRACE_FB_OTHER ? names[fallback] : "?";
}

void trace_disk_label(char *buf, size_t len, const char *disk, __u64 blk, __u32 pid)
{
	if (pid || blk)
		snprintf(buf, len, "%u:0x%llx", pid, (unsigned long long)blk);
	else
		snprintf(buf, len, "%.*s", SLUICE_TRACE_DISK_LEN, disk[0] ? disk : "?");
}

unsigned long long trace_slot_lo(unsigned int s)
{
	return s ? 1ULL << (s - 1) : 0;
}

unsigned long long trace_slot_hi(unsigned int s)
{
	return s ? (1ULL << s) - 1 : 0;
}

unsigned int trace_slot_of(unsigned long long v)
{
	unsigned int s = 0;

	while (v) {
		v >>= 1;
		s++;
	}
	return s < SLUICE_TRACE_SLOTS ? s : SLUICE_TRACE_SLOTS - 1;
}

/* The first and last non-empty slots; false when all are empty. */
static int slot_range(const struct sluice_trace_hist *h, unsigned int *first, unsigned int *last)
{
	unsigned int s;
	int found = 0;

	*first = *last = 0;
	for (s = 0; s < SLUICE_TRACE_SLOTS; s++) {
		if (!h->slots[s])
			continue;
		if (!found)
			*first = s;
		*last = s;
		found = 1;
	}
	return found;
}

static double unit_div(const char *unit)
{
	return strcmp(unit, "msecs") ? 1e3 : 1e6;
}

/* "kernel, disk rw0, queue 0, op read" into @buf. */
static void hist_title(char *buf, size_t len, const struct trace_hist_rec *r,
		       const struct trace_split *split)
{
	const struct sluice_trace_hist_key *k = &r->key;
	size_t n;

	n = (size_t)snprintf(buf, len, "%s", trace_dataplane_name(k->dataplane));
	if (split->disk && n < len) {
		char disk[64];

		trace_disk_label(disk, sizeof(disk), k->disk, k->blk, k->pid);
		n += (size_t)snprintf(buf + n, len - n, ", disk %s", disk);
	}
	if (split->queue && n < len) {
		if (k->queue == SLUICE_TRACE_NO_QUEUE)
			n += (size_t)snprintf(buf + n, len - n, ", queue -");
		else
			n += (size_t)snprintf(buf + n, len - n, ", queue %u", k->queue);
	}
	if (split->op && n < len)
		snprintf(buf + n, len - n, ", op %s", trace_op_name(k->op));
}

#define STARS 40

void trace_print_hist(FILE *f, const struct trace_hist_rec *r, const struct trace_split *split,
		      const char *unit)
{
	const struct sluice_trace_hist *h = &r->h;
	unsigned long long max = 0;
	unsigned int first = 0, last = 0, s;
	double div = unit_div(unit);
	char title[160];

	hist_title(title, sizeof(title), r, split);
	if (!slot_range(h, &first, &last)) {
		fprintf(f, "%s: no requests\n", title);
		return;
	}
	fprintf(f, "%s: %llu request%s, latency avg %.1f min %.1f max %.1f %s\n", title,
		(unsigned long long)h->count, h->count == 1 ? "" : "s", h->count ? (double)h->sum_ns / (double)h->count / div : 0,
		(double)h->min_ns / div, (double)h->max_ns / div, unit);
	for (s = first; s <= last; s++)
		if (h->slots[s] > max)
			max = h->slots[s];
	fprintf(f, "%22s : %-10s %s\n", unit, "count", "distribution");
	for (s = first; s <= last; s++) {
		unsigned long long n = h->slots[s];
		unsigned int w = (unsigned int)(n * STARS / max);
		char bar[STARS + 1];

		if (n && !w)
			w = 1;
		memset(bar, '*', w);
		memset(bar + w, ' ', STARS - w);
		bar[STARS] = '\0';
		if (s == SLUICE_TRACE_SLOTS - 1)
			fprintf(f, "%10llu -> %-8s : %-10llu |%s|\n", trace_slot_lo(s), "...", n, bar);
		else
			fprintf(f, "%10llu -> %-8llu : %-10llu |%s|\n", trace_slot_lo(s), trace_slot_hi(s),
				n, bar);
	}
}

void trace_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void trace_print_hist_json(FILE *f, const struct trace_hist_rec *r, const struct trace_split *split,
			   const char *unit)
{
	const struct sluice_trace_hist_key *k = &r->key;
	const struct sluice_trace_hist *h = &r->h;
	unsigned int s;
	int first = 1;

	fprintf(f, "{\"dataplane\": ");
	trace_json_str(f, trace_dataplane_name(k->dataplane));
	if (split->disk) {
		char disk[64];

		trace_disk_label(disk, sizeof(disk), k->disk, k->blk, k->pid);
		fprintf(f, ", \"disk\": ");
		trace_json_str(f, disk);
		if (k->pid)
			fprintf(f, ", \"pid\": %u", k->pid);
	}
	if (split->queue) {
		if (k->queue == SLUICE_TRACE_NO_QUEUE)
			fprintf(f, ", \"queue\": null");
		else
			fprintf(f, ", \"queue\": %u", k->queue);
	}
	if (split->op)
		fprintf(f, ", \"op\": \"%s\"", trace_op_name(k->op));
	fprintf(f, ", \"count\": %llu, \"sum_ns\": %llu, \"min_ns\": %llu, \"max_ns\": %llu, \"unit\": \"%s\", \"buckets\": [",
		(unsigned long long)h->count, (unsigned long long)h->sum_ns,
		h->count ? (unsigned long long)h->min_ns : 0ULL, (unsigned long long)h->max_ns, unit);
	for (s = 0; s < SLUICE_TRACE_SLOTS; s++) {
		if (!h->slots[s])
			continue;
		fprintf(f, "%s{\"lo\": %llu, ", first ? "" : ", ", trace_slot_lo(s));
		if (s == SLUICE_TRACE_SLOTS - 1)
			fprintf(f, "\"hi\": null, ");
		else
			fprintf(f, "\"hi\": %llu, ", trace_slot_hi(s));
		fprintf(f, "\"count\": %llu}", (unsigned long long)h->slots[s]);
		first = 0;
	}
	fprintf(f, "]}");
}

/* ---- SVG ---- */

#define SVG_W		800
#define SVG_MARGIN_L	80
#define SVG_MARGIN_R	30
#define SVG_HEAD	70
#define SVG_PANEL_H	260
#define SVG_PLOT_TOP	40	/* within a panel: title above */
#define SVG_PLOT_H	150

static void svg_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '&':
			fputs("&amp;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			if ((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f)
				fputc(*s, f);
			else
				fputc('?', f);
		}
	}
}

/* The smallest 1, 2 or 5 times a power of ten such that @max fits in at most 5 steps. */
static unsigned long long nice_step(unsigned long long max)
{
	unsigned long long p = 1;

	for (;;) {
		if (p * 5 >= max)
			return p;
		if (p * 2 * 5 >= max)
			return p * 2;
		if (p * 5 * 5 >= max)
			return p * 5;
		p *= 10;
	}
}

static const char *dataplane_color(unsigned int dp)
{
	switch (dp) {
	case SLUICE_TRACE_DP_KERNEL:
		return "#3b6fb6";
	case SLUICE_TRACE_DP_USER:
		return "#e07b28";
	default:
		return "#3a9d5d";
	}
}

/* Every panel shares one x axis: all non-empty buckets, and at least SVG_MIN_BUCKETS of them. */
#define SVG_MIN_BUCKETS	8

static void svg_panel(FILE *f, unsigned int idx, const struct trace_hist_rec *r,
		      const struct trace_split *split, const char *unit, int y0, unsigned int first,
		      unsigned int last)
{
	const struct sluice_trace_hist *h = &r->h;
	int plot_w = SVG_W - SVG_MARGIN_L - SVG_MARGIN_R, top = y0 + SVG_PLOT_TOP;
	int bottom = top + SVG_PLOT_H;
	unsigned long long max = 0, step, ymax, t;
	unsigned int s, nb = last - first + 1, f0, l0;
	double bw = (double)plot_w / nb, div = unit_div(unit);
	char title[160];

	hist_title(title, sizeof(title), r, split);
	fprintf(f, "<g class=\"hist\" id=\"hist-%u\" data-dataplane=\"%s\" data-count=\"%llu\">\n", idx,
		trace_dataplane_name(r->key.dataplane), (unsigned long long)h->count);
	fprintf(f, "<text class=\"title\" x=\"%d\" y=\"%d\">", SVG_MARGIN_L, y0 + 20);
	svg_text(f, title);
	if (h->count)
		fprintf(f, ": %llu request%s, avg %.1f %s</text>\n", (unsigned long long)h->count,
			h->count == 1 ? "" : "s", (double)h->sum_ns / (double)h->count / div, unit);
	else
		fprintf(f, "</text>\n");
	if (!slot_range(h, &f0, &l0)) {
		fprintf(f, "<text class=\"empty\" x=\"%d\" y=\"%d\">no requests</text>\n</g>\n",
			SVG_MARGIN_L, top + SVG_PLOT_H / 2);
		return;
	}
	for (s = first; s <= last; s++)
		if (h->slots[s] > max)
			max = h->slots[s];
	step = nice_step(max);
	ymax = (max + step - 1) / step * step;

	/* y axis: line, ticks, grid, label */
	fprintf(f, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n", SVG_MARGIN_L, top,
		SVG_MARGIN_L, bottom);
	for (t = 0; t <= ymax; t += step) {
		double y = bottom - (double)t * SVG_PLOT_H / (double)ymax;

		fprintf(f, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n",
			SVG_MARGIN_L, y, SVG_MARGIN_L + plot_w, y);
		fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%llu</text>\n",
			SVG_MARGIN_L - 6, y + 4, t);
	}
	fprintf(f, "<text class=\"label\" transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">requests</text>\n",
		SVG_MARGIN_L - 50, top + SVG_PLOT_H / 2);

	/* bars */
	for (s = first; s <= last; s++) {
		double x = SVG_MARGIN_L + (s - first) * bw, hgt;
		unsigned long long n = h->slots[s];

		if (!n)
			continue;
		hgt = (double)n * SVG_PLOT_H / (double)ymax;
		if (hgt < 1.5)
			hgt = 1.5;	/* a single request stays visible next to thousands */
		fprintf(f, "<rect class=\"bar\" data-lo=\"%llu\" data-count=\"%llu\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">",
			trace_slot_lo(s), n, x + bw * 0.1, bottom - hgt, bw * 0.8, hgt,
			dataplane_color(r->key.dataplane));
		if (s == SLUICE_TRACE_SLOTS - 1)
			fprintf(f, "<title>%llu %s and more: %llu</title></rect>\n", trace_slot_lo(s), unit, n);
		else
			fprintf(f, "<title>%llu-%llu %s: %llu</title></rect>\n", trace_slot_lo(s),
				trace_slot_hi(s), unit, n);
		fprintf(f, "<text class=\"count\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%llu</text>\n",
			x + bw / 2, bottom - hgt - 3, n);
	}

	/* x axis: line, a label per bucket (its lower bound), title */
	fprintf(f, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n", SVG_MARGIN_L, bottom,
		SVG_MARGIN_L + plot_w, bottom);
	for (s = first; s <= last; s++) {
		double x = SVG_MARGIN_L + (s - first) * bw + bw / 2;

		fprintf(f, "<text class=\"tick\" transform=\"translate(%.1f,%d) rotate(-40)\" text-anchor=\"end\">%llu</text>\n",
			x + 4, bottom + 14, trace_slot_lo(s));
	}
	fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">latency, %s (log2 buckets, labelled by lower bound)</text>\n",
		SVG_MARGIN_L + plot_w / 2, bottom + 62, unit);
	fprintf(f, "</g>\n");
}

int trace_plot_svg(FILE *f, const struct trace_hists *s, const struct trace_split *split,
		   const char *unit, const char *title, const char *subtitle)
{
	size_t panels = s->n ? s->n : 1, i;
	int height = SVG_HEAD + (int)panels * SVG_PANEL_H, any = 0;
	unsigned int first = 0, last = 0;

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
		SVG_W, height, SVG_W, height);
	fprintf(f, "<style>\n"
		   ".title { font-size: 14px; font-weight: bold; }\n"
		   ".axis { stroke: #222; stroke-width: 1; }\n"
		   ".grid { stroke: #ddd; stroke-width: 1; }\n"
		   ".tick, .count { font-size: 10px; fill: #333; }\n"
		   ".label { font-size: 12px; fill: #222; }\n"
		   ".empty { font-style: italic; fill: #777; }\n"
		   "</style>\n");
	fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", SVG_W, height);
	fprintf(f, "<text class=\"title\" x=\"%d\" y=\"28\" font-size=\"16\">", SVG_MARGIN_L);
	svg_text(f, title);
	fprintf(f, "</text>\n");
	if (subtitle) {
		fprintf(f, "<text class=\"label\" x=\"%d\" y=\"50\">", SVG_MARGIN_L);
		svg_text(f, subtitle);
		fprintf(f, "</text>\n");
	}
	if (!s->n) {
		fprintf(f, "<text class=\"empty\" x=\"%d\" y=\"%d\">no requests traced</text>\n",
			SVG_MARGIN_L, SVG_HEAD + SVG_PANEL_H / 2);
	}
	for (i = 0; i < s->n; i++) {
		unsigned int f0, l0;

		if (!slot_range(&s->v[i].h, &f0, &l0))
			continue;
		if (!any || f0 < first)
			first = f0;
		if (!any || l0 > last)
			last = l0;
		any = 1;
	}
	while (last - first + 1 < SVG_MIN_BUCKETS) {
		if (last < SLUICE_TRACE_SLOTS - 1)
			last++;
		else
			first--;
	}
	for (i = 0; i < s->n; i++)
		svg_panel(f, (unsigned int)i, &s->v[i], split, unit, SVG_HEAD + (int)i * SVG_PANEL_H,
			  first, last);
	fprintf(f, "</svg>\n");
	fflush(f);
	return ferror(f) ? -EIO : 0;
}
