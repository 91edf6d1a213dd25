/*
 * config_keys — the schema of a zklb configuration: one table per section
 * (see schema.h), one key per line with its type, default as written in the
 * file, flags (required, reloadable), the field it fills and a validator
 * (config_values.c's fn_*, or here the ones that apply a nested table:
 * services, announce, sync, render); each section's cross-key finisher
 * (finish_*).
 * config.c applies the top table to a document and checks across sections.
 */
#include "config_keys.h"
#include "config_values.h"
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

/* ---- the schema ------------------------------------------------------------------ */

/* What an S_FN field holds, for schema_diff (see config_reloadable). */
static const enum schema_type as_str = S_STR;
static const enum schema_type as_u32 = S_U32;

static const struct schema_range r_pct = { 0, 100 };
static const struct schema_range r_rise = { 1, 1000 };
static const struct schema_range r_retries = { 0, CONFIG_MAX_RETRIES };
static const struct schema_range r_count = { 0, 1000000 };
static const struct schema_range r_port = { 1, 65535 };
static const struct schema_range r_port0 = { 0, 65535 };
static const struct schema_range r_positive = { 1, UINT64_MAX };
static const struct schema_range r_buffer = { 1024, 1ull << 30 };
static const struct schema_range r_admin_conns = { 1, 10000 };
static const struct schema_range r_children = { 1, 1000000 };
static const struct schema_range r_lookups = { 1, 64 };
static const struct schema_range r_coalesce = { 0, 60000 };

static const struct schema_enum balance_names[] = {
	{ "least_conn", BALANCE_LEAST_CONN }, { "p2c", BALANCE_P2C },
	{ "round_robin", BALANCE_ROUND_ROBIN }, { "random", BALANCE_RANDOM }, { NULL, 0 },
};
static const struct schema_enum discovery_names[] = {
	{ "static", DISCOVERY_STATIC }, { "curator", DISCOVERY_CURATOR },
	{ "serverset", DISCOVERY_SERVERSET }, { "sentinel", DISCOVERY_SENTINEL }, { NULL, 0 },
};
static const struct schema_enum check_names[] = {
	{ "tcp", CHECK_TCP }, { "send_expect", CHECK_SEND_EXPECT }, { "http", CHECK_HTTP },
	{ "redis_role", CHECK_REDIS_ROLE }, { "mysql_primary", CHECK_MYSQL_PRIMARY }, { NULL, 0 },
};
static const struct schema_enum redis_role_names[] = {
	{ "master", REDIS_ROLE_MASTER }, { "replica", REDIS_ROLE_REPLICA }, { NULL, 0 },
};
static const struct schema_enum reuse_names[] = {
	{ "none", REUSE_NONE }, { "http1", REUSE_HTTP1 }, { "redis", REUSE_REDIS },
	{ "memcached", REUSE_MEMCACHED }, { NULL, 0 },
};
static const struct schema_enum on_delete_names[] = {
	{ "keep", SYNC_DELETE_KEEP }, { "remove", SYNC_DELETE_REMOVE }, { NULL, 0 },
};
static const struct schema_enum render_set_names[] = {
	{ "routable", RENDER_ROUTABLE }, { "all", RENDER_ALL }, { NULL, 0 },
};
static const struct schema_enum acl_names[] = {
	{ "auto", ANNOUNCE_ACL_AUTO }, { "open", ANNOUNCE_ACL_OPEN },
	{ "creator", ANNOUNCE_ACL_CREATOR }, { NULL, 0 },
};
static const struct schema_enum level_names[] = {
	{ "error", LOG_ERROR }, { "warn", LOG_WARN }, { "info", LOG_INFO },
	{ "debug", LOG_DEBUG }, { NULL, 0 },
};
static const struct schema_enum format_names[] = {
	{ "text", LOG_FORMAT_TEXT }, { "json", LOG_FORMAT_JSON }, { NULL, 0 },
};

