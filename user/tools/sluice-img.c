// SPDX-License-Identifier: GPL-2.0
/* sluice-img.c - qemu-img compatible image tool (create, info, check, convert, map, resize, bench) over sluice's block layer. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "aio.h"
#include "block.h"
#include "coroutine.h"
#include "qcow2.h"
#include "util.h"

#include "tool-common.h"

#define PROG "sluice-img"

static void err_opt(int opt, char **argv)
{
	if (opt == ':')
		fprintf(stderr, PROG ": option '%s' requires an argument\n", argv[optind - 1]);
	else if (optopt)
		fprintf(stderr, PROG ": invalid option -- '%c' (try '" PROG " --help')\n", optopt);
	else
		fprintf(stderr, PROG ": unrecognized option '%s' (try '" PROG " --help')\n", argv[optind - 1]);
}

/* ---- create ---- */

/* The image's directory + @backing, as the qcow2 driver resolves a relative backing name. */
static char *backing_full_path(const char *image, const char *backing)
{
	const char *slash;

	if (backing[0] == '/' || !(slash = strrchr(image, '/')))
		return g_strdup(backing);
	return g_strdup_printf("%.*s%s", (int)(slash - image + 1), image, backing);
}

/* Pure: the value of @key in "k=v,k=v" @options, or NULL (caller frees). */
static char *opt_get(const char *options, const char *key)
{
	char **kv, **p, *val = NULL;
	size_t klen = strlen(key);

	if (!options)
		return NULL;
	kv = g_strsplit(options, ",", -1);
	for (p = kv; *p; p++)
		if (!strncmp(*p, key, klen) && (*p)[klen] == '=') {
			g_free(val);
			val = g_strdup(*p + klen + 1);
		}
	g_strfreev(kv);
	return val;
}

/* The "Formatting ..." line of qemu-img create for qcow2: its defaults, then what was given. */
static void print_qcow2_formatting(const char *filename, uint64_t size, const char *options)
{
	static const char *const given[] = { "backing_file", "backing_fmt", "compat", NULL };
	char *cs = opt_get(options, "cluster_size"), *ct = opt_get(options, "compression_type");
	char *lazy = opt_get(options, "lazy_refcounts"), *rb = opt_get(options, "refcount_bits");
	uint64_t csv = 65536;
	unsigned int i;

	if (cs)
		tool_parse_num(cs, &csv);
	printf("Formatting '%s', fmt=qcow2 cluster_size=%" PRIu64 " extended_l2=off compression_type=%s size=%" PRIu64,
	       filename, csv, ct ? ct : "zlib", size);
	for (i = 0; given[i]; i++) {
		char *v = opt_get(options, given[i]);

		if (v)
			printf(" %s=%s", given[i], v);
		g_free(v);
	}
	printf(" lazy_refcounts=%s refcount_bits=%s\n",
	       lazy && (!strcmp(lazy, "on") || !strcmp(lazy, "true")) ? "on" : "off", rb ? rb : "16");
	g_free(cs);
	g_free(ct);
	g_free(lazy);
	g_free(rb);
}

static int img_create(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = "raw", *options = NULL, *filename, *backing = NULL, *backing_fmt = NULL;
	bool quiet = false, unsafe = false, have_size = false;
	uint64_t size = 0;
	char *err = NULL, *opts = NULL;
	int opt, ret, status = 1;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:o:qhF:b:u", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			fmt = optarg;
			break;
		case 'o':
			options = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			printf("Usage: " PROG " create [-q] [-f fmt] [-b backing_file -F backing_fmt] [-u] [-o options] filename [size]\n");
			return 0;
		case 'F':
			backing_fmt = optarg;
			break;
		case 'b':
			backing = optarg;
			break;
		case 'u':
			unsafe = true;
			break;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, PROG ": Expecting image file name (try '" PROG " --help')\n");
		return 1;
	}
	filename = argv[optind++];
	if (optind < argc) {
		have_size = true;
		ret = sluice_parse_size(argv[optind], &size);
		if (ret) {
			fprintf(stderr, PROG ": Invalid image size specified: '%s'. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n",
				argv[optind]);
			return 1;
		}
		if (++optind < argc) {
			fprintf(stderr, PROG ": Unexpected argument: %s\n", argv[optind]);
			return 1;
		}
	} else if (!backing) {
		fprintf(stderr, PROG ": %s: Image creation needs a size parameter\n", filename);
		return 1;
	}
	if (!sluice_bdrv_find_format(fmt)) {
		fprintf(stderr, PROG ": %s: Unknown file format '%s'\n", filename, fmt);
		return 1;
	}
	if ((backing || backing_fmt) && strcmp(fmt, "qcow2")) {
		fprintf(stderr, PROG ": %s: Backing file not supported for file format '%s'\n", filename, fmt);
		return 1;
	}
	if (backing && !backing_fmt) {
		fprintf(stderr, PROG ": %s: Backing file specified without backing format\n", filename);
		return 1;
	}
	if (backing_fmt && !backing) {
		fprintf(stderr, PROG ": %s: Backing format specified without backing file\n", filename);
		return 1;
	}
	if (backing && !unsafe) {
		/* The backing file must open (and gives the size when none was given). */
		char *path = backing_full_path(filename, backing);
		struct sluice_bds *b = sluice_bds_open(path, backing_fmt, 0, &err);

		g_free(path);
		if (!b) {
			fprintf(stderr, PROG ": %s: Could not open backing image: %s\n", filename,
				err ? err : "unknown error");
			goto out;
		}
		if (!have_size) {
			int64_t len = sluice_bds_getlength(b);

			size = len > 0 ? (uint64_t)len : 0;
		}
		sluice_bds_unref(b);
	} else if (backing && !have_size) {
		fprintf(stderr, PROG ": %s: Image creation needs a size parameter\n", filename);
		return 1;
	}
	if (backing)
		opts = g_strdup_printf("%s%sbacking_file=%s,backing_fmt=%s", options ? options : "",
				       options ? "," : "", backing, backing_fmt);
	else
		opts = g_strdup(options);
	if (!quiet) {
		if (!strcmp(fmt, "qcow2"))
			print_qcow2_formatting(filename, size, opts);
		else
			printf("Formatting '%s', fmt=%s size=%" PRIu64 "%s%s\n", filename, fmt, size,
			       opts ? " " : "", opts ? opts : "");
		fflush(stdout);
	}
	ret = sluice_bdrv_create(fmt, filename, size, opts, &err);
	if (ret < 0) {
		fprintf(stderr, PROG ": %s: %s\n", filename, err ? err : strerror(-ret));
		goto out;
	}
	status = 0;
