/*
 * discovery — see discovery.h. This file is the per-service view side:
 * decode each child the service's zkset reads (zkset.h: the children, their
 * data, the watches, the retries) into an instance, build the candidate
 * view, run it through the guard, deliver it and hand it to the cache
 * writer; plus static services, the cache read at start and the public
 * state.
 *
 * Per service, two lifecycles, each with one transition function:
 *   - the zkset's phase (zkset.h): what we are waiting for from ZooKeeper;
 *   - the public state (enum discovery_state, state_set): what the owner is
 *     told and the admin API shows.
 * Each zkset observes the session and its watches itself; one discovery
 * observer moves the public state of every service on session events.
 */
#include "discovery.h"
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "util.h"
#include "utf8.h"
#include "zk.h"
#include "zkset.h"

#define DIFF_LOG_LINES 20		/* per-instance lines logged per change, then a summary */
#define READ_RETRY_CAP_MS 60000		/* unreadable service paths are retried up to every minute */

/* What the last read of a child makes of it. */
enum child_fate {
	CHILD_ROUTED = 0,		/* an instance with the port the service uses */
	CHILD_DISABLED,			/* well-formed, not routed on purpose (enabled:false, not ALIVE) */
	CHILD_UNROUTABLE,		/* well-formed, but no port this service can use */
	CHILD_BAD,			/* malformed or unreadable */
};

/* What a child of a service's path says, decoded (a zkset member's priv). */
struct watched_child {
	enum child_fate fate;		/* of the last read */
	struct instance inst;		/* fate ROUTED, DISABLED or UNROUTABLE */
	char reason[INSTANCE_REASON_MAX];	/* fate other than ROUTED */
	int32_t logged_version;		/* version whose skip was logged and counted; INT32_MIN none */
	bool duplicate;			/* ROUTED, but another node of its id is kept (on_settled) */
	int32_t dup_logged_version;	/* version whose drop as a duplicate was logged; INT32_MIN none */
};

struct watched_service {
	char *name;			/* owned */
	enum discovery_kind type;	/* curator, serverset or static */
	char *source;			/* owned; cache key "curator:/chroot/path[ tls]"; NULL for static */
	bool tls;			/* route to ssl_port instead of port */
	struct instance_guard_params params;	/* keep_last_known, collapse_guard/hold */
	struct discovery *d;		/* ref: owner */

	enum discovery_state state;	/* public; changed only by state_set */
	struct zkset *set;		/* owned; reads path (curator, serverset) */

	struct instance *applied;	/* owned; last delivered view, sorted by id */
	size_t n_applied;		/* entries in applied */
	bool have_applied;		/* something was delivered (even an empty view) */
	bool initial_pending;		/* applied came from cache/static: deliver on the next turn */
	struct instance *candidate;	/* owned; the held collapse, or NULL */
	size_t n_candidate;		/* entries in candidate */
	struct instance_guard guard;	/* collapse hold state */
	bool keeping;			/* keep_last_known is refusing an empty view */
	bool hold_end_pending;		/* a hold ended without applying: tell the owner (kick_ev) */

	struct event *hold_ev;		/* owned; fires at guard.hold_until_ms */
	struct event *kick_ev;		/* owned; deferred first delivery */

	struct discovery_stats stats;	/* counters; state and instances kept current */
	uint64_t bad_children_total;	/* malformed children, once per node version */
	bool dead;			/* unwatched; in the graveyard until the loop turn ends */
	struct watched_service *next;		/* d->services or d->graveyard */
};

struct discovery {
	struct event_base *base;	/* ref */
	struct zk *zk;			/* ref; NULL = no ZooKeeper */
	char *cache_dir;		/* owned; NULL = no cache */
	struct cache_writer *writer;	/* owned; NULL = no cache */
	char *chroot;			/* owned; "" when none; part of cache sources */
	const struct discovery_hooks *hooks;	/* ref */
	void *arg;			/* hooks' argument */
	struct watched_service *services;	/* owned list */
	struct watched_service *graveyard;	/* owned; unwatched, freed by reap_ev */
	struct event *reap_ev;		/* owned */
	struct rng rng;			/* retry jitter */
};

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
static void state_set(struct watched_service *s, enum discovery_state to, const char *why)
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

