/*
 * admin — see admin.h.
 *
 * Every response is built from the control thread's state and from atomics
 * the workers update; health state is read under the service's health lock.
 */
#include "admin.h"
#include "control.h"
#include "announce.h"
#include "discovery.h"
#include "overlay.h"
#include "resolver.h"
#include "sync.h"
#include "zk.h"
#include "listener.h"
#include "log.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct admin {
	struct control *c;			/* not owned */
	struct evhttp *http;			/* owned */
	char *unix_path;			/* owned; the socket file we bound, NULL on TCP */
	dev_t unix_dev;				/* with unix_ino: that file, so admin_free */
	ino_t unix_ino;				/* unlinks it only if it is still ours */
};

/* One instance's numbers, copied under the health lock. */
struct be_view {
	struct backend *be;			/* ref */
	const char *state;			/* healthy|ejected|checking|draining|resolving */
	uint32_t consecutive_failures;
	uint32_t ejections;
	uint64_t ejected_for_ms;		/* remaining, 0 when not ejected */
	uint64_t check_failures;
};

static const char *be_state(const struct backend *be)
{
	if (!atomic_load(&be->member))
		return "draining";
	if (!backend_has_addr(be))
		return "resolving";	/* a host name not resolved yet */
	return health_state_name(be->health.state);
}

/* Current members then draining ones; caller frees with views_free(). */
static struct be_view *views_of(struct service *svc, size_t *n_out)
{
	uint64_t now = now_ms();
	pthread_mutex_lock(&svc->health_lock);
	size_t n = svc->n_members + svc->n_draining;
	struct be_view *v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		struct backend *be = i < svc->n_members ? svc->members[i]
							: svc->draining[i - svc->n_members];
		v[i].be = backend_get(be);
		v[i].state = be_state(be);
		v[i].consecutive_failures = be->health.consecutive_failures;
		v[i].ejections = be->health.ejections_total;
		v[i].check_failures = be->health.check_failures_total;
		if (be->health.state == HEALTH_EJECTED && be->health.ejected_until_ms > now)
			v[i].ejected_for_ms = be->health.ejected_until_ms - now;
	}
	pthread_mutex_unlock(&svc->health_lock);
	*n_out = n;
	return v;
}

static void views_free(struct be_view *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		backend_put(v[i].be);
	free(v);
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
		  struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evbuffer *b = evbuffer_new();
	if (a->c->draining) {
		evbuffer_add_printf(b, "draining\n");
		reply(req, 503, "Service Unavailable", "text/plain", b);
	} else {
		evbuffer_add_printf(b, "ok\n");
		reply(req, 200, "OK", "text/plain", b);
	}
	evbuffer_free(b);
}