out:
	g_free(opts);
	g_free(err);
	return status;
}

/* ---- info ---- */

static int64_t allocated_size(struct sluice_bds *bs, const char *filename)
{
	struct stat st;

	for (; bs; bs = bs->file) {
		if (bs->drv && bs->drv->get_allocated_size)
			return bs->drv->get_allocated_size(bs);
	}
	if (stat(filename, &st))
		return -errno;
	return (int64_t)st.st_blocks * 512;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static const char *bool_str(bool b)
{
	return b ? "true" : "false";
}

/* One image of info's report: @bs is the format node, @filename as the user (or the chain) named it. */
static int print_info(struct sluice_bds *bs, const char *filename, bool json, const char *ind)
{
	struct qcow2_info qi;
	bool is_qcow2 = qcow2_get_info(bs, &qi);
	int64_t len = sluice_bds_getlength(bs), alloc;
	const char *fmt_name = bs && bs->drv ? bs->drv->format_name : "unknown";
	char *full = NULL;
	char s1[64], s2[64];

	if (len < 0) {
		fprintf(stderr, PROG ": %s: could not get the image size: %s\n", filename, strerror((int)-len));
		return 1;
	}
	alloc = allocated_size(bs, filename);
	if (is_qcow2 && qi.backing_file)
		full = backing_full_path(filename, qi.backing_file);

	if (json) {
		printf("%s{\n", ind);
		if (is_qcow2 && qi.backing_file && qi.backing_format) {
			printf("%s    \"backing-filename-format\": ", ind);
			json_string(qi.backing_format);
			printf(",\n");
		}
		printf("%s    \"virtual-size\": %" PRId64 ",\n%s    \"filename\": ", ind, len, ind);
		json_string(filename);
		printf(",\n");
		if (is_qcow2)
			printf("%s    \"cluster-size\": %" PRIu64 ",\n", ind, qi.cluster_size);
		printf("%s    \"format\": ", ind);
		json_string(fmt_name);
		printf(",\n");
		if (alloc >= 0)
			printf("%s    \"actual-size\": %" PRId64 ",\n", ind, alloc);
		if (is_qcow2) {
			printf("%s    \"format-specific\": {\n%s        \"type\": \"qcow2\",\n%s        \"data\": {\n",
			       ind, ind, ind);
			printf("%s            \"compat\": \"%s\",\n", ind, qi.version >= 3 ? "1.1" : "0.10");
			printf("%s            \"compression-type\": \"%s\",\n", ind,
			       qi.compression_type ? "zstd" : "zlib");
			if (qi.version >= 3)
				printf("%s            \"lazy-refcounts\": %s,\n", ind, bool_str(qi.lazy_refcounts));
			printf("%s            \"refcount-bits\": %u%s\n", ind, qi.refcount_bits,
			       qi.version >= 3 ? "," : "");
			if (qi.version >= 3)
				printf("%s            \"corrupt\": %s,\n%s            \"extended-l2\": false\n",
				       ind, bool_str(qi.corrupt), ind);
			printf("%s        }\n%s    },\n", ind, ind);
			if (qi.backing_file) {
				printf("%s    \"full-backing-filename\": ", ind);
				json_string(full);
				printf(",\n%s    \"backing-filename\": ", ind);
				json_string(qi.backing_file);
				printf(",\n");
			}
		}
		printf("%s    \"dirty-flag\": %s\n%s}", ind, bool_str(is_qcow2 && qi.dirty), ind);
	} else {
		printf("image: %s\n", filename);
		printf("file format: %s\n", fmt_name);
		printf("virtual size: %s (%" PRId64 " bytes)\n",
		       sluice_format_size((uint64_t)len, s1, sizeof(s1)), len);
		if (alloc >= 0)
			printf("disk size: %s\n", sluice_format_size((uint64_t)alloc, s2, sizeof(s2)));
		else
			printf("disk size: unavailable\n");
		if (is_qcow2) {
			printf("cluster_size: %" PRIu64 "\n", qi.cluster_size);
			if (qi.backing_file) {
				if (strcmp(full, qi.backing_file))
					printf("backing file: %s (actual path: %s)\n", qi.backing_file, full);
				else
					printf("backing file: %s\n", qi.backing_file);
				if (qi.backing_format)
					printf("backing file format: %s\n", qi.backing_format);
			}
			printf("Format specific information:\n");
			printf("    compat: %s\n", qi.version >= 3 ? "1.1" : "0.10");
			printf("    compression type: %s\n", qi.compression_type ? "zstd" : "zlib");
			if (qi.version >= 3)
				printf("    lazy refcounts: %s\n", bool_str(qi.lazy_refcounts));
			printf("    refcount bits: %u\n", qi.refcount_bits);
			if (qi.version >= 3)
				printf("    corrupt: %s\n    extended l2: false\n", bool_str(qi.corrupt));
		}
	}
	g_free(full);
	return 0;
}

static int img_info(int argc, char **argv)
{
	enum { OPT_BACKING_CHAIN = 256 };
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'O' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_open_opts o = { 0 };
	struct sluice_aio_ctx *ctx;
	struct sluice_blk *blk;
	struct sluice_bds *bs;
	const char *filename;
	bool json = false, chain = false;
	int opt, status = 0;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:hU", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o.fmt = optarg;
			break;
		case 'O':
			if (!strcmp(optarg, "json")) {
				json = true;
			} else if (!strcmp(optarg, "human")) {
				json = false;
			} else {
				fprintf(stderr, PROG ": --output must be used with human or json as argument.\n");
				return 1;
			}
			break;
		case OPT_BACKING_CHAIN:
			chain = true;
			break;
		case 'U':
			break;
		case 'h':
			printf("Usage: " PROG " info [-f fmt] [--output=human|json] [--backing-chain] [-U] filename\n");
			return 0;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			optind >= argc ? "Expecting one image file name" : "Unexpected argument");
		return 1;
	}
	filename = argv[optind];

	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		return 1;
	}
	blk = tool_blk_open(PROG, ctx, filename, &o);
	if (!blk) {
		sluice_aio_ctx_free(ctx);
		return 1;
	}
	bs = sluice_blk_bs(blk);
	if (!chain) {
		status = print_info(bs, filename, json, "");
		if (json && !status)
			printf("\n");
	} else {
		const char *name = filename;
		bool first = true;

		if (json)
			printf("[\n");
		for (; bs && !status; bs = bs->backing, first = false) {
			if (!first)
				printf(json ? ",\n" : "\n");
			status = print_info(bs, name, json, json ? "    " : "");
			name = bs->backing ? bs->backing->filename : NULL;
		}
		if (json)
			printf("\n]\n");
	}
	sluice_blk_unref(blk);
	sluice_aio_ctx_free(ctx);
	return status;
}

