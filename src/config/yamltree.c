/*
 * yamltree — libyaml events to a jansson tree plus a position table.
 *
 * The parser is event driven with an explicit stack, so nesting depth costs
 * heap, not C stack; it is still capped (YAMLTREE_MAX_DEPTH) because jansson
 * frees trees recursively. Syntax errors stop the parse; schema-level
 * problems (duplicate keys, anchors, tags) are recorded and parsing goes on
 * so that one run reports them all.
 */
#include "yamltree.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAMLTREE_MAX_DEPTH 64
#define YAMLTREE_MAX_ERRORS 50

struct yamltree_entry {
	const json_t *parent;		/* container; NULL for the root; NULL slot = empty */
	char *key;			/* owned; NULL for array items and the root */
	size_t index;			/* array index */
	struct yamltree_mark key_at;	/* the key (array items: the value) */
	struct yamltree_mark value_at;
	bool used;			/* slot occupied */
};

/* One open container while parsing. */
struct frame {
	json_t *node;			/* ref: the frame holds its own reference */
	bool is_map;
	char *key;			/* owned; pending mapping key, NULL when expecting one */
	struct yamltree_mark key_at;	/* position of the pending key */
	bool skip;			/* value of a duplicate key: parsed, then dropped */
};

static uint64_t entry_hash(const json_t *parent, const char *key, size_t index)
{
	uint64_t h = (uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ULL;
	if (key) {
		for (const unsigned char *p = (const unsigned char *)key; *p; p++)
			h = (h ^ *p) * 0x100000001b3ULL;
	} else {
		h ^= (uint64_t)index * 0xbf58476d1ce4e5b9ULL;
	}
	return h ^ (h >> 29);
}

static bool entry_matches(const struct yamltree_entry *e, const json_t *parent,
			  const char *key, size_t index)
{
	if (!e->used || e->parent != parent)
		return false;
	if (key || e->key)
		return key && e->key && strcmp(key, e->key) == 0;
	return e->index == index;
}

static void table_put(struct yamltree *t, const struct yamltree_entry *e);

static void table_grow(struct yamltree *t)
{
	struct yamltree_entry *old = t->slots;
	size_t n_old = t->n_slots;
	t->n_slots = n_old ? n_old * 2 : 64;
	t->slots = xcalloc(t->n_slots, sizeof(*t->slots));
	t->n_used = 0;
	for (size_t i = 0; i < n_old; i++)
		if (old[i].used)
			table_put(t, &old[i]);
	free(old);
}

/* Takes ownership of e->key. */
static void table_put(struct yamltree *t, const struct yamltree_entry *e)
{
	if ((t->n_used + 1) * 2 > t->n_slots)
		table_grow(t);
	size_t mask = t->n_slots - 1;
	size_t i = (size_t)entry_hash(e->parent, e->key, e->index) & mask;
	while (t->slots[i].used)
		i = (i + 1) & mask;
	t->slots[i] = *e;
	t->slots[i].used = true;
	t->n_used++;
}

bool yamltree_find(const struct yamltree *t, const json_t *parent, const char *key,
		   size_t index, struct yamltree_mark *key_at, struct yamltree_mark *value_at)
{
	if (!t || t->n_slots == 0)
		return false;
	size_t mask = t->n_slots - 1;
	size_t i = (size_t)entry_hash(parent, key, index) & mask;
	while (t->slots[i].used) {
		if (entry_matches(&t->slots[i], parent, key, index)) {
			if (key_at)
				*key_at = t->slots[i].key_at;
			if (value_at)
				*value_at = t->slots[i].value_at;
			return true;
		}
		i = (i + 1) & mask;
	}
	return false;
}

static void add_error(struct yamltree *t, struct yamltree_mark at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add_error(struct yamltree *t, struct yamltree_mark at, const char *fmt, ...)
{
	if (t->errors.n >= YAMLTREE_MAX_ERRORS)
		return;
	va_list ap;
	va_start(ap, fmt);
	config_errors_vadd(&t->errors, fmt, ap);
	va_end(ap);
	t->error_at = xrealloc(t->error_at, t->errors.n * sizeof(*t->error_at));
	t->error_at[t->errors.n - 1] = at;
}

static struct yamltree_mark mark_of(yaml_mark_t m)
{
	struct yamltree_mark r = {
		.line = m.line + 1 > UINT32_MAX ? UINT32_MAX : (uint32_t)(m.line + 1),
		.col = m.column + 1 > UINT32_MAX ? UINT32_MAX : (uint32_t)(m.column + 1),
	};
	return r;
}

/* Quote a scalar for a message: printable ASCII, at most ~40 bytes. */
static const char *show(const char *s, size_t len, char *buf, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 8 < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i >= 40) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
	}
	buf[o] = '\0';
	return buf;
}

static bool is_tag(const yaml_char_t *tag, const char *want)
{
	return tag && strcmp((const char *)tag, want) == 0;
}

