/*
 * service — see service.h.
 */
#include "service.h"
#include "log.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct service *service_new(const char *name, unsigned n_workers)
{
	struct service *svc = xcalloc(1, sizeof(*svc));
	atomic_init(&svc->refs, 1);
	svc->name = xstrdup(name);
	svc->n_workers = n_workers ? n_workers : 1;
	pthread_mutex_init(&svc->health_lock, NULL);
	pthread_mutex_init(&svc->queue_lock, NULL);
	queue_init(&svc->queue);
	svc->view = SERVICE_VIEW_PENDING;
	return svc;
}

const char *service_view_name(enum service_view v)
{
	switch (v) {
	case SERVICE_VIEW_PENDING:
		return "pending";
	case SERVICE_VIEW_STATIC:
		return "static";
	case SERVICE_VIEW_CONNECTED:
		return "connected";
	case SERVICE_VIEW_DISCONNECTED:
		return "disconnected";
	case SERVICE_VIEW_CACHED:
		return "cached";
	}
	return "?";
}

bool service_view_in_sync(enum service_view v)
{
	return v == SERVICE_VIEW_CONNECTED || v == SERVICE_VIEW_STATIC;
}

struct service *service_get(struct service *svc)
{
	atomic_fetch_add_explicit(&svc->refs, 1, memory_order_relaxed);
	return svc;
}

static void release_members(struct backend **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		backend_put(v[i]);
	free(v);
}

