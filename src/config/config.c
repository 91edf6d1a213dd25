/*
 * config — load a configuration (YAML file or string) or overlay one
 * (zookeeper.config_path JSON) and validate it against the key tables of
 * config_keys.c, which schema.c applies to a jansson tree. The tree comes
 * either from YAML via yamltree (every node knows its line and column) or
 * from the JSON overlay in ZooKeeper (no positions; the JSON path says
 * where). Checks that span sections (listen clashes, ZooKeeper needed) run
 * last, in config_cross_check(). Also here: copying, freeing and comparing
 * configs (config_reloadable).
 *
 * Overlay documents (zookeeper.config_path) may be either the bare mapping of
 * services, {"web": {...}}, or wrapped, {"services": {"web": {...}}}. A
 * document with a top-level "services" key is read as wrapped, so a service
 * literally named "services" must use the wrapped form. An overlay adds or
 * replaces whole services; it cannot remove one.
 */
#include "config.h"
#include "config_keys.h"
#include "netpolicy.h"
#include "overlay_policy.h"
#include "schema.h"
#include "tls.h"
#include "trunk.h"
#include "util.h"
#include "yamltree.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_MAX_FILE (16u << 20)

/* ---- checks across sections ------------------------------------------------------ */

/* Listen addresses that would share a socket: same unix path, or same port with equal or wildcard hosts. */
static bool listen_clash(const char *a, const char *b)
{
	bool ua = strncmp(a, "unix:", 5) == 0, ub = strncmp(b, "unix:", 5) == 0;
	if (ua || ub)
		return ua && ub && strcmp(a, b) == 0;
	char ha[256], hb[256];
	uint16_t pa, pb;
	if (!net_split_host_port(a, ha, sizeof(ha), &pa) || !net_split_host_port(b, hb, sizeof(hb), &pb))
		return false;
	if (pa != pb)
		return false;
	static const char *const wild[] = { "*", "0.0.0.0", "::" };
	for (size_t i = 0; i < ARRAY_SIZE(wild); i++)
		if (strcmp(ha, wild[i]) == 0 || strcmp(hb, wild[i]) == 0)
			return true;
	/*
	 * What the listeners bind, whatever the spelling ("2130706433", "127.1",
	 * "::ffff:127.0.0.1" are 127.0.0.1): two SO_REUSEPORT sockets of one
	 * address would share its connections between two services.
	 */
	struct net_addr na, nb;
	struct net_self sa, sb;
	if (net_addr_numeric(ha, pa, &na) && net_addr_numeric(hb, pb, &nb) &&
	    net_self_from(&sa, (const struct sockaddr *)&na.ss) &&
	    net_self_from(&sb, (const struct sockaddr *)&nb.ss))
		return sa.wildcard || sb.wildcard ||
		       (sa.family == sb.family &&
			memcmp(sa.addr, sb.addr, sa.family == 4 ? 4 : 16) == 0);
	return strcasecmp(ha, hb) == 0;
}

bool config_relay_kernel_fits(const struct service_conf *s)
{
	return !s->tls.enabled && s->pool.reuse == REUSE_NONE && !s->pool.prewarm &&
	       s->via != VIA_TRUNK && !(s->listen && strncmp(s->listen, "unix:", 5) == 0);
}

/*
 * relay: a service without one takes the top-level one where it fits (a
 * top-level kernel leaves TLS, pooled and unix-socket services in user
 * space); one that asks for kernel and cannot have it is an error
 * (config_cross_check).
 */
static void config_resolve_relay(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_services; i++) {
		struct service_conf *s = &cfg->services[i];
		if (s->relay != RELAY_MODE_UNSET)
			continue;
		s->relay = cfg->relay == RELAY_MODE_UNSET ? RELAY_MODE_USER : cfg->relay;
		if (s->relay == RELAY_MODE_KERNEL && !config_relay_kernel_fits(s))
			s->relay = RELAY_MODE_USER;
	}
}

/*
 * Checks across sections, once everything parsed. root is the top mapping of
 * a file (NULL for an overlay); services is the mapping the services came from
 * (for an overlay: only the new ones), used to point at the right node.
 */
