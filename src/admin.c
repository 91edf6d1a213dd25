/*
 * admin — see admin.h.
 *
 * Every response is built from the control thread's state and from atomics
 * the workers update; health state is read under the service's health lock.
 *
 * The transport is ours, not evhttp's, because what protects the control
 * thread is decided per connection: a cap on open connections (at the cap
 * the listener stops accepting and clients wait in the backlog), one deadline
 * for the whole request head (a client that dribbles bytes is closed however
 * often it sends), the bearer token, and one request per connection (every
 * response closes it).
 *
 * GET and HEAD read; POST changes state (the runtime API): only a request on
 * the unix admin socket (its mode, 0660, decides who reaches it) or one that
 * carried the bearer token may, and each change is logged with who made it.
 */
#include "admin.h"
#include "adminreq.h"
#include "control.h"
#include "announce.h"
#include "discovery.h"
#include "instance.h"
#include "listener.h"
#include "locality.h"
#include "log.h"
#include "metrics.h"
#include "renderer.h"
#include "stats.h"
#include "status_page.h"
#include "trunk_client.h"
#include "trunk_listener.h"
#include "zk.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A response takes at most this long to leave once written (a client that never reads). */
#define ADMIN_WRITE_TIMEOUT_S 10

struct admin {
	struct control *c;			/* not owned */
	admin_upgrade_fn *upgrade;		/* POST /upgrade: the control thread's */
	struct evconnlistener *listener;	/* owned */
	struct event *retry;			/* owned; re-enables accept after an accept() error */
	struct admin_conn *conns;		/* owned; open connections, newest first */
	bool paused;				/* listener disabled: at the connection cap */
	uint32_t n_conns;			/* open connections */
	uint32_t max_conns;			/* admin.max_connections */
	uint64_t head_timeout_ms;		/* admin.request_timeout */
	uint64_t metrics_cache_ms;		/* admin.metrics_cache; 0 = none */
	struct evbuffer *metrics;		/* owned; the last /metrics body */
	uint64_t metrics_at_ms;			/* when it was built; 0 = never */
	char token[ADMIN_TOKEN_MAX + 1];	/* the bearer token (NUL-terminated)... */
	size_t token_len;			/* ...0 = none required */
	char *unix_path;			/* owned; the socket file we bound, NULL on TCP */
	dev_t unix_dev;				/* with unix_ino: that file, so admin_free */
	ino_t unix_ino;				/* unlinks it only if it is still ours */
	struct admin_stats *stats;		/* ref: the control's counters */
	struct status_page *page;		/* owned; GET / and /status */
	bool handed_over;			/* hot upgrade: the socket file is the new process's */
};

/* One connection: read a head, write one response, close. */
enum admin_conn_state {
	ADMIN_CONN_READING = 0,			/* waiting for the whole head, deadline armed */
	ADMIN_CONN_WRITING,			/* response queued; closes once written */
};

struct admin_conn {
	struct admin *a;			/* ref */
	struct bufferevent *bev;		/* owned */
	struct event *deadline;			/* owned; the head's, then the write's */
	enum admin_conn_state state;
	enum admin_close outcome;		/* what closing counts */
	struct admin_conn *next;		/* in a->conns */
};

/* One response, filled by a handler. */
struct admin_reply {
	int code;
	const char *reason;
	const char *ctype;
	const char *allow;			/* an Allow header (405), or NULL */
	struct evbuffer *body;			/* owned by whoever made the reply */
};

static void reply_set(struct admin_reply *r, int code, const char *reason, const char *ctype)
{
	r->code = code;
	r->reason = reason;
	r->ctype = ctype;
}

/* Answer with the JSON document o (consumed), dumped with jansson's `flags`. */
static void reply_json(struct admin_reply *r, int code, const char *reason, json_t *o, size_t flags)
{
	char *s = json_dumps(o, flags | JSON_PRESERVE_ORDER);
	json_decref(o);
	evbuffer_add(r->body, s, strlen(s));
	evbuffer_add(r->body, "\n", 1);
	free(s);
	reply_set(r, code, reason, "application/json");
}

static void reply_error(struct admin_reply *r, int code, const char *reason, const char *msg)
{
	reply_json(r, code, reason, json_pack("{s:s}", "error", msg), JSON_COMPACT);
}

static void on_healthz(struct admin *a, struct admin_reply *r)
{
	if (a->c->draining) {
		evbuffer_add_printf(r->body, "draining\n");
		reply_set(r, 503, "Service Unavailable", "text/plain");
	} else {
		evbuffer_add_printf(r->body, "ok\n");
		reply_set(r, 200, "OK", "text/plain");
	}
}

/* The nodes discovery skips now, each with its kind and reason (at most ADMIN_SKIPPED_MAX). */
#define ADMIN_SKIPPED_MAX 64
static json_t *skipped_json(struct control *c, const char *name)
{
	struct discovery_skip v[ADMIN_SKIPPED_MAX];
	size_t n = discovery_skipped(c->disc, name, v, ADMIN_SKIPPED_MAX);
	json_t *arr = json_array();
	for (size_t i = 0; i < n && i < ADMIN_SKIPPED_MAX; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "node", v[i].node,
						     "kind", v[i].kind, "reason", v[i].reason));
	return arr;
}

