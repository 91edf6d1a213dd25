/*
 * metrics — see metrics.h.
 *
 * A scrape first gathers what it reads (struct scrape), then writes the
 * families of the table below in order. Numbers come from the control
 * thread's state, from atomics the workers update and, for health, from
 * copies taken under each service's health lock (stats).
 */
#include "metrics.h"
#include "accesslog.h"
#include "admin_stats.h"
#include "announce.h"
#include "control.h"
#include "discovery.h"
#include "overlay.h"
#include "render.h"
#include "renderer.h"
#include "locality.h"
#include "resolver.h"
#include "sentinel.h"
#include "stats.h"
#include "sync.h"
#include "trunk_client.h"
#include "trunk_listener.h"
#include "zk.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

/* Prometheus label values: escape backslash, quote and newline. */
static void label_escape(struct evbuffer *b, const char *in)
{
	for (; *in; in++) {
		if (*in == '\\' || *in == '"')
			evbuffer_add_printf(b, "\\%c", *in);
		else if (*in == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, in, 1);
	}
}

/* What a service contributes to one scrape. */
struct scrape_service {
	bool panic;				/* read under the health lock */
	bool has_discovery;			/* ds is valid: the service is discovered */
	struct discovery_stats ds;
	bool has_sentinel;			/* sn is valid: discovery.type sentinel */
	struct sentinel_stats sn;
	struct stats_instance *instances;	/* owned (stats_instances_free), n_instances */
	size_t n_instances;
};

/* One series of the backend scope: an instance of a service. */
struct scrape_backend {
	size_t service;				/* index in c->services */
	const struct stats_instance *inst;	/* ref: into that service's instances */
};

/*
 * Everything one scrape reads, gathered once (sums over workers, each
 * module's stats, every service's instances) so that the table's getters
 * only pick numbers out of it. Process figures are uint64_t so that one
 * getter reads them all by offset.
 */
struct scrape {
	struct control *c;			/* ref */
	uint64_t uptime_s;
	uint64_t workers;
	uint64_t draining;			/* 0 or 1 */
	uint64_t reloads;
	uint64_t reload_failures;
	uint64_t upgrade_failures;
	uint64_t lookups[4];			/* host name lookups: ok, failed, timed_out, refused */
	uint64_t lookups_pending;
	uint64_t lookup_threads;		/* lookups in flight */
	uint64_t relays;			/* open client connections, all workers */
	uint64_t accept_errors;
	uint64_t fd_refused;			/* clients closed: their fd was in the reserve */
	uint64_t buffer_bytes;			/* relays' buffers now (max_buffer_memory) */
	uint64_t buffer_refusals;		/* relays closed: no buffer could be had */
	uint64_t kernel_relay;			/* 1: the BPF sockmap relay is loaded */
	uint64_t closes[RELAY_CLOSE_REASONS];
	uint64_t discards[POOL_DISCARD_COUNT];
	uint64_t not_reusable[FRAMING_VERDICT_COUNT];
	uint64_t access_lines;			/* log.access: lines written */
	uint64_t access_dropped;		/* ...records dropped, rings full */
	uint64_t access_write_errors;		/* ...lines lost to failed writes */
	uint64_t zk_connected;			/* 0 or 1 */
	struct zk_stats zk;			/* valid when c->zk */
	uint64_t overlay_applied;
	uint64_t overlay_rejected;
	uint64_t overlay_in_force;		/* 0 or 1 */
	uint64_t overlay_cached;		/* 0 or 1 */
	uint64_t admin_closes[ADMIN_CLOSE_COUNT];	/* admin connections closed, by reason */
	uint64_t admin_paused;			/* admin accepting paused at its cap */
	uint64_t admin_open;			/* admin connections open */
	struct announce_stats *announce;	/* owned, n_announce entries */
	size_t n_announce;
	struct sync_stats *sync;		/* owned, n_sync entries */
	size_t n_sync;
	struct render_stats *render;		/* owned, n_render entries */
	const struct render_conf **render_conf;	/* owned array of refs, n_render */
	size_t n_render;
	struct scrape_service *services;	/* owned, one per c->services */
	struct scrape_backend *backends;	/* owned, n_backends: instances, service by service */
	size_t n_backends;
	uint64_t now_ms;			/* monotonic, when gathered */
	uint64_t trunk_accepted;		/* the trunk listener's counters (trunk_stats) */
	uint64_t trunk_conns;
	uint64_t trunk_handshake_failures;
	uint64_t trunk_streams;
	uint64_t trunk_streams_open;
	uint64_t trunk_refused[3];		/* not_announced, bad_request, limit */
	uint64_t trunk_connect_failures;
	uint64_t trunk_resets[2];		/* in, out */
	uint64_t trunk_bytes[2];		/* in (callers to backends), out */
	uint64_t trunk_window_stalls;
	uint64_t trunk_protocol_errors;
	struct scrape_peer *peers;		/* owned, n_peers: the trunk's calling side, per peer */
	size_t n_peers;
	size_t peers_cap;
};

/* One peer host of the trunk's calling side, copied once per scrape. */
struct scrape_peer {
	char name[64];				/* "ip:port" of its trunk */
	uint64_t opened;			/* trunk connections opened (dialled) */
	uint64_t conns;				/* open now, past the handshake */
	uint64_t handshake_failures;
	uint64_t streams;
	uint64_t streams_open;
	uint64_t failures;			/* streams that did not open (refused, reset, trunk down) */
	uint64_t resets[2];			/* in, out */
	uint64_t bytes[2];			/* in = from the peer, out = to it */
	uint64_t window_stalls;
	uint64_t protocol_errors;
};

#define LOAD(f) atomic_load_explicit(&st->f, memory_order_relaxed)
static void scrape_peer_add(const char *name, const struct trunk_stats *st, void *arg)
{
	struct scrape *s = arg;
	if (s->n_peers == s->peers_cap) {
		s->peers_cap = s->peers_cap ? s->peers_cap * 2 : 8;
		s->peers = xrealloc(s->peers, s->peers_cap * sizeof(*s->peers));
	}
	struct scrape_peer *p = &s->peers[s->n_peers++];
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->opened = LOAD(conns_accepted);
	p->conns = LOAD(conns_open);
	p->handshake_failures = LOAD(handshake_failures);
	p->streams = LOAD(streams);
	p->streams_open = LOAD(streams_open);
	p->failures = LOAD(connect_failures);
	p->resets[0] = LOAD(resets_in);
	p->resets[1] = LOAD(resets_out);
	p->bytes[0] = LOAD(bytes_in);
	p->bytes[1] = LOAD(bytes_out);
	p->window_stalls = LOAD(window_stalls);
	p->protocol_errors = LOAD(protocol_errors);
}
#undef LOAD