/* ---- check ---- */

static void check_json(const char *filename, const char *fmt, const struct qcow2_check_result *r)
{
	printf("{\n    \"image-end-offset\": %" PRIu64 ",\n", r->image_end_offset);
	printf("    \"total-clusters\": %" PRIu64 ",\n", r->total_clusters);
	if (r->corruptions)
		printf("    \"corruptions\": %" PRIu64 ",\n", r->corruptions);
	printf("    \"check-errors\": %" PRIu64 ",\n", r->check_errors);
	if (r->leaks)
		printf("    \"leaks\": %" PRIu64 ",\n", r->leaks);
	if (r->leaks_fixed)
		printf("    \"leaks-fixed\": %" PRIu64 ",\n", r->leaks_fixed);
	if (r->corruptions_fixed)
		printf("    \"corruptions-fixed\": %" PRIu64 ",\n", r->corruptions_fixed);
	if (r->allocated_clusters)
		printf("    \"allocated-clusters\": %" PRIu64 ",\n", r->allocated_clusters);
	if (r->fragmented_clusters)
		printf("    \"fragmented-clusters\": %" PRIu64 ",\n", r->fragmented_clusters);
	if (r->compressed_clusters)
		printf("    \"compressed-clusters\": %" PRIu64 ",\n", r->compressed_clusters);
	printf("    \"filename\": ");
	json_string(filename);
	printf(",\n    \"format\": ");
	json_string(fmt);
	printf("\n}\n");
}

static void check_human(const struct qcow2_check_result *r)
{
	if (!r->corruptions && !r->leaks && !r->check_errors) {
		printf("No errors were found on the image.\n");
	} else {
		if (r->corruptions)
			printf("\n%" PRIu64 " errors were found on the image.\n"
			       "Data may be corrupted, or further writes to the image may corrupt it.\n",
			       r->corruptions);
		if (r->leaks)
			printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n", r->leaks);
		if (r->check_errors)
			printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
			       r->check_errors);
	}
	if (r->total_clusters && r->allocated_clusters)
		printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
		       r->allocated_clusters, r->total_clusters,
		       r->allocated_clusters * 100.0 / r->total_clusters,
		       r->fragmented_clusters * 100.0 / r->allocated_clusters,
		       r->compressed_clusters * 100.0 / r->allocated_clusters);
	if (r->image_end_offset)
		printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

static int img_check(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "repair", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'O' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_open_opts o = { 0 };
	struct qcow2_check_result r;
	struct sluice_aio_ctx *ctx;
	struct sluice_blk *blk;
	struct sluice_bds *bs;
	const char *filename;
	bool json = false, quiet = false;
	int opt, fix = 0, ret, status;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:hr:qT:U", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o.fmt = optarg;
			break;
		case 'r':
			if (!strcmp(optarg, "leaks")) {
				fix = QCOW2_FIX_LEAKS;
			} else if (!strcmp(optarg, "all")) {
				fix = QCOW2_FIX_LEAKS | QCOW2_FIX_ERRORS;
			} else {
				fprintf(stderr, PROG ": Unknown option value for -r (expecting 'leaks' or 'all'): %s\n",
					optarg);
				return 1;
			}
			break;
		case 'O':
			if (!strcmp(optarg, "json")) {
				json = true;
			} else if (!strcmp(optarg, "human")) {
				json = false;
			} else {
				fprintf(stderr, PROG ": --output must be used with human or json as argument.\n");
				return 1;
			}
			break;
		case 'q':
			quiet = true;
			break;
		case 'T':
		case 'U':
			break;
		case 'h':
			printf("Usage: " PROG " check [-q] [-f fmt] [--output=human|json] [-r leaks|all] filename\n");
			return 0;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			optind >= argc ? "Expecting one image file name" : "Unexpected argument");
		return 1;
	}
	filename = argv[optind];
	if (fix)
		o.flags |= SLUICE_BDRV_O_RDWR | QCOW2_O_REPAIR;

	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		return 1;
	}
	blk = tool_blk_open(PROG, ctx, filename, &o);
	if (!blk) {
		sluice_aio_ctx_free(ctx);
		return 1;
	}
	bs = sluice_blk_bs(blk);
	if (bs->drv != &sluice_bdrv_qcow2) {
		fprintf(stderr, PROG ": This image format does not support checks\n");
		status = 63;
		goto out;
	}
	ret = qcow2_check(bs, fix, &r);
	if (!json && !quiet && (r.leaks_fixed || r.corruptions_fixed))
		printf("The following inconsistencies were found and repaired:\n\n"
		       "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
		       "Double checking the fixed image now...\n", r.leaks_fixed, r.corruptions_fixed);
	if (ret >= 0 || r.check_errors) {
		if (json)
			check_json(filename, bs->drv->format_name, &r);
		else if (!quiet)
			check_human(&r);
	}
	if (ret < 0 || r.check_errors) {
		fprintf(stderr, PROG ": Check failed%s%s\n", ret < 0 ? ": " : "", ret < 0 ? strerror(-ret) : "");
		status = 1;
	} else if (r.corruptions) {
		status = 2;
	} else if (r.leaks) {
		status = 3;
	} else {
		status = 0;
	}
