/*
 * yamltree — a YAML document (libyaml) turned into a jansson tree that
 * remembers where every key and value came from.
 *
 * Scalars follow the YAML 1.2 core schema for plain (unquoted) scalars:
 * null/~/empty, true/false, integers (also 0x.. and 0o..) and floats become
 * JSON null, booleans and numbers; everything else, and every quoted or block
 * scalar, is a string. A plain decimal with a leading zero ("0644") stays a
 * string, because YAML 1.1 reads it as octal and YAML 1.2 as decimal.
 * Explicit tags other than !!str, !!map, !!seq (and the non-specific "!") are
 * refused. Anchors, aliases and merge keys (<<) are refused with an error at
 * their position: configuration files stay readable top to bottom. Duplicate
 * keys in one mapping are errors. Only one document per stream.
 *
 * Positions are kept in a side table indexed by (container, key or index),
 * because jansson's true/false/null are shared singletons and cannot carry
 * a position of their own.
 */
#ifndef ZKLB_YAMLTREE_H
#define ZKLB_YAMLTREE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config_errors.h"

/* A position in the source, 1-based. */
struct yamltree_mark {
	uint32_t line;
	uint32_t col;
};

struct yamltree_entry;

struct yamltree {
	json_t *root;			/* owned; NULL when parsing failed */
	struct config_errors errors;	/* owned; messages without a position, in source order */
	struct yamltree_mark *error_at;	/* owned, errors.n entries: where each problem is */
	struct yamltree_entry *slots;	/* owned; open-addressing table of positions */
	size_t n_slots;			/* capacity, a power of two (or 0) */
	size_t n_used;
};

/*
 * Parse `len` bytes of YAML into t (which the caller zeroes or reuses after
 * yamltree_free). Returns true when the document is well formed; otherwise
 * t->errors says why (t->error_at where) and t->root is NULL. An empty stream gives a null root.
 * Thread: any; touches no globals.
 */
bool yamltree_parse(struct yamltree *t, const char *buf, size_t len)
	__attribute__((warn_unused_result));

/*
 * Where the node under `parent` came from: at `key` when parent is an object,
 * at `index` when it is an array, or the root when parent is NULL. Fills the
 * position of the key (for array items and the root: the value) and of the
 * value. Returns false when the node is unknown (e.g. built by the caller).
 */
bool yamltree_find(const struct yamltree *t, const json_t *parent, const char *key,
		   size_t index, struct yamltree_mark *key_at, struct yamltree_mark *value_at);

/* Release everything t owns; t can be parsed into again. */
void yamltree_free(struct yamltree *t);

#endif
