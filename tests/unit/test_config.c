/*
 * Unit tests for config (with yamltree and schema): the reference files,
 * defaults, every kind of error with its exact position, the JSON overlay.
 * Files are found through TEST_SRCDIR, never the current directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "util.h"
#include "yamltree.h"

#ifndef TEST_SRCDIR
#error "TEST_SRCDIR must name the source tree"
#endif

static struct config *load(const char *yaml, struct config_errors *errs)
{
	return config_load_string(yaml, strlen(yaml), "t.yaml", errs);
}

static struct config *load_ok(const char *yaml)
{
	struct config_errors errs = { 0 };
	struct config *cfg = load(yaml, &errs);
	for (size_t i = 0; i < errs.n; i++)
		print_message("unexpected: %s\n", errs.msgs[i]);
	assert_non_null(cfg);
	assert_int_equal(errs.n, 0);
	config_errors_free(&errs);
	return cfg;
}

static bool has_msg(const struct config_errors *errs, const char *want)
{
	for (size_t i = 0; i < errs->n; i++)
		if (strcmp(errs->msgs[i], want) == 0)
			return true;
	return false;
}

/* A load that must fail with exactly `want` among its messages; frees errs. */
static void assert_rejected(struct config *cfg, struct config_errors *errs, const char *want)
{
	if (cfg || !has_msg(errs, want)) {
		print_message("wanted: %s\n", want);
		for (size_t i = 0; i < errs->n; i++)
			print_message("got:    %s\n", errs->msgs[i]);
	}
	assert_null(cfg);
	assert_true(has_msg(errs, want));
	config_errors_free(errs);
}

/* The YAML must be rejected with exactly this message among the errors. */
static void expect_error(const char *yaml, const char *want)
{
	struct config_errors errs = { 0 };
	assert_rejected(load(yaml, &errs), &errs, want);
}

#define STATIC_SVC \
	"services:\n" \
	"  web:\n" \
	"    listen: \"127.0.0.1:8080\"\n" \
	"    discovery: {type: static, backends: [\"127.0.0.1:9001\"]}\n"

/* ---- reference files ------------------------------------------------------------- */

/* payload_class: a Java class name, for a mapping payload, and not twice. */
static void test_announce_payload_class(void **state)
{
	struct config *cfg = load_ok("zookeeper: {hosts: \"z:1\"}\n"
				     "announce:\n  - service: web\n    port: 1\n"
				     "    payload: {zone: a}\n"
				     "    payload_class: com.example.Details$Inner\n");
	(void)state;
	assert_string_equal(cfg->announce[0].payload_class, "com.example.Details$Inner");
	config_free(cfg);
	cfg = load_ok("zookeeper: {hosts: \"z:1\"}\nannounce:\n  - {service: web, port: 1}\n");
	assert_null(cfg->announce[0].payload_class);
	config_free(cfg);

	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce:\n"
		     "  - {service: web, port: 1, payload: {a: 1}, payload_class: \"com.1x\"}\n",
		     "t.yaml:3:61: announce[0].payload_class: 'com.1x' is not a Java class name (e.g. com.example.InstanceDetails)");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce:\n"
		     "  - {service: web, port: 1, payload: [a], payload_class: a.B}\n",
		     "t.yaml:3:43: announce[0].payload_class: needs payload: a mapping of the class's properties (a list or scalar payload carries its own Java type)");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce:\n"
		     "  - {service: web, port: 1, payload_class: a.B}\n",
		     "t.yaml:3:29: announce[0].payload_class: needs payload: a mapping of the class's properties");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce:\n"
		     "  - {service: web, port: 1, payload: {\"@class\": a.C}, payload_class: a.B}\n",
		     "t.yaml:3:38: announce[0].payload: \"@class\" and payload_class both name the class; keep one");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce:\n"
		     "  - {service: web, port: 1, payload: {\"@class\": 3}}\n",
		     "t.yaml:3:38: announce[0].payload: \"@class\" must be a Java class name; or use payload_class");
}

static void test_reference_file(void **state)
{
	struct config_errors errs = { 0 };
	struct config *cfg = config_load_file(TEST_SRCDIR "/conf/zklb.yaml", &errs);
	for (size_t i = 0; i < errs.n; i++)
		print_message("%s\n", errs.msgs[i]);
	assert_non_null(cfg);
	assert_string_equal(cfg->source, TEST_SRCDIR "/conf/zklb.yaml");
	assert_string_equal(cfg->zookeeper.hosts, "127.0.0.1:2181,127.0.0.1:2182");
	assert_string_equal(cfg->zookeeper.auth, "digest:user:secret");
	assert_string_equal(cfg->zookeeper.config_path, "/zklb/config");
	assert_int_equal(cfg->zookeeper.session_timeout_ms, 10000);
	assert_string_equal(cfg->cache_dir, "/var/lib/zklb");
	assert_int_equal(cfg->n_services, 3);

	const struct service_conf *web = config_service(cfg, "web");
	assert_non_null(web);
	assert_ptr_equal(web, &cfg->services[0]);	/* file order */
	assert_string_equal(web->listen, "127.0.0.1:8080");
	assert_int_equal(web->discovery.type, DISCOVERY_CURATOR);
	assert_string_equal(web->discovery.path, "/services/web");
	assert_int_equal(web->health.check.type, CHECK_HTTP);
	assert_string_equal(web->health.check.path, "/health");
	assert_false(web->tls.enabled);	/* not in this build: commented out */
	assert_string_equal(web->origin, "file");

	const struct service_conf *cache = config_service(cfg, "cache");
	assert_non_null(cache);
	assert_string_equal(cache->listen, "unix:/run/zklb/cache.sock");
	assert_int_equal(cache->discovery.type, DISCOVERY_SERVERSET);
	assert_int_equal(cache->balance, BALANCE_P2C);
	assert_int_equal(cache->health.check.type, CHECK_SEND_EXPECT);
	assert_int_equal(cache->health.check.send_len, 6);
	assert_memory_equal(cache->health.check.send, "PING\r\n", 6);
	assert_int_equal(cache->health.check.expect_len, 5);
	assert_memory_equal(cache->health.check.expect, "+PONG", 5);
	assert_int_equal(cache->pool.reuse, REUSE_REDIS);
	assert_int_equal(cache->pool.prewarm, 4);
	assert_false(cache->tls.enabled);

	const struct service_conf *legacy = config_service(cfg, "legacy");
	assert_non_null(legacy);
	assert_int_equal(legacy->discovery.n_backends, 2);
	assert_string_equal(legacy->discovery.backends[1].address, "10.0.0.6:9001");
	assert_string_equal(legacy->discovery.backends[1].host, "10.0.0.6");
	assert_int_equal(legacy->discovery.backends[1].port, 9001);
	assert_int_equal(legacy->discovery.backends[1].weight, 2);
	assert_int_equal(legacy->discovery.backends[0].weight, 1);
	assert_null(config_service(cfg, "nope"));

	assert_int_equal(cfg->n_announce, 1);
	assert_string_equal(cfg->announce[0].service, "web");
	assert_int_equal(cfg->announce[0].port, 9001);
	assert_true(json_is_object(cfg->announce[0].payload));
	assert_string_equal(json_string_value(json_object_get(cfg->announce[0].payload, "zone")), "a");
	assert_string_equal(cfg->announce[0].payload_class, "com.example.InstanceDetails");
	assert_int_equal(cfg->announce[0].check.type, CHECK_TCP);

	assert_int_equal(cfg->n_sync, 2);
	assert_int_equal(cfg->sync[0].mode, 0640);
	assert_string_equal(cfg->sync[0].on_change, "systemctl reload web");
	assert_true(cfg->sync[1].children);
	assert_string_equal(cfg->sync[1].dir, "/etc/web/conf.d");
	config_free(cfg);
	config_errors_free(&errs);
}

static void test_demo_file(void **state)
{
	struct config_errors errs = { 0 };
	struct config *cfg = config_load_file(TEST_SRCDIR "/conf/demo.yaml", &errs);
	assert_non_null(cfg);
	assert_null(cfg->zookeeper.hosts);
	assert_int_equal(cfg->workers, 2);
	assert_int_equal(cfg->drain_timeout_ms, 5000);
	assert_string_equal(cfg->admin_listen, "127.0.0.1:19901");
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->n_services, 1);
	const struct service_conf *s = config_service(cfg, "demo");
	assert_non_null(s);
	assert_string_equal(s->listen, "127.0.0.1:18080");
	assert_int_equal(s->balance, BALANCE_LEAST_CONN);
	assert_int_equal(s->discovery.type, DISCOVERY_STATIC);
	assert_int_equal(s->discovery.n_backends, 3);
	assert_int_equal(s->discovery.backends[0].port, 19001);
	assert_int_equal(s->discovery.backends[2].port, 19003);
	assert_int_equal(s->discovery.backends[2].weight, 2);
	config_free(cfg);
}

static void test_missing_file(void **state)
{
	struct config_errors errs = { 0 };
	assert_null(config_load_file(TEST_SRCDIR "/conf/does-not-exist.yaml", &errs));
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msgs[0], "does-not-exist.yaml: cannot open: "));
	config_errors_free(&errs);
}

/* ---- defaults ------------------------------------------------------------------- */