/*
 * locality: this host's zone, the instances and routable instances of every
 * zone ("" for none), and how many connects left the zone out of all.
 */
static json_t *locality_json(const struct service *svc, const struct service_conf *sc,
			     const char *zone)
{
	json_t *zones = json_object();
	uint64_t now = now_ms();
	for (size_t i = 0; i < svc->n_members; i++) {
		const struct backend *be = svc->members[i];
		size_t zlen = 0;
		const char *z = be->payload ? locality_zone_of(be->payload, be->payload_len,
								sc->locality.zone_key, &zlen) : NULL;
		/* Whole: a zone cut inside a UTF-8 character is no JSON key. */
		char name[INSTANCE_PAYLOAD_MAX];
		snprintf(name, sizeof(name), "%.*s", (int)zlen, z ? z : "");
		json_t *e = json_object_get(zones, name);
		if (!e) {
			e = json_pack("{sisi}", "instances", 0, "routable", 0);
			if (json_object_set_new(zones, name, e) != 0)
				continue;	/* not UTF-8: jansson freed e */
		}
		json_object_set_new(e, "instances",
				    json_integer(json_integer_value(json_object_get(e, "instances")) + 1));
		if (backend_routable(be, now))
			json_object_set_new(e, "routable", json_integer(
				json_integer_value(json_object_get(e, "routable")) + 1));
	}
	return json_pack("{sssosIsIsi}", "local_zone", zone, "zones", zones,
			 "out_of_zone_connections", (json_int_t)atomic_load(&svc->out_of_zone),
			 "connections_total", (json_int_t)atomic_load(&svc->conn_total),
			 "min_healthy_percent", (int)sc->locality.min_healthy_percent);
}

/* One peer host of the trunk's calling side, appended to the array arg. */
static void trunk_peer_json(const char *peer, const struct trunk_stats *st, void *arg)
{
	json_t *e = json_object();
	json_object_set_new(e, "peer", json_string(peer));
#define PUT(key, f) json_object_set_new(e, key, json_integer((json_int_t)atomic_load(&st->f)))
	PUT("connections", conns_open);
	PUT("connections_opened", conns_accepted);
	PUT("handshake_failures", handshake_failures);
	PUT("streams_active", streams_open);
	PUT("streams", streams);
	PUT("stream_failures", connect_failures);
	PUT("bytes_in", bytes_in);
	PUT("bytes_out", bytes_out);
	PUT("window_stalls", window_stalls);
	PUT("protocol_errors", protocol_errors);
#undef PUT
	json_array_append_new(arg, e);
}

/*
 * relay: as configured, which relay new connections get ("kernel" or
 * "user"), and how many connections went to the kernel or fell back.
 */
static json_t *relay_json(const struct control *c, const struct service *svc,
			  const struct service_conf *sc)
{
	static const char *const names[] = {
		[RELAY_MODE_UNSET] = "user", [RELAY_MODE_USER] = "user",
		[RELAY_MODE_KERNEL] = "kernel", [RELAY_MODE_AUTO] = "auto",
	};
	bool kernel = sc->relay == RELAY_MODE_KERNEL || sc->relay == RELAY_MODE_AUTO;
	/* auto on a service the kernel cannot carry stays in user space */
	bool in_kernel = kernel && config_relay_kernel_fits(sc) && c->krelay;
	return json_pack("{sssssIsIsI}", "mode", names[sc->relay],
			 "in_use", in_kernel ? "kernel" : "user",
			 "kernel_connections", (json_int_t)atomic_load(&svc->kernel_relays),
			 "kernel_fallbacks", (json_int_t)atomic_load(&svc->kernel_fallbacks),
			 "kernel_spills", (json_int_t)atomic_load(&svc->kernel_spills));
}

