/*
 * config_values — see config_values.h.
 */
#include "config_values.h"
#include "config_keys.h"
#include "render_formats.h"
#include "template.h"
#include "config.h"
#include "schema.h"
#include "tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "instance.h"
#include "secret.h"
#include "util.h"

void fn_nonempty(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	if (json_string_length(val) == 0)
		schema_error(v, p, false, "must not be empty");
}

/*
 * allowed_networks / denied_networks: a list of CIDR prefixes, bare
 * addresses or `reserved`. A default arrives as its written form, "[a, b]".
 */
void fn_networks(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct networks_conf *nc = field;
	char err[160];
	memset(nc, 0, sizeof(*nc));
	nc->set = true;
	if (json_is_string(val)) {
		const char *d = json_string_value(val);
		if (strcmp(d, "[]") == 0)
			return;
		if (strcmp(d, "[reserved]") == 0) {
			if (!net_list_add(&nc->list, "reserved", err, sizeof(err)))
				schema_error(v, p, false, "%s", err);
			return;
		}
	}
	if (!schema_want(v, p, val, json_is_array(val), "a list of networks (CIDR prefixes or reserved)"))
		return;
	for (size_t i = 0; i < json_array_size(val); i++) {
		const json_t *item = json_array_get(val, i);
		struct schema_path ip = { p, NULL, i, val };
		if (!schema_want(v, &ip, item, json_is_string(item), "a CIDR prefix or reserved"))
			continue;
		if (!net_list_add(&nc->list, json_string_value(item), err, sizeof(err)))
			schema_error(v, &ip, false, "%s", err);
	}
}