static void test_defaults(void **state)
{
	struct config *cfg = load_ok(
		"zookeeper: {hosts: \"zk:2181\"}\n"
		STATIC_SVC
		"announce:\n"
		"  - {service: web, port: 9001}\n"
		"sync:\n"
		"  - {path: /a, file: /tmp/a}\n");
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	assert_int_equal(cfg->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
	assert_int_equal(cfg->drain_timeout_ms, 30000);
	assert_string_equal(cfg->admin_listen, "127.0.0.1:9901");
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
	assert_null(cfg->cache_dir);
	assert_int_equal(cfg->zookeeper.session_timeout_ms, 10000);
	assert_null(cfg->zookeeper.auth);
	assert_null(cfg->zookeeper.config_path);

	const struct service_conf *s = &cfg->services[0];
	assert_string_equal(s->name, "web");
	assert_string_equal(s->origin, "file");
	assert_int_equal(s->balance, BALANCE_LEAST_CONN);
	assert_int_equal(s->slow_start_ms, 0);
	assert_int_equal(s->connect_timeout_ms, 1000);
	assert_int_equal(s->idle_timeout_ms, 300000);
	assert_int_equal(s->max_buffer, 65536);
	assert_int_equal(s->retries, 2);
	assert_true(s->discovery.keep_last_known);
	assert_true(s->discovery.collapse_guard == 0.5);
	assert_int_equal(s->discovery.collapse_hold_ms, 30000);
	assert_null(s->discovery.path);
	assert_int_equal(s->health.failures_to_eject, 3);
	assert_int_equal(s->health.base_ejection_ms, 5000);
	assert_int_equal(s->health.max_ejection_ms, 300000);
	assert_int_equal(s->health.max_ejected_percent, 50);
	assert_int_equal(s->health.panic_threshold, 50);
	assert_int_equal(s->health.check.type, CHECK_NONE);
	assert_int_equal(s->pool.prewarm, 0);
	assert_int_equal(s->pool.reuse, REUSE_NONE);
	assert_int_equal(s->pool.max_idle, 32);
	assert_int_equal(s->pool.idle_timeout_ms, 30000);
	assert_false(s->tls.enabled);
	assert_true(s->tls.verify);

	const struct announce_conf *a = &cfg->announce[0];
	assert_string_equal(a->base_path, "/services");
	assert_string_equal(a->address, "auto");
	assert_int_equal(a->ssl_port, 0);
	assert_null(a->payload);
	assert_int_equal(a->check.type, CHECK_TCP);
	assert_int_equal(a->check.interval_ms, 2000);
	assert_int_equal(a->check.timeout_ms, 500);
	assert_int_equal(a->check.rise, 2);
	assert_int_equal(a->check.fall, 3);
	assert_null(a->check.send);
	assert_null(a->check.expect);

	const struct sync_conf *y = &cfg->sync[0];
	assert_int_equal(y->mode, 0640);
	assert_int_equal(y->n_names, 0);
	assert_int_equal(y->max_children, 1000);
	assert_int_equal(y->max_total_size, 64 << 20);
	assert_null(y->owner);
	assert_int_equal(y->uid, -1);
	assert_int_equal(y->gid, -1);
	assert_int_equal(y->coalesce_ms, 200);
	assert_false(y->children);
	assert_null(y->on_change);
	assert_int_equal(y->on_change_timeout_ms, 30000);
	assert_int_equal(y->on_delete, SYNC_DELETE_KEEP);
	assert_int_equal(y->max_size, 1 << 20);
	config_free(cfg);
}

/* GET /config's document: values in force, defaults included, secrets masked. */
static void test_dump(void **state)
{
	struct config *cfg = load_ok(
		"zookeeper: {hosts: \"127.0.0.1:2181\", auth: \"digest:u:topsecret\"}\n"
		"log: {access: /var/log/zklb/access.log, access_format: json}\n"
		"services:\n"
		"  web:\n"
		"    listen: 127.0.0.1:9000\n"
		"    retries: 1\n"
		"    discovery: {type: static, backends: [\"127.0.0.1:9001 weight=3\"]}\n"
		"  api:\n"
		"    listen: \"off\"\n"
		"    discovery: {type: curator, path: /services/api}\n"
		"announce: [{service: web, port: 9001}]\n");
	json_t *o = config_dump(cfg);
	char *text = json_dumps(o, JSON_COMPACT);
	assert_null(strstr(text, "topsecret"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "zookeeper"), "auth")), "***");
	assert_string_equal(json_string_value(json_object_get(o, "drain_timeout")), "30s");
	json_t *log = json_object_get(o, "log");
	assert_string_equal(json_string_value(json_object_get(log, "access")), "/var/log/zklb/access.log");
	assert_string_equal(json_string_value(json_object_get(log, "access_format")), "json");
	json_t *web = json_object_get(json_object_get(o, "services"), "web");
	assert_string_equal(json_string_value(json_object_get(web, "listen")), "127.0.0.1:9000");
	assert_int_equal(json_integer_value(json_object_get(web, "retries")), 1);
	assert_string_equal(json_string_value(json_object_get(web, "balance")), "least_conn");
	assert_string_equal(json_string_value(json_object_get(json_object_get(web, "pool"), "reuse")), "none");
	json_t *be = json_array_get(json_object_get(json_object_get(web, "discovery"), "backends"), 0);
	assert_string_equal(json_string_value(be), "127.0.0.1:9001 weight=3");
	json_t *api = json_object_get(json_object_get(o, "services"), "api");
	assert_string_equal(json_string_value(json_object_get(api, "listen")), "off");
	assert_null(json_object_get(json_object_get(api, "discovery"), "backends"));
	json_t *ann = json_array_get(json_object_get(o, "announce"), 0);
	assert_int_equal(json_integer_value(json_object_get(ann, "port")), 9001);
	assert_string_equal(json_string_value(json_object_get(ann, "base_path")), "/services");
	assert_int_equal(json_array_size(json_object_get(o, "sync")), 0);
	free(text);
	json_decref(o);
	config_free(cfg);
}

static void test_empty_file(void **state)
{
	struct config *cfg = load_ok("# nothing but a comment\n");
	assert_int_equal(cfg->n_services, 0);
	assert_string_equal(cfg->admin_listen, "127.0.0.1:9901");
	config_free(cfg);
	cfg = load_ok("");
	config_free(cfg);
}

static void test_sections_without_body(void **state)
{
	/* "check:" alone is a tcp check with defaults. */
	struct config *cfg = load_ok(STATIC_SVC "    health:\n      check:\n");
	assert_int_equal(cfg->services[0].health.check.type, CHECK_TCP);
	config_free(cfg);
}

/* redis_role: role and password_file belong to it; the file must be private. */
static void test_redis_role_check(void **state)
{
	char dir[] = "/tmp/zklb-cfg-XXXXXX";
	char yaml[512], pw[64];
	assert_non_null(mkdtemp(dir));
	snprintf(pw, sizeof(pw), "%s/pw", dir);
	FILE *f = fopen(pw, "w");
	assert_non_null(f);
	fputs("hunter2\n", f);
	fclose(f);
	chmod(pw, 0600);

	snprintf(yaml, sizeof(yaml), STATIC_SVC "    health:\n      check: {type: redis_role, "
		 "role: replica, password_file: \"%s\"}\n", pw);
	struct config *cfg = load_ok(yaml);
	assert_int_equal(cfg->services[0].health.check.type, CHECK_REDIS_ROLE);
	assert_int_equal(cfg->services[0].health.check.role, REDIS_ROLE_REPLICA);
	assert_string_equal(cfg->services[0].health.check.password_file, pw);
	config_free(cfg);
	cfg = load_ok(STATIC_SVC "    health:\n      check: {type: redis_role}\n");
	assert_int_equal(cfg->services[0].health.check.role, REDIS_ROLE_MASTER);
	assert_null(cfg->services[0].health.check.password_file);
	config_free(cfg);

	expect_error(STATIC_SVC "    health:\n      check: {type: tcp, role: master}\n",
		     "t.yaml:6:26: services.web.health.check.role: only used with type redis_role");
	expect_error(STATIC_SVC "    health:\n      check: {type: redis_role, password_file: pw}\n",
		     "t.yaml:6:48: services.web.health.check.password_file: must be an absolute path");
	chmod(pw, 0604);
	char want[256];
	snprintf(want, sizeof(want), "t.yaml:6:48: services.web.health.check.password_file: %s: "
		 "readable or writable by others (mode 0604); chmod o-rw", pw);
	snprintf(yaml, sizeof(yaml), STATIC_SVC "    health:\n      check: {type: redis_role, "
		 "password_file: \"%s\"}\n", pw);
	expect_error(yaml, want);
	unlink(pw);
	rmdir(dir);
}

/* sentinel discovery: its keys, required ones, and no zookeeper: needed. */
static void test_sentinel_discovery(void **state)
{
	struct config *cfg = load_ok("services:\n  r:\n    listen: \"127.0.0.1:6380\"\n"
				     "    discovery: {type: sentinel, sentinels: [\"127.0.0.1:26379\", "
				     "\"[::1]:26380\"], master_name: mymaster, close_grace: 1s}\n");
	const struct discovery_conf *d = &cfg->services[0].discovery;
	assert_int_equal(d->type, DISCOVERY_SENTINEL);
	assert_int_equal(d->n_sentinels, 2);
	assert_string_equal(d->sentinels[1].host, "::1");
	assert_int_equal(d->sentinels[1].port, 26380);
	assert_string_equal(d->master_name, "mymaster");
	assert_int_equal(d->close_grace_ms, 1000);
	assert_int_equal(d->query_timeout_ms, 500);
	config_free(cfg);

	expect_error("services:\n  r:\n    listen: \"127.0.0.1:6380\"\n"
		     "    discovery: {type: sentinel, master_name: m}\n",
		     "t.yaml:4:5: services.r.discovery.sentinels: required key is missing (type sentinel)");
	expect_error("services:\n  r:\n    listen: \"127.0.0.1:6380\"\n"
		     "    discovery: {type: sentinel, sentinels: [\"127.0.0.1:1\", \"127.0.0.1:1\"], "
		     "master_name: m}\n",
		     "t.yaml:4:60: services.r.discovery.sentinels[1]: duplicate sentinel 127.0.0.1:1");
	expect_error(STATIC_SVC "    health: {}\n  x:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery: {type: static, backends: [\"127.0.0.1:2\"], master_name: m}\n",
		     "t.yaml:8:58: services.x.discovery.master_name: only used with type sentinel");
}

/* zone / zone_file and a service's locality: section. */
static void test_zone_and_locality(void **state)
{
	char dir[] = "/tmp/zklb-zone-XXXXXX", path[64], yaml[512];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/zone", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("eu-1b\nignored\n", f);
	fclose(f);

	snprintf(yaml, sizeof(yaml), "zone_file: %s\n" STATIC_SVC "    locality: {prefer: zone}\n", path);
	struct config *cfg = load_ok(yaml);
	assert_string_equal(cfg->zone, "eu-1b");
	assert_int_equal(cfg->services[0].locality.prefer, LOCALITY_ZONE);
	assert_string_equal(cfg->services[0].locality.zone_key, "zone");
	assert_int_equal(cfg->services[0].locality.min_healthy_percent, 70);
	config_free(cfg);
	cfg = load_ok("zone: a\n" STATIC_SVC "    locality: {prefer: zone, zone_key: az, min_healthy_percent: 50}\n");
	assert_string_equal(cfg->zone, "a");
	assert_string_equal(cfg->services[0].locality.zone_key, "az");
	config_free(cfg);

	expect_error(STATIC_SVC "    locality: {prefer: zone}\n",
		     "t.yaml:5:24: services.web.locality.prefer: prefer: zone needs zone: or zone_file: at "
		     "the top level");
	snprintf(yaml, sizeof(yaml), "zone: a\nzone_file: %s\n" STATIC_SVC, path);
	expect_error(yaml, "t.yaml:2:1: zone_file: zone and zone_file exclude each other");
	expect_error("zone: \"a b\"\n" STATIC_SVC,
		     "t.yaml:1:7: zone: must be 1 to 63 printable bytes without spaces");
	expect_error("zone: a\n" STATIC_SVC "    locality: {min_healthy_percent: 101}\n",
		     "t.yaml:6:37: services.web.locality.min_healthy_percent: 101 is out of range 0..100");
	unlink(path);
	rmdir(dir);
}

/* proxy_protocol v2 and pooling exclude each other. */
static void test_proxy_protocol_excludes_pooling(void **state)
{
	struct config *cfg = load_ok(STATIC_SVC "    proxy_protocol: v2\n");
	assert_int_equal(cfg->services[0].proxy_protocol, PROXY_PROTOCOL_V2);
	config_free(cfg);
	expect_error(STATIC_SVC "    proxy_protocol: v2\n    pool: {reuse: http1}\n",
		     "t.yaml:5:21: services.web.proxy_protocol: excludes pool.reuse and pool.prewarm: "
		     "a pooled connection cannot carry a per-client PROXY header");
	expect_error(STATIC_SVC "    proxy_protocol: v2\n    pool: {prewarm: 2}\n",
		     "t.yaml:5:21: services.web.proxy_protocol: excludes pool.reuse and pool.prewarm: "
		     "a pooled connection cannot carry a per-client PROXY header");
}

/* relay: a service takes the top-level one where it fits; kernel is refused where it cannot be. */
static void test_relay(void **state)
{
	struct config *cfg = load_ok(STATIC_SVC);
	assert_int_equal(cfg->relay, RELAY_MODE_USER);
	assert_int_equal(cfg->services[0].relay, RELAY_MODE_USER);
	config_free(cfg);
	cfg = load_ok("relay: kernel\n" STATIC_SVC);
	assert_int_equal(cfg->services[0].relay, RELAY_MODE_KERNEL);
	config_free(cfg);
	/* a top-level kernel is a default: a pooled service stays in user space */
	cfg = load_ok("relay: kernel\n" STATIC_SVC "    pool: {reuse: redis}\n");
	assert_int_equal(cfg->services[0].relay, RELAY_MODE_USER);
	config_free(cfg);
	cfg = load_ok("relay: kernel\n" STATIC_SVC "    relay: auto\n    tls: {verify: false}\n");
	assert_int_equal(cfg->services[0].relay, RELAY_MODE_AUTO);
	assert_false(config_relay_kernel_fits(&cfg->services[0]));
	config_free(cfg);
	expect_error(STATIC_SVC "    relay: kernel\n    pool: {prewarm: 2}\n",
		     "t.yaml:5:12: services.web.relay: kernel excludes tls:, pool.reuse, pool.prewarm, "
		     "via: trunk and a unix: listen address (the kernel relays plain TCP only); use auto");
	expect_error(STATIC_SVC "    relay: sockmap\n",
		     "t.yaml:5:12: services.web.relay: 'sockmap' is not one of user, kernel, auto");
}