static bool is_zk_service(const struct watched_service *s)
{
	return s->type == DISCOVERY_CURATOR || s->type == DISCOVERY_SERVERSET;
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

/* Drop the held change (if any) without applying it; the owner hears of it after this turn. */
static void candidate_drop(struct watched_service *s)
{
	if (s->stats.holding && !s->dead) {
		struct timeval zero = { 0, 0 };
		s->hold_end_pending = true;
		evtimer_add(s->kick_ev, &zero);
	}
	free(s->candidate);
	s->candidate = NULL;
	s->n_candidate = 0;
	s->guard.state = INSTANCE_HOLD_IDLE;
	s->stats.holding = false;
	evtimer_del(s->hold_ev);
}

/* ---------- views: build, guard, deliver ---------- */

static void deliver(struct watched_service *s)
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
static void apply(struct watched_service *s, struct instance *view, size_t n)
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

static void arm_hold(struct watched_service *s, uint64_t now)
{
	struct timeval tv = timeval_from_ms(s->guard.hold_until_ms > now
						    ? s->guard.hold_until_ms - now
						    : 0);

	evtimer_add(s->hold_ev, &tv);
}

/* Run a candidate (owned) through the guard. */
static void evaluate(struct watched_service *s, struct instance *view, size_t n)
{
	struct discovery *d = s->d;
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
		if (d->hooks->on_hold)
			d->hooks->on_hold(d->arg, s->name, true, s->candidate, s->n_candidate,
					  s->guard.hold_until_ms);
		break;
	}
}

/* A routed child and its node name, for keeping one node per id. */
struct routed_node {
	struct watched_child *c;	/* ref: a zkset member's priv */
	const char *node;		/* ref: its name */
};

static int routed_cmp(const void *a, const void *b)
{
	const struct routed_node *x = a, *y = b;

	return instance_cmp_nodes(&x->c->inst, x->node, &y->c->inst, y->node);
}

/*
 * Several nodes with one id (Curator re-creates a DYNAMIC_SEQUENTIAL node
 * after a reconnect while the old one lives on; two ServerSet members may
 * announce one endpoint): keep the first by instance_cmp_nodes, drop the
 * others; each dropped node is logged and counted once per version.
 * r[0..n) is sorted by routed_cmp. Returns the number dropped.
 */
static size_t drop_duplicates(struct watched_service *s, const struct zkset_member *members,
			      size_t n_members, struct routed_node *r, size_t n)
{
	size_t dropped = 0;

	for (size_t i = 0, keep = 0; i < n; i++) {
		struct watched_child *c = r[i].c;
		if (i == 0 || strcmp(c->inst.id, r[keep].c->inst.id) != 0) {
			keep = i;
			c->duplicate = false;
			continue;
		}
		c->duplicate = true;
		snprintf(c->reason, sizeof(c->reason), "duplicate of id=%.40s; node %.40s is kept",
			 c->inst.id, r[keep].node);
		utf8_scrub(c->reason);	/* a cut inside a character: /services shows it as JSON */
		dropped++;
	}
	for (size_t i = 0; i < n_members; i++) {
		struct watched_child *c = members[i].priv;
		if (!members[i].wanted || !c || c->fate != CHILD_ROUTED)
			continue;
		if (!c->duplicate) {
			c->dup_logged_version = INT32_MIN;
			continue;
		}
		if (c->dup_logged_version == members[i].version)
			continue;
		c->dup_logged_version = members[i].version;
		s->stats.duplicates_total++;
		log_warn("svc=%s node=%s skipped: %s (newer registrationTimeUTC, else the "
			 "later node)", s->name, members[i].name, c->reason);
	}
	return dropped;
}

