/*
 * zkset — the ZooKeeper side of one discovered service: the children of its
 * path, and each child's data decoded into an instance, all of it watched.
 * Internal to discovery (discovery.h is the public API).
 *
 * A sync lists the children (watch), then reads the data of every new or
 * stale child (watch). When nothing is outstanding and every child has been
 * read, the set is settled: it says so through on_settled, and the owner
 * builds its view from zkset_members(). Child events list again (coalesced
 * to one outstanding list); a data event reads that child again; a path that
 * does not exist is watched with exists until it appears. Completions find
 * their child again by name, so a child removed meanwhile is ignored.
 * Children whose data is unusable keep their reason; each is logged and
 * counted once per version of its data.
 *
 * Errors: connection trouble waits for the session (or, when the session is
 * up, a retry timer); anything else is logged and retried with backoff.
 *
 * Lifecycle (enum zkset_phase), changed only by its transition function:
 *   IDLE --start, resync--> SYNCING --all read--> SYNCED --event--> SYNCING
 *                           SYNCING <--path missing / created--> ABSENT
 *   (any) --path unreadable--> BACKOFF --retry--> SYNCING, or IDLE without a session
 *
 * Thread: the control thread. on_settled is called from zk completions,
 * never from inside a zkset_* call; it may not free the set.
 */
#ifndef ZKLB_ZKSET_H
#define ZKLB_ZKSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "instance.h"
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
	bool loaded;			/* its data was read at least once */
	bool stale;			/* must be read again (new session, failed read) */
	enum instance_decode verdict;	/* of the last read */
	struct instance inst;		/* verdict OK or DISABLED */
	char reason[INSTANCE_REASON_MAX];	/* verdict DISABLED or BAD */
	int32_t version;		/* znode data version of the last read; -1 unknown */
	int32_t logged_version;		/* version whose skip was logged and counted; INT32_MIN none */
};

struct zkset_hooks {
	/* Every child is read and nothing is outstanding: read zkset_members(). Required. */
	void (*on_settled)(void *arg);
};

/*
 * A set that reads nothing until zkset_start(). zk may be NULL (then it
 * never reads); name (copied) prefixes log lines ("svc=NAME"); rng (retry
 * jitter), h and arg must outlive the set.
 */
struct zkset *zkset_new(struct event_base *base, struct zk *zk, const char *name,
			struct rng *rng, const struct zkset_hooks *h, void *arg);

/* Drop what is outstanding and free. NULL is a no-op. Not from on_settled. */
void zkset_free(struct zkset *set);

/*
 * Read path (copied; absolute, no trailing '/'): the `member_*` children as
 * ServerSet members when serverset, else every child as a Curator instance;
 * tls: a child is usable only with an ssl_port (else only with a port).
 * Reads at once when the session is up, else on the next new or resumed one.
 */
void zkset_start(struct zkset *set, const char *path, bool serverset, bool tls,
		 const char *why);

/* Forget the path, its children and every outstanding request: back to IDLE. */
void zkset_reset(struct zkset *set, const char *why);

/* Drop outstanding requests and the retry timer; nothing runs until the next start. */
void zkset_cancel(struct zkset *set);

/* Forget what is in flight and read everything again (watches re-armed). */
void zkset_resync(struct zkset *set, const char *why);

/*
 * The same session came back. Reads again what failed meanwhile and returns
 * false; returns true when the set was already current (synced or absent).
 */
bool zkset_resume(struct zkset *set);

/* The session expired: nothing outstanding survives; IDLE until the next session. */
void zkset_expire(struct zkset *set);

/* A fired watch; the set ignores paths that are not its own or its children. */
void zkset_watch_event(struct zkset *set, enum zk_watch_event ev, const char *path);

/* The path being read; NULL before zkset_start() and after zkset_reset(). */
const char *zkset_path(const struct zkset *set);

/* The children, sorted by name (borrowed until the next zk completion). */
const struct zkset_member *zkset_members(const struct zkset *set, size_t *n);

/* A read failed on the connection and waits to be done again. */
bool zkset_needs_resync(const struct zkset *set);

/* ZooKeeper read errors other than connection loss, since zkset_new. */
uint64_t zkset_errors(const struct zkset *set);

/* Malformed children, once per node version, since zkset_new. */
uint64_t zkset_bad(const struct zkset *set);

#endif