static json_t *service_json(struct control *c, size_t idx)
{
	struct service *svc = c->services[idx];
	const struct service_conf *sc = &c->cfg->cfg->services[idx];
	json_t *o = json_object();
	json_object_set_new(o, "listen", json_string(sc->listen ? sc->listen : "off"));
	json_object_set_new(o, "discovery", json_string(service_view_name(svc->view)));
	json_object_set_new(o, "discovery_type", json_string(discovery_kind_name(sc->discovery.type)));
	if (sc->locality.prefer == LOCALITY_ZONE && c->cfg->cfg->zone)
		json_object_set_new(o, "locality", locality_json(svc, sc, c->cfg->cfg->zone));
	if (sc->discovery.path)
		json_object_set_new(o, "path", json_string(sc->discovery.path));
	json_object_set_new(o, "balance", json_string(balance_kind_name(sc->balance)));
	static const char *const via_names[] = { [VIA_DIRECT] = "direct", [VIA_TRUNK] = "trunk",
						 [VIA_AUTO] = "auto" };
	json_object_set_new(o, "via", json_string(via_names[sc->via]));
	json_object_set_new(o, "relay", relay_json(c, svc, sc));
	json_object_set_new(o, "origin", json_string(sc->origin ? sc->origin : "file"));
	json_object_set_new(o, "version", json_integer((json_int_t)svc->version));
	struct discovery_stats ds;
	if (c->disc && discovery_stats(c->disc, svc->name, &ds)) {
		json_object_set_new(o, "bad_instances", json_integer((json_int_t)ds.bad_instances_total));
		json_object_set_new(o, "skipped_instances", json_integer((json_int_t)ds.skipped));
		json_object_set_new(o, "held_changes", json_integer((json_int_t)ds.held_total));
		json_object_set_new(o, "holding", json_boolean(ds.holding));
		json_object_set_new(o, "unroutable_instances", json_integer((json_int_t)ds.unroutable_total));
		json_object_set_new(o, "duplicate_instances", json_integer((json_int_t)ds.duplicates_total));
		json_object_set_new(o, "skipped", skipped_json(c, svc->name));
		json_object_set_new(o, "read_wait_ms", json_integer((json_int_t)ds.read_wait_ms));
	}
	pthread_mutex_lock(&svc->health_lock);
	json_object_set_new(o, "panic", json_boolean(svc->panic));
	pthread_mutex_unlock(&svc->health_lock);
	json_object_set_new(o, "connections_total", json_integer((json_int_t)atomic_load(&svc->conn_total)));
	json_object_set_new(o, "connections_failed", json_integer((json_int_t)atomic_load(&svc->conn_failed)));
	json_object_set_new(o, "retries", json_integer((json_int_t)atomic_load(&svc->retries)));
	json_object_set_new(o, "refused_instances", json_integer((json_int_t)atomic_load(&svc->refused)));
	json_object_set_new(o, "connections_open", json_integer((json_int_t)atomic_load(&svc->conn_open)));
	json_object_set_new(o, "queued", json_integer((json_int_t)atomic_load(&svc->queued)));
	json_object_set_new(o, "queue_timeouts", json_integer((json_int_t)atomic_load(&svc->queue_timeouts)));

	size_t n;
	struct stats_instance *v = stats_instances_of(svc, &n);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		struct backend *be = v[i].be;
		json_t *e = json_object();
		json_object_set_new(e, "id", json_string(be->id));
		json_object_set_new(e, "address", json_string(be->host));
		json_object_set_new(e, "port", json_integer(be->port));
		if (be->ssl_port)
			json_object_set_new(e, "ssl_port", json_integer(be->ssl_port));
		json_object_set_new(e, "weight", json_integer(backend_weight(be)));
		if (atomic_load(&be->weight_override))
			json_object_set_new(e, "discovered_weight", json_integer(be->weight));
		json_object_set_new(e, "admin_drain", json_boolean(backend_drained(be)));
		json_object_set_new(e, "state", json_string(v[i].state));
		if (backend_refused(be))
			json_object_set_new(e, "refused", json_string(be->refused));
		uint16_t tport = atomic_load_explicit(&be->trunk_port, memory_order_relaxed);
		json_object_set_new(e, "trunk", tport ? json_integer(tport) : json_null());
		if (sc->via == VIA_TRUNK && !tport)
			json_object_set_new(e, "unroutable", json_string(
				"via: trunk, and the instance advertises no zklb.trunk in its payload"));
		json_object_set_new(e, "active", json_integer(atomic_load(&be->active)));
		json_object_set_new(e, "total", json_integer((json_int_t)atomic_load(&be->conn_total)));
		json_object_set_new(e, "failures", json_integer((json_int_t)atomic_load(&be->connect_failures)));
		json_object_set_new(e, "consecutive_failures", json_integer(v[i].consecutive_failures));
		json_object_set_new(e, "ejections", json_integer(v[i].ejections));
		json_object_set_new(e, "ejected_for_ms", json_integer((json_int_t)v[i].ejected_for_ms));
		if (v[i].held != BACKEND_HELD_NONE) {
			json_object_set_new(e, "held", json_string(backend_held_name(v[i].held)));
			json_object_set_new(e, "hold_ends_in_ms", json_integer((json_int_t)v[i].hold_ends_in_ms));
		}
		json_object_set_new(e, "bytes_in", json_integer((json_int_t)atomic_load(&be->bytes_in)));
		json_object_set_new(e, "bytes_out", json_integer((json_int_t)atomic_load(&be->bytes_out)));
		json_object_set_new(e, "upstream_opened", json_integer((json_int_t)atomic_load(&be->upstream_opened)));
		json_object_set_new(e, "upstream_reused", json_integer((json_int_t)atomic_load(&be->upstream_reused)));
		json_object_set_new(e, "idle", json_integer(atomic_load(&be->idle)));
		json_array_append_new(arr, e);
	}
	stats_instances_free(v, n);
	json_object_set_new(o, "instances", arr);
	return o;
}

