/*
 * zkset — see zkset.h.
 *
 * A sync is: children (watch) -> data of every new or stale wanted child
 * (watch unless watch_data is off), at most ZKSET_READS_INFLIGHT at a time,
 * from a FIFO of names -> when nothing is outstanding, on_settled. Watch
 * events restart the relevant part; completions find their child again by
 * name (binary search), so a child removed meanwhile is simply ignored.
 * Every request carries the set as its zk argument, so zk_cancel(zk, set)
 * drops all of them at once.
 *
 * Scale: nothing per event is linear in the number of children. A deleted
 * child becomes a tombstone (compacted by the next list or before
 * on_settled), the unread children are counted rather than searched, and
 * the reads wait in a queue instead of all going out at once.
 */
#include "zkset.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "zkretry.h"

#define RETRY_BASE_MS 1000
#define ZKSET_READS_INFLIGHT 64		/* gets outstanding per set: paced, never a burst of N */

/* A name waiting for its get (the FIFO of paced reads). */
struct zkset_read {
	char *name;			/* owned */
	struct zkset_read *next;	/* FIFO */
};

struct zkset {
	char *label;			/* owned; log prefix, e.g. "svc=web" */
	struct zk *zk;			/* ref; NULL = no ZooKeeper: never reads */
	const struct zkset_hooks *hooks;	/* ref */
	void *arg;			/* hooks' argument */

	char *path;			/* owned; znode path, no trailing '/'; NULL = not started */
	enum zkset_phase phase;		/* changed only by phase_set */

	struct zkset_pacing pacing;	/* coalesce, resync jitter, watch_data (zkset_pace) */
	struct rng *rng;		/* ref: jitter of the delays */
	struct event *delay_ev;		/* owned; the coalesced list or the jittered resync */
	bool delayed_resync;		/* delay_ev is a resync after a new session, not a list */
	uint64_t waiting_since_ms;	/* monotonic: a known change waits for delay_ev; 0 = none */

	struct zkset_member *members;	/* owned; sorted by name; may hold tombstones (gone) */
	size_t n_members;		/* used entries, tombstones included */
	size_t n_gone;			/* tombstones among them */
	size_t n_unloaded;		/* wanted, not gone, never read: settle waits for them */
	int32_t cversion;		/* the parent's cversion at the last list; -1 unknown */
	struct zkset_read *reads_head;	/* owned FIFO of names to get */
	struct zkset_read *reads_tail;	/* ref: its last entry */
	bool list_inflight;		/* a children request is outstanding */
	bool relist_wanted;		/* a child event came meanwhile: list again after it */
	bool exists_inflight;		/* an exists request is outstanding */
	unsigned reads_inflight;	/* get requests outstanding */
	bool needs_resync;		/* a request failed on the connection: re-read on resume */
	bool sync_errors;		/* a non-connection error happened in this sync */
	struct zkretry retry;		/* owned; backoff -> resync */

	uint64_t errors_total;		/* read errors other than connection loss */
	uint64_t lists_total;		/* children requests sent */
	uint64_t gets_total;		/* get requests sent */
};

/* ---------- the lifecycle ---------- */

static const char *phase_name(enum zkset_phase p)
{
	switch (p) {
	case ZKSET_IDLE: return "idle";
	case ZKSET_SYNCING: return "syncing";
	case ZKSET_ABSENT: return "absent";
	case ZKSET_SYNCED: return "synced";
	case ZKSET_BACKOFF: return "backoff";
	}
	return "?";
}

static bool phase_allowed(enum zkset_phase from, enum zkset_phase to)
{
	switch (from) {
	case ZKSET_IDLE:
		return to == ZKSET_SYNCING || to == ZKSET_BACKOFF;
	case ZKSET_SYNCING:
	case ZKSET_ABSENT:
	case ZKSET_SYNCED:
		return true;
	case ZKSET_BACKOFF:
		return to == ZKSET_SYNCING || to == ZKSET_IDLE;
	}
	return false;
}