out:
	fflush(stdout);
	sluice_blk_unref(blk);
	sluice_aio_ctx_free(ctx);
	return status;
}

/* ---- map, convert: block status over the backing chain ---- */

/*
 * Coroutine: the status of [off, off + bytes) of @top's chain: the first
 * layer that allocates it (its depth in *@depth), else the bottom layer's
 * answer.  Past the end of a shorter backing file: zeros.
 */
static int coroutine_fn GRAPH_RDLOCK chain_block_status(struct sluice_bds *top, uint64_t off, uint64_t bytes,
					   int *depth, uint64_t *pnum, uint64_t *map,
					   struct sluice_bds **file)
{
	struct sluice_bds *bs = top;
	int d = 0, ret;

	for (;;) {
		int64_t len = sluice_bds_getlength(bs);

		*map = 0;
		*file = NULL;
		if (len >= 0 && off >= (uint64_t)len) {
			*pnum = bytes;
			*depth = d;
			return SLUICE_BLOCK_ZERO;
		}
		ret = sluice_bds_co_block_status(bs, off, bytes, pnum, map, file);
		if (ret < 0)
			return ret;
		if (!*pnum)
			return -EIO;
		if ((ret & SLUICE_BLOCK_ALLOCATED) || !bs->backing) {
			*depth = d;
			break;
		}
		bytes = *pnum;
		bs = bs->backing;
		d++;
	}
	/*
	 * QEMU refines DATA with the file's holes only for images it guesses
	 * to be metadata-preallocated; sluice reports the format's answer.
	 */
	return ret;
}

struct map_entry {
	uint64_t start, length, offset;
	int depth, flags;
	bool has_offset;
	const char *filename;
};

struct map_job {
	struct sluice_bds *bs;
	uint64_t len;
	bool json;
	int ret;
	bool any;
	struct map_entry cur;
};

static void map_print(struct map_job *j, const struct map_entry *e)
{
	if (j->json) {
		printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
		       j->any ? ",\n" : "[", e->start, e->length, e->depth,
		       bool_str(e->flags & SLUICE_BLOCK_ALLOCATED), bool_str(e->flags & SLUICE_BLOCK_ZERO),
		       bool_str(e->flags & SLUICE_BLOCK_DATA));
		if (e->has_offset)
			printf(", \"offset\": %" PRIu64, e->offset);
		printf("}");
		j->any = true;
	} else if ((e->flags & SLUICE_BLOCK_DATA) && !(e->flags & SLUICE_BLOCK_ZERO)) {
		printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
		       e->has_offset ? e->offset : 0, e->filename ? e->filename : "");
	}
}

static void coroutine_fn GRAPH_RDLOCK map_co_locked(void *opaque)
{
	struct map_job *j = opaque;
	uint64_t off = 0;
	bool have = false;

	if (!j->json)
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	while (off < j->len) {
		struct map_entry e = { .start = off };
		struct sluice_bds *file;
		uint64_t pnum, map;
		int ret;

		ret = chain_block_status(j->bs, off, MIN(j->len - off, 1ull << 30), &e.depth, &pnum, &map,
					 &file);
		if (ret < 0) {
			j->ret = ret;
			return;
		}
		e.length = pnum;
		e.flags = ret & (SLUICE_BLOCK_DATA | SLUICE_BLOCK_ZERO | SLUICE_BLOCK_ALLOCATED);
		e.has_offset = ret & SLUICE_BLOCK_OFFSET_VALID;
		e.offset = map;
		e.filename = file ? file->filename : NULL;
		if (!j->json && (e.flags & SLUICE_BLOCK_DATA) && !e.has_offset) {
			fprintf(stderr, PROG ": File contains external, encrypted or compressed clusters.\n");
			j->ret = -ENOTSUP;
			return;
		}
		if (have && j->cur.depth == e.depth && j->cur.flags == e.flags &&
		    j->cur.has_offset == e.has_offset && j->cur.filename == e.filename &&
		    (!e.has_offset || j->cur.offset + j->cur.length == e.offset)) {
			j->cur.length += e.length;
		} else {
			if (have)
				map_print(j, &j->cur);
			j->cur = e;
			have = true;
		}
		off += pnum;
	}
	if (have)
		map_print(j, &j->cur);
	if (j->json)
		printf("%s]\n", j->any ? "" : "[");
}

/* Coroutine: map_co_locked() under the graph lock (node-level calls only). */
static void coroutine_fn map_co(void *opaque)
{
	sluice_graph_co_rdlock();
	map_co_locked(opaque);
	sluice_graph_co_rdunlock();
}

static int img_map(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'O' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_open_opts o = { 0 };
	struct map_job j = { 0 };
	struct sluice_aio_ctx *ctx;
	struct sluice_blk *blk;
	int opt, len;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:hU", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o.fmt = optarg;
			break;
		case 'O':
			if (!strcmp(optarg, "json")) {
				j.json = true;
			} else if (!strcmp(optarg, "human")) {
				j.json = false;
			} else {
				fprintf(stderr, PROG ": --output must be used with human or json as argument.\n");
				return 1;
			}
			break;
		case 'U':
			break;
		case 'h':
			printf("Usage: " PROG " map [-f fmt] [--output=human|json] [-U] filename\n");
			return 0;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			optind >= argc ? "Expecting one image file name" : "Unexpected argument");
		return 1;
	}
	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		return 1;
	}
	blk = tool_blk_open(PROG, ctx, argv[optind], &o);
	if (!blk) {
		sluice_aio_ctx_free(ctx);
		return 1;
	}
	j.bs = sluice_blk_bs(blk);
	len = 0;
	j.len = (uint64_t)sluice_blk_getlength(blk);
	tool_run_co(ctx, map_co, &j);
	if (j.ret < 0 && j.ret != -ENOTSUP)
		fprintf(stderr, PROG ": Could not read the block status: %s\n", strerror(-j.ret));
	fflush(stdout);
	sluice_blk_unref(blk);
	sluice_aio_ctx_free(ctx);
	return j.ret < 0 ? 1 : len;
}