void service_put(struct service *svc)
{
	if (!svc || atomic_fetch_sub_explicit(&svc->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_mutex_destroy(&svc->health_lock);
	/* No worker routes with the service any more: whoever still waits goes. */
	struct queue_entry e;
	while (queue_pop(&svc->queue, &e))
		close(e.fd);
	queue_free(&svc->queue);
	pthread_mutex_destroy(&svc->queue_lock);
	free(svc->self);
	free(svc->name);
	free(svc);
}

/*
 * Snapshots hold references to the service (set->svc) and the service holds
 * its members, so the owner drops the members explicitly when the service
 * goes away; relays still holding a snapshot keep what they use.
 */
void service_retire(struct service *svc)
{
	pthread_mutex_lock(&svc->health_lock);
	struct backend **v = svc->members;
	size_t n = svc->n_members;
	svc->members = NULL;
	svc->n_members = 0;
	pthread_mutex_unlock(&svc->health_lock);
	for (size_t i = 0; i < n; i++)
		atomic_store(&v[i]->member, false);
	release_members(v, n);
	release_members(svc->draining, svc->n_draining);
	svc->draining = NULL;
	svc->n_draining = 0;
}

void service_configure(struct service *svc, const struct service_conf *conf)
{
	pthread_mutex_lock(&svc->health_lock);
	health_params_from_conf(&svc->hp, &conf->health);
	svc->slow_start_ms = conf->slow_start_ms;
	atomic_store(&svc->max_conns, conf->max_connections);
	/* New parameters may change when instances are routable (the next tick
	 * brings up instances that waited for a check that was removed). */
	for (size_t i = 0; i < svc->n_members; i++) {
		struct backend *be = svc->members[i];
		if (backend_has_addr(be))
			atomic_store(&be->eligible_after_ms,
				     health_eligible_after(&be->health, &svc->hp));
	}
	pthread_mutex_unlock(&svc->health_lock);
}

static bool policy_refuses(const struct service *svc, const struct net_addr *addr, char *why,
			   size_t len);

/*
 * While the policy changes (svc->readmitting), a member whose standing under
 * it may have changed is not found, so that it is made anew and judged again:
 * a refused one (its name may resolve elsewhere now, its literal be allowed),
 * and one with an address the policy now refuses. The old object drains.
 */
static bool policy_unchanged_for(const struct service *svc, const struct backend *be)
{
	char why[96];
	if (!svc->readmitting)
		return true;
	if (backend_refused(be))
		return false;
	return !backend_has_addr(be) || !policy_refuses(svc, &be->addr, why, sizeof(why));
}

#define MEMBER_LOG_LINES 20	/* per-backend lines per change, then a count */

static int cmp_backend_id(const void *a, const void *b)
{
	return strcmp((*(struct backend *const *)a)->id, (*(struct backend *const *)b)->id);
}

static int cmp_key_backend_id(const void *key, const void *elem)
{
	return strcmp(key, (*(struct backend *const *)elem)->id);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
	return x < y ? -1 : x > y;
}

static bool backends_sorted(struct backend *const *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (strcmp(v[i - 1]->id, v[i]->id) >= 0)
			return false;
	return true;
}

static bool specs_sorted(const struct member_spec *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (strcmp(v[i - 1].id, v[i].id) >= 0)
			return false;
	return true;
}

/*
 * The member m names in by_id (the current members sorted by id), when its
 * endpoint and weight are unchanged. Ids are unique within a view. With
 * *cursor (non-NULL when the specs come sorted by id, as discovery's views
 * do) a walk forward replaces the binary search: one view costs n compares.
 */
static struct backend *find_member(struct backend **by_id, size_t n, const struct member_spec *m,
				   size_t *cursor)
{
	struct backend *be = NULL;

	if (cursor) {
		int c = 1;
		while (*cursor < n && (c = strcmp(by_id[*cursor]->id, m->id)) < 0)
			(*cursor)++;
		if (*cursor < n && c == 0)
			be = by_id[*cursor];
	} else if (n) {
		struct backend **p = bsearch(m->id, by_id, n, sizeof(*by_id), cmp_key_backend_id);
		be = p ? *p : NULL;
	}
	/* a dropped member (service_hold) is out of the pool for good */
	if (be && atomic_load(&be->member) && be->port == m->port && strcmp(be->host, m->host) == 0 &&
	    be->ssl_port == m->ssl_port && be->weight == (m->weight ? m->weight : 1))
		return be;
	return NULL;
}

/* Drop draining backends that have no connections left. */
static void prune_draining(struct service *svc)
{
	size_t k = 0;
	for (size_t i = 0; i < svc->n_draining; i++) {
		struct backend *be = svc->draining[i];
		if (atomic_load(&be->active) == 0 && !atomic_load(&be->member))
			backend_put(be);
		else
			svc->draining[k++] = be;
	}
	svc->n_draining = k;
}

bool service_set_members(struct service *svc, const struct member_spec *v, size_t n,
			 uint64_t now)
{
	struct backend **nv = xcalloc(n ? n : 1, sizeof(*nv));
	struct backend **by_id = xcalloc(svc->n_members ? svc->n_members : 1, sizeof(*by_id));
	size_t kept = 0, added = 0, removed = 0;

	/*
	 * Sorted indexes, so that a view of 100k instances costs n log n, not
	 * n^2; a discovered view comes sorted by id (and so do the members it
	 * made last time), and then it costs n.
	 */
	size_t cursor = 0;
	bool walk = specs_sorted(v, n);
	if (svc->n_members)
		memcpy(by_id, svc->members, svc->n_members * sizeof(*by_id));
	if (!backends_sorted(by_id, svc->n_members))
		qsort(by_id, svc->n_members, sizeof(*by_id), cmp_backend_id);
	for (size_t i = 0; i < n; i++) {
		struct backend *be = find_member(by_id, svc->n_members, &v[i], walk ? &cursor : NULL);
		if (be && !policy_unchanged_for(svc, be))
			be = NULL;	/* made anew and judged again (service_readmit) */
		if (be) {
			nv[i] = backend_get(be);
			kept++;
		} else {
			nv[i] = backend_new(svc->name, svc->n_workers, v[i].id, v[i].host,
					    v[i].port, v[i].ssl_port, v[i].weight, now);
			/* An IP literal has its address already: judge it before any
			 * snapshot can hold it. Names are judged when they resolve. */
			if (backend_has_addr(nv[i]))
				service_admit(svc, nv[i], &nv[i]->addr);
			if (svc->hp.active_check) {
				/* Unknown until the check has spoken once. */
				nv[i]->health.state = HEALTH_CHECKING;
				nv[i]->health.check_passes = svc->hp.rise > 0 ? svc->hp.rise - 1 : 0;
			}
			if (backend_has_addr(nv[i]))
				atomic_store(&nv[i]->eligible_after_ms,
					     health_eligible_after(&nv[i]->health, &svc->hp));
			if (added++ < MEMBER_LOG_LINES)
				log_info("svc=%s be=%s id=%s added", svc->name, nv[i]->name,
					 nv[i]->id);
		}
		backend_set_payload(nv[i], v[i].payload, v[i].payload_len);
	}

	pthread_mutex_lock(&svc->health_lock);
	struct backend **old = svc->members;
	size_t n_old = svc->n_members;
	svc->members = nv;
	svc->n_members = n;
	pthread_mutex_unlock(&svc->health_lock);

	/* by_id now serves as the kept members sorted by address. */
	by_id = xrealloc(by_id, (n ? n : 1) * sizeof(*by_id));
	if (n)
		memcpy(by_id, nv, n * sizeof(*by_id));
	qsort(by_id, n, sizeof(*by_id), cmp_ptr);
	/* At most n_old leave: one allocation for all of them. */
	svc->draining = xrealloc(svc->draining,
				 (svc->n_draining + n_old + 1) * sizeof(*svc->draining));
	for (size_t i = 0; i < n_old; i++) {
		if (n && bsearch(&old[i], by_id, n, sizeof(*by_id), cmp_ptr))
			continue;
		if (removed++ < MEMBER_LOG_LINES)
			log_info("svc=%s be=%s id=%s removed (%u open connections finish)",
				 svc->name, old[i]->name, old[i]->id, atomic_load(&old[i]->active));
		atomic_store(&old[i]->member, false);
		svc->draining[svc->n_draining++] = backend_get(old[i]);
	}
	free(by_id);
	if (added > MEMBER_LOG_LINES || removed > MEMBER_LOG_LINES)
		log_info("svc=%s %zu backends added, %zu removed", svc->name, added, removed);
	release_members(old, n_old);
	prune_draining(svc);
	if (added || removed)
		atomic_fetch_add(&svc->view_updates, 1);
	return added || removed;
}

static int cmp_spec_id(const void *key, const void *elem)
{
	return strcmp(key, ((const struct member_spec *)elem)->id);
}

/* What ZooKeeper's listed[0..n) (sorted by id) says of member be. */
static enum backend_held held_change(const struct backend *be, const struct member_spec *listed,
				     size_t n)
{
	const struct member_spec *m = n ? bsearch(be->id, listed, n, sizeof(*listed), cmp_spec_id)
				      : NULL;

	if (!m)
		return BACKEND_HELD_REMOVED;
	return be->port == m->port && strcmp(be->host, m->host) == 0 ? BACKEND_HELD_NONE
								      : BACKEND_HELD_CHANGED;
}

size_t service_hold(struct service *svc, bool holding, const struct member_spec *listed,
		    size_t n, uint64_t hold_until_ms)
{
	size_t marked = 0, revive = 0;

	pthread_mutex_lock(&svc->health_lock);
	for (size_t i = 0; i < svc->n_members; i++) {
		struct backend *be = svc->members[i];
		be->held = holding ? held_change(be, listed, n) : BACKEND_HELD_NONE;
		be->held_until_ms = be->held != BACKEND_HELD_NONE ? hold_until_ms : 0;
		marked += be->held != BACKEND_HELD_NONE;
		revive += be->dropped && be->held == BACKEND_HELD_NONE;
	}
	/* removed since: nothing is held of them any more */
	for (size_t i = 0; i < svc->n_draining; i++)
		svc->draining[i]->held = BACKEND_HELD_NONE;
	pthread_mutex_unlock(&svc->health_lock);
	if (holding)
		log_info("svc=%s %zu of %zu instances held: ZooKeeper no longer lists them as "
			 "served; each is dropped at its first failure", svc->name, marked,
			 svc->n_members);
	return revive;
}

/*
 * A marked member failed: drop it (see service_hold). Holds health_lock.
 * True when it was dropped now (the caller logs and counts, unlocked).
 */
static bool drop_held(struct backend *be)
{
	if (be->held == BACKEND_HELD_NONE || be->dropped)
		return false;
	be->dropped = true;
	atomic_store(&be->member, false);
	return true;
}

static void log_dropped(struct service *svc, struct backend *be, enum backend_held held,
			uint64_t until, uint64_t now, const char *why)
{
	atomic_fetch_add_explicit(&svc->held_drops, 1, memory_order_relaxed);
	log_warn("svc=%s be=%s id=%s dropped after %s: ZooKeeper lists it as %s (the collapse "
		 "guard holds that change for %llums more); no more connections",
		 svc->name, be->name, be->id, why, backend_held_name(held),
		 (unsigned long long)(until > now ? until - now : 0));
}

bool service_has_member(const struct service *svc, const struct backend *be)
{
	for (size_t i = 0; i < svc->n_members; i++)
		if (svc->members[i] == be)
			return true;
	return false;
}

void service_backend_ready(struct service *svc, struct backend *be, uint64_t now)
{
	pthread_mutex_lock(&svc->health_lock);
	atomic_store(&be->serving_since_ms, now);
	atomic_store(&be->eligible_after_ms, health_eligible_after(&be->health, &svc->hp));
	pthread_mutex_unlock(&svc->health_lock);
}

uint64_t service_published(struct service *svc, bool ready)
{
	svc->ready = ready;
	return ++svc->version;
}

/*
 * Count ejected members, and members with an address (a name not resolved
 * yet is no instance yet, as for panic); caller holds the health lock.
 */
static size_t count_ejected(const struct service *svc, size_t *with_addr)
{
	size_t n = 0;
	*with_addr = 0;
	for (size_t i = 0; i < svc->n_members; i++) {
		const struct backend *be = svc->members[i];
		if (!backend_has_addr(be) || be->dropped)
			continue;
		(*with_addr)++;
		if (be->health.state == HEALTH_EJECTED)
			n++;
	}
	return n;
}

void service_report_failure(struct service *svc, struct backend *be, const char *why)
{
	uint64_t now = now_ms();
	atomic_fetch_add_explicit(&be->connect_failures, 1, memory_order_relaxed);

	pthread_mutex_lock(&svc->health_lock);
	if (drop_held(be)) {
		enum backend_held held = be->held;
		uint64_t until = be->held_until_ms;
		pthread_mutex_unlock(&svc->health_lock);
		log_dropped(svc, be, held, until, now, why);
		return;
	}
	uint32_t max_pct = svc->hp.max_ejected_percent;
	size_t total;
	size_t ejected = count_ejected(svc, &total);
	bool may = health_may_eject(ejected, total, max_pct);
	enum health_transition t = health_on_failure(&be->health, &svc->hp, now, may);
	uint64_t until = be->health.ejected_until_ms;
	uint32_t times = be->health.ejections_total;
	atomic_store(&be->eligible_after_ms, health_eligible_after(&be->health, &svc->hp));
	pthread_mutex_unlock(&svc->health_lock);

	if (t == HEALTH_T_EJECTED) {
		atomic_fetch_add_explicit(&svc->ejections, 1, memory_order_relaxed);
		log_warn("svc=%s be=%s ejected for %llums (ejection #%u) after %s",
			 svc->name, be->name, (unsigned long long)(until - now), times, why);
	} else if (t == HEALTH_T_EJECT_SKIPPED) {
		/* A flapping service would say this on every streak: once a second is enough. */
		uint64_t last = atomic_load_explicit(&svc->skip_logged_ms, memory_order_relaxed);
		if (now - last >= 1000 &&
		    atomic_compare_exchange_strong(&svc->skip_logged_ms, &last, now))
			log_warn("svc=%s be=%s not ejected: max_ejected_percent=%u reached (%s)",
				 svc->name, be->name, max_pct, why);
	} else {
		log_debug("svc=%s be=%s connect failure: %s", svc->name, be->name, why);
	}
}

void service_report_success(struct service *svc, struct backend *be)
{
	/*
	 * The common case is a healthy instance with no failure streak: a racy
	 * read is fine, a stale nonzero only costs taking the lock once.
	 */
	if (__atomic_load_n(&be->health.consecutive_failures, __ATOMIC_RELAXED) == 0)
		return;
	pthread_mutex_lock(&svc->health_lock);
	health_on_success(&be->health, &svc->hp, now_ms());
	pthread_mutex_unlock(&svc->health_lock);
}

static void log_transition(struct service *svc, struct backend *be, enum health_transition t,
			   const char *why)
{
	switch (t) {
	case HEALTH_T_NONE:
	case HEALTH_T_EJECTED:
	case HEALTH_T_EJECT_SKIPPED:
		break;
	case HEALTH_T_RETURNED:
		log_info("svc=%s be=%s returns from ejection", svc->name, be->name);
		break;
	case HEALTH_T_AWAIT_CHECK:
		log_info("svc=%s be=%s ejection over, waiting for the check to pass", svc->name,
			 be->name);
		break;
	case HEALTH_T_CHECK_DOWN:
		log_warn("svc=%s be=%s check DOWN: %s", svc->name, be->name, why ? why : "");
		break;
	case HEALTH_T_CHECK_UP:
		log_info("svc=%s be=%s check UP", svc->name, be->name);
		break;
	}
}

/* Publish a member's health for workers after a transition. Holds health_lock. */
static void publish_health(struct service *svc, struct backend *be, enum health_transition t,
			   uint64_t now)
{
	if (!backend_has_addr(be))
		return;	/* no address yet: stays unroutable until resolved */
	atomic_store(&be->eligible_after_ms, health_eligible_after(&be->health, &svc->hp));
	if (t == HEALTH_T_RETURNED || t == HEALTH_T_CHECK_UP)
		atomic_store(&be->serving_since_ms, be->health.routable_since_ms);
}

void service_tick(struct service *svc, uint64_t now)
{
	enum health_transition t[64];
	struct backend *who[64];
	size_t nt = 0, routable = 0, total = 0;

	pthread_mutex_lock(&svc->health_lock);
	for (size_t i = 0; i < svc->n_members; i++) {
		struct backend *be = svc->members[i];
		enum health_transition tr = health_tick(&be->health, &svc->hp, now);
		if (tr != HEALTH_T_NONE) {
			publish_health(svc, be, tr, now);
			if (nt < ARRAY_SIZE(t)) {
				t[nt] = tr;
				who[nt++] = backend_get(be);
			}
		}
		/* As in relay_choose(): a name not resolved yet is no instance yet. */
		if (!backend_has_addr(be) || be->dropped)
			continue;
		total++;
		if (backend_routable(be, now))
			routable++;
	}
	bool panic = health_in_panic(routable, total, svc->hp.panic_threshold);
	bool was = svc->panic;
	svc->panic = panic;
	pthread_mutex_unlock(&svc->health_lock);

	for (size_t i = 0; i < nt; i++) {
		log_transition(svc, who[i], t[i], NULL);
		backend_put(who[i]);
	}
	if (panic && !was) {
		atomic_fetch_add(&svc->panics, 1);
		log_warn("svc=%s entering panic mode: %zu of %zu instances routable (< %u%%), "
			 "balancing over all", svc->name, routable, total, svc->hp.panic_threshold);
	} else if (!panic && was) {
		log_info("svc=%s leaving panic mode: %zu of %zu instances routable", svc->name,
			 routable, total);
	}
	prune_draining(svc);
}

void service_check_result(struct service *svc, struct backend *be, bool passed,
			  const char *why, uint64_t now)
{
	if (!passed)
		atomic_fetch_add(&svc->check_failures, 1);
	pthread_mutex_lock(&svc->health_lock);
	if (!passed && drop_held(be)) {
		enum backend_held held = be->held;
		uint64_t until = be->held_until_ms;
		pthread_mutex_unlock(&svc->health_lock);
		log_dropped(svc, be, held, until, now, why ? why : "a failed check");
		return;
	}
	enum health_transition t = health_on_check(&be->health, &svc->hp, passed, now);
	publish_health(svc, be, t, now);
	pthread_mutex_unlock(&svc->health_lock);
	log_transition(svc, be, t, why);
}

static bool net_list_same(const struct net_list *a, const struct net_list *b)
{
	return a->n == b->n && a->has_reserved == b->has_reserved &&
	       memcmp(a->prefix, b->prefix, a->n * sizeof(a->prefix[0])) == 0;
}

bool service_set_policy(struct service *svc, const struct net_list *allowed,
			const struct net_list *denied, const struct net_self *self, size_t n)
{
	bool same = net_list_same(&svc->allowed, allowed) && net_list_same(&svc->denied, denied) &&
		    svc->n_self == n && (n == 0 || memcmp(svc->self, self, n * sizeof(*self)) == 0);
	svc->allowed = *allowed;
	svc->denied = *denied;
	free(svc->self);
	svc->self = n ? xcalloc(n, sizeof(*self)) : NULL;
	if (n)
		memcpy(svc->self, self, n * sizeof(*self));
	svc->n_self = n;
	return !same;
}

void service_readmit(struct service *svc, uint64_t now)
{
	size_t n = svc->n_members;
	struct member_spec *v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		struct backend *be = svc->members[i];
		v[i] = (struct member_spec){ .id = be->id, .host = be->host, .port = be->port,
					     .ssl_port = be->ssl_port, .weight = be->weight,
					     .payload = be->payload, .payload_len = be->payload_len };
	}
	svc->readmitting = true;
	service_set_members(svc, v, n, now);
	svc->readmitting = false;
	free(v);
}

/* Is sa one of this host's interface addresses? (Loopback netpolicy knows.) */
static bool addr_is_local(const struct sockaddr *sa)
{
	struct net_self want, have;
	struct ifaddrs *ifs;
	if (!net_self_from(&want, sa))
		return false;
	if (getifaddrs(&ifs) != 0)
		return true;	/* cannot tell: assume the worst */
	bool local = false;
	for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next)
		local = i->ifa_addr && net_self_from(&have, i->ifa_addr) &&
			have.family == want.family && memcmp(have.addr, want.addr, sizeof(have.addr)) == 0;
	freeifaddrs(ifs);
	return local;
}