/* The trunk listener's atomics, copied once per scrape. */
static void scrape_trunk(struct scrape *s, const struct trunk_listener *tl)
{
	const struct trunk_stats *t = trunk_listener_stats(tl);
	s->trunk_accepted = atomic_load_explicit(&t->conns_accepted, memory_order_relaxed);
	s->trunk_conns = atomic_load_explicit(&t->conns_open, memory_order_relaxed);
	s->trunk_handshake_failures = atomic_load_explicit(&t->handshake_failures, memory_order_relaxed);
	s->trunk_streams = atomic_load_explicit(&t->streams, memory_order_relaxed);
	s->trunk_streams_open = atomic_load_explicit(&t->streams_open, memory_order_relaxed);
	s->trunk_refused[0] = atomic_load_explicit(&t->refused_not_announced, memory_order_relaxed);
	s->trunk_refused[1] = atomic_load_explicit(&t->refused_bad_request, memory_order_relaxed);
	s->trunk_refused[2] = atomic_load_explicit(&t->refused_limit, memory_order_relaxed);
	s->trunk_connect_failures = atomic_load_explicit(&t->connect_failures, memory_order_relaxed);
	s->trunk_resets[0] = atomic_load_explicit(&t->resets_in, memory_order_relaxed);
	s->trunk_resets[1] = atomic_load_explicit(&t->resets_out, memory_order_relaxed);
	s->trunk_bytes[0] = atomic_load_explicit(&t->bytes_in, memory_order_relaxed);
	s->trunk_bytes[1] = atomic_load_explicit(&t->bytes_out, memory_order_relaxed);
	s->trunk_window_stalls = atomic_load_explicit(&t->window_stalls, memory_order_relaxed);
	s->trunk_protocol_errors = atomic_load_explicit(&t->protocol_errors, memory_order_relaxed);
}

static void scrape_gather(struct scrape *s, struct control *c)
{
	memset(s, 0, sizeof(*s));
	s->c = c;
	s->now_ms = now_ms();
	s->uptime_s = (s->now_ms - c->started_ms) / 1000;
	s->workers = c->n_workers;
	s->draining = c->draining;
	s->reloads = c->reloads;
	s->reload_failures = c->reload_failures;
	s->upgrade_failures = c->upgrade_failures;
	struct resolver_stats rs;
	resolver_stats(c->resolver, &rs);
	s->lookups[0] = rs.resolved;
	s->lookups[1] = rs.failed;
	s->lookups[2] = rs.timed_out;
	s->lookups[3] = rs.refused;
	s->lookups_pending = rs.pending;
	s->lookup_threads = rs.threads;
	s->buffer_bytes = atomic_load(&c->relay_budget.used);
	s->buffer_refusals = atomic_load(&c->relay_budget.refusals);
	s->kernel_relay = c->krelay != NULL;
	for (unsigned i = 0; i < c->n_workers; i++) {
		struct worker *w = c->workers[i];
		s->relays += atomic_load(&w->relay.n_relays);
		s->accept_errors += atomic_load(&w->accept_errors);
		s->fd_refused += atomic_load(&w->fd_refused);
		for (int r = 0; r < RELAY_CLOSE_REASONS; r++)
			s->closes[r] += atomic_load(&w->relay.closes[r]);
		/* Pool discards: plain counters written by each worker, read racily (monotonic). */
		const struct pool_worker *pw = &w->pool;
		for (int d = 0; d < POOL_DISCARD_COUNT; d++)
			s->discards[d] += __atomic_load_n(&pw->discards[d], __ATOMIC_RELAXED);
		for (int v = 0; v < FRAMING_VERDICT_COUNT; v++)
			s->not_reusable[v] += __atomic_load_n(&pw->not_reusable[v], __ATOMIC_RELAXED);
	}
	struct accesslog_stats as;
	accesslog_stats(c->alog, &as);
	s->access_lines = as.lines;
	s->access_dropped = as.dropped;
	s->access_write_errors = as.write_errors;
	if (c->trunk)
		scrape_trunk(s, c->trunk);
	if (c->trunk_client)
		trunk_client_each_peer(c->trunk_client, scrape_peer_add, s);
	if (c->zk) {
		zk_stats(c->zk, &s->zk);
		s->zk_connected = s->zk.state == ZK_CONNECTED;
	}
	memcpy(s->admin_closes, c->admin_stats.closes, sizeof(s->admin_closes));
	s->admin_paused = c->admin_stats.paused;
	s->admin_open = c->admin_stats.open;
	if (c->overlay) {
		struct overlay_stats os;
		overlay_stats(c->overlay, &os);
		s->overlay_applied = os.applied_total;
		s->overlay_rejected = os.rejected_total;
		s->overlay_in_force = os.in_force;
		s->overlay_cached = os.cached;
	}
	s->n_announce = c->announce ? announce_count(c->announce) : 0;
	s->announce = s->n_announce ? xcalloc(s->n_announce, sizeof(*s->announce)) : NULL;
	for (size_t i = 0; i < s->n_announce; i++)
		announce_stats(c->announce, i, &s->announce[i]);
	s->n_sync = c->sync ? sync_count(c->sync) : 0;
	s->sync = s->n_sync ? xcalloc(s->n_sync, sizeof(*s->sync)) : NULL;
	for (size_t i = 0; i < s->n_sync; i++)
		sync_stats(c->sync, i, &s->sync[i]);
	size_t n_render = renderer_count(c->renderer);
	s->render = n_render ? xcalloc(n_render, sizeof(*s->render)) : NULL;
	s->render_conf = n_render ? xcalloc(n_render, sizeof(*s->render_conf)) : NULL;
	for (size_t i = 0; i < n_render; i++) {
		const struct render *r = renderer_entry(c->renderer, i);
		if (!r)
			continue;	/* an entry that could not start: no series */
		s->render[s->n_render] = *render_stats(r);
		s->render_conf[s->n_render++] = render_conf(r);
	}
	s->services = xcalloc(c->n_services, sizeof(*s->services));
	for (size_t i = 0; i < c->n_services; i++) {
		struct service *svc = c->services[i];
		struct scrape_service *ss = &s->services[i];
		pthread_mutex_lock(&svc->health_lock);
		ss->panic = svc->panic;
		pthread_mutex_unlock(&svc->health_lock);
		ss->has_discovery = c->disc && discovery_stats(c->disc, svc->name, &ss->ds);
		ss->has_sentinel = c->sentinel && sentinel_stats(c->sentinel, svc->name, &ss->sn);
		ss->instances = stats_instances_of(svc, &ss->n_instances);
		s->n_backends += ss->n_instances;
	}
	s->backends = xcalloc(s->n_backends, sizeof(*s->backends));
	size_t k = 0;
	for (size_t i = 0; i < c->n_services; i++)
		for (size_t j = 0; j < s->services[i].n_instances; j++)
			s->backends[k++] = (struct scrape_backend){ i, &s->services[i].instances[j] };
}