/* tls: defaults, and every key checked where it is written. */
static void test_tls(void **state)
{
	/* verify: false needs no CA store; the defaults come from the schema. */
	struct config *cfg = load_ok(STATIC_SVC "    tls: {verify: false}\n");
	const struct tls_conf *t = &cfg->services[0].tls;
	assert_true(t->enabled);
	assert_false(t->verify);
	assert_true(t->session_reuse);
	assert_string_equal(t->min_version, "1.2");
	assert_null(t->ciphers);
	assert_non_null(t->ctx);
	config_free(cfg);

	cfg = load_ok(STATIC_SVC);
	assert_false(cfg->services[0].tls.enabled);
	assert_null(cfg->services[0].tls.ctx);
	config_free(cfg);

	/* enabled: false keeps the keys, loads nothing. */
	cfg = load_ok(STATIC_SVC "    tls: {enabled: false, ca: /nonexistent/ca.pem}\n");
	assert_false(cfg->services[0].tls.enabled);
	assert_null(cfg->services[0].tls.ctx);
	assert_string_equal(cfg->services[0].tls.ca, "/nonexistent/ca.pem");
	config_free(cfg);
	cfg = load_ok(STATIC_SVC "    tls: {enabled: true, verify: false}\n");
	assert_true(cfg->services[0].tls.enabled);
	assert_non_null(cfg->services[0].tls.ctx);
	config_free(cfg);

	expect_error(STATIC_SVC "    tls: {verify: false, min_version: \"1.1\"}\n",
		     "t.yaml:5:39: services.web.tls.min_version: '1.1' is not a TLS version: "
		     "\"1.2\" or \"1.3\"");
	expect_error(STATIC_SVC "    tls: {ca: /nonexistent/ca.pem}\n",
		     "t.yaml:5:15: services.web.tls.ca: cannot read /nonexistent/ca.pem: "
		     "No such file or directory");
	expect_error(STATIC_SVC "    tls: {verify: false, cert: /nonexistent/c.pem}\n",
		     "t.yaml:5:26: services.web.tls.cert: cert and key go together");
	expect_error(STATIC_SVC "    tls: {verify: false, ciphers: NO-SUCH-CIPHER}\n",
		     "t.yaml:5:35: services.web.tls.ciphers: no cipher of this list is known: "
		     "error:0A0000B9:SSL routines::no cipher match");

	/* A CA file that is not PEM is refused at its key, naming the file. */
	char dir[] = "/tmp/zklb-test-tls-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char ca[64], yaml[512], want[512];
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	FILE *f = fopen(ca, "w");
	assert_non_null(f);
	fputs("not a certificate\n", f);
	fclose(f);
	snprintf(yaml, sizeof(yaml), STATIC_SVC "    tls:\n      ca: %s\n", ca);
	struct config_errors errs = { 0 };
	cfg = load(yaml, &errs);
	assert_null(cfg);
	assert_int_equal(errs.n, 1);
	snprintf(want, sizeof(want), "t.yaml:6:11: services.web.tls.ca: cannot load %s as PEM certificates", ca);
	if (strncmp(errs.msgs[0], want, strlen(want)) != 0)
		print_message("got: %s\nwant: %s...\n", errs.msgs[0], want);
	assert_true(strncmp(errs.msgs[0], want, strlen(want)) == 0);
	config_errors_free(&errs);
	unlink(ca);
	rmdir(dir);
}

/* A file of the given mode holding text; path is filled (under dir). */
static void write_secret(const char *dir, const char *name, const char *text, mode_t mode,
			 char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/*
 * zookeeper.auth_file: the secret comes from a file only its owner may read;
 * it excludes auth; what it holds is checked like auth; the secret never
 * shows in a message.
 */
static void test_zookeeper_auth_file(void **state)
{
	char dir[] = "/tmp/zklb-test-auth-XXXXXX";
	char ok[128], open_[128], bad[128], yaml[512], want[512];
	assert_non_null(mkdtemp(dir));
	write_secret(dir, "ok", "digest:zklb:s3cret\n", 0600, ok, sizeof(ok));
	write_secret(dir, "open", "digest:zklb:s3cret\n", 0644, open_, sizeof(open_));
	write_secret(dir, "bad", "s3cret\n", 0600, bad, sizeof(bad));

	snprintf(yaml, sizeof(yaml), "zookeeper:\n  hosts: \"z:1\"\n  auth_file: %s\n", ok);
	struct config *cfg = load_ok(yaml);
	assert_string_equal(cfg->zookeeper.auth, "digest:zklb:s3cret");
	assert_string_equal(cfg->zookeeper.auth_file, ok);
	config_free(cfg);

	snprintf(yaml, sizeof(yaml), "zookeeper:\n  hosts: \"z:1\"\n  auth_file: %s\n", open_);
	snprintf(want, sizeof(want), "t.yaml:3:14: zookeeper.auth_file: %s is readable by group or "
		 "other (mode 0644); chmod 600 it", open_);
	expect_error(yaml, want);

	snprintf(yaml, sizeof(yaml), "zookeeper:\n  hosts: \"z:1\"\n  auth_file: %s\n", bad);
	snprintf(want, sizeof(want), "t.yaml:3:14: zookeeper.auth_file: %s must hold one line "
		 "scheme:credentials, e.g. digest:user:secret", bad);
	expect_error(yaml, want);

	snprintf(yaml, sizeof(yaml), "zookeeper:\n  hosts: \"z:1\"\n  auth_file: %s/none\n", dir);
	snprintf(want, sizeof(want), "t.yaml:3:14: zookeeper.auth_file: cannot read %s/none: "
		 "No such file or directory", dir);
	expect_error(yaml, want);

	snprintf(yaml, sizeof(yaml), "zookeeper:\n  hosts: \"z:1\"\n  auth: \"digest:a:b\"\n"
		 "  auth_file: %s\n", ok);
	expect_error(yaml, "t.yaml:4:3: zookeeper.auth_file: auth and auth_file exclude each other; "
		     "keep one");
	unlink(ok);
	unlink(open_);
	unlink(bad);
	rmdir(dir);
}

/* zookeeper.tls takes the keys of a service's tls:, checked the same way, where they are. */
static void test_zookeeper_tls(void **state)
{
	struct config *cfg = load_ok("zookeeper: {hosts: \"z:2281\"}\n");
	assert_false(cfg->zookeeper.tls.enabled);
	config_free(cfg);
	cfg = load_ok("zookeeper:\n  hosts: \"z:2281\"\n  tls: {server_name: zk.test}\n");
	assert_true(cfg->zookeeper.tls.enabled);
	assert_true(cfg->zookeeper.tls.verify);
	assert_non_null(cfg->zookeeper.tls.ctx);
	assert_string_equal(cfg->zookeeper.tls.server_name, "zk.test");
	config_free(cfg);
	expect_error("zookeeper:\n  hosts: \"z:2281\"\n  tls: {cert: /nonexistent/c.pem}\n",
		     "t.yaml:3:9: zookeeper.tls.cert: cert and key go together");
	expect_error("zookeeper:\n  hosts: \"z:2281\"\n  tls: {min_version: \"1.0\"}\n",
		     "t.yaml:3:22: zookeeper.tls.min_version: '1.0' is not a TLS version: \"1.2\" or \"1.3\"");
}

/* announce[].acl: auto by default; creator needs credentials. */
static void test_announce_acl(void **state)
{
	struct config *cfg = load_ok("zookeeper: {hosts: \"z:1\"}\n"
				     "announce:\n  - {service: web, port: 1}\n"
				     "  - {service: api, port: 2, acl: open}\n");
	assert_int_equal(cfg->announce[0].acl, ANNOUNCE_ACL_AUTO);
	assert_int_equal(cfg->announce[1].acl, ANNOUNCE_ACL_OPEN);
	config_free(cfg);
	cfg = load_ok("zookeeper: {hosts: \"z:1\", auth: \"digest:a:b\"}\n"
		      "announce:\n  - {service: web, port: 1, acl: creator}\n");
	assert_int_equal(cfg->announce[0].acl, ANNOUNCE_ACL_CREATOR);
	config_free(cfg);
	expect_error("zookeeper: {hosts: \"z:1\"}\n"
		     "announce:\n  - {service: web, port: 1, acl: creator}\n",
		     "t.yaml:3:34: announce[0].acl: creator needs zookeeper.auth or auth_file: "
		     "the ACL names the session's identity");
	expect_error("zookeeper: {hosts: \"z:1\"}\n"
		     "announce:\n  - {service: web, port: 1, acl: world}\n",
		     "t.yaml:3:34: announce[0].acl: 'world' is not one of auto, open, creator");
}

static void test_admin_and_workers(void **state)
{
	struct config *cfg = load_ok("admin: {listen: off}\nworkers: 4\n");
	assert_null(cfg->admin_listen);
	assert_int_equal(cfg->workers, 4);
	config_free(cfg);
	cfg = load_ok("admin:\n  listen: false\n");
	assert_null(cfg->admin_listen);
	config_free(cfg);
	cfg = load_ok("admin:\n  listen: \"unix:/run/zklb/admin.sock\"\n");
	assert_string_equal(cfg->admin_listen, "unix:/run/zklb/admin.sock");
	config_free(cfg);
	cfg = load_ok("admin:\n  listen: \"[::1]:9901\"\nlog: {level: debug, format: json}\n");
	assert_string_equal(cfg->admin_listen, "[::1]:9901");
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
	config_free(cfg);
}

static void test_values(void **state)
{
	struct config *cfg = load_ok(
		"drain_timeout: 0\n"
		"services:\n"
		"  web:\n"
		"    listen: \"*:8080\"\n"
		"    discovery: {type: static, backends: [\"localhost:1\", \"[::1]:2 weight=256\", \"h:3\tweight=1\"], collapse_guard: 1}\n"
		"    connect_timeout: 1.5s\n"
		"    idle_timeout: 0\n"
		"    slow_start: 2m\n"
		"    max_buffer: 16kb\n"
		"    retries: 0\n"
		"    health:\n"
		"      max_ejected_percent: 100\n"
		"      panic_threshold: 0\n"
		"      check:\n"
		"        type: send_expect\n"
		"        send: \"\\x00\\x01PING\\r\\n\"\n"
		"        expect: '+PONG'\n"
		"  other:\n"
		"    listen: \"127.0.0.1:8081\"\n"
		"    discovery: {type: static, backends: [\"127.0.0.1:9\"]}\n"
		"    max_buffer: 2048\n"
		"    pool: {prewarm: 2, max_idle: 2, reuse: memcached}\n");
	assert_int_equal(cfg->drain_timeout_ms, 0);
	const struct service_conf *s = &cfg->services[0];
	assert_int_equal(s->connect_timeout_ms, 1500);
	assert_int_equal(s->idle_timeout_ms, 0);
	assert_int_equal(s->slow_start_ms, 120000);
	assert_int_equal(s->max_buffer, 16384);
	assert_int_equal(s->retries, 0);
	assert_true(s->discovery.collapse_guard == 1.0);
	assert_string_equal(s->discovery.backends[1].host, "::1");
	assert_int_equal(s->discovery.backends[1].weight, 256);
	assert_int_equal(s->discovery.backends[2].port, 3);
	assert_int_equal(s->health.check.send_len, 8);
	assert_memory_equal(s->health.check.send, "\0\001PING\r\n", 8);
	assert_int_equal(s->health.check.expect_len, 5);
	assert_int_equal(cfg->services[1].max_buffer, 2048);
	assert_int_equal(cfg->services[1].pool.reuse, REUSE_MEMCACHED);
	config_free(cfg);
}

/* ---- errors, each with its exact position --------------------------------------------- */

static void test_yaml_errors(void **state)
{
	expect_error("a: [1, 2\n",
		     "t.yaml:2:1: did not find expected ',' or ']' while parsing a flow sequence");
	expect_error("workers: 2\nworkers: 3\n", "t.yaml:2:1: duplicate key 'workers'");
	expect_error("log: {level: info, level: warn}\n", "t.yaml:1:20: duplicate key 'level'");
	expect_error("log: &l {level: info}\n", "t.yaml:1:6: anchors and aliases are not supported");
	expect_error("a: 1\nb: *x\n", "t.yaml:2:4: anchors and aliases are not supported");
	expect_error("log:\n  <<: {level: info}\n", "t.yaml:2:3: merge keys (<<) are not supported");
	expect_error("workers: !!int 3\n", "t.yaml:1:10: unsupported tag 'tag:yaml.org,2002:int'");
	expect_error("workers: 2\n---\nworkers: 3\n", "t.yaml:2:1: only one YAML document is allowed");
	expect_error("? [a]\n: 1\n", "t.yaml:1:3: mapping keys must be scalars");
	expect_error("- a\n- b\n", "t.yaml:1:1: the top level must be a mapping, not a list");
}

static void test_unknown_keys(void **state)
{
	expect_error("workerz: 2\n", "t.yaml:1:1: workerz: unknown key (did you mean 'workers'?)");
	expect_error("zookeeper:\n  hosts: \"zk:2181\"\n  timeout: 5s\n",
		     "t.yaml:3:3: zookeeper.timeout: unknown key");
	expect_error(STATIC_SVC "    helth: {}\n",
		     "t.yaml:5:5: services.web.helth: unknown key (did you mean 'health'?)");
	expect_error(STATIC_SVC "    pool: {prewarm: 1, idle: 2}\n",
		     "t.yaml:5:24: services.web.pool.idle: unknown key");
}

static void test_type_errors(void **state)
{
	expect_error(STATIC_SVC "    retries: \"2\"\n",
		     "t.yaml:5:14: services.web.retries: expected an integer, got a string '2'");
	expect_error(STATIC_SVC "    retries: 2.5\n",
		     "t.yaml:5:14: services.web.retries: expected an integer, got a number 2.5");
	expect_error(STATIC_SVC "    retries: 16\n",
		     "t.yaml:5:14: services.web.retries: 16 is out of range 0..15");
	expect_error(STATIC_SVC "    health: 3\n",
		     "t.yaml:5:13: services.web.health: expected a mapping, got an integer 3");
	expect_error(STATIC_SVC "    tls: {verify: yes}\n",
		     "t.yaml:5:19: services.web.tls.verify: expected true or false, got a string 'yes'");
	expect_error("services: [a]\n",
		     "t.yaml:1:11: services: expected a mapping of service names, got a list");
	expect_error("announce: {service: a}\n", "t.yaml:1:11: announce: expected a list, got a mapping");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce: [3]\n",
		     "t.yaml:2:12: announce[0]: expected a mapping, got an integer 3");
}

