/*
 * overlay_policy — see overlay_policy.h.
 */
#include "overlay_policy.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "netpolicy.h"
#include "schema.h"
#include "util.h"

/* Is path (absolute) strictly below dir, with no "." or ".." component to climb out? */
static bool path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (strncmp(path, dir, n) != 0 || (path[n] != '/' && !(n == 1 && dir[0] == '/')))
		return false;
	for (const char *c = path; *c; c++) {
		if (*c != '/')
			continue;
		if ((c[1] == '.' && (c[2] == '/' || c[2] == '\0')) ||
		    (c[1] == '.' && c[2] == '.' && (c[3] == '/' || c[3] == '\0')))
			return false;
	}
	return path[n + (path[n] == '/')] != '\0';
}

static void check_listen(struct schema_ctx *v, const struct schema_path *lp,
			 const struct service_conf *svc, const struct overlay_policy_conf *pol)
{
	char host[256];
	uint16_t port;
	struct net_addr a;

	if (strncmp(svc->listen, "unix:", 5) == 0) {
		if (!pol->listen_dir)
			schema_error(v, lp, false, "'%s': an overlay may not listen on a unix: path "
				     "(overlay.listen_dir is not set)", svc->listen);
		else if (!path_under(svc->listen + 5, pol->listen_dir))
			schema_error(v, lp, false, "'%s' is not under overlay.listen_dir %s",
				     svc->listen, pol->listen_dir);
		return;
	}
	if (!net_split_host_port(svc->listen, host, sizeof(host), &port))
		return;	/* the schema said what is wrong */
	if (!net_addr_numeric(strcmp(host, "*") == 0 ? "0.0.0.0" : host, port, &a)) {
		schema_error(v, lp, false, "'%s': an overlay listens on an IP address, not a name",
			     svc->listen);
		return;
	}
	/* An empty list allows no TCP listener (netpolicy reads it as "any"). */
	if (pol->listen_networks.n == 0 ||
	    netpolicy_check(&pol->listen_networks, NULL, (const struct sockaddr *)&a.ss, NULL) !=
		    NETPOLICY_ALLOW)
		schema_error(v, lp, false, "'%s' is outside overlay.listen_networks: an overlay "
			     "listens on loopback unless the file allows more", svc->listen);
}

/*
 * Where the overlay sends zklb: static backends, or the sentinels it asks
 * (key names which), by IP address inside the file's networks.
 */
static void check_backends(struct schema_ctx *v, const struct schema_path *sp, const json_t *sobj,
			   const char *key, const struct static_backend *backends, size_t n,
			   const struct overlay_policy_conf *pol)
{
	const json_t *dobj = json_object_get(sobj, "discovery");
	const json_t *list = json_object_get(dobj, key);
	struct schema_path dp = { sp, "discovery", 0, sobj };
	struct schema_path bp = { &dp, key, 0, dobj };

	for (size_t i = 0; i < n; i++) {
		const struct static_backend *b = &backends[i];
		struct schema_path ip = { &bp, NULL, i, list };
		const struct net_prefix *hit = NULL;
		struct net_addr a;
		char net[64];

		if (!b->address)
			continue;
		if (!net_addr_numeric(b->host, b->port, &a)) {
			schema_error(v, &ip, false, "'%s': an overlay names %s by IP "
				     "address (a name's address cannot be checked before it resolves)",
				     b->address, strcmp(key, "backends") == 0 ? "static backends" : key);
			continue;
		}
		enum netpolicy_verdict vd = netpolicy_check(&pol->allowed_networks,
							    &pol->denied_networks,
							    (const struct sockaddr *)&a.ss, &hit);
		if (vd == NETPOLICY_ALLOW)
			continue;
		if (hit)
			net_prefix_format(hit, net, sizeof(net));
		schema_error(v, &ip, false, "'%s' is refused for an overlay: %s%s%s", b->address,
			     vd == NETPOLICY_DENIED ? "inside overlay.denied_networks"
						    : "outside overlay.allowed_networks",
			     hit ? " " : "", hit ? net : "");
	}
}

/* Does the file's own configuration read the password file at path? */
static bool file_uses_secret(const struct config *base, const char *path)
{
	for (size_t i = 0; i < base->n_services; i++) {
		const struct service_conf *s = &base->services[i];
		if (s->origin && strcmp(s->origin, "file") != 0)
			continue;	/* an earlier overlay's: no warrant */
		if ((s->health.check.password_file && strcmp(s->health.check.password_file, path) == 0) ||
		    (s->discovery.password_file && strcmp(s->discovery.password_file, path) == 0))
			return true;
	}
	for (size_t i = 0; i < base->n_announce; i++) {
		const char *f = base->announce[i].check.password_file;
		if (f && strcmp(f, path) == 0)
			return true;
	}
	return false;
}

/*
 * A password file is read and its bytes sent (AUTH) to instances ZooKeeper
 * names: from an overlay, only one the file's services already use, never
 * any root-only file (the ZooKeeper digest, the admin token) to any host.
 */