static void fn_services(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
static void fn_announce(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
static void fn_sync(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
static void fn_render(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);

static void finish_discovery(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_check(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_health(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_pool(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_tls(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_sync(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_render(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_announce(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_zookeeper(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_trunk_tls(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);
static void finish_trunk(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base);

#define SECTION(keys, finish) { keys, ARRAY_SIZE(keys), finish }
#define AT(st, field) offsetof(struct st, field)

static const struct schema_section zk_tls_section;	/* below, with the services' tls keys */

/* name                 type       default          flags            field                                  arg                validator */
static const struct schema_key zookeeper_keys[] = {
	{ "hosts",           S_STR,     NULL,            S_REQ,           AT(zookeeper_conf, hosts),             NULL,              fn_zk_hosts },
	{ "session_timeout", S_DUR,     "10s",           0,               AT(zookeeper_conf, session_timeout_ms), &r_positive,      NULL },
	{ "auth",            S_STR,     NULL,            S_SECRET,        AT(zookeeper_conf, auth),              NULL,              fn_zk_auth },
	{ "auth_file",       S_STR,     NULL,            0,               AT(zookeeper_conf, auth_file),         NULL,              fn_abs_path },
	{ "tls",             S_SECTION, NULL,            0,               AT(zookeeper_conf, tls),               &zk_tls_section,   NULL },
	{ "config_path",     S_ZPATH,   NULL,            0,               AT(zookeeper_conf, config_path),       NULL,              NULL },
};
static const struct schema_section zookeeper_section = SECTION(zookeeper_keys, finish_zookeeper);

/* admin: and log: have no struct of their own; their keys land in struct config. */
static const struct schema_key admin_keys[] = {
	{ "listen",          S_FN,      "127.0.0.1:9901", 0,              AT(config, admin_listen),              &as_str,           fn_admin_listen },
	{ "token_file",      S_STR,     NULL,            0,               AT(config, admin_token_file),          NULL,              fn_token_file },
	{ "max_connections", S_U32,     "64",            0,               AT(config, admin_max_connections),     &r_admin_conns,    NULL },
	{ "request_timeout", S_DUR,     "5s",            0,               AT(config, admin_request_timeout_ms),  &r_positive,       NULL },
	{ "metrics_cache",   S_DUR,     "1s",            0,               AT(config, admin_metrics_cache_ms),    NULL,              NULL },
};
static const struct schema_section admin_section = SECTION(admin_keys, NULL);

static const struct schema_key log_keys[] = {
	{ "level",           S_ENUM,    "info",          S_RELOAD,        AT(config, log_level),                 level_names,       NULL },
	{ "format",          S_ENUM,    "text",          S_RELOAD,        AT(config, log_format),                format_names,      NULL },
	{ "access",          S_STR,     NULL,            0,               AT(config, access_log),                NULL,              fn_access_log },
	{ "access_format",   S_ENUM,    "text",          0,               AT(config, access_log_format),         format_names,      NULL },
};
static const struct schema_section log_section = SECTION(log_keys, NULL);

static const struct schema_key discovery_keys[] = {
	{ "type",            S_ENUM,    NULL,            S_REQ|S_RELOAD,  AT(discovery_conf, type),              discovery_names,   NULL },
	{ "path",            S_ZPATH,   NULL,            S_RELOAD,        AT(discovery_conf, path),              NULL,              NULL },
	{ "keep_last_known", S_BOOL,    "true",          S_RELOAD,        AT(discovery_conf, keep_last_known),   NULL,              NULL },
	{ "collapse_guard",  S_RATIO,   "0.5",           S_RELOAD,        AT(discovery_conf, collapse_guard),    NULL,              NULL },
	{ "collapse_hold",   S_DUR,     "30s",           S_RELOAD,        AT(discovery_conf, collapse_hold_ms),  NULL,              NULL },
	{ "coalesce",        S_DUR,     "200ms",         S_RELOAD,        AT(discovery_conf, coalesce_ms),       NULL,              NULL },
	{ "resync_jitter",   S_DUR,     "5s",            S_RELOAD,        AT(discovery_conf, resync_jitter_ms),  NULL,              NULL },
	{ "watch_data",      S_BOOL,    "true",          S_RELOAD,        AT(discovery_conf, watch_data),        NULL,              NULL },
	{ "backends",        S_FN,      NULL,            S_RELOAD,        0,                                     NULL,              fn_backends },
	{ "allow_hostnames", S_FN,      "auto",          S_RELOAD,        AT(discovery_conf, hostnames),         NULL,              fn_hostnames },
	{ "max_lookups",     S_U32,     "4",             S_RELOAD,        AT(discovery_conf, max_lookups),       &r_lookups,        NULL },
	{ "lookup_timeout",  S_DUR,     "5s",            S_RELOAD,        AT(discovery_conf, lookup_timeout_ms), &r_positive,       NULL },
	{ "sentinels",       S_FN,      NULL,            S_RELOAD,        0,                                     NULL,              fn_sentinels },
	{ "master_name",     S_STR,     NULL,            S_RELOAD,        AT(discovery_conf, master_name),       NULL,              fn_nonempty },
	{ "close_grace",     S_DUR,     "2s",            S_RELOAD,        AT(discovery_conf, close_grace_ms),    NULL,              NULL },
	{ "query_timeout",   S_DUR,     "500ms",         S_RELOAD,        AT(discovery_conf, query_timeout_ms),  &r_positive,       NULL },
	{ "password_file",   S_STR,     NULL,            S_RELOAD,        AT(discovery_conf, password_file),     NULL,              fn_secret_file },
};
static const struct schema_section discovery_section = SECTION(discovery_keys, finish_discovery);

static const struct schema_key check_keys[] = {
	{ "type",            S_ENUM,    "tcp",           S_RELOAD,        AT(check_conf, type),                  check_names,       NULL },
	{ "interval",        S_DUR,     "2s",            S_RELOAD,        AT(check_conf, interval_ms),           &r_positive,       NULL },
	{ "timeout",         S_DUR,     "500ms",         S_RELOAD,        AT(check_conf, timeout_ms),            &r_positive,       NULL },
	{ "rise",            S_U32,     "2",             S_RELOAD,        AT(check_conf, rise),                  &r_rise,           NULL },
	{ "fall",            S_U32,     "3",             S_RELOAD,        AT(check_conf, fall),                  &r_rise,           NULL },
	{ "send",            S_FN,      NULL,            S_RELOAD,        AT(check_conf, send),                  NULL,              fn_bytes },
	{ "expect",          S_FN,      NULL,            S_RELOAD,        AT(check_conf, expect),                NULL,              fn_bytes },
	{ "path",            S_STR,     "/",             S_RELOAD,        AT(check_conf, path),                  NULL,              fn_http_path },
	{ "role",            S_ENUM,    "master",        S_RELOAD,        AT(check_conf, role),                  redis_role_names,  NULL },
	{ "password_file",   S_STR,     NULL,            S_RELOAD,        AT(check_conf, password_file),         NULL,              fn_secret_file },
	{ "user",            S_STR,     NULL,            S_RELOAD,        AT(check_conf, user),                  NULL,              fn_mysql_user },
};
static const struct schema_section check_section = SECTION(check_keys, finish_check);

static const struct schema_key health_keys[] = {
	{ "failures_to_eject", S_U32,   "3",             S_RELOAD,        AT(health_conf, failures_to_eject),    &r_rise,           NULL },
	{ "base_ejection",   S_DUR,     "5s",            S_RELOAD,        AT(health_conf, base_ejection_ms),     &r_positive,       NULL },
	{ "max_ejection",    S_DUR,     "5m",            S_RELOAD,        AT(health_conf, max_ejection_ms),      &r_positive,       NULL },
	{ "max_ejected_percent", S_U32, "50",            S_RELOAD,        AT(health_conf, max_ejected_percent),  &r_pct,            NULL },
	{ "panic_threshold", S_U32,     "50",            S_RELOAD,        AT(health_conf, panic_threshold),      &r_pct,            NULL },
	{ "check",           S_SECTION, NULL,            S_RELOAD,        AT(health_conf, check),                &check_section,    NULL },
};
static const struct schema_section health_section = SECTION(health_keys, finish_health);

static const struct schema_enum proxy_protocol_names[] = {
	{ "none", PROXY_PROTOCOL_NONE }, { "v2", PROXY_PROTOCOL_V2 }, { NULL, 0 },
};
static const struct schema_enum via_names[] = {
	{ "direct", VIA_DIRECT }, { "trunk", VIA_TRUNK }, { "auto", VIA_AUTO }, { NULL, 0 },
};
static const struct schema_enum relay_names[] = {
	{ "user", RELAY_MODE_USER }, { "kernel", RELAY_MODE_KERNEL }, { "auto", RELAY_MODE_AUTO },
	{ NULL, 0 },
};
static const struct schema_enum locality_names[] = {
	{ "none", LOCALITY_NONE }, { "zone", LOCALITY_ZONE }, { NULL, 0 },
};
static const struct schema_key locality_keys[] = {
	{ "prefer",          S_ENUM,    "none",          S_RELOAD,        AT(locality_conf, prefer),             locality_names,    NULL },
	{ "zone_key",        S_STR,     "zone",          S_RELOAD,        AT(locality_conf, zone_key),           NULL,              fn_nonempty },
	{ "min_healthy_percent", S_U32, "70",            S_RELOAD,        AT(locality_conf, min_healthy_percent), &r_pct,           NULL },
};
static const struct schema_section locality_section = SECTION(locality_keys, NULL);

static const struct schema_key pool_keys[] = {
	{ "prewarm",         S_U32,     "0",             S_RELOAD,        AT(pool_conf, prewarm),                &r_count,          NULL },
	{ "reuse",           S_ENUM,    "none",          S_RELOAD,        AT(pool_conf, reuse),                  reuse_names,       NULL },
	{ "max_idle",        S_U32,     "32",            S_RELOAD,        AT(pool_conf, max_idle),               &r_count,          NULL },
	{ "idle_timeout",    S_DUR,     "30s",           S_RELOAD,        AT(pool_conf, idle_timeout_ms),        NULL,              NULL },
};
static const struct schema_section pool_section = SECTION(pool_keys, finish_pool);

static const struct schema_key tls_keys[] = {
	{ "enabled",         S_BOOL,    "true",          S_RELOAD,        AT(tls_conf, enabled),                 NULL,              NULL },
	{ "ca",              S_STR,     NULL,            S_RELOAD,        AT(tls_conf, ca),                      NULL,              fn_nonempty },
	{ "cert",            S_STR,     NULL,            S_RELOAD,        AT(tls_conf, cert),                    NULL,              fn_nonempty },
	{ "key",             S_STR,     NULL,            S_RELOAD|S_SECRET, AT(tls_conf, key),                   NULL,              fn_nonempty },
	{ "verify",          S_BOOL,    "true",          S_RELOAD,        AT(tls_conf, verify),                  NULL,              NULL },
	{ "server_name",     S_STR,     NULL,            S_RELOAD,        AT(tls_conf, server_name),             NULL,              fn_nonempty },
	{ "min_version",     S_STR,     "1.2",           S_RELOAD,        AT(tls_conf, min_version),             NULL,              fn_tls_version },
	{ "ciphers",         S_STR,     NULL,            S_RELOAD,        AT(tls_conf, ciphers),                 NULL,              fn_nonempty },
	{ "session_reuse",   S_BOOL,    "true",          S_RELOAD,        AT(tls_conf, session_reuse),           NULL,              NULL },
};
static const struct schema_section tls_section = SECTION(tls_keys, finish_tls);
/* The same keys for zookeeper.tls; a section of its own so each is documented where it is. */
static const struct schema_section zk_tls_section = SECTION(tls_keys, finish_tls);

static const struct schema_key service_keys[] = {
	{ "listen",          S_FN,      NULL,            S_REQ|S_RELOAD,  AT(service_conf, listen),              NULL,              fn_listen },
	{ "discovery",       S_SECTION, NULL,            S_REQ|S_RELOAD,  AT(service_conf, discovery),           &discovery_section, NULL },
	{ "balance",         S_ENUM,    "least_conn",    S_RELOAD,        AT(service_conf, balance),             balance_names,     NULL },
	{ "slow_start",      S_DUR,     "0s",            S_RELOAD,        AT(service_conf, slow_start_ms),       NULL,              NULL },
	{ "connect_timeout", S_DUR,     "1s",            S_RELOAD,        AT(service_conf, connect_timeout_ms),  &r_positive,       NULL },
	{ "idle_timeout",    S_DUR,     "5m",            S_RELOAD,        AT(service_conf, idle_timeout_ms),     NULL,              NULL },
	{ "max_buffer",      S_SIZE,    "64k",           S_RELOAD,        AT(service_conf, max_buffer),          &r_buffer,         NULL },
	{ "retries",         S_U32,     "2",             S_RELOAD,        AT(service_conf, retries),             &r_retries,        NULL },
	{ "proxy_protocol",  S_ENUM,    "none",          S_RELOAD,        AT(service_conf, proxy_protocol),      proxy_protocol_names, NULL },
	{ "via",             S_ENUM,    "direct",        S_RELOAD,        AT(service_conf, via),                 via_names,         NULL },
	{ "relay",           S_ENUM,    NULL,            S_RELOAD,        AT(service_conf, relay),               relay_names,       NULL },
	{ "max_connections_per_instance", S_U32, "0",    S_RELOAD,        AT(service_conf, max_connections_per_instance), &r_count, NULL },
	{ "health",          S_SECTION, NULL,            S_RELOAD,        AT(service_conf, health),              &health_section,   NULL },
	{ "pool",            S_SECTION, NULL,            S_RELOAD,        AT(service_conf, pool),                &pool_section,     NULL },
	{ "tls",             S_SECTION, NULL,            S_RELOAD,        AT(service_conf, tls),                 &tls_section,      NULL },
	{ "max_connections", S_U32,     "0",             S_RELOAD,        AT(service_conf, max_connections),     &r_count,          NULL },
	{ "queue_timeout",   S_FN,      NULL,            S_RELOAD,        AT(service_conf, queue_timeout),       NULL,              fn_queue_timeout },
	{ "queue_max",       S_U32,     "1024",          S_RELOAD,        AT(service_conf, queue_max),           &r_count,          NULL },
	{ "allowed_networks", S_FN,     NULL,            S_RELOAD,        AT(service_conf, allowed_networks),    NULL,              fn_networks },
	{ "denied_networks", S_FN,      NULL,            S_RELOAD,        AT(service_conf, denied_networks),     NULL,              fn_networks },
	{ "locality",        S_SECTION, NULL,            S_RELOAD,        AT(service_conf, locality),            &locality_section, NULL },
};
static const struct schema_section service_section = SECTION(service_keys, NULL);

static const struct schema_key announce_keys[] = {
	{ "service",         S_STR,     NULL,            S_REQ|S_RELOAD,  AT(announce_conf, service),            NULL,              fn_nonempty },
	{ "base_path",       S_ZPATH,   "/services",     S_RELOAD,        AT(announce_conf, base_path),          NULL,              NULL },
	{ "address",         S_STR,     "auto",          S_RELOAD,        AT(announce_conf, address),            NULL,              fn_nonempty },
	{ "port",            S_PORT,    NULL,            S_REQ|S_RELOAD,  AT(announce_conf, port),               &r_port,           NULL },
	{ "ssl_port",        S_PORT,    "0",             S_RELOAD,        AT(announce_conf, ssl_port),           &r_port0,          NULL },
	{ "payload",         S_FN,      NULL,            S_RELOAD,        AT(announce_conf, payload),            NULL,              fn_payload },
	{ "payload_class",   S_STR,     NULL,            S_RELOAD,        AT(announce_conf, payload_class),      NULL,              fn_java_class },
	{ "check",           S_SECTION, NULL,            S_RELOAD,        AT(announce_conf, check),              &check_section,    NULL },
	{ "acl",             S_ENUM,    "auto",          S_RELOAD,        AT(announce_conf, acl),                acl_names,         NULL },
};
static const struct schema_section announce_section = SECTION(announce_keys, finish_announce);

static const struct schema_key sync_keys[] = {
	{ "path",            S_ZPATH,   NULL,            S_REQ|S_RELOAD,  AT(sync_conf, path),                   NULL,              NULL },
	{ "file",            S_STR,     NULL,            S_RELOAD,        AT(sync_conf, file),                   NULL,              fn_nonempty },
	{ "children",        S_BOOL,    "false",         S_RELOAD,        AT(sync_conf, children),               NULL,              NULL },
	{ "dir",             S_STR,     NULL,            S_RELOAD,        AT(sync_conf, dir),                    NULL,              fn_nonempty },
	{ "mode",            S_FN,      "0640",          S_RELOAD,        AT(sync_conf, mode),                   NULL,              fn_mode },
	{ "on_change",       S_STR,     NULL,            S_RELOAD,        AT(sync_conf, on_change),              NULL,              fn_nonempty },
	{ "on_change_timeout", S_DUR,   "30s",           S_RELOAD,        AT(sync_conf, on_change_timeout_ms),   &r_positive,       NULL },
	{ "on_delete",       S_ENUM,    "keep",          S_RELOAD,        AT(sync_conf, on_delete),              on_delete_names,   NULL },
	{ "max_size",        S_SIZE,    "1m",            S_RELOAD,        AT(sync_conf, max_size),               &r_positive,       NULL },
	{ "names",           S_FN,      NULL,            S_RELOAD,        AT(sync_conf, names),                  NULL,              fn_sync_names },
	{ "max_children",    S_U32,     "1000",          S_RELOAD,        AT(sync_conf, max_children),           &r_children,       NULL },
	{ "max_total_size",  S_SIZE,    "64m",           S_RELOAD,        AT(sync_conf, max_total_size),         &r_positive,       NULL },
	{ "owner",           S_STR,     NULL,            S_RELOAD,        AT(sync_conf, owner),                  NULL,              fn_nonempty },
	{ "group",           S_STR,     NULL,            S_RELOAD,        AT(sync_conf, group),                  NULL,              fn_nonempty },
	{ "coalesce",        S_DUR,     "200ms",         S_RELOAD,        AT(sync_conf, coalesce_ms),            &r_coalesce,       NULL },
};
static const struct schema_section sync_section = SECTION(sync_keys, finish_sync);

static const struct schema_key overlay_keys[] = {
	{ "replace_file_services", S_BOOL, "false",      S_RELOAD,        AT(overlay_policy_conf, replace_file_services), NULL,     NULL },
	{ "listen_networks", S_FN,      "127.0.0.0/8, ::1", S_RELOAD,     AT(overlay_policy_conf, listen_networks), NULL,           fn_overlay_networks },
	{ "listen_dir",      S_STR,     NULL,            S_RELOAD,        AT(overlay_policy_conf, listen_dir),   NULL,              fn_abs_dir },
	{ "allowed_networks", S_FN,     NULL,            S_RELOAD,        AT(overlay_policy_conf, allowed_networks), NULL,          fn_overlay_networks },
	{ "denied_networks", S_FN,      "reserved, 127.0.0.0/8, ::1", S_RELOAD, AT(overlay_policy_conf, denied_networks), NULL,     fn_overlay_networks },
	{ "check_payloads",  S_BOOL,    "false",         S_RELOAD,        AT(overlay_policy_conf, check_payloads), NULL,            NULL },
	{ "min_check_interval", S_DUR,  "1s",            S_RELOAD,        AT(overlay_policy_conf, min_check_interval_ms), NULL,     NULL },
	{ "max_prewarm",     S_U32,     "4",             S_RELOAD,        AT(overlay_policy_conf, max_prewarm),  &r_count,          NULL },
	{ "max_idle",        S_U32,     "64",            S_RELOAD,        AT(overlay_policy_conf, max_idle),     &r_count,          NULL },
	{ "max_buffer",      S_SIZE,    "1m",            S_RELOAD,        AT(overlay_policy_conf, max_buffer),   &r_buffer,         NULL },
};
static const struct schema_section overlay_section = SECTION(overlay_keys, NULL);
static const struct schema_key render_wait_keys[] = {
	{ "min",             S_DUR,     "500ms",         S_RELOAD,        AT(render_wait_conf, min_ms),          NULL,              NULL },
	{ "max",             S_DUR,     "5s",            S_RELOAD,        AT(render_wait_conf, max_ms),          &r_positive,       NULL },
};
static const struct schema_section render_wait_section = SECTION(render_wait_keys, NULL);

static const struct schema_key render_keys[] = {
	{ "service",         S_STR,     NULL,            S_REQ|S_RELOAD,  AT(render_conf, service),              NULL,              fn_nonempty },
	{ "file",            S_STR,     NULL,            S_REQ|S_RELOAD,  AT(render_conf, file),                 NULL,              fn_abs_path },
	{ "format",          S_STR,     NULL,            S_RELOAD,        AT(render_conf, format),               NULL,              fn_nonempty },
	{ "template",        S_STR,     NULL,            S_RELOAD,        AT(render_conf, template_path),        NULL,              fn_nonempty },
	{ "instances",       S_ENUM,    "routable",      S_RELOAD,        AT(render_conf, instances),            render_set_names,  NULL },
	{ "wait",            S_SECTION, NULL,            S_RELOAD,        AT(render_conf, wait),                 &render_wait_section, NULL },
	{ "min_instances",   S_U32,     "1",             S_RELOAD,        AT(render_conf, min_instances),        &r_count,          NULL },
	{ "check_command",   S_STR,     NULL,            S_RELOAD,        AT(render_conf, check_command),        NULL,              fn_nonempty },
	{ "on_change",       S_STR,     NULL,            S_RELOAD,        AT(render_conf, on_change),            NULL,              fn_nonempty },
	{ "on_change_timeout", S_DUR,   "30s",           S_RELOAD,        AT(render_conf, on_change_timeout_ms), &r_positive,       NULL },
	{ "mode",            S_FN,      "0644",          S_RELOAD,        AT(render_conf, mode),                 NULL,              fn_mode },
};
static const struct schema_section render_section = SECTION(render_keys, finish_render);

/* The trunk's tls: is the same keys read as the accepting side (no server_name, no client cache). */
static const struct schema_key trunk_tls_keys[] = {
	{ "ca",              S_STR,     NULL,            S_REQ,           AT(tls_conf, ca),                      NULL,              fn_nonempty },
	{ "cert",            S_STR,     NULL,            S_REQ,           AT(tls_conf, cert),                    NULL,              fn_nonempty },
	{ "key",             S_STR,     NULL,            S_REQ,           AT(tls_conf, key),                     NULL,              fn_nonempty },
	{ "verify",          S_BOOL,    "true",          0,               AT(tls_conf, verify),                  NULL,              NULL },
	{ "min_version",     S_STR,     "1.3",           0,               AT(tls_conf, min_version),             NULL,              fn_tls_version },
};
static const struct schema_section trunk_tls_section = SECTION(trunk_tls_keys, finish_trunk_tls);

static const struct schema_range r_window = { 65535, (1u << 31) - 1 };
static const struct schema_range r_streams = { 1, 65536 };
static const struct schema_range r_peer_conns = { 1, 16 };

static const struct schema_key trunk_keys[] = {
	{ "listen",          S_FN,      NULL,            S_REQ,           AT(trunk_conf, listen),                &as_str,           fn_trunk_listen },
	{ "tls",             S_SECTION, NULL,            S_REQ,           AT(trunk_conf, tls),                   &trunk_tls_section, NULL },
	{ "stream_window",   S_SIZE,    "1m",            0,               AT(trunk_conf, stream_window),         &r_window,         NULL },
	{ "connection_window", S_SIZE,  "16m",           0,               AT(trunk_conf, connection_window),     &r_window,         NULL },
	{ "max_streams",     S_U32,     "1024",          0,               AT(trunk_conf, max_streams),           &r_streams,        NULL },
	{ "connect_timeout", S_DUR,     "1s",            0,               AT(trunk_conf, connect_timeout_ms),    &r_positive,       NULL },
	{ "idle_timeout",    S_DUR,     "10m",           0,               AT(trunk_conf, idle_timeout_ms),       NULL,              NULL },
	{ "connections_per_peer", S_U32, "1",            0,               AT(trunk_conf, connections_per_peer),  &r_peer_conns,     NULL },
};
static const struct schema_section trunk_section = SECTION(trunk_keys, finish_trunk);

/* The top level. S_FN and S_SECTION keys at offset 0 receive the whole struct config. */
static const struct schema_key top_keys[] = {
	{ "zookeeper",       S_SECTION, NULL,            0,               AT(config, zookeeper),                 &zookeeper_section, NULL },
	{ "cache_dir",       S_STR,     NULL,            0,               AT(config, cache_dir),                 NULL,              fn_nonempty },
	{ "workers",         S_FN,      "auto",          0,               AT(config, workers),                   &as_u32,           fn_workers },
	{ "drain_timeout",   S_DUR,     "30s",           S_RELOAD,        AT(config, drain_timeout_ms),          NULL,              NULL },
	{ "zone",            S_STR,     NULL,            S_RELOAD,        AT(config, zone),                      NULL,              fn_zone },
	{ "zone_file",       S_FN,      NULL,            S_RELOAD,        AT(config, zone),                      NULL,              fn_zone_file },
	{ "admin",           S_SECTION, NULL,            0,               0,                                     &admin_section,    NULL },
	{ "log",             S_SECTION, NULL,            S_RELOAD,        0,                                     &log_section,      NULL },
	{ "services",        S_FN,      NULL,            S_RELOAD,        0,                                     NULL,              fn_services },
	{ "announce",        S_FN,      NULL,            S_RELOAD,        0,                                     NULL,              fn_announce },
	{ "sync",            S_FN,      NULL,            S_RELOAD,        0,                                     NULL,              fn_sync },
	{ "max_connections", S_U32,     "0",             S_RELOAD,        AT(config, max_connections),           &r_count,          NULL },
	{ "queue_timeout",   S_FN,      "connect_timeout", S_RELOAD,      AT(config, queue_timeout),             NULL,              fn_queue_timeout },
	{ "max_buffer_memory", S_SIZE,  "1g",            S_RELOAD,        AT(config, max_buffer_memory),         NULL,              NULL },
	{ "relay",           S_ENUM,    "user",          S_RELOAD,        AT(config, relay),                     relay_names,       NULL },
	{ "allowed_networks", S_FN,     "[]",            S_RELOAD,        AT(config, allowed_networks),          NULL,              fn_networks },
	{ "denied_networks", S_FN,      "[reserved]",    S_RELOAD,        AT(config, denied_networks),           NULL,              fn_networks },
	{ "overlay",         S_SECTION, NULL,            S_RELOAD,        AT(config, overlay),                   &overlay_section,  NULL },
	{ "render",          S_FN,      NULL,            S_RELOAD,        0,                                     NULL,              fn_render },
	{ "trunk",           S_SECTION, NULL,            0,               AT(config, trunk),                     &trunk_section,    NULL },
};
static const struct schema_section top_section = SECTION(top_keys, NULL);

/* ---- validators ---------------------------------------------------------------- */

#define ZK_AUTH_FILE_MAX 4096		/* bytes; a digest line is far shorter */

/*
 * auth_file holds what auth would say, so the YAML can stay world-readable:
 * the file must be a regular file nobody but its owner can read (the rule of
 * TLS keys), and it replaces auth, which it excludes. Trailing white space
 * (the newline an editor adds) is not part of the secret. The secret never
 * appears in a message.
 */
static void finish_zookeeper(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct zookeeper_conf *z = base;
	struct schema_path fp = { p, "auth_file", 0, obj };
	if (!z->auth_file)
		return;
	if (z->auth) {
		schema_error(v, &fp, true, "auth and auth_file exclude each other; keep one");
		return;
	}
	int fd = open(z->auth_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		schema_error(v, &fp, false, "cannot read %s: %s", z->auth_file,
			     fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return;
	}
	if (tls_key_mode_open(st.st_mode)) {
		schema_error(v, &fp, false, "%s is readable by group or other (mode %04o); chmod 600 it",
			     z->auth_file, (unsigned)(st.st_mode & 07777));
		close(fd);
		return;
	}
	char buf[ZK_AUTH_FILE_MAX + 1];
	size_t n = fd_read_full(fd, buf, sizeof(buf));
	close(fd);
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	const char *colon = strchr(buf, ':');
	if (n > ZK_AUTH_FILE_MAX - 1 || strlen(buf) != n || !colon || colon == buf || !colon[1])
		schema_error(v, &fp, false, "%s must hold one line scheme:credentials, e.g. "
			     "digest:user:secret", z->auth_file);
	else
		z->auth = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
}

static void finish_discovery(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct discovery_conf *d = base;
	/*
	 * auto: Curator's ServiceInstanceBuilder writes the host's IP address,
	 * so a name in a Curator node was written by hand or by someone hostile;
	 * ServerSets (Finagle, Aurora) announce host names as a matter of course;
	 * the file's static backends are the operator's own.
	 */
	d->allow_hostnames = d->hostnames == DISCOVERY_HOSTNAMES_YES ||
			     (d->hostnames == DISCOVERY_HOSTNAMES_AUTO && d->type != DISCOVERY_CURATOR);
	if (!obj || !schema_has(obj, "type"))
		return;
	static const char *const sentinel_only[] = {
		"sentinels", "master_name", "close_grace", "query_timeout", "password_file",
	};
	for (size_t i = 0; d->type != DISCOVERY_SENTINEL && i < ARRAY_SIZE(sentinel_only); i++) {
		struct schema_path kp = { p, sentinel_only[i], 0, obj };
		if (schema_has(obj, sentinel_only[i]))
			schema_error(v, &kp, true, "only used with type sentinel");
	}
	if (d->type == DISCOVERY_STATIC) {
		if (schema_has(obj, "path")) {
			struct schema_path kp = { p, "path", 0, obj };
			schema_error(v, &kp, true, "only used with type curator or serverset");
		}
		if (!schema_has(obj, "backends")) {
			struct schema_path kp = { p, "backends", 0, obj };
			schema_error(v, &kp, true, "required key is missing (type static)");
		}
	} else if (d->type == DISCOVERY_SENTINEL) {
		static const char *const refused[] = { "path", "backends" };
		static const char *const required[] = { "sentinels", "master_name" };
		for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
			struct schema_path kp = { p, refused[i], 0, obj };
			if (schema_has(obj, refused[i]))
				schema_error(v, &kp, true, "not used with type sentinel");
		}
		for (size_t i = 0; i < ARRAY_SIZE(required); i++) {
			struct schema_path kp = { p, required[i], 0, obj };
			if (!schema_has(obj, required[i]))
				schema_error(v, &kp, true, "required key is missing (type sentinel)");
		}
	} else {
		if (schema_has(obj, "backends")) {
			struct schema_path kp = { p, "backends", 0, obj };
			schema_error(v, &kp, true, "only used with type static");
		}
		if (!schema_has(obj, "path")) {
			struct schema_path kp = { p, "path", 0, obj };
			schema_error(v, &kp, true, "required key is missing (type %s)",
			     discovery_kind_name(d->type));
		}
	}
}

static void finish_check(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct check_conf *c = base;
	if (!obj)
		return;
	static const struct { const char *key; enum check_kind kind; } only[] = {
		{ "send", CHECK_SEND_EXPECT }, { "expect", CHECK_SEND_EXPECT }, { "path", CHECK_HTTP },
		{ "role", CHECK_REDIS_ROLE }, { "user", CHECK_MYSQL_PRIMARY },
	};
	for (size_t i = 0; i < ARRAY_SIZE(only); i++) {
		if (schema_has(obj, only[i].key) && c->type != only[i].kind) {
			struct schema_path kp = { p, only[i].key, 0, obj };
			schema_error(v, &kp, true, "only used with type %s", check_kind_name(only[i].kind));
		}
	}
	if (schema_has(obj, "password_file") && c->type != CHECK_REDIS_ROLE &&
	    c->type != CHECK_MYSQL_PRIMARY) {
		struct schema_path kp = { p, "password_file", 0, obj };
		schema_error(v, &kp, true, "only used with type redis_role or mysql_primary");
	}
	if (c->type == CHECK_MYSQL_PRIMARY && !schema_has(obj, "user")) {
		struct schema_path kp = { p, "user", 0, obj };
		schema_error(v, &kp, true, "required key is missing (type mysql_primary)");
	}
	if (c->type == CHECK_SEND_EXPECT && !schema_has(obj, "expect")) {
		struct schema_path kp = { p, "expect", 0, obj };
		schema_error(v, &kp, true, "required key is missing (type send_expect)");
	}
}

static void finish_health(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct health_conf *h = base;
	if (!schema_has(obj, "check"))
		h->check.type = CHECK_NONE;
	if (h->max_ejection_ms < h->base_ejection_ms) {
		struct schema_path kp = { p, "max_ejection", 0, obj };
		schema_error(v, &kp, !schema_has(obj, "max_ejection"), "must not be shorter than base_ejection");
	}
}

static void finish_pool(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct pool_conf *pc = base;
	if (pc->prewarm > pc->max_idle) {
		struct schema_path kp = { p, "prewarm", 0, obj };
		schema_error(v, &kp, false, "%u exceeds max_idle (%u)", pc->prewarm, pc->max_idle);
	}
}

/*
 * The section is usable only if its files load: they are loaded here, so
 * `zklb check` proves it and every reload re-reads them; the context built
 * is what the service's connections use.
 */
static void finish_tls(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct tls_conf *t = base;
	/* A section written with enabled: false keeps its keys but is off. */
	t->enabled = obj != NULL && t->enabled;
	if (!t->enabled)
		return;
	if (!t->cert != !t->key) {
		struct schema_path kp = { p, t->cert ? "cert" : "key", 0, obj };
		schema_error(v, &kp, true, "cert and key go together");
		return;
	}
	bool ok = tls_file_ok(v, p, obj, "ca", t->ca);
	ok = tls_file_ok(v, p, obj, "cert", t->cert) && ok;
	ok = tls_file_ok(v, p, obj, "key", t->key) && ok;
	if (!ok)
		return;
	struct stat st;
	if (t->key && stat(t->key, &st) == 0 && tls_key_mode_open(st.st_mode)) {
		struct schema_path kp = { p, "key", 0, obj };
		schema_warn(v, &kp, "%s is readable by group or other (mode %04o); chmod 600 it",
			    t->key, (unsigned)(st.st_mode & 07777));
	}
	char err[400];
	const char *bad = NULL;
	t->ctx = tls_ctx_new(t, &bad, err, sizeof(err));
	if (!t->ctx) {
		struct schema_path kp = { p, bad, 0, obj };
		schema_error(v, bad && *bad && schema_has(obj, bad) ? &kp : p, false, "%s", err);
	}
}

/* The trunk's certificate and CA load as a server context, so `zklb check` proves them. */
static void finish_trunk_tls(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct tls_conf *t = base;
	t->enabled = true;
	if (!t->cert || !t->key || !t->ca)
		return;		/* S_REQ said so */
	bool ok = tls_file_ok(v, p, obj, "ca", t->ca);
	ok = tls_file_ok(v, p, obj, "cert", t->cert) && ok;
	ok = tls_file_ok(v, p, obj, "key", t->key) && ok;
	if (!ok)
		return;
	char err[400];
	const char *bad = NULL;
	t->ctx = tls_ctx_new_server(t, "h2", &bad, err, sizeof(err));
	if (!t->ctx) {
		struct schema_path kp = { p, bad, 0, obj };
		schema_error(v, bad && *bad && schema_has(obj, bad) ? &kp : p, false, "%s", err);
	}
}

static void finish_trunk(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct trunk_conf *t = base;
	if (obj && t->connection_window < t->stream_window) {
		struct schema_path kp = { p, "connection_window", 0, obj };
		schema_error(v, &kp, false, "%" PRIu64 " is below stream_window (%" PRIu64 ")",
			     t->connection_window, t->stream_window);
	}
}

static void finish_sync(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct sync_conf *s = base;
	if (!obj)
		return;
	const char *need = s->children ? "dir" : "file";
	const char *other = s->children ? "file" : "dir";
	if (!schema_has(obj, need)) {
		struct schema_path kp = { p, need, 0, obj };
		schema_error(v, &kp, true, "required key is missing%s", s->children ? " (children: true)" : "");
	}
	if (schema_has(obj, other)) {
		struct schema_path kp = { p, other, 0, obj };
		schema_error(v, &kp, true, s->children ? "not used with children: true (use dir)"
					       : "only used with children: true");
	}
	static const char *const children_only[] = { "names", "max_children", "max_total_size" };
	for (size_t i = 0; !s->children && i < ARRAY_SIZE(children_only); i++) {
		if (schema_has(obj, children_only[i])) {
			struct schema_path kp = { p, children_only[i], 0, obj };
			schema_error(v, &kp, true, "only used with children: true");
		}
	}
	/* Resolved here, so `zklb check` and the start both say when a name is unknown. */
	char err[160];
	s->uid = -1;
	s->gid = -1;
	if (s->owner && !id_resolve(s->owner, false, &s->uid, err, sizeof(err))) {
		struct schema_path kp = { p, "owner", 0, obj };
		schema_error(v, &kp, false, "%s", err);
	}
	if (s->group && !id_resolve(s->group, true, &s->gid, err, sizeof(err))) {
		struct schema_path kp = { p, "group", 0, obj };
		schema_error(v, &kp, false, "%s", err);
	}
}

static void finish_render(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct render_conf *r = base;
	if (!obj)
		return;
	struct schema_path fp = { p, "format", 0, obj }, tp = { p, "template", 0, obj };
	if (!r->format == !r->template_path) {
		schema_error(v, r->format ? &tp : p, r->format != NULL,
			     "give either format (%s) or template", render_format_names());
		return;
	}
	char err[256];
	const char *text = NULL;
	char *owned = NULL;
	if (r->format) {
		text = render_format_text(r->format);
		if (!text) {
			schema_error(v, &fp, false, "unknown format '%s' (formats: %s)", r->format,
				     render_format_names());
			return;
		}
	} else {
		text = owned = template_read(r->template_path, err, sizeof(err));
		if (!text) {
			schema_error(v, &tp, false, "%s", err);
			return;
		}
	}
	struct template *t = template_compile(text, strlen(text), err, sizeof(err));
	if (!t) {
		schema_error(v, r->format ? &fp : &tp, false, "%s:%s", r->format ? r->format : r->template_path,
			     err);
		free(owned);
		return;
	}
	template_free(t);
	r->template_text = owned ? owned : xstrdup(text);
}

/*
 * The payload's Java type: payload_class names the class of a mapping payload;
 * a mapping may instead carry Jackson's "@class" itself (as Curator wrote it),
 * but not both. Other payloads carry their own type (instance.h).
 */
static void finish_announce(struct schema_ctx *v, const struct schema_path *p, const json_t *obj, void *base)
{
	struct announce_conf *a = base;
	struct schema_path pp = { p, "payload", 0, obj };
	const json_t *own = json_is_object(a->payload) ? json_object_get(a->payload, "@class") : NULL;
	if (!obj)
		return;
	if (a->payload_class && !json_is_object(a->payload)) {
		struct schema_path kp = { p, "payload_class", 0, obj };
		schema_error(v, &kp, true, "needs payload: a mapping of the class's properties%s",
			     a->payload ? " (a list or scalar payload carries its own Java type)" : "");
	}
	if (own && !(json_is_string(own) && instance_java_class_ok(json_string_value(own))))
		schema_error(v, &pp, false, "\"@class\" must be a Java class name; or use payload_class");
	else if (own && a->payload_class)
		schema_error(v, &pp, false, "\"@class\" and payload_class both name the class; keep one");
}

void config_keys_parse_service(struct schema_ctx *v, const struct schema_path *p,
			       const char *name, const json_t *obj, struct service_conf *svc)
{
	svc->name = xstrdup(name);
	svc->origin = xstrdup(v->user);
	if (!name_is_portable(name, 64))
		schema_error(v, p, true, "service names are 1..64 of A-Z a-z 0-9 _ - .");
	if (!obj || json_is_null(obj)) {
		schema_error(v, p, true, "a service needs at least listen and discovery");
		return;
	}
	schema_apply(v, p, obj, &service_section, svc);
}

static void fn_services(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct config *cfg = field;
	if (json_is_null(val))
		return;
	if (!schema_want(v, p, val, json_is_object(val), "a mapping of service names"))
		return;
	cfg->services = xcalloc(json_object_size(val), sizeof(*cfg->services));
	const char *name;
	const json_t *svc;
	json_object_foreach((json_t *)val, name, svc) {
		struct schema_path sp = { p, name, 0, val };
		config_keys_parse_service(v, &sp, name, svc, &cfg->services[cfg->n_services++]);
	}
}

static void fn_announce(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct config *cfg = field;
	cfg->announce = list_parse(v, p, val, &announce_section, sizeof(*cfg->announce),
				   &cfg->n_announce);
}

static void fn_sync(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct config *cfg = field;
	cfg->sync = list_parse(v, p, val, &sync_section, sizeof(*cfg->sync), &cfg->n_sync);
}

static void fn_render(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
	struct config *cfg = field;
	cfg->render = list_parse(v, p, val, &render_section, sizeof(*cfg->render), &cfg->n_render);
}

const struct schema_section *config_keys_top(void)
{
	return &top_section;
}

/* ---- names of the enums ---------------------------------------------------------- */

const char *balance_kind_name(enum balance_kind k)
{
	return schema_enum_name(balance_names, (int)k);
}

const char *discovery_kind_name(enum discovery_kind k)
{
	return schema_enum_name(discovery_names, (int)k);
}

const char *check_kind_name(enum check_kind k)
{
	return k == CHECK_NONE ? "none" : schema_enum_name(check_names, (int)k);
}

const char *reuse_kind_name(enum reuse_kind k)
{
	return schema_enum_name(reuse_names, (int)k);
}

/* ---- for the documentation walker ------------------------------------------------ */

const struct schema_section *config_keys_items(const struct schema_key *k, const char **item)
{
	/* The S_FN parsers that apply a section to each item of a collection. */
	static const struct {
		schema_fn fn;
		const struct schema_section *s;
		const char *item;
	} items[] = {
		{ fn_services, &service_section, ".NAME" },
		{ fn_announce, &announce_section, "[]" },
		{ fn_sync, &sync_section, "[]" },
		{ fn_render, &render_section, "[]" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(items); i++) {
		if (k->type == S_FN && k->fn == items[i].fn) {
			*item = items[i].item;
			return items[i].s;
		}
	}
	return NULL;
}