static void config_cross_check(struct schema_ctx *v, const json_t *root, const json_t *services,
			       const struct config *cfg)
{
	struct schema_path sp = { NULL, "services", 0, root };
	for (size_t i = 0; i < cfg->n_services; i++) {
		const struct service_conf *s = &cfg->services[i];
		const json_t *sobj = services ? json_object_get(services, s->name) : NULL;
		const json_t *dobj = sobj ? json_object_get(sobj, "discovery") : NULL;
		struct schema_path np = { &sp, s->name, 0, services };
		struct schema_path dp = { &np, "discovery", 0, sobj };
		struct schema_path tp = { &dp, "type", 0, dobj };
		struct schema_path lp = { &np, "listen", 0, sobj };
		if (s->proxy_protocol != PROXY_PROTOCOL_NONE &&
		    (s->pool.reuse != REUSE_NONE || s->pool.prewarm)) {
			/* a pooled connection was opened for nobody, or for another client */
			struct schema_path pp = { &np, "proxy_protocol", 0, sobj };
			schema_error(v, &pp, false, "excludes pool.reuse and pool.prewarm: a pooled "
				     "connection cannot carry a per-client PROXY header");
		}
		if (s->via != VIA_DIRECT) {
			struct schema_path vp = { &np, "via", 0, sobj };
			if (!cfg->trunk.listen)
				schema_error(v, &vp, false, "via: trunk or auto needs a trunk: section "
					     "(its TLS is the calling side's too)");
			if (s->pool.reuse != REUSE_NONE || s->pool.prewarm)
				schema_error(v, &vp, false, "excludes pool.reuse and pool.prewarm: a "
					     "trunk stream is not pooled");
		}
		if (s->relay == RELAY_MODE_KERNEL && !config_relay_kernel_fits(s)) {
			struct schema_path rp = { &np, "relay", 0, sobj };
			schema_error(v, &rp, false, "kernel excludes tls:, pool.reuse, pool.prewarm, via: "
				     "trunk and a unix: listen address (the kernel relays plain TCP "
				     "only); use auto");
		}
		if (s->locality.prefer == LOCALITY_ZONE && !cfg->zone) {
			const json_t *lobj = sobj ? json_object_get(sobj, "locality") : NULL;
			struct schema_path lcp = { &np, "locality", 0, sobj };
			struct schema_path pp = { &lcp, "prefer", 0, lobj };
			schema_error(v, &pp, false, "prefer: zone needs zone: or zone_file: at the top level");
		}
		if (!cfg->zookeeper.hosts && s->discovery.type != DISCOVERY_STATIC &&
		    s->discovery.type != DISCOVERY_SENTINEL)
			schema_error(v, &tp, false, "type %s needs a zookeeper: section",
			     discovery_kind_name(s->discovery.type));
		/* The trunk listener has SO_REUSEPORT too: a service there would take its connections. */
		if (s->listen && cfg->trunk.listen && listen_clash(s->listen, cfg->trunk.listen))
			schema_error(v, &lp, false, "'%s' clashes with trunk.listen '%s'", s->listen,
				     cfg->trunk.listen);
		for (size_t j = 0; j < i; j++) {
			if (s->listen && cfg->services[j].listen &&
			    listen_clash(s->listen, cfg->services[j].listen)) {
				schema_error(v, &lp, false, "'%s' clashes with the listen address of service %s",
				     s->listen, cfg->services[j].name);
				break;
			}
		}
	}
	const json_t *rlist = root ? json_object_get(root, "render") : NULL;
	struct schema_path rp = { NULL, "render", 0, root };
	for (size_t i = 0; i < cfg->n_render; i++) {
		const struct render_conf *r = &cfg->render[i];
		const json_t *robj = json_array_get(rlist, i);
		struct schema_path ip = { &rp, NULL, i, rlist };
		struct schema_path svp = { &ip, "service", 0, robj }, fp = { &ip, "file", 0, robj };
		bool known = false;
		for (size_t j = 0; j < cfg->n_services && !known; j++)
			known = strcmp(cfg->services[j].name, r->service) == 0;
		if (!known)
			schema_error(v, &svp, false, "'%s' is not a service under services:", r->service);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(cfg->render[j].file, r->file) == 0) {
				schema_error(v, &fp, false, "render entry %zu writes %s already", j, r->file);
				break;
			}
		}
	}
	if (root && json_object_get(root, "zone") && json_object_get(root, "zone_file")) {
		struct schema_path zp = { NULL, "zone_file", 0, root };
		schema_error(v, &zp, true, "zone and zone_file exclude each other");
	}
	/* A creator ACL names the session's identity: without one ZooKeeper refuses it. */
	const json_t *alist = root ? json_object_get(root, "announce") : NULL;
	struct schema_path ap = { NULL, "announce", 0, root };
	for (size_t i = 0; !cfg->zookeeper.auth && i < cfg->n_announce; i++) {
		const json_t *aobj = json_array_get(alist, i);
		struct schema_path ip = { &ap, NULL, i, alist };
		struct schema_path kp = { &ip, "acl", 0, aobj };
		if (cfg->announce[i].acl == ANNOUNCE_ACL_CREATOR)
			schema_error(v, &kp, false, "creator needs zookeeper.auth or auth_file: "
				     "the ACL names the session's identity");
	}
	static const char *const zk_users[] = { "announce", "sync" };
	for (size_t i = 0; root && !cfg->zookeeper.hosts && i < ARRAY_SIZE(zk_users); i++) {
		const json_t *list = json_object_get(root, zk_users[i]);
		if (json_array_size(list) > 0) {
			struct schema_path kp = { NULL, zk_users[i], 0, root };
			schema_error(v, &kp, true, "needs a zookeeper: section");
		}
	}
}