static void scrape_free(struct scrape *s)
{
	for (size_t i = 0; i < s->c->n_services; i++)
		stats_instances_free(s->services[i].instances, s->services[i].n_instances);
	free(s->services);
	free(s->backends);
	free(s->announce);
	free(s->sync);
	free(s->render);
	free(s->render_conf);
	free(s->peers);
}

/* Which objects a family has one series for; they name the first labels. */
enum metric_scope {
	SCOPE_PROCESS,		/* one series */
	SCOPE_ZOOKEEPER,	/* one series, only with a zookeeper: section */
	SCOPE_OVERLAY,		/* one series, only with zookeeper.config_path */
	SCOPE_SERVICE,		/* {service}: one per service */
	SCOPE_BACKEND,		/* {service, backend}: one per instance of each service */
	SCOPE_ANNOUNCE,		/* {service, path}: one per announce entry; none: no family */
	SCOPE_SYNC,		/* {path}: one per sync entry; none: no family */
	SCOPE_RENDER,		/* {service, file}: one per render entry; none: no family */
	SCOPE_TRUNK,		/* one series, only with a trunk: section */
	SCOPE_TRUNK_PEER,	/* {peer}: one per peer host the calling side met; none: no family */
};

struct metric;

/*
 * The value of series i of the scope (k: which value of the family's own
 * label). False when there is no such series (a service without discovery
 * stats has no discovery counters).
 */
typedef bool metric_get_fn(const struct scrape *s, const struct metric *m, size_t i, size_t k,
			   uint64_t *out);

/* One family of /metrics: what the HELP and TYPE lines say and where its numbers come from. */
struct metric {
	const char *name;
	const char *type;				/* "counter" or "gauge" */
	enum metric_scope scope;
	const char *label;				/* its own label after the scope's, or NULL */
	const char *(*label_values)(size_t k);		/* label's fixed values; NULL past the last */
	const char *(*label_of)(const struct scrape *s, size_t i);	/* or its one value per series */
	metric_get_fn *get;
	size_t off;					/* for the getters that read a field by offset */
	const char *help;
};

/* A uint64_t of the scrape (a process figure), or element k of an array of them. */
static bool get_u64(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = ((const uint64_t *)((const char *)s + m->off))[k];
	return true;
}

static bool get_one(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = 1;
	return true;
}

/* A figure of struct scrape_peer (element k of an array of them). */
static bool get_peer(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = ((const uint64_t *)((const char *)&s->peers[i] + m->off))[k];
	return true;
}

static bool get_zk_state(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = s->zk.state == (enum zk_state)(ZK_CONNECTING + (int)k);
	return true;
}

/* A counter of struct zk_stats. */
static bool get_zk(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = *(const uint64_t *)((const char *)&s->zk + m->off);
	return true;
}

/* An atomic counter of struct service. */
static bool get_service(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	_Atomic uint64_t *p = (_Atomic uint64_t *)((char *)s->c->services[i] + m->off);
	*out = atomic_load(p);
	return true;
}

/*
 * locality: members of service i in this host's zone (m->off 0) or those of
 * them routable now (m->off 1); no series when zones are ignored. Control
 * thread: members and payloads are read without a lock.
 */
static bool get_local_zone(const struct scrape *s, const struct metric *m, size_t i, size_t k,
			   uint64_t *out)
{
	const struct service *svc = s->c->services[i];
	const struct service_conf *sc = &s->c->cfg->cfg->services[i];
	const char *zone = s->c->cfg->cfg->zone;
	if (sc->locality.prefer != LOCALITY_ZONE || !zone)
		return false;
	uint64_t now = now_ms(), n = 0;
	for (size_t j = 0; j < svc->n_members; j++) {
		const struct backend *be = svc->members[j];
		if (locality_in_zone(be->payload, be->payload_len, sc->locality.zone_key, zone))
			n += m->off == 0 || backend_routable(be, now);
	}
	*out = n;
	return true;
}

static bool get_panic(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = s->services[i].panic;
	return true;
}

/* A counter of struct discovery_stats; only services discovery knows have one. */
static bool get_discovery(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	const struct scrape_service *ss = &s->services[i];
	if (!ss->has_discovery)
		return false;
	*out = *(const uint64_t *)((const char *)&ss->ds + m->off);
	return true;
}

/* A counter of struct sentinel_stats; only sentinel services have one. */
static bool get_sentinel(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	const struct scrape_service *ss = &s->services[i];
	if (!ss->has_sentinel)
		return false;
	*out = *(const uint64_t *)((const char *)&ss->sn + m->off);
	return true;
}

static bool get_in_sync(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = service_view_in_sync(s->c->services[i]->view);
	return true;
}

/* An atomic counter of struct backend, 64 or (active, idle) 32 bits wide. */
static bool get_backend64(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	_Atomic uint64_t *p = (_Atomic uint64_t *)((char *)s->backends[i].inst->be + m->off);
	*out = atomic_load(p);
	return true;
}

static bool get_backend32(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	_Atomic uint32_t *p = (_Atomic uint32_t *)((char *)s->backends[i].inst->be + m->off);
	*out = atomic_load(p);
	return true;
}

/* The handshakes with a backend that ended with result k. */
static bool get_backend_tls(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = atomic_load(&s->backends[i].inst->be->tls_handshakes[k]);
	return true;
}

/* Ciphertext bytes of a backend's TLS connections, k = 0: in, 1: out. */
static bool get_backend_tls_bytes(const struct scrape *s, const struct metric *m, size_t i, size_t k,
				  uint64_t *out)
{
	*out = atomic_load(&s->backends[i].inst->be->tls_bytes[k]);
	return true;
}

