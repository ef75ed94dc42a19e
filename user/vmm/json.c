// SPDX-License-Identifier: GPL-2.0
/* json.c - a small JSON reader (RFC 8259, to a tree) and writer for the control socket; no dependency but GLib. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct parser {
	const char *p, *end;
	char *err;
	unsigned int depth;
};

static void fail(struct parser *ps, const char *what)
{
	if (!ps->err)
		ps->err = g_strdup(what);
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static struct sluice_json *parse_value(struct parser *ps);

static int hex4(struct parser *ps, unsigned int *out)
{
	unsigned int v = 0, i;

	if (ps->end - ps->p < 4)
		return -EINVAL;
	for (i = 0; i < 4; i++) {
		char c = ps->p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -EINVAL;
	}
	ps->p += 4;
	*out = v;
	return 0;
}

/*
 * Any thread.  The length of the well-formed UTF-8 sequence (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF) at @p, of which
 * @avail bytes may be read; 0 when it is not one.
 */
static size_t utf8_seq_len(const unsigned char *p, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (avail < n)
		return 0;
	/* The second byte's range excludes overlongs (e0, f0), surrogates (ed) and > U+10FFFF (f4). */
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* After the opening quote; returns a new string or NULL. */
static char *parse_string(struct parser *ps, size_t *lenp)
{
	GString *s = g_string_new(NULL);

	while (ps->p < ps->end) {
		unsigned char c = *ps->p++;
		unsigned int cp, lo;

		if (c == '"') {
			*lenp = s->len;
			return g_string_free(s, FALSE);
		}
		if (c < 0x20) {
			fail(ps, "control character in string");
			goto err_free;
		}
		if (c >= 0x80) {
			size_t n = utf8_seq_len((const unsigned char *)ps->p - 1, ps->end - ps->p + 1);

			if (!n) {
				ps->p--;
				fail(ps, "invalid UTF-8 in string");
				goto err_free;
			}
			g_string_append_len(s, ps->p - 1, n);
			ps->p += n - 1;
			continue;
		}
		if (c != '\\') {
			g_string_append_c(s, c);
			continue;
		}
		if (ps->p >= ps->end)
			break;
		c = *ps->p++;
		switch (c) {
		case '"': g_string_append_c(s, '"'); break;
		case '\\': g_string_append_c(s, '\\'); break;
		case '/': g_string_append_c(s, '/'); break;
		case 'b': g_string_append_c(s, '\b'); break;
		case 'f': g_string_append_c(s, '\f'); break;
		case 'n': g_string_append_c(s, '\n'); break;
		case 'r': g_string_append_c(s, '\r'); break;
		case 't': g_string_append_c(s, '\t'); break;
		case 'u':
			if (hex4(ps, &cp)) {
				fail(ps, "bad \\u escape");
				goto err_free;
			}
			if (cp >= 0xd800 && cp < 0xdc00) {
				if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') {
					fail(ps, "lone surrogate");
					goto err_free;
				}
				ps->p += 2;
				if (hex4(ps, &lo) || lo < 0xdc00 || lo >= 0xe000) {
					fail(ps, "bad surrogate pair");
					goto err_free;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				fail(ps, "lone surrogate");
				goto err_free;
			}
			g_string_append_unichar(s, cp);
			break;
		default:
			fail(ps, "bad escape");
			goto err_free;
		}
	}
	fail(ps, "unterminated string");
err_free:
	g_string_free(s, TRUE);
	return NULL;
}

static struct sluice_json *new_value(enum sluice_json_type t)
{
	struct sluice_json *v = g_new0(struct sluice_json, 1);

	v->type = t;
	return v;
}

static struct sluice_json *parse_number(struct parser *ps)
{
	const char *start = ps->p;
	bool is_int = true;
	struct sluice_json *v;
	char buf[64];
	size_t n;

	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end || !g_ascii_isdigit(*ps->p))
		goto bad;
	if (*ps->p == '0')
		ps->p++;
	else
		while (ps->p < ps->end && g_ascii_isdigit(*ps->p))
			ps->p++;
	if (ps->p < ps->end && *ps->p == '.') {
		is_int = false;
		ps->p++;
		if (ps->p >= ps->end || !g_ascii_isdigit(*ps->p))
			goto bad;
		while (ps->p < ps->end && g_ascii_isdigit(*ps->p))
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		is_int = false;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (ps->p >= ps->end || !g_ascii_isdigit(*ps->p))
			goto bad;
		while (ps->p < ps->end && g_ascii_isdigit(*ps->p))
			ps->p++;
	}
	n = ps->p - start;
	if (n >= sizeof(buf))
		goto bad;
	memcpy(buf, start, n);
	buf[n] = 0;
	v = new_value(SLUICE_JSON_NUMBER);
	v->number = g_ascii_strtod(buf, NULL);
	if (is_int) {
		errno = 0;
		v->integer = g_ascii_strtoll(buf, NULL, 10);
		v->is_int = !errno;
	}
	return v;
bad:
	fail(ps, "bad number");
	return NULL;
}