/* ---- building, copying and freeing configs ------------------------------------- */

static void check_free(struct check_conf *c)
{
	free(c->send);
	free(c->expect);
	free(c->path);
	free(c->password_file);
	free(c->user);
}

/* A tls: section's strings and context (the services', the trunk's, ZooKeeper's). */
static void tls_conf_free(struct tls_conf *t)
{
	free(t->ca);
	free(t->cert);
	free(t->key);
	free(t->server_name);
	free(t->min_version);
	free(t->ciphers);
	tls_ctx_put(t->ctx);
}

static void service_free(struct service_conf *s)
{
	free(s->name);
	free(s->listen);
	free(s->discovery.path);
	for (size_t i = 0; i < s->discovery.n_backends; i++)
		free(s->discovery.backends[i].address);
	for (size_t i = 0; i < s->discovery.n_sentinels; i++)
		free(s->discovery.sentinels[i].address);
	free(s->discovery.sentinels);
	free(s->discovery.master_name);
	free(s->discovery.password_file);
	free(s->discovery.backends);
	check_free(&s->health.check);
	free(s->locality.zone_key);
	tls_conf_free(&s->tls);
	free(s->origin);
}

void config_render_free(struct render_conf *r)
{
	free(r->service);
	free(r->file);
	free(r->format);
	free(r->template_path);
	free(r->template_text);
	free(r->check_command);
	free(r->on_change);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->source);
	free(cfg->zookeeper.hosts);
	free(cfg->zookeeper.auth);
	free(cfg->zookeeper.auth_file);
	tls_conf_free(&cfg->zookeeper.tls);
	free(cfg->zookeeper.config_path);
	free(cfg->trunk.listen);
	tls_conf_free(&cfg->trunk.tls);
	free(cfg->cache_dir);
	free(cfg->zone);
	free(cfg->admin_listen);
	free(cfg->access_log);
	free(cfg->admin_token_file);
	for (size_t i = 0; i < cfg->n_services; i++)
		service_free(&cfg->services[i]);
	free(cfg->services);
	for (size_t i = 0; i < cfg->n_announce; i++) {
		struct announce_conf *a = &cfg->announce[i];
		free(a->service);
		free(a->base_path);
		free(a->address);
		json_decref(a->payload);
		free(a->payload_class);
		check_free(&a->check);
	}
	free(cfg->announce);
	for (size_t i = 0; i < cfg->n_sync; i++) {
		struct sync_conf *s = &cfg->sync[i];
		free(s->path);
		free(s->file);
		free(s->dir);
		free(s->on_change);
		for (size_t j = 0; j < s->n_names; j++)
			free(s->names[j]);
		free(s->names);
		free(s->owner);
		free(s->group);
	}
	free(cfg->sync);
	free(cfg->overlay.listen_dir);
	for (size_t i = 0; i < cfg->n_render; i++)
		config_render_free(&cfg->render[i]);
	free(cfg->render);
	free(cfg);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void config_render_copy(struct render_conf *dst, const struct render_conf *src)
{
	*dst = *src;
	dst->service = dup_or_null(src->service);
	dst->file = dup_or_null(src->file);
	dst->format = dup_or_null(src->format);
	dst->template_path = dup_or_null(src->template_path);
	dst->template_text = dup_or_null(src->template_text);
	dst->check_command = dup_or_null(src->check_command);
	dst->on_change = dup_or_null(src->on_change);
}

