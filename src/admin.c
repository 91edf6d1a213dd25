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
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "renderer.h"
#include "stats.h"
#include "status_page.h"
#include "zk.h"

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
	struct status_page *page;		/* owned; GET / and /status */
};

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

static json_t *service_json(struct control *c, size_t idx)
{
	struct service *svc = c->services[idx];
	const struct service_conf *sc = &c->cfg->cfg->services[idx];
	json_t *o = json_object();
	json_object_set_new(o, "listen", json_string(sc->listen ? sc->listen : "off"));
	json_object_set_new(o, "discovery", json_string(service_view_name(svc->view)));
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
		json_object_set_new(e, "weight", json_integer(be->weight));
		json_object_set_new(e, "state", json_string(v[i].state));
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
	if (renderer_count(c->renderer))
		json_object_set_new(root, "render", renderer_status_json(c->renderer));
	char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, s, strlen(s));
	evbuffer_add(b, "\n", 1);
	free(s);
	reply(req, 200, "OK", "application/json", b);
	evbuffer_free(b);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evbuffer *b = evbuffer_new();
	metrics_write(b, a->c);
	reply(req, 200, "OK", "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

static void on_root(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const char *uri = evhttp_request_get_uri(req);
	if (strcmp(uri, "/") != 0) {
		evhttp_send_error(req, 404, "Not Found");
		return;
	}
	struct evbuffer *b = evbuffer_new();
	status_page_html(a->page, b);
	reply(req, 200, "OK", "text/html; charset=utf-8", b);
	evbuffer_free(b);
}

static void on_status(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evbuffer *b = evbuffer_new();
	status_page_json(a->page, b);
	reply(req, 200, "OK", "application/json", b);
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
	evhttp_set_cb(a->http, "/status", on_status, a);
	a->page = status_page_new(c);
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
	status_page_free(a->page);
	/* Like a service's socket, but never a file someone put there since. */
	struct stat st;
	if (a->unix_path && stat(a->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == a->unix_dev && st.st_ino == a->unix_ino)
		unlink(a->unix_path);
	free(a->unix_path);
	free(a);
}