static void phase_set(struct zkset *set, enum zkset_phase to, const char *why)
{
	if (set->phase == to)
		return;
	if (!phase_allowed(set->phase, to)) {
		log_error("%s: refused watch transition %s -> %s (%s)", set->label,
			  phase_name(set->phase), phase_name(to), why);
		return;
	}
	log_debug("%s: watch %s -> %s (%s)", set->label, phase_name(set->phase),
		  phase_name(to), why);
	set->phase = to;
}

/* ---------- paths and members ---------- */

static char *child_path(const struct zkset *set, const char *name)
{
	size_t a = strlen(set->path), b = strlen(name);
	bool root = strcmp(set->path, "/") == 0;
	char *p = xmalloc(a + b + 2);

	if (root)
		snprintf(p, b + 2, "/%s", name);
	else
		snprintf(p, a + b + 2, "%s/%s", set->path, name);
	return p;
}

/* The child name when path is a direct child of set->path, else NULL. */
static const char *child_name(const struct zkset *set, const char *path)
{
	size_t a = strcmp(set->path, "/") == 0 ? 0 : strlen(set->path);
	const char *name;

	if (strncmp(path, set->path, a) != 0 || path[a] != '/')
		return NULL;
	name = path + a + 1;
	if (!*name || strchr(name, '/'))
		return NULL;
	return name;
}

static int cmp_member_name(const void *key, const void *elem)
{
	return strcmp(key, ((const struct zkset_member *)elem)->name);
}

static long member_find(const struct zkset *set, const char *name)
{
	const struct zkset_member *m;

	if (set->n_members == 0)
		return -1;
	m = bsearch(name, set->members, set->n_members, sizeof(*m), cmp_member_name);
	return m && !m->gone ? (long)(m - set->members) : -1;
}

/* Release what the owner keeps for m; m's slot stays (a tombstone until compacted). */
static void member_release(struct zkset *set, struct zkset_member *m)
{
	if (m->gone)
		return;
	if (m->wanted && !m->loaded && set->n_unloaded)
		set->n_unloaded--;
	if (set->hooks->forget)
		set->hooks->forget(set->arg, m);
	m->priv = NULL;
	m->gone = true;
	set->n_gone++;
}

/* O(1): a deleted child is a tombstone, so a storm of deletes is not quadratic. */
static void member_remove(struct zkset *set, size_t i)
{
	member_release(set, &set->members[i]);
}

/* Drop the tombstones (one pass), before the owner reads the members. */
static void members_compact(struct zkset *set)
{
	size_t k = 0;

	if (!set->n_gone)
		return;
	for (size_t i = 0; i < set->n_members; i++) {
		if (set->members[i].gone)
			free(set->members[i].name);
		else
			set->members[k++] = set->members[i];
	}
	set->n_members = k;
	set->n_gone = 0;
}

static void members_clear(struct zkset *set)
{
	for (size_t i = 0; i < set->n_members; i++) {
		member_release(set, &set->members[i]);
		free(set->members[i].name);
	}
	set->n_members = 0;
	set->n_gone = 0;
	set->n_unloaded = 0;
	set->cversion = -1;
}

/* ---------- errors and retries ---------- */

static void schedule_retry(struct zkset *set)
{
	uint64_t delay;

	if (zkretry_arm(&set->retry, &delay))
		log_info("%s: retrying in %llums", set->label, (unsigned long long)delay);
}

/* A request failed. Connection trouble waits for the session; the rest backs off. */
static void read_failed(struct zkset *set, int rc, const char *path, bool whole_set)
{
	if (zk_rc_is_connection(rc)) {
		set->needs_resync = true;
		/* No session event will follow if the session is up: retry ourselves. */
		if (set->zk && zk_state(set->zk) == ZK_CONNECTED)
			schedule_retry(set);
		return;
	}
	set->errors_total++;
	set->sync_errors = true;
	if (rc == ZNOAUTH)
		log_error("%s: no permission to read %s (ZNOAUTH): check its ACL and "
			  "zookeeper.auth", set->label, path);
	else
		log_error("%s: reading %s failed: %s", set->label, path, zk_rc_name(rc));
	if (whole_set)
		phase_set(set, ZKSET_BACKOFF, zk_rc_name(rc));
	schedule_retry(set);
}