static void on_services(struct admin *a, struct admin_reply *r)
{
	struct control *c = a->c;
	json_t *root = json_object();
	json_object_set_new(root, "version", json_string(ZKLB_VERSION));
	json_object_set_new(root, "uptime_s", json_integer((json_int_t)((now_ms() - c->started_ms) / 1000)));
	json_object_set_new(root, "workers", json_integer(c->n_workers));
	json_object_set_new(root, "draining", json_boolean(c->draining));
	json_object_set_new(root, "pid", json_integer((json_int_t)getpid()));
	json_object_set_new(root, "upgrade", json_pack("{s:s, s:I, s:s}", "state",
			    c->upgrade && !c->upgraded ? "running" : c->upgraded ? "done" : "idle",
			    "failures", (json_int_t)c->upgrade_failures,
			    "last_failure", c->upgrade_last_failure));
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
	if (renderer_count(c->renderer))
		json_object_set_new(root, "render", renderer_status_json(c->renderer));
	if (c->trunk_client) {
		json_t *arr = json_array();
		trunk_client_each_peer(c->trunk_client, trunk_peer_json, arr);
		json_object_set_new(root, "trunk_peers", arr);
	}
	reply_json(r, 200, "OK", root, JSON_INDENT(2));
}

/*
 * /metrics walks every backend of every service: a scraper polling in a loop
 * would keep the control thread busy. The body is rebuilt at most once per
 * admin.metrics_cache.
 */
static void on_metrics(struct admin *a, struct admin_reply *r)
{
	uint64_t now = now_ms();
	if (a->metrics_at_ms == 0 || a->metrics_cache_ms == 0 ||
	    now - a->metrics_at_ms >= a->metrics_cache_ms) {
		evbuffer_drain(a->metrics, evbuffer_get_length(a->metrics));
		metrics_write(a->metrics, a->c);
		a->metrics_at_ms = now;
		a->stats->metrics_built++;
	}
	size_t n = evbuffer_get_length(a->metrics);
	evbuffer_add(r->body, evbuffer_pullup(a->metrics, -1), n);
	reply_set(r, 200, "OK", "text/plain; version=0.0.4");
}

/* GET /config: the configuration in force, secrets masked. */
static void on_config(struct admin *a, struct admin_reply *r)
{
	reply_json(r, 200, "OK", config_dump(a->c->cfg->cfg), JSON_INDENT(2));
}

/* ---- the runtime API: state-changing requests ------------------------------------ */

/*
 * The one check every state-changing request passes: may this request change
 * state? One on the unix admin socket may (`who` from SO_PEERCRED: "uid=0
 * pid=1234"); on TCP, only one that carried the bearer token (conn_dispatch
 * refused a wrong one already). `who` names the peer either way, for the log
 * line and the status page.
 */
static bool admin_may_change(const struct admin *a, const struct admin_conn *k, char *who,
			     size_t len)
{
	int fd = bufferevent_getfd(k->bev);
	snprintf(who, len, "unknown peer");
	if (fd < 0)
		return false;
	if (a->unix_path) {
		struct ucred uc;
		socklen_t ul = sizeof(uc);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0)
			return false;
		snprintf(who, len, "uid=%u pid=%d", (unsigned)uc.uid, (int)uc.pid);
		return true;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct net_addr peer = { 0 };
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		memcpy(&peer.ss, &ss, sl);
		peer.len = sl;
		char addr[INET6_ADDRSTRLEN + 16];
		net_addr_format(&peer, addr, sizeof(addr));
		snprintf(who, len, "%s%s", addr, a->token_len ? " (token)" : "");
	}
	return a->token_len > 0;
}

#define ADMIN_MAX_SEGMENTS 6

/*
 * Split the request's path into at most ADMIN_MAX_SEGMENTS percent-decoded
 * segments (owned by the caller: free each). Returns the count, or -1 for
 * a path that is too deep, has an empty segment or decodes to a NUL byte.
 */
static int split_path(const struct adminreq *req, char **seg)
{
	int n = 0;
	const char *p = req->path + 1, *end_all = req->path + req->path_len;
	while (p < end_all) {
		const char *slash = memchr(p, '/', (size_t)(end_all - p));
		size_t len = slash ? (size_t)(slash - p) : (size_t)(end_all - p);
		if (n == ADMIN_MAX_SEGMENTS || len == 0)
			goto bad;
		char *raw = xmalloc(len + 1);
		memcpy(raw, p, len);
		raw[len] = '\0';
		size_t dlen = 0;
		seg[n] = evhttp_uridecode(raw, 0, &dlen);
		free(raw);
		if (!seg[n] || strlen(seg[n]) != dlen) {
			free(seg[n]);
			goto bad;
		}
		n++;
		p += len + (slash ? 1 : 0);
	}
	return n;
bad:
	while (n > 0)
		free(seg[--n]);
	return -1;
}

static struct backend *find_instance(struct service *svc, const char *id)
{
	for (size_t i = 0; i < svc->n_members; i++)
		if (strcmp(svc->members[i]->id, id) == 0)
			return svc->members[i];
	return NULL;
}

