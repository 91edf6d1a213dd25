/*
 * config_doc — the reference documentation of every configuration key,
 * produced by walking the schema that validates the file (config_keys.c),
 * so the type, default and reload flag printed are the ones in force. Only
 * the prose lives apart, in config_doc.c's table of key path -> text, and
 * config_doc_walk() reports a key without text, or text for no key, as a
 * problem: the man page generator (man/) and tests/unit/test_config_doc.c
 * fail on either, so the pages cannot drift from the schema.
 *
 * Key paths are written as in messages and docs/design.md:
 * "services.NAME.health.check.rise", "announce[].port".
 */
#ifndef ZKLB_CONFIG_DOC_H
#define ZKLB_CONFIG_DOC_H

#include <stdbool.h>
#include <stddef.h>

struct schema_section;

/* One documented key, as the walk hands it out. Every pointer is valid during the callback only. */
struct config_doc_key {
	const char *path;		/* "services.NAME.pool.reuse" */
	const char *type;		/* how the value is written: "duration", "one of: none, http1" */
	const char *def;		/* default as written in the file; NULL: none */
	bool required;			/* must be present when its section is */
	bool reload;			/* SIGHUP applies it (the key and every section above it) */
	bool section;			/* a mapping whose keys follow, or a collection of them */
	const char *same_as;		/* a section documented under that path already; else NULL */
	const char *text;		/* the description; NULL when the table has none (a problem) */
	unsigned depth;			/* 0 at the top level */
};

/* One row of a description table. */
struct config_doc_row {
	const char *path;		/* key path, as above */
	const char *type;		/* for keys the schema parses with a function: how the value
					   is written; NULL: from the schema */
	const char *text;		/* the description, plain text */
};

typedef void config_doc_key_fn(const struct config_doc_key *k, void *arg);
typedef void config_doc_problem_fn(const char *msg, void *arg);

/*
 * Walk top depth-first in table order, calling key() for every key, with
 * descriptions from rows[0..n_rows). A section met a second time (the check
 * section under health: and announce:) is handed out once more with same_as
 * and not walked again. problem() (may be NULL) gets one message per key
 * without a description, per key parsed by a function without a type, and
 * per row that names no key. Returns the number of problems.
 */
size_t config_doc_walk_schema(const struct schema_section *top, const struct config_doc_row *rows,
			      size_t n_rows, config_doc_key_fn *key, config_doc_problem_fn *problem,
			      void *arg);

/* config_doc_walk_schema() over zklb's own schema and descriptions. */
size_t config_doc_walk(config_doc_key_fn *key, config_doc_problem_fn *problem, void *arg);

#endif
