/*
 * overlay — the configuration pushed through ZooKeeper
 * (zookeeper.config_path): a JSON document with the schema of the file's
 * `services:` section (see config_overlay_json) laid over the file's
 * configuration, so services can be added or retuned without touching
 * any host.
 *
 * The overlay follows the znode (nodewatch.h) and keeps two documents:
 *   latest   what ZooKeeper holds now (NULL when the node does not exist);
 *   applied  the last one that validated and applied (NULL = none).
 * A change of `latest` calls the owner's on_change hook; the owner composes
 * the candidate (overlay_compose with OVERLAY_LATEST), applies it, and
 * says how it went (overlay_commit or overlay_reject). An invalid document
 * is rejected as a whole and the running configuration stays; a SIGHUP
 * composes the re-read file with the `applied` document. A deleted node
 * means "no overlay": the file's services apply alone. ZooKeeper being
 * unreachable changes nothing.
 *
 * With a cache_dir, the document in force is kept in cache_dir/.overlay.json
 * (written atomically on every apply, removed when the node is deleted), and
 * a start while ZooKeeper is unreachable applies it until ZooKeeper answers,
 * as discovery serves its cached views: a restart during an outage does not
 * fall back to the file's services. Without a cache_dir, or a cached
 * document, the file runs alone until the first answer. (Service names
 * cannot start with '.', so the file never meets a service's cache file.)
 *
 * Thread: the control thread.
 */
#ifndef ZKLB_OVERLAY_H
#define ZKLB_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct config_errors;

struct event_base;
struct zk;
struct overlay;

struct overlay_hooks {
	/* `latest` changed (new bytes, or the node went away). Required. */
	void (*on_change)(void *arg);
};

/* Which document overlay_compose lays over the file. */
enum overlay_pick {
	OVERLAY_LATEST = 0,		/* the candidate from ZooKeeper */
	OVERLAY_APPLIED,		/* the one in force */
};

struct overlay_stats {
	const char *path;		/* the znode */
	bool present;			/* the node exists (latest != NULL) */
	bool in_force;			/* an overlay is applied */
	uint64_t applied_total;		/* documents applied (zklb_config_overlay_applied_total) */
	uint64_t rejected_total;	/* documents rejected (zklb_config_overlay_rejected_total) */
	uint64_t applied_at_ms;		/* wall ms of the last apply; 0 = never */
	bool cached;			/* in force from cache_dir; ZooKeeper has not answered */
};

/*
 * Follow path (copied) on zk; h and arg must outlive the overlay. cache_dir
 * (copied; NULL = none): the document in force from a previous run, if its
 * path matches, is in force at once (overlay_compose with OVERLAY_APPLIED).
 */
struct overlay *overlay_new(struct event_base *base, struct zk *zk, const char *path,
			    const char *cache_dir, const struct overlay_hooks *h, void *arg);

/*
 * The cached document does not fit the file any more (the caller tried it):
 * forget it; the file runs alone until ZooKeeper answers.
 */
void overlay_drop_cached(struct overlay *o);
void overlay_free(struct overlay *o);

/*
 * file_cfg (borrowed) with the picked document laid over it: a new config
 * the caller owns (a plain copy of file_cfg when that document is NULL).
 * NULL with messages in errs (each naming "zookeeper:<path>" and the JSON
 * path of the problem) when the result does not validate.
 */
struct config *overlay_compose(const struct overlay *o, const struct config *file_cfg,
			       enum overlay_pick pick, struct config_errors *errs);

/* The latest document applied: it becomes the one in force. */
void overlay_commit(struct overlay *o);
/* The latest document was refused: counted; the one in force stays. */
void overlay_reject(struct overlay *o);

/* "zookeeper:<path>", the origin written into the services it sets. */
const char *overlay_origin(const struct overlay *o);

void overlay_stats(const struct overlay *o, struct overlay_stats *out);

#endif