static bool get_ejections(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = s->backends[i].inst->ejections;
	return true;
}

static bool get_healthy(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	struct backend *be = s->backends[i].inst->be;
	*out = atomic_load(&be->member) && backend_routable(be, s->now_ms);
	return true;
}

/* A counter of struct announce_stats. */
static bool get_announce(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = *(const uint64_t *)((const char *)&s->announce[i] + m->off);
	return true;
}

static bool get_announce_healthy(const struct scrape *s, const struct metric *m, size_t i, size_t k,
				 uint64_t *out)
{
	*out = s->announce[i].healthy;
	return true;
}

/* A counter of struct sync_stats. */
static bool get_sync(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = *(const uint64_t *)((const char *)&s->sync[i] + m->off);
	return true;
}

/* A counter of struct render_stats. */
static bool get_render(const struct scrape *s, const struct metric *m, size_t i, size_t k, uint64_t *out)
{
	*out = *(const uint64_t *)((const char *)&s->render[i] + m->off);
	return true;
}

static const char *render_skip_reason(size_t k)
{
	static const char *const names[] = { "unchanged", "below_min_instances", "check_failed",
					     "write_failed" };
	return k < ARRAY_SIZE(names) ? names[k] : NULL;
}

static bool get_render_skipped(const struct scrape *s, const struct metric *m, size_t i, size_t k,
			       uint64_t *out)
{
	const struct render_stats *r = &s->render[i];
	const uint64_t v[] = { r->unchanged, r->below_min, r->check_failed, r->write_failed };
	*out = v[k];
	return true;
}

static const char *lookup_result(size_t k)
{
	static const char *const names[] = { "ok", "failed", "timed_out", "refused" };
	return k < ARRAY_SIZE(names) ? names[k] : NULL;
}

static const char *close_reason(size_t k)
{
	return k < RELAY_CLOSE_REASONS ? relay_close_reason_name((enum relay_close_reason)k) : NULL;
}

static const char *discard_reason(size_t k)
{
	return k < POOL_DISCARD_COUNT ? pool_discard_name((enum pool_discard)k) : NULL;
}

/* Verdict 0 is "reusable": not counted, not listed. */
static const char *not_reusable_verdict(size_t k)
{
	return k + 1 < FRAMING_VERDICT_COUNT ? framing_verdict_name((enum framing_verdict)(k + 1)) : NULL;
}

static const char *admin_close_reason(size_t k)
{
	return k < ADMIN_CLOSE_COUNT ? admin_close_name((enum admin_close)k) : NULL;
}

static const char *tls_result(size_t k)
{
	return k < TLS_RESULTS ? tls_result_name((enum tls_result)k) : NULL;
}

static const char *tls_direction(size_t k)
{
	static const char *const names[] = { "in", "out" };
	return k < ARRAY_SIZE(names) ? names[k] : NULL;
}

static const char *trunk_refusal(size_t k)
{
	static const char *const names[] = { "not_announced", "bad_request", "limit" };
	return k < ARRAY_SIZE(names) ? names[k] : NULL;
}

static const char *session_state(size_t k)
{
	return ZK_CONNECTING + (int)k <= ZK_CLOSED ? zk_state_name((enum zk_state)(ZK_CONNECTING + (int)k)) : NULL;
}

static const char *build_version(const struct scrape *s, size_t i)
{
	return ZKLB_VERSION;
}

static const char *discovery_view_of(const struct scrape *s, size_t i)
{
	return service_view_name(s->c->services[i]->view);
}

#define AT(st, field) offsetof(struct st, field)

/*
 * Every family of /metrics, in the order it is written. The README's list
 * and tests/integration/test_admin.py read this table too (through
 * metrics_info), so a family is added, renamed or described here only.
 */
