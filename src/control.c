/*
 * control — see control.h. What the control thread owns, in file order:
 *   - members: static backends, host names to resolve, discovery's views
 *     and states, each published to the workers as a new snapshot;
 *   - reload: control_apply() and its named steps (listen addresses,
 *     services, their checks via checker.c), the overlay, SIGHUP;
 *   - stop: SIGTERM/SIGINT, announce's withdraw, the drain;
 *   - the 100ms tick (service health time, the drain deadline);
 *   - lifecycle: control_new/run/free.
 * Health policy is service.c's, active checks checker.c's: this file only
 * wires them.
 *
 * Reload is two-phase: first everything that can fail (opening new listening
 * sockets) is done on the side; only when all of it worked are the new
 * snapshots handed to workers and the old configuration released. A reload
 * that fails at any step leaves the running state exactly as it was.
 */
#include "control.h"
#include "accesslog.h"
#include "admin.h"
#include "announce.h"
#include "checker.h"
#include "discovery.h"
#include "krelay.h"
#include "listener.h"
#include "overlay.h"
#include "renderer.h"
#include "resolver.h"
#include "sentinel.h"
#include "sync.h"
#include "upgrade.h"
#include "zk.h"
#include "log.h"
#include "trunk_client.h"
#include "trunk_listener.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 100
#define WITHDRAW_WAIT_MS 1000	/* SIGTERM: longest wait for announce's deletes */
#define UPGRADE_READY_MS 30000	/* SIGUSR2: longest wait for the new binary to serve */