static json_t *service_json(struct control *c, size_t idx)
{
	struct service *svc = c->services[idx];
	const struct service_conf *sc = &c->cfg->cfg->services[idx];
	json_t *o = json_object();
	json_object_set_new(o, "listen", json_string(sc->listen));
	json_object_set_new(o, "discovery", json_string(svc->view));
	json_object_set_new(o, "discovery_type", json_string(discovery_kind_name(sc->discovery.type)));
	if (sc->discovery.path)
		json_object_set_new(o, "path", json_string(sc->discovery.path));
	json_object_set_new(o, "balance", json_string(balance_kind_name(sc->balance)));
	json_object_set_new(o, "origin", json_string(sc->origin ? sc->origin : "file"));
	json_object_set_new(o, "version", json_integer((json_int_t)svc->version));
	struct discovery_stats ds;
	if (c->disc && discovery_stats(c->disc, svc->name, &ds)) {
		json_object_set_new(o, "bad_instances", json_integer((json_int_t)ds.bad_instances_total));
		json_object_set_new(o, "skipped_instances", json_integer((json_int_t)ds.skipped));
		json_object_set_new(o, "held_changes", json_integer((json_int_t)ds.held_total));
		json_object_set_new(o, "holding", json_boolean(ds.holding));
	}
	pthread_mutex_lock(&svc->health_lock);
	json_object_set_new(o, "panic", json_boolean(svc->panic));
	pthread_mutex_unlock(&svc->health_lock);
	json_object_set_new(o, "connections_total", json_integer((json_int_t)atomic_load(&svc->conn_total)));
	json_object_set_new(o, "connections_failed", json_integer((json_int_t)atomic_load(&svc->conn_failed)));
	json_object_set_new(o, "retries", json_integer((json_int_t)atomic_load(&svc->retries)));

	size_t n;
	struct be_view *v = views_of(svc, &n);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		struct backend *be = v[i].be;
		json_t *e = json_object();
		json_object_set_new(e, "id", json_string(be->id));
		json_object_set_new(e, "address", json_string(be->host));
		json_object_set_new(e, "port", json_integer(be->port));
		if (be->ssl_port)
			json_object_set_new(e, "ssl_port", json_integer(be->ssl_port));
		json_object_set_new(e, "weight", json_integer(be->weight));
		json_object_set_new(e, "state", json_string(v[i].state));
		json_object_set_new(e, "active", json_integer(atomic_load(&be->active)));
		json_object_set_new(e, "total", json_integer((json_int_t)atomic_load(&be->conn_total)));
		json_object_set_new(e, "failures", json_integer((json_int_t)atomic_load(&be->connect_failures)));
		json_object_set_new(e, "consecutive_failures", json_integer(v[i].consecutive_failures));
		json_object_set_new(e, "ejections", json_integer(v[i].ejections));
		json_object_set_new(e, "ejected_for_ms", json_integer((json_int_t)v[i].ejected_for_ms));
		json_object_set_new(e, "bytes_in", json_integer((json_int_t)atomic_load(&be->bytes_in)));
		json_object_set_new(e, "bytes_out", json_integer((json_int_t)atomic_load(&be->bytes_out)));
		json_object_set_new(e, "upstream_opened", json_integer((json_int_t)atomic_load(&be->upstream_opened)));
		json_object_set_new(e, "upstream_reused", json_integer((json_int_t)atomic_load(&be->upstream_reused)));
		json_object_set_new(e, "idle", json_integer(atomic_load(&be->idle)));
		json_array_append_new(arr, e);
	}
	views_free(v, n);
	json_object_set_new(o, "instances", arr);
	return o;
}

static void on_services(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct control *c = a->c;
	json_t *root = json_object();
	json_object_set_new(root, "version", json_string(ZKLB_VERSION));
	json_object_set_new(root, "uptime_s", json_integer((json_int_t)((now_ms() - c->started_ms) / 1000)));
	json_object_set_new(root, "workers", json_integer(c->n_workers));
	json_object_set_new(root, "draining", json_boolean(c->draining));
	if (c->zk) {
		struct zk_stats zs;
		zk_stats(c->zk, &zs);
		json_t *z = json_object();
		json_object_set_new(z, "hosts", json_string(c->cfg->cfg->zookeeper.hosts));
		json_object_set_new(z, "state", json_string(zk_state_name(zs.state)));
		json_object_set_new(z, "session_id", json_sprintf("0x%llx", (unsigned long long)zs.session_id));
		json_object_set_new(z, "sessions", json_integer((json_int_t)zs.sessions_total));
		json_object_set_new(z, "expirations", json_integer((json_int_t)zs.expirations_total));
		json_object_set_new(root, "zookeeper", z);
	}
	json_t *svcs = json_object();
	for (size_t i = 0; i < c->n_services; i++)
		json_object_set_new(svcs, c->services[i]->name, service_json(c, i));
	json_object_set_new(root, "services", svcs);
	if (c->announce && announce_count(c->announce)) {
		json_t *arr = json_array();
		for (size_t i = 0; i < announce_count(c->announce); i++) {
			struct announce_stats as;
			announce_stats(c->announce, i, &as);
			json_t *e = json_object();
			json_object_set_new(e, "service", json_string(as.service));
			json_object_set_new(e, "id", json_string(as.id));
			json_object_set_new(e, "path", json_string(as.path));
			json_object_set_new(e, "address", json_string(as.address));
			json_object_set_new(e, "port", json_integer(as.port));
			json_object_set_new(e, "healthy", json_boolean(as.healthy));
			json_object_set_new(e, "registered_at_ms", json_integer(as.registered_at_ms));
			json_array_append_new(arr, e);
		}
		json_object_set_new(root, "announce", arr);
	}
	char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, s, strlen(s));
	evbuffer_add(b, "\n", 1);
	free(s);
	reply(req, 200, "OK", "application/json", b);
	evbuffer_free(b);
}