/* ---- convert ---- */

struct convert_job {
	struct sluice_blk *src, *dst;
	uint64_t len;
	uint64_t cluster_size;		/* -c: the target's cluster size */
	bool compress;
	bool fresh;			/* the target was just created: it reads zeros */
	bool progress;
	double shown;
	int ret;
};

static void convert_progress(struct convert_job *j, uint64_t done)
{
	double pct = j->len ? done * 100.0 / j->len : 100.0;

	if (!j->progress || (pct < 100.0 && pct - j->shown < 1.0))
		return;
	j->shown = pct;
	printf("    (%3.2f/100%%)\r", pct);
	fflush(stdout);
}

/* Pure: is @buf all zero bytes? */
static bool buf_is_zero(const unsigned char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len && i < 16; i++)
		if (buf[i])
			return false;
	return len <= 16 || !memcmp(buf, buf + 16, len - 16);
}

/* Coroutine: write the non-zero 4 KiB runs of @buf at @off (a fresh target already reads zeros). */
static int coroutine_fn convert_write(struct convert_job *j, uint64_t off, unsigned char *buf, uint64_t n)
{
	const uint64_t g = 4096;
	uint64_t pos = 0;
	int ret;

	while (pos < n) {
		uint64_t a = MIN(g - (off + pos) % g, n - pos), b;
		struct iovec iov;

		if (buf_is_zero(buf + pos, a)) {
			if (!j->fresh) {
				ret = sluice_blk_co_pwrite_zeroes(j->dst, off + pos, a, SLUICE_BDRV_REQ_MAY_UNMAP);
				if (ret < 0)
					return ret;
			}
			pos += a;
			continue;
		}
		for (b = pos + a; b < n; ) {
			uint64_t c = MIN(g, n - b);

			if (buf_is_zero(buf + b, c))
				break;
			b += c;
		}
		iov = (struct iovec){ buf + pos, b - pos };
		ret = sluice_blk_co_pwritev(j->dst, off + pos, b - pos, &iov, 1, 0);
		if (ret < 0)
			return ret;
		pos = b;
	}
	return 0;
}

static void coroutine_fn convert_co(void *opaque)
{
	struct convert_job *j = opaque;
	uint64_t chunk = j->compress ? j->cluster_size : (2u << 20);
	struct sluice_bds *sbs = sluice_blk_bs(j->src);
	unsigned char *buf = tool_alloc_buf(chunk);
	uint64_t off = 0;
	int ret = 0;

	if (!buf) {
		j->ret = -ENOMEM;
		return;
	}
	convert_progress(j, 0);
	while (off < j->len) {
		uint64_t n = MIN(chunk, j->len - off), pnum, map;
		struct sluice_bds *file;
		struct iovec iov;
		int depth;

		/* Node-level calls take the graph lock here; the sluice_blk_co_* ones take their own. */
		sluice_graph_co_rdlock();
		ret = chain_block_status(sbs, off, n, &depth, &pnum, &map, &file);
		sluice_graph_co_rdunlock();
		if (ret < 0)
			break;
		if ((ret & SLUICE_BLOCK_ZERO) && !(ret & SLUICE_BLOCK_DATA) &&
		    (!j->compress || pnum == n)) {
			if (!j->fresh) {
				ret = sluice_blk_co_pwrite_zeroes(j->dst, off, pnum, SLUICE_BDRV_REQ_MAY_UNMAP);
				if (ret < 0)
					break;
			}
			off += pnum;
			convert_progress(j, off);
			continue;
		}
		if (!j->compress)
			n = pnum;
		iov = (struct iovec){ buf, n };
		ret = sluice_blk_co_preadv(j->src, off, n, &iov, 1, 0);
		if (ret < 0)
			break;
		if (j->compress) {
			if (n < chunk)
				memset(buf + n, 0, chunk - n);
			if (!buf_is_zero(buf, chunk)) {
				sluice_graph_co_rdlock();
				ret = qcow2_co_pwrite_compressed(sluice_blk_bs(j->dst), off, buf);
				sluice_graph_co_rdunlock();
			}
			else if (!j->fresh)
				ret = sluice_blk_co_pwrite_zeroes(j->dst, off, n, SLUICE_BDRV_REQ_MAY_UNMAP);
		} else {
			ret = convert_write(j, off, buf, n);
		}
		if (ret < 0)
			break;
		off += n;
		convert_progress(j, off);
	}
	if (ret >= 0)
		ret = sluice_blk_co_flush(j->dst);
	free(buf);
	j->ret = ret < 0 ? ret : 0;
}

