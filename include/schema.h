/*
 * schema — the table-driven validator behind config: a section is a table of
 * keys (name, type, default, flags, field offset, type argument, validator),
 * applied to a jansson mapping to fill a struct. Defaults are written as in
 * the file and go through the same parser, so they cannot disagree with it.
 *
 * Every message goes through schema_error(), the one place that prefixes
 * "ORIGIN:LINE:COL: key.path: " (positions come from a yamltree; JSON has
 * none, so the path alone says where).
 */
#ifndef ZKLB_SCHEMA_H
#define ZKLB_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_errors;
struct yamltree;
struct yamltree_mark;

enum schema_type {
	S_STR,		/* char *, owned */
	S_ZPATH,	/* char *, a znode path: "/a/b" */
	S_BOOL,		/* bool */
	S_U32,		/* uint32_t, within arg (struct schema_range) */
	S_PORT,		/* uint16_t, within arg (struct schema_range) */
	S_DUR,		/* uint64_t ms from "250ms"; within arg when set */
	S_SIZE,		/* uint64_t bytes from "16k"; within arg when set */
	S_RATIO,	/* double in 0..1 */
	S_ENUM,		/* an int-sized enum; names in arg (struct schema_enum[]) */
	S_SECTION,	/* a nested mapping; schema in arg (struct schema_section) */
	S_FN,		/* fn parses the value itself */
};

#define S_REQ		0x1u	/* must be present (when its section is) */
#define S_RELOAD	0x2u	/* SIGHUP applies it without a restart */

struct schema_range {
	uint64_t min;
	uint64_t max;
};

struct schema_enum {
	const char *name;		/* as written in the file; NULL ends the list */
	int value;
};

/* One validation run. */
struct schema_ctx {
	const char *origin;		/* ref: FILE, or the overlay origin */
	const struct yamltree *tree;	/* ref: positions; NULL for JSON */
	struct config_errors *errs;	/* ref: where messages go */
	size_t n_errors;		/* problems found by this run (some may be dropped) */
	size_t first;			/* errs->n when the run started */
	struct yamltree_mark *at;	/* owned: position of each message added, for sorting */
	const void *user;		/* ref: for validators (config: the service origin) */
};

/* Where a node sits: a list from the node up to the top, kept on the C stack. */
struct schema_path {
	const struct schema_path *up;	/* ref; NULL at the top */
	const char *name;		/* ref: key; NULL for an array item */
	size_t index;			/* array index when name is NULL */
	const json_t *parent;		/* ref: container of the node (positions); may be NULL */
};

/* Extra validation of a parsed value, or for S_FN the whole parse. val is never NULL. */
typedef void (*schema_fn)(struct schema_ctx *c, const struct schema_path *p, const json_t *val,
			  void *field);
/* Cross-key checks once a section is filled; obj is NULL when the section was absent. */
typedef void (*schema_finish_fn)(struct schema_ctx *c, const struct schema_path *p,
				 const json_t *obj, void *base);

struct schema_key {
	const char *name;		/* key as written in the file */
	enum schema_type type;
	const char *def;		/* default as written in the file; NULL: none */
	unsigned flags;			/* S_REQ | S_RELOAD */
	size_t off;			/* offsetof the field in the section's struct */
	const void *arg;		/* per type: schema_range, schema_enum[], schema_section */
	schema_fn fn;			/* extra validator, or the parser for S_FN */
};

struct schema_section {
	const struct schema_key *keys;
	size_t n_keys;
	schema_finish_fn finish;	/* may be NULL; runs only if the keys parsed cleanly */
};

/*
 * Fill base from obj with the keys of s: unknown keys, types, ranges, then
 * defaults, then s->finish. obj NULL means the section is absent: defaults
 * only, nothing required. Problems go to c.
 */
void schema_apply(struct schema_ctx *c, const struct schema_path *p, const json_t *obj,
		  const struct schema_section *s, void *base);

/* Report a problem at p (its key when at_key, else its value). p NULL: the document. */
void schema_error(struct schema_ctx *c, const struct schema_path *p, bool at_key,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * A warning at p (its value): logged with the same FILE:LINE:COL: key.path:
 * prefix as an error, but not one: the document stays valid.
 */
void schema_warn(struct schema_ctx *c, const struct schema_path *p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* When !ok, report "expected WHAT, got ..." at p. Returns ok. */
bool schema_want(struct schema_ctx *c, const struct schema_path *p, const json_t *val, bool ok,
		 const char *what);

/* A value for a message: quoted, escaped, truncated into buf. */
const char *schema_show(const json_t *val, char *buf, size_t len);

/* "a mapping", "a string", ... */
const char *schema_kind(const json_t *val);

/* obj is a mapping holding key. */
bool schema_has(const json_t *obj, const char *key);

/* The name of value in names, or "?". */
const char *schema_enum_name(const struct schema_enum *names, int value);

/*
 * The first key of s (recursing into sections) whose field differs between
 * the structs a and b, skipping keys that have any of the `skip` flags (e.g.
 * S_RELOAD: what SIGHUP cannot apply). Writes "prefix.key.path" into buf and
 * returns true; false when nothing differs. An S_FN field is compared as the
 * type its arg points to (a const enum schema_type), and skipped if arg is NULL.
 */
bool schema_diff(const struct schema_section *s, const void *a, const void *b, unsigned skip,
		 const char *prefix, char *buf, size_t len);

/* Sort this run's messages by position (stable) and release the context. */
void schema_done(struct schema_ctx *c);

#endif