/* Prometheus label values: escape backslash, quote and newline. */
static void label_escape(char *out, size_t len, const char *in)
{
	size_t o = 0;
	for (; *in && o + 3 < len; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

#define HELP(b, name, type, text) \
	evbuffer_add_printf(b, "# HELP " name " " text "\n# TYPE " name " " type "\n")

static void metrics_services(struct evbuffer *b, struct control *c)
{
	static const struct {
		const char *name;
		const char *help;
		size_t off;
	} counters[] = {
		{ "zklb_service_connections_total", "Client connections accepted.",
		  offsetof(struct service, conn_total) },
		{ "zklb_service_connections_failed_total", "Client connections closed without reaching a backend.",
		  offsetof(struct service, conn_failed) },
		{ "zklb_service_retries_total", "Connect attempts after the first.",
		  offsetof(struct service, retries) },
		{ "zklb_service_wait_timeouts_total", "Clients that waited for a first view in vain.",
		  offsetof(struct service, wait_timeouts) },
		{ "zklb_service_ejections_total", "Passive ejections.",
		  offsetof(struct service, ejections) },
		{ "zklb_service_check_failures_total", "Active health check failures.",
		  offsetof(struct service, check_failures) },
		{ "zklb_service_panics_total", "Times panic mode was entered.",
		  offsetof(struct service, panics) },
		{ "zklb_discovery_updates_total", "Member changes applied.",
		  offsetof(struct service, view_updates) },
	};
	char sname[256];
	for (size_t k = 0; k < ARRAY_SIZE(counters); k++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", counters[k].name,
				    counters[k].help, counters[k].name);
		for (size_t i = 0; i < c->n_services; i++) {
			struct service *svc = c->services[i];
			label_escape(sname, sizeof(sname), svc->name);
			_Atomic uint64_t *p = (_Atomic uint64_t *)((char *)svc + counters[k].off);
			evbuffer_add_printf(b, "%s{service=\"%s\"} %llu\n", counters[k].name, sname,
					    (unsigned long long)atomic_load(p));
		}
	}
	HELP(b, "zklb_service_panic", "gauge", "1 while the service balances over all instances.");
	for (size_t i = 0; i < c->n_services; i++) {
		struct service *svc = c->services[i];
		label_escape(sname, sizeof(sname), svc->name);
		pthread_mutex_lock(&svc->health_lock);
		bool panic = svc->panic;
		pthread_mutex_unlock(&svc->health_lock);
		evbuffer_add_printf(b, "zklb_service_panic{service=\"%s\"} %d\n", sname, panic);
	}
}

static void metrics_backends(struct evbuffer *b, struct control *c)
{
	static const struct {
		const char *name;
		const char *type;
		const char *help;
	} m[] = {
		{ "zklb_backend_connections_active", "gauge", "Connections open or connecting." },
		{ "zklb_backend_connections_total", "counter", "Connections routed to the backend." },
		{ "zklb_backend_connect_failures_total", "counter", "Refused, timed out or reset before the first byte." },
		{ "zklb_backend_bytes_in_total", "counter", "Bytes from the backend to clients." },
		{ "zklb_backend_bytes_out_total", "counter", "Bytes from clients to the backend." },
		{ "zklb_backend_ejections_total", "counter", "Passive ejections of the backend." },
		{ "zklb_backend_healthy", "gauge", "1 when the backend takes new connections." },
		{ "zklb_upstream_connections_opened_total", "counter", "Upstream connections opened, prewarm included." },
		{ "zklb_upstream_connections_reused_total", "counter", "Upstream connections taken from the idle pool." },
		{ "zklb_upstream_idle_connections", "gauge", "Idle pooled upstream connections." },
	};
	struct per_svc {
		struct be_view *v;
		size_t n;
	} *ps = xcalloc(c->n_services, sizeof(*ps));
	for (size_t i = 0; i < c->n_services; i++)
		ps[i].v = views_of(c->services[i], &ps[i].n);
	char sname[256], bname[560];
	uint64_t now = now_ms();
	for (size_t k = 0; k < ARRAY_SIZE(m); k++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help,
				    m[k].name, m[k].type);
		for (size_t i = 0; i < c->n_services; i++) {
			label_escape(sname, sizeof(sname), c->services[i]->name);
			for (size_t j = 0; j < ps[i].n; j++) {
				struct backend *be = ps[i].v[j].be;
				uint64_t val = 0;
				switch (k) {
				case 0: val = atomic_load(&be->active); break;
				case 1: val = atomic_load(&be->conn_total); break;
				case 2: val = atomic_load(&be->connect_failures); break;
				case 3: val = atomic_load(&be->bytes_in); break;
				case 4: val = atomic_load(&be->bytes_out); break;
				case 5: val = ps[i].v[j].ejections; break;
				case 6: val = atomic_load(&be->member) && backend_routable(be, now); break;
				case 7: val = atomic_load(&be->upstream_opened); break;
				case 8: val = atomic_load(&be->upstream_reused); break;
				case 9: val = atomic_load(&be->idle); break;
				}
				label_escape(bname, sizeof(bname), be->name);
				evbuffer_add_printf(b, "%s{service=\"%s\",backend=\"%s\"} %llu\n",
						    m[k].name, sname, bname, (unsigned long long)val);
			}
		}
	}
	for (size_t i = 0; i < c->n_services; i++)
		views_free(ps[i].v, ps[i].n);
	free(ps);
}