static struct listen_entry *find_listen(struct control *c, const char *key)
{
	for (struct listen_entry *e = c->listens; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void static_members(struct service *svc, const struct service_conf *sc, uint64_t now)
{
	const struct discovery_conf *d = &sc->discovery;
	struct member_spec *v = xcalloc(d->n_backends, sizeof(*v));
	for (size_t i = 0; i < d->n_backends; i++) {
		v[i].id = d->backends[i].address;
		v[i].host = d->backends[i].host;
		v[i].port = d->backends[i].port;
		v[i].weight = d->backends[i].weight;
	}
	service_set_members(svc, v, d->n_backends, now);
	free(v);
}

/*
 * Members named by a host name get their address from the resolver. At
 * start, static backends are looked up at once, as a configuration file's
 * names are by any proxy, so they serve from the first connection; what
 * fails there, names added by a reload or an overlay, and every name
 * discovery brings, are looked up off this thread: once running, the
 * control thread never waits for DNS.
 */
static void control_resolve(struct control *c, struct service *svc, const struct service_conf *sc,
			    bool now)
{
	const struct resolver_policy pol = {
		.allow_hostnames = sc->discovery.allow_hostnames,
		.max_lookups = sc->discovery.max_lookups,
		.timeout_ms = sc->discovery.lookup_timeout_ms,
	};

	for (size_t i = 0; i < svc->n_members; i++) {
		struct backend *be = svc->members[i];
		/* A refused one goes to resolver_submit, which may lift a
		 * hostname_not_allowed refusal the new configuration allows. */
		if (backend_has_addr(be) || be->resolving)
			continue;
		struct net_addr a;
		char err[256];
		if (now && pol.allow_hostnames && !backend_refused(be)) {
			if (net_addr_resolve(be->host, be->port, &a, err, sizeof(err))) {
				if (service_admit(svc, be, &a)) {
					backend_set_addr(be, &a);
					service_backend_ready(svc, be, now_ms());
				}
				continue;
			}
			/* The resolver tries again, and logs what fails there. */
		}
		resolver_submit(c->resolver, be, &pol);
	}
}

/* Index of the service named `name` in the running configuration, or -1. */
static long service_index(const struct control *c, const char *name)
{
	for (size_t i = 0; i < c->n_services; i++)
		if (strcmp(c->services[i]->name, name) == 0)
			return (long)i;
	return -1;
}

/* A member's host name resolved: unless the policy refuses the address, it
 * may be routed and checked now. */
static void on_resolved(void *arg, struct backend *be, const struct net_addr *addr)
{
	struct control *c = arg;
	for (size_t i = 0; i < c->n_services; i++) {
		struct service *svc = c->services[i];
		if (!service_has_member(svc, be))
			continue;
		if (!service_admit(svc, be, addr))
			return;
		backend_set_addr(be, addr);
		service_backend_ready(svc, be, now_ms());
		checker_sync(c->checker, svc, &c->cfg->cfg->services[i], false);
		return;
	}
}

/*
 * Hand svc's current members to every worker as a new snapshot. fds: new
 * listening sockets for sc->listen, one per worker (ownership passes to the
 * workers), or NULL for an address the workers already accept on.
 */
static void control_publish(struct control *c, struct service *svc,
			    const struct service_conf *sc, const int *fds, bool ready)
{
	struct backend_set *s = backend_set_publish(svc, c->cfg, sc, ready);
	for (unsigned w = 0; sc->listen && w < c->n_workers; w++) {
		if (fds)
			worker_post_listen(c->workers[w], sc->listen, fds[w], backend_set_get(s));
		else
			worker_post_update(c->workers[w], sc->listen, backend_set_get(s));
	}
	backend_set_put(s);
}

/* Discovery's instances as members of sc's service; free() the result. */
static struct member_spec *member_specs(const struct service_conf *sc, const struct instance *v,
					size_t n)
{
	struct member_spec *m = xcalloc(n ? n : 1, sizeof(*m));
	for (size_t k = 0; k < n; k++) {
		m[k].id = v[k].id;
		m[k].host = v[k].host;
		/* discovery already picked the port this service uses (tls: sslPort) */
		m[k].port = sc->tls.enabled && v[k].ssl_port ? v[k].ssl_port : v[k].port;
		m[k].ssl_port = v[k].ssl_port;
		m[k].weight = v[k].weight ? v[k].weight : 1;
		m[k].payload = v[k].payload;
		m[k].payload_len = v[k].payload_len;
	}
	return m;
}

static void on_discovery_view(void *arg, const char *name, const struct instance *v, size_t n)
{
	struct control *c = arg;
	long i = service_index(c, name);
	if (i < 0)
		return;
	const struct service_conf *sc = &c->cfg->cfg->services[i];
	struct member_spec *m = member_specs(sc, v, n);
	struct service *svc = c->services[i];
	bool first = !svc->ready;
	bool changed = service_set_members(svc, m, n, now_ms());
	/* a view applied: no change is held any more */
	service_hold(svc, false, NULL, 0, 0);
	free(m);
	if (changed) {
		control_resolve(c, svc, sc, false);
		checker_sync(c->checker, svc, sc, false);
	}
	if (changed || first) {
		control_publish(c, svc, sc, NULL, true);
		log_info("svc=%s view applied: %zu instances (version %llu)", name, n,
			 (unsigned long long)svc->version);
	}
}

/*
 * A collapse hold started, changed or ended without applying: mark what
 * ZooKeeper no longer lists (service_hold). Members dropped meanwhile that
 * are to serve again come back by applying the served view once more.
 */
static void on_discovery_hold(void *arg, const char *name, bool holding,
			      const struct instance *held, size_t n, uint64_t hold_until_ms)
{
	struct control *c = arg;
	long i = service_index(c, name);
	if (i < 0)
		return;
	const struct service_conf *sc = &c->cfg->cfg->services[i];
	struct service *svc = c->services[i];
	struct member_spec *m = member_specs(sc, held, n);
	if (service_hold(svc, holding, m, n, hold_until_ms) > 0) {
		size_t n_view;
		const struct instance *view = discovery_view(c->disc, name, &n_view);
		if (view)
			on_discovery_view(c, name, view, n_view);
		if (holding)
			service_hold(svc, true, m, n, hold_until_ms);
	}
	free(m);
}

/* Discovery's state as the service's view (the names are the same). */
static enum service_view view_of(enum discovery_state st)
{
	switch (st) {
	case DISCOVERY_PENDING:
		return SERVICE_VIEW_PENDING;
	case DISCOVERY_CACHED:
		return SERVICE_VIEW_CACHED;
	case DISCOVERY_CONNECTED:
		return SERVICE_VIEW_CONNECTED;
	case DISCOVERY_DISCONNECTED:
		return SERVICE_VIEW_DISCONNECTED;
	}
	return SERVICE_VIEW_PENDING;
}

static void on_discovery_state(void *arg, const char *name, enum discovery_state st)
{
	struct control *c = arg;
	long i = service_index(c, name);
	if (i < 0)
		return;
	c->services[i]->view = view_of(st);
	log_info("svc=%s discovery %s", name, service_view_name(c->services[i]->view));
}

static const struct discovery_hooks discovery_hooks = {
	.on_view = on_discovery_view,
	.on_state = on_discovery_state,
	.on_hold = on_discovery_hold,
};

/* Sentinel's primary: a view of one instance, applied as discovery's are. */
static void on_sentinel_view(void *arg, const char *name, const struct instance *v, size_t n)
{
	struct control *c = arg;
	long i = service_index(c, name);
	if (i < 0)
		return;
	c->services[i]->view = SERVICE_VIEW_CONNECTED;
	on_discovery_view(c, name, v, n);
}

/*
 * The close_grace after a failover is over: the workers close what is
 * still open to the demoted primary (a removed member, draining).
 */
static void on_sentinel_demoted(void *arg, const char *name, const char *id)
{
	struct control *c = arg;
	long i = service_index(c, name);
	if (i < 0)
		return;
	struct service *svc = c->services[i];
	for (size_t k = 0; k < svc->n_draining; k++) {
		struct backend *be = svc->draining[k];
		if (strcmp(be->id, id) != 0)
			continue;
		log_info("svc=%s be=%s demoted: closing its %u open connections", name, be->name,
			 atomic_load(&be->active));
		for (unsigned w = 0; w < c->n_workers; w++)
			worker_post_close_backend(c->workers[w], be);
	}
}

/* A primary a sentinel names goes through the service's destinations policy first. */
static bool on_sentinel_refuses(void *arg, const char *name, const char *host, uint16_t port,
				char *why, size_t len)
{
	struct control *c = arg;
	long i = service_index(c, name);
	struct net_addr a;
	if (i < 0)
		return false;
	if (!net_addr_numeric(host, port, &a)) {
		snprintf(why, len, "not an IP address");
		return true;
	}
	return service_refuses(c->services[i], &a, why, len);
}

static const struct sentinel_hooks sentinel_hooks = {
	.on_view = on_sentinel_view,
	.on_demoted = on_sentinel_demoted,
	.refuses = on_sentinel_refuses,
};

struct service *control_service(const struct control *c, const char *name)
{
	long i = service_index(c, name);
	return i < 0 ? NULL : c->services[i];
}

/*
 * ---- reload -------------------------------------------------------------
 * control_apply() makes a configuration the running one in named steps:
 * plan_open() does everything that can fail (opening new listening
 * sockets); then, with nothing left to fail, each service is adopted
 * (apply_service), the listen addresses follow (listens_reconcile) and the
 * services that are gone stop (services_replace).
 */

/* What phase 1 prepared: per new service, NULL (address kept) or n_workers fds. */
struct apply_plan {
	int **fds;				/* owned; [cfg->n_services] */
	size_t n;
};

static void plan_free(struct apply_plan *p, unsigned n_workers)
{
	for (size_t i = 0; i < p->n; i++) {
		if (!p->fds[i])
			continue;
		for (unsigned w = 0; w < n_workers; w++)
			if (p->fds[i][w] >= 0)
				close(p->fds[i][w]);
		free(p->fds[i]);
	}
	free(p->fds);
}

/* Phase 1: open every listen address not open yet; on failure nothing stays open. */
static bool plan_open(struct control *c, const struct config *cfg, struct apply_plan *p)
{
	p->n = cfg->n_services;
	p->fds = xcalloc(p->n, sizeof(*p->fds));
	for (size_t i = 0; i < p->n; i++) {
		const struct service_conf *sc = &cfg->services[i];
		if (!sc->listen || find_listen(c, sc->listen))
			continue;
		char err[256];
		p->fds[i] = xcalloc(c->n_workers, sizeof(int));
		if (upgrade_inherit_take(c->inherit, sc->listen, c->n_workers, p->fds[i]))
			continue;	/* the running process's sockets: their queues carry over */
		if (!listener_open(sc->listen, c->n_workers, p->fds[i], err, sizeof(err))) {
			log_error("svc=%s cannot listen on %s: %s", sc->name, sc->listen, err);
			free(p->fds[i]);
			p->fds[i] = NULL;
			plan_free(p, c->n_workers);
			return false;
		}
	}
	return true;
}

/* Copies of the workers' n sockets, kept for a hot upgrade (-1 where dup failed). */
static int *listen_dup(const int *fds, unsigned n)
{
	int *v = xcalloc(n, sizeof(int));
	for (unsigned i = 0; i < n; i++)
		v[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
	return v;
}

/* The copies go: the workers stopped accepting, so must the sockets. */
static void listen_close_dups(struct listen_entry *e, unsigned n)
{
	for (unsigned i = 0; e->fds && i < n; i++)
		if (e->fds[i] >= 0)
			close(e->fds[i]);
	free(e->fds);
	e->fds = NULL;
}

/* Remember a listen address svc now accepts on; dups: listen_dup()'s, owned from now. */
static void listen_add(struct control *c, const struct service_conf *sc, struct service *svc,
		       int *dups)
{
	struct listen_entry *e = xcalloc(1, sizeof(*e));
	e->fds = dups;
	e->key = xstrdup(sc->listen);
	if (strncmp(sc->listen, "unix:", 5) == 0)
		e->unix_path = xstrdup(sc->listen + 5);
	e->svc = service_get(svc);
	e->next = c->listens;
	c->listens = e;
	log_info("svc=%s listening on %s (%u workers)", sc->name, sc->listen, c->n_workers);
}

/* A unix: socket's file goes when zklb stops accepting there (unless a new binary took it). */
static void listen_unlink(const struct control *c, const struct listen_entry *e)
{
	if (e->unix_path && !c->upgraded)
		unlink(e->unix_path);
}

/* Forget a listen address (the workers were told, or are gone). */
static void listen_free(struct control *c, struct listen_entry *e)
{
	listen_close_dups(e, c->n_workers);
	service_put(e->svc);
	free(e->unix_path);
	free(e->key);
	free(e);
}

/*
 * The members of svc per sc: the configured static backends, or whatever
 * discovery brings (until then clients wait). Returns whether svc has a
 * view to route with.
 */
static bool apply_members(struct control *c, struct service *svc, const struct service_conf *sc,
			  bool starting, uint64_t now)
{
	if (sc->discovery.type == DISCOVERY_SENTINEL) {
		discovery_unwatch(c->disc, sc->name);
		if (sentinel_watch(c->sentinel, sc) != 0)
			log_error("svc=%s sentinel discovery cannot start", sc->name);
		return svc->ready;
	}
	sentinel_unwatch(c->sentinel, sc->name);
	if (sc->discovery.type != DISCOVERY_STATIC) {
		/* as published before discovery_watch(), which may deliver a cached view */
		bool ready = svc->ready;
		if (discovery_watch(c->disc, sc) != 0)
			log_error("svc=%s discovery cannot start", sc->name);
		/* A reload may allow names refused before (discovery.allow_hostnames). */
		control_resolve(c, svc, sc, false);
		return ready;
	}
	if (svc->version && svc->view != SERVICE_VIEW_STATIC)
		discovery_unwatch(c->disc, sc->name);
	static_members(svc, sc, now);
	control_resolve(c, svc, sc, starting);
	svc->view = SERVICE_VIEW_STATIC;
	return true;
}

/*
 * zklb's own TCP listeners in cfg (admin.listen and every service's listen),
 * which no instance may point at. Returns an array (owned by the caller) of *n.
 */
static struct net_self *self_listeners(const struct config *cfg, size_t *n)
{
	struct net_self *v = xcalloc(cfg->n_services + 1, sizeof(*v));
	*n = 0;
	for (size_t i = 0; i <= cfg->n_services; i++) {
		const char *listen = i < cfg->n_services ? cfg->services[i].listen : cfg->admin_listen;
		struct net_addr a;
		char err[256];
		if (listen && net_addr_parse(listen, &a, err, sizeof(err)) &&
		    net_self_from(&v[*n], (const struct sockaddr *)&a.ss))
			(*n)++;
	}
	return v;
}

/*
 * The service sc describes, running with sc's settings: the running one of
 * that name or a new one. fds: new listening sockets to hand to the workers
 * (ownership passes to them), or NULL. Returns a reference.
 */
static struct service *apply_service(struct control *c, const struct service_conf *sc,
				     const int *fds, bool starting, uint64_t now)
{
	struct service *svc = control_service(c, sc->name);
	svc = svc ? service_get(svc) : service_new(sc->name, c->n_workers);
	svc->cap = &c->cap;
	service_configure(svc, sc);
	size_t n_self;
	struct net_self *self = self_listeners(c->cfg->cfg, &n_self);
	if (service_set_policy(svc, config_allowed_networks(c->cfg->cfg, sc),
			       config_denied_networks(c->cfg->cfg, sc), self, n_self) && svc->version) {
		service_readmit(svc, now);
		control_resolve(c, svc, sc, false);	/* names made anew are looked up again */
	}
	free(self);
	bool ready = apply_members(c, svc, sc, starting, now);
	checker_sync(c->checker, svc, sc, true);
	int *dups = fds ? listen_dup(fds, c->n_workers) : NULL;	/* before the workers own fds */
	control_publish(c, svc, sc, fds, ready);
	if (fds)
		listen_add(c, sc, svc, dups);
	return svc;
}

/*
 * Listen addresses follow the new configuration: one still configured
 * belongs to the service that names it now (services[i] for
 * cfg->services[i]); the others stop accepting (open connections finish).
 */
static void listens_reconcile(struct control *c, const struct config *cfg,
			      struct service **services)
{
	for (struct listen_entry **pp = &c->listens; *pp;) {
		struct listen_entry *e = *pp;
		struct service *owner = NULL;
		for (size_t i = 0; i < cfg->n_services && !owner; i++)
			if (cfg->services[i].listen && strcmp(cfg->services[i].listen, e->key) == 0)
				owner = services[i];
		if (owner) {
			if (owner != e->svc) {
				service_put(e->svc);
				e->svc = service_get(owner);
			}
			pp = &e->next;
			continue;
		}
		for (unsigned w = 0; w < c->n_workers; w++)
			worker_post_simple(c->workers[w], WORKER_MSG_UNLISTEN, e->key);
		listen_unlink(c, e);
		log_info("svc=%s stops listening on %s (open connections finish)", e->svc->name,
			 e->key);
		*pp = e->next;
		listen_free(c, e);
	}
}

/*
 * services (refs, n) become the running services. Those that are gone stop
 * watching and checking; their open connections keep their own references.
 */
static void services_replace(struct control *c, struct service **services, size_t n)
{
	for (size_t i = 0; i < c->n_services; i++) {
		struct service *old = c->services[i];
		bool stays = false;
		for (size_t j = 0; j < n && !stays; j++)
			stays = services[j] == old;
		if (!stays) {
			log_info("svc=%s removed", old->name);
			discovery_unwatch(c->disc, old->name);
			sentinel_unwatch(c->sentinel, old->name);
			checker_forget(c->checker, old);
			service_retire(old);
		}
		service_put(old);
	}
	free(c->services);
	c->services = services;
	c->n_services = n;
}

/*
 * relay: kernel|auto — load the BPF relay the first time a configuration
 * asks for it, once per process, and hand it to every worker. Refused (not
 * root, no CAP_BPF, no sockmap): one log line, and the services' connections
 * are relayed in user space and counted as fallbacks.
 */
static void control_krelay(struct control *c, const struct config *cfg)
{
	bool wanted = false;
	for (size_t i = 0; i < cfg->n_services; i++)
		wanted |= cfg->services[i].relay == RELAY_MODE_KERNEL ||
			  cfg->services[i].relay == RELAY_MODE_AUTO;
	if (!wanted || c->krelay_tried)
		return;
	c->krelay_tried = true;
	char why[256];
	c->krelay = krelay_open(why, sizeof(why));
	if (!c->krelay) {
		log_warn("relay: the kernel relay is not available (%s): relaying in user space", why);
		return;
	}
	log_info("relay: the kernel relay (BPF sockmap) is loaded");
	for (unsigned i = 0; i < c->n_workers; i++)
		if (c->workers[i])
			atomic_store_explicit(&c->workers[i]->relay.krelay, c->krelay, memory_order_release);
}

/*
 * Make `cfg` the running configuration. On failure nothing changed and the
 * caller still owns cfg.
 */
static bool control_apply(struct control *c, struct config *cfg)
{
	struct apply_plan p;
	if (!plan_open(c, cfg, &p))
		return false;

	/* Phase 2: commit; nothing below can fail. */
	uint64_t now = now_ms();
	struct config_ref *old_cfg = c->cfg;
	bool starting = old_cfg == NULL;
	c->cfg = config_ref_new(cfg);
	log_setup(cfg->log_level, cfg->log_format);
	atomic_store(&c->relay_budget.limit, cfg->max_buffer_memory);
	control_krelay(c, cfg);
	atomic_store(&c->cap.max, cfg->max_connections);

	struct service **services = xcalloc(cfg->n_services, sizeof(*services));
	for (size_t i = 0; i < cfg->n_services; i++) {
		services[i] = apply_service(c, &cfg->services[i], p.fds[i], starting, now);
		free(p.fds[i]);		/* the workers own the sockets now */
		p.fds[i] = NULL;
	}
	plan_free(&p, c->n_workers);
	listens_reconcile(c, cfg, services);
	services_replace(c, services, cfg->n_services);
	config_ref_put(old_cfg);

	/* announce: and sync: entries (their own reconciliation; nothing here can fail) */
	if (c->announce)
		announce_apply(c->announce, cfg->announce, cfg->n_announce);
	if (c->sync)
		sync_apply(c->sync, cfg->sync, cfg->n_sync);
	renderer_apply(c->renderer, cfg->render, cfg->n_render);
	if (c->trunk)
		trunk_listener_set_allow(c->trunk, cfg->announce, cfg->n_announce);
	return true;
}

/*
 * ---- zookeeper.config_path -------------------------------------------------
 * The running configuration is c->file_cfg with the overlay's document laid
 * over it. A new document is applied like a reload; one that does not
 * validate (or apply) is rejected as a whole and the running one stays.
 */
static void log_config_errors(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_error("%s", errs->msgs[i]);
	config_errors_free(errs);
}

static void on_overlay_change(void *arg)
{
	struct control *c = arg;
	struct config_errors errs = { 0 };
	struct config *cfg;

	if (c->draining) {
		log_warn("config overlay %s: ignored while draining", overlay_origin(c->overlay));
		return;
	}
	cfg = overlay_compose(c->overlay, c->file_cfg, OVERLAY_LATEST, &errs);
	if (!cfg || !control_apply(c, cfg)) {
		log_config_errors(&errs);	/* compose's, if that is what failed */
		config_free(cfg);
		overlay_reject(c->overlay);
		log_error("config overlay %s rejected: the running configuration stays",
			  overlay_origin(c->overlay));
		return;
	}
	overlay_commit(c->overlay);
	log_info("config overlay %s applied: %zu services", overlay_origin(c->overlay),
		 c->n_services);
}

/*
 * The first configuration with an overlay: until ZooKeeper answers, the
 * cached document (if any) over the file. A cached document that no longer
 * fits — it does not validate with this file, or cannot apply (a listen
 * address now taken) — is dropped with a warning and the file starts alone:
 * a stale cache must never keep zklb from starting.
 */
static bool control_start_with_overlay(struct control *c)
{
	for (;;) {
		struct config_errors errs = { 0 };
		struct overlay_stats os;
		overlay_stats(c->overlay, &os);
		struct config *cfg = overlay_compose(c->overlay, c->file_cfg, OVERLAY_APPLIED, &errs);
		if (cfg && control_apply(c, cfg))
			return true;
		config_free(cfg);
		log_config_errors(&errs);
		if (!os.cached)
			return false;
		log_warn("config overlay %s: the cached document does not fit %s; the file runs "
			 "alone until ZooKeeper answers", overlay_origin(c->overlay), c->config_path);
		overlay_drop_cached(c->overlay);
	}
}

static const struct overlay_hooks overlay_hooks = {
	.on_change = on_overlay_change,
};

/*
 * A reload's configuration: the file re-read, with the overlay in force on
 * top. *file_cfg: with an overlay, the new file's own config (else NULL).
 * NULL, with the reasons in errs, when either does not validate.
 */
static struct config *reload_load(struct control *c, struct config **file_cfg,
				  struct config_errors *errs)
{
	struct config *cfg = config_load_file(c->config_path, errs);
	*file_cfg = NULL;
	if (!cfg || !c->overlay)
		return cfg;
	*file_cfg = cfg;
	cfg = overlay_compose(c->overlay, *file_cfg, OVERLAY_APPLIED, errs);
	if (!cfg) {
		config_free(*file_cfg);
		*file_cfg = NULL;
	}
	return cfg;
}

/*
 * Why cfg may not replace the running configuration, or NULL. Keys that
 * need a restart do not refuse it: they keep their running value (warned).
 */
static const char *reload_refusal(const struct control *c, const struct config *cfg)
{
	const struct config *old = c->cfg->cfg;
	char what[128];
	if (!config_reloadable(old, cfg, what, sizeof(what)))
		log_warn("reload: %s changed, which needs a restart: the running value stays, "
			 "the rest applies", what);
	if (!old->zookeeper.hosts && cfg->zookeeper.hosts)
		return "a zookeeper: section cannot be added without a restart";
	return NULL;
}

/* SIGHUP: load, check and apply; any refusal leaves the running state as it was. */
static void control_reload(struct control *c)
{
	static const char stays[] = "the running configuration stays";
	struct config_errors errs = { 0 };
	struct config *file_cfg;

	log_info("reloading %s", c->config_path);
	struct config *cfg = reload_load(c, &file_cfg, &errs);
	const char *why = cfg ? reload_refusal(c, cfg) : stays;
	if (!why && !control_apply(c, cfg))
		why = stays;
	if (why) {
		log_config_errors(&errs);
		config_free(cfg);
		config_free(file_cfg);
		c->reload_failures++;
		log_error("reload rejected: %s", why);
		return;
	}
	if (file_cfg) {
		config_free(c->file_cfg);
		c->file_cfg = file_cfg;
	}
	c->reloads++;
	log_info("reload done: %zu services", c->n_services);
}

static uint32_t live_relays(const struct control *c)
{
	uint32_t n = 0;
	for (unsigned i = 0; i < c->n_workers; i++)
		n += atomic_load(&c->workers[i]->relay.n_relays);
	if (c->trunk)		/* streams relayed for other hosts drain too */
		n += atomic_load(&trunk_listener_stats(c->trunk)->streams_open);
	return n;
}

static void control_stop(struct control *c)
{
	for (unsigned i = 0; i < c->n_workers; i++)
		worker_post_simple(c->workers[i], WORKER_MSG_STOP, NULL);
	event_base_loopbreak(c->base);
}

/* Stop accepting and let open connections finish (after announce's withdraw). */
static void control_drain_proxy(struct control *c)
{
	c->withdrawing = false;
	c->drain_deadline_ms = now_ms() + c->cfg->cfg->drain_timeout_ms;
	for (unsigned i = 0; i < c->n_workers; i++)
		worker_post_simple(c->workers[i], WORKER_MSG_DRAIN, NULL);
	for (struct listen_entry *e = c->listens; e; e = e->next) {
		listen_unlink(c, e);
		listen_close_dups(e, c->n_workers);
	}
	if (c->trunk)
		trunk_listener_drain(c->trunk);
	log_info("draining: no new connections; %u open may finish within %llums",
		 live_relays(c), (unsigned long long)c->cfg->cfg->drain_timeout_ms);
}

/* announce's deletes are done, or the wait for them is over. */
static void on_withdrawn(void *arg)
{
	struct control *c = arg;

	if (!c->withdrawing)
		return;
	evtimer_del(c->withdraw_timer);
	control_drain_proxy(c);
}

static void on_withdraw_timeout(evutil_socket_t fd, short what, void *arg)
{
	log_warn("announce: deregistration not confirmed within %dms; draining anyway",
		 WITHDRAW_WAIT_MS);
	on_withdrawn(arg);
}

/*
 * SIGTERM/SIGINT. Announced instances are deleted first and the proxy keeps
 * serving until that is done (or WITHDRAW_WAIT_MS passed), so callers stop
 * sending before we stop accepting.
 */
static void control_drain(struct control *c)
{
	if (c->draining) {
		log_warn("second stop signal: closing %u open connections now", live_relays(c));
		control_stop(c);
		return;
	}
	c->draining = true;
	if (c->upgrade && !c->upgraded) {
		/* Stopping wins: the new process is not serving yet, so it goes too. */
		log_warn("stop signal: abandoning the upgrade to pid %d", upgrade_pid(c->upgrade));
		upgrade_free(c->upgrade);
		c->upgrade = NULL;
		c->upgrade_failed = false;
		if (c->zk)
			zk_reclaim(c->zk);	/* a no-op unless the session was let go */
	}
	if (c->announce && !announce_withdraw(c->announce, on_withdrawn, c)) {
		struct timeval tv = { WITHDRAW_WAIT_MS / 1000, (WITHDRAW_WAIT_MS % 1000) * 1000 };
		c->withdrawing = true;
		c->withdraw_timer = evtimer_new(c->base, on_withdraw_timeout, c);
		evtimer_add(c->withdraw_timer, &tv);
		return;
	}
	control_drain_proxy(c);
}

/*
 * ---- hot upgrade (SIGUSR2) ---------------------------------------------------
 * The new binary gets copies of every listening socket and the ZooKeeper
 * session (upgrade.h). Until it says READY this process serves as before;
 * then it stops accepting and drains like SIGTERM, except that announced
 * nodes stay (the session, now the new process's, owns them) and the unix
 * socket files stay (they are the new process's too).
 */
static void on_upgrade_release(void *arg)
{
	struct control *c = arg;
	if (c->zk)
		zk_release(c->zk);
}

static void on_upgrade_ready(void *arg)
{
	struct control *c = arg;
	log_info("upgrade: pid %d serves now; this process stops accepting and drains",
		 upgrade_pid(c->upgrade));
	c->upgraded = true;
	c->draining = true;
	admin_hand_over(c->admin);
	c->admin = NULL;
	control_drain_proxy(c);
}

/* An upgrade failed: logged, counted, and its reason kept for the admin API. */
static void control_upgrade_failure(struct control *c, const char *why)
{
	log_error("upgrade failed: %s; serving on as before", why);
	c->upgrade_failures++;
	snprintf(c->upgrade_last_failure, sizeof(c->upgrade_last_failure), "%s", why);
}

static void on_upgrade_failed(void *arg, bool released, const char *why)
{
	struct control *c = arg;
	control_upgrade_failure(c, why);
	if (released && c->zk)
		zk_reclaim(c->zk);
	c->upgrade_failed = true;	/* freed at the tick: we are in its callback */
}

static const struct upgrade_hooks upgrade_hooks = {
	.release_session = on_upgrade_release,
	.ready = on_upgrade_ready,
	.failed = on_upgrade_failed,
};

/* A failed upgrade is freed here or at the tick, never inside its own callback. */
static void control_upgrade_reap(struct control *c)
{
	if (c->upgrade_failed) {
		upgrade_free(c->upgrade);
		c->upgrade = NULL;
		c->upgrade_failed = false;
	}
}

int control_upgrade(struct control *c, const char *who, char *why, size_t len)
{
	control_upgrade_reap(c);
	if (c->draining || c->upgrade) {
		snprintf(why, len, "%s", c->draining ? "draining" : "an upgrade is under way");
		log_warn("upgrade asked for by %s ignored: %s", who, why);
		return -EBUSY;
	}
	size_t n = 0, cap = 1;
	for (struct listen_entry *e = c->listens; e; e = e->next)
		cap++;
	struct upgrade_socket *v = xcalloc(cap, sizeof(*v));
	for (struct listen_entry *e = c->listens; e; e = e->next) {
		for (unsigned w = 0; e->fds && w < c->n_workers; w++) {
			if (e->fds[w] < 0) {
				snprintf(why, len, "a socket of %s was not kept", e->key);
				control_upgrade_failure(c, why);
				free(v);
				return -EBADF;
			}
		}
		if (e->fds)
			v[n++] = (struct upgrade_socket){ e->key, e->fds, c->n_workers };
	}
	char admin_key[PATH_MAX];
	int admin_fd = c->admin ? admin_listen_fd(c->admin) : -1;
	if (admin_fd >= 0) {
		snprintf(admin_key, sizeof(admin_key), "admin:%s", c->cfg->cfg->admin_listen);
		v[n++] = (struct upgrade_socket){ admin_key, &admin_fd, 1 };
	}
	struct upgrade_offer offer = { .sockets = v, .n_sockets = n };
	size_t n_ann = c->announce ? announce_count(c->announce) : 0;
	struct upgrade_announced *ann = xcalloc(n_ann ? n_ann : 1, sizeof(*ann));
	for (size_t i = 0; i < n_ann; i++) {
		struct announce_stats as;
		announce_stats(c->announce, i, &as);
		ann[i] = (struct upgrade_announced){ as.service, as.port, as.id };
	}
	offer.announced = ann;
	offer.n_announced = n_ann;
	if (c->zk)
		offer.has_session = zk_client_id(c->zk, &offer.session_id, offer.session_passwd);
	char *argv[] = { c->binary, "-c", c->config_path, NULL };
	char err[512];
	log_info("upgrade (asked for by %s): starting %s -c %s", who, c->binary, c->config_path);
	c->upgrade = upgrade_start(c->base, c->binary, argv, &offer, UPGRADE_READY_MS,
				   &upgrade_hooks, c, err, sizeof(err));
	free(v);
	free(ann);
	if (!c->upgrade) {
		snprintf(why, len, "%s", err);
		control_upgrade_failure(c, err);
		return -ECHILD;
	}
	snprintf(why, len, "starting %s", c->binary);
	return 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;
	uint64_t now = now_ms();
	control_upgrade_reap(c);
	for (size_t i = 0; i < c->n_services; i++)
		service_tick(c->services[i], now);
	renderer_tick(c->renderer, c->services, c->n_services, now);
	if (c->draining && !c->withdrawing) {
		uint32_t left = live_relays(c);
		if (left == 0) {
			log_info("drained: exiting");
			control_stop(c);
		} else if (now >= c->drain_deadline_ms) {
			log_warn("drain_timeout reached: closing %u open connections", left);
			control_stop(c);
		}
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct control *c = arg;
	if (sig == SIGUSR2) {
		char why[512];
		log_info("received SIGUSR2: hot upgrade");
		control_upgrade(c, "SIGUSR2", why, sizeof(why));
	} else if (sig == SIGUSR1) {
		log_info("received SIGUSR1: reopening the access log");
		accesslog_reopen(c->alog);
	} else if (sig == SIGHUP) {
		if (c->draining)
			log_warn("SIGHUP ignored while draining");
		else
			control_reload(c);
	} else {
		log_info("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		control_drain(c);
	}
}

/*
 * The ensemble refused our credentials (or wants some). Before it ever
 * answered us this is the configuration's fault: stop with exit status 1
 * rather than retry forever. Later, zk has logged and counted it and keeps
 * trying with backoff: the ensemble may be being reconfigured.
 */
static void on_zk_auth_failed(void *arg, bool at_start, const char *why)
{
	struct control *c = arg;

	if (!at_start)
		return;
	log_error("fatal configuration error: zookeeper.auth: %s; exiting", why);
	c->exit_status = 1;
	control_stop(c);
}

static const struct zk_observer control_zk_observer = {
	.on_auth_failed = on_zk_auth_failed,
};

struct control *control_new(struct config *cfg, const char *config_path,
			    struct upgrade_inherit *inherit)
{
	struct control *c = xcalloc(1, sizeof(*c));
	c->config_path = xstrdup(config_path);
	c->inherit = inherit;
	/* The path, not the file: a package upgrade puts the new binary there. */
	char exe[PATH_MAX];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[el > 0 ? el : 0] = '\0';
	c->binary = xstrdup(exe);
	c->base = event_base_new();
	c->started_ms = now_ms();
	c->started_wall_ms = wall_ms();
	c->n_workers = cfg->workers;		/* the schema's "auto" gives at least 1 */

	bool ok = true;
	if (cfg->access_log) {
		char err[512];
		c->alog = accesslog_new(cfg->access_log, cfg->access_log_format, c->n_workers, err,
					sizeof(err));
		if (!c->alog) {
			log_error("%s", err);
			ok = false;
		}
	}

	/* Workers must not take signals: only the control thread handles them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (ok && cfg->trunk.listen) {
		/* Before the workers: their relays may open trunk streams at once. */
		char err[512];
		c->trunk_client = trunk_client_new(&cfg->trunk, err, sizeof(err));
		if (!c->trunk_client) {
			log_error("%s", err);
			ok = false;
		}
	}
	c->workers = xcalloc(c->n_workers, sizeof(*c->workers));
	for (unsigned i = 0; i < c->n_workers && ok; i++) {
		c->workers[i] = worker_new(i, c->n_workers);
		if (c->workers[i] && c->alog)
			c->workers[i]->relay.alog = accesslog_ring(c->alog, i);
		if (c->workers[i]) {
			c->workers[i]->relay.budget = &c->relay_budget;
			c->workers[i]->relay.trunk = c->trunk_client;
		}
		ok = c->workers[i] && worker_start(c->workers[i]) == 0;
		if (!ok) {
			log_error("cannot start worker %u", i);
			if (c->workers[i])
				worker_free_unstarted(c->workers[i]);
			c->workers[i] = NULL;
		}
	}
	c->checker = checker_new(c->base);
	c->renderer = renderer_new(c->base);
	if (ok && c->alog && accesslog_start(c->alog) < 0) {
		log_error("cannot start the access log thread");
		ok = false;
	}
	if (ok) {
		c->resolver = resolver_new(c->base, on_resolved, c);
		ok = c->resolver != NULL;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	if (ok && cfg->zookeeper.hosts) {
		int64_t sid;
		char pw[16];
		if (upgrade_inherit_session(inherit, &sid, pw))
			c->zk = zk_new_resuming(c->base, &cfg->zookeeper, sid, pw);
		else
			c->zk = zk_new(c->base, &cfg->zookeeper);
		if (!c->zk) {
			log_error("cannot create the ZooKeeper client for %s", cfg->zookeeper.hosts);
			ok = false;
		} else {
			zk_observe(c->zk, &control_zk_observer, c);
		}
	}
	if (ok)
		c->disc = discovery_new(c->base, c->zk, cfg, &discovery_hooks, c);
	if (ok)
		c->sentinel = sentinel_new(c->base, &sentinel_hooks, c);
	if (ok && c->zk) {
		c->announce = announce_new(c->base, c->zk);
		const char *svc, *id;
		uint16_t port;
		for (size_t i = 0; upgrade_inherit_announced(inherit, i, &svc, &port, &id); i++)
			announce_adopt(c->announce, svc, port, id);
		c->sync = sync_new(c->base, c->zk);
	}
	if (ok && c->zk && cfg->zookeeper.config_path) {
		c->overlay = overlay_new(c->base, c->zk, cfg->zookeeper.config_path, cfg->cache_dir,
					 &overlay_hooks, c);
		c->file_cfg = cfg;
		if (!control_start_with_overlay(c)) {
			control_free(c);
			return NULL;
		}
	} else if (!ok || !control_apply(c, cfg)) {
		config_free(cfg);	/* c->file_cfg, if any, goes with control_free */
		control_free(c);
		return NULL;
	}

	if (c->cfg->cfg->trunk.listen) {
		char err[256];
		c->trunk = trunk_listener_new(&c->cfg->cfg->trunk, err, sizeof(err));
		if (!c->trunk) {
			log_error("%s", err);
			control_free(c);
			return NULL;
		}
		trunk_listener_set_allow(c->trunk, c->cfg->cfg->announce, c->cfg->cfg->n_announce);
	}
	if (c->cfg->cfg->admin_listen) {
		char key[PATH_MAX];
		int fd = -1;
		snprintf(key, sizeof(key), "admin:%s", c->cfg->cfg->admin_listen);
		if (!upgrade_inherit_take(inherit, key, 1, &fd))
			fd = -1;
		c->admin = admin_new(c, c->cfg->cfg->admin_listen, fd, control_upgrade);
		if (!c->admin) {
			control_free(c);
			return NULL;
		}
	}
	c->sig_hup = evsignal_new(c->base, SIGHUP, on_signal, c);
	c->sig_term = evsignal_new(c->base, SIGTERM, on_signal, c);
	c->sig_int = evsignal_new(c->base, SIGINT, on_signal, c);
	event_add(c->sig_hup, NULL);
	event_add(c->sig_term, NULL);
	event_add(c->sig_int, NULL);
	c->sig_usr1 = evsignal_new(c->base, SIGUSR1, on_signal, c);
	event_add(c->sig_usr1, NULL);
	c->sig_usr2 = evsignal_new(c->base, SIGUSR2, on_signal, c);
	event_add(c->sig_usr2, NULL);
	c->inherit = NULL;
	c->tick = event_new(c->base, -1, EV_PERSIST, on_tick, c);
	struct timeval tv = { 0, TICK_MS * 1000 };
	event_add(c->tick, &tv);
	return c;
}

int control_run(struct control *c)
{
	log_info("zklb %s running: %zu services, %u workers", ZKLB_VERSION, c->n_services,
		 c->n_workers);
	event_base_dispatch(c->base);
	return c->exit_status;
}

void control_free(struct control *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n_workers; i++) {
		if (!c->workers[i])
			continue;
		worker_post_simple(c->workers[i], WORKER_MSG_STOP, NULL);
		worker_join_free(c->workers[i]);
	}
	free(c->workers);
	krelay_free(c->krelay);		/* after the workers: their relays used it */
	accesslog_free(c->alog);	/* after the workers: it writes what they queued */
	resolver_free(c->resolver);
	admin_free(c->admin);
	trunk_listener_free(c->trunk);
	trunk_client_free(c->trunk_client);	/* after the workers: their relays held its streams */
	if (c->disc)
		discovery_free(c->disc);
	sentinel_free(c->sentinel);
	overlay_free(c->overlay);
	announce_free(c->announce);
	sync_free(c->sync);
	if (c->zk)
		zk_free(c->zk);
	while (c->listens) {
		struct listen_entry *e = c->listens;
		c->listens = e->next;
		listen_unlink(c, e);
		listen_free(c, e);
	}
	checker_free(c->checker);
	renderer_free(c->renderer);
	for (size_t i = 0; i < c->n_services; i++) {
		service_retire(c->services[i]);
		service_put(c->services[i]);
	}
	free(c->services);
	config_ref_put(c->cfg);
	config_free(c->file_cfg);
	if (c->withdraw_timer)
		event_free(c->withdraw_timer);
	if (c->sig_hup) {
		event_free(c->sig_hup);
		event_free(c->sig_term);
		event_free(c->sig_int);
		event_free(c->tick);
	}
	if (c->sig_usr1)
		event_free(c->sig_usr1);
	if (c->sig_usr2)
		event_free(c->sig_usr2);
	upgrade_free(c->upgrade);
	free(c->binary);
	event_base_free(c->base);
	free(c->config_path);
	free(c);
}