/* Parse ?value=N (1..256, or 0 to drop the override) into *out. */
static bool weight_param(const struct adminreq *req, uint32_t *out)
{
	if (!req->query || req->query_len > 256)
		return false;
	char query[257];
	memcpy(query, req->query, req->query_len);
	query[req->query_len] = '\0';
	struct evkeyvalq q;
	bool ok = false;
	if (evhttp_parse_query_str(query, &q) != 0)
		return false;
	const char *v = evhttp_find_header(&q, "value");
	if (v && *v && v[0] != '-') {
		char *end;
		errno = 0;
		unsigned long w = strtoul(v, &end, 10);
		ok = !*end && !errno && w <= 256;
		*out = (uint32_t)w;
	}
	evhttp_clear_headers(&q);
	return ok;
}

/* POST /services/NAME/instances/ID/{drain,undrain,weight}: one instance's admin state. */
static void instance_change(struct admin_reply *r, const struct adminreq *req, struct service *svc,
			    const char *id, const char *op, const char *who)
{
	struct backend *be = find_instance(svc, id);
	if (!be) {
		reply_error(r, 404, "Not Found", "no such instance in this service");
		return;
	}
	char note[sizeof(be->admin_note)];
	if (strcmp(op, "drain") == 0 || strcmp(op, "undrain") == 0) {
		bool drain = op[0] == 'd';
		atomic_store(&be->admin_drain, drain);
		snprintf(note, sizeof(note), "%s by %s", drain ? "drained" : "undrained", who);
		log_info("admin: %s svc=%s be=%s id=%s by %s", drain ? "drain" : "undrain",
			 svc->name, be->name, be->id, who);
	} else if (strcmp(op, "weight") == 0) {
		uint32_t w;
		if (!weight_param(req, &w)) {
			reply_error(r, 400, "Bad Request",
				    "weight needs ?value=N, 1..256 (0: back to the discovered weight)");
			return;
		}
		atomic_store(&be->weight_override, w);
		if (w)
			snprintf(note, sizeof(note), "weight %u by %s", w, who);
		else
			snprintf(note, sizeof(note), "weight reset by %s", who);
		log_info("admin: weight svc=%s be=%s id=%s %u (discovered %u) by %s", svc->name,
			 be->name, be->id, backend_weight(be), be->weight, who);
	} else {
		reply_error(r, 404, "Not Found", "instance operations: drain, undrain, weight");
		return;
	}
	snprintf(be->admin_note, sizeof(be->admin_note), "%s", note);
	reply_json(r, 200, "OK", json_pack("{s:s, s:s, s:s, s:b, s:I}", "service", svc->name,
					     "id", be->id, "change", note, "drain",
					     backend_drained(be), "weight",
					     (json_int_t)backend_weight(be)), JSON_COMPACT);
}

/* POST /services/NAME/reread: read the service from ZooKeeper again. */
static void service_reread(struct admin *a, struct admin_reply *r, struct service *svc,
			   const char *who)
{
	const struct service_conf *sc = config_service(a->c->cfg->cfg, svc->name);
	int rc = sc && sc->discovery.type == DISCOVERY_STATIC ? -EINVAL
		 : a->c->disc ? discovery_reread(a->c->disc, svc->name) : -ENOENT;
	if (rc == -EINVAL) {
		reply_error(r, 409, "Conflict", "a static service has nothing to re-read");
		return;
	}
	if (rc != 0) {
		reply_error(r, 404, "Not Found", "the service is not discovered");
		return;
	}
	log_info("admin: re-read svc=%s from ZooKeeper by %s", svc->name, who);
	reply_json(r, 200, "OK", json_pack("{s:s, s:s}", "service", svc->name, "change", "re-read"),
		   JSON_COMPACT);
}

/* POST /upgrade: a hot upgrade, as SIGUSR2 (zklb upgrade uses it). */
static void upgrade_change(struct admin *a, struct admin_reply *r, const char *who)
{
	char why[512];
	int rc = a->upgrade(a->c, who, why, sizeof(why));
	if (rc == -EBUSY) {
		reply_error(r, 409, "Conflict", why);
		return;
	}
	if (rc != 0) {
		reply_error(r, 500, "Internal Server Error", why);
		return;
	}
	reply_json(r, 202, "Accepted", json_pack("{s:s, s:I, s:s, s:I}", "change", "upgrade",
					      "pid", (json_int_t)getpid(), "state", why,
					      "failures", (json_int_t)a->c->upgrade_failures),
		   JSON_COMPACT);
}