/* Does svc's policy refuse addr? Then why says so. No side effects. */
static bool policy_refuses(const struct service *svc, const struct net_addr *addr, char *why,
			   size_t len)
{
	const struct sockaddr *sa = (const struct sockaddr *)&addr->ss;
	const struct net_prefix *hit = NULL;
	const struct net_self *me = NULL;
	char net[64];
	enum netpolicy_verdict v = netpolicy_check(&svc->allowed, &svc->denied, sa, &hit);
	if (v == NETPOLICY_ALLOW && net_self_port(svc->self, svc->n_self, sa) &&
	    net_self_match(svc->self, svc->n_self, sa, addr_is_local(sa), &me))
		v = NETPOLICY_SELF;
	if (v == NETPOLICY_ALLOW)
		return false;
	if (v == NETPOLICY_DENIED && hit) {
		net_prefix_format(hit, net, sizeof(net));
		snprintf(why, len, "%s %s", netpolicy_verdict_name(v), net);
	} else if (v == NETPOLICY_SELF) {
		snprintf(why, len, "%s port %u", netpolicy_verdict_name(v), me->port);
	} else {
		snprintf(why, len, "%s", netpolicy_verdict_name(v));
	}
	return true;
}

bool service_refuses(const struct service *svc, const struct net_addr *addr, char *why,
		     size_t len)
{
	return policy_refuses(svc, addr, why, len);
}

