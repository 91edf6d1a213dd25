/*
 * overlay — see overlay.h.
 */
#include "overlay.h"
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	char *cache_file;		/* owned; cache_dir/.overlay.json, NULL = none */
	char *cache_dir;		/* owned; NULL = none */
	bool cached;			/* applied came from cache_file */
	char cache_err[256];		/* the last cache write failure logged */
};

#define OVERLAY_CACHE_FORMAT "zklb-overlay/1"

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

/* ---------- cache_dir/.overlay.json ---------- */

/* The cached document for o->path, or NULL (a problem is logged). */
static struct overlay_doc *cache_read(struct overlay *o, uint64_t *written_at_ms)
{
	json_error_t jerr;
	json_t *root = json_load_file(o->cache_file, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (access(o->cache_file, F_OK) == 0)
			log_warn("config overlay %s: ignoring %s: %s", o->origin, o->cache_file,
				 jerr.text);
		return NULL;
	}
	struct overlay_doc *d = NULL;
	const char *format = json_string_value(json_object_get(root, "format"));
	const char *path = json_string_value(json_object_get(root, "path"));
	const json_t *doc = json_object_get(root, "document");
	if (!format || strcmp(format, OVERLAY_CACHE_FORMAT) != 0 || !path || !json_is_string(doc)) {
		log_warn("config overlay %s: ignoring %s: not a zklb overlay cache", o->origin,
			 o->cache_file);
	} else if (strcmp(path, o->path) != 0) {
		log_info("config overlay %s: the cache holds %s's document: not used", o->origin, path);
	} else {
		d = doc_new(json_string_value(doc), json_string_length(doc));
		json_int_t at = json_integer_value(json_object_get(root, "written_at_ms"));
		*written_at_ms = at > 0 ? (uint64_t)at : 0;
	}
	json_decref(root);
	return d;
}

/* Keep the document in force for the next start; none in force: remove the file. */
static void cache_write(struct overlay *o)
{
	char err[256] = "";
	if (!o->applied) {
		if (unlink(o->cache_file) != 0 && errno != ENOENT)
			snprintf(err, sizeof(err), "remove %s: %s", o->cache_file, strerror(errno));
	} else {
		json_t *root = json_pack("{s:s, s:s, s:I, s:s%}", "format", OVERLAY_CACHE_FORMAT,
					 "path", o->path, "written_at_ms", (json_int_t)wall_ms(),
					 "document", o->applied->bytes, o->applied->len);
		char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
		int rc = dir_make(o->cache_dir, 0755);
		if (!text)
			snprintf(err, sizeof(err), "cannot encode the document (not UTF-8?)");
		else if (rc < 0)
			snprintf(err, sizeof(err), "create %s: %s", o->cache_dir, strerror(-rc));
		else
			file_write_atomic(o->cache_file, text, strlen(text), 0600, err, sizeof(err));
		free(text);
		json_decref(root);
	}
	/* A full or read-only disk fails every time: say so once per message. */
	if (err[0] && strcmp(err, o->cache_err) != 0)
		log_warn("config overlay %s: cache not written: %s", o->origin, err);
	else if (!err[0] && o->cache_err[0])
		log_info("config overlay %s: cache written again", o->origin);
	snprintf(o->cache_err, sizeof(o->cache_err), "%s", err);
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
			    const char *cache_dir, const struct overlay_hooks *h, void *arg)
{
	struct overlay *o = xcalloc(1, sizeof(*o));
	size_t n = strlen(path) + sizeof("zookeeper:");
	char label[300];

	o->path = xstrdup(path);
	o->origin = xmalloc(n);
	snprintf(o->origin, n, "zookeeper:%s", path);
	o->hooks = h;
	o->arg = arg;
	if (cache_dir) {
		size_t m = strlen(cache_dir) + sizeof("/.overlay.json");
		o->cache_dir = xstrdup(cache_dir);
		o->cache_file = xmalloc(m);
		snprintf(o->cache_file, m, "%s/.overlay.json", cache_dir);
		uint64_t at = 0;
		o->applied = cache_read(o, &at);
		if (o->applied) {
			uint64_t now = wall_ms();
			o->cached = true;
			log_info("config overlay %s: %zu bytes from %s (written %llus ago) in force "
				 "until ZooKeeper answers", o->origin, o->applied->len, o->cache_file,
				 (unsigned long long)(at && now > at ? (now - at) / 1000 : 0));
		}
	}
	snprintf(label, sizeof(label), "config overlay %s", o->origin);
	o->nw = nodewatch_new(zk, base, path, label, &overlay_node_hooks, o);
	return o;
}

void overlay_drop_cached(struct overlay *o)
{
	if (!o->cached)
		return;
	doc_free(o->applied);
	o->applied = NULL;
	o->cached = false;
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
	free(o->cache_file);
	free(o->cache_dir);
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
	o->cached = false;
	if (o->cache_file)
		cache_write(o);
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
	out->cached = o->cached;
}