/* A POST: the runtime API. */
static void admin_change(struct admin_conn *k, const struct adminreq *req, struct admin_reply *r)
{
	struct admin *a = k->a;
	char who[96];
	if (!admin_may_change(a, k, who, sizeof(who))) {
		log_warn("admin: refused %.*s from %s: state changes need the unix admin socket or "
			 "the bearer token", (int)req->path_len, req->path, who);
		reply_error(r, 403, "Forbidden",
			    "state changes are served on the unix admin socket or with the admin token");
		return;
	}
	char *seg[ADMIN_MAX_SEGMENTS];
	int n = split_path(req, seg);
	struct service *svc = NULL;
	for (size_t i = 0; n >= 3 && strcmp(seg[0], "services") == 0 && i < a->c->n_services; i++)
		if (strcmp(a->c->services[i]->name, seg[1]) == 0)
			svc = a->c->services[i];
	if (n < 0)
		reply_error(r, 400, "Bad Request", "malformed path");
	else if (n == 1 && strcmp(seg[0], "upgrade") == 0)
		upgrade_change(a, r, who);
	else if (!svc)
		reply_error(r, 404, "Not Found", "no such service or operation");
	else if (n == 3 && strcmp(seg[2], "reread") == 0)
		service_reread(a, r, svc, who);
	else if (n == 5 && strcmp(seg[2], "instances") == 0)
		instance_change(r, req, svc, seg[3], seg[4], who);
	else
		reply_error(r, 404, "Not Found", "no such operation");
	while (n > 0)
		free(seg[--n]);
}

static void on_root(struct admin *a, struct admin_reply *r)
{
	status_page_html(a->page, r->body);
	reply_set(r, 200, "OK", "text/html; charset=utf-8");
}

static void on_status(struct admin *a, struct admin_reply *r)
{
	status_page_json(a->page, r->body);
	reply_set(r, 200, "OK", "application/json");
}

/* What each path answers; `open` ones need no token (a load balancer's probe). */
static const struct admin_route {
	const char *path;
	void (*fn)(struct admin *a, struct admin_reply *r);
	bool open;
} admin_routes[] = {
	{ "/healthz", on_healthz, true },
	{ "/services", on_services, false },
	{ "/metrics", on_metrics, false },
	{ "/status", on_status, false },
	{ "/config", on_config, false },
	{ "/", on_root, false },
};

static void conn_free(struct admin_conn *k)
{
	bufferevent_free(k->bev);
	event_free(k->deadline);
	free(k);
}


/*
 * The connection's end, for whatever reason: counted, and the listener
 * resumes if the cap had paused it. The bufferevent is freed here: libevent
 * defers the free of a bufferevent inside its own callback, and nothing of
 * k is used after this returns.
 */
static void conn_close(struct admin_conn *k, enum admin_close why)
{
	struct admin *a = k->a;
	a->stats->closes[why]++;
	for (struct admin_conn **pp = &a->conns; *pp; pp = &(*pp)->next) {
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	}
	conn_free(k);
	a->n_conns--;
	a->stats->open = a->n_conns;
	if (a->paused && a->n_conns < a->max_conns) {
		a->paused = false;
		evconnlistener_enable(a->listener);
	}
}

/* Queue the response, stop reading, close once it is written (or its deadline passes). */
static void conn_respond(struct admin_conn *k, const struct admin_reply *r, bool head_only,
			 enum admin_close outcome)
{
	struct evbuffer *out = bufferevent_get_output(k->bev);
	size_t len = evbuffer_get_length(r->body);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			    "Cache-Control: no-store\r\nConnection: close\r\n%s%s%s%s\r\n",
			    r->code, r->reason, r->ctype, len,
			    r->code == 401 ? "WWW-Authenticate: Bearer realm=\"zklb\"\r\n" : "",
			    r->allow ? "Allow: " : "", r->allow ? r->allow : "", r->allow ? "\r\n" : "");
	if (!head_only)
		evbuffer_add_buffer(out, r->body);
	bufferevent_disable(k->bev, EV_READ);
	k->state = ADMIN_CONN_WRITING;
	k->outcome = outcome;
	struct timeval tv = { ADMIN_WRITE_TIMEOUT_S, 0 };
	evtimer_add(k->deadline, &tv);
}

/* A short error answer with a one-line body. */
static void conn_error(struct admin_conn *k, int code, const char *reason, enum admin_close why)
{
	struct admin_reply r = { .body = evbuffer_new() };
	reply_set(&r, code, reason, "text/plain");
	evbuffer_add_printf(r.body, "%s\n", reason);
	conn_respond(k, &r, false, why);
	evbuffer_free(r.body);
}