bool service_admit(struct service *svc, struct backend *be, const struct net_addr *addr)
{
	char why[96], a[INET6_ADDRSTRLEN + 16];
	if (!policy_refuses(svc, addr, why, sizeof(why)))
		return true;
	net_addr_format(addr, a, sizeof(a));
	backend_refuse(be, why);
	atomic_fetch_add(&svc->refused, 1);
	log_warn("svc=%s be=%s id=%s refused: %s (address %s)", svc->name, be->name, be->id, why, a);
	return false;
}

bool service_conn_reserve(struct service *svc)
{
	/* Take first, then check: two workers at cap - 1 cannot both pass. */
	uint32_t max = atomic_load_explicit(&svc->max_conns, memory_order_relaxed);
	uint64_t n = atomic_fetch_add_explicit(&svc->conn_open, 1, memory_order_relaxed) + 1;
	if (max && n > max) {
		atomic_fetch_sub_explicit(&svc->conn_open, 1, memory_order_relaxed);
		return false;
	}
	if (svc->cap) {
		uint32_t gmax = atomic_load_explicit(&svc->cap->max, memory_order_relaxed);
		uint32_t g = atomic_fetch_add_explicit(&svc->cap->open, 1, memory_order_relaxed) + 1;
		if (gmax && g > gmax) {
			atomic_fetch_sub_explicit(&svc->cap->open, 1, memory_order_relaxed);
			atomic_fetch_sub_explicit(&svc->conn_open, 1, memory_order_relaxed);
			return false;
		}
	}
	return true;
}