/* admin.token_file: a secret, so readable by its owner only (as ssh keys are). */
void fn_token_file(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	const char *path = json_string_value(val);
	struct stat st;
	if (path[0] != '/') {
		schema_error(v, p, false, "must be an absolute path");
		return;
	}
	if (stat(path, &st) != 0) {
		schema_error(v, p, false, "%s: %s", path, strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode))
		schema_error(v, p, false, "%s is not a regular file", path);
	else if (st.st_mode & 077)
		schema_error(v, p, false, "%s is accessible by group or others (mode %04o); "
			     "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
	else if (st.st_size == 0)
		schema_error(v, p, false, "%s is empty", path);
}

/* A zone name: 1..63 printable bytes, no spaces (it is compared with payload values). */
static bool zone_ok(const char *s, size_t n)
{
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

void fn_zone(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	if (!zone_ok(json_string_value(val), json_string_length(val)))
		schema_error(v, p, false, "must be 1 to 63 printable bytes without spaces");
}

/*
 * queue_timeout: a duration up to an hour (0 = no queue), or connect_timeout,
 * the service's own (the default, as HAProxy's timeout queue follows timeout
 * connect when unset).
 */
void fn_queue_timeout(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct queue_timeout_conf *qt = field;
	uint64_t ms = 0;
	memset(qt, 0, sizeof(*qt));
	qt->set = true;
	if (json_is_integer(val) && json_integer_value(val) == 0)
		return;
	if (!schema_want(v, p, val, json_is_string(val), "a duration (e.g. 5s) or connect_timeout"))
		return;
	const char *s = json_string_value(val);
	if (strcmp(s, "connect_timeout") == 0) {
		qt->connect = true;
		return;
	}
	if (strlen(s) != json_string_length(val) || !duration_parse(s, &ms)) {
		schema_error(v, p, false, "'%s' is neither a duration (e.g. 250ms, 5s, 2m) nor "
			     "connect_timeout", s);
		return;
	}
	if (ms > CONFIG_MAX_QUEUE_TIMEOUT_MS) {
		schema_error(v, p, false, "%s is more than an hour", s);
		return;
	}
	qt->ms = ms;
}

/* zone_file: the zone is the file's first line, read now (absolute path). */
void fn_zone_file(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char **dst = field;
	char buf[128];
	if (!schema_want(v, p, val, json_is_string(val), "an absolute path"))
		return;
	const char *path = json_string_value(val);
	if (path[0] != '/') {
		schema_error(v, p, false, "must be an absolute path");
		return;
	}
	FILE *f = fopen(path, "re");
	if (!f) {
		schema_error(v, p, false, "%s: %s", path, strerror(errno));
		return;
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	n = strcspn(buf, "\r\n");
	if (!zone_ok(buf, n)) {
		schema_error(v, p, false, "%s: its first line must be a zone name (1 to 63 printable "
			     "bytes without spaces)", path);
		return;
	}
	free(*dst);
	*dst = xmalloc(n + 1);
	memcpy(*dst, buf, n);
	(*dst)[n] = '\0';
}

/* A MySQL user name: 1..80 bytes (MariaDB's limit), no NUL (YAML cannot give one). */
void fn_mysql_user(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	size_t n = json_string_length(val);
	if (n == 0 || n > 80)
		schema_error(v, p, false, "must be 1 to 80 bytes");
}

/* A password file: absolute, and readable now by its owner only (secret.h). */
void fn_secret_file(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char err[256];
	const char *path = json_string_value(val);
	if (path[0] != '/') {
		schema_error(v, p, false, "must be an absolute path");
		return;
	}
	char *s = secret_read(path, err, sizeof(err));
	if (!s)
		schema_error(v, p, false, "%s", err);
	secret_free(s);
}

void fn_abs_path(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	if (json_string_value(val)[0] != '/')
		schema_error(v, p, false, "must be an absolute path");
}

void fn_access_log(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	const char *s = json_string_value(val);
	if (strcmp(s, "stderr") != 0 && s[0] != '/')
		schema_error(v, p, false, "must be stderr or an absolute path");
}

void fn_zk_hosts(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	/* "h1:p1,h2:p2[/chroot]"; the client library resolves names, we check the shape. */
	const char *s = json_string_value(val);
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	char buf[80];
	if (n == 0) {
		schema_error(v, p, false, "must list at least one host:port");
		return;
	}
	char *hosts = xmalloc(n + 1);
	memcpy(hosts, s, n);
	hosts[n] = '\0';
	char *save = NULL;
	for (char *tok = strtok_r(hosts, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char host[256];
		uint16_t port;
		if (!net_split_host_port(tok, host, sizeof(host), &port) || port == 0) {
			json_t *t = json_string(tok);
			schema_error(v, p, false, "%s is not host:port", t ? schema_show(t, buf, sizeof(buf)) : "entry");
			json_decref(t);
			break;
		}
	}
	free(hosts);
	if (slash && (slash[1] == '\0' || (slash[1] && s[strlen(s) - 1] == '/')))
		schema_error(v, p, false, "bad chroot path after the hosts");
}

void fn_zk_auth(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	const char *s = json_string_value(val);
	const char *colon = strchr(s, ':');
	if (!colon || colon == s || colon[1] == '\0')
		schema_error(v, p, false, "must be scheme:credentials, e.g. digest:user:secret");
}

/*
 * Check "host:port" (port 1..65535), or "unix:/path" when allow_unix. On success
 * fills host and port (unix: host is the path, port 0).
 */
static bool addr_check(struct schema_ctx *v, const struct schema_path *p, const json_t *val, const char *s,
		       bool allow_unix, char *host, uint16_t *port)
{
	char buf[80];
	if (allow_unix && strncmp(s, "unix:", 5) == 0) {
		size_t pl = strlen(s + 5);
		if (s[5] != '/' || pl >= 108) {
			schema_error(v, p, false, "%s: a unix socket needs an absolute path under 108 bytes",
			     schema_show(val, buf, sizeof(buf)));
			return false;
		}
		snprintf(host, 256, "%s", s + 5);
		*port = 0;
		return true;
	}
	if (net_split_host_port(s, host, 256, port) && *port != 0)
		return true;
	/* Say what is wrong rather than only that something is. */
	const char *colon = strrchr(s, ':');
	if (colon && colon[1]) {
		const char *d = colon + 1;
		while (*d >= '0' && *d <= '9')
			d++;
		if (*d == '\0' && (d - colon - 1 > 5 || strtoul(colon + 1, NULL, 10) > 65535 ||
				   strtoul(colon + 1, NULL, 10) == 0)) {
			schema_error(v, p, false, "port %s is out of range 1..65535", colon + 1);
			return false;
		}
	}
	schema_error(v, p, false, "%s is not host:port%s", schema_show(val, buf, sizeof(buf)),
	     allow_unix ? ", [ipv6]:port or unix:/path" : " or [ipv6]:port");
	return false;
}

void fn_listen(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char host[256];
	uint16_t port;
	if (!schema_want(v, p, val, json_is_string(val), "an address (host:port, unix:/path or off)"))
		return;
	char **dst = field;
	free(*dst);
	*dst = NULL;
	/* off: discovered and checked, not proxied (a service only render: writes). */
	if (strcmp(json_string_value(val), "off") == 0)
		return;
	if (!addr_check(v, p, val, json_string_value(val), true, host, &port))
		return;
	*dst = xstrdup(json_string_value(val));
}

void fn_admin_listen(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char **dst = field;
	char host[256];
	uint16_t port;
	free(*dst);
	*dst = NULL;
	if (json_is_false(val) || (json_is_string(val) && strcmp(json_string_value(val), "off") == 0))
		return;	/* admin disabled */
	if (!schema_want(v, p, val, json_is_string(val), "an address or off"))
		return;
	if (addr_check(v, p, val, json_string_value(val), true, host, &port))
		*dst = xstrdup(json_string_value(val));
}

void fn_workers(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	uint32_t *dst = field;
	if (json_is_string(val) && strcmp(json_string_value(val), "auto") == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		*dst = n < 1 ? 1 : n > 256 ? 256 : (uint32_t)n;
		return;
	}
	if (!schema_want(v, p, val, json_is_integer(val), "auto or an integer"))
		return;
	json_int_t n = json_integer_value(val);
	if (n < 1 || n > 256) {
		schema_error(v, p, false, "%lld is out of range 1..256", (long long)n);
		return;
	}
	*dst = (uint32_t)n;
}

/* The length follows the pointer, for send and expect alike. */
#define SEND_LEN_GAP (offsetof(struct check_conf, send_len) - offsetof(struct check_conf, send))
_Static_assert(offsetof(struct check_conf, expect_len) - offsetof(struct check_conf, expect) ==
	       SEND_LEN_GAP, "check_conf: send/send_len and expect/expect_len must match");

/* send/expect: bytes as written (YAML double quotes already turned \r\n into bytes). */
void fn_bytes(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	if (!schema_want(v, p, val, json_is_string(val), "a string"))
		return;
	size_t len = json_string_length(val);
	if (len == 0) {
		schema_error(v, p, false, "must not be empty");
		return;
	}
	char **dst = field;
	size_t *dst_len = (size_t *)((char *)field + SEND_LEN_GAP);
	free(*dst);
	*dst = xmalloc(len + 1);
	memcpy(*dst, json_string_value(val), len);
	(*dst)[len] = '\0';
	*dst_len = len;
}

void fn_http_path(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	const char *s = json_string_value(val);
	for (const char *c = s; *c; c++) {
		if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
			schema_error(v, p, false, "must not contain spaces or control characters");
			return;
		}
	}
	if (s[0] != '/')
		schema_error(v, p, false, "must start with '/'");
}

void fn_payload(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	json_t **dst = field;
	json_decref(*dst);
	*dst = json_is_null(val) ? NULL : json_incref((json_t *)val);
}

void fn_java_class(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char buf[80];
	if (!instance_java_class_ok(json_string_value(val)))
		schema_error(v, p, false, "%s is not a Java class name (e.g. com.example.InstanceDetails)",
			     schema_show(val, buf, sizeof(buf)));
}

void fn_mode(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char buf[80];
	const char *s = json_is_string(val) ? json_string_value(val) : NULL;
	size_t len = s ? strlen(s) : 0;
	bool ok = s && len >= 1 && len <= 5 && len == json_string_length(val);
	for (size_t i = 0; ok && i < len; i++)
		ok = s[i] >= '0' && s[i] <= '7';
	unsigned long m = ok ? strtoul(s, NULL, 8) : 0;
	if (!ok || m > 07777) {
		schema_error(v, p, false, "%s is not an octal file mode; write it quoted, e.g. \"0644\"",
		     schema_show(val, buf, sizeof(buf)));
		return;
	}
	*(uint32_t *)field = (uint32_t)m;
}

/*
 * sync names: a list of fnmatch(3) globs (flags 0: '*' also matches a leading
 * '.', but such names are refused anyway) that a child's name must match.
 * A '/' could never match a child name, so it is a mistake worth reporting.
 */
void fn_sync_names(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct sync_conf *s = (struct sync_conf *)((char *)field - offsetof(struct sync_conf, names));
	if (!schema_want(v, p, val, json_is_array(val) && json_array_size(val) > 0,
			 "a list of file name globs, e.g. [\"*.conf\"]"))
		return;
	size_t n = json_array_size(val);
	s->names = xcalloc(n, sizeof(*s->names));
	for (size_t i = 0; i < n; i++) {
		const json_t *item = json_array_get(val, i);
		struct schema_path ip = { p, NULL, i, val };
		const char *g = json_string_value(item);
		if (!schema_want(v, &ip, item, g && g[0] && strlen(g) == json_string_length(item),
				 "a non-empty glob"))
			continue;
		if (strchr(g, '/')) {
			schema_error(v, &ip, false, "a glob for a file name cannot hold '/'");
			continue;
		}
		s->names[s->n_names++] = xstrdup(g);
	}
}

/*
 * overlay networks: a list of CIDR prefixes or `reserved` (netpolicy.h); a
 * string holds them separated by commas (the form the defaults take).
 */
void fn_overlay_networks(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct net_list *l = field;
	char err[160];
	memset(l, 0, sizeof(*l));
	if (json_is_string(val)) {
		char *copy = xstrdup(json_string_value(val)), *save = NULL;
		for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
			if (!net_list_add(l, t, err, sizeof(err))) {
				schema_error(v, p, false, "%s", err);
				break;
			}
		}
		free(copy);
		return;
	}
	if (!schema_want(v, p, val, json_is_array(val), "a list of networks (CIDR or reserved)"))
		return;
	for (size_t i = 0; i < json_array_size(val); i++) {
		const json_t *item = json_array_get(val, i);
		struct schema_path ip = { p, NULL, i, val };
		if (schema_want(v, &ip, item, json_is_string(item), "a network (CIDR or reserved)") &&
		    !net_list_add(l, json_string_value(item), err, sizeof(err)))
			schema_error(v, &ip, false, "%s", err);
	}
}

/* allow_hostnames: true, false, or auto (decided by the type in finish_discovery). */
void fn_hostnames(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	enum discovery_hostnames *dst = field;
	if (json_is_boolean(val))
		*dst = json_is_true(val) ? DISCOVERY_HOSTNAMES_YES : DISCOVERY_HOSTNAMES_NO;
	else if (json_is_string(val) && strcmp(json_string_value(val), "auto") == 0)
		*dst = DISCOVERY_HOSTNAMES_AUTO;
	else
		schema_want(v, p, val, false, "true, false or auto");
}

void fn_abs_dir(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	const char *s = json_string_value(val);
	if (s[0] != '/' || strstr(s, "/../") || strstr(s, "/./") || json_string_length(val) != strlen(s))
		schema_error(v, p, false, "must be an absolute directory path");
}

/* sentinel: a list of "host:port" (IP literals or names), at most 16, no duplicates. */
void fn_sentinels(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct discovery_conf *d = field;
	if (!schema_want(v, p, val, json_is_array(val), "a list of \"host:port\""))
		return;
	size_t n = json_array_size(val);
	if (n == 0 || n > 16) {
		schema_error(v, p, false, "must list 1 to 16 sentinels");
		return;
	}
	d->sentinels = xcalloc(n, sizeof(*d->sentinels));
	for (size_t i = 0; i < n; i++) {
		const json_t *item = json_array_get(val, i);
		struct schema_path ip = { p, NULL, i, val };
		if (!schema_want(v, &ip, item, json_is_string(item), "\"host:port\""))
			continue;
		struct static_backend *b = &d->sentinels[d->n_sentinels];
		bool ok = addr_check(v, &ip, item, json_string_value(item), false, b->host, &b->port);
		for (size_t j = 0; ok && j < d->n_sentinels; j++) {
			if (d->sentinels[j].port == b->port && strcasecmp(d->sentinels[j].host, b->host) == 0) {
				schema_error(v, &ip, false, "duplicate sentinel %s", d->sentinels[j].address);
				ok = false;
			}
		}
		if (ok) {
			b->address = xstrdup(json_string_value(item));
			b->weight = 1;
			d->n_sentinels++;
		} else {
			memset(b, 0, sizeof(*b));
		}
	}
}

void fn_backends(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct discovery_conf *d = field;
	if (!schema_want(v, p, val, json_is_array(val), "a list of \"host:port [weight=N]\""))
		return;
	size_t n = json_array_size(val);
	if (n == 0) {
		schema_error(v, p, false, "must list at least one backend");
		return;
	}
	d->backends = xcalloc(n, sizeof(*d->backends));
	for (size_t i = 0; i < n; i++) {
		const json_t *item = json_array_get(val, i);
		struct schema_path ip = { p, NULL, i, val };
		if (!schema_want(v, &ip, item, json_is_string(item), "\"host:port [weight=N]\""))
			continue;
		char *copy = xstrdup(json_string_value(item));
		char *save = NULL;
		char *addr = strtok_r(copy, " \t", &save);
		struct static_backend *b = &d->backends[d->n_backends];
		uint32_t weight = 1;
		bool ok = addr != NULL;
		if (!addr)
			schema_error(v, &ip, false, "empty backend");
		else
			ok = addr_check(v, &ip, item, addr, false, b->host, &b->port);
		for (char *tok; ok && (tok = strtok_r(NULL, " \t", &save));) {
			char *end;
			unsigned long w;
			if (strncmp(tok, "weight=", 7) != 0) {
				schema_error(v, &ip, false, "unknown option '%.40s' (only weight=N)", tok);
				ok = false;
				break;
			}
			errno = 0;
			w = strtoul(tok + 7, &end, 10);
			if (tok[7] < '0' || tok[7] > '9' || *end || errno || w < 1 || w > 256) {
				schema_error(v, &ip, false, "weight '%.40s' is out of range 1..256", tok + 7);
				ok = false;
				break;
			}
			weight = (uint32_t)w;
		}
		for (size_t j = 0; ok && j < d->n_backends; j++) {
			if (d->backends[j].port == b->port && strcasecmp(d->backends[j].host, b->host) == 0) {
				schema_error(v, &ip, false, "duplicate backend %s", d->backends[j].address);
				ok = false;
			}
		}
		if (ok) {
			b->address = xstrdup(addr);
			b->weight = weight;
			d->n_backends++;
		} else {
			memset(b, 0, sizeof(*b));
		}
		free(copy);
	}
}

void fn_tls_version(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char buf[80];
	if (!tls_version_parse(json_string_value(val)))
		schema_error(v, p, false, "%s is not a TLS version: \"1.2\" or \"1.3\"",
			     schema_show(val, buf, sizeof(buf)));
}

/* A file named by key k of the tls: section must exist and be readable. */
bool tls_file_ok(struct schema_ctx *v, const struct schema_path *p, const json_t *obj,
			const char *k, const char *path)
{
	struct schema_path kp = { p, k, 0, obj };
	if (!path)
		return true;
	if (access(path, R_OK) != 0) {
		schema_error(v, &kp, false, "cannot read %s: %s", path, strerror(errno));
		return false;
	}
	/* Before OpenSSL opens it: a FIFO would block the control thread, a device act. */
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		schema_error(v, &kp, false, "%s is not a regular file", path);
		return false;
	}
	return true;
}

/* trunk.listen: a TCP host:port (a trunk is between hosts: no unix: path). */
void fn_trunk_listen(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	char host[256];
	uint16_t port;
	char buf[80];
	if (!schema_want(v, p, val, json_is_string(val), "an address (host:port)"))
		return;
	const char *s = json_string_value(val);
	if (!net_split_host_port(s, host, sizeof(host), &port) || port == 0) {
		schema_error(v, p, false, "%s is not host:port", schema_show(val, buf, sizeof(buf)));
		return;
	}
	char **dst = field;
	free(*dst);
	*dst = xstrdup(s);
}

/* A decimal id, or -1. */
static int64_t id_parse(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end || errno || n >= UINT32_MAX)
		return -1;
	return (int64_t)n;
}