static char *dup_bytes(const char *s, size_t len)
{
	if (!s)
		return NULL;
	char *d = xmalloc(len + 1);
	memcpy(d, s, len + 1);
	return d;
}

static void check_copy(struct check_conf *dst, const struct check_conf *src)
{
	*dst = *src;
	dst->send = dup_bytes(src->send, src->send_len);
	dst->expect = dup_bytes(src->expect, src->expect_len);
	dst->path = dup_or_null(src->path);
	dst->password_file = dup_or_null(src->password_file);
	dst->user = dup_or_null(src->user);
}

/* dst holds src's fields already (a struct copy): give it its own strings and reference. */
static void tls_conf_copy(struct tls_conf *dst, const struct tls_conf *src)
{
	dst->ca = dup_or_null(src->ca);
	dst->cert = dup_or_null(src->cert);
	dst->key = dup_or_null(src->key);
	dst->server_name = dup_or_null(src->server_name);
	dst->min_version = dup_or_null(src->min_version);
	dst->ciphers = dup_or_null(src->ciphers);
	dst->ctx = tls_ctx_get(src->ctx);
}

static void service_copy(struct service_conf *dst, const struct service_conf *src)
{
	*dst = *src;
	dst->name = dup_or_null(src->name);
	dst->listen = dup_or_null(src->listen);
	dst->discovery.path = dup_or_null(src->discovery.path);
	dst->discovery.backends = NULL;
	dst->discovery.sentinels = NULL;
	if (src->discovery.n_sentinels) {
		dst->discovery.sentinels = xcalloc(src->discovery.n_sentinels, sizeof(struct static_backend));
		for (size_t i = 0; i < src->discovery.n_sentinels; i++) {
			dst->discovery.sentinels[i] = src->discovery.sentinels[i];
			dst->discovery.sentinels[i].address = dup_or_null(src->discovery.sentinels[i].address);
		}
	}
	dst->discovery.master_name = dup_or_null(src->discovery.master_name);
	dst->discovery.password_file = dup_or_null(src->discovery.password_file);
	if (src->discovery.n_backends) {
		dst->discovery.backends = xcalloc(src->discovery.n_backends, sizeof(struct static_backend));
		for (size_t i = 0; i < src->discovery.n_backends; i++) {
			dst->discovery.backends[i] = src->discovery.backends[i];
			dst->discovery.backends[i].address = dup_or_null(src->discovery.backends[i].address);
		}
	}
	check_copy(&dst->health.check, &src->health.check);
	dst->locality.zone_key = dup_or_null(src->locality.zone_key);
	tls_conf_copy(&dst->tls, &src->tls);
	dst->origin = dup_or_null(src->origin);
}