static bool all_digits(const char *s, size_t len, int base)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = base == 16 ? ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
					(c >= 'A' && c <= 'F'))
			: base == 8 ? (c >= '0' && c <= '7') : (c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool looks_float(const char *s, size_t len)
{
	size_t i = 0, d = 0;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++, d++;
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, d++;
	}
	if (d == 0)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		size_t e = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, e++;
		if (e == 0)
			return false;
	}
	return i == len;
}

/* The JSON value of a plain scalar (core schema), or NULL for "it is a string". */
static json_t *plain_resolve(const char *s, size_t len)
{
	static const char *const nulls[] = { "~", "null", "Null", "NULL" };
	static const char *const trues[] = { "true", "True", "TRUE" };
	static const char *const falses[] = { "false", "False", "FALSE" };
	if (len == 0)
		return json_null();
	for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
		if (strcmp(s, nulls[i]) == 0)
			return json_null();
	for (size_t i = 0; i < ARRAY_SIZE(trues); i++)
		if (strcmp(s, trues[i]) == 0)
			return json_true();
	for (size_t i = 0; i < ARRAY_SIZE(falses); i++)
		if (strcmp(s, falses[i]) == 0)
			return json_false();
	if (len > 64)
		return NULL;

	int base = 10;
	size_t skip = 0;
	if (len > 2 && s[0] == '0' && s[1] == 'x' && all_digits(s + 2, len - 2, 16))
		base = 16, skip = 2;
	else if (len > 2 && s[0] == '0' && s[1] == 'o' && all_digits(s + 2, len - 2, 8))
		base = 8, skip = 2;
	size_t sign = (s[0] == '-' || s[0] == '+') ? 1 : 0;
	if (base != 10 || all_digits(s + sign, len - sign, 10)) {
		if (base == 10 && len - sign > 1 && s[sign] == '0')
			return NULL;	/* "0644": YAML 1.1 octal or 1.2 decimal; keep the text */
		errno = 0;
		char *end;
		long long v = strtoll(s + skip, &end, base);
		if (errno == ERANGE || *end != '\0')
			return NULL;
		return json_integer(v);
	}
	if (looks_float(s, len)) {
		errno = 0;
		double v = strtod(s, NULL);
		if (errno == ERANGE)
			return NULL;
		return json_real(v);
	}
	return NULL;
}

struct parse {
	struct yamltree *t;
	struct frame stack[YAMLTREE_MAX_DEPTH];
	size_t depth;
	bool root_set;
};

/*
 * Attach a new value (reference stolen) with its position to the innermost
 * container. Returns the value when it was attached (or dropped as the value
 * of a duplicate key), for the caller to push if it is a container.
 */
static void attach(struct parse *ps, json_t *value, struct yamltree_mark at, bool *dropped)
{
	struct yamltree *t = ps->t;
	*dropped = false;
	if (ps->depth == 0) {
		json_decref(t->root);
		t->root = value;
		struct yamltree_entry e = { .key_at = at, .value_at = at };
		table_put(t, &e);
		return;
	}
	struct frame *f = &ps->stack[ps->depth - 1];
	if (!f->is_map) {
		size_t idx = json_array_size(f->node);
		json_array_append_new(f->node, value);
		struct yamltree_entry e = { .parent = f->node, .index = idx,
					    .key_at = at, .value_at = at };
		table_put(t, &e);
		return;
	}
	if (f->skip || json_object_get(f->node, f->key)) {
		*dropped = true;
		json_decref(value);
	} else {
		json_object_set_new(f->node, f->key, value);
		struct yamltree_entry e = { .parent = f->node, .key = f->key,
					    .key_at = f->key_at, .value_at = at };
		table_put(t, &e);
		f->key = NULL;	/* the table owns it now */
	}
	free(f->key);
	f->key = NULL;
	f->skip = false;
}

/* A scalar in key position. Returns false on a fatal problem. */
static bool take_key(struct parse *ps, const yaml_event_t *ev)
{
	struct frame *f = &ps->stack[ps->depth - 1];
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	struct yamltree_mark at = mark_of(ev->start_mark);
	char buf[64];

	if (memchr(s, '\0', len)) {
		add_error(ps->t, at, "mapping keys must not contain NUL bytes");
		return false;
	}
	if (ev->data.scalar.plain_implicit && strcmp(s, "<<") == 0)
		add_error(ps->t, at, "merge keys (<<) are not supported");
	f->key = xstrdup(s);
	f->key_at = at;
	f->skip = false;
	if (json_object_get(f->node, s)) {
		add_error(ps->t, at, "duplicate key '%s'", show(s, len, buf, sizeof(buf)));
		f->skip = true;
	}
	return true;
}

