/* SPDX-License-Identifier: GPL-2.0 */
/* json.h - a small JSON reader (to a tree) and writer (to a GString) for the control socket. */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

enum sluice_json_type {
	SLUICE_JSON_NULL,
	SLUICE_JSON_BOOL,
	SLUICE_JSON_NUMBER,
	SLUICE_JSON_STRING,
	SLUICE_JSON_ARRAY,
	SLUICE_JSON_OBJECT,
};

/* A parsed value.  Objects keep their members in order; keys are not deduplicated (lookup finds the first). */
struct sluice_json {
	enum sluice_json_type type;
	bool boolean;
	double number;
	bool is_int;			/* number was written without fraction/exponent and fits int64 */
	int64_t integer;
	char *string;			/* NUL-terminated UTF-8 (may contain NUL escapes: see len) */
	size_t len;
	size_t n;			/* array/object members */
	struct sluice_json **items;
	char **keys;			/* objects */
};

#define SLUICE_JSON_MAX_DEPTH	32

/*
 * Any thread: parse exactly one value (surrounding whitespace allowed) from
 * @text[0, @len).  NULL with *@errp (g_free it) on a syntax error (a string
 * that is not well-formed UTF-8 is one), nesting deeper than
 * SLUICE_JSON_MAX_DEPTH, or trailing junk.
 */
struct sluice_json *sluice_json_parse(const char *text, size_t len, char **errp);
void sluice_json_free(struct sluice_json *v);
/* Member @key of object @obj, or NULL (also when @obj is not an object). */
const struct sluice_json *sluice_json_get(const struct sluice_json *obj, const char *key);

/* A writer: values are appended to @out with commas and keys handled. */
struct sluice_json_writer {
	GString *out;
	unsigned int depth;
	bool first[SLUICE_JSON_MAX_DEPTH + 1];
};

void sluice_jw_init(struct sluice_json_writer *w, GString *out);
/* @key is the member name inside an object, NULL inside an array or at the top. */
void sluice_jw_object_begin(struct sluice_json_writer *w, const char *key);
void sluice_jw_object_end(struct sluice_json_writer *w);
void sluice_jw_array_begin(struct sluice_json_writer *w, const char *key);
void sluice_jw_array_end(struct sluice_json_writer *w);
void sluice_jw_string(struct sluice_json_writer *w, const char *key, const char *s);
void sluice_jw_int(struct sluice_json_writer *w, const char *key, int64_t v);
void sluice_jw_uint(struct sluice_json_writer *w, const char *key, uint64_t v);
void sluice_jw_bool(struct sluice_json_writer *w, const char *key, bool v);
void sluice_jw_null(struct sluice_json_writer *w, const char *key);
/*
 * Append @s as a JSON string literal (quotes and escapes) to @out; bytes of
 * @s that are not well-formed UTF-8 are written as \ufffd, one per byte.
 */
void sluice_json_quote(GString *out, const char *s);

#endif /* SLUICE_JSON_H */
