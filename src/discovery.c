/*
 * discovery — see discovery.h.
 *
 * Per service, two lifecycles, each with one transition function:
 *   - the watch phase (enum watch_phase, phase_set): what we are waiting for
 *     from ZooKeeper;
 *   - the public state (enum discovery_state, state_set): what the owner is
 *     told and the admin API shows.
 * A sync is: children (watch) -> data of every new or stale child (watch)
 * -> when nothing is outstanding, build the candidate view -> guard ->
 * deliver. Watch events restart the relevant part; completions find their
 * child again by path, so a child removed meanwhile is simply ignored.
 */
#include "discovery.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "util.h"
#include "zk.h"

#define RETRY_BASE_MS 1000
#define RETRY_CAP_MS 60000
#define DIFF_LOG_LINES 20		/* per-instance lines logged per change, then a summary */

enum watch_phase {
	PHASE_IDLE = 0,			/* no session, or not a ZooKeeper service: nothing asked */
	PHASE_SYNCING,			/* children or data reads outstanding */
	PHASE_ABSENT,			/* the path does not exist; an exists watch waits for it */
	PHASE_SYNCED,			/* everything read; the candidate went through the guard */
	PHASE_BACKOFF,			/* the path could not be read (ACL...); retry timer armed */
};

struct member {
	char *name;			/* owned; child znode name */
	bool loaded;			/* its data was read at least once */
	bool stale;			/* must be read again (new session, failed read) */
	enum instance_decode verdict;	/* of the last read */
	struct instance inst;		/* verdict OK or DISABLED */
	char reason[INSTANCE_REASON_MAX];	/* verdict DISABLED or BAD */
	int32_t version;		/* znode data version of the last read; -1 unknown */
	int32_t logged_version;		/* version whose skip was logged and counted; INT32_MIN none */
};

struct service {
	char *name;			/* owned */
	enum discovery_kind type;	/* curator, serverset or static */
	char *path;			/* owned; znode path, no trailing '/'; NULL for static */
	char *source;			/* owned; cache key "curator:/chroot/path[ tls]" */
	bool tls;			/* route to ssl_port instead of port */
	struct instance_guard_params params;	/* keep_last_known, collapse_guard/hold */
	struct discovery *d;		/* ref: owner */

	enum discovery_state state;	/* public; changed only by state_set */
	enum watch_phase phase;		/* changed only by phase_set */

	struct member *members;		/* owned; sorted by name */
	size_t n_members;		/* used entries */
	size_t cap_members;		/* allocated entries */
	bool list_inflight;		/* a children request is outstanding */
	bool relist_wanted;		/* a child event came meanwhile: list again after it */
	bool exists_inflight;		/* an exists request is outstanding */
	unsigned reads_inflight;	/* get requests outstanding */
	bool needs_resync;		/* a request failed on the connection: re-read on resume */
	bool sync_errors;		/* a non-connection error happened in this sync */
	uint32_t retry_attempt;		/* consecutive retries, drives backoff */

	struct instance *applied;	/* owned; last delivered view, sorted by id */
	size_t n_applied;		/* entries in applied */
	bool have_applied;		/* something was delivered (even an empty view) */
	bool initial_pending;		/* applied came from cache/static: deliver on the next turn */
	struct instance *candidate;	/* owned; the held collapse, or NULL */
	size_t n_candidate;		/* entries in candidate */
	struct instance_guard guard;	/* collapse hold state */
	bool keeping;			/* keep_last_known is refusing an empty view */
	size_t last_dups;		/* duplicate ids in the last candidate (logged on change) */

	struct event *hold_ev;		/* owned; fires at guard.hold_until_ms */
	struct event *retry_ev;		/* owned; backoff -> resync */
	struct event *kick_ev;		/* owned; deferred first delivery */

	struct discovery_stats stats;	/* counters; state and instances kept current */
	bool dead;			/* unwatched; in the graveyard until the loop turn ends */
	struct service *next;		/* d->services or d->graveyard */
};

struct discovery {
	struct event_base *base;	/* ref */
	struct zk *zk;			/* ref; NULL = no ZooKeeper */
	char *cache_dir;		/* owned; NULL = no cache */
	struct cache_writer *writer;	/* owned; NULL = no cache */
	char *chroot;			/* owned; "" when none; part of cache sources */
	const struct discovery_hooks *hooks;	/* ref */
	void *arg;			/* hooks' argument */
	struct service *services;	/* owned list */
	struct service *graveyard;	/* owned; unwatched, freed by reap_ev */
	struct event *reap_ev;		/* owned */
	struct rng rng;			/* retry jitter */
};

static void resync(struct service *s, const char *why);
static void maybe_publish(struct service *s);