static bool literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n))
		return false;
	ps->p += n;
	return true;
}

static void append_member(struct sluice_json *v, char *key, struct sluice_json *item)
{
	v->items = g_renew(struct sluice_json *, v->items, v->n + 1);
	if (v->type == SLUICE_JSON_OBJECT) {
		v->keys = g_renew(char *, v->keys, v->n + 1);
		v->keys[v->n] = key;
	}
	v->items[v->n++] = item;
}

static struct sluice_json *parse_container(struct parser *ps, bool object)
{
	struct sluice_json *v = new_value(object ? SLUICE_JSON_OBJECT : SLUICE_JSON_ARRAY), *item;
	char close = object ? '}' : ']';
	char *key = NULL;
	size_t klen;

	if (++ps->depth > SLUICE_JSON_MAX_DEPTH) {
		fail(ps, "nesting too deep");
		goto err_free;
	}
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return v;
	}
	for (;;) {
		skip_ws(ps);
		if (object) {
			if (ps->p >= ps->end || *ps->p != '"') {
				fail(ps, "expected a member name");
				goto err_free;
			}
			ps->p++;
			key = parse_string(ps, &klen);
			if (!key)
				goto err_free;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				fail(ps, "expected ':'");
				goto err_free_key;
			}
			ps->p++;
		}
		item = parse_value(ps);
		if (!item)
			goto err_free_key;
		append_member(v, key, item);
		key = NULL;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			ps->depth--;
			return v;
		}
		fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
		goto err_free;
	}

err_free_key:
	g_free(key);
err_free:
	sluice_json_free(v);
	return NULL;
}

static struct sluice_json *parse_value(struct parser *ps)
{
	struct sluice_json *v;

	skip_ws(ps);
	if (ps->p >= ps->end) {
		fail(ps, "unexpected end of input");
		return NULL;
	}
	switch (*ps->p) {
	case '{':
		ps->p++;
		return parse_container(ps, true);
	case '[':
		ps->p++;
		return parse_container(ps, false);
	case '"':
		ps->p++;
		v = new_value(SLUICE_JSON_STRING);
		v->string = parse_string(ps, &v->len);
		if (!v->string) {
			g_free(v);
			return NULL;
		}
		return v;
	case 't':
	case 'f':
		if (literal(ps, "true") || literal(ps, "false")) {
			v = new_value(SLUICE_JSON_BOOL);
			v->boolean = ps->p[-1] == 'e' && ps->p[-2] == 'u';
			return v;
		}
		break;
	case 'n':
		if (literal(ps, "null"))
			return new_value(SLUICE_JSON_NULL);
		break;
	default:
		if (*ps->p == '-' || g_ascii_isdigit(*ps->p))
			return parse_number(ps);
		break;
	}
	fail(ps, "unexpected character");
	return NULL;
}

/* Any thread. */
struct sluice_json *sluice_json_parse(const char *text, size_t len, char **errp)
{
	struct parser ps = { .p = text, .end = text + len };
	struct sluice_json *v = parse_value(&ps);

	if (v) {
		skip_ws(&ps);
		if (ps.p != ps.end) {
			fail(&ps, "trailing characters");
			sluice_json_free(v);
			v = NULL;
		}
	}
	if (!v) {
		*errp = g_strdup_printf("JSON syntax error at offset %td: %s", ps.p - text,
					ps.err ? ps.err : "?");
		g_free(ps.err);
	}
	return v;
}