static void metrics_zookeeper(struct evbuffer *b, struct control *c)
{
	if (c->zk) {
		struct zk_stats zs;
		zk_stats(c->zk, &zs);
		HELP(b, "zklb_zookeeper_connected", "gauge", "1 while the ZooKeeper session is connected.");
		evbuffer_add_printf(b, "zklb_zookeeper_connected %d\n", zs.state == ZK_CONNECTED);
		HELP(b, "zklb_zookeeper_session_state", "gauge", "1 for the current session state.");
		for (int st = ZK_CONNECTING; st <= ZK_CLOSED; st++)
			evbuffer_add_printf(b, "zklb_zookeeper_session_state{state=\"%s\"} %d\n",
					    zk_state_name((enum zk_state)st), zs.state == (enum zk_state)st);
		HELP(b, "zklb_zookeeper_sessions_total", "counter", "Sessions established.");
		evbuffer_add_printf(b, "zklb_zookeeper_sessions_total %llu\n", (unsigned long long)zs.sessions_total);
		HELP(b, "zklb_zookeeper_disconnects_total", "counter", "Connections to ZooKeeper lost.");
		evbuffer_add_printf(b, "zklb_zookeeper_disconnects_total %llu\n", (unsigned long long)zs.disconnects_total);
		HELP(b, "zklb_zookeeper_expirations_total", "counter", "Sessions expired.");
		evbuffer_add_printf(b, "zklb_zookeeper_expirations_total %llu\n", (unsigned long long)zs.expirations_total);
	}
	static const struct {
		const char *name;
		const char *help;
		size_t off;
	} m[] = {
		{ "zklb_discovery_bad_instances_total", "Malformed instance nodes skipped.",
		  offsetof(struct discovery_stats, bad_instances_total) },
		{ "zklb_discovery_held_changes_total", "Collapses held by the collapse guard.",
		  offsetof(struct discovery_stats, held_total) },
		{ "zklb_discovery_kept_total", "Empty views refused by keep_last_known.",
		  offsetof(struct discovery_stats, kept_total) },
		{ "zklb_discovery_errors_total", "ZooKeeper read errors other than connection loss.",
		  offsetof(struct discovery_stats, errors_total) },
	};
	char sname[256];
	for (size_t k = 0; k < ARRAY_SIZE(m); k++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", m[k].name, m[k].help, m[k].name);
		for (size_t i = 0; i < c->n_services; i++) {
			struct discovery_stats ds;
			if (!c->disc || !discovery_stats(c->disc, c->services[i]->name, &ds))
				continue;
			label_escape(sname, sizeof(sname), c->services[i]->name);
			evbuffer_add_printf(b, "%s{service=\"%s\"} %llu\n", m[k].name, sname,
					    (unsigned long long)*(const uint64_t *)((const char *)&ds + m[k].off));
		}
	}
	HELP(b, "zklb_discovery_connected", "gauge", "1 when the service's view is in sync with ZooKeeper (or static).");
	for (size_t i = 0; i < c->n_services; i++) {
		label_escape(sname, sizeof(sname), c->services[i]->name);
		const char *v = c->services[i]->view;
		evbuffer_add_printf(b, "zklb_discovery_connected{service=\"%s\",state=\"%s\"} %d\n", sname, v,
				    strcmp(v, "connected") == 0 || strcmp(v, "static") == 0);
	}
}