static const struct metric metrics[] = {
	{ "zklb_info", "gauge", SCOPE_PROCESS, "version", NULL, build_version, get_one, 0,
	  "Build information." },
	{ "zklb_uptime_seconds", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, uptime_s),
	  "Seconds since start." },
	{ "zklb_workers", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, workers),
	  "Data-plane threads." },
	{ "zklb_draining", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, draining),
	  "1 while draining for exit." },
	{ "zklb_reloads_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, reloads),
	  "Configuration reloads applied." },
	{ "zklb_upgrade_failures_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, upgrade_failures),
	  "Hot upgrades that failed (the new binary did not start serving); this process served on." },
	{ "zklb_reload_failures_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, reload_failures),
	  "Reloads rejected (old configuration kept)." },
	{ "zklb_resolver_lookups_total", "counter", SCOPE_PROCESS, "result", lookup_result, NULL, get_u64,
	  AT(scrape, lookups),
	  "Host name lookups of backends, by result." },
	{ "zklb_resolver_pending", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, lookups_pending),
	  "Backends waiting for their host name to resolve." },
	{ "zklb_resolver_threads", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, lookup_threads),
	  "Host name lookups in flight, each on a thread (given-up ones until DNS returns)." },
	{ "zklb_connections_active", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, relays),
	  "Client connections open, all services." },
	{ "zklb_accept_errors_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, accept_errors),
	  "accept() failures, e.g. out of file descriptors." },
	{ "zklb_accept_fd_reserve_refusals_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, fd_refused),
	  "Clients closed at once because their descriptor was among those kept for the control plane." },
	{ "zklb_relay_buffer_bytes", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, buffer_bytes),
	  "Bytes relays hold for slow readers, all workers (max_buffer_memory caps it)." },
	{ "zklb_relay_buffer_refusals_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, buffer_refusals),
	  "Client connections closed because no buffer could be had (max_buffer_memory, or memory)." },
	{ "zklb_kernel_relay_available", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, kernel_relay),
	  "1 when the in-kernel relay (BPF sockmap) is loaded; 0 when no service asks for it or the kernel refused it." },
	{ "zklb_connections_closed_total", "counter", SCOPE_PROCESS, "reason", close_reason, NULL, get_u64,
	  AT(scrape, closes),
	  "Client connections closed, by reason." },
	{ "zklb_access_log_lines_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, access_lines),
	  "Access log lines written (log.access)." },
	{ "zklb_access_log_dropped_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, access_dropped),
	  "Access log records dropped because the logger did not keep up." },
	{ "zklb_access_log_write_errors_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, access_write_errors),
	  "Access log lines lost to failed writes." },
	{ "zklb_upstream_connections_discarded_total", "counter", SCOPE_PROCESS, "reason", discard_reason, NULL,
	  get_u64, AT(scrape, discards),
	  "Upstream connections closed instead of pooled or kept, by reason." },
	{ "zklb_upstream_not_reusable_total", "counter", SCOPE_PROCESS, "verdict", not_reusable_verdict, NULL,
	  get_u64, AT(scrape, not_reusable[1]),
	  "Upstream connections the framing tracker kept out of the pool, by verdict." },
	{ "zklb_admin_connections_closed_total", "counter", SCOPE_PROCESS, "reason", admin_close_reason, NULL,
	  get_u64, AT(scrape, admin_closes),
	  "Admin API connections closed, by reason." },
	{ "zklb_admin_connections_open", "gauge", SCOPE_PROCESS, NULL, NULL, NULL, get_u64, AT(scrape, admin_open),
	  "Admin API connections open." },
	{ "zklb_admin_accept_paused_total", "counter", SCOPE_PROCESS, NULL, NULL, NULL, get_u64,
	  AT(scrape, admin_paused),
	  "Times the admin API stopped accepting at admin.max_connections." },

	{ "zklb_zookeeper_connected", "gauge", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_u64,
	  AT(scrape, zk_connected),
	  "1 while the ZooKeeper session is connected." },
	{ "zklb_zookeeper_session_state", "gauge", SCOPE_ZOOKEEPER, "state", session_state, NULL,
	  get_zk_state, 0,
	  "1 for the current session state." },
	{ "zklb_zookeeper_sessions_total", "counter", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_zk,
	  AT(zk_stats, sessions_total),
	  "Sessions established." },
	{ "zklb_zookeeper_disconnects_total", "counter", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_zk,
	  AT(zk_stats, disconnects_total),
	  "Connections to ZooKeeper lost." },
	{ "zklb_zookeeper_expirations_total", "counter", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_zk,
	  AT(zk_stats, expirations_total),
	  "Sessions expired." },
	{ "zklb_sentinel_switches_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_sentinel,
	  AT(sentinel_stats, switches_total),
	  "Primaries replaced in a sentinel service's view (failovers followed)." },
	{ "zklb_sentinel_failures_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_sentinel,
	  AT(sentinel_stats, failures_total),
	  "Failed Sentinel queries, ROLE confirmations and lost subscriptions." },
	{ "zklb_zookeeper_auth_failures_total", "counter", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_zk,
	  AT(zk_stats, auth_failures_total),
	  "Sessions whose credentials the ensemble refused or required." },
	{ "zklb_zookeeper_tls_handshakes_total", "counter", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_zk,
	  AT(zk_stats, tls_handshakes_total),
	  "zookeeper.tls: TLS handshakes completed with an ensemble member." },
	{ "zklb_zookeeper_tls_handshake_failures_total", "counter", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_zk,
	  AT(zk_stats, tls_handshake_failures_total),
	  "zookeeper.tls: handshakes refused (chain or name not verified, protocol error, stall)." },
	{ "zklb_zookeeper_tls_connect_failures_total", "counter", SCOPE_ZOOKEEPER, NULL, NULL, NULL, get_zk,
	  AT(zk_stats, tls_connect_failures_total),
	  "zookeeper.tls: ensemble members not resolved or not reached." },
	{ "zklb_discovery_bad_instances_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, bad_instances_total),
	  "Malformed instance nodes skipped." },
	{ "zklb_discovery_unroutable_instances_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, unroutable_total),
	  "Well-formed instance nodes without the port the service uses (sslPort only, no tls)." },
	{ "zklb_discovery_duplicate_instances_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, duplicates_total),
	  "Instance nodes skipped because another node of the same id is kept." },
	{ "zklb_discovery_held_changes_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, held_total),
	  "Collapses held by the collapse guard." },
	{ "zklb_discovery_kept_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, kept_total),
	  "Empty views refused by keep_last_known." },
	{ "zklb_discovery_errors_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, errors_total),
	  "ZooKeeper read errors other than connection loss." },
	{ "zklb_discovery_lists_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, lists_total),
	  "Children lists asked of ZooKeeper (one per coalesce window at most)." },
	{ "zklb_discovery_gets_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, gets_total),
	  "Instance data reads asked of ZooKeeper." },
	{ "zklb_discovery_read_wait_ms", "gauge", SCOPE_SERVICE, NULL, NULL, NULL, get_discovery,
	  AT(discovery_stats, read_wait_ms),
	  "How long a known change has waited for its coalesced or jittered read (0 = none)." },
	{ "zklb_discovery_connected", "gauge", SCOPE_SERVICE, "state", NULL, discovery_view_of, get_in_sync, 0,
	  "1 when the service's view is in sync with ZooKeeper (or static)." },

	{ "zklb_announce_registrations_total", "counter", SCOPE_ANNOUNCE, NULL, NULL, NULL, get_announce,
	  AT(announce_stats, registrations_total),
	  "Announced nodes created." },
	{ "zklb_announce_deregistrations_total", "counter", SCOPE_ANNOUNCE, NULL, NULL, NULL, get_announce,
	  AT(announce_stats, deregistrations_total),
	  "Announced nodes deleted." },
	{ "zklb_announce_failures_total", "counter", SCOPE_ANNOUNCE, NULL, NULL, NULL, get_announce,
	  AT(announce_stats, failures_total),
	  "Creates/deletes that failed." },
	{ "zklb_announce_restored_total", "counter", SCOPE_ANNOUNCE, NULL, NULL, NULL, get_announce,
	  AT(announce_stats, restored_total),
	  "Announced nodes rewritten by another client and restored." },
	{ "zklb_announce_check_failures_total", "counter", SCOPE_ANNOUNCE, NULL, NULL, NULL, get_announce,
	  AT(announce_stats, check_failures_total),
	  "Failed local health checks." },
	{ "zklb_announce_healthy", "gauge", SCOPE_ANNOUNCE, NULL, NULL, NULL, get_announce_healthy, 0,
	  "1 while the announced service passes its check." },
	{ "zklb_sync_writes_total", "counter", SCOPE_SYNC, NULL, NULL, NULL, get_sync,
	  AT(sync_stats, writes_total),
	  "Files written." },
	{ "zklb_sync_removals_total", "counter", SCOPE_SYNC, NULL, NULL, NULL, get_sync,
	  AT(sync_stats, removals_total),
	  "Files removed." },
	{ "zklb_sync_refused_total", "counter", SCOPE_SYNC, NULL, NULL, NULL, get_sync,
	  AT(sync_stats, refused_total),
	  "Nodes and children refused (max_size, max_total_size, names, max_children, unusable names)." },
	{ "zklb_sync_errors_total", "counter", SCOPE_SYNC, NULL, NULL, NULL, get_sync,
	  AT(sync_stats, errors_total),
	  "File or ZooKeeper errors." },
	{ "zklb_sync_commands_total", "counter", SCOPE_SYNC, NULL, NULL, NULL, get_sync,
	  AT(sync_stats, commands_total),
	  "on_change runs started." },
	{ "zklb_sync_command_failures_total", "counter", SCOPE_SYNC, NULL, NULL, NULL, get_sync,
	  AT(sync_stats, command_failures_total),
	  "on_change runs that failed or timed out." },
	{ "zklb_render_writes_total", "counter", SCOPE_RENDER, NULL, NULL, NULL, get_render,
	  AT(render_stats, written),
	  "Rendered files replaced." },
	{ "zklb_render_skipped_total", "counter", SCOPE_RENDER, "reason", render_skip_reason, NULL,
	  get_render_skipped, 0,
	  "Renders that left the file as it was, by reason." },
	{ "zklb_render_on_change_total", "counter", SCOPE_RENDER, NULL, NULL, NULL, get_render,
	  AT(render_stats, on_change_runs),
	  "on_change runs started after a render." },
	{ "zklb_render_on_change_failures_total", "counter", SCOPE_RENDER, NULL, NULL, NULL, get_render,
	  AT(render_stats, on_change_failed),
	  "on_change runs that failed, timed out or did not start." },
	{ "zklb_render_instances_left_out", "gauge", SCOPE_RENDER, NULL, NULL, NULL, get_render,
	  AT(render_stats, left_out),
	  "Instances of the current set left out of the file (values a file must not get)." },
	{ "zklb_config_overlay_applied_total", "counter", SCOPE_OVERLAY, NULL, NULL, NULL, get_u64,
	  AT(scrape, overlay_applied),
	  "Overlay documents applied." },
	{ "zklb_config_overlay_rejected_total", "counter", SCOPE_OVERLAY, NULL, NULL, NULL, get_u64,
	  AT(scrape, overlay_rejected),
	  "Overlay documents rejected." },
	{ "zklb_config_overlay_in_force", "gauge", SCOPE_OVERLAY, NULL, NULL, NULL, get_u64,
	  AT(scrape, overlay_in_force),
	  "1 while an overlay from ZooKeeper applies." },
	{ "zklb_config_overlay_cached", "gauge", SCOPE_OVERLAY, NULL, NULL, NULL, get_u64,
	  AT(scrape, overlay_cached),
	  "1 while the overlay in force comes from cache_dir (ZooKeeper has not answered)." },

	{ "zklb_service_connections_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, conn_total),
	  "Client connections accepted." },
	{ "zklb_service_connections_failed_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, conn_failed),
	  "Client connections closed without reaching a backend." },
	{ "zklb_service_retries_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, retries),
	  "Connect attempts after the first." },
	{ "zklb_service_wait_timeouts_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, wait_timeouts),
	  "Clients that waited for a first view in vain." },
	{ "zklb_service_connections_open", "gauge", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, conn_open),
	  "Client connections open." },
	{ "zklb_service_accept_paused_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, cap_pauses),
	  "Times accepting paused at max_connections (the service's or the global one)." },
	{ "zklb_service_queued", "gauge", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, queued),
	  "Clients queued now for a slot beyond max_connections (queue_timeout)." },
	{ "zklb_service_queued_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, queued_total),
	  "Clients that entered the queue." },
	{ "zklb_service_queue_timeouts_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, queue_timeouts),
	  "Queued clients closed after queue_timeout without a slot (or finding the queue full)." },
	{ "zklb_service_queue_full_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, queue_full),
	  "Times accepting paused because queue_max clients were queued (the rest wait in the backlog)." },
	{ "zklb_service_refused_instances_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, refused),
	  "Instances whose address allowed_networks/denied_networks or zklb's own listeners refused." },
	{ "zklb_service_ejections_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, ejections),
	  "Passive ejections." },
	{ "zklb_service_held_drops_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, held_drops),
	  "Instances dropped at a failure while ZooKeeper no longer lists them (removal held)." },
	{ "zklb_service_check_failures_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, check_failures),
	  "Active health check failures." },
	{ "zklb_service_at_capacity_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, at_capacity),
	  "Connects refused because every instance left had max_connections_per_instance open." },
	{ "zklb_service_out_of_zone_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, out_of_zone),
	  "Connects sent out of this host's zone (locality: prefer zone)." },
	{ "zklb_service_kernel_relays_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, kernel_relays),
	  "Connections the in-kernel relay took (relay: kernel or auto)." },
	{ "zklb_service_kernel_fallbacks_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, kernel_fallbacks),
	  "Connections meant for the in-kernel relay and relayed in user space (BPF refused or pairing failed)." },
	{ "zklb_service_kernel_spills_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, kernel_spills),
	  "Kernel-relayed connections moved to the user-space relay: a reader fell more than max_buffer behind." },
	{ "zklb_service_local_zone_instances", "gauge", SCOPE_SERVICE, NULL, NULL, NULL, get_local_zone, 0,
	  "Instances in this host's zone (locality: prefer zone)." },
	{ "zklb_service_local_zone_routable", "gauge", SCOPE_SERVICE, NULL, NULL, NULL, get_local_zone, 1,
	  "Routable instances in this host's zone (locality: prefer zone)." },
	{ "zklb_service_panics_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, panics),
	  "Times panic mode was entered." },
	{ "zklb_discovery_updates_total", "counter", SCOPE_SERVICE, NULL, NULL, NULL, get_service,
	  AT(service, view_updates),
	  "Member changes applied." },
	{ "zklb_service_panic", "gauge", SCOPE_SERVICE, NULL, NULL, NULL, get_panic, 0,
	  "1 while the service balances over all instances." },

	{ "zklb_backend_connections_active", "gauge", SCOPE_BACKEND, NULL, NULL, NULL, get_backend32,
	  AT(backend, active),
	  "Connections open or connecting." },
	{ "zklb_backend_connections_total", "counter", SCOPE_BACKEND, NULL, NULL, NULL, get_backend64,
	  AT(backend, conn_total),
	  "Connections routed to the backend." },
	{ "zklb_backend_connect_failures_total", "counter", SCOPE_BACKEND, NULL, NULL, NULL, get_backend64,
	  AT(backend, connect_failures),
	  "Refused, timed out or reset before the first byte." },
	{ "zklb_backend_bytes_in_total", "counter", SCOPE_BACKEND, NULL, NULL, NULL, get_backend64,
	  AT(backend, bytes_in),
	  "Bytes from the backend to clients." },
	{ "zklb_backend_bytes_out_total", "counter", SCOPE_BACKEND, NULL, NULL, NULL, get_backend64,
	  AT(backend, bytes_out),
	  "Bytes from clients to the backend." },
	{ "zklb_backend_ejections_total", "counter", SCOPE_BACKEND, NULL, NULL, NULL, get_ejections, 0,
	  "Passive ejections of the backend." },
	{ "zklb_backend_healthy", "gauge", SCOPE_BACKEND, NULL, NULL, NULL, get_healthy, 0,
	  "1 when the backend takes new connections." },
	{ "zklb_upstream_connections_opened_total", "counter", SCOPE_BACKEND, NULL, NULL, NULL, get_backend64,
	  AT(backend, upstream_opened),
	  "Upstream connections opened, prewarm included." },
	{ "zklb_upstream_connections_reused_total", "counter", SCOPE_BACKEND, NULL, NULL, NULL, get_backend64,
	  AT(backend, upstream_reused),
	  "Upstream connections taken from the idle pool." },
	{ "zklb_upstream_idle_connections", "gauge", SCOPE_BACKEND, NULL, NULL, NULL, get_backend32,
	  AT(backend, idle),
	  "Idle pooled upstream connections." },
	{ "zklb_backend_tls_handshakes_total", "counter", SCOPE_BACKEND, "result", tls_result, NULL,
	  get_backend_tls, 0,
	  "Upstream TLS handshakes (relay, prewarm), by result: full, resumed, or failed by reason." },
	{ "zklb_backend_tls_bytes_total", "counter", SCOPE_BACKEND, "direction", tls_direction, NULL,
	  get_backend_tls_bytes, 0,
	  "Bytes on the wire of upstream TLS connections (records, handshakes), in = from the backend." },

	{ "zklb_trunk_connections_accepted_total", "counter", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_accepted),
	  "TCP connections accepted by the trunk listener." },
	{ "zklb_trunk_connections", "gauge", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_conns),
	  "Trunk connections open (past the TLS handshake), from all calling hosts." },
	{ "zklb_trunk_handshake_failures_total", "counter", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_handshake_failures),
	  "Trunk connections whose TLS handshake failed or timed out (a missing or untrusted client certificate)." },
	{ "zklb_trunk_streams_total", "counter", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_streams),
	  "Streams (CONNECT requests) received." },
	{ "zklb_trunk_streams_active", "gauge", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_streams_open),
	  "Streams open now." },
	{ "zklb_trunk_streams_refused_total", "counter", SCOPE_TRUNK, "reason", trunk_refusal, NULL,
	  get_u64, AT(scrape, trunk_refused),
	  "Streams refused: an address this host does not announce (403), not a CONNECT to host:port (400), over max_streams." },
	{ "zklb_trunk_connect_failures_total", "counter", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_connect_failures),
	  "Streams whose local backend refused or timed out (answered 502/504)." },
	{ "zklb_trunk_resets_total", "counter", SCOPE_TRUNK, "direction", tls_direction, NULL, get_u64,
	  AT(scrape, trunk_resets),
	  "RST_STREAM received from callers (in) and sent for backend resets or errors (out)." },
	{ "zklb_trunk_bytes_total", "counter", SCOPE_TRUNK, "direction", tls_direction, NULL, get_u64,
	  AT(scrape, trunk_bytes),
	  "Stream bytes relayed: in = from calling hosts to backends." },
	{ "zklb_trunk_window_stalls_total", "counter", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_window_stalls),
	  "Times a stream stopped reading its backend because its caller's window was shut (a slow reader)." },
	{ "zklb_trunk_protocol_errors_total", "counter", SCOPE_TRUNK, NULL, NULL, NULL, get_u64,
	  AT(scrape, trunk_protocol_errors),
	  "Trunk connections ended by a GOAWAY with an error: the calling host broke HTTP/2 (framing, HPACK, flow control)." },

	{ "zklb_trunk_peer_connections_opened_total", "counter", SCOPE_TRUNK_PEER, NULL, NULL, NULL,
	  get_peer, AT(scrape_peer, opened),
	  "Calling side: trunk connections opened to the peer host (on demand, and to replace failed ones)." },
	{ "zklb_trunk_peer_connections", "gauge", SCOPE_TRUNK_PEER, NULL, NULL, NULL, get_peer,
	  AT(scrape_peer, conns),
	  "Calling side: trunk connections to the peer open now (past the TLS handshake)." },
	{ "zklb_trunk_peer_handshake_failures_total", "counter", SCOPE_TRUNK_PEER, NULL, NULL, NULL,
	  get_peer, AT(scrape_peer, handshake_failures),
	  "Calling side: trunk connections whose TCP connect or TLS handshake failed (refused, untrusted or misnamed certificate, timeout)." },
	{ "zklb_trunk_peer_streams_total", "counter", SCOPE_TRUNK_PEER, NULL, NULL, NULL, get_peer,
	  AT(scrape_peer, streams),
	  "Calling side: streams (client connections) sent to the peer." },
	{ "zklb_trunk_peer_streams_active", "gauge", SCOPE_TRUNK_PEER, NULL, NULL, NULL, get_peer,
	  AT(scrape_peer, streams_open),
	  "Calling side: streams to the peer open now." },
	{ "zklb_trunk_peer_stream_failures_total", "counter", SCOPE_TRUNK_PEER, NULL, NULL, NULL,
	  get_peer, AT(scrape_peer, failures),
	  "Calling side: streams that did not open (refused by the peer, reset, no trunk); each is a failed connect of its instance." },
	{ "zklb_trunk_peer_resets_total", "counter", SCOPE_TRUNK_PEER, "direction", tls_direction, NULL,
	  get_peer, AT(scrape_peer, resets),
	  "Calling side: RST_STREAM received from the peer (in) and sent to it (out)." },
	{ "zklb_trunk_peer_bytes_total", "counter", SCOPE_TRUNK_PEER, "direction", tls_direction, NULL,
	  get_peer, AT(scrape_peer, bytes),
	  "Calling side: stream bytes, in = from the peer to local clients." },
	{ "zklb_trunk_peer_window_stalls_total", "counter", SCOPE_TRUNK_PEER, NULL, NULL, NULL, get_peer,
	  AT(scrape_peer, window_stalls),
	  "Calling side: times a stream stopped reading its client because the peer's window was shut (a slow remote reader)." },
	{ "zklb_trunk_peer_protocol_errors_total", "counter", SCOPE_TRUNK_PEER, NULL, NULL, NULL,
	  get_peer, AT(scrape_peer, protocol_errors),
	  "Calling side: trunk connections ended by a GOAWAY with an error: the peer broke HTTP/2 (framing, HPACK, flow control)." },
};