static void test_duration_size_errors(void **state)
{
	expect_error("drain_timeout: 5x\n",
		     "t.yaml:1:16: drain_timeout: '5x' is not a duration (e.g. 250ms, 5s, 2m)");
	expect_error("drain_timeout: 5\n",
		     "t.yaml:1:16: drain_timeout: 5 needs a unit, e.g. 5s or 5ms");
	expect_error("drain_timeout: -1s\n",
		     "t.yaml:1:16: drain_timeout: '-1s' is not a duration (e.g. 250ms, 5s, 2m)");
	expect_error(STATIC_SVC "    connect_timeout: 0s\n",
		     "t.yaml:5:22: services.web.connect_timeout: must not be 0");
	expect_error(STATIC_SVC "    max_buffer: 512\n",
		     "t.yaml:5:17: services.web.max_buffer: must be at least 1024 bytes");
	expect_error(STATIC_SVC "    max_buffer: 0.5k\n",
		     "t.yaml:5:17: services.web.max_buffer: must be at least 1024 bytes");
	expect_error(STATIC_SVC "    max_buffer: 16q\n",
		     "t.yaml:5:17: services.web.max_buffer: '16q' is not a size (e.g. 512, 16k, 1m)");
	expect_error(STATIC_SVC "    health: {base_ejection: 10s, max_ejection: 5s}\n",
		     "t.yaml:5:48: services.web.health.max_ejection: must not be shorter than base_ejection");
}

static void test_range_errors(void **state)
{
	expect_error("workers: 0\n", "t.yaml:1:10: workers: 0 is out of range 1..256");
	expect_error("workers: 257\n", "t.yaml:1:10: workers: 257 is out of range 1..256");
	expect_error("workers: many\n",
		     "t.yaml:1:10: workers: expected auto or an integer, got a string 'many'");
	expect_error(STATIC_SVC "    health: {max_ejected_percent: 101}\n",
		     "t.yaml:5:35: services.web.health.max_ejected_percent: 101 is out of range 0..100");
	expect_error(STATIC_SVC "    health: {panic_threshold: -1}\n",
		     "t.yaml:5:31: services.web.health.panic_threshold: -1 is negative");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"], collapse_guard: 1.01}\n",
		     "t.yaml:4:66: services.web.discovery.collapse_guard: 1.01 is out of range 0..1");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"], collapse_guard: -0.1}\n",
		     "t.yaml:4:66: services.web.discovery.collapse_guard: -0.1 is out of range 0..1");
	expect_error(STATIC_SVC "    pool: {prewarm: 40}\n",
		     "t.yaml:5:21: services.web.pool.prewarm: 40 exceeds max_idle (32)");
}

static void test_address_errors(void **state)
{
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:70000\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:3:13: services.web.listen: port 70000 is out of range 1..65535");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:0\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:3:13: services.web.listen: port 0 is out of range 1..65535");
	expect_error("services:\n  web:\n    listen: 8080\n"
		     "    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:3:13: services.web.listen: expected an address (host:port, unix:/path or off), "
		     "got an integer 8080");
	expect_error("services:\n  web:\n    listen: \"::1:80\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:3:13: services.web.listen: '::1:80' is not host:port, [ipv6]:port or unix:/path");
	expect_error("services:\n  web:\n    listen: \"unix:rel.sock\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:3:13: services.web.listen: 'unix:rel.sock': a unix socket needs an "
		     "absolute path under 108 bytes");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery:\n      type: static\n      backends:\n"
		     "        - \"10.0.0.1:99999\"\n"
		     "        - \"10.0.0.1:1 weight=0\"\n"
		     "        - \"10.0.0.1:2 weight=257\"\n"
		     "        - \"10.0.0.1:3 weight=x\"\n"
		     "        - \"10.0.0.1:4 prio=1\"\n"
		     "        - \"10.0.0.1:5\"\n"
		     "        - \"10.0.0.1:5 weight=2\"\n"
		     "        - \"unix:/x\"\n",
		     "t.yaml:7:11: services.web.discovery.backends[0]: port 99999 is out of range 1..65535");
	const char *many =
		"services:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		"    discovery:\n      type: static\n      backends:\n"
		"        - \"10.0.0.1:99999\"\n"
		"        - \"10.0.0.1:1 weight=0\"\n"
		"        - \"10.0.0.1:2 weight=257\"\n"
		"        - \"10.0.0.1:3 weight=x\"\n"
		"        - \"10.0.0.1:4 prio=1\"\n"
		"        - \"10.0.0.1:5\"\n"
		"        - \"10.0.0.1:5 weight=2\"\n"
		"        - \"unix:/x\"\n";
	struct config_errors errs = { 0 };
	assert_null(load(many, &errs));
	static const char *const want[] = {
		"t.yaml:7:11: services.web.discovery.backends[0]: port 99999 is out of range 1..65535",
		"t.yaml:8:11: services.web.discovery.backends[1]: weight '0' is out of range 1..256",
		"t.yaml:9:11: services.web.discovery.backends[2]: weight '257' is out of range 1..256",
		"t.yaml:10:11: services.web.discovery.backends[3]: weight 'x' is out of range 1..256",
		"t.yaml:11:11: services.web.discovery.backends[4]: unknown option 'prio=1' (only weight=N)",
		"t.yaml:13:11: services.web.discovery.backends[6]: duplicate backend 10.0.0.1:5",
		"t.yaml:14:11: services.web.discovery.backends[7]: 'unix:/x' is not host:port or [ipv6]:port",
	};
	assert_int_equal(errs.n, ARRAY_SIZE(want));
	for (size_t i = 0; i < errs.n; i++)
		assert_string_equal(errs.msgs[i], want[i]);
	config_errors_free(&errs);
	expect_error("zookeeper: {hosts: \"zk\"}\n",
		     "t.yaml:1:20: zookeeper.hosts: 'zk' is not host:port");
	expect_error("zookeeper: {hosts: \"zk:1\", auth: \"digest\"}\n",
		     "t.yaml:1:34: zookeeper.auth: must be scheme:credentials, e.g. digest:user:secret");
	expect_error("zookeeper: {hosts: \"zk:1\", config_path: \"zklb\"}\n",
		     "t.yaml:1:41: zookeeper.config_path: 'zklb' is not a znode path (/a/b)");
}

static void test_enum_errors(void **state)
{
	expect_error(STATIC_SVC "    balance: fastest\n",
		     "t.yaml:5:14: services.web.balance: 'fastest' is not one of least_conn, p2c, "
		     "round_robin, random");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n    discovery: {type: dns}\n",
		     "t.yaml:4:23: services.web.discovery.type: 'dns' is not one of static, curator, serverset, sentinel");
	expect_error(STATIC_SVC "    health: {check: {type: icmp}}\n",
		     "t.yaml:5:28: services.web.health.check.type: 'icmp' is not one of tcp, send_expect, http, redis_role, mysql_primary");
	expect_error(STATIC_SVC "    pool: {reuse: http2}\n",
		     "t.yaml:5:19: services.web.pool.reuse: 'http2' is not one of none, http1, redis, memcached");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync: [{path: /a, file: /b, on_delete: purge}]\n",
		     "t.yaml:2:40: sync[0].on_delete: 'purge' is not one of keep, remove");
	expect_error("log: {level: verbose}\n",
		     "t.yaml:1:14: log.level: 'verbose' is not one of error, warn, info, debug");
	expect_error("log: {format: xml}\n", "t.yaml:1:15: log.format: 'xml' is not one of text, json");
}

static void test_required_errors(void **state)
{
	expect_error("services:\n  web:\n    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:2:3: services.web.listen: required key is missing");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n",
		     "t.yaml:2:3: services.web.discovery: required key is missing");
	expect_error("services:\n  web:\n",
		     "t.yaml:2:3: services.web: a service needs at least listen and discovery");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n    discovery: {path: /a}\n",
		     "t.yaml:4:5: services.web.discovery.type: required key is missing");
	expect_error("zookeeper: {hosts: \"z:1\"}\nservices:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery:\n      type: curator\n",
		     "t.yaml:5:5: services.web.discovery.path: required key is missing (type curator)");
	expect_error("zookeeper: {hosts: \"z:1\"}\nservices:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery:\n      type: serverset\n      path: /a\n      backends: [\"h:1\"]\n",
		     "t.yaml:8:7: services.web.discovery.backends: only used with type static");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n    discovery:\n      type: static\n",
		     "t.yaml:4:5: services.web.discovery.backends: required key is missing (type static)");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery: {type: static, backends: []}\n",
		     "t.yaml:4:41: services.web.discovery.backends: must list at least one backend");
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery: {type: static, path: /x, backends: [\"h:1\"]}\n",
		     "t.yaml:4:31: services.web.discovery.path: only used with type curator or serverset");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce:\n  - service: web\n",
		     "t.yaml:3:5: announce[0].port: required key is missing");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce:\n  - port: 1\n",
		     "t.yaml:3:5: announce[0].service: required key is missing");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync:\n  - path: /a\n",
		     "t.yaml:3:5: sync[0].file: required key is missing");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync:\n  - path: /a\n    children: true\n",
		     "t.yaml:3:5: sync[0].dir: required key is missing (children: true)");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync:\n  - {path: /a, file: /b, dir: /c}\n",
		     "t.yaml:3:26: sync[0].dir: only used with children: true");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync:\n  - {file: /b}\n",
		     "t.yaml:3:5: sync[0].path: required key is missing");
	expect_error("zookeeper: {session_timeout: 5s}\n",
		     "t.yaml:1:1: zookeeper.hosts: required key is missing");
	expect_error(STATIC_SVC "    health:\n      check: {type: send_expect, send: \"x\"}\n",
		     "t.yaml:6:7: services.web.health.check.expect: required key is missing (type send_expect)");
	expect_error(STATIC_SVC "    health:\n      check: {type: tcp, expect: \"x\"}\n",
		     "t.yaml:6:26: services.web.health.check.expect: only used with type send_expect");
	expect_error(STATIC_SVC "    health:\n      check: {type: tcp, path: /h}\n",
		     "t.yaml:6:26: services.web.health.check.path: only used with type http");
	expect_error(STATIC_SVC "    health:\n      check: {type: send_expect, expect: \"\"}\n",
		     "t.yaml:6:42: services.web.health.check.expect: must not be empty");
	expect_error(STATIC_SVC "    tls: {cert: /c}\n",
		     "t.yaml:5:11: services.web.tls.cert: cert and key go together");
}