/* A deep copy of everything but the services. */
static struct config *config_copy_base(const struct config *src)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	*cfg = *src;
	cfg->source = dup_or_null(src->source);
	cfg->zookeeper.hosts = dup_or_null(src->zookeeper.hosts);
	cfg->zookeeper.auth = dup_or_null(src->zookeeper.auth);
	cfg->zookeeper.auth_file = dup_or_null(src->zookeeper.auth_file);
	tls_conf_copy(&cfg->zookeeper.tls, &src->zookeeper.tls);
	cfg->zookeeper.config_path = dup_or_null(src->zookeeper.config_path);
	cfg->trunk.listen = dup_or_null(src->trunk.listen);
	tls_conf_copy(&cfg->trunk.tls, &src->trunk.tls);
	cfg->cache_dir = dup_or_null(src->cache_dir);
	cfg->zone = dup_or_null(src->zone);
	cfg->admin_listen = dup_or_null(src->admin_listen);
	cfg->access_log = dup_or_null(src->access_log);
	cfg->admin_token_file = dup_or_null(src->admin_token_file);
	cfg->overlay.listen_dir = dup_or_null(src->overlay.listen_dir);
	cfg->services = NULL;
	cfg->n_services = 0;
	cfg->announce = src->n_announce ? xcalloc(src->n_announce, sizeof(*cfg->announce)) : NULL;
	for (size_t i = 0; i < src->n_announce; i++) {
		struct announce_conf *d = &cfg->announce[i];
		const struct announce_conf *s = &src->announce[i];
		*d = *s;
		d->service = dup_or_null(s->service);
		d->base_path = dup_or_null(s->base_path);
		d->address = dup_or_null(s->address);
		d->payload = s->payload ? json_deep_copy(s->payload) : NULL;
		d->payload_class = dup_or_null(s->payload_class);
		check_copy(&d->check, &s->check);
	}
	cfg->sync = src->n_sync ? xcalloc(src->n_sync, sizeof(*cfg->sync)) : NULL;
	for (size_t i = 0; i < src->n_sync; i++) {
		struct sync_conf *d = &cfg->sync[i];
		const struct sync_conf *s = &src->sync[i];
		*d = *s;
		d->path = dup_or_null(s->path);
		d->file = dup_or_null(s->file);
		d->dir = dup_or_null(s->dir);
		d->on_change = dup_or_null(s->on_change);
		d->names = s->n_names ? xcalloc(s->n_names, sizeof(*d->names)) : NULL;
		for (size_t j = 0; j < s->n_names; j++)
			d->names[j] = xstrdup(s->names[j]);
		d->owner = dup_or_null(s->owner);
		d->group = dup_or_null(s->group);
	}
	cfg->render = src->n_render ? xcalloc(src->n_render, sizeof(*cfg->render)) : NULL;
	for (size_t i = 0; i < src->n_render; i++)
		config_render_copy(&cfg->render[i], &src->render[i]);
	return cfg;
}

/*
 * With a trunk listener, each announce entry advertises its port in the
 * Curator payload — only where no Curator consumer can break on it
 * (trunk_payload_advertise): a typed or non-mapping payload stays as written.
 */
static void config_trunk_advertise(struct config *cfg)
{
	char host[256];
	uint16_t port = 0;
	if (!cfg->trunk.listen || !net_split_host_port(cfg->trunk.listen, host, sizeof(host), &port))
		return;
	for (size_t i = 0; i < cfg->n_announce; i++) {
		struct announce_conf *a = &cfg->announce[i];
		json_t *p = trunk_payload_advertise(a->payload, a->payload_class, port);
		if (!p)
			continue;
		json_decref(a->payload);
		a->payload = p;
	}
}

/*
 * Each service's queue_timeout in force: its own, else the top-level one;
 * "connect_timeout" is the service's connect_timeout.
 */
static void config_resolve_queue(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_services; i++) {
		struct service_conf *s = &cfg->services[i];
		const struct queue_timeout_conf *qt = s->queue_timeout.set ? &s->queue_timeout
									   : &cfg->queue_timeout;
		s->queue_timeout_ms = qt->connect ? s->connect_timeout_ms : qt->ms;
	}
}

/* Validate a whole document (the top mapping) into a new config, or NULL. */
static struct config *config_from_tree(struct schema_ctx *v, const json_t *root)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	cfg->source = xstrdup(v->origin);
	if (json_is_null(root))
		root = NULL;	/* an empty file: all defaults */
	if (root && !json_is_object(root))
		schema_error(v, NULL, false, "the top level must be a mapping, not %s", schema_kind(root));
	else
		schema_apply(v, NULL, root, config_keys_top(), cfg);
	config_resolve_queue(cfg);
	config_resolve_relay(cfg);
	config_cross_check(v, root, root ? json_object_get(root, "services") : NULL, cfg);
	if (v->n_errors > 0) {
		config_free(cfg);
		return NULL;
	}
	config_trunk_advertise(cfg);
	return cfg;
}