/* ---------- names, lifecycles ---------- */

const char *discovery_state_name(enum discovery_state st)
{
	switch (st) {
	case DISCOVERY_PENDING: return "pending";
	case DISCOVERY_CACHED: return "cached";
	case DISCOVERY_CONNECTED: return "connected";
	case DISCOVERY_DISCONNECTED: return "disconnected";
	}
	return "?";
}

static const char *phase_name(enum watch_phase p)
{
	switch (p) {
	case PHASE_IDLE: return "idle";
	case PHASE_SYNCING: return "syncing";
	case PHASE_ABSENT: return "absent";
	case PHASE_SYNCED: return "synced";
	case PHASE_BACKOFF: return "backoff";
	}
	return "?";
}

static bool phase_allowed(enum watch_phase from, enum watch_phase to)
{
	switch (from) {
	case PHASE_IDLE:
		return to == PHASE_SYNCING || to == PHASE_BACKOFF;
	case PHASE_SYNCING:
	case PHASE_ABSENT:
	case PHASE_SYNCED:
		return true;
	case PHASE_BACKOFF:
		return to == PHASE_SYNCING || to == PHASE_IDLE;
	}
	return false;
}

static void phase_set(struct service *s, enum watch_phase to, const char *why)
{
	if (s->phase == to)
		return;
	if (!phase_allowed(s->phase, to)) {
		log_error("svc=%s: refused watch transition %s -> %s (%s)", s->name,
			  phase_name(s->phase), phase_name(to), why);
		return;
	}
	log_debug("svc=%s: watch %s -> %s (%s)", s->name, phase_name(s->phase), phase_name(to),
		  why);
	s->phase = to;
}

static bool state_allowed(enum discovery_state from, enum discovery_state to)
{
	switch (from) {
	case DISCOVERY_PENDING:
		return to == DISCOVERY_CACHED || to == DISCOVERY_CONNECTED;
	case DISCOVERY_CACHED:
		return to == DISCOVERY_CONNECTED;
	case DISCOVERY_CONNECTED:
		return to == DISCOVERY_DISCONNECTED;
	case DISCOVERY_DISCONNECTED:
		return to == DISCOVERY_CONNECTED;
	}
	return false;
}

/* The public state's transition function; silent when the move does not apply. */
static void state_set(struct service *s, enum discovery_state to, const char *why)
{
	struct discovery *d = s->d;

	if (s->state == to || !state_allowed(s->state, to) || s->dead)
		return;
	log_info("svc=%s: discovery %s -> %s (%s)", s->name, discovery_state_name(s->state),
		 discovery_state_name(to), why);
	s->state = to;
	s->stats.state = to;
	if (d->hooks->on_state)
		d->hooks->on_state(d->arg, s->name, to);
}

/* ---------- small helpers ---------- */

static bool is_zk_service(const struct service *s)
{
	return s->type == DISCOVERY_CURATOR || s->type == DISCOVERY_SERVERSET;
}

static bool conn_error(int rc)
{
	return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT || rc == ZSESSIONEXPIRED ||
	       rc == ZCLOSING || rc == ZINVALIDSTATE || rc == ZSESSIONMOVED;
}

static char *child_path(const struct service *s, const char *name)
{
	size_t a = strlen(s->path), b = strlen(name);
	bool root = strcmp(s->path, "/") == 0;
	char *p = xmalloc(a + b + 2);

	if (root)
		snprintf(p, b + 2, "/%s", name);
	else
		snprintf(p, a + b + 2, "%s/%s", s->path, name);
	return p;
}

/* The child name when path is a direct child of s->path, else NULL. */
static const char *child_name(const struct service *s, const char *path)
{
	size_t a = strcmp(s->path, "/") == 0 ? 0 : strlen(s->path);
	const char *name;

	if (strncmp(path, s->path, a) != 0 || path[a] != '/')
		return NULL;
	name = path + a + 1;
	if (!*name || strchr(name, '/'))
		return NULL;
	return name;
}

static bool wanted_child(const struct service *s, const char *name)
{
	return s->type != DISCOVERY_SERVERSET || strncmp(name, "member_", 7) == 0;
}

static long member_find(const struct service *s, const char *name)
{
	size_t lo = 0, hi = s->n_members;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->members[mid].name, name);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static void member_remove(struct service *s, size_t i)
{
	free(s->members[i].name);
	memmove(&s->members[i], &s->members[i + 1], (s->n_members - i - 1) * sizeof(*s->members));
	s->n_members--;
}

static void members_clear(struct service *s)
{
	for (size_t i = 0; i < s->n_members; i++)
		free(s->members[i].name);
	s->n_members = 0;
}