static void test_cross_errors(void **state)
{
	expect_error("services:\n  web:\n    listen: \"127.0.0.1:1\"\n"
		     "    discovery: {type: curator, path: /services/web}\n",
		     "t.yaml:4:23: services.web.discovery.type: type curator needs a zookeeper: section");
	expect_error("announce:\n  - {service: web, port: 1}\n", "t.yaml:1:1: announce: needs a zookeeper: section");
	expect_error("sync:\n  - {path: /a, file: /b}\n", "t.yaml:1:1: sync: needs a zookeeper: section");
	expect_error(STATIC_SVC "  api:\n    listen: \"127.0.0.1:8080\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:6:13: services.api.listen: '127.0.0.1:8080' clashes with the listen address "
		     "of service web");
	expect_error(STATIC_SVC "  api:\n    listen: \"0.0.0.0:8080\"\n"
		     "    discovery: {type: static, backends: [\"h:1\"]}\n",
		     "t.yaml:6:13: services.api.listen: '0.0.0.0:8080' clashes with the listen address "
		     "of service web");
	expect_error("services:\n"
		     "  a: {listen: \"unix:/s\", discovery: {type: static, backends: [\"h:1\"]}}\n"
		     "  b: {listen: \"unix:/s\", discovery: {type: static, backends: [\"h:1\"]}}\n",
		     "t.yaml:3:15: services.b.listen: 'unix:/s' clashes with the listen address of service a");
	/* Different ports, or addresses, or families do not clash. */
	struct config *cfg = load_ok(
		"services:\n"
		"  a: {listen: \"127.0.0.1:1\", discovery: {type: static, backends: [\"h:1\"]}}\n"
		"  b: {listen: \"127.0.0.2:1\", discovery: {type: static, backends: [\"h:1\"]}}\n"
		"  c: {listen: \"127.0.0.1:2\", discovery: {type: static, backends: [\"h:1\"]}}\n"
		"  d: {listen: \"unix:/a\", discovery: {type: static, backends: [\"h:1\"]}}\n");
	config_free(cfg);
	expect_error("services:\n  \"bad name\": {listen: \"127.0.0.1:1\", "
		     "discovery: {type: static, backends: [\"h:1\"]}}\n",
		     "t.yaml:2:3: services.bad name: service names are 1..64 of A-Z a-z 0-9 _ - .");
}

static void test_misc_errors(void **state)
{
	expect_error("admin: {listen: on}\n",
		     "t.yaml:1:17: admin.listen: 'on' is not host:port, [ipv6]:port or unix:/path");
	expect_error("admin: {listen: true}\n",
		     "t.yaml:1:17: admin.listen: expected an address or off, got a boolean");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync: [{path: /a, file: /b, mode: 644}]\n",
		     "t.yaml:2:35: sync[0].mode: 644 is not an octal file mode; write it quoted, e.g. \"0644\"");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync: [{path: /a, file: /b, mode: \"0844\"}]\n",
		     "t.yaml:2:35: sync[0].mode: '0844' is not an octal file mode; write it quoted, e.g. \"0644\"");
	expect_error("zookeeper: {hosts: \"z:1\"}\nannounce: [{service: a, port: 65536}]\n",
		     "t.yaml:2:31: announce[0].port: 65536 is out of range 1..65535");
	/* Several problems are all reported, in source order. */
	struct config_errors errs = { 0 };
	assert_null(load("log: {level: loud}\nworkers: 0\ncache_dir: \"\"\nbogus: 1\n", &errs));
	assert_int_equal(errs.n, 4);
	assert_string_equal(errs.msgs[0], "t.yaml:1:14: log.level: 'loud' is not one of error, warn, info, debug");
	assert_string_equal(errs.msgs[1], "t.yaml:2:10: workers: 0 is out of range 1..256");
	assert_string_equal(errs.msgs[2], "t.yaml:3:12: cache_dir: must not be empty");
	assert_string_equal(errs.msgs[3], "t.yaml:4:1: bogus: unknown key");
	config_errors_free(&errs);
}

