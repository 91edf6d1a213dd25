/*
 * zkset — follow a znode's children and each child's data, all of it
 * watched: the children-with-their-data watcher of the ZooKeeper layer,
 * used by discovery (instances) and sync (children mirrored into files).
 * nodewatch.h is its one-node sibling.
 *
 * A sync lists the children (watch), then reads the data of every new or
 * stale child (watch, unless watch_data is off), a bounded number at a time. When nothing is outstanding and every child has been
 * read, the set is settled: it says so through on_settled, and the owner
 * reads zkset_members(). Child events list again, once per coalesce
 * window (zkset_pace; with a window of 0 at once, coalesced to one
 * outstanding list); a data event reads that child again; a path that does
 * not exist is watched with exists until it appears. Completions find their
 * child again by name, so a child removed meanwhile is ignored. The owner
 * decides which children are read (the `wanted` hook, once per appearance
 * in the list) and what a child's data means (`on_read`).
 *
 * The set observes the session itself: a new session reads everything
 * again (after a random delay within resync_jitter when there is a
 * last-known set to serve meanwhile), a resumed one what failed meanwhile,
 * an expired one leaves the set IDLE until the next.
 *
 * Without data watches (watch_data false) a child's data is read when its
 * name appears in a list, and again only when the parent's cversion shows
 * that children were deleted and re-created between two lists (a new
 * session then costs one list, not one read per child). Missed: an
 * in-place setData of a child that stays (Curator's updateService does
 * exactly that).
 *
 * Errors: connection trouble waits for the session (or, when the session is
 * up, a retry timer); anything else is logged and retried with backoff
 * (zkretry.h).
 *
 * Lifecycle (enum zkset_phase), changed only by its transition function:
 *   IDLE --start, resync--> SYNCING --all read--> SYNCED --event--> SYNCING
 *                           SYNCING <--path missing / created--> ABSENT
 *   (any) --path unreadable--> BACKOFF --retry--> SYNCING, or IDLE without a session
 *
 * Thread: the control thread. Hooks are called from zk completions and
 * session events, never from inside a zkset_* call; they may not free the set.
 */
#ifndef ZKLB_ZKSET_H
#define ZKLB_ZKSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zk.h"

struct event_base;
struct rng;
struct zkset;

enum zkset_phase {
	ZKSET_IDLE = 0,			/* no session, or not started: nothing asked */
	ZKSET_SYNCING,			/* children or data reads outstanding */
	ZKSET_ABSENT,			/* the path does not exist; an exists watch waits for it */
	ZKSET_SYNCED,			/* everything read and handed to the owner */
	ZKSET_BACKOFF,			/* the path could not be read (ACL...); retry timer armed */
};

/* One child of the path. */
struct zkset_member {
	char *name;			/* owned; child znode name */
	bool wanted;			/* the owner's `wanted` took it: read and watched; else listed only */
	bool loaded;			/* read at least once (or unreadable: on_read said so) */
	bool stale;			/* must be read again (new session, failed read) */
	bool queued;			/* waits in the set's read queue */
	bool reading;			/* its get is outstanding */
	bool gone;			/* deleted: a tombstone until the next list or settle */
	int32_t version;		/* znode data version of the last read; -1 unknown */
	void *priv;			/* the owner's, per child; released by the `forget` hook */
};

struct zkset_hooks {
	/* A name appeared in the list: read it? Once per appearance. NULL = every child. */
	bool (*wanted)(void *arg, const char *name);
	/*
	 * A wanted child was read: rc ZOK with data[0..len) (borrowed; data
	 * may be NULL when len is 0), or ZNOAUTH (data NULL: no permission).
	 * m->version is the read's. Required.
	 */
	void (*on_read)(void *arg, struct zkset_member *m, int rc, const char *data, size_t len);
	/* m leaves the set (removed, path gone, reset, free): release m->priv. May be NULL. */
	void (*forget)(void *arg, struct zkset_member *m);
	/* Every child is read and nothing is outstanding: read zkset_members(). Required. */
	void (*on_settled)(void *arg);
};

/*
 * A set that reads nothing until zkset_start(). zk may be NULL (then it
 * never reads); label (copied) prefixes log lines ("svc=web"); rng (retry
 * jitter), h and arg must outlive the set. Errors are retried after 1 s,
 * doubling up to retry_cap_ms.
 */
struct zkset *zkset_new(struct event_base *base, struct zk *zk, const char *label,
			struct rng *rng, uint64_t retry_cap_ms, const struct zkset_hooks *h,
			void *arg);

/* Drop what is outstanding and free. NULL is a no-op. Not from a hook. */
void zkset_free(struct zkset *set);

/*
 * Read path (copied; absolute, no trailing '/'). Reads at once when the
 * session is up, else on the next new or resumed one.
 */
void zkset_start(struct zkset *set, const char *path, const char *why);

/* How a set spreads its reads over time (ZooKeeper-fleet manners). */
struct zkset_pacing {
	uint64_t coalesce_ms;		/* a children event lists after this (up to 25% less); 0 = at once */
	uint64_t resync_jitter_ms;	/* a new session reads again after a random delay below this */
	bool watch_data;		/* a data watch per child; false = the children watch only */
	bool serving;			/* the owner serves a last-known set (cache): delay the first read too */
};

/* Set the pacing (copied). Default: everything 0, watch_data true. */
void zkset_pace(struct zkset *set, const struct zkset_pacing *p);

/*
 * Pure: the delay of a coalesced list (coalesce true: window_ms, up to a
 * quarter less) or of a resync (uniform in [0, window_ms)), from `random`.
 * 0 when window_ms is 0.
 */
uint64_t zkset_delay_ms(uint64_t window_ms, bool coalesce, uint64_t random);

/* How long a known change has waited for its (coalesced or jittered) read; 0 = none. */
uint64_t zkset_waiting_ms(const struct zkset *set, uint64_t now);

/* Children and get requests sent since zkset_new. */
void zkset_counts(const struct zkset *set, uint64_t *lists, uint64_t *gets);

/* Forget the path, its children and every outstanding request: back to IDLE. */
void zkset_reset(struct zkset *set, const char *why);

/*
 * Stop for good: drop outstanding requests and the retry timer and stop
 * observing the session; nothing runs until zkset_free.
 */
void zkset_cancel(struct zkset *set);

/*
 * Pure query: the set is current — synced or absent, and nothing failed on
 * the connection that waits to be read again. (What a resumed session
 * finds.)
 */
bool zkset_current(const struct zkset *set);

enum zkset_phase zkset_phase(const struct zkset *set);

/* The path being read; NULL before zkset_start() and after zkset_reset(). */
const char *zkset_path(const struct zkset *set);

/* The children, sorted by name (borrowed until the next zk completion). */
const struct zkset_member *zkset_members(const struct zkset *set, size_t *n);

/* A read failed on the connection and waits to be done again. */
bool zkset_needs_resync(const struct zkset *set);

/* ZooKeeper read errors other than connection loss, since zkset_new. */
uint64_t zkset_errors(const struct zkset *set);

#endif