static bool views_equal(const struct instance *a, size_t na, const struct instance *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		if (!instance_same(&a[i], &b[i]))
			return false;
	}
	return true;
}

static void candidate_drop(struct service *s)
{
	free(s->candidate);
	s->candidate = NULL;
	s->n_candidate = 0;
	s->guard.state = INSTANCE_HOLD_IDLE;
	s->stats.holding = false;
	evtimer_del(s->hold_ev);
}

static void schedule_retry(struct service *s)
{
	struct timeval tv;
	uint64_t delay;

	if (evtimer_pending(s->retry_ev, NULL))
		return;
	delay = zk_backoff_ms(s->retry_attempt + 1, RETRY_BASE_MS, RETRY_CAP_MS,
			      rng_next(&s->d->rng));
	s->retry_attempt++;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)((delay % 1000) * 1000);
	evtimer_add(s->retry_ev, &tv);
	log_info("svc=%s: retrying in %llums", s->name, (unsigned long long)delay);
}

/* A request failed. Connection trouble waits for the session; the rest backs off. */
static void read_failed(struct service *s, int rc, const char *path, bool whole_service)
{
	if (conn_error(rc)) {
		s->needs_resync = true;
		/* No session event will follow if the session is up: retry ourselves. */
		if (s->d->zk && zk_state(s->d->zk) == ZK_CONNECTED)
			schedule_retry(s);
		return;
	}
	s->stats.errors_total++;
	s->sync_errors = true;
	if (rc == ZNOAUTH)
		log_error("svc=%s: no permission to read %s (ZNOAUTH): check its ACL and "
			  "zookeeper.auth", s->name, path);
	else
		log_error("svc=%s: reading %s failed: %s", s->name, path, zk_rc_name(rc));
	if (whole_service)
		phase_set(s, PHASE_BACKOFF, zk_rc_name(rc));
	schedule_retry(s);
}

/* ---------- requests and completions ---------- */

static void list_done(void *arg, const struct zk_result *r);
static void get_done(void *arg, const struct zk_result *r);
static void exists_done(void *arg, const struct zk_result *r);

static void issue_list(struct service *s)
{
	s->list_inflight = true;
	zk_children(s->d->zk, s->path, true, list_done, s);
}

static void issue_get(struct service *s, struct member *m)
{
	char *p = child_path(s, m->name);

	m->stale = false;
	s->reads_inflight++;
	zk_get(s->d->zk, p, true, get_done, s);
	free(p);
}