static void conn_dispatch(struct admin_conn *k, const struct adminreq *req)
{
	struct admin *a = k->a;
	if (req->method == ADMINREQ_OTHER) {
		conn_error(k, 501, "Not Implemented", ADMIN_CLOSE_DONE);
		return;
	}
	const struct admin_route *route = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(admin_routes) && !route; i++)
		if (adminreq_path_is(req, admin_routes[i].path))
			route = &admin_routes[i];
	if (a->token_len && !(route && route->open) && !adminreq_token_ok(req, a->token, a->token_len)) {
		/* Before the 404 too: without the token, which paths exist is not said. */
		log_debug("admin: request without the bearer token: 401");
		conn_error(k, 401, "Unauthorized", ADMIN_CLOSE_UNAUTHORIZED);
		return;
	}
	struct admin_reply r = { .body = evbuffer_new() };
	if (req->method == ADMINREQ_POST && !route) {
		admin_change(k, req, &r);
	} else if (!route) {
		evbuffer_free(r.body);
		conn_error(k, 404, "Not Found", ADMIN_CLOSE_DONE);
		return;
	} else if (req->method == ADMINREQ_POST) {
		reply_error(&r, 405, "Method Not Allowed", "this endpoint answers GET and HEAD");
		r.allow = "GET, HEAD";
	} else {
		route->fn(a, &r);
	}
	conn_respond(k, &r, req->method == ADMINREQ_HEAD, ADMIN_CLOSE_DONE);
	evbuffer_free(r.body);
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
	struct admin_conn *k = arg;
	if (k->state != ADMIN_CONN_READING)
		return;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = MIN(evbuffer_get_length(in), (size_t)ADMINREQ_HEAD_MAX);
	const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
	struct adminreq req;
	switch (adminreq_parse(buf, len, &req)) {
	case ADMINREQ_INCOMPLETE:
		return;
	case ADMINREQ_BAD:
		log_debug("admin: malformed request head: 400");
		conn_error(k, 400, "Bad Request", ADMIN_CLOSE_BAD_REQUEST);
		return;
	case ADMINREQ_TOO_LARGE:
		log_debug("admin: request head over %d bytes: 431", ADMINREQ_HEAD_MAX);
		conn_error(k, 431, "Request Header Fields Too Large", ADMIN_CLOSE_TOO_LARGE);
		return;
	case ADMINREQ_OK:
		conn_dispatch(k, &req);
		return;
	}
}

static void on_conn_written(struct bufferevent *bev, void *arg)
{
	struct admin_conn *k = arg;
	if (k->state == ADMIN_CONN_WRITING)
		conn_close(k, k->outcome);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct admin_conn *k = arg;
	conn_close(k, k->state == ADMIN_CONN_WRITING ? k->outcome : ADMIN_CLOSE_CLIENT);
}

static void on_conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct admin_conn *k = arg;
	if (k->state == ADMIN_CONN_READING) {
		log_info("admin: request head not complete within %llums: connection closed",
			 (unsigned long long)k->a->head_timeout_ms);
		conn_close(k, ADMIN_CLOSE_TIMEOUT);
		return;
	}
	conn_close(k, ADMIN_CLOSE_CLIENT);	/* the client does not read its response */
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct admin *a = arg;
	struct event_base *base = evconnlistener_get_base(l);
	struct admin_conn *k = xcalloc(1, sizeof(*k));
	k->a = a;
	k->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	k->deadline = evtimer_new(base, on_conn_deadline, k);
	if (!k->bev || !k->deadline) {
		log_error("admin: out of memory for a connection");
		if (k->bev)
			bufferevent_free(k->bev);
		else
			close(fd);
		if (k->deadline)
			event_free(k->deadline);
		free(k);
		return;
	}
	/* Read no more than a head can be: the rest waits in the kernel. */
	bufferevent_setwatermark(k->bev, EV_READ, 0, ADMINREQ_HEAD_MAX);
	bufferevent_setcb(k->bev, on_conn_read, on_conn_written, on_conn_event, k);
	bufferevent_enable(k->bev, EV_READ);
	k->next = a->conns;
	a->conns = k;
	struct timeval tv = { (time_t)(a->head_timeout_ms / 1000), (suseconds_t)(a->head_timeout_ms % 1000) * 1000 };
	evtimer_add(k->deadline, &tv);
	a->n_conns++;
	a->stats->open = a->n_conns;
	if (a->n_conns >= a->max_conns && !a->paused) {
		/* Clients beyond the cap wait in the listen backlog, not in our memory. */
		a->paused = true;
		a->stats->paused++;
		evconnlistener_disable(l);
		log_warn("admin: %u connections open (admin.max_connections): accepting paused",
			 a->n_conns);
	}
}

/* accept() failed (out of descriptors, say): pause 100 ms rather than spin. */
static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	if (!a->paused)
		evconnlistener_enable(a->listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct admin *a = arg;
	int err = EVUTIL_SOCKET_ERROR();
	a->stats->accept_errors++;
	log_warn("admin: accept failed: %s (retrying in 100ms)", strerror(err));
	evconnlistener_disable(l);
	struct timeval tv = { 0, 100 * 1000 };
	evtimer_add(a->retry, &tv);
}

bool admin_token_load(const char *path, char *token, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return false;
	}
	char buf[ADMIN_TOKEN_MAX + 2];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return false;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	char *t = buf + strspn(buf, " \t");
	size_t l = strlen(t);
	while (l && (t[l - 1] == ' ' || t[l - 1] == '\t'))
		l--;
	for (size_t i = 0; i < l; i++) {
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) {
			snprintf(err, errlen, "the token must be printable ASCII without blanks");
			return false;
		}
	}
	if (l == 0 || l > ADMIN_TOKEN_MAX) {
		snprintf(err, errlen, "the token must be 1..%d bytes on the first line", ADMIN_TOKEN_MAX);
		return false;
	}
	memcpy(token, t, l);
	token[l] = '\0';
	*len = l;
	return true;
}