static void test_sync_limits_and_owner(void **state)
{
	struct config *cfg = load_ok("zookeeper: {hosts: \"z:1\"}\n"
				     "sync: [{path: /a, children: true, dir: /d, names: [\"*.conf\", \"app-?.yaml\"],\n"
				     "        max_children: 5, max_total_size: 10k, owner: root, group: \"0\", coalesce: 0s}]\n");
	const struct sync_conf *y = &cfg->sync[0];
	assert_int_equal(y->n_names, 2);
	assert_string_equal(y->names[1], "app-?.yaml");
	assert_int_equal(y->max_children, 5);
	assert_int_equal(y->max_total_size, 10240);
	assert_int_equal(y->uid, 0);
	assert_int_equal(y->gid, 0);
	assert_int_equal(y->coalesce_ms, 0);
	config_free(cfg);

	expect_error("zookeeper: {hosts: \"z:1\"}\nsync: [{path: /a, children: true, dir: /d, owner: nosuchuser-zklb}]\n",
		     "t.yaml:2:51: sync[0].owner: no such user 'nosuchuser-zklb'");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync: [{path: /a, children: true, dir: /d, names: [\"a/*\"]}]\n",
		     "t.yaml:2:52: sync[0].names[0]: a glob for a file name cannot hold '/'");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync: [{path: /a, file: /b, names: [\"*\"]}]\n",
		     "t.yaml:2:29: sync[0].names: only used with children: true");
	expect_error("zookeeper: {hosts: \"z:1\"}\nsync: [{path: /a, children: true, dir: /d, max_children: 0}]\n",
		     "t.yaml:2:58: sync[0].max_children: must not be 0");
}

static void test_allow_hostnames(void **state)
{
	struct config *cfg = load_ok("zookeeper: {hosts: \"z:1\"}\nservices:\n"
				     "  c: {listen: \"127.0.0.1:1\", discovery: {type: curator, path: /c}}\n"
				     "  s: {listen: \"127.0.0.1:2\", discovery: {type: serverset, path: /s}}\n"
				     "  f: {listen: \"127.0.0.1:3\", discovery: {type: static, backends: [\"h:1\"]}}\n"
				     "  y: {listen: \"127.0.0.1:4\", discovery: {type: curator, path: /y, allow_hostnames: true,\n"
				     "      max_lookups: 2, lookup_timeout: 1500ms}}\n"
				     "  n: {listen: \"127.0.0.1:5\", discovery: {type: serverset, path: /n, allow_hostnames: false}}\n");
	assert_false(config_service(cfg, "c")->discovery.allow_hostnames);
	assert_true(config_service(cfg, "s")->discovery.allow_hostnames);
	assert_true(config_service(cfg, "f")->discovery.allow_hostnames);
	assert_true(config_service(cfg, "y")->discovery.allow_hostnames);
	assert_false(config_service(cfg, "n")->discovery.allow_hostnames);
	assert_int_equal(config_service(cfg, "c")->discovery.max_lookups, 4);
	assert_int_equal(config_service(cfg, "c")->discovery.lookup_timeout_ms, 5000);
	assert_int_equal(config_service(cfg, "y")->discovery.max_lookups, 2);
	assert_int_equal(config_service(cfg, "y")->discovery.lookup_timeout_ms, 1500);
	config_free(cfg);
	expect_error("zookeeper: {hosts: \"z:1\"}\nservices:\n"
		     "  c: {listen: \"127.0.0.1:1\", discovery: {type: curator, path: /c, allow_hostnames: maybe}}\n",
		     "t.yaml:3:84: services.c.discovery.allow_hostnames: expected true, false or auto, got a string 'maybe'");
}

static void test_mode_and_scalars(void **state)
{
	/* A plain 0644 stays the string "0644" (YAML 1.1 and 1.2 disagree on it). */
	struct config *cfg = load_ok("zookeeper: {hosts: \"z:1\"}\n"
				     "sync: [{path: /a, file: /b, mode: 0600}, {path: /c, file: /d, mode: \"755\"}]\n");
	assert_int_equal(cfg->sync[0].mode, 0600);
	assert_int_equal(cfg->sync[1].mode, 0755);
	config_free(cfg);
}

/* ---- yamltree on its own ------------------------------------------------------ */

static void test_yamltree_scalars(void **state)
{
	const char *doc =
		"n1: ~\nn2: null\nn3:\nb1: true\nb2: False\ni1: 42\ni2: -7\ni3: 0x1f\ni4: 0o17\n"
		"f1: 1.5\nf2: 1e3\ns1: \"42\"\ns2: '1.5'\ns3: 0644\ns4: yes\ns5: .inf\ns6: !!str 3\n"
		"s7: |\n  two\n  lines\nbig: 99999999999999999999\nl: [a, {k: v}]\n";
	struct yamltree t;
	assert_true(yamltree_parse(&t, doc, strlen(doc)));
	json_t *r = t.root;
	assert_true(json_is_null(json_object_get(r, "n1")));
	assert_true(json_is_null(json_object_get(r, "n2")));
	assert_true(json_is_null(json_object_get(r, "n3")));
	assert_true(json_is_true(json_object_get(r, "b1")));
	assert_true(json_is_false(json_object_get(r, "b2")));
	assert_int_equal(json_integer_value(json_object_get(r, "i1")), 42);
	assert_int_equal(json_integer_value(json_object_get(r, "i2")), -7);
	assert_int_equal(json_integer_value(json_object_get(r, "i3")), 31);
	assert_int_equal(json_integer_value(json_object_get(r, "i4")), 15);
	assert_true(json_real_value(json_object_get(r, "f1")) == 1.5);
	assert_true(json_real_value(json_object_get(r, "f2")) == 1000.0);
	assert_string_equal(json_string_value(json_object_get(r, "s1")), "42");
	assert_string_equal(json_string_value(json_object_get(r, "s2")), "1.5");
	assert_string_equal(json_string_value(json_object_get(r, "s3")), "0644");
	assert_string_equal(json_string_value(json_object_get(r, "s4")), "yes");
	assert_string_equal(json_string_value(json_object_get(r, "s5")), ".inf");
	assert_string_equal(json_string_value(json_object_get(r, "s6")), "3");
	assert_string_equal(json_string_value(json_object_get(r, "s7")), "two\nlines\n");
	assert_string_equal(json_string_value(json_object_get(r, "big")), "99999999999999999999");

	struct yamltree_mark k, v;
	assert_true(yamltree_find(&t, r, "i3", 0, &k, &v));
	assert_int_equal(k.line, 8);
	assert_int_equal(k.col, 1);
	assert_int_equal(v.line, 8);
	assert_int_equal(v.col, 5);
	json_t *l = json_object_get(r, "l");
	assert_true(yamltree_find(&t, l, NULL, 1, &k, &v));
	assert_int_equal(v.line, 22);
	assert_int_equal(v.col, 8);
	assert_true(yamltree_find(&t, json_array_get(l, 1), "k", 0, &k, &v));
	assert_int_equal(k.col, 9);
	assert_int_equal(v.col, 12);
	assert_false(yamltree_find(&t, r, "missing", 0, &k, &v));
	yamltree_free(&t);
}

/* ---- overlay ---------------------------------------------------------------------- */

/* A file that lets the overlay replace its services and route to loopback. */
static struct config *overlay_base(void)
{
	return load_ok("zookeeper: {hosts: \"z:2181\", config_path: /zklb/config}\n"
		       "overlay: {replace_file_services: true, denied_networks: [reserved]}\n" STATIC_SVC);
}

static void test_overlay_good(void **state)
{
	struct config *base = overlay_base();
	struct config_errors errs = { 0 };
	const char *bare =
		"{\"api\": {\"listen\": \"127.0.0.1:8081\", \"discovery\": {\"type\": \"curator\","
		" \"path\": \"/services/api\"}, \"balance\": \"p2c\", \"connect_timeout\": \"250ms\"}}";
	struct config *cfg = config_overlay_json(base, bare, strlen(bare), "zookeeper:/zklb/config", &errs);
	assert_non_null(cfg);
	assert_int_equal(errs.n, 0);
	assert_int_equal(cfg->n_services, 2);
	assert_string_equal(cfg->services[0].name, "web");
	assert_string_equal(cfg->services[0].origin, "file");
	const struct service_conf *api = config_service(cfg, "api");
	assert_non_null(api);
	assert_string_equal(api->origin, "zookeeper:/zklb/config");
	assert_int_equal(api->balance, BALANCE_P2C);
	assert_int_equal(api->connect_timeout_ms, 250);
	assert_int_equal(api->max_buffer, 65536);
	assert_string_equal(cfg->zookeeper.hosts, "z:2181");

	/* Wrapped form, replacing web; the base is untouched. */
	const char *wrapped =
		"{\"services\": {\"web\": {\"listen\": \"127.0.0.1:9090\", \"discovery\": {\"type\": \"static\","
		" \"backends\": [\"127.0.0.1:1 weight=3\"]}}}}";
	struct config *cfg2 = config_overlay_json(cfg, wrapped, strlen(wrapped), "zk", &errs);
	assert_non_null(cfg2);
	assert_int_equal(cfg2->n_services, 2);
	assert_string_equal(cfg2->services[0].listen, "127.0.0.1:9090");
	assert_string_equal(cfg2->services[0].origin, "zk");
	assert_int_equal(cfg2->services[0].discovery.backends[0].weight, 3);
	assert_string_equal(cfg2->services[1].name, "api");
	assert_string_equal(cfg->services[0].listen, "127.0.0.1:8080");
	assert_int_equal(errs.n, 0);

	/* An empty overlay copies the base. */
	struct config *cfg3 = config_overlay_json(base, "{}", 2, "zk", &errs);
	assert_non_null(cfg3);
	assert_int_equal(cfg3->n_services, 1);
	config_free(cfg3);
	config_free(cfg2);
	config_free(cfg);
	config_free(base);
}

static void expect_overlay_error(const char *json, const char *want)
{
	struct config *base = overlay_base();
	struct config_errors errs = { 0 };
	assert_rejected(config_overlay_json(base, json, strlen(json), "zookeeper:/zklb/config", &errs),
			&errs, want);
	config_free(base);
}

static void test_overlay_errors(void **state)
{
	expect_overlay_error("{\"web\": {\"listen\": \"127.0.0.1:1\", \"discovery\": {\"type\": \"static\","
			     " \"backends\": [\"h:1\"]}, \"balance\": \"fastest\"}}",
			     "zookeeper:/zklb/config: services.web.balance: 'fastest' is not one of "
			     "least_conn, p2c, round_robin, random");
	expect_overlay_error("{\"services\": {\"api\": {\"listen\": \"127.0.0.1:1\", \"discovery\": "
			     "{\"type\": \"static\", \"backends\": [\"h:70000\"]}, \"colour\": 1}}}",
			     "zookeeper:/zklb/config: services.api.discovery.backends[0]: port 70000 is "
			     "out of range 1..65535");
	expect_overlay_error("{\"services\": {\"api\": {\"listen\": \"127.0.0.1:1\", \"discovery\": "
			     "{\"type\": \"static\", \"backends\": [\"h:1\"]}, \"colour\": 1}}}",
			     "zookeeper:/zklb/config: services.api.colour: unknown key");
	expect_overlay_error("{\"api\": {\"listen\": \"127.0.0.1:8080\", \"discovery\": {\"type\": \"static\","
			     " \"backends\": [\"h:1\"]}}}",
			     "zookeeper:/zklb/config: services.api.listen: '127.0.0.1:8080' clashes with "
			     "the listen address of service web");
	/*
	 * Any spelling of the same address clashes: the listener binds what it
	 * resolves to, and two SO_REUSEPORT sockets of one address share its
	 * connections (an overlay would take a share of the file's web clients).
	 */
	static const char *const same_as_web[] = { "2130706433:8080", "127.1:8080", "0x7f.0.0.1:8080",
						   "[::ffff:127.0.0.1]:8080", "[::]:8080" };
	for (size_t i = 0; i < ARRAY_SIZE(same_as_web); i++) {
		char json[256], want[256];
		snprintf(json, sizeof(json), "{\"api\": {\"listen\": \"%s\", \"discovery\": {\"type\": "
			 "\"static\", \"backends\": [\"h:1\"]}}}", same_as_web[i]);
		snprintf(want, sizeof(want), "zookeeper:/zklb/config: services.api.listen: '%s' clashes "
			 "with the listen address of service web", same_as_web[i]);
		expect_overlay_error(json, want);
	}
	expect_overlay_error("{\"services\": {}, \"workers\": 3}",
			     "zookeeper:/zklb/config: workers: unknown key (an overlay only sets services)");
	expect_overlay_error("{\"services\": []}",
			     "zookeeper:/zklb/config: services: expected a mapping of service names, got a list");
	expect_overlay_error("[1]", "zookeeper:/zklb/config: the overlay must be a JSON object of services");
	expect_overlay_error("{\"a\": 1,}",
			     "zookeeper:/zklb/config: invalid JSON at line 1 column 9: string or '}' expected near '}'");
	expect_overlay_error("{\"a\": {}, \"a\": {}}",
			     "zookeeper:/zklb/config: invalid JSON at line 1 column 13: duplicate object key near '\"a\"'");
	expect_overlay_error("{\"api\": {\"listen\": \"127.0.0.1:2\", \"discovery\": {\"type\": \"static\","
			     " \"backends\": [\"h:1\"]}, \"max_buffer\": 100}}",
			     "zookeeper:/zklb/config: services.api.max_buffer: must be at least 1024 bytes");
}

/* queue_timeout: connect_timeout by default, the top-level one inherited, overlays too; errors. */
static void test_queue_timeout(void **state)
{
	struct config *cfg = load_ok(STATIC_SVC "    connect_timeout: 3s\n");
	assert_int_equal(cfg->services[0].queue_timeout_ms, 3000);	/* HAProxy: timeout connect */
	assert_int_equal(cfg->services[0].queue_max, 1024);
	config_free(cfg);

	cfg = load_ok("zookeeper: {hosts: \"z:2181\", config_path: /zklb/config}\n"
		      "queue_timeout: 20s\n" STATIC_SVC "    queue_max: 5\n"
		      "  api:\n    listen: \"127.0.0.1:8081\"\n"
		      "    discovery: {type: static, backends: [\"127.0.0.1:9002\"]}\n"
		      "    queue_timeout: connect_timeout\n"
		      "    connect_timeout: 250ms\n");
	assert_int_equal(cfg->services[0].queue_timeout_ms, 20000);	/* inherited */
	assert_int_equal(cfg->services[0].queue_max, 5);
	assert_int_equal(cfg->services[1].queue_timeout_ms, 250);	/* its own */
	/* A service from the overlay inherits the file's top-level value. */
	const char *ov = "{\"extra\": {\"listen\": \"127.0.0.1:8082\", "
			 "\"discovery\": {\"type\": \"curator\", \"path\": \"/services/extra\"}}, "
			 "\"off\": {\"listen\": \"127.0.0.1:8083\", \"queue_timeout\": 0, "
			 "\"discovery\": {\"type\": \"curator\", \"path\": \"/services/off\"}}}";
	struct config_errors errs = { 0 };
	struct config *o = config_overlay_json(cfg, ov, strlen(ov), "zk", &errs);
	assert_non_null(o);
	const struct service_conf *extra = config_service(o, "extra"), *off = config_service(o, "off");
	assert_non_null(extra);
	assert_non_null(off);
	assert_int_equal(extra->queue_timeout_ms, 20000);
	assert_int_equal(off->queue_timeout_ms, 0);
	assert_int_equal(config_service(o, "web")->queue_timeout_ms, 20000);
	config_free(o);
	config_free(cfg);

	assert_rejected(load("queue_timeout: soon\n", &errs), &errs,
			"t.yaml:1:16: queue_timeout: 'soon' is neither a duration (e.g. 250ms, 5s, 2m) "
			"nor connect_timeout");
	assert_rejected(load("queue_timeout: 2h\n", &errs), &errs,
			"t.yaml:1:16: queue_timeout: 2h is more than an hour");
	assert_rejected(load(STATIC_SVC "    queue_timeout: [1s]\n", &errs), &errs,
			"t.yaml:5:20: services.web.queue_timeout: expected a duration (e.g. 5s) or "
			"connect_timeout, got a list");
	config_errors_free(&errs);
}

/* allowed_networks / denied_networks: defaults, inheritance, errors, warnings; the overlay may not set them. */
static void test_networks(void **state)
{
	struct config *cfg = load_ok(STATIC_SVC);
	const struct service_conf *sc = &cfg->services[0];
	assert_true(config_denied_networks(cfg, sc)->has_reserved);
	assert_int_equal(config_allowed_networks(cfg, sc)->n, 0);
	struct config_errors warns = { 0 };
	config_warnings(cfg, &warns);
	assert_int_equal(warns.n, 0);
	config_free(cfg);

	cfg = load_ok("denied_networks: [\"10.0.0.0/8\"]\nallowed_networks: [\"10.0.0.0/7\", \"::1\"]\n"
		      STATIC_SVC "    denied_networks: [reserved, \"192.0.2.0/24\"]\n"
		      "    max_connections: 10\n");
	sc = &cfg->services[0];
	/* The service's own list replaces the global one; allowed is inherited. */
	assert_true(config_denied_networks(cfg, sc)->has_reserved);
	assert_int_equal(config_allowed_networks(cfg, sc)->n, 2);
	assert_int_equal(config_denied_networks(cfg, NULL)->n, 1);
	assert_int_equal(sc->max_connections, 10);
	config_warnings(cfg, &warns);
	assert_int_equal(warns.n, 1);
	assert_string_equal(warns.msgs[0], "t.yaml: warning: denied_networks does not include `reserved`: "
			    "instances may be routed to link-local and cloud metadata addresses "
			    "(169.254.169.254) and to 0.0.0.0");
	config_errors_free(&warns);
	config_free(cfg);

	struct config_errors errs = { 0 };
	assert_rejected(load("allowed_networks: [\"10.0.0.1/8\"]\n", &errs), &errs,
			"t.yaml:1:20: allowed_networks[0]: '10.0.0.1/8' has host bits set past /8");
	assert_rejected(load("denied_networks: [\"example.com\"]\n", &errs), &errs,
			"t.yaml:1:19: denied_networks[0]: 'example.com' is not an IP address "
			"(write networks numerically)");
	assert_rejected(load("denied_networks: reserved\n", &errs), &errs,
			"t.yaml:1:18: denied_networks: expected a list of networks (CIDR prefixes or "
			"reserved), got a string 'reserved'");

	/* A ZooKeeper writer may not widen where zklb connects. */
	expect_overlay_error("{\"api\": {\"listen\": \"127.0.0.1:2\", \"discovery\": {\"type\": \"static\","
			     " \"backends\": [\"h:1\"]}, \"denied_networks\": []}}",
			     "zookeeper:/zklb/config: services.api.denied_networks: may be set in the "
			     "file only, not by the overlay");
	expect_overlay_error("{\"api\": {\"listen\": \"127.0.0.1:2\", \"discovery\": {\"type\": \"static\","
			     " \"backends\": [\"h:1\"]}, \"allowed_networks\": [\"0.0.0.0/0\"]}}",
			     "zookeeper:/zklb/config: services.api.allowed_networks: may be set in the "
			     "file only, not by the overlay");
}

/* The overlay under the file's policy: safe defaults, then what each switch allows. */
static void expect_policy(const char *policy, const char *json, const char *want)
{
	char yaml[1024];
	struct config_errors errs = { 0 };

	snprintf(yaml, sizeof(yaml), "zookeeper: {hosts: \"z:2181\", config_path: /zklb/config}\n%s"
		 STATIC_SVC, policy);
	struct config *base = load_ok(yaml);
	struct config *cfg = config_overlay_json(base, json, strlen(json), "zk", &errs);
	if (want) {
		assert_rejected(cfg, &errs, want);
	} else {
		for (size_t i = 0; i < errs.n; i++)
			print_message("unexpected: %s\n", errs.msgs[i]);
		assert_non_null(cfg);
		config_free(cfg);
		config_errors_free(&errs);
	}
	config_free(base);
}

#define SVC(listen, rest) "{\"api\": {\"listen\": \"" listen "\", " rest "}}"
#define CURATOR "\"discovery\": {\"type\": \"curator\", \"path\": \"/s/api\"}"
#define STATIC(b) "\"discovery\": {\"type\": \"static\", \"backends\": [\"" b "\"]}"

static void test_overlay_policy(void **state)
{
	struct config *base = load_ok("zookeeper: {hosts: \"z:1\"}\n");
	const struct overlay_policy_conf *d = &base->overlay;
	assert_false(d->replace_file_services);
	assert_false(d->check_payloads);
	assert_null(d->listen_dir);
	assert_int_equal(d->listen_networks.n, 2);
	assert_int_equal(d->allowed_networks.n, 0);
	assert_true(d->denied_networks.has_reserved);
	assert_int_equal(d->min_check_interval_ms, 1000);
	assert_int_equal(d->max_prewarm, 4);
	assert_int_equal(d->max_idle, 64);
	assert_int_equal(d->max_buffer, 1 << 20);
	config_free(base);

	/* listen: loopback only, every spelling of "any" refused */
	expect_policy("", SVC("127.0.0.2:1", CURATOR), NULL);
	expect_policy("", SVC("[::1]:1", CURATOR), NULL);
	expect_policy("", SVC("0.0.0.0:1", CURATOR),
		      "zk: services.api.listen: '0.0.0.0:1' is outside overlay.listen_networks: an "
		      "overlay listens on loopback unless the file allows more");
	expect_policy("", SVC("*:1", CURATOR),
		      "zk: services.api.listen: '*:1' is outside overlay.listen_networks: an "
		      "overlay listens on loopback unless the file allows more");
	expect_policy("", SVC("[::]:1", CURATOR),
		      "zk: services.api.listen: '[::]:1' is outside overlay.listen_networks: an "
		      "overlay listens on loopback unless the file allows more");
	expect_policy("", SVC("localhost:1", CURATOR),
		      "zk: services.api.listen: 'localhost:1': an overlay listens on an IP address, not a name");
	expect_policy("overlay: {listen_networks: [\"0.0.0.0/0\"]}\n", SVC("0.0.0.0:1", CURATOR), NULL);
	expect_policy("overlay: {listen_networks: []}\n", SVC("127.0.0.1:1", CURATOR),
		      "zk: services.api.listen: '127.0.0.1:1' is outside overlay.listen_networks: an "
		      "overlay listens on loopback unless the file allows more");
	/* unix: only under listen_dir, no climbing out */
	expect_policy("", SVC("unix:/run/zklb/a.sock", CURATOR),
		      "zk: services.api.listen: 'unix:/run/zklb/a.sock': an overlay may not listen on a "
		      "unix: path (overlay.listen_dir is not set)");
	expect_policy("overlay: {listen_dir: /run/zklb/}\n", SVC("unix:/run/zklb/a.sock", CURATOR), NULL);
	expect_policy("overlay: {listen_dir: /run/zklb}\n", SVC("unix:/run/zklb/../x.sock", CURATOR),
		      "zk: services.api.listen: 'unix:/run/zklb/../x.sock' is not under overlay.listen_dir /run/zklb");
	expect_policy("overlay: {listen_dir: /run/zklb}\n", SVC("unix:/run/zklbx/a.sock", CURATOR),
		      "zk: services.api.listen: 'unix:/run/zklbx/a.sock' is not under overlay.listen_dir /run/zklb");

	/* static backends: by address, outside denied, inside allowed; every spelling */
	expect_policy("", SVC("127.0.0.1:1", STATIC("10.1.2.3:80")), NULL);
	expect_policy("", SVC("127.0.0.1:1", STATIC("169.254.169.254:80")),
		      "zk: services.api.discovery.backends[0]: '169.254.169.254:80' is refused for an "
		      "overlay: inside overlay.denied_networks 169.254.0.0/16");
	expect_policy("", SVC("127.0.0.1:1", STATIC("[::ffff:169.254.169.254]:80")),
		      "zk: services.api.discovery.backends[0]: '[::ffff:169.254.169.254]:80' is refused "
		      "for an overlay: inside overlay.denied_networks 169.254.0.0/16");
	expect_policy("", SVC("127.0.0.1:1", STATIC("2130706433:9901")),
		      "zk: services.api.discovery.backends[0]: '2130706433:9901' is refused for an "
		      "overlay: inside overlay.denied_networks 127.0.0.0/8");
	expect_policy("", SVC("127.0.0.1:1", STATIC("0x7f.1:9901")),
		      "zk: services.api.discovery.backends[0]: '0x7f.1:9901' is refused for an "
		      "overlay: inside overlay.denied_networks 127.0.0.0/8");
	expect_policy("", SVC("127.0.0.1:1", STATIC("backend.example:80")),
		      "zk: services.api.discovery.backends[0]: 'backend.example:80': an overlay names "
		      "static backends by IP address (a name's address cannot be checked before it resolves)");
	expect_policy("overlay: {allowed_networks: [10.0.0.0/8]}\n", SVC("127.0.0.1:1", STATIC("192.168.1.1:80")),
		      "zk: services.api.discovery.backends[0]: '192.168.1.1:80' is refused for an "
		      "overlay: outside overlay.allowed_networks");
	expect_policy("overlay: {denied_networks: [reserved]}\n", SVC("127.0.0.1:1", STATIC("127.0.0.1:80")), NULL);

	/* check payloads, intervals and pool/buffer bounds */
	expect_policy("", SVC("127.0.0.1:1", CURATOR ", \"health\": {\"check\": {\"type\": \"send_expect\","
			  " \"send\": \"x\", \"expect\": \"y\"}}"),
		      "zk: services.api.health.check.send: check payloads (send/expect) from an overlay "
		      "need overlay.check_payloads: true");
	expect_policy("overlay: {check_payloads: true}\n",
		      SVC("127.0.0.1:1", CURATOR ", \"health\": {\"check\": {\"type\": \"send_expect\","
			  " \"send\": \"x\", \"expect\": \"y\"}}"), NULL);
	expect_policy("", SVC("127.0.0.1:1", CURATOR ", \"health\": {\"check\": {\"interval\": \"10ms\"}}"),
		      "zk: services.api.health.check.interval: 10ms is below overlay.min_check_interval (1000ms)");
	expect_policy("", SVC("127.0.0.1:1", CURATOR ", \"pool\": {\"prewarm\": 5}"),
		      "zk: services.api.pool.prewarm: 5 is over overlay.max_prewarm (4)");
	expect_policy("", SVC("127.0.0.1:1", CURATOR ", \"pool\": {\"max_idle\": 65}"),
		      "zk: services.api.pool.max_idle: 65 is over overlay.max_idle (64)");
	expect_policy("", SVC("127.0.0.1:1", CURATOR ", \"max_buffer\": \"2m\""),
		      "zk: services.api.max_buffer: 2097152 bytes is over overlay.max_buffer (1048576)");
	expect_policy("overlay: {max_buffer: 4m}\n", SVC("127.0.0.1:1", CURATOR ", \"max_buffer\": \"2m\""), NULL);

	/* replacing a service of the file needs the switch */
	expect_policy("", "{\"web\": {\"listen\": \"127.0.0.1:8080\", " CURATOR "}}",
		      "zk: services.web: the file defines this service; an overlay may replace it only "
		      "with overlay.replace_file_services: true");
	expect_policy("overlay: {replace_file_services: true}\n",
		      "{\"web\": {\"listen\": \"127.0.0.1:8080\", " CURATOR "}}", NULL);

	/* the policy itself is validated */
	expect_error("overlay: {denied_networks: [10.0.0.1/8]}\n",
		     "t.yaml:1:29: overlay.denied_networks[0]: '10.0.0.1/8' has host bits set past /8");
	expect_error("overlay: {listen_dir: run/zklb}\n",
		     "t.yaml:1:23: overlay.listen_dir: must be an absolute directory path");
}

/* A file with an overlay path, zookeeper keys zk_extra and a service web with web_line. */
static struct config *policy_file(const char *zk_extra, const char *web_line)
{
	char yaml[1024];
	snprintf(yaml, sizeof(yaml),
		 "zookeeper: {hosts: \"z:2181\", config_path: /zklb/config%s}\n"
		 "services:\n"
		 "  web:\n"
		 "    listen: \"127.0.0.1:8080\"\n"
		 "    discovery: {type: static, backends: [\"127.0.0.1:9001\"]}\n"
		 "    %s\n", zk_extra, web_line);
	return load_ok(yaml);
}

/*
 * Files and hosts an overlay names beyond listen and static backends: a
 * password_file is read and sent (AUTH) to an instance ZooKeeper chose, so an
 * overlay may name only a password file the file's own configuration uses
 * (else any root-only secret, the ZooKeeper digest say, goes to any host);
 * sentinels are destinations like static backends.
 */
static void test_overlay_policy_files(void **state)
{
	char dir[] = "/tmp/zklb-test-ovl-XXXXXX", zkpw[96], redispw[96], json[1024], want[512];
	assert_non_null(mkdtemp(dir));
	write_secret(dir, "zk.auth", "digest:zklb:s3cret\n", 0600, zkpw, sizeof(zkpw));
	write_secret(dir, "redis.pw", "pw\n", 0600, redispw, sizeof(redispw));
	char zk[160], web[160];
	snprintf(zk, sizeof(zk), ", auth_file: %s", zkpw);
	snprintf(web, sizeof(web), "health: {check: {type: redis_role, password_file: %s}}", redispw);
	struct config *base = policy_file(zk, web);
	struct config_errors errs = { 0 };
	struct config *cfg;

	/* a check's password: only one the file uses */
	snprintf(json, sizeof(json), SVC("127.0.0.1:1", CURATOR ", \"health\": {\"check\": "
		 "{\"type\": \"redis_role\", \"password_file\": \"%s\"}}"), zkpw);
	snprintf(want, sizeof(want), "zk: services.api.health.check.password_file: '%s' is no "
		 "password file of the file's services: an overlay may not have zklb read it", zkpw);
	assert_rejected(config_overlay_json(base, json, strlen(json), "zk", &errs), &errs, want);
	snprintf(json, sizeof(json), SVC("127.0.0.1:1", CURATOR ", \"health\": {\"check\": "
		 "{\"type\": \"redis_role\", \"password_file\": \"%s\"}}"), redispw);
	cfg = config_overlay_json(base, json, strlen(json), "zk", &errs);
	assert_non_null(cfg);
	config_free(cfg);

	/* a sentinel's password, and the sentinels' addresses */
	snprintf(json, sizeof(json), SVC("127.0.0.1:1", "\"discovery\": {\"type\": \"sentinel\", "
		 "\"sentinels\": [\"10.0.0.1:26379\"], \"master_name\": \"m\", \"password_file\": \"%s\"}"),
		 zkpw);
	snprintf(want, sizeof(want), "zk: services.api.discovery.password_file: '%s' is no "
		 "password file of the file's services: an overlay may not have zklb read it", zkpw);
	assert_rejected(config_overlay_json(base, json, strlen(json), "zk", &errs), &errs, want);
	snprintf(json, sizeof(json), SVC("127.0.0.1:1", "\"discovery\": {\"type\": \"sentinel\", "
		 "\"sentinels\": [\"10.0.0.1:26379\", \"169.254.169.254:26379\"], \"master_name\": \"m\", "
		 "\"password_file\": \"%s\"}"), redispw);
	assert_rejected(config_overlay_json(base, json, strlen(json), "zk", &errs), &errs,
			"zk: services.api.discovery.sentinels[1]: '169.254.169.254:26379' is refused "
			"for an overlay: inside overlay.denied_networks 169.254.0.0/16");
	snprintf(json, sizeof(json), SVC("127.0.0.1:1", "\"discovery\": {\"type\": \"sentinel\", "
		 "\"sentinels\": [\"10.0.0.1:26379\"], \"master_name\": \"m\", \"password_file\": \"%s\"}"),
		 redispw);
	cfg = config_overlay_json(base, json, strlen(json), "zk", &errs);
	assert_non_null(cfg);
	config_free(cfg);

	config_free(base);
	unlink(zkpw);
	unlink(redispw);
	rmdir(dir);
}

/* A self-signed EC certificate and its key at dir/name.pem and dir/name.key (openssl). */
static void make_keypair(const char *dir, const char *name)
{
	char cmd[768];
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
		 "-nodes -days 1 -subj /CN=%s -keyout %s/%s.key -out %s/%s.pem 2>/dev/null", name, dir,
		 name, dir, name);
	assert_int_equal(system(cmd), 0);
}

/*
 * An overlay's tls.key is the identity zklb presents to backends ZooKeeper
 * picks: only a key a service of the file already presents, never any key on
 * the host (the ZooKeeper client's, the trunk's, another daemon's).
 */
static void test_overlay_policy_tls_key(void **state)
{
	char dir[] = "/tmp/zklb-test-ovk-XXXXXX", json[1024], want[512];
	assert_non_null(mkdtemp(dir));
	make_keypair(dir, "file");
	make_keypair(dir, "other");
	char web[256];
	snprintf(web, sizeof(web), "tls: {verify: false, cert: %s/file.pem, key: %s/file.key}", dir,
		 dir);
	struct config *base = policy_file("", web);
	struct config_errors errs = { 0 };
	struct config *cfg;

	snprintf(json, sizeof(json), SVC("127.0.0.1:1", CURATOR ", \"tls\": {\"verify\": false, "
		 "\"cert\": \"%s/other.pem\", \"key\": \"%s/other.key\"}"), dir, dir);
	snprintf(want, sizeof(want), "zk: services.api.tls.key: '%s/other.key' is no TLS key of the "
		 "file's services: an overlay may not have zklb present it", dir);
	assert_rejected(config_overlay_json(base, json, strlen(json), "zk", &errs), &errs, want);
	snprintf(json, sizeof(json), SVC("127.0.0.1:1", CURATOR ", \"tls\": {\"verify\": false, "
		 "\"cert\": \"%s/file.pem\", \"key\": \"%s/file.key\"}"), dir, dir);
	cfg = config_overlay_json(base, json, strlen(json), "zk", &errs);
	assert_non_null(cfg);
	config_free(cfg);
	/* TLS without a client certificate names no key */
	snprintf(json, sizeof(json), SVC("127.0.0.1:1", CURATOR ", \"tls\": {\"verify\": false}"));
	cfg = config_overlay_json(base, json, strlen(json), "zk", &errs);
	assert_non_null(cfg);
	config_free(cfg);

	config_free(base);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * The trunk listener binds with SO_REUSEPORT like the services: a service (of
 * the file or of the overlay) on its address, in any spelling, would take a
 * share of the trunk's connections.
 */
static void test_trunk_listen_clash(void **state)
{
	char dir[] = "/tmp/zklb-test-trk-XXXXXX", yaml[1024], json[512];
	(void)state;
	assert_non_null(mkdtemp(dir));
	make_keypair(dir, "t");
	snprintf(yaml, sizeof(yaml), "zookeeper: {hosts: \"z:2181\", config_path: /zklb/config}\n"
		 "trunk: {listen: \"127.0.0.1:4143\", tls: {ca: %s/t.pem, cert: %s/t.pem, key: %s/t.key}}\n"
		 STATIC_SVC, dir, dir, dir);
	struct config *base = load_ok(yaml);
	snprintf(yaml + strlen(yaml), sizeof(yaml) - strlen(yaml),
		 "  api:\n    listen: \"0.0.0.0:4143\"\n"
		 "    discovery: {type: static, backends: [\"127.0.0.1:9002\"]}\n");
	expect_error(yaml, "t.yaml:8:13: services.api.listen: '0.0.0.0:4143' clashes with trunk.listen "
		     "'127.0.0.1:4143'");
	snprintf(json, sizeof(json), "{\"api\": {\"listen\": \"2130706433:4143\", \"discovery\": "
		 "{\"type\": \"static\", \"backends\": [\"h:1\"]}}}");
	struct config_errors errs = { 0 };
	assert_rejected(config_overlay_json(base, json, strlen(json), "zk", &errs), &errs,
			"zk: services.api.listen: '2130706433:4143' clashes with trunk.listen "
			"'127.0.0.1:4143'");
	config_free(base);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * A tls: file that is not a regular file is refused before anything opens
 * it: opening a FIFO blocks until a writer comes (the control thread, for
 * good), opening a device acts (a watchdog starts its countdown). Here a
 * writer waits on a FIFO named as tls.ca: refused by name, and the writer is
 * still waiting afterwards.
 */
static void test_tls_files_are_regular(void **state)
{
	char dir[] = "/tmp/zklb-test-tlsf-XXXXXX", fifo[96], yaml[512], want[256];
	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/ca.pem", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(open(fifo, O_WRONLY) >= 0 ? 0 : 1);	/* blocks until a reader opens */

	snprintf(yaml, sizeof(yaml), STATIC_SVC "    tls: {ca: %s}\n", fifo);
	snprintf(want, sizeof(want), "t.yaml:5:15: services.web.tls.ca: %s is not a regular file", fifo);
	expect_error(yaml, want);
	int status;
	pid_t done = waitpid(pid, &status, WNOHANG);

	int fd = open(fifo, O_RDONLY | O_NONBLOCK);	/* let the writer through, reap it */
	assert_true(fd >= 0);
	if (done == 0)
		assert_int_equal(waitpid(pid, &status, 0), pid);
	close(fd);
	unlink(fifo);
	rmdir(dir);
	assert_int_equal(done, 0);
}

static void test_reloadable(void **state)
{
	struct config *a = load_ok("zookeeper: {hosts: \"z:1\"}\nworkers: 2\n" STATIC_SVC);
	struct config *b = load_ok("zookeeper: {hosts: \"z:1\"}\nworkers: 2\nlog: {level: debug}\n"
				   "drain_timeout: 1s\n"
				   "services:\n  api: {listen: \"127.0.0.1:1\", discovery: {type: curator, path: /a}}\n");
	struct config *c = load_ok("zookeeper: {hosts: \"z:1\"}\nworkers: 3\n" STATIC_SVC);
	struct config *d = load_ok("zookeeper: {hosts: \"z:2\"}\nworkers: 2\n" STATIC_SVC);
	struct config *e = load_ok("zookeeper: {hosts: \"z:1\"}\nworkers: 2\nadmin: {listen: off}\n" STATIC_SVC);
	char why[64] = "x";
	assert_true(config_reloadable(a, a, why, sizeof(why)));
	assert_string_equal(why, "");
	assert_true(config_reloadable(a, b, why, sizeof(why)));
	assert_false(config_reloadable(a, c, why, sizeof(why)));
	assert_string_equal(why, "workers");
	assert_false(config_reloadable(a, d, why, sizeof(why)));
	assert_string_equal(why, "zookeeper.hosts");
	assert_false(config_reloadable(a, e, why, sizeof(why)));
	assert_string_equal(why, "admin.listen");
	config_free(a);
	config_free(b);
	config_free(c);
	config_free(d);
	config_free(e);
}

static void test_kind_names(void **state)
{
	assert_string_equal(balance_kind_name(BALANCE_ROUND_ROBIN), "round_robin");
	assert_string_equal(discovery_kind_name(DISCOVERY_SERVERSET), "serverset");
	assert_string_equal(check_kind_name(CHECK_NONE), "none");
	assert_string_equal(check_kind_name(CHECK_SEND_EXPECT), "send_expect");
	assert_string_equal(reuse_kind_name(REUSE_HTTP1), "http1");
}

/* The error list alone: messages stay in order, free empties it for reuse. */
static void test_errors_list(void **state)
{
	struct config_errors errs = { 0 };
	config_errors_add(&errs, "%s:%d: first", "a.yaml", 1);
	config_errors_add(&errs, "second");
	assert_int_equal(errs.n, 2);
	assert_string_equal(errs.msgs[0], "a.yaml:1: first");
	assert_string_equal(errs.msgs[1], "second");
	config_errors_free(&errs);
	assert_int_equal(errs.n, 0);
	assert_null(errs.msgs);
	/* A second load reports after what the list already holds. */
	config_errors_add(&errs, "earlier");
	assert_null(load("workers: 0\n", &errs));
	assert_true(errs.n >= 2);
	assert_string_equal(errs.msgs[0], "earlier");
	config_errors_free(&errs);
	config_errors_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_file),
		cmocka_unit_test(test_demo_file),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_sections_without_body),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_admin_and_workers),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_yaml_errors),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_type_errors),
		cmocka_unit_test(test_duration_size_errors),
		cmocka_unit_test(test_range_errors),
		cmocka_unit_test(test_address_errors),
		cmocka_unit_test(test_enum_errors),
		cmocka_unit_test(test_redis_role_check),
		cmocka_unit_test(test_sentinel_discovery),
		cmocka_unit_test(test_zone_and_locality),
		cmocka_unit_test(test_proxy_protocol_excludes_pooling),
		cmocka_unit_test(test_relay),
		cmocka_unit_test(test_required_errors),
		cmocka_unit_test(test_cross_errors),
		cmocka_unit_test(test_misc_errors),
		cmocka_unit_test(test_mode_and_scalars),
		cmocka_unit_test(test_sync_limits_and_owner),
		cmocka_unit_test(test_overlay_policy),
		cmocka_unit_test(test_allow_hostnames),
		cmocka_unit_test(test_yamltree_scalars),
		cmocka_unit_test(test_overlay_good),
		cmocka_unit_test(test_overlay_errors),
		cmocka_unit_test(test_trunk_listen_clash),
		cmocka_unit_test(test_reloadable),
		cmocka_unit_test(test_networks),
		cmocka_unit_test(test_queue_timeout),
		cmocka_unit_test(test_kind_names),
		cmocka_unit_test(test_errors_list),
		cmocka_unit_test(test_announce_payload_class),
		cmocka_unit_test(test_dump),
		cmocka_unit_test(test_zookeeper_auth_file),
		cmocka_unit_test(test_announce_acl),
		cmocka_unit_test(test_zookeeper_tls),
		cmocka_unit_test(test_overlay_policy_files),
		cmocka_unit_test(test_overlay_policy_tls_key),
		cmocka_unit_test(test_tls_files_are_regular),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