/* After every completion: when nothing is outstanding and all is read, tell the owner. */
static void settle(struct zkset *set)
{
	if (set->list_inflight || set->relist_wanted || set->exists_inflight ||
	    set->reads_inflight || set->reads_head)
		return;
	if (set->phase != ZKSET_SYNCING && set->phase != ZKSET_SYNCED &&
	    set->phase != ZKSET_ABSENT)
		return;
	if (set->n_unloaded)
		return;		/* a first read failed: wait for the resync */
	members_compact(set);
	if (set->phase == ZKSET_SYNCING)
		phase_set(set, ZKSET_SYNCED, "all read");
	if (!set->sync_errors)
		zkretry_succeeded(&set->retry);
	set->hooks->on_settled(set->arg);
}

/* ---------- requests and completions ---------- */

static void list_done(void *arg, const struct zk_result *r);
static void get_done(void *arg, const struct zk_result *r);
static void exists_done(void *arg, const struct zk_result *r);

static void issue_list(struct zkset *set)
{
	set->list_inflight = true;
	set->lists_total++;
	zk_children(set->zk, set->path, true, list_done, set);
}

static void reads_clear(struct zkset *set)
{
	while (set->reads_head) {
		struct zkset_read *r = set->reads_head;
		set->reads_head = r->next;
		free(r->name);
		free(r);
	}
	set->reads_tail = NULL;
}

/* Send queued gets while fewer than ZKSET_READS_INFLIGHT are outstanding. */
static void reads_pump(struct zkset *set)
{
	while (set->reads_head && set->reads_inflight < ZKSET_READS_INFLIGHT) {
		struct zkset_read *r = set->reads_head;
		long i = member_find(set, r->name);

		set->reads_head = r->next;
		if (!set->reads_head)
			set->reads_tail = NULL;
		if (i >= 0 && set->members[i].queued) {
			struct zkset_member *m = &set->members[i];
			char *p = child_path(set, m->name);
			m->queued = false;
			m->stale = false;
			m->reading = true;
			set->reads_inflight++;
			set->gets_total++;
			zk_get(set->zk, p, set->pacing.watch_data, get_done, set);
			free(p);
		}
		free(r->name);
		free(r);
	}
}

/* m must be read (again): queue it once; reads_pump sends it. */
static void issue_get(struct zkset *set, struct zkset_member *m)
{
	struct zkset_read *r;

	m->stale = true;
	if (m->queued)
		return;
	m->queued = true;
	r = xcalloc(1, sizeof(*r));
	r->name = xstrdup(m->name);
	if (set->reads_tail)
		set->reads_tail->next = r;
	else
		set->reads_head = r;
	set->reads_tail = r;
}

static void delay_arm(struct zkset *set, uint64_t delay_ms, bool resync)
{
	struct timeval tv = timeval_from_ms(delay_ms);

	set->delayed_resync = resync;
	if (!set->waiting_since_ms)
		set->waiting_since_ms = now_ms();
	evtimer_add(set->delay_ev, &tv);
}

static void delay_cancel(struct zkset *set)
{
	evtimer_del(set->delay_ev);
	set->delayed_resync = false;
	set->waiting_since_ms = 0;
}

static void list_now(struct zkset *set, const char *why)
{
	if (set->list_inflight) {
		set->relist_wanted = true;
		return;
	}
	phase_set(set, ZKSET_SYNCING, why);
	issue_list(set);
}

/*
 * A child or existence event: list again, once per coalesce window. The
 * first event of a window arms the timer; the events that follow within it
 * ride on the same list. With coalesce 0, at once (one outstanding list).
 */