/* announce, sync and the config overlay: one labelled counter family each. */
static void metrics_zk_clients(struct evbuffer *b, struct control *c)
{
	char l1[512], l2[1024];
	if (c->announce && announce_count(c->announce)) {
		size_t n = announce_count(c->announce);
		struct announce_stats *v = xcalloc(n, sizeof(*v));
		for (size_t i = 0; i < n; i++)
			announce_stats(c->announce, i, &v[i]);
		static const struct {
			const char *name;
			const char *help;
			size_t off;
		} m[] = {
			{ "zklb_announce_registrations_total", "Announced nodes created.",
			  offsetof(struct announce_stats, registrations_total) },
			{ "zklb_announce_deregistrations_total", "Announced nodes deleted.",
			  offsetof(struct announce_stats, deregistrations_total) },
			{ "zklb_announce_failures_total", "Creates/deletes that failed.",
			  offsetof(struct announce_stats, failures_total) },
			{ "zklb_announce_check_failures_total", "Failed local health checks.",
			  offsetof(struct announce_stats, check_failures_total) },
		};
		for (size_t k = 0; k < ARRAY_SIZE(m); k++) {
			evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", m[k].name, m[k].help, m[k].name);
			for (size_t i = 0; i < n; i++) {
				label_escape(l1, sizeof(l1), v[i].service);
				label_escape(l2, sizeof(l2), v[i].path);
				evbuffer_add_printf(b, "%s{service=\"%s\",path=\"%s\"} %llu\n", m[k].name, l1, l2,
						    (unsigned long long)*(const uint64_t *)((const char *)&v[i] + m[k].off));
			}
		}
		HELP(b, "zklb_announce_healthy", "gauge", "1 while the announced service passes its check.");
		for (size_t i = 0; i < n; i++) {
			label_escape(l1, sizeof(l1), v[i].service);
			label_escape(l2, sizeof(l2), v[i].path);
			evbuffer_add_printf(b, "zklb_announce_healthy{service=\"%s\",path=\"%s\"} %d\n", l1, l2,
					    v[i].healthy);
		}
		free(v);
	}
	if (c->sync && sync_count(c->sync)) {
		size_t n = sync_count(c->sync);
		struct sync_stats *v = xcalloc(n, sizeof(*v));
		for (size_t i = 0; i < n; i++)
			sync_stats(c->sync, i, &v[i]);
		static const struct {
			const char *name;
			const char *help;
			size_t off;
		} m[] = {
			{ "zklb_sync_writes_total", "Files written.", offsetof(struct sync_stats, writes_total) },
			{ "zklb_sync_removals_total", "Files removed.", offsetof(struct sync_stats, removals_total) },
			{ "zklb_sync_refused_total", "Nodes refused (over max_size, bad child names).",
			  offsetof(struct sync_stats, refused_total) },
			{ "zklb_sync_errors_total", "File or ZooKeeper errors.", offsetof(struct sync_stats, errors_total) },
			{ "zklb_sync_commands_total", "on_change runs started.", offsetof(struct sync_stats, commands_total) },
			{ "zklb_sync_command_failures_total", "on_change runs that failed or timed out.",
			  offsetof(struct sync_stats, command_failures_total) },
		};
		for (size_t k = 0; k < ARRAY_SIZE(m); k++) {
			evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", m[k].name, m[k].help, m[k].name);
			for (size_t i = 0; i < n; i++) {
				label_escape(l2, sizeof(l2), v[i].path);
				evbuffer_add_printf(b, "%s{path=\"%s\"} %llu\n", m[k].name, l2,
						    (unsigned long long)*(const uint64_t *)((const char *)&v[i] + m[k].off));
			}
		}
		free(v);
	}
	if (c->overlay) {
		struct overlay_stats os;
		overlay_stats(c->overlay, &os);
		HELP(b, "zklb_config_overlay_applied_total", "counter", "Overlay documents applied.");
		evbuffer_add_printf(b, "zklb_config_overlay_applied_total %llu\n", (unsigned long long)os.applied_total);
		HELP(b, "zklb_config_overlay_rejected_total", "counter", "Overlay documents rejected.");
		evbuffer_add_printf(b, "zklb_config_overlay_rejected_total %llu\n", (unsigned long long)os.rejected_total);
		HELP(b, "zklb_config_overlay_in_force", "gauge", "1 while an overlay from ZooKeeper applies.");
		evbuffer_add_printf(b, "zklb_config_overlay_in_force %d\n", os.in_force);
		HELP(b, "zklb_config_overlay_cached", "gauge",
		     "1 while the overlay in force comes from cache_dir (ZooKeeper has not answered).");
		evbuffer_add_printf(b, "zklb_config_overlay_cached %d\n", os.cached);
	}
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct control *c = a->c;
	struct evbuffer *b = evbuffer_new();

	HELP(b, "zklb_info", "gauge", "Build information.");
	evbuffer_add_printf(b, "zklb_info{version=\"%s\"} 1\n", ZKLB_VERSION);
	HELP(b, "zklb_uptime_seconds", "gauge", "Seconds since start.");
	evbuffer_add_printf(b, "zklb_uptime_seconds %llu\n",
			    (unsigned long long)((now_ms() - c->started_ms) / 1000));
	HELP(b, "zklb_workers", "gauge", "Data-plane threads.");
	evbuffer_add_printf(b, "zklb_workers %u\n", c->n_workers);
	HELP(b, "zklb_draining", "gauge", "1 while draining for exit.");
	evbuffer_add_printf(b, "zklb_draining %d\n", c->draining);
	HELP(b, "zklb_reloads_total", "counter", "Configuration reloads applied.");
	evbuffer_add_printf(b, "zklb_reloads_total %llu\n", (unsigned long long)c->reloads);
	HELP(b, "zklb_reload_failures_total", "counter", "Reloads rejected (old configuration kept).");
	evbuffer_add_printf(b, "zklb_reload_failures_total %llu\n", (unsigned long long)c->reload_failures);
	struct resolver_stats rs;
	resolver_stats(c->resolver, &rs);
	HELP(b, "zklb_resolver_lookups_total", "counter", "Host name lookups of backends, by result.");
	evbuffer_add_printf(b, "zklb_resolver_lookups_total{result=\"ok\"} %llu\n",
			    (unsigned long long)rs.resolved);
	evbuffer_add_printf(b, "zklb_resolver_lookups_total{result=\"failed\"} %llu\n",
			    (unsigned long long)rs.failed);
	HELP(b, "zklb_resolver_pending", "gauge", "Backends waiting for their host name to resolve.");
	evbuffer_add_printf(b, "zklb_resolver_pending %llu\n", (unsigned long long)rs.pending);

	uint64_t conns = 0, accept_errors = 0, closes[RELAY_CLOSE_REASONS] = { 0 };
	for (unsigned i = 0; i < c->n_workers; i++) {
		struct worker *w = c->workers[i];
		conns += atomic_load(&w->n_relays);
		accept_errors += atomic_load(&w->accept_errors);
		for (int r = 0; r < RELAY_CLOSE_REASONS; r++)
			closes[r] += atomic_load(&w->closes[r]);
	}
	HELP(b, "zklb_connections_active", "gauge", "Client connections open, all services.");
	evbuffer_add_printf(b, "zklb_connections_active %llu\n", (unsigned long long)conns);
	HELP(b, "zklb_accept_errors_total", "counter", "accept() failures, e.g. out of file descriptors.");
	evbuffer_add_printf(b, "zklb_accept_errors_total %llu\n", (unsigned long long)accept_errors);
	HELP(b, "zklb_connections_closed_total", "counter", "Client connections closed, by reason.");
	for (int r = 0; r < RELAY_CLOSE_REASONS; r++)
		evbuffer_add_printf(b, "zklb_connections_closed_total{reason=\"%s\"} %llu\n",
				    relay_close_reason_name((enum relay_close_reason)r),
				    (unsigned long long)closes[r]);

	/* Pool discards: plain counters written by each worker, read racily (monotonic). */
	uint64_t discards[POOL_DISCARD_COUNT] = { 0 }, not_reusable[FRAMING_VERDICT_COUNT] = { 0 };
	for (unsigned i = 0; i < c->n_workers; i++) {
		const struct pool_worker *pw = &c->workers[i]->pool;
		for (int d = 0; d < POOL_DISCARD_COUNT; d++)
			discards[d] += __atomic_load_n(&pw->discards[d], __ATOMIC_RELAXED);
		for (int v = 0; v < FRAMING_VERDICT_COUNT; v++)
			not_reusable[v] += __atomic_load_n(&pw->not_reusable[v], __ATOMIC_RELAXED);
	}
	HELP(b, "zklb_upstream_connections_discarded_total", "counter",
	     "Upstream connections closed instead of pooled or kept, by reason.");
	for (int d = 0; d < POOL_DISCARD_COUNT; d++)
		evbuffer_add_printf(b, "zklb_upstream_connections_discarded_total{reason=\"%s\"} %llu\n",
				    pool_discard_name((enum pool_discard)d), (unsigned long long)discards[d]);
	HELP(b, "zklb_upstream_not_reusable_total", "counter",
	     "Upstream connections the framing tracker kept out of the pool, by verdict.");
	for (int v = 1; v < FRAMING_VERDICT_COUNT; v++)
		evbuffer_add_printf(b, "zklb_upstream_not_reusable_total{verdict=\"%s\"} %llu\n",
				    framing_verdict_name((enum framing_verdict)v),
				    (unsigned long long)not_reusable[v]);

	metrics_zookeeper(b, c);
	metrics_zk_clients(b, c);
	metrics_services(b, c);
	metrics_backends(b, c);
	reply(req, 200, "OK", "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

static void html_escape(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': evbuffer_add(b, "&lt;", 4); break;
		case '>': evbuffer_add(b, "&gt;", 4); break;
		case '&': evbuffer_add(b, "&amp;", 5); break;
		case '"': evbuffer_add(b, "&quot;", 6); break;
		default: evbuffer_add(b, s, 1);
		}
	}
}