/* The zkset read everything: turn its members into a candidate view. */
static void on_settled(void *arg)
{
	struct watched_service *s = arg;
	const struct zkset_member *members;
	struct routed_node *routed;
	struct instance *view;
	size_t n_members, n = 0, skipped = 0, dups;

	if (s->dead)
		return;
	members = zkset_members(s->set, &n_members);
	routed = xcalloc(n_members ? n_members : 1, sizeof(*routed));
	for (size_t i = 0; i < n_members; i++) {
		struct watched_child *c = members[i].priv;
		if (!members[i].wanted || !c)
			continue;
		if (c->fate == CHILD_ROUTED)
			routed[n++] = (struct routed_node){ c, members[i].name };
		else
			skipped++;
	}
	qsort(routed, n, sizeof(*routed), routed_cmp);
	dups = drop_duplicates(s, members, n_members, routed, n);
	view = xcalloc(n ? n : 1, sizeof(*view));
	for (size_t i = 0, k = 0; i < n; i++) {
		if (!routed[i].c->duplicate)
			view[k++] = routed[i].c->inst;
	}
	free(routed);
	n -= dups;
	s->stats.skipped = skipped + dups;
	evaluate(s, view, n);
	if (s->dead)
		return;
	if (s->d->zk && zk_state(s->d->zk) == ZK_CONNECTED && !zkset_needs_resync(s->set))
		state_set(s, DISCOVERY_CONNECTED, "in sync with ZooKeeper");
}

/* ServerSet members are the `member_*` children; every Curator child is an instance. */
static bool child_wanted(void *arg, const char *name)
{
	const struct watched_service *s = arg;

	return s->type != DISCOVERY_SERVERSET || strncmp(name, "member_", 7) == 0;
}

/* Log and count a skipped child once per version of its data. */
static void note_skip(struct watched_service *s, const struct zkset_member *m,
		      struct watched_child *c)
{
	if (c->logged_version == m->version)
		return;
	c->logged_version = m->version;
	switch (c->fate) {
	case CHILD_BAD:
		s->bad_children_total++;
		log_warn("svc=%s node=%s skipped: %s", s->name, m->name, c->reason);
		break;
	case CHILD_UNROUTABLE:
		s->stats.unroutable_total++;
		log_warn("svc=%s node=%s not routable: %s", s->name, m->name, c->reason);
		break;
	case CHILD_DISABLED:
		log_info("svc=%s node=%s not routed: %s", s->name, m->name, c->reason);
		break;
	case CHILD_ROUTED:
		break;
	}
}

/* A child's data as read: its instance, or why it is not routed. */
static void child_read(void *arg, struct zkset_member *m, int rc, const char *data, size_t len)
{
	struct watched_service *s = arg;
	struct watched_child *c = m->priv;
	enum instance_decode verdict;

	if (!c) {
		c = xcalloc(1, sizeof(*c));
		c->logged_version = INT32_MIN;
		c->dup_logged_version = INT32_MIN;
		m->priv = c;
	}
	c->duplicate = false;
	if (rc != ZOK) {
		/* One unreadable child costs that child, not the service. */
		c->fate = CHILD_BAD;
		snprintf(c->reason, sizeof(c->reason), "no read permission (ACL)");
		note_skip(s, m, c);
		return;
	}
	if (s->type == DISCOVERY_SERVERSET)
		verdict = instance_decode_serverset(data, len, &c->inst, c->reason,
						    sizeof(c->reason));
	else
		verdict = instance_decode_curator(m->name, data, len, &c->inst, c->reason,
						  sizeof(c->reason));
	c->fate = verdict == INSTANCE_OK ? CHILD_ROUTED
		  : verdict == INSTANCE_DISABLED ? CHILD_DISABLED : CHILD_BAD;
	/* Well-formed, as Curator reads it; only this service cannot use it. */
	if (c->fate == CHILD_ROUTED && (s->tls ? c->inst.ssl_port : c->inst.port) == 0) {
		c->fate = CHILD_UNROUTABLE;
		snprintf(c->reason, sizeof(c->reason), "%s",
			 s->tls ? "no sslPort, and the service uses tls"
				: "no port (only sslPort), and the service has no tls");
	}
	if (c->fate != CHILD_ROUTED)
		note_skip(s, m, c);
}

static void child_forget(void *arg, struct zkset_member *m)
{
	free(m->priv);
}

static const struct zkset_hooks set_hooks = {
	.wanted = child_wanted,
	.on_read = child_read,
	.forget = child_forget,
	.on_settled = on_settled,
};