static void relist(struct zkset *set, const char *why)
{
	if (set->phase == ZKSET_IDLE || set->phase == ZKSET_BACKOFF)
		return;
	if (!set->pacing.coalesce_ms) {
		list_now(set, why);
		return;
	}
	if (evtimer_pending(set->delay_ev, NULL))
		return;
	delay_arm(set, zkset_delay_ms(set->pacing.coalesce_ms, true, rng_next(set->rng)), false);
	log_debug("%s: %s; listing within %llums (coalesce)", set->label, why,
		  (unsigned long long)set->pacing.coalesce_ms);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Without data watches, a child deleted and created again between two lists
 * shows the same name: the parent's cversion, which counts every create and
 * delete, says that more happened than the two lists show. Then every child
 * is read again (rare: it takes a delete and a re-create of one name within
 * one coalesce window).
 */
static bool hidden_changes(const struct zkset *set, int32_t cversion, size_t added, size_t removed)
{
	if (set->pacing.watch_data || set->cversion < 0 || cversion < 0)
		return false;
	return (int64_t)cversion - set->cversion > (int64_t)(added + removed);
}

/* Replace the member table by the listed children; read new and stale ones. */
static void merge_children(struct zkset *set, char *const *children, size_t n, int32_t cversion)
{
	const char **names = xcalloc(n ? n : 1, sizeof(*names));
	struct zkset_member *old = set->members;
	size_t n_old = set->n_members, k = 0, i = 0, j = 0, added = 0, removed = 0;
	struct zkset_member *next;

	for (size_t x = 0; x < n; x++)
		names[k++] = children[x];
	qsort(names, k, sizeof(*names), cmp_str);
	/* A server never lists a name twice; a hostile one might. */
	for (size_t x = 1, w = 1; x <= k; x++) {
		if (x == k) {
			k = w;
			break;
		}
		if (strcmp(names[x], names[w - 1]) != 0)
			names[w++] = names[x];
	}
	next = xcalloc(k ? k : 1, sizeof(*next));
	set->members = next;
	set->n_members = 0;
	set->n_gone = 0;
	while (i < n_old || j < k) {
		int c = i == n_old ? 1 : j == k ? -1 : strcmp(old[i].name, names[j]);
		if (c == 0 && old[i].gone) {
			/* Deleted and listed again: a new node of the same name. */
			free(old[i].name);
			i++;
			continue;
		}
		if (c < 0) {
			if (!old[i].gone)
				removed++;
			member_release(set, &old[i]);
			free(old[i].name);
			i++;
		} else if (c > 0) {
			struct zkset_member *m = &next[set->n_members++];
			memset(m, 0, sizeof(*m));
			m->name = xstrdup(names[j]);
			m->version = -1;
			m->wanted = !set->hooks->wanted || set->hooks->wanted(set->arg, m->name);
			/* A child the owner does not want is listed only: nothing to wait for. */
			m->stale = m->wanted;
			m->loaded = !m->wanted;
			if (m->wanted)
				set->n_unloaded++;
			added++;
			j++;
		} else {
			next[set->n_members++] = old[i];
			i++;
			j++;
		}
	}
	free(old);
	free(names);
	if (hidden_changes(set, cversion, added, removed)) {
		log_info("%s: children were replaced between two lists; reading every child again",
			 set->label);
		for (size_t x = 0; x < set->n_members; x++)
			set->members[x].stale = set->members[x].wanted;
	}
	if (cversion >= 0)
		set->cversion = cversion;
	for (size_t x = 0; x < set->n_members; x++) {
		if (set->members[x].wanted && set->members[x].stale)
			issue_get(set, &set->members[x]);
	}
	reads_pump(set);
}

static void list_done(void *arg, const struct zk_result *r)
{
	struct zkset *set = arg;

	set->list_inflight = false;
	if (r->rc == ZOK) {
		merge_children(set, r->children, r->n_children, r->stat ? r->stat->cversion : -1);
		if (set->relist_wanted) {
			set->relist_wanted = false;
			issue_list(set);
		}
	} else if (r->rc == ZNONODE) {
		set->relist_wanted = false;
		members_clear(set);
		set->exists_inflight = true;
		zk_exists(set->zk, set->path, true, exists_done, set);
	} else {
		read_failed(set, r->rc, set->path, true);
	}
	settle(set);
}

static void exists_done(void *arg, const struct zk_result *r)
{
	struct zkset *set = arg;

	set->exists_inflight = false;
	if (r->rc == ZOK) {
		relist(set, "path appeared");
	} else if (r->rc == ZNONODE) {
		if (set->phase != ZKSET_ABSENT)
			log_info("%s: %s does not exist; waiting for it", set->label, set->path);
		members_clear(set);
		phase_set(set, ZKSET_ABSENT, "path missing");
	} else {
		read_failed(set, r->rc, set->path, true);
	}
	settle(set);
}

static void get_done(void *arg, const struct zk_result *r)
{
	struct zkset *set = arg;
	const char *name = child_name(set, r->path);
	long i = name ? member_find(set, name) : -1;
	struct zkset_member *m;

	if (set->reads_inflight)
		set->reads_inflight--;
	reads_pump(set);
	if (i < 0) {
		settle(set);	/* removed meanwhile */
		return;
	}
	m = &set->members[i];
	m->reading = false;
	if (r->rc == ZOK || r->rc == ZNOAUTH) {
		if (!m->loaded && set->n_unloaded)
			set->n_unloaded--;
		m->loaded = true;
	}
	if (r->rc == ZOK) {
		m->version = r->stat ? r->stat->version : -1;
		set->hooks->on_read(set->arg, m, ZOK, r->data, r->data_len);
	} else if (r->rc == ZNONODE) {
		member_remove(set, (size_t)i);
	} else if (r->rc == ZNOAUTH) {
		/* One unreadable child costs that child, not the set. */
		set->hooks->on_read(set->arg, m, ZNOAUTH, NULL, 0);
		read_failed(set, r->rc, r->path, false);
	} else {
		m->stale = true;
		read_failed(set, r->rc, r->path, false);
	}
	settle(set);
}

/* ---------- sync control ---------- */

/* Drop every outstanding request; their completions never run. */
static void sync_reset(struct zkset *set)
{
	if (set->zk)
		zk_cancel(set->zk, set);
	zkretry_cancel(&set->retry);
	delay_cancel(set);
	reads_clear(set);
	for (size_t i = 0; i < set->n_members; i++) {
		struct zkset_member *m = &set->members[i];
		/* A cancelled read never answers: it is still due. */
		if (m->reading || m->queued)
			m->stale = true;
		m->reading = false;
		m->queued = false;
	}
	set->list_inflight = false;
	set->relist_wanted = false;
	set->exists_inflight = false;
	set->reads_inflight = 0;
	set->sync_errors = false;
}

static void zkset_resync(struct zkset *set, const char *why)
{
	if (!set->zk || !set->path)
		return;
	sync_reset(set);
	set->needs_resync = false;
	/*
	 * Data watches must be armed again, so every child is read. Without
	 * them a child read before needs no new read: the list reads the new
	 * names, and its cversion tells when one was deleted and re-created.
	 */
	for (size_t i = 0; i < set->n_members; i++) {
		struct zkset_member *m = &set->members[i];
		m->stale = m->wanted && (set->pacing.watch_data || !m->loaded || m->stale);
	}
	phase_set(set, ZKSET_SYNCING, why);
	issue_list(set);
}

/*
 * A new session: read everything again — after a random delay within
 * resync_jitter when there is a last-known set to serve meanwhile, so that
 * a fleet whose sessions all expired together does not re-read together.
 */
static void zkset_resync_spread(struct zkset *set)
{
	uint64_t delay;

	if (!set->zk || !set->path)
		return;
	if (!set->pacing.resync_jitter_ms || !(set->n_members || set->pacing.serving)) {
		zkset_resync(set, "new session");
		return;
	}
	sync_reset(set);
	set->needs_resync = true;
	delay = zkset_delay_ms(set->pacing.resync_jitter_ms, false, rng_next(set->rng));
	delay_arm(set, delay, true);
	log_info("%s: new session; reading again in %llums (resync_jitter), serving the last-known "
		 "set meanwhile", set->label, (unsigned long long)delay);
}

static void delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zkset *set = arg;
	bool resync = set->delayed_resync;

	(void)fd;
	(void)what;
	set->delayed_resync = false;
	set->waiting_since_ms = 0;
	if (!set->zk || !set->path)
		return;
	if (resync) {
		if (zk_state(set->zk) == ZK_CONNECTED)
			zkset_resync(set, "new session (jittered)");
		return;
	}
	if (set->phase != ZKSET_IDLE && set->phase != ZKSET_BACKOFF)
		list_now(set, "children changed (coalesced)");
}

