/*
 * config_keys — the key tables of every configuration section and the
 * per-section finishers (config_keys.c; the validators of single values are
 * config_values.h's). Internal to config: config.h is the API.
 */
#ifndef ZKLB_CONFIG_KEYS_H
#define ZKLB_CONFIG_KEYS_H

#include <jansson.h>

struct schema_ctx;
struct schema_path;
struct schema_section;
struct service_conf;

/* The top-level section: every key of a file, sections nested. Static storage. */
const struct schema_section *config_keys_top(void);

/*
 * Validate the service mapping obj (NULL or null: none given) named `name`
 * into svc, which the caller zeroed; svc->origin is v->user. Problems go to v.
 */
void config_keys_parse_service(struct schema_ctx *v, const struct schema_path *p,
			       const char *name, const json_t *obj, struct service_conf *svc);

/*
 * For an S_FN key whose value is a collection of sections (services: a
 * mapping of names; announce:, sync:, render: lists): the section each item is
 * validated with, and in *item how an item is written in a key path
 * (".NAME" or "[]"). NULL for any other key. For the documentation.
 */
struct schema_key;
const struct schema_section *config_keys_items(const struct schema_key *k, const char **item);

#endif