/* The bearer token (mode checked when the configuration loaded); false after logging why. */
static bool admin_read_token(struct admin *a, const char *path)
{
	char err[128];
	if (!admin_token_load(path, a->token, &a->token_len, err, sizeof(err))) {
		log_error("admin.token_file %s: %s", path, err);
		return false;
	}
	return true;
}

/*
 * Listen on admin.listen: "host:port", or "unix:/path" with mode 0660 (the
 * admin API is for the host's operators and their group, not for every local
 * user as a service socket is). A stale socket file is replaced as for
 * services; anything else at the path makes the bind fail.
 */
static bool admin_bind(struct admin *a, const char *listen, int inherited)
{
	struct event_base *base = a->c->base;
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
	if (inherited >= 0) {
		/* A hot upgrade handed the running process's socket over: serve on it. */
		evutil_make_socket_nonblocking(inherited);
		a->listener = evconnlistener_new(base, on_accept, a, flags, -1, inherited);
		if (!a->listener) {
			log_error("admin: cannot serve on the inherited %s", listen);
			close(inherited);
			return false;
		}
		struct stat st;
		if (strncmp(listen, "unix:", 5) == 0) {
			a->unix_path = xstrdup(listen + 5);
			if (stat(a->unix_path, &st) == 0) {
				a->unix_dev = st.st_dev;
				a->unix_ino = st.st_ino;
			}
		}
		return true;
	}
	if (strncmp(listen, "unix:", 5) == 0) {
		char err[256];
		int fd;
		struct stat st;
		if (!listener_open_unix(listen, 0660, &fd, err, sizeof(err))) {
			log_error("admin: cannot listen on %s: %s", listen, err);
			return false;
		}
		evutil_make_socket_nonblocking(fd);
		a->listener = evconnlistener_new(base, on_accept, a, flags, 0, fd);
		if (!a->listener) {
			log_error("admin: cannot serve on %s", listen);
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
	struct net_addr addr;
	char err[256];
	if (!net_addr_parse(listen, &addr, err, sizeof(err))) {
		log_error("admin.listen '%s': %s", listen, err);
		return false;
	}
	a->listener = evconnlistener_new_bind(base, on_accept, a, flags | LEV_OPT_REUSEABLE, 128,
					      (struct sockaddr *)&addr.ss, (int)addr.len);
	if (!a->listener) {
		log_error("admin: cannot listen on %s: %s", listen, strerror(errno));
		return false;
	}
	if (!sockaddr_is_loopback((struct sockaddr *)&addr.ss) && a->token_len == 0)
		log_warn("admin API on %s is reachable beyond loopback and has no token: whoever "
			 "reaches it reads every service, instance and the ZooKeeper session "
			 "(set admin.token_file, or bind 127.0.0.1)", listen);
	return true;
}

struct admin *admin_new(struct control *c, const char *listen, int inherited,
			admin_upgrade_fn *upgrade)
{
	const struct config *cfg = c->cfg->cfg;
	struct admin *a = xcalloc(1, sizeof(*a));
	a->c = c;
	a->upgrade = upgrade;
	a->stats = &c->admin_stats;
	a->max_conns = cfg->admin_max_connections;
	a->head_timeout_ms = cfg->admin_request_timeout_ms;
	a->metrics_cache_ms = cfg->admin_metrics_cache_ms;
	a->metrics = evbuffer_new();
	a->retry = evtimer_new(c->base, on_accept_retry, a);
	if (cfg->admin_token_file && !admin_read_token(a, cfg->admin_token_file)) {
		admin_free(a);
		return NULL;
	}
	if (!admin_bind(a, listen, inherited)) {
		admin_free(a);
		return NULL;
	}
	evconnlistener_set_error_cb(a->listener, on_accept_error);
	a->page = status_page_new(c);
	if (a->unix_path)
		log_info("admin API on %s%s", listen, a->token_len ? " (bearer token required)" : "");
	else
		log_info("admin API on http://%s/%s", listen, a->token_len ? " (bearer token required)" : "");
	return a;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	if (a->listener)
		evconnlistener_free(a->listener);
	while (a->conns) {
		struct admin_conn *k = a->conns;
		a->conns = k->next;
		conn_free(k);
	}
	if (a->retry)
		event_free(a->retry);
	evbuffer_free(a->metrics);
	status_page_free(a->page);
	/* Like a service's socket, but never a file someone put there since. */
	struct stat st;
	if (a->unix_path && !a->handed_over && stat(a->unix_path, &st) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_dev == a->unix_dev && st.st_ino == a->unix_ino)
		unlink(a->unix_path);
	free(a->unix_path);
	free(a);
}

int admin_listen_fd(const struct admin *a)
{
	return a && a->listener ? evconnlistener_get_fd(a->listener) : -1;
}

void admin_hand_over(struct admin *a)
{
	if (!a)
		return;
	a->handed_over = true;
	admin_free(a);
}