struct config *config_load_string(const char *yaml, size_t len, const char *name,
				  struct config_errors *errs)
{
	struct yamltree tree;
	struct schema_ctx v = { .origin = name, .tree = &tree, .errs = errs, .first = errs->n,
				.user = "file" };
	if (!yamltree_parse(&tree, yaml, len)) {
		for (size_t i = 0; i < tree.errors.n; i++)
			config_errors_add(errs, "%s:%u:%u: %s", name, tree.error_at[i].line,
					  tree.error_at[i].col, tree.errors.msgs[i]);
		yamltree_free(&tree);
		return NULL;
	}
	struct config *cfg = config_from_tree(&v, tree.root);
	schema_done(&v);
	yamltree_free(&tree);
	return cfg;
}

struct config *config_load_file(const char *path, struct config_errors *errs)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		config_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 4096, len = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len == cap) {
			if (cap >= CONFIG_MAX_FILE) {
				config_errors_add(errs, "%s: larger than %u bytes", path, CONFIG_MAX_FILE);
				free(buf);
				fclose(f);
				return NULL;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		config_errors_add(errs, "%s: read error: %s", path, strerror(errno));
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	struct config *cfg = config_load_string(buf, len, path, errs);
	free(buf);
	return cfg;
}

struct config *config_overlay_json(const struct config *base, const char *json, size_t len,
				   const char *origin, struct config_errors *errs)
{
	struct schema_ctx v = { .origin = origin, .tree = NULL, .errs = errs, .first = errs->n,
				.user = origin };
	json_error_t jerr;
	if (!base) {
		config_errors_add(errs, "%s: no base configuration to overlay", origin);
		return NULL;
	}
	json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!doc) {
		config_errors_add(errs, "%s: invalid JSON at line %d column %d: %s", origin,
				  jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	struct schema_path top = { NULL, "services", 0, NULL };
	const json_t *services = doc;
	if (!json_is_object(doc)) {
		config_errors_add(errs, "%s: the overlay must be a JSON object of services", origin);
		json_decref(doc);
		return NULL;
	}
	if (json_object_get(doc, "services")) {
		services = json_object_get(doc, "services");
		const char *key;
		const json_t *val;
		json_object_foreach(doc, key, val) {
			if (strcmp(key, "services") != 0) {
				struct schema_path kp = { NULL, key, 0, doc };
				schema_error(&v, &kp, true, "unknown key (an overlay only sets services)");
			}
		}
		if (!schema_want(&v, &top, services, json_is_object(services), "a mapping of service names") ||
		    v.n_errors > 0) {
			json_decref(doc);
			schema_done(&v);
			return NULL;
		}
	}

	struct config *cfg = config_copy_base(base);
	size_t n_new = json_object_size(services);
	cfg->services = xcalloc(base->n_services + n_new, sizeof(*cfg->services));
	for (size_t i = 0; i < base->n_services; i++)
		service_copy(&cfg->services[i], &base->services[i]);
	cfg->n_services = base->n_services;
	const char *name;
	const json_t *sobj;
	json_object_foreach((json_t *)services, name, sobj) {
		struct schema_path sp = { &top, name, 0, services };
		struct service_conf svc;
		memset(&svc, 0, sizeof(svc));
		/* Who writes to ZooKeeper may not widen where zklb connects. */
		static const char *const file_only[] = { "allowed_networks", "denied_networks" };
		for (size_t k = 0; json_is_object(sobj) && k < ARRAY_SIZE(file_only); k++) {
			if (json_object_get(sobj, file_only[k])) {
				struct schema_path kp = { &sp, file_only[k], 0, sobj };
				schema_error(&v, &kp, true, "may be set in the file only, not by the overlay");
			}
		}
		config_keys_parse_service(&v, &sp, name, sobj, &svc);
		size_t i;
		for (i = 0; i < cfg->n_services && strcmp(cfg->services[i].name, name) != 0; i++)
			;
		/* The file's policy for what it lets ZooKeeper ask for (overlay_policy.h). */
		overlay_policy_check(&v, &sp, sobj, &svc, base,
				     i < cfg->n_services && strcmp(cfg->services[i].origin, "file") == 0);
		if (i < cfg->n_services)
			service_free(&cfg->services[i]);
		else
			cfg->n_services++;
		cfg->services[i] = svc;
	}
	config_resolve_queue(cfg);
	config_resolve_relay(cfg);
	config_cross_check(&v, NULL, services, cfg);
	json_decref(doc);
	schema_done(&v);
	if (v.n_errors > 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

bool config_reloadable(const struct config *old, const struct config *cur, char *buf, size_t len)
{
	/* Keys without S_RELOAD are the ones a running process cannot change. */
	if (schema_diff(config_keys_top(), old, cur, S_RELOAD, "", buf, len))
		return false;
	if (len)
		buf[0] = '\0';
	return true;
}

/* ---- lookups --------------------------------------------------------------------- */

const struct net_list *config_allowed_networks(const struct config *cfg, const struct service_conf *sc)
{
	return sc && sc->allowed_networks.set ? &sc->allowed_networks.list : &cfg->allowed_networks.list;
}

const struct net_list *config_denied_networks(const struct config *cfg, const struct service_conf *sc)
{
	return sc && sc->denied_networks.set ? &sc->denied_networks.list : &cfg->denied_networks.list;
}

void config_warnings(const struct config *cfg, struct config_errors *warns)
{
	static const char *const why = "does not include `reserved`: instances may be routed to "
				       "link-local and cloud metadata addresses (169.254.169.254) "
				       "and to 0.0.0.0";
	if (!cfg->denied_networks.list.has_reserved)
		config_errors_add(warns, "%s: warning: denied_networks %s", cfg->source, why);
	for (size_t i = 0; i < cfg->n_services; i++) {
		const struct service_conf *sc = &cfg->services[i];
		if (sc->denied_networks.set && !sc->denied_networks.list.has_reserved)
			config_errors_add(warns, "%s: warning: services.%s.denied_networks %s", cfg->source,
					  sc->name, why);
	}
}

const struct service_conf *config_service(const struct config *cfg, const char *name)
{
	for (size_t i = 0; cfg && i < cfg->n_services; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return &cfg->services[i];
	return NULL;
}

static json_t *service_dump(const struct schema_section *s, const struct service_conf *sc)
{
	json_t *o = schema_dump(s, sc);
	json_object_set_new(o, "listen", json_string(sc->listen ? sc->listen : "off"));
	if (sc->discovery.type == DISCOVERY_STATIC) {
		json_t *list = json_array();
		for (size_t i = 0; i < sc->discovery.n_backends; i++) {
			const struct static_backend *b = &sc->discovery.backends[i];
			json_array_append_new(list, json_sprintf("%s weight=%u", b->address, b->weight));
		}
		json_object_set_new(json_object_get(o, "discovery"), "backends", list);
	}
	return o;
}

json_t *config_dump(const struct config *cfg)
{
	const struct schema_section *top = config_keys_top();
	json_t *o = schema_dump(top, cfg);
	for (size_t i = 0; i < top->n_keys; i++) {
		const char *item, *name = top->keys[i].name;
		const struct schema_section *s = config_keys_items(&top->keys[i], &item);
		if (!s)
			continue;
		json_t *v;
		if (strcmp(name, "services") == 0) {
			v = json_object();
			for (size_t k = 0; k < cfg->n_services; k++)
				json_object_set_new(v, cfg->services[k].name,
						    service_dump(s, &cfg->services[k]));
		} else {
			v = json_array();
			for (size_t k = 0; strcmp(name, "announce") == 0 && k < cfg->n_announce; k++)
				json_array_append_new(v, schema_dump(s, &cfg->announce[k]));
			for (size_t k = 0; strcmp(name, "sync") == 0 && k < cfg->n_sync; k++)
				json_array_append_new(v, schema_dump(s, &cfg->sync[k]));
			for (size_t k = 0; strcmp(name, "render") == 0 && k < cfg->n_render; k++)
				json_array_append_new(v, schema_dump(s, &cfg->render[k]));
		}
		json_object_set_new(o, name, v);
	}
	return o;
}