/* What each scope's series are labelled with, and when its families are written. */
static const struct {
	const char *labels[METRICS_SCOPE_LABELS];	/* names; NULL after the last */
	const char *when;				/* NULL: always */
} scopes[] = {
	[SCOPE_PROCESS] = { { NULL }, NULL },
	[SCOPE_ZOOKEEPER] = { { NULL }, "with a zookeeper: section" },
	[SCOPE_OVERLAY] = { { NULL }, "with zookeeper.config_path" },
	[SCOPE_SERVICE] = { { "service" }, NULL },
	[SCOPE_BACKEND] = { { "service", "backend" }, NULL },
	[SCOPE_ANNOUNCE] = { { "service", "path" }, "with announce entries" },
	[SCOPE_SYNC] = { { "path" }, "with sync entries" },
	[SCOPE_RENDER] = { { "service", "file" }, "with render entries" },
	[SCOPE_TRUNK] = { { NULL }, "with a trunk: section" },
	[SCOPE_TRUNK_PEER] = { { "peer" }, "once the calling side met a peer" },
};

static size_t scope_count(const struct scrape *s, enum metric_scope scope)
{
	switch (scope) {
	case SCOPE_PROCESS: return 1;
	case SCOPE_ZOOKEEPER: return s->c->zk ? 1 : 0;
	case SCOPE_OVERLAY: return s->c->overlay ? 1 : 0;
	case SCOPE_SERVICE: return s->c->n_services;
	case SCOPE_BACKEND: return s->n_backends;
	case SCOPE_ANNOUNCE: return s->n_announce;
	case SCOPE_SYNC: return s->n_sync;
	case SCOPE_RENDER: return s->n_render;
	case SCOPE_TRUNK: return s->c->trunk ? 1 : 0;
	case SCOPE_TRUNK_PEER: return s->n_peers;
	}
	return 0;
}