static void check_secret(struct schema_ctx *v, const struct schema_path *kp, const char *path,
			 const struct config *base)
{
	if (path && !file_uses_secret(base, path))
		schema_error(v, kp, false, "'%s' is no password file of the file's services: an "
			     "overlay may not have zklb read it", path);
}

/* Does a service of the file present the TLS key at path to its backends? */
static bool file_uses_tls_key(const struct config *base, const char *path)
{
	for (size_t i = 0; i < base->n_services; i++) {
		const struct service_conf *s = &base->services[i];
		if ((!s->origin || strcmp(s->origin, "file") == 0) && s->tls.enabled && s->tls.key &&
		    strcmp(s->tls.key, path) == 0)
			return true;
	}
	return false;
}

/* The path of a key inside sobj, as far as the JSON goes. */
#define KEY(name, up, obj) { up, name, 0, obj }

void overlay_policy_check(struct schema_ctx *v, const struct schema_path *sp, const json_t *sobj,
			  const struct service_conf *svc, const struct config *base,
			  bool replaces_file)
{
	const struct overlay_policy_conf *pol = &base->overlay;
	const json_t *dobj = json_object_get(sobj, "discovery");
	const json_t *hobj = json_object_get(sobj, "health");
	const json_t *cobj = json_object_get(hobj, "check");
	const json_t *pobj = json_object_get(sobj, "pool");
	const struct check_conf *c = &svc->health.check;
	struct schema_path lp = KEY("listen", sp, sobj);
	struct schema_path hp = KEY("health", sp, sobj);
	struct schema_path cp = KEY("check", &hp, hobj);
	struct schema_path pp = KEY("pool", sp, sobj);

	if (replaces_file && !pol->replace_file_services)
		schema_error(v, sp, true, "the file defines this service; an overlay may replace "
			     "it only with overlay.replace_file_services: true");
	if (svc->listen)
		check_listen(v, &lp, svc, pol);
	struct schema_path dp = KEY("discovery", sp, sobj);
	struct schema_path dpw = KEY("password_file", &dp, dobj);
	struct schema_path cpw = KEY("password_file", &cp, cobj);
	if (svc->discovery.type == DISCOVERY_STATIC)
		check_backends(v, sp, sobj, "backends", svc->discovery.backends,
			       svc->discovery.n_backends, pol);
	if (svc->discovery.type == DISCOVERY_SENTINEL)
		check_backends(v, sp, sobj, "sentinels", svc->discovery.sentinels,
			       svc->discovery.n_sentinels, pol);
	check_secret(v, &dpw, svc->discovery.password_file, base);
	check_secret(v, &cpw, c->password_file, base);
	/*
	 * The client key is who zklb is to the backends ZooKeeper picks: only one
	 * a service of the file presents (not ZooKeeper's, the trunk's, or any
	 * other key on the host).
	 */
	if (svc->tls.enabled && svc->tls.key && !file_uses_tls_key(base, svc->tls.key)) {
		const json_t *tobj = json_object_get(sobj, "tls");
		struct schema_path tp = KEY("tls", sp, sobj);
		struct schema_path kp = KEY("key", &tp, tobj);
		schema_error(v, &kp, false, "'%s' is no TLS key of the file's services: an overlay "
			     "may not have zklb present it", svc->tls.key);
	}
	if (c->type == CHECK_SEND_EXPECT && !pol->check_payloads) {
		struct schema_path kp = KEY(json_object_get(cobj, "send") ? "send" : "expect", &cp,
					    cobj);
		schema_error(v, &kp, true, "check payloads (send/expect) from an overlay need "
			     "overlay.check_payloads: true");
	}
	if (c->type != CHECK_NONE && c->interval_ms < pol->min_check_interval_ms) {
		struct schema_path kp = KEY("interval", &cp, cobj);
		schema_error(v, &kp, !json_object_get(cobj, "interval"),
			     "%llums is below overlay.min_check_interval (%llums)",
			     (unsigned long long)c->interval_ms,
			     (unsigned long long)pol->min_check_interval_ms);
	}
	if (svc->pool.prewarm > pol->max_prewarm) {
		struct schema_path kp = KEY("prewarm", &pp, pobj);
		schema_error(v, &kp, false, "%u is over overlay.max_prewarm (%u)", svc->pool.prewarm,
			     pol->max_prewarm);
	}
	if (svc->pool.max_idle > pol->max_idle) {
		struct schema_path kp = KEY("max_idle", &pp, pobj);
		schema_error(v, &kp, !json_object_get(pobj, "max_idle"),
			     "%u is over overlay.max_idle (%u)", svc->pool.max_idle, pol->max_idle);
	}
	if (svc->max_buffer > pol->max_buffer) {
		struct schema_path kp = KEY("max_buffer", sp, sobj);
		schema_error(v, &kp, !json_object_get(sobj, "max_buffer"),
			     "%llu bytes is over overlay.max_buffer (%llu)",
			     (unsigned long long)svc->max_buffer, (unsigned long long)pol->max_buffer);
	}
}