/*
 * owner/group: a name from the password or group database (as chown(1)
 * reads it) or a numeric id.
 */
bool id_resolve(const char *name, bool group, int64_t *id, char *err, size_t errlen)
{
	struct passwd pw, *pwr = NULL;
	struct group gr, *grr = NULL;
	char buf[4096];
	int rc = group ? getgrnam_r(name, &gr, buf, sizeof(buf), &grr)
		       : getpwnam_r(name, &pw, buf, sizeof(buf), &pwr);
	if (rc == 0 && (pwr || grr)) {
		*id = pwr ? (int64_t)pwr->pw_uid : (int64_t)grr->gr_gid;
		return true;
	}
	*id = id_parse(name);
	if (*id >= 0)
		return true;
	snprintf(err, errlen, "no such %s '%.64s'%s%s", group ? "group" : "user", name,
		 rc ? ": " : "", rc ? strerror(rc) : "");
	return false;
}

/* Read a template file for render: (at most 1 MiB); NULL with a message when it cannot be read. */
char *template_read(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 1 << 20;
	char *text = xmalloc(cap + 1);
	size_t len = fread(text, 1, cap + 1, f);
	bool bad = ferror(f) || len > cap;
	fclose(f);
	if (bad) {
		snprintf(err, errlen, "%s: %s", path, len > cap ? "larger than 1 MiB" : "read error");
		free(text);
		return NULL;
	}
	text[len] = '\0';
	return text;
}

/* announce: and sync: are lists of mappings of one section each. */
void *list_parse(struct schema_ctx *v, const struct schema_path *p, const json_t *val,
			const struct schema_section *s, size_t elem, size_t *n_out)
{
	if (json_is_null(val))
		return NULL;
	if (!schema_want(v, p, val, json_is_array(val), "a list"))
		return NULL;
	size_t n = json_array_size(val);
	char *items = xcalloc(n, elem);
	for (size_t i = 0; i < n; i++) {
		struct schema_path ip = { p, NULL, i, val };
		const json_t *obj = json_array_get(val, i);
		if (!schema_want(v, &ip, obj, json_is_object(obj), "a mapping"))
			obj = NULL;
		else
			schema_apply(v, &ip, obj, s, items + i * elem);
	}
	*n_out = n;
	return items;
}