/* A child or existence event: list again (coalesced to one outstanding list). */
static void relist(struct service *s, const char *why)
{
	if (s->phase == PHASE_IDLE || s->phase == PHASE_BACKOFF)
		return;
	if (s->list_inflight) {
		s->relist_wanted = true;
		return;
	}
	phase_set(s, PHASE_SYNCING, why);
	issue_list(s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replace the member table by the listed children; read new and stale ones. */
static void merge_children(struct service *s, char *const *children, size_t n)
{
	const char **names = xcalloc(n ? n : 1, sizeof(*names));
	struct member *old = s->members;
	size_t n_old = s->n_members, k = 0, i = 0, j = 0;
	struct member *next;

	for (size_t x = 0; x < n; x++) {
		if (wanted_child(s, children[x]))
			names[k++] = children[x];
	}
	qsort(names, k, sizeof(*names), cmp_str);
	next = xcalloc(k ? k : 1, sizeof(*next));
	s->members = next;
	s->n_members = 0;
	s->cap_members = k ? k : 1;
	while (i < n_old || j < k) {
		int c = i == n_old ? 1 : j == k ? -1 : strcmp(old[i].name, names[j]);
		if (c < 0) {
			free(old[i].name);	/* gone */
			i++;
		} else if (c > 0) {
			struct member *m = &next[s->n_members++];
			memset(m, 0, sizeof(*m));
			m->name = xstrdup(names[j]);
			m->version = -1;
			m->logged_version = INT32_MIN;
			m->stale = true;
			j++;
		} else {
			next[s->n_members++] = old[i];
			i++;
			j++;
		}
	}
	free(old);
	free(names);
	for (size_t x = 0; x < s->n_members; x++) {
		if (s->members[x].stale)
			issue_get(s, &s->members[x]);
	}
}

static void list_done(void *arg, const struct zk_result *r)
{
	struct service *s = arg;

	s->list_inflight = false;
	if (r->rc == ZOK) {
		merge_children(s, r->children, r->n_children);
		if (s->relist_wanted) {
			s->relist_wanted = false;
			issue_list(s);
		}
	} else if (r->rc == ZNONODE) {
		s->relist_wanted = false;
		members_clear(s);
		s->exists_inflight = true;
		zk_exists(s->d->zk, s->path, true, exists_done, s);
	} else {
		read_failed(s, r->rc, s->path, true);
	}
	maybe_publish(s);
}

static void exists_done(void *arg, const struct zk_result *r)
{
	struct service *s = arg;

	s->exists_inflight = false;
	if (r->rc == ZOK) {
		relist(s, "path appeared");
	} else if (r->rc == ZNONODE) {
		if (s->phase != PHASE_ABSENT)
			log_info("svc=%s: %s does not exist; waiting for it", s->name, s->path);
		members_clear(s);
		phase_set(s, PHASE_ABSENT, "path missing");
	} else {
		read_failed(s, r->rc, s->path, true);
	}
	maybe_publish(s);
}

/* Log and count a skipped child once per version of its data. */
static void note_skip(struct service *s, struct member *m)
{
	if (m->logged_version == m->version)
		return;
	m->logged_version = m->version;
	if (m->verdict == INSTANCE_BAD) {
		s->stats.bad_instances_total++;
		log_warn("svc=%s node=%s skipped: %s", s->name, m->name, m->reason);
	} else {
		log_info("svc=%s node=%s not routed: %s", s->name, m->name, m->reason);
	}
}

static void get_done(void *arg, const struct zk_result *r)
{
	struct service *s = arg;
	const char *name = child_name(s, r->path);
	long i = name ? member_find(s, name) : -1;
	struct member *m;

	if (s->reads_inflight)
		s->reads_inflight--;
	if (i < 0) {
		maybe_publish(s);	/* removed meanwhile */
		return;
	}
	m = &s->members[i];
	if (r->rc == ZOK) {
		m->loaded = true;
		m->version = r->stat ? r->stat->version : -1;
		if (s->type == DISCOVERY_SERVERSET)
			m->verdict = instance_decode_serverset(r->data, r->data_len, &m->inst,
							       m->reason, sizeof(m->reason));
		else
			m->verdict = instance_decode_curator(m->name, r->data, r->data_len,
							     &m->inst, m->reason,
							     sizeof(m->reason));
		if (m->verdict == INSTANCE_OK) {
			uint16_t port = s->tls ? m->inst.ssl_port : m->inst.port;
			if (port == 0) {
				m->verdict = INSTANCE_BAD;
				snprintf(m->reason, sizeof(m->reason), "%s",
					 s->tls ? "no sslPort, and the service uses tls"
						: "no port (only sslPort), and the service has no tls");
			}
		}
		if (m->verdict != INSTANCE_OK)
			note_skip(s, m);
	} else if (r->rc == ZNONODE) {
		member_remove(s, (size_t)i);
	} else if (r->rc == ZNOAUTH) {
		/* One unreadable child costs that child, not the service. */
		m->loaded = true;
		m->verdict = INSTANCE_BAD;
		snprintf(m->reason, sizeof(m->reason), "no read permission (ACL)");
		note_skip(s, m);
		read_failed(s, r->rc, r->path, false);
	} else {
		m->stale = true;
		read_failed(s, r->rc, r->path, false);
	}
	maybe_publish(s);
}

/* ---------- views: build, guard, deliver ---------- */

static void deliver(struct service *s)
{
	struct discovery *d = s->d;

	s->initial_pending = false;
	s->stats.updates_total++;
	s->stats.last_update_ms = wall_ms();
	s->stats.instances = s->n_applied;
	d->hooks->on_view(d->arg, s->name, s->applied, s->n_applied);
}

struct diff_log {
	const char *svc;		/* ref */
	size_t lines;			/* per-instance lines logged so far */
};

static void diff_line(void *arg, enum instance_change ch, const struct instance *o,
		      const struct instance *n)
{
	struct diff_log *dl = arg;
	const struct instance *i = n ? n : o;
	char ep[INSTANCE_HOST_MAX + 8];

	if (ch == INSTANCE_KEPT || dl->lines++ >= DIFF_LOG_LINES)
		return;
	instance_endpoint(i->host, i->port ? i->port : i->ssl_port, ep, sizeof(ep));
	log_info("svc=%s %s id=%s be=%s", dl->svc,
		 ch == INSTANCE_ADDED ? "added" : ch == INSTANCE_REMOVED ? "removed" : "changed",
		 i->id, ep);
}

/* Take ownership of view and make it the applied one. */
static void apply(struct service *s, struct instance *view, size_t n)
{
	struct discovery *d = s->d;
	struct diff_log dl = { .svc = s->name };
	struct instance_diff diff;

	instance_diff(s->applied, s->n_applied, view, n, &diff, diff_line, &dl);
	log_info("svc=%s: applying %zu instances (+%zu -%zu ~%zu)", s->name, n, diff.added,
		 diff.removed, diff.changed);
	free(s->applied);
	s->applied = view;
	s->n_applied = n;
	s->have_applied = true;
	s->keeping = false;
	deliver(s);
	if (s->dead)
		return;
	if (d->writer && is_zk_service(s) && cache_name_ok(s->name))
		cache_writer_put(d->writer, s->name, s->source, s->applied, s->n_applied);
}

static void arm_hold(struct service *s, uint64_t now)
{
	uint64_t left = s->guard.hold_until_ms > now ? s->guard.hold_until_ms - now : 0;
	struct timeval tv = { .tv_sec = (time_t)(left / 1000),
			      .tv_usec = (suseconds_t)((left % 1000) * 1000) };

	evtimer_add(s->hold_ev, &tv);
}

/* Run a candidate (owned) through the guard. */
static void evaluate(struct service *s, struct instance *view, size_t n)
{
	uint64_t now = now_ms(), holds = s->guard.holds_total;
	size_t n_applied = s->have_applied ? s->n_applied : 0;
	enum instance_verdict v;
	char dur[32];

	if (s->have_applied && views_equal(s->applied, s->n_applied, view, n)) {
		if (s->candidate)
			log_info("svc=%s: held change withdrawn; view unchanged", s->name);
		candidate_drop(s);
		s->keeping = false;
		free(view);
		return;
	}
	v = instance_guard_step(&s->guard, &s->params, n_applied, n, now);
	switch (v) {
	case INSTANCE_APPLY:
		if (s->candidate && view != s->candidate)
			free(s->candidate);
		s->candidate = NULL;
		s->n_candidate = 0;
		s->stats.holding = false;
		evtimer_del(s->hold_ev);
		apply(s, view, n);
		break;
	case INSTANCE_KEEP:
		if (!s->keeping) {
			s->stats.kept_total++;
			log_warn("svc=%s: ZooKeeper lists no usable instance; keeping the %zu "
				 "last-known (keep_last_known)", s->name, s->n_applied);
		}
		s->keeping = true;
		if (view == s->candidate)
			s->candidate = NULL;
		candidate_drop(s);
		free(view);
		break;
	case INSTANCE_HOLD:
		if (s->guard.holds_total != holds) {
			s->stats.held_total++;
			duration_format(s->params.collapse_hold_ms, dur, sizeof(dur));
			log_warn("svc=%s: a change to %zu instances (serving %zu) is a collapse "
				 "(collapse_guard %.2f); holding it for %s", s->name, n, n_applied,
				 s->params.collapse_guard, dur);
		}
		if (s->candidate != view)
			free(s->candidate);
		s->candidate = view;
		s->n_candidate = n;
		s->stats.holding = true;
		s->keeping = false;
		arm_hold(s, now);
		break;
	}
}

/* When nothing is outstanding, turn the member table into a candidate view. */
static void maybe_publish(struct service *s)
{
	struct instance *view;
	size_t n = 0, dups = 0, skipped = 0;

	if (s->dead || s->list_inflight || s->relist_wanted || s->exists_inflight ||
	    s->reads_inflight)
		return;
	if (s->phase != PHASE_SYNCING && s->phase != PHASE_SYNCED && s->phase != PHASE_ABSENT)
		return;
	for (size_t i = 0; i < s->n_members; i++) {
		if (!s->members[i].loaded)
			return;		/* a first read failed: wait for the resync */
	}
	view = xcalloc(s->n_members ? s->n_members : 1, sizeof(*view));
	for (size_t i = 0; i < s->n_members; i++) {
		if (s->members[i].verdict == INSTANCE_OK)
			view[n++] = s->members[i].inst;
		else
			skipped++;
	}
	instance_sort(view, n);
	/* ServerSet ids are endpoints: two members may announce the same one. */
	for (size_t i = 1, w = 1; i <= n; i++) {
		if (i == n) {
			dups = n - w;
			n = w;
			break;
		}
		if (strcmp(view[i].id, view[w - 1].id) != 0)
			view[w++] = view[i];
	}
	if (dups != s->last_dups) {
		if (dups > s->last_dups)
			s->stats.bad_instances_total += dups - s->last_dups;
		if (dups)
			log_warn("svc=%s: %zu duplicate endpoint(s) skipped", s->name, dups);
		s->last_dups = dups;
	}
	s->stats.skipped = skipped + dups;
	if (s->phase == PHASE_SYNCING)
		phase_set(s, PHASE_SYNCED, "all read");
	if (!s->sync_errors)
		s->retry_attempt = 0;
	evaluate(s, view, n);
	if (s->dead)
		return;
	if (s->d->zk && zk_state(s->d->zk) == ZK_CONNECTED && !s->needs_resync)
		state_set(s, DISCOVERY_CONNECTED, "in sync with ZooKeeper");
}

/* ---------- timers ---------- */

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct service *s = arg;

	(void)fd;
	(void)what;
	if (!s->candidate || s->dead)
		return;
	log_info("svc=%s: collapse still holds after the hold time", s->name);
	evaluate(s, s->candidate, s->n_candidate);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct service *s = arg;

	(void)fd;
	(void)what;
	if (s->dead || !s->d->zk)
		return;
	if (zk_state(s->d->zk) != ZK_CONNECTED) {
		/* The session event will resync; leave BACKOFF so it may. */
		s->needs_resync = true;
		phase_set(s, PHASE_IDLE, "waiting for the session");
		return;
	}
	resync(s, "retry");
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct service *s = arg;

	(void)fd;
	(void)what;
	if (s->dead)
		return;
	if (s->initial_pending) {
		deliver(s);
		if (s->dead)
			return;
	}
	if (s->type == DISCOVERY_STATIC)
		state_set(s, DISCOVERY_CONNECTED, "static backends");
	else if (s->have_applied)
		state_set(s, DISCOVERY_CACHED, "loaded from cache_dir");
}

static void reap_cb(evutil_socket_t fd, short what, void *arg);

/* ---------- sync control ---------- */

/* Drop every outstanding request of s; their completions never run. */
static void sync_reset(struct service *s)
{
	if (s->d->zk)
		zk_cancel(s->d->zk, s);
	evtimer_del(s->retry_ev);
	s->list_inflight = false;
	s->relist_wanted = false;
	s->exists_inflight = false;
	s->reads_inflight = 0;
	s->sync_errors = false;
}

/* Forget what is in flight and read everything again (watches re-armed). */
static void resync(struct service *s, const char *why)
{
	if (!is_zk_service(s) || !s->d->zk || s->dead)
		return;
	sync_reset(s);
	s->needs_resync = false;
	for (size_t i = 0; i < s->n_members; i++)
		s->members[i].stale = true;
	phase_set(s, PHASE_SYNCING, why);
	issue_list(s);
}

static void on_session(void *arg, enum zk_session_event ev)
{
	struct discovery *d = arg;

	/* A hook may unwatch services meanwhile: they stay readable, marked dead. */
	for (struct service *s = d->services; s; s = s->next) {
		if (!is_zk_service(s) || s->dead)
			continue;
		switch (ev) {
		case ZK_SESSION_NEW:
			resync(s, "new session");
			break;
		case ZK_SESSION_RESUMED:
			if (s->needs_resync || s->phase == PHASE_IDLE)
				resync(s, "session resumed");
			else if (s->phase == PHASE_SYNCED || s->phase == PHASE_ABSENT)
				state_set(s, DISCOVERY_CONNECTED, "session resumed");
			break;
		case ZK_SESSION_LOST:
		case ZK_SESSION_EXPIRED:
			/* While ZooKeeper is away the view never changes, not even a held collapse. */
			if (s->candidate)
				log_info("svc=%s: dropping the held change: ZooKeeper lost",
					 s->name);
			candidate_drop(s);
			if (ev == ZK_SESSION_EXPIRED) {
				sync_reset(s);
				s->needs_resync = true;
				phase_set(s, PHASE_IDLE, "session expired");
			}
			state_set(s, DISCOVERY_DISCONNECTED,
				  ev == ZK_SESSION_LOST ? "ZooKeeper connection lost"
							: "ZooKeeper session expired");
			break;
		}
	}
}

static void on_watch(void *arg, enum zk_watch_event ev, const char *path)
{
	struct discovery *d = arg;

	for (struct service *s = d->services; s; s = s->next) {
		const char *name;
		long i;

		if (!is_zk_service(s) || s->dead || s->phase == PHASE_IDLE ||
		    s->phase == PHASE_BACKOFF)
			continue;
		if (strcmp(path, s->path) == 0) {
			if (ev != ZK_WATCH_CHANGED)
				relist(s, ev == ZK_WATCH_CREATED   ? "path created"
					  : ev == ZK_WATCH_DELETED ? "path deleted"
								   : "children changed");
			continue;
		}
		name = child_name(s, path);
		if (!name || !wanted_child(s, name))
			continue;
		i = member_find(s, name);
		if (i < 0)
			continue;
		if (ev == ZK_WATCH_CHANGED) {
			phase_set(s, PHASE_SYNCING, "instance data changed");
			issue_get(s, &s->members[i]);
		} else if (ev == ZK_WATCH_DELETED) {
			/*
			 * Not published yet: one multi-delete fires one DELETED per
			 * child, and the guard must see it as one change. The list
			 * (coalesced) says what is left.
			 */
			member_remove(s, (size_t)i);
			relist(s, "instance deleted");
		}
	}
}

static const struct zk_listener discovery_listener = {
	.on_session = on_session,
	.on_watch = on_watch,
};

/* ---------- public API ---------- */

struct discovery *discovery_new(struct event_base *base, struct zk *zk, const struct config *cfg,
				const struct discovery_hooks *h, void *arg)
{
	struct discovery *d = xcalloc(1, sizeof(*d));

	d->base = base;
	d->zk = zk;
	d->cache_dir = cfg->cache_dir ? xstrdup(cfg->cache_dir) : NULL;
	d->writer = d->cache_dir ? cache_writer_new(d->cache_dir) : NULL;
	d->chroot = xstrdup(cfg->zookeeper.hosts ? zk_chroot_of(cfg->zookeeper.hosts) : "");
	d->hooks = h;
	d->arg = arg;
	d->reap_ev = evtimer_new(base, reap_cb, d);
	rng_seed(&d->rng, now_us() ^ 0x9e3779b97f4a7c15ull);
	if (zk)
		zk_listen(zk, &discovery_listener, d);
	return d;
}

static struct service *find_service(const struct discovery *d, const char *name)
{
	for (struct service *s = d->services; s; s = s->next) {
		if (strcmp(s->name, name) == 0)
			return s;
	}
	return NULL;
}

static void params_from_conf(struct instance_guard_params *p, const struct discovery_conf *c)
{
	p->keep_last_known = c->keep_last_known;
	p->collapse_guard = c->collapse_guard;
	p->collapse_hold_ms = c->collapse_hold_ms;
}

/* The cache key: kind, absolute server-side path (chroot included), tls. */
static char *source_of(const struct discovery *d, const struct service_conf *svc, const char *path)
{
	bool root_in_chroot = d->chroot[0] && strcmp(path, "/") == 0;
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s:%s%s%s", discovery_kind_name(svc->discovery.type),
		 d->chroot, root_in_chroot ? "" : path, svc->tls.enabled ? " tls" : "");
	return xstrdup(buf);
}