static void zkset_retry(void *arg)
{
	struct zkset *set = arg;

	if (!set->zk)
		return;
	if (zk_state(set->zk) != ZK_CONNECTED) {
		/* The session event will resync; leave BACKOFF so it may. */
		set->needs_resync = true;
		phase_set(set, ZKSET_IDLE, "waiting for the session");
		return;
	}
	zkset_resync(set, "retry");
}

/* ---------- the session ---------- */

/* The same session came back: read again what failed meanwhile. */
static void zkset_resume(struct zkset *set)
{
	if (set->delayed_resync && evtimer_pending(set->delay_ev, NULL))
		return;		/* the jittered resync of a new session is still due */
	if (set->needs_resync || set->phase == ZKSET_IDLE)
		zkset_resync(set, "session resumed");
}

/* The session expired: nothing outstanding survives; IDLE until the next session. */
static void zkset_expire(struct zkset *set)
{
	sync_reset(set);
	set->needs_resync = true;
	phase_set(set, ZKSET_IDLE, "session expired");
}

static void zkset_on_session(void *arg, enum zk_session_event ev)
{
	struct zkset *set = arg;

	switch (ev) {
	case ZK_SESSION_NEW:
		zkset_resync_spread(set);
		break;
	case ZK_SESSION_RESUMED:
		zkset_resume(set);
		break;
	case ZK_SESSION_EXPIRED:
		zkset_expire(set);
		break;
	case ZK_SESSION_LOST:
		break;
	}
}