static void on_root(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct control *c = a->c;
	const char *uri = evhttp_request_get_uri(req);
	if (strcmp(uri, "/") != 0) {
		evhttp_send_error(req, 404, "Not Found");
		return;
	}
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b,
		"<!doctype html><html><head><meta charset=\"utf-8\"><title>zklb status</title>"
		"<meta http-equiv=\"refresh\" content=\"5\"><style>"
		"body{font:14px sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1.5em}"
		"th,td{border:1px solid #bbb;padding:2px 8px;text-align:right}th{background:#eee}"
		"td.l{text-align:left}.healthy{background:#cfc}.ejected{background:#fcc}"
		".checking{background:#ffc}.draining{background:#ddd}</style></head><body>"
		"<h1>zklb %s</h1><p>uptime %llus, %u workers%s. "
		"<a href=\"/services\">/services</a> <a href=\"/metrics\">/metrics</a></p>",
		ZKLB_VERSION, (unsigned long long)((now_ms() - c->started_ms) / 1000), c->n_workers,
		c->draining ? ", <b>draining</b>" : "");
	for (size_t i = 0; i < c->n_services; i++) {
		struct service *svc = c->services[i];
		const struct service_conf *sc = &c->cfg->cfg->services[i];
		evbuffer_add_printf(b, "<h2>");
		html_escape(b, svc->name);
		evbuffer_add_printf(b, "</h2><p>listen ");
		html_escape(b, sc->listen);
		evbuffer_add_printf(b, " · %s · discovery %s · %llu connections, %llu failed</p>",
				    balance_kind_name(sc->balance), svc->view,
				    (unsigned long long)atomic_load(&svc->conn_total),
				    (unsigned long long)atomic_load(&svc->conn_failed));
		evbuffer_add_printf(b, "<table><tr><th>instance</th><th>address</th><th>state</th>"
				    "<th>weight</th><th>active</th><th>total</th><th>failures</th>"
				    "<th>ejections</th><th>bytes in</th><th>bytes out</th></tr>");
		size_t n;
		struct be_view *v = views_of(svc, &n);
		for (size_t j = 0; j < n; j++) {
			struct backend *be = v[j].be;
			evbuffer_add_printf(b, "<tr class=\"%s\"><td class=\"l\">", v[j].state);
			html_escape(b, be->id);
			evbuffer_add_printf(b, "</td><td class=\"l\">");
			html_escape(b, be->name);
			evbuffer_add_printf(b, "</td><td class=\"l\">%s</td><td>%u</td><td>%u</td>"
					    "<td>%llu</td><td>%llu</td><td>%u</td><td>%llu</td><td>%llu</td></tr>",
					    v[j].state, be->weight, atomic_load(&be->active),
					    (unsigned long long)atomic_load(&be->conn_total),
					    (unsigned long long)atomic_load(&be->connect_failures),
					    v[j].ejections,
					    (unsigned long long)atomic_load(&be->bytes_in),
					    (unsigned long long)atomic_load(&be->bytes_out));
		}
		views_free(v, n);
		evbuffer_add_printf(b, "</table>");
	}
	evbuffer_add_printf(b, "</body></html>\n");
	reply(req, 200, "OK", "text/html; charset=utf-8", b);
	evbuffer_free(b);
}

