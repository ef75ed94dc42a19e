// SPDX-License-Identifier: GPL-2.0
/* qcow2-cache.c - write-back caches of L2 tables and refcount blocks, with QEMU's flush dependencies. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Open, not a coroutine: @size slots of one cluster each. */
int qcow2_cache_init(struct qcow2_state *s, struct qcow2_cache *c, unsigned int size,
		     unsigned int ol_self)
{
	unsigned int i;

	memset(c, 0, sizeof(*c));
	c->entries = calloc(size, sizeof(*c->entries));
	if (!c->entries)
		return -ENOMEM;
	c->size = size;
	c->ol_self = ol_self;
	for (i = 0; i < size; i++) {
		if (posix_memalign(&c->entries[i].table, 4096, s->cluster_size))
			goto err_free_tables;
	}
	return 0;

err_free_tables:
	c->size = i;
	qcow2_cache_destroy(c);
	return -ENOMEM;
}

/* Close (or a failed open), not a coroutine. */
void qcow2_cache_destroy(struct qcow2_cache *c)
{
	unsigned int i;

	if (!c->entries)
		return;
	for (i = 0; i < c->size; i++)
		free(c->entries[i].table);
	free(c->entries);
	c->entries = NULL;
	c->size = 0;
}

/* Coroutine, image lock held: make @c's dependency durable before @c's tables are written. */
static int coroutine_fn GRAPH_RDLOCK cache_co_flush_dependency(struct qcow2_state *s, struct qcow2_cache *c)
	TSA_REQUIRES(s->lock)
{
	int ret;

	if (c->depends) {
		ret = qcow2_cache_co_flush(s, c->depends);
		if (ret < 0)
			return ret;
		c->depends = NULL;
		c->depends_on_flush = false;	/* the flush above synced the file */
	}
	if (c->depends_on_flush) {
		ret = sluice_bds_co_flush(s->bs->file);
		if (ret < 0)
			return ret;
		c->depends_on_flush = false;
	}
	return 0;
}

/* Coroutine, image lock held: write one dirty entry back (after its dependencies). */
static int coroutine_fn GRAPH_RDLOCK cache_co_entry_flush(struct qcow2_state *s, struct qcow2_cache *c,
					     struct qcow2_cache_entry *e) TSA_REQUIRES(s->lock)
{
	int ret;

	if (!e->dirty || !e->offset)
		return 0;
	ret = cache_co_flush_dependency(s, c);
	if (ret < 0)
		return ret;
	ret = qcow2_co_write_meta(s, e->offset, e->table, s->cluster_size, c->ol_self);
	if (ret < 0)
		return ret;
	e->dirty = false;
	return 0;
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_write(struct qcow2_state *s, struct qcow2_cache *c)
{
	unsigned int i;
	int ret, first = 0;

	for (i = 0; i < c->size; i++) {
		ret = cache_co_entry_flush(s, c, &c->entries[i]);
		if (ret < 0 && !first)
			first = ret;
	}
	return first;
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_flush(struct qcow2_state *s, struct qcow2_cache *c)
{
	int ret = qcow2_cache_co_write(s, c);
	int ret2 = sluice_bds_co_flush(s->bs->file);

	return ret < 0 ? ret : ret2;
}

/* Coroutine, image lock held: see qcow2.h.  Breaks cycles the way QEMU does: flush @dep's own dependency first. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_set_dependency(struct qcow2_state *s, struct qcow2_cache *c,
					       struct qcow2_cache *dep)
{
	int ret;

	if (dep->depends) {
		ret = cache_co_flush_dependency(s, dep);
		if (ret < 0)
			return ret;
	}
	if (c->depends && c->depends != dep) {
		ret = cache_co_flush_dependency(s, c);
		if (ret < 0)
			return ret;
	}
	c->depends = dep;
	return 0;
}

/* Image lock held: see qcow2.h. */
void qcow2_cache_depends_on_flush(struct qcow2_cache *c)
{
	c->depends_on_flush = true;
}

/* Image lock held: the entry holding @offset, or NULL. */
static struct qcow2_cache_entry *cache_lookup(struct qcow2_cache *c, uint64_t offset)
{
	unsigned int i;

	for (i = 0; i < c->size; i++)
		if (c->entries[i].offset == offset)
			return &c->entries[i];
	return NULL;
}

/*
 * Coroutine, image lock held: a slot for @offset: a free one or the least
 * recently used, written back first if dirty.
 */
static int coroutine_fn GRAPH_RDLOCK cache_co_victim(struct qcow2_state *s, struct qcow2_cache *c,
					struct qcow2_cache_entry **out) TSA_REQUIRES(s->lock)
{
	struct qcow2_cache_entry *victim = NULL;
	unsigned int i;
	int ret;

	for (i = 0; i < c->size; i++) {
		struct qcow2_cache_entry *e = &c->entries[i];

		if (!e->offset) {
			victim = e;
			break;
		}
		if (!victim || e->lru < victim->lru)
			victim = e;
	}
	ret = cache_co_entry_flush(s, c, victim);
	if (ret < 0)
		return ret;
	victim->offset = 0;
	*out = victim;
	return 0;
}

/* Coroutine, image lock held: lookup or load. */
static int coroutine_fn GRAPH_RDLOCK cache_co_do_get(struct qcow2_state *s, struct qcow2_cache *c,
					uint64_t offset, void **table, bool read) TSA_REQUIRES(s->lock)
{
	struct qcow2_cache_entry *e;
	int ret;

	if (!offset || qcow2_offset_into_cluster(s, offset))
		return qcow2_co_signal_corruption(s, "metadata table at unaligned offset %#llx",
						  (unsigned long long)offset);
	e = cache_lookup(c, offset);
	if (!e) {
		ret = cache_co_victim(s, c, &e);
		if (ret < 0)
			return ret;
		if (read) {
			ret = qcow2_co_read_file(s, offset, e->table, s->cluster_size);
			if (ret < 0)
				return ret;
		}
		e->offset = offset;
		e->dirty = false;
	}
	e->lru = ++c->lru_counter;
	*table = e->table;
	return 0;
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_get(struct qcow2_state *s, struct qcow2_cache *c, uint64_t offset,
				    void **table)
{
	return cache_co_do_get(s, c, offset, table, true);
}

/* Coroutine, image lock held: see qcow2.h. */
int coroutine_fn GRAPH_RDLOCK qcow2_cache_co_get_empty(struct qcow2_state *s, struct qcow2_cache *c,
					  uint64_t offset, void **table)
{
	return cache_co_do_get(s, c, offset, table, false);
}

/* Image lock held: see qcow2.h. */
void qcow2_cache_mark_dirty(struct qcow2_cache *c, const void *table)
{
	unsigned int i;

	for (i = 0; i < c->size; i++) {
		if (c->entries[i].table == table) {
			c->entries[i].dirty = true;
			return;
		}
	}
}

/* Image lock held: see qcow2.h. */
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
	struct qcow2_cache_entry *e = offset ? cache_lookup(c, offset) : NULL;

	if (e) {
		e->offset = 0;
		e->dirty = false;
		e->lru = 0;
	}
}
