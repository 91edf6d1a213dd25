/*
 * config_values — the validators of single configuration values (fn_*:
 * addresses, sizes, paths, secret files, networks, zones, TLS files...) and
 * the helpers they share with the section finishers. The key tables that
 * name them, and the finishers that check across keys, are config_keys.c's;
 * nothing here knows a table. Internal to config: config.h is the API.
 */
#ifndef ZKLB_CONFIG_VALUES_H
#define ZKLB_CONFIG_VALUES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct schema_ctx;
struct schema_path;
struct schema_section;

void fn_nonempty(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_networks(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_token_file(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_zone(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_queue_timeout(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_zone_file(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_mysql_user(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_secret_file(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_abs_path(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_access_log(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_zk_hosts(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_zk_auth(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_listen(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_admin_listen(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_workers(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_bytes(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_http_path(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_payload(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_java_class(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_mode(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_sync_names(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_overlay_networks(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_hostnames(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_abs_dir(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_sentinels(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_backends(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
void fn_tls_version(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
bool tls_file_ok(struct schema_ctx *v, const struct schema_path *p, const json_t *obj,
			const char *k, const char *path);
void fn_trunk_listen(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field);
bool id_resolve(const char *name, bool group, int64_t *id, char *err, size_t errlen);
char *template_read(const char *path, char *err, size_t errlen);
void *list_parse(struct schema_ctx *v, const struct schema_path *p, const json_t *val,
			const struct schema_section *s, size_t elem, size_t *n_out);

#endif