static int img_convert(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_open_opts so = { 0 }, dopts = { .fmt = "raw", .flags = SLUICE_BDRV_O_RDWR };
	struct convert_job j = { 0 };
	struct sluice_aio_ctx *ctx = NULL;
	const char *options = NULL, *src, *dst;
	bool quiet = false, no_create = false;
	struct qcow2_info qi;
	char *err = NULL;
	int opt, ret, status = 1;
	int64_t len;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hf:O:o:cpqnt:T:U", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			so.fmt = optarg;
			break;
		case 'O':
			dopts.fmt = optarg;
			break;
		case 'o':
			options = optarg;
			break;
		case 'c':
			j.compress = true;
			break;
		case 'p':
			j.progress = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'n':
			no_create = true;
			break;
		case 't':
			if (tool_parse_cache(optarg, &dopts)) {
				fprintf(stderr, PROG ": Invalid cache option: %s\n", optarg);
				return 1;
			}
			break;
		case 'T':
			if (tool_parse_cache(optarg, &so)) {
				fprintf(stderr, PROG ": Invalid source cache option: %s\n", optarg);
				return 1;
			}
			break;
		case 'U':
			break;
		case 'h':
			printf("Usage: " PROG " convert [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-o options] filename output_filename\n");
			return 0;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			argc - optind < 2 ? "Expecting source and target image file names" : "Unexpected argument");
		return 1;
	}
	src = argv[optind];
	dst = argv[optind + 1];
	if (quiet)
		j.progress = false;
	if (!sluice_bdrv_find_format(dopts.fmt)) {
		fprintf(stderr, PROG ": Unknown file format '%s'\n", dopts.fmt);
		return 1;
	}
	if (j.compress && strcmp(dopts.fmt, "qcow2")) {
		fprintf(stderr, PROG ": Compression not supported for this file format\n");
		return 1;
	}
	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		return 1;
	}
	j.src = tool_blk_open(PROG, ctx, src, &so);
	if (!j.src)
		goto out;
	len = sluice_blk_getlength(j.src);
	if (len < 0) {
		fprintf(stderr, PROG ": Could not get the size of '%s': %s\n", src, strerror((int)-len));
		goto out;
	}
	j.len = len;
	if (!no_create) {
		ret = sluice_bdrv_create(dopts.fmt, dst, j.len, options, &err);
		if (ret < 0) {
			fprintf(stderr, PROG ": %s: error while converting %s: %s\n", dst, dopts.fmt,
				err ? err : strerror(-ret));
			goto out;
		}
		j.fresh = true;
	}
	j.dst = tool_blk_open(PROG, ctx, dst, &dopts);
	if (!j.dst)
		goto out;
	if (no_create && sluice_blk_getlength(j.dst) < len) {
		fprintf(stderr, PROG ": output file is smaller than input file\n");
		goto out;
	}
	if (j.compress) {
		if (!qcow2_get_info(sluice_blk_bs(j.dst), &qi)) {
			fprintf(stderr, PROG ": Compression not supported for this file format\n");
			goto out;
		}
		j.cluster_size = qi.cluster_size;
	}
	tool_run_co(ctx, convert_co, &j);
	if (j.progress)
		printf("\n");
	if (j.ret < 0) {
		fprintf(stderr, PROG ": error while writing at byte: %s\n", strerror(-j.ret));
		goto out;
	}
	status = 0;
out:
	fflush(stdout);
	g_free(err);
	if (j.dst)
		sluice_blk_unref(j.dst);
	if (j.src)
		sluice_blk_unref(j.src);
	if (ctx)
		sluice_aio_ctx_free(ctx);
	return status;
}

/* ---- resize ---- */

struct resize_job {
	struct sluice_blk *blk;
	uint64_t size;
	int ret;
};

static void coroutine_fn resize_co(void *opaque)
{
	struct resize_job *r = opaque;

	r->ret = sluice_blk_co_truncate(r->blk, r->size);
	if (r->ret >= 0)
		r->ret = sluice_blk_co_flush(r->blk);
}

static int img_resize(int argc, char **argv)
{
	enum { OPT_SHRINK = 256, OPT_PREALLOC };
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "shrink", no_argument, NULL, OPT_SHRINK },
		{ "preallocation", required_argument, NULL, OPT_PREALLOC },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_open_opts o = { .flags = SLUICE_BDRV_O_RDWR };
	struct resize_job r = { 0 };
	struct sluice_aio_ctx *ctx;
	const char *sz, *filename;
	bool quiet = false, shrink = false;
	int opt, rel = 0, status = 1;
	uint64_t n;
	int64_t cur;

	/* The size may be negative: take it off before getopt sees it as an option. */
	if (argc < 3) {
		fprintf(stderr, PROG ": Expecting image file name and size (try '" PROG " --help')\n");
		return 1;
	}
	sz = argv[--argc];
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hf:q", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o.fmt = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case OPT_SHRINK:
			shrink = true;
			break;
		case OPT_PREALLOC:
			if (strcmp(optarg, "off")) {
				fprintf(stderr, PROG ": Unsupported preallocation mode '%s'\n", optarg);
				return 1;
			}
			break;
		case 'h':
			printf("Usage: " PROG " resize [-q] [-f fmt] [--shrink] filename [+ | -]size\n");
			return 0;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": Expecting one image file name (try '" PROG " --help')\n");
		return 1;
	}
	filename = argv[optind];
	if (sz[0] == '+' || sz[0] == '-')
		rel = sz[0] == '+' ? 1 : -1;
	if (tool_parse_num(sz + (rel != 0), &n)) {
		fprintf(stderr, PROG ": Invalid image size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n");
		return 1;
	}
	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		return 1;
	}
	r.blk = tool_blk_open(PROG, ctx, filename, &o);
	if (!r.blk)
		goto out;
	cur = sluice_blk_getlength(r.blk);
	if (cur < 0) {
		fprintf(stderr, PROG ": Could not get the image size: %s\n", strerror((int)-cur));
		goto out;
	}
	if (rel > 0)
		r.size = (uint64_t)cur + n;
	else if (rel < 0)
		r.size = n > (uint64_t)cur ? 0 : (uint64_t)cur - n;
	else
		r.size = n;
	if ((rel < 0 && n > (uint64_t)cur) || !r.size || r.size > INT64_MAX) {
		fprintf(stderr, PROG ": New image size must be positive\n");
		goto out;
	}
	if (r.size < (uint64_t)cur && !shrink) {
		fprintf(stderr, PROG ": Use the --shrink option to perform a shrink operation.\n");
		goto out;
	}
	tool_run_co(ctx, resize_co, &r);
	if (r.ret == -ENOTSUP && r.size < (uint64_t)cur) {
		fprintf(stderr, PROG ": Image format %s does not support shrinking\n",
			sluice_blk_bs(r.blk)->drv->format_name);
		goto out;
	}
	if (r.ret < 0) {
		fprintf(stderr, PROG ": Failed to resize image: %s\n", strerror(-r.ret));
		goto out;
	}
	if (!quiet)
		printf("Image resized.\n");
	status = 0;