/* A fired watch; paths that are not the set's own or its children's are ignored. */
static void zkset_on_watch(void *arg, enum zk_watch_event ev, const char *path)
{
	struct zkset *set = arg;
	const char *name;
	long i;

	if (!set->path || set->phase == ZKSET_IDLE || set->phase == ZKSET_BACKOFF)
		return;
	if (strcmp(path, set->path) == 0) {
		if (ev != ZK_WATCH_CHANGED)
			relist(set, ev == ZK_WATCH_CREATED   ? "path created"
				    : ev == ZK_WATCH_DELETED ? "path deleted"
							     : "children changed");
		return;
	}
	name = child_name(set, path);
	i = name ? member_find(set, name) : -1;
	if (i < 0 || !set->members[i].wanted)
		return;
	if (ev == ZK_WATCH_CHANGED) {
		phase_set(set, ZKSET_SYNCING, "instance data changed");
		issue_get(set, &set->members[i]);
		reads_pump(set);
	} else if (ev == ZK_WATCH_DELETED) {
		/*
		 * Not settled yet: one multi-delete fires one DELETED per child,
		 * and the owner's guard must see it as one change. The list
		 * (coalesced) says what is left.
		 */
		member_remove(set, (size_t)i);
		relist(set, "instance deleted");
	}
}