static json_t *scalar_value(struct parse *ps, const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const yaml_char_t *tag = ev->data.scalar.tag;
	json_t *v = NULL;

	if (tag && !is_tag(tag, "!") && !is_tag(tag, YAML_STR_TAG))
		add_error(ps->t, mark_of(ev->start_mark), "unsupported tag '%s'",
			  (const char *)tag);
	else if (!tag && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		v = plain_resolve(s, len);
	if (!v)
		v = json_stringn(s, len);
	if (!v) {
		/* libyaml checks UTF-8 of the input, so this is belt and braces. */
		add_error(ps->t, mark_of(ev->start_mark), "scalar is not valid UTF-8");
		v = json_null();
	}
	return v;
}

static void check_anchor(struct parse *ps, const yaml_char_t *anchor, yaml_mark_t m)
{
	if (anchor)
		add_error(ps->t, mark_of(m), "anchors and aliases are not supported");
}

/* Handle one event; false stops the parse. */
static bool on_event(struct parse *ps, const yaml_event_t *ev)
{
	struct yamltree *t = ps->t;
	struct yamltree_mark at = mark_of(ev->start_mark);
	bool dropped;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (ps->root_set) {
			add_error(t, at, "only one YAML document is allowed");
			return false;
		}
		return true;
	case YAML_DOCUMENT_END_EVENT:
		ps->root_set = true;
		return true;
	case YAML_ALIAS_EVENT:
		add_error(t, at, "anchors and aliases are not supported");
		if (ps->depth > 0 && ps->stack[ps->depth - 1].is_map &&
		    !ps->stack[ps->depth - 1].key) {
			add_error(t, at, "mapping keys must be scalars");
			return false;
		}
		attach(ps, json_null(), at, &dropped);
		return true;
	case YAML_SCALAR_EVENT:
		check_anchor(ps, ev->data.scalar.anchor, ev->start_mark);
		if (ps->depth > 0 && ps->stack[ps->depth - 1].is_map &&
		    !ps->stack[ps->depth - 1].key)
			return take_key(ps, ev);
		attach(ps, scalar_value(ps, ev), at, &dropped);
		return true;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool is_map = ev->type == YAML_MAPPING_START_EVENT;
		const yaml_char_t *anchor = is_map ? ev->data.mapping_start.anchor
						   : ev->data.sequence_start.anchor;
		const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag
						: ev->data.sequence_start.tag;
		check_anchor(ps, anchor, ev->start_mark);
		if (tag && !is_tag(tag, "!") && !is_tag(tag, is_map ? YAML_MAP_TAG : YAML_SEQ_TAG))
			add_error(t, at, "unsupported tag '%s'", (const char *)tag);
		if (ps->depth > 0 && ps->stack[ps->depth - 1].is_map &&
		    !ps->stack[ps->depth - 1].key) {
			add_error(t, at, "mapping keys must be scalars");
			return false;
		}
		if (ps->depth == YAMLTREE_MAX_DEPTH) {
			add_error(t, at, "nesting deeper than %d levels", YAMLTREE_MAX_DEPTH);
			return false;
		}
		json_t *node = is_map ? json_object() : json_array();
		json_incref(node);	/* the frame's own reference */
		attach(ps, node, at, &dropped);
		struct frame *f = &ps->stack[ps->depth++];
		memset(f, 0, sizeof(*f));
		f->node = node;
		f->is_map = is_map;
		return true;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: {
		struct frame *f = &ps->stack[--ps->depth];
		free(f->key);
		json_decref(f->node);
		return true;
	}
	default:
		return true;
	}
}

bool yamltree_parse(struct yamltree *t, const char *buf, size_t len)
{
	yaml_parser_t parser;
	struct parse *ps = xcalloc(1, sizeof(*ps));
	ps->t = t;
	memset(t, 0, sizeof(*t));

	if (!yaml_parser_initialize(&parser)) {
		struct yamltree_mark at = { 1, 1 };
		add_error(t, at, "cannot initialise the YAML parser");
		free(ps);
		return false;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			/* libyaml's problem_mark is the most precise position it has. */
			struct yamltree_mark at = mark_of(parser.problem_mark);
			if (parser.context)
				add_error(t, at, "%s %s", parser.problem ? parser.problem : "syntax error",
					  parser.context);
			else
				add_error(t, at, "%s", parser.problem ? parser.problem : "syntax error");
			break;
		}
		bool go_on = on_event(ps, &ev);
		bool end = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (!go_on || end)
			break;
	}
	while (ps->depth > 0) {
		struct frame *f = &ps->stack[--ps->depth];
		free(f->key);
		json_decref(f->node);
	}
	yaml_parser_delete(&parser);
	free(ps);

	if (t->errors.n > 0) {
		json_decref(t->root);
		t->root = NULL;
		return false;
	}
	if (!t->root)
		t->root = json_null();
	return true;
}

void yamltree_free(struct yamltree *t)
{
	json_decref(t->root);
	config_errors_free(&t->errors);
	free(t->error_at);
	for (size_t i = 0; i < t->n_slots; i++)
		free(t->slots[i].key);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}