/* ---------- timers ---------- */

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watched_service *s = arg;

	(void)fd;
	(void)what;
	if (!s->candidate || s->dead)
		return;
	log_info("svc=%s: collapse still holds after the hold time", s->name);
	evaluate(s, s->candidate, s->n_candidate);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watched_service *s = arg;

	(void)fd;
	(void)what;
	if (s->dead)
		return;
	if (s->initial_pending) {
		deliver(s);
		if (s->dead)
			return;
	}
	if (s->hold_end_pending) {
		s->hold_end_pending = false;
		/* A hold that started again since is reported by evaluate(). */
		if (!s->stats.holding && s->d->hooks->on_hold)
			s->d->hooks->on_hold(s->d->arg, s->name, false, NULL, 0, 0);
		if (s->dead)
			return;
	}
	if (s->type == DISCOVERY_STATIC)
		state_set(s, DISCOVERY_CONNECTED, "static backends");
	else if (s->have_applied)
		state_set(s, DISCOVERY_CACHED, "loaded from cache_dir");
}

static void reap_cb(evutil_socket_t fd, short what, void *arg);

/* ---------- the session, for every service ---------- */

static void on_session(void *arg, enum zk_session_event ev)
{
	struct discovery *d = arg;

	/*
	 * A hook may unwatch services meanwhile: they stay readable, marked
	 * dead. Each service's zkset observes the session too (after this: it
	 * was registered later), and reads again what the event calls for.
	 */
	for (struct watched_service *s = d->services; s; s = s->next) {
		if (!is_zk_service(s) || s->dead)
			continue;
		switch (ev) {
		case ZK_SESSION_NEW:
			break;
		case ZK_SESSION_RESUMED:
			if (zkset_current(s->set))
				state_set(s, DISCOVERY_CONNECTED, "session resumed");
			break;
		case ZK_SESSION_LOST:
		case ZK_SESSION_EXPIRED:
			/* While ZooKeeper is away the view never changes, not even a held collapse. */
			if (s->candidate)
				log_info("svc=%s: dropping the held change: ZooKeeper lost",
					 s->name);
			candidate_drop(s);
			state_set(s, DISCOVERY_DISCONNECTED,
				  ev == ZK_SESSION_LOST ? "ZooKeeper connection lost"
							: "ZooKeeper session expired");
			break;
		}
	}
}

static const struct zk_observer discovery_observer = {
	.on_session = on_session,
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
		zk_observe(zk, &discovery_observer, d);
	return d;
}