/* Any thread. */
void sluice_json_free(struct sluice_json *v)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < v->n; i++) {
		sluice_json_free(v->items[i]);
		if (v->keys)
			g_free(v->keys[i]);
	}
	g_free(v->items);
	g_free(v->keys);
	g_free(v->string);
	g_free(v);
}

const struct sluice_json *sluice_json_get(const struct sluice_json *obj, const char *key)
{
	size_t i;

	if (!obj || obj->type != SLUICE_JSON_OBJECT)
		return NULL;
	for (i = 0; i < obj->n; i++)
		if (!strcmp(obj->keys[i], key))
			return obj->items[i];
	return NULL;
}

/* ---- writer ---- */

/*
 * Any thread.  @s as a JSON string literal; bytes that are not well-formed
 * UTF-8 (a path or id from the command line) become U+FFFD, one per byte,
 * so that the output is always valid JSON and UTF-8.
 */
void sluice_json_quote(GString *out, const char *s)
{
	const unsigned char *p;
	size_t n;

	g_string_append_c(out, '"');
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x80) {
			n = utf8_seq_len(p, strnlen((const char *)p, 4));
			if (n)
				g_string_append_len(out, (const char *)p, n);
			else
				g_string_append(out, "\\ufffd");
			p += n ? n - 1 : 0;
			continue;
		}
		switch (*p) {
		case '"': g_string_append(out, "\\\""); break;
		case '\\': g_string_append(out, "\\\\"); break;
		case '\n': g_string_append(out, "\\n"); break;
		case '\r': g_string_append(out, "\\r"); break;
		case '\t': g_string_append(out, "\\t"); break;
		default:
			if (*p < 0x20)
				g_string_append_printf(out, "\\u%04x", *p);
			else
				g_string_append_c(out, *p);
		}
	}
	g_string_append_c(out, '"');
}

void sluice_jw_init(struct sluice_json_writer *w, GString *out)
{
	w->out = out;
	w->depth = 0;
	w->first[0] = true;
}

static void member(struct sluice_json_writer *w, const char *key)
{
	if (!w->first[w->depth])
		g_string_append_c(w->out, ',');
	w->first[w->depth] = false;
	if (key) {
		sluice_json_quote(w->out, key);
		g_string_append_c(w->out, ':');
	}
}

static void open_(struct sluice_json_writer *w, const char *key, char c)
{
	member(w, key);
	g_string_append_c(w->out, c);
	if (w->depth < SLUICE_JSON_MAX_DEPTH)
		w->depth++;
	w->first[w->depth] = true;
}

static void close_(struct sluice_json_writer *w, char c)
{
	g_string_append_c(w->out, c);
	if (w->depth)
		w->depth--;
}

void sluice_jw_object_begin(struct sluice_json_writer *w, const char *key)
{
	open_(w, key, '{');
}

void sluice_jw_object_end(struct sluice_json_writer *w)
{
	close_(w, '}');
}

void sluice_jw_array_begin(struct sluice_json_writer *w, const char *key)
{
	open_(w, key, '[');
}

void sluice_jw_array_end(struct sluice_json_writer *w)
{
	close_(w, ']');
}

void sluice_jw_string(struct sluice_json_writer *w, const char *key, const char *s)
{
	member(w, key);
	sluice_json_quote(w->out, s);
}

void sluice_jw_int(struct sluice_json_writer *w, const char *key, int64_t v)
{
	member(w, key);
	g_string_append_printf(w->out, "%" G_GINT64_FORMAT, (gint64)v);
}

void sluice_jw_uint(struct sluice_json_writer *w, const char *key, uint64_t v)
{
	member(w, key);
	g_string_append_printf(w->out, "%" G_GUINT64_FORMAT, (guint64)v);
}

void sluice_jw_bool(struct sluice_json_writer *w, const char *key, bool v)
{
	member(w, key);
	g_string_append(w->out, v ? "true" : "false");
}

void sluice_jw_null(struct sluice_json_writer *w, const char *key)
{
	member(w, key);
	g_string_append(w->out, "null");
}