out:
	fflush(stdout);
	if (r.blk)
		sluice_blk_unref(r.blk);
	sluice_aio_ctx_free(ctx);
	return status;
}

/* ---- bench ---- */

struct bench {
	struct sluice_blk *blk;
	bool write;
	bool drain;
	bool writethrough;
	bool no_flush;
	uint64_t count;
	uint64_t n_issued;
	uint64_t n_done;
	uint64_t offset;
	uint64_t step;
	uint64_t bufsize;
	uint64_t image_size;
	uint64_t flush_interval;
	unsigned int in_flight;
	unsigned int workers_left;
	bool draining;			/* a flush waits for the in-flight requests; do not issue more */
	struct sluice_co *flusher;	/* the coroutine waiting for in_flight == 0 */
	struct sluice_co **parked;	/* workers waiting for the flush to finish */
	unsigned int nparked;
	int ret;
};

struct bench_worker {
	struct bench *b;
	struct iovec iov;
	struct sluice_co *co;
};

static void bench_wake_parked(struct bench *b)
{
	while (b->nparked)
		sluice_aio_co_wake(b->parked[--b->nparked]);
}

static int coroutine_fn bench_co_flush(struct bench *b)
{
	return b->no_flush ? 0 : sluice_blk_co_flush(b->blk);
}

/* Every flush_interval completed requests: flush, after draining the others unless --no-drain. */
static void coroutine_fn bench_co_interval_flush(struct bench_worker *w)
{
	struct bench *b = w->b;
	int ret;

	if (b->drain) {
		b->draining = true;
		if (b->in_flight) {
			b->flusher = w->co;
			sluice_co_yield();
			b->flusher = NULL;
		}
	}
	ret = bench_co_flush(b);
	if (ret < 0 && !b->ret)
		b->ret = ret;
	if (b->drain) {
		b->draining = false;
		bench_wake_parked(b);
	}
}

static void coroutine_fn bench_worker_co(void *opaque)
{
	struct bench_worker *w = opaque;
	struct bench *b = w->b;

	while (!b->ret && b->n_issued < b->count) {
		uint64_t offset;
		int ret;

		if (b->draining) {
			b->parked[b->nparked++] = w->co;
			sluice_co_yield();
			continue;
		}
		offset = b->offset;
		b->n_issued++;
		b->offset += b->step;
		if (b->offset > b->image_size || b->image_size - b->offset < b->bufsize)
			b->offset = 0;

		b->in_flight++;
		if (b->write) {
			ret = sluice_blk_co_pwritev(b->blk, offset, b->bufsize, &w->iov, 1, 0);
			if (ret >= 0 && b->writethrough)
				ret = bench_co_flush(b);
		} else {
			ret = sluice_blk_co_preadv(b->blk, offset, b->bufsize, &w->iov, 1, 0);
		}
		b->in_flight--;
		if (b->draining && !b->in_flight && b->flusher)
			sluice_aio_co_wake(b->flusher);
		if (ret < 0) {
			if (!b->ret)
				b->ret = ret;
			bench_wake_parked(b);
			break;
		}
		b->n_done++;
		if (b->flush_interval && b->n_done % b->flush_interval == 0)
			bench_co_interval_flush(w);
	}
	b->workers_left--;
}

