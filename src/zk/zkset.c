/*
 * zkset — see zkset.h.
 *
 * A sync is: children (watch) -> data of every new or stale wanted child
 * (watch) -> when nothing is outstanding, on_settled. Watch events restart
 * the relevant part; completions find their child again by path, so a child
 * removed meanwhile is simply ignored. Every request carries the set as its
 * zk argument, so zk_cancel(zk, set) drops all of them at once.
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

struct zkset {
	char *label;			/* owned; log prefix, e.g. "svc=web" */
	struct zk *zk;			/* ref; NULL = no ZooKeeper: never reads */
	const struct zkset_hooks *hooks;	/* ref */
	void *arg;			/* hooks' argument */

	char *path;			/* owned; znode path, no trailing '/'; NULL = not started */
	enum zkset_phase phase;		/* changed only by phase_set */

	struct zkset_member *members;	/* owned; sorted by name */
	size_t n_members;		/* used entries */
	bool list_inflight;		/* a children request is outstanding */
	bool relist_wanted;		/* a child event came meanwhile: list again after it */
	bool exists_inflight;		/* an exists request is outstanding */
	unsigned reads_inflight;	/* get requests outstanding */
	bool needs_resync;		/* a request failed on the connection: re-read on resume */
	bool sync_errors;		/* a non-connection error happened in this sync */
	struct zkretry retry;		/* owned; backoff -> resync */

	uint64_t errors_total;		/* read errors other than connection loss */
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
	return m ? (long)(m - set->members) : -1;
}

static void member_forget(struct zkset *set, struct zkset_member *m)
{
	if (set->hooks->forget)
		set->hooks->forget(set->arg, m);
	m->priv = NULL;
	free(m->name);
}

static void member_remove(struct zkset *set, size_t i)
{
	member_forget(set, &set->members[i]);
	memmove(&set->members[i], &set->members[i + 1],
		(set->n_members - i - 1) * sizeof(*set->members));
	set->n_members--;
}

static void members_clear(struct zkset *set)
{
	for (size_t i = 0; i < set->n_members; i++)
		member_forget(set, &set->members[i]);
	set->n_members = 0;
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
	    set->reads_inflight)
		return;
	if (set->phase != ZKSET_SYNCING && set->phase != ZKSET_SYNCED &&
	    set->phase != ZKSET_ABSENT)
		return;
	for (size_t i = 0; i < set->n_members; i++) {
		if (!set->members[i].loaded)
			return;		/* a first read failed: wait for the resync */
	}
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
	zk_children(set->zk, set->path, true, list_done, set);
}

static void issue_get(struct zkset *set, struct zkset_member *m)
{
	char *p = child_path(set, m->name);

	m->stale = false;
	set->reads_inflight++;
	zk_get(set->zk, p, true, get_done, set);
	free(p);
}

/* A child or existence event: list again (coalesced to one outstanding list). */
static void relist(struct zkset *set, const char *why)
{
	if (set->phase == ZKSET_IDLE || set->phase == ZKSET_BACKOFF)
		return;
	if (set->list_inflight) {
		set->relist_wanted = true;
		return;
	}
	phase_set(set, ZKSET_SYNCING, why);
	issue_list(set);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replace the member table by the listed children; read new and stale ones. */
static void merge_children(struct zkset *set, char *const *children, size_t n)
{
	const char **names = xcalloc(n ? n : 1, sizeof(*names));
	struct zkset_member *old = set->members;
	size_t n_old = set->n_members, k = 0, i = 0, j = 0;
	struct zkset_member *next;

	for (size_t x = 0; x < n; x++)
		names[k++] = children[x];
	qsort(names, k, sizeof(*names), cmp_str);
	next = xcalloc(k ? k : 1, sizeof(*next));
	set->members = next;
	set->n_members = 0;
	while (i < n_old || j < k) {
		int c = i == n_old ? 1 : j == k ? -1 : strcmp(old[i].name, names[j]);
		if (c < 0) {
			member_forget(set, &old[i]);	/* gone */
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
			j++;
		} else {
			next[set->n_members++] = old[i];
			i++;
			j++;
		}
	}
	free(old);
	free(names);
	for (size_t x = 0; x < set->n_members; x++) {
		if (set->members[x].wanted && set->members[x].stale)
			issue_get(set, &set->members[x]);
	}
}

static void list_done(void *arg, const struct zk_result *r)
{
	struct zkset *set = arg;

	set->list_inflight = false;
	if (r->rc == ZOK) {
		merge_children(set, r->children, r->n_children);
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
	if (i < 0) {
		settle(set);	/* removed meanwhile */
		return;
	}
	m = &set->members[i];
	if (r->rc == ZOK) {
		m->loaded = true;
		m->version = r->stat ? r->stat->version : -1;
		set->hooks->on_read(set->arg, m, ZOK, r->data, r->data_len);
	} else if (r->rc == ZNONODE) {
		member_remove(set, (size_t)i);
	} else if (r->rc == ZNOAUTH) {
		/* One unreadable child costs that child, not the set. */
		m->loaded = true;
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
	for (size_t i = 0; i < set->n_members; i++)
		set->members[i].stale = set->members[i].wanted;
	phase_set(set, ZKSET_SYNCING, why);
	issue_list(set);
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
		zkset_resync(set, "new session");
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
	members_clear(set);
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