void service_conn_release(struct service *svc)
{
	atomic_fetch_sub_explicit(&svc->conn_open, 1, memory_order_relaxed);
	if (svc->cap)
		atomic_fetch_sub_explicit(&svc->cap->open, 1, memory_order_relaxed);
}

bool service_queue_push(struct service *svc, uint32_t max, int fd, uint64_t now)
{
	pthread_mutex_lock(&svc->queue_lock);
	bool ok = queue_push(&svc->queue, max, fd, now);
	atomic_store_explicit(&svc->queued, svc->queue.len, memory_order_relaxed);
	pthread_mutex_unlock(&svc->queue_lock);
	if (ok)
		atomic_fetch_add_explicit(&svc->queued_total, 1, memory_order_relaxed);
	return ok;
}

/* pop, or pop_expired when `expired`; with queue_lock. */
static int service_queue_take(struct service *svc, bool expired, uint64_t now,
			      uint64_t timeout_ms, uint64_t *since_ms)
{
	struct queue_entry e;
	pthread_mutex_lock(&svc->queue_lock);
	bool ok = expired ? queue_pop_expired(&svc->queue, now, timeout_ms, &e)
			  : queue_pop(&svc->queue, &e);
	atomic_store_explicit(&svc->queued, svc->queue.len, memory_order_relaxed);
	pthread_mutex_unlock(&svc->queue_lock);
	if (!ok)
		return -1;
	*since_ms = e.since_ms;
	return e.fd;
}

int service_queue_pop(struct service *svc, uint64_t *since_ms)
{
	return service_queue_take(svc, false, 0, 0, since_ms);
}

int service_queue_pop_expired(struct service *svc, uint64_t now, uint64_t timeout_ms,
			      uint64_t *since_ms)
{
	return service_queue_take(svc, true, now, timeout_ms, since_ms);
}

uint64_t service_queue_next_ms(struct service *svc, uint64_t now, uint64_t timeout_ms)
{
	pthread_mutex_lock(&svc->queue_lock);
	uint64_t ms = queue_next_expiry_ms(&svc->queue, now, timeout_ms);
	pthread_mutex_unlock(&svc->queue_lock);
	return ms;
}