static const struct zk_observer zkset_observer = {
	.on_session = zkset_on_session,
	.on_watch = zkset_on_watch,
};

/* ---------- the API ---------- */

struct zkset *zkset_new(struct event_base *base, struct zk *zk, const char *label,
			struct rng *rng, uint64_t retry_cap_ms, const struct zkset_hooks *h,
			void *arg)
{
	struct zkset *set = xcalloc(1, sizeof(*set));

	set->label = xstrdup(label);
	set->zk = zk;
	set->hooks = h;
	set->arg = arg;
	set->rng = rng;
	set->pacing.watch_data = true;
	set->cversion = -1;
	set->delay_ev = evtimer_new(base, delay_cb, set);
	zkretry_init(&set->retry, base, rng, RETRY_BASE_MS, retry_cap_ms, zkset_retry, set);
	if (zk)
		zk_observe(zk, &zkset_observer, set);
	return set;
}

void zkset_free(struct zkset *set)
{
	if (!set)
		return;
	zkset_cancel(set);
	zkretry_fini(&set->retry);
	reads_clear(set);
	members_clear(set);
	event_free(set->delay_ev);
	free(set->members);
	free(set->path);
	free(set->label);
	free(set);
}

void zkset_start(struct zkset *set, const char *path, const char *why)
{
	free(set->path);
	set->path = xstrdup(path);
	set->needs_resync = true;
	if (!set->zk)
		return;
	if (zk_state(set->zk) == ZK_CONNECTED)
		zkset_resync(set, why);
	else if (set->phase != ZKSET_IDLE)
		phase_set(set, ZKSET_IDLE, "waiting for the session");
}

void zkset_reset(struct zkset *set, const char *why)
{
	sync_reset(set);
	members_clear(set);
	if (set->phase != ZKSET_IDLE)
		phase_set(set, ZKSET_IDLE, why);
	free(set->path);
	set->path = NULL;
}

void zkset_cancel(struct zkset *set)
{
	if (set->zk) {
		zk_unobserve(set->zk, set);
		zk_cancel(set->zk, set);
	}
	zkretry_cancel(&set->retry);
	delay_cancel(set);
}

bool zkset_current(const struct zkset *set)
{
	return !set->needs_resync &&
	       (set->phase == ZKSET_SYNCED || set->phase == ZKSET_ABSENT);
}

enum zkset_phase zkset_phase(const struct zkset *set)
{
	return set->phase;
}

const char *zkset_path(const struct zkset *set)
{
	return set->path;
}

const struct zkset_member *zkset_members(const struct zkset *set, size_t *n)
{
	*n = set->n_members;
	return set->members;
}

bool zkset_needs_resync(const struct zkset *set)
{
	return set->needs_resync;
}

uint64_t zkset_errors(const struct zkset *set)
{
	return set->errors_total;
}

void zkset_pace(struct zkset *set, const struct zkset_pacing *p)
{
	bool was_watching = set->pacing.watch_data;

	set->pacing = *p;
	/* Data watches turned on: the children read without one must be read (and watched). */
	if (p->watch_data && !was_watching && set->zk && set->path &&
	    zk_state(set->zk) == ZK_CONNECTED)
		zkset_resync(set, "watch_data on");
}

uint64_t zkset_waiting_ms(const struct zkset *set, uint64_t now)
{
	return set->waiting_since_ms && now > set->waiting_since_ms ? now - set->waiting_since_ms
								    : 0;
}

void zkset_counts(const struct zkset *set, uint64_t *lists, uint64_t *gets)
{
	*lists = set->lists_total;
	*gets = set->gets_total;
}

uint64_t zkset_delay_ms(uint64_t window_ms, bool coalesce, uint64_t random)
{
	if (!window_ms)
		return 0;
	/* Coalesce: the window, up to a quarter less; resync: anywhere in [0, window). */
	if (coalesce)
		return window_ms - random % (window_ms / 4 + 1);
	return random % window_ms;
}
