/*
 * nodewatch — see nodewatch.h.
 *
 * At most one request is in flight per nodewatch (busy); anything that asks
 * for a read meanwhile sets `again`, and the read is sent when the answer
 * is in. ZooKeeper answers a session's requests in order, so a read sent
 * after an event always sees at least that event's version.
 */
#include "nodewatch.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "zk.h"
#include "zkretry.h"

#define NODEWATCH_RETRY_BASE_MS 1000
#define NODEWATCH_RETRY_CAP_MS 30000

struct nodewatch {
	struct zk *zk;			/* ref: the control thread's session */
	char *path;			/* owned; znode path */
	char *label;			/* owned; log prefix */
	const struct nodewatch_hooks *hooks;	/* ref: the owner's */
	void *arg;			/* ref: handed back to the hooks */
	enum nodewatch_state state;	/* changed by nodewatch_set_state() only */
	int64_t mzxid;			/* PRESENT: version last delivered */
	int64_t owner;			/* PRESENT: its ephemeralOwner; 0 = persistent */
	bool stopped;			/* nodewatch_stop(): reads nothing, calls no hook */
	bool busy;			/* a get or exists is in flight */
	bool again;			/* a read was asked for while busy */
	struct zkretry retry;		/* owned; read again after an error */
	struct rng rng;			/* owned; retry jitter */
	uint64_t errors_total;		/* read errors other than connection trouble */
};

static void nodewatch_read(struct nodewatch *w);

const char *nodewatch_state_name(enum nodewatch_state s)
{
	switch (s) {
	case NODEWATCH_UNKNOWN: return "unknown";
	case NODEWATCH_PRESENT: return "present";
	case NODEWATCH_ABSENT: return "absent";
	}
	return "?";
}

/* The one transition function; every state may follow every other but UNKNOWN. */
static bool nodewatch_set_state(struct nodewatch *w, enum nodewatch_state to)
{
	if (to == NODEWATCH_UNKNOWN) {
		log_error("%s: nodewatch: refused transition %s -> unknown", w->label,
			  nodewatch_state_name(w->state));
		return false;
	}
	if (w->state != to)
		log_debug("%s: %s -> %s", w->label, nodewatch_state_name(w->state),
			  nodewatch_state_name(to));
	w->state = to;
	return true;
}

static void nodewatch_error(struct nodewatch *w, const char *what, int rc)
{
	w->errors_total++;
	zkretry_failed(&w->retry, w->label, what, w->path, rc);
}

/* After an answer: a read asked for meanwhile goes out now. */
static void nodewatch_settle(struct nodewatch *w)
{
	w->busy = false;
	if (w->again) {
		w->again = false;
		nodewatch_read(w);
	}
}

static void nodewatch_got_exists(void *arg, const struct zk_result *r)
{
	struct nodewatch *w = arg;

	w->busy = false;
	if (r->rc == ZOK) {
		/* Created between our get and this exists: read it. */
		w->again = true;
	} else if (r->rc == ZNONODE) {
		zkretry_succeeded(&w->retry);
		if (w->state != NODEWATCH_ABSENT && nodewatch_set_state(w, NODEWATCH_ABSENT)) {
			w->mzxid = 0;
			w->hooks->on_absent(w->arg);
		}
	} else if (!zk_rc_is_connection(r->rc)) {
		nodewatch_error(w, "exists", r->rc);
		return;
	}
	nodewatch_settle(w);
}

static void nodewatch_got_data(void *arg, const struct zk_result *r)
{
	struct nodewatch *w = arg;

	if (r->rc == ZOK) {
		int64_t mzxid = r->stat ? r->stat->mzxid : 0;
		zkretry_succeeded(&w->retry);
		if (w->state != NODEWATCH_PRESENT || mzxid != w->mzxid || mzxid == 0) {
			nodewatch_set_state(w, NODEWATCH_PRESENT);
			w->mzxid = mzxid;
			w->owner = r->stat ? r->stat->ephemeralOwner : 0;
			w->hooks->on_data(w->arg, r->data ? r->data : "", r->data_len);
		}
	} else if (r->rc == ZNONODE) {
		/* Wait for it with an exists watch (a get sets none on a missing node). */
		zk_exists(w->zk, w->path, true, nodewatch_got_exists, w);
		return;	/* still busy */
	} else if (!zk_rc_is_connection(r->rc)) {
		w->busy = false;
		nodewatch_error(w, "get", r->rc);
		return;
	}
	nodewatch_settle(w);
}

static void nodewatch_read(struct nodewatch *w)
{
	if (w->stopped)
		return;
	if (w->busy) {
		w->again = true;
		return;
	}
	zkretry_cancel(&w->retry);
	w->busy = true;
	zk_get(w->zk, w->path, true, nodewatch_got_data, w);
}

static void nodewatch_retry(void *arg)
{
	nodewatch_read(arg);
}

static void nodewatch_on_session(void *arg, enum zk_session_event ev)
{
	struct nodewatch *w = arg;

	if (ev == ZK_SESSION_NEW || ev == ZK_SESSION_RESUMED)
		nodewatch_read(w);
}

static void nodewatch_on_watch(void *arg, enum zk_watch_event ev, const char *path)
{
	struct nodewatch *w = arg;

	if (ev != ZK_WATCH_CHILD && strcmp(path, w->path) == 0)
		nodewatch_read(w);
}

static const struct zk_observer nodewatch_observer = {
	.on_session = nodewatch_on_session,
	.on_watch = nodewatch_on_watch,
};

struct nodewatch *nodewatch_new(struct zk *zk, struct event_base *base, const char *path,
				const char *label, const struct nodewatch_hooks *h, void *arg)
{
	struct nodewatch *w = xcalloc(1, sizeof(*w));

	w->zk = zk;
	w->path = xstrdup(path);
	w->label = xstrdup(label ? label : path);
	w->hooks = h;
	w->arg = arg;
	w->state = NODEWATCH_UNKNOWN;
	rng_seed(&w->rng, now_us() ^ (uintptr_t)w);
	zkretry_init(&w->retry, base, &w->rng, NODEWATCH_RETRY_BASE_MS, NODEWATCH_RETRY_CAP_MS,
		     nodewatch_retry, w);
	zk_observe(zk, &nodewatch_observer, w);
	nodewatch_read(w);
	return w;
}

void nodewatch_free(struct nodewatch *w)
{
	if (!w)
		return;
	zk_unobserve(w->zk, w);
	zk_cancel(w->zk, w);
	zkretry_fini(&w->retry);
	free(w->path);
	free(w->label);
	free(w);
}

void nodewatch_stop(struct nodewatch *w)
{
	if (!w || w->stopped)
		return;
	w->stopped = true;
	zk_unobserve(w->zk, w);
	zk_cancel(w->zk, w);
	zkretry_cancel(&w->retry);
}

int64_t nodewatch_owner(const struct nodewatch *w)
{
	return w->owner;
}

enum nodewatch_state nodewatch_state(const struct nodewatch *w)
{
	return w->state;
}

uint64_t nodewatch_errors(const struct nodewatch *w)
{
	return w->errors_total;
}