/*
 * Bind a->http to admin.listen: "host:port", or "unix:/path" with mode 0660
 * (the admin API is for the host's operators and their group, not for every
 * local user as a service socket is). A stale socket file is replaced as for
 * services; anything else at the path makes the bind fail.
 */
static bool admin_bind(struct admin *a, const char *listen)
{
	if (strncmp(listen, "unix:", 5) == 0) {
		char err[256];
		int fd;
		struct stat st;
		if (!listener_open_unix(listen, 0660, &fd, err, sizeof(err))) {
			log_error("admin: cannot listen on %s: %s", listen, err);
			return false;
		}
		if (!evhttp_accept_socket_with_handle(a->http, fd)) {
			log_error("admin: cannot serve HTTP on %s", listen);
			close(fd);
			unlink(listen + 5);
			return false;
		}
		a->unix_path = xstrdup(listen + 5);
		if (stat(a->unix_path, &st) == 0) {
			a->unix_dev = st.st_dev;
			a->unix_ino = st.st_ino;
		}
		return true;
	}
	char host[256];
	uint16_t port;
	if (!net_split_host_port(listen, host, sizeof(host), &port)) {
		log_error("admin.listen '%s' is not host:port", listen);
		return false;
	}
	if (evhttp_bind_socket(a->http, host, port) != 0) {
		log_error("admin: cannot listen on %s", listen);
		return false;
	}
	return true;
}

struct admin *admin_new(struct control *c, const char *listen)
{
	struct admin *a = xcalloc(1, sizeof(*a));
	a->c = c;
	a->http = evhttp_new(c->base);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(a->http, 16 * 1024);
	evhttp_set_max_body_size(a->http, 1024);
	evhttp_set_timeout(a->http, 10);
	if (!admin_bind(a, listen)) {
		admin_free(a);
		return NULL;
	}
	evhttp_set_cb(a->http, "/healthz", on_healthz, a);
	evhttp_set_cb(a->http, "/services", on_services, a);
	evhttp_set_cb(a->http, "/metrics", on_metrics, a);
	evhttp_set_gencb(a->http, on_root, a);
	if (a->unix_path)
		log_info("admin API on %s", listen);
	else
		log_info("admin API on http://%s/", listen);
	return a;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	evhttp_free(a->http);
	/* Like a service's socket, but never a file someone put there since. */
	struct stat st;
	if (a->unix_path && stat(a->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == a->unix_dev && st.st_ino == a->unix_ino)
		unlink(a->unix_path);
	free(a->unix_path);
	free(a);
}
