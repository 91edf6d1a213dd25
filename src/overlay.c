/*
 * overlay — see overlay.h.
 */
#include "overlay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nodewatch.h"
#include "util.h"

struct overlay_doc {
	char *bytes;			/* owned; the JSON as read */
	size_t len;			/* bytes in bytes */
};

struct overlay {
	char *path;			/* owned; the znode */
	char *origin;			/* owned; "zookeeper:<path>" */
	struct nodewatch *nw;		/* owned */
	const struct overlay_hooks *hooks;	/* ref: the owner's */
	void *arg;			/* ref */
	struct overlay_doc *latest;	/* owned; what ZooKeeper holds, NULL = no node */
	struct overlay_doc *applied;	/* owned; in force, NULL = none */
	uint64_t applied_total;		/* documents applied */
	uint64_t rejected_total;	/* documents rejected */
	uint64_t applied_at_ms;		/* wall ms of the last apply */
};

static struct overlay_doc *doc_new(const char *bytes, size_t len)
{
	struct overlay_doc *d = xcalloc(1, sizeof(*d));

	d->bytes = xmalloc(len + 1);
	memcpy(d->bytes, bytes, len);
	d->bytes[len] = '\0';
	d->len = len;
	return d;
}

static void doc_free(struct overlay_doc *d)
{
	if (d) {
		free(d->bytes);
		free(d);
	}
}

static bool doc_same(const struct overlay_doc *a, const struct overlay_doc *b)
{
	if (!a || !b)
		return a == b;
	return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

static void overlay_on_data(void *arg, const char *data, size_t len)
{
	struct overlay *o = arg;
	struct overlay_doc *d = doc_new(data, len);

	if (doc_same(d, o->latest)) {
		doc_free(d);
		return;
	}
	doc_free(o->latest);
	o->latest = d;
	log_info("config overlay %s: new document (%zu bytes)", o->origin, len);
	o->hooks->on_change(o->arg);
}

static void overlay_on_absent(void *arg)
{
	struct overlay *o = arg;

	if (!o->latest && !o->applied) {
		log_info("config overlay %s: no such node; the file's services apply alone",
			 o->origin);
		return;
	}
	doc_free(o->latest);
	o->latest = NULL;
	log_info("config overlay %s: node deleted; back to the file's services", o->origin);
	o->hooks->on_change(o->arg);
}

static const struct nodewatch_hooks overlay_node_hooks = {
	.on_data = overlay_on_data,
	.on_absent = overlay_on_absent,
};

struct overlay *overlay_new(struct event_base *base, struct zk *zk, const char *path,
			    const struct overlay_hooks *h, void *arg)
{
	struct overlay *o = xcalloc(1, sizeof(*o));
	size_t n = strlen(path) + sizeof("zookeeper:");
	char label[300];

	o->path = xstrdup(path);
	o->origin = xmalloc(n);
	snprintf(o->origin, n, "zookeeper:%s", path);
	o->hooks = h;
	o->arg = arg;
	snprintf(label, sizeof(label), "config overlay %s", o->origin);
	o->nw = nodewatch_new(zk, base, path, label, &overlay_node_hooks, o);
	return o;
}

void overlay_free(struct overlay *o)
{
	if (!o)
		return;
	nodewatch_free(o->nw);
	doc_free(o->latest);
	doc_free(o->applied);
	free(o->path);
	free(o->origin);
	free(o);
}

struct config *overlay_compose(const struct overlay *o, const struct config *file_cfg,
			       enum overlay_pick pick, struct config_errors *errs)
{
	const struct overlay_doc *d = pick == OVERLAY_LATEST ? o->latest : o->applied;

	/* An empty overlay is a deep copy of the file's configuration. */
	if (!d)
		return config_overlay_json(file_cfg, "{}", 2, o->origin, errs);
	return config_overlay_json(file_cfg, d->bytes, d->len, o->origin, errs);
}

void overlay_commit(struct overlay *o)
{
	doc_free(o->applied);
	o->applied = o->latest ? doc_new(o->latest->bytes, o->latest->len) : NULL;
	o->applied_total++;
	o->applied_at_ms = wall_ms();
}

void overlay_reject(struct overlay *o)
{
	o->rejected_total++;
}

const char *overlay_origin(const struct overlay *o)
{
	return o->origin;
}

void overlay_stats(const struct overlay *o, struct overlay_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->path = o->path;
	out->present = o->latest != NULL;
	out->in_force = o->applied != NULL;
	out->applied_total = o->applied_total;
	out->rejected_total = o->rejected_total;
	out->applied_at_ms = o->applied_at_ms;
}