/* "/a/b/" -> "/a/b"; NULL for a path that is not absolute. */
static char *path_normalize(const char *p)
{
	size_t n;
	char *s;

	if (!p || p[0] != '/')
		return NULL;
	s = xstrdup(p);
	n = strlen(s);
	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

static void load_cache(struct service *s)
{
	struct discovery *d = s->d;
	struct instance *v = NULL;
	uint64_t written = 0;
	char err[512];
	size_t n = 0;
	int rc;

	if (!d->cache_dir)
		return;
	if (!cache_name_ok(s->name)) {
		log_warn("svc=%s: the name cannot be a file name; not cached", s->name);
		return;
	}
	rc = cache_load(d->cache_dir, s->name, s->source, &v, &n, &written, err, sizeof(err));
	if (rc == -ENOENT)
		return;
	if (rc == -ESTALE) {
		log_info("svc=%s: cache not used: %s", s->name, err);
		return;
	}
	if (rc < 0) {
		log_warn("svc=%s: ignoring the cache: %s", s->name, err);
		return;
	}
	log_info("svc=%s: %zu instances from the cache (written %llus ago)", s->name, n,
		 (unsigned long long)(written && wall_ms() > written ? (wall_ms() - written) / 1000
								     : 0));
	s->applied = v;
	s->n_applied = n;
	s->have_applied = true;
	s->initial_pending = true;
}

static void build_static(struct service *s, const struct discovery_conf *c)
{
	struct instance *v = xcalloc(c->n_backends ? c->n_backends : 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < c->n_backends; i++) {
		const struct static_backend *b = &c->backends[i];
		struct instance *x = &v[n];
		if (strlen(b->host) >= sizeof(x->host) || b->port == 0)
			continue;
		instance_endpoint(b->host, b->port, x->id, sizeof(x->id));
		if (instance_find(v, n, x->id) >= 0)
			continue;
		snprintf(x->host, sizeof(x->host), "%s", b->host);
		x->port = b->port;
		x->ssl_port = s->tls ? b->port : 0;
		x->weight = b->weight ? b->weight : 1;
		x->enabled = true;
		n++;
		instance_sort(v, n);
	}
	free(s->applied);
	s->applied = v;
	s->n_applied = n;
	s->have_applied = true;
	s->initial_pending = true;
}

int discovery_watch(struct discovery *d, const struct service_conf *svc)
{
	const struct discovery_conf *c = &svc->discovery;
	struct service *s = find_service(d, svc->name);
	char *path = NULL, *source = NULL;
	bool fresh = !s;

	if (c->type != DISCOVERY_STATIC) {
		path = path_normalize(c->path);
		if (!path) {
			log_error("svc=%s: discovery.path must be an absolute znode path",
				  svc->name);
			return -EINVAL;
		}
		source = source_of(d, svc, path);
	}
	if (s) {
		bool same = s->type == c->type && s->tls == svc->tls.enabled &&
			    ((!path && !s->path) || (path && s->path && !strcmp(path, s->path)));
		params_from_conf(&s->params, c);
		if (same && c->type != DISCOVERY_STATIC) {
			free(path);
			free(source);
			return 0;
		}
		/* A new source: restart the watch; the last view serves meanwhile. */
		sync_reset(s);
		candidate_drop(s);
		members_clear(s);
		if (s->phase != PHASE_IDLE)
			phase_set(s, PHASE_IDLE, "source changed");
		free(s->path);
		free(s->source);
	} else {
		s = xcalloc(1, sizeof(*s));
		s->name = xstrdup(svc->name);
		s->d = d;
		s->hold_ev = evtimer_new(d->base, hold_cb, s);
		s->retry_ev = evtimer_new(d->base, retry_cb, s);
		s->kick_ev = evtimer_new(d->base, kick_cb, s);
		params_from_conf(&s->params, c);
		s->next = d->services;
		d->services = s;
	}
	s->type = c->type;
	s->tls = svc->tls.enabled;
	s->path = path;
	s->source = source;
	s->guard.state = INSTANCE_HOLD_IDLE;

	if (c->type == DISCOVERY_STATIC) {
		build_static(s, c);
	} else {
		if (fresh)
			load_cache(s);
		s->needs_resync = true;
		if (!d->zk)
			log_error("svc=%s: %s discovery needs a zookeeper: section; serving the "
				  "cache only", s->name, discovery_kind_name(c->type));
		else if (zk_state(d->zk) == ZK_CONNECTED)
			resync(s, fresh ? "watch" : "source changed");
		else if (s->phase != PHASE_IDLE)
			phase_set(s, PHASE_IDLE, "waiting for the session");
	}
	if (s->initial_pending) {
		struct timeval zero = { 0, 0 };
		evtimer_add(s->kick_ev, &zero);
	}
	return 0;
}

static void service_free(struct service *s)
{
	event_free(s->hold_ev);
	event_free(s->retry_ev);
	event_free(s->kick_ev);
	members_clear(s);
	free(s->members);
	free(s->applied);
	free(s->candidate);
	free(s->name);
	free(s->path);
	free(s->source);
	free(s);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct discovery *d = arg;

	(void)fd;
	(void)what;
	while (d->graveyard) {
		struct service *s = d->graveyard;
		d->graveyard = s->next;
		service_free(s);
	}
}

void discovery_unwatch(struct discovery *d, const char *service)
{
	struct timeval zero = { 0, 0 };
	struct service **pp = &d->services;

	while (*pp && strcmp((*pp)->name, service) != 0)
		pp = &(*pp)->next;
	if (!*pp)
		return;
	struct service *s = *pp;
	*pp = s->next;
	s->dead = true;
	if (d->zk)
		zk_cancel(d->zk, s);
	evtimer_del(s->hold_ev);
	evtimer_del(s->retry_ev);
	evtimer_del(s->kick_ev);
	/* It may be running one of its own callbacks: free it after this loop turn. */
	s->next = d->graveyard;
	d->graveyard = s;
	evtimer_add(d->reap_ev, &zero);
}

void discovery_free(struct discovery *d)
{
	if (!d)
		return;
	if (d->zk)
		zk_unlisten(d->zk, d);
	while (d->services)
		discovery_unwatch(d, d->services->name);
	reap_cb(-1, 0, d);
	event_free(d->reap_ev);
	cache_writer_free(d->writer);
	free(d->cache_dir);
	free(d->chroot);
	free(d);
}

bool discovery_stats(const struct discovery *d, const char *service, struct discovery_stats *out)
{
	const struct service *s = find_service(d, service);

	if (!s)
		return false;
	*out = s->stats;
	out->state = s->state;
	out->instances = s->n_applied;
	return true;
}

const struct instance *discovery_view(const struct discovery *d, const char *service, size_t *n)
{
	const struct service *s = find_service(d, service);

	*n = 0;
	if (!s || !s->have_applied)
		return NULL;
	*n = s->n_applied;
	return s->applied;
}