static struct watched_service *find_service(const struct discovery *d, const char *name)
{
	for (struct watched_service *s = d->services; s; s = s->next) {
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

/* The read scheduling: coalesced lists, the spread-out resync, data watches or not. */
static void pace(struct watched_service *s, const struct discovery_conf *c)
{
	struct zkset_pacing p = {
		.coalesce_ms = c->coalesce_ms,
		.resync_jitter_ms = c->resync_jitter_ms,
		.watch_data = c->watch_data,
		.serving = s->have_applied,
	};

	zkset_pace(s->set, &p);
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

static void load_cache(struct watched_service *s)
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

static void build_static(struct watched_service *s, const struct discovery_conf *c)
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
		x->weight = b->weight;	/* the schema defaults it to 1 and refuses 0 */
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
	struct watched_service *s = find_service(d, svc->name);
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
		const char *cur = zkset_path(s->set);
		bool same = s->type == c->type && s->tls == svc->tls.enabled &&
			    ((!path && !cur) || (path && cur && !strcmp(path, cur)));
		params_from_conf(&s->params, c);
		if (same && c->type != DISCOVERY_STATIC) {
			free(path);
			free(source);
			return 0;
		}
		/* A new source: restart the watch; the last view serves meanwhile. */
		zkset_reset(s->set, "source changed");
		candidate_drop(s);
		free(s->source);
	} else {
		s = xcalloc(1, sizeof(*s));
		s->name = xstrdup(svc->name);
		s->d = d;
		s->hold_ev = evtimer_new(d->base, hold_cb, s);
		s->kick_ev = evtimer_new(d->base, kick_cb, s);
		size_t n = strlen(s->name) + sizeof("svc=");
		char *label = xmalloc(n);
		snprintf(label, n, "svc=%s", s->name);
		s->set = zkset_new(d->base, d->zk, label, &d->rng, READ_RETRY_CAP_MS, &set_hooks, s);
		free(label);
		params_from_conf(&s->params, c);
		s->next = d->services;
		d->services = s;
	}
	s->type = c->type;
	s->tls = svc->tls.enabled;
	s->source = source;
	s->guard.state = INSTANCE_HOLD_IDLE;

	if (c->type == DISCOVERY_STATIC) {
		build_static(s, c);
	} else {
		if (fresh)
			load_cache(s);
		pace(s, c);
		if (!d->zk)
			log_error("svc=%s: %s discovery needs a zookeeper: section; serving the "
				  "cache only", s->name, discovery_kind_name(c->type));
		zkset_start(s->set, path, fresh ? "watch" : "source changed");
	}
	free(path);
	if (s->initial_pending) {
		struct timeval zero = { 0, 0 };
		evtimer_add(s->kick_ev, &zero);
	}
	return 0;
}

static void service_free(struct watched_service *s)
{
	event_free(s->hold_ev);
	event_free(s->kick_ev);
	zkset_free(s->set);
	free(s->applied);
	free(s->candidate);
	free(s->name);
	free(s->source);
	free(s);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct discovery *d = arg;

	(void)fd;
	(void)what;
	while (d->graveyard) {
		struct watched_service *s = d->graveyard;
		d->graveyard = s->next;
		service_free(s);
	}
}

int discovery_reread(struct discovery *d, const char *service)
{
	struct watched_service *s = find_service(d, service);
	if (!s)
		return -ENOENT;
	if (s->type == DISCOVERY_STATIC || !zkset_path(s->set))
		return -EINVAL;
	char *path = xstrdup(zkset_path(s->set));
	zkset_reset(s->set, "re-read requested");
	candidate_drop(s);
	zkset_start(s->set, path, "re-read requested");
	free(path);
	return 0;
}

void discovery_unwatch(struct discovery *d, const char *service)
{
	struct timeval zero = { 0, 0 };
	struct watched_service **pp = &d->services;

	while (*pp && strcmp((*pp)->name, service) != 0)
		pp = &(*pp)->next;
	if (!*pp)
		return;
	struct watched_service *s = *pp;
	*pp = s->next;
	s->dead = true;
	zkset_cancel(s->set);
	evtimer_del(s->hold_ev);
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
		zk_unobserve(d->zk, d);
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
	const struct watched_service *s = find_service(d, service);

	if (!s)
		return false;
	*out = s->stats;
	out->bad_instances_total += s->bad_children_total;
	out->errors_total = zkset_errors(s->set);
	out->read_wait_ms = zkset_waiting_ms(s->set, now_ms());
	zkset_counts(s->set, &out->lists_total, &out->gets_total);
	out->state = s->state;
	out->instances = s->n_applied;
	return true;
}

static const char *const fate_names[] = {
	[CHILD_ROUTED] = "routed",
	[CHILD_DISABLED] = "disabled",
	[CHILD_UNROUTABLE] = "unroutable",
	[CHILD_BAD] = "bad",
};

size_t discovery_skipped(const struct discovery *d, const char *service,
			 struct discovery_skip *out, size_t max)
{
	const struct watched_service *s = find_service(d, service);
	const struct zkset_member *members;
	size_t n_members, n = 0;

	if (!s || !is_zk_service(s))
		return 0;
	members = zkset_members(s->set, &n_members);
	for (size_t i = 0; i < n_members; i++) {
		const struct watched_child *c = members[i].priv;
		if (!members[i].wanted || !c || (c->fate == CHILD_ROUTED && !c->duplicate))
			continue;
		if (n < max)
			out[n] = (struct discovery_skip){
				.node = members[i].name,
				.kind = c->duplicate ? "duplicate" : fate_names[c->fate],
				.reason = c->reason,
			};
		n++;
	}
	return n;
}

const struct instance *discovery_view(const struct discovery *d, const char *service, size_t *n)
{
	const struct watched_service *s = find_service(d, service);

	*n = 0;
	if (!s || !s->have_applied)
		return NULL;
	*n = s->n_applied;
	return s->applied;
}