static int parse_uint_opt(const char *arg, uint64_t max, bool sizes, uint64_t *out)
{
	uint64_t v;
	char *end;

	if (sizes)
		return tool_parse_num(arg, out) || *out > max ? -EINVAL : 0;
	errno = 0;
	v = strtoull(arg, &end, 0);	/* as qemu-img: decimal, 0x hex or 0 octal */
	if (errno || end == arg || *end || arg[0] == '-' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static void bench_usage(void)
{
	printf("Usage: " PROG " bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval]\n"
	       "       [-i io_uring|threads] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q]\n"
	       "       [-s buffer_size] [-S step_size] [-t cache] [-U] [-w] filename\n"
	       "Runs count requests, depth of them in flight, each buffer_size bytes, starting at\n"
	       "offset and advancing by step_size (default: buffer_size).  Default aio: io_uring.\n");
}

static int img_bench(int argc, char **argv)
{
	enum { OPT_FLUSH_INTERVAL = 256, OPT_NO_DRAIN, OPT_PATTERN };
	static const struct option long_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL },
		{ "no-drain", no_argument, NULL, OPT_NO_DRAIN },
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench b = { .count = 75000, .bufsize = 4096, .drain = true };
	struct tool_open_opts o = { 0 };
	struct bench_worker *workers = NULL;
	struct sluice_aio_ctx *ctx = NULL;
	uint64_t depth = 64, pattern = 0, v;
	unsigned char *buf = NULL;
	int opt, status = 1;
	int64_t len;
	double t;
	unsigned int i;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hc:d:f:i:no:qs:S:t:wU", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			bench_usage();
			return 0;
		case 'c':
			if (parse_uint_opt(optarg, INT_MAX, false, &b.count)) {
				fprintf(stderr, PROG ": Invalid request count specified\n");
				return 1;
			}
			break;
		case 'd':
			if (parse_uint_opt(optarg, 65536, false, &depth) || depth < 1) {
				fprintf(stderr, PROG ": Invalid queue depth specified\n");
				return 1;
			}
			break;
		case 'f':
			o.fmt = optarg;
			break;
		case 'i':
			if (tool_parse_aio(optarg, &o)) {
				fprintf(stderr, PROG ": Invalid aio option: %s (io_uring or threads)\n", optarg);
				return 1;
			}
			break;
		case 'n':
			o.flags |= SLUICE_BDRV_O_NOCACHE;
			break;
		case 'o':
			if (parse_uint_opt(optarg, INT64_MAX, true, &b.offset)) {
				fprintf(stderr, PROG ": Invalid offset specified\n");
				return 1;
			}
			break;
		case 'q':
			break;
		case 's':
			if (parse_uint_opt(optarg, INT_MAX, true, &b.bufsize)) {
				fprintf(stderr, PROG ": Invalid buffer size specified\n");
				return 1;
			}
			break;
		case 'S':
			if (parse_uint_opt(optarg, INT_MAX, true, &b.step)) {
				fprintf(stderr, PROG ": Invalid step size specified\n");
				return 1;
			}
			break;
		case 't':
			if (tool_parse_cache(optarg, &o)) {
				fprintf(stderr, PROG ": Invalid cache mode\n");
				return 1;
			}
			break;
		case 'w':
			b.write = true;
			break;
		case 'U':
			break;
		case OPT_FLUSH_INTERVAL:
			if (parse_uint_opt(optarg, INT_MAX, false, &b.flush_interval)) {
				fprintf(stderr, PROG ": Invalid flush interval specified\n");
				return 1;
			}
			break;
		case OPT_NO_DRAIN:
			b.drain = false;
			break;
		case OPT_PATTERN:
			if (parse_uint_opt(optarg, 255, false, &pattern)) {
				fprintf(stderr, PROG ": Invalid pattern byte specified\n");
				return 1;
			}
			break;
		default:
			err_opt(opt, argv);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, PROG ": %s (try '" PROG " --help')\n",
			optind >= argc ? "Expecting one image file name" : "Unexpected argument");
		return 1;
	}
	if (b.flush_interval && !b.write) {
		fprintf(stderr, PROG ": --flush-interval is only available in write tests\n");
		return 1;
	}
	if (b.flush_interval && b.flush_interval < depth && b.drain) {
		fprintf(stderr, PROG ": Flush interval can't be smaller than depth\n");
		return 1;
	}
	if (!b.step)
		b.step = b.bufsize;
	b.writethrough = o.writethrough;
	b.no_flush = o.no_flush;
	if (b.write)
		o.flags |= SLUICE_BDRV_O_RDWR;

	if (depth * b.bufsize > SIZE_MAX / 2) {
		fprintf(stderr, PROG ": depth * buffer size is too large\n");
		return 1;
	}
	buf = tool_alloc_buf(depth * b.bufsize);
	workers = calloc(depth, sizeof(*workers));
	b.parked = calloc(depth, sizeof(*b.parked));
	if (!buf || !workers || !b.parked) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	memset(buf, (int)pattern, depth * b.bufsize);

	ctx = tool_main_ctx_new();
	if (!ctx) {
		fprintf(stderr, PROG ": cannot create the event loop: %s\n", strerror(errno));
		goto out;
	}
	b.blk = tool_blk_open(PROG, ctx, argv[optind], &o);
	if (!b.blk)
		goto out;
	len = sluice_blk_getlength(b.blk);
	if (len < 0) {
		fprintf(stderr, PROG ": Could not get the image size: %s\n", strerror((int)-len));
		goto out;
	}
	b.image_size = (uint64_t)len;

	printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %" PRIu64
	       " in parallel (starting at offset %" PRIu64 ", step size %" PRIu64 ")\n",
	       b.count, b.write ? "write" : "read", b.bufsize, depth, b.offset, b.step);
	if (b.flush_interval)
		printf("Sending flush every %" PRIu64 " requests\n", b.flush_interval);
	fflush(stdout);

	for (i = 0; i < depth; i++) {
		workers[i].b = &b;
		workers[i].iov.iov_base = buf + i * b.bufsize;
		workers[i].iov.iov_len = b.bufsize;
		workers[i].co = sluice_co_create(bench_worker_co, &workers[i]);
	}
	b.workers_left = (unsigned int)depth;
	t = tool_now();
	for (i = 0; i < depth; i++)
		sluice_co_enter(workers[i].co);
	while (b.workers_left)
		sluice_aio_poll(ctx, true);
	t = tool_now() - t;

	if (b.ret < 0) {
		fprintf(stderr, PROG ": Failed request: %s\n", strerror(-b.ret));
		goto out;
	}
	printf("Run completed in %3.3f seconds.\n", t);
	v = (uint64_t)(t > 0 ? (double)b.n_done / t : 0);
	printf("IOPS: %" PRIu64 "\n", v);
	status = 0;
out:
	if (b.blk)
		sluice_blk_unref(b.blk);
	if (ctx)
		sluice_aio_ctx_free(ctx);
	free(b.parked);
	free(workers);
	free(buf);
	return status;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " COMMAND [options]\n"
		"qemu-img compatible image tool over sluice's block layer.\n"
		"\n"
		"Commands:\n"
		"  create [-q] [-f fmt] [-b backing_file -F backing_fmt] [-u] [-o options] filename [size]\n"
		"  info [-f fmt] [--output=human|json] [--backing-chain] [-U] filename\n"
		"  check [-q] [-f fmt] [--output=human|json] [-r leaks|all] filename\n"
		"  convert [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt]\n"
		"          [-o options] filename output_filename\n"
		"  map [-f fmt] [--output=human|json] filename\n"
		"  resize [-q] [-f fmt] [--shrink] filename [+ | -]size\n"
		"  bench [-c count] [-d depth] [-f fmt] [--flush-interval=N] [-i io_uring|threads] [-n]\n"
		"        [--no-drain] [-o offset] [--pattern=N] [-q] [-s size] [-S step] [-t cache] [-U] [-w]\n"
		"        filename\n"
		"\n"
		"Sizes take k, M, G, T, P or E suffixes (powers of 1024).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, PROG ": Not enough arguments (try '" PROG " --help')\n");
		return 1;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf(PROG " version 0.1.0 (qemu-img compatible)\n");
		return 0;
	}
	if (!strcmp(argv[1], "create"))
		return img_create(argc - 1, argv + 1);
	if (!strcmp(argv[1], "info"))
		return img_info(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return img_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "convert"))
		return img_convert(argc - 1, argv + 1);
	if (!strcmp(argv[1], "map"))
		return img_map(argc - 1, argv + 1);
	if (!strcmp(argv[1], "resize"))
		return img_resize(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench"))
		return img_bench(argc - 1, argv + 1);
	fprintf(stderr, PROG ": Command not found: %s (try '" PROG " --help')\n", argv[1]);
	return 1;
}