/* The values of the scope's labels for object i, in the order scopes[] names them. */
static void scope_values(const struct scrape *s, enum metric_scope scope, size_t i,
			 const char *out[METRICS_SCOPE_LABELS])
{
	switch (scope) {
	case SCOPE_SERVICE:
		out[0] = s->c->services[i]->name;
		break;
	case SCOPE_BACKEND:
		out[0] = s->c->services[s->backends[i].service]->name;
		out[1] = s->backends[i].inst->be->name;
		break;
	case SCOPE_ANNOUNCE:
		out[0] = s->announce[i].service;
		out[1] = s->announce[i].path;
		break;
	case SCOPE_SYNC:
		out[0] = s->sync[i].path;
		break;
	case SCOPE_RENDER:
		out[0] = s->render_conf[i]->service;
		out[1] = s->render_conf[i]->file;
		break;
	case SCOPE_TRUNK_PEER:
		out[0] = s->peers[i].name;
		break;
	case SCOPE_PROCESS:
	case SCOPE_ZOOKEEPER:
	case SCOPE_OVERLAY:
	case SCOPE_TRUNK:
		break;
	}
}

/* One sample line: name{scope labels of object i,own label} value. */
static void series_write(struct evbuffer *b, const struct scrape *s, const struct metric *m, size_t i,
			 const char *own, uint64_t value)
{
	const char *values[METRICS_SCOPE_LABELS] = { NULL };
	scope_values(s, m->scope, i, values);
	size_t n = 0;
	evbuffer_add_printf(b, "%s", m->name);
	for (size_t j = 0; j < METRICS_SCOPE_LABELS && scopes[m->scope].labels[j]; j++, n++) {
		evbuffer_add_printf(b, "%s%s=\"", n ? "," : "{", scopes[m->scope].labels[j]);
		label_escape(b, values[j]);
		evbuffer_add(b, "\"", 1);
	}
	if (own) {
		evbuffer_add_printf(b, "%s%s=\"", n++ ? "," : "{", m->label);
		label_escape(b, own);
		evbuffer_add(b, "\"", 1);
	}
	evbuffer_add_printf(b, "%s %llu\n", n ? "}" : "", (unsigned long long)value);
}

/* HELP, TYPE and every series of one family; nothing when its scope has no objects. */
static void family_write(struct evbuffer *b, const struct scrape *s, const struct metric *m)
{
	size_t n = scope_count(s, m->scope);
	/* Services and backends always show their families, even with none configured. */
	if (n == 0 && m->scope != SCOPE_SERVICE && m->scope != SCOPE_BACKEND)
		return;
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0;; k++) {
			const char *own = NULL;
			if (m->label_values) {
				own = m->label_values(k);
				if (!own)
					break;
			} else if (k > 0) {
				break;
			} else if (m->label_of) {
				own = m->label_of(s, i);
			}
			uint64_t value;
			if (m->get(s, m, i, k, &value))
				series_write(b, s, m, i, own, value);
		}
	}
}

bool metrics_info(size_t i, struct metrics_info *out)
{
	if (i >= ARRAY_SIZE(metrics))
		return false;
	const struct metric *m = &metrics[i];
	*out = (struct metrics_info){
		.name = m->name,
		.type = m->type,
		.label = m->label,
		.label_values = m->label_values,
		.when = scopes[m->scope].when,
		.help = m->help,
	};
	for (size_t j = 0; j < METRICS_SCOPE_LABELS; j++)
		out->scope_labels[j] = scopes[m->scope].labels[j];
	return true;
}

void metrics_write(struct evbuffer *b, struct control *c)
{
	struct scrape s;
	scrape_gather(&s, c);
	for (size_t i = 0; i < ARRAY_SIZE(metrics); i++)
		family_write(b, &s, &metrics[i]);
	scrape_free(&s);
}
