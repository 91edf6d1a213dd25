/*
 * schema — see schema.h. Generic: knows nothing of zklb's keys, only of
 * types, defaults, ranges, paths and positions.
 */
#include "schema.h"
#include "config_errors.h"
#include "log.h"
#include "util.h"
#include "yamltree.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_MAX_ERRORS 100

static size_t path_format(const struct schema_path *p, char *buf, size_t len)
{
	if (!p || len == 0)
		return 0;
	size_t o = path_format(p->up, buf, len);
	int w;
	if (p->name)
		w = snprintf(buf + o, len - o, "%s%s", o ? "." : "", p->name);
	else
		w = snprintf(buf + o, len - o, "[%zu]", p->index);
	if (w < 0)
		return o;
	return MIN(o + (size_t)w, len - 1);
}

/* Position of p: its key (or value), else the key of the nearest known ancestor. */
static bool path_mark(const struct schema_ctx *v, const struct schema_path *p, bool at_key,
		      struct yamltree_mark *m)
{
	if (!v->tree)
		return false;
	for (bool first = true; p; p = p->up, first = false) {
		struct yamltree_mark k, val;
		if (yamltree_find(v->tree, p->parent, p->name, p->index, &k, &val)) {
			*m = (first && !at_key) ? val : k;
			return true;
		}
	}
	return yamltree_find(v->tree, NULL, NULL, 0, NULL, m);
}

/*
 * The one place messages get their "FILE:LINE:COL: path: " prefix. Writes
 * the line into buf and the position into *m (left alone when unknown).
 */
static void schema_vformat(const struct schema_ctx *v, const struct schema_path *p, bool at_key,
			   struct yamltree_mark *m, char *buf, size_t len, const char *fmt, va_list ap)
	__attribute__((format(printf, 7, 0)));

static void schema_vformat(const struct schema_ctx *v, const struct schema_path *p, bool at_key,
			   struct yamltree_mark *m, char *buf, size_t len, const char *fmt, va_list ap)
{
	char path[512], msg[512], where[64] = "";

	if (path_mark(v, p, at_key, m))
		snprintf(where, sizeof(where), ":%u:%u", m->line, m->col);
	path_format(p, path, sizeof(path));
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (p)
		snprintf(buf, len, "%s%s: %s: %s", v->origin, where, path, msg);
	else
		snprintf(buf, len, "%s%s: %s", v->origin, where, msg);
}

void schema_error(struct schema_ctx *v, const struct schema_path *p, bool at_key, const char *fmt, ...)
{
	char line[1200];
	struct yamltree_mark m = { UINT32_MAX, UINT32_MAX };	/* unknown: sorts last */

	v->n_errors++;
	if (v->n_errors > SCHEMA_MAX_ERRORS)
		return;
	if (v->n_errors == SCHEMA_MAX_ERRORS) {
		snprintf(line, sizeof(line), "%s: too many errors, stopping here", v->origin);
	} else {
		va_list ap;
		va_start(ap, fmt);
		schema_vformat(v, p, at_key, &m, line, sizeof(line), fmt, ap);
		va_end(ap);
	}
	size_t k = v->errs->n - v->first;
	v->at = xrealloc(v->at, (k + 1) * sizeof(*v->at));
	v->at[k] = m;
	config_errors_add(v->errs, "%s", line);
}

void schema_warn(struct schema_ctx *v, const struct schema_path *p, const char *fmt, ...)
{
	char line[1200];
	struct yamltree_mark m = { UINT32_MAX, UINT32_MAX };
	va_list ap;

	va_start(ap, fmt);
	schema_vformat(v, p, false, &m, line, sizeof(line), fmt, ap);
	va_end(ap);
	log_warn("%s", line);
}

static int mark_cmp(const struct yamltree_mark *a, const struct yamltree_mark *b)
{
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return 0;
}

void schema_done(struct schema_ctx *v)
{
	/* Insertion sort: stable, and the lists are short. */
	size_t n = v->errs->n >= v->first ? v->errs->n - v->first : 0;
	char **msgs = n ? v->errs->msgs + v->first : NULL;
	for (size_t i = 1; v->at && i < n; i++) {
		struct yamltree_mark m = v->at[i];
		char *msg = msgs[i];
		size_t j = i;
		for (; j > 0 && mark_cmp(&v->at[j - 1], &m) > 0; j--) {
			v->at[j] = v->at[j - 1];
			msgs[j] = msgs[j - 1];
		}
		v->at[j] = m;
		msgs[j] = msg;
	}
	free(v->at);
	v->at = NULL;
}

/* A value for a message: quoted, escaped, truncated. */
const char *schema_show(const json_t *j, char *buf, size_t n)
{
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		size_t len = json_string_length(j), o = 0;
		buf[o++] = '\'';
		for (size_t i = 0; i < len && o + 8 < n; i++) {
			unsigned char c = (unsigned char)s[i];
			if (i >= 48) {
				memcpy(buf + o, "...", 3);
				o += 3;
				break;
			}
			if (c >= 0x20 && c != 0x7f && c != '\\' && c != '\'')
				buf[o++] = (char)c;
			else
				o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
		}
		buf[o++] = '\'';
		buf[o] = '\0';
		return buf;
	}
	if (json_is_integer(j))
		snprintf(buf, n, "%lld", (long long)json_integer_value(j));
	else if (json_is_real(j))
		snprintf(buf, n, "%g", json_real_value(j));
	else if (json_is_true(j))
		snprintf(buf, n, "true");
	else if (json_is_false(j))
		snprintf(buf, n, "false");
	else if (json_is_null(j))
		snprintf(buf, n, "null");
	else if (json_is_object(j))
		snprintf(buf, n, "a mapping");
	else
		snprintf(buf, n, "a list");
	return buf;
}

const char *schema_kind(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: return "a mapping";
	case JSON_ARRAY: return "a list";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE: case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

/* ---- generic value parsing --------------------------------------------------------- */

static void *field_at(void *base, const struct schema_key *k)
{
	return (char *)base + k->off;
}

/* Small edit distance, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 40 || lb > 40)
		return SIZE_MAX;
	size_t row[41];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
			best = MIN(best, row[j] + 1);
			best = MIN(best, row[j - 1] + 1);
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

bool schema_want(struct schema_ctx *v, const struct schema_path *p, const json_t *val, bool ok,
		      const char *what)
{
	if (!ok) {
		char buf[80];
		schema_error(v, p, false, "expected %s, got %s%s%s", what, schema_kind(val),
		     json_is_string(val) || json_is_number(val) ? " " : "",
		     json_is_string(val) || json_is_number(val) ? schema_show(val, buf, sizeof(buf)) : "");
	}
	return ok;
}

static bool range_ok(struct schema_ctx *v, const struct schema_path *p, uint64_t x, const struct schema_range *r,
		     const char *unit)
{
	if (!r || (x >= r->min && x <= r->max))
		return true;
	if (r->min == 1 && x == 0)
		schema_error(v, p, false, "must not be 0");
	else if (r->max == UINT64_MAX || (*unit && x < r->min))
		schema_error(v, p, false, "must be at least %llu%s", (unsigned long long)r->min, unit);
	else
		schema_error(v, p, false, "%llu is out of range %llu..%llu%s", (unsigned long long)x,
		     (unsigned long long)r->min, (unsigned long long)r->max, unit);
	return false;
}


/* Parse one present value of key k into base. */
static void value_apply(struct schema_ctx *v, const struct schema_path *p, const json_t *val,
			const struct schema_key *k, void *base)
{
	void *field = field_at(base, k);
	char buf[80];

	switch (k->type) {
	case S_STR:
	case S_ZPATH: {
		if (!schema_want(v, p, val, json_is_string(val), "a string"))
			return;
		const char *s = json_string_value(val);
		if (strlen(s) != json_string_length(val)) {
			schema_error(v, p, false, "must not contain NUL bytes");
			return;
		}
		if (k->type == S_ZPATH && (s[0] != '/' || strstr(s, "//") ||
					   (s[1] && s[strlen(s) - 1] == '/'))) {
			schema_error(v, p, false, "%s is not a znode path (/a/b)", schema_show(val, buf, sizeof(buf)));
			return;
		}
		char **dst = field;
		free(*dst);
		*dst = xstrdup(s);
		break;
	}
	case S_BOOL:
		if (schema_want(v, p, val, json_is_boolean(val), "true or false"))
			*(bool *)field = json_is_true(val);
		break;
	case S_U32:
	case S_PORT: {
		if (!schema_want(v, p, val, json_is_integer(val), "an integer"))
			return;
		json_int_t x = json_integer_value(val);
		if (x < 0) {
			schema_error(v, p, false, "%lld is negative", (long long)x);
			return;
		}
		if (!range_ok(v, p, (uint64_t)x, k->arg, ""))
			return;
		if (k->type == S_PORT)
			*(uint16_t *)field = (uint16_t)x;
		else
			*(uint32_t *)field = (uint32_t)x;
		break;
	}
	case S_DUR:
	case S_SIZE: {
		uint64_t x;
		bool dur = k->type == S_DUR;
		if (json_is_integer(val) && (!dur || json_integer_value(val) == 0) &&
		    json_integer_value(val) >= 0) {
			x = (uint64_t)json_integer_value(val);
		} else if (json_is_string(val) && strlen(json_string_value(val)) == json_string_length(val) &&
			   (dur ? duration_parse(json_string_value(val), &x)
				: size_parse(json_string_value(val), &x))) {
			/* parsed */
		} else if (dur && json_is_integer(val)) {
			schema_error(v, p, false, "%s needs a unit, e.g. %llds or %lldms", schema_show(val, buf, sizeof(buf)),
			     (long long)json_integer_value(val), (long long)json_integer_value(val));
			return;
		} else {
			schema_error(v, p, false, dur ? "%s is not a duration (e.g. 250ms, 5s, 2m)"
					      : "%s is not a size (e.g. 512, 16k, 1m)",
			     schema_show(val, buf, sizeof(buf)));
			return;
		}
		if (!range_ok(v, p, x, k->arg, dur ? " ms" : " bytes"))
			return;
		*(uint64_t *)field = x;
		break;
	}
	case S_RATIO: {
		if (!schema_want(v, p, val, json_is_number(val), "a number between 0 and 1"))
			return;
		double x = json_number_value(val);
		if (!(x >= 0 && x <= 1)) {
			schema_error(v, p, false, "%s is out of range 0..1", schema_show(val, buf, sizeof(buf)));
			return;
		}
		*(double *)field = x;
		break;
	}
	case S_ENUM: {
		const struct schema_enum *names = k->arg;
		if (json_is_string(val)) {
			for (size_t i = 0; names[i].name; i++) {
				if (strcmp(names[i].name, json_string_value(val)) == 0) {
					int x = names[i].value;
					memcpy(field, &x, sizeof(x));
					return;
				}
			}
		}
		char list[160];
		size_t o = 0;
		for (size_t i = 0; names[i].name && o < sizeof(list); i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
					      names[i].name);
		schema_error(v, p, false, "%s is not one of %s", schema_show(val, buf, sizeof(buf)), list);
		return;
	}
	case S_SECTION:
		if (json_is_null(val)) {
			/* "tls:" with nothing under it: present, all defaults */
			json_t *empty = json_object();
			schema_apply(v, p, empty, k->arg, field);
			json_decref(empty);
		} else {
			schema_apply(v, p, val, k->arg, field);
		}
		return;
	case S_FN:
		break;
	}
	if (k->fn)
		k->fn(v, p, val, field);
}

/* The default of k as a JSON value, so it goes through the same parser as the file. */
static json_t *default_value(const struct schema_key *k)
{
	switch (k->type) {
	case S_BOOL:
		return json_boolean(strcmp(k->def, "true") == 0);
	case S_U32:
	case S_PORT:
		return json_integer(strtoll(k->def, NULL, 10));
	case S_RATIO:
		return json_real(strtod(k->def, NULL));
	default:
		return json_string(k->def);
	}
}

/*
 * Fill base from obj with the keys of s, then defaults, then s->finish.
 * obj is NULL for an absent section: defaults only, nothing required.
 */
void schema_apply(struct schema_ctx *v, const struct schema_path *p, const json_t *obj,
			  const struct schema_section *s, void *base)
{
	if (obj && !json_is_object(obj)) {
		schema_want(v, p, obj, false, "a mapping");
		return;
	}
	size_t errors_before = v->n_errors;
	if (obj) {
		const char *key;
		const json_t *val;
		json_object_foreach((json_t *)obj, key, val) {
			size_t i;
			for (i = 0; i < s->n_keys && strcmp(s->keys[i].name, key) != 0; i++)
				;
			if (i < s->n_keys)
				continue;
			struct schema_path kp = { p, key, 0, obj };
			const char *best = NULL;
			size_t best_d = 3;
			for (i = 0; i < s->n_keys; i++) {
				size_t d = edit_distance(key, s->keys[i].name);
				if (d < best_d)
					best_d = d, best = s->keys[i].name;
			}
			if (best)
				schema_error(v, &kp, true, "unknown key (did you mean '%s'?)", best);
			else
				schema_error(v, &kp, true, "unknown key");
		}
	}
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct schema_key *k = &s->keys[i];
		struct schema_path kp = { p, k->name, 0, obj };
		const json_t *val = obj ? json_object_get(obj, k->name) : NULL;
		if (val) {
			value_apply(v, &kp, val, k, base);
		} else if (obj && (k->flags & S_REQ)) {
			schema_error(v, &kp, true, "required key is missing");
		} else if (k->def) {
			json_t *dv = default_value(k);
			value_apply(v, &kp, dv, k, base);
			json_decref(dv);
		} else if (k->type == S_SECTION) {
			schema_apply(v, &kp, NULL, k->arg, field_at(base, k));
		}
	}
	/* Cross-key checks on half-parsed values would only add noise. */
	if (s->finish && v->n_errors == errors_before)
		s->finish(v, p, obj, base);
}

bool schema_has(const json_t *obj, const char *key)
{
	return obj && json_object_get(obj, key) != NULL;
}

const char *schema_enum_name(const struct schema_enum *names, int value)
{
	for (size_t i = 0; names[i].name; i++)
		if (names[i].value == value)
			return names[i].name;
	return "?";
}

static bool field_equal(enum schema_type type, const void *fa, const void *fb)
{
	switch (type) {
	case S_STR:
	case S_ZPATH: {
		const char *x = *(char *const *)fa, *y = *(char *const *)fb;
		return (!x && !y) || (x && y && strcmp(x, y) == 0);
	}
	case S_BOOL: return *(const bool *)fa == *(const bool *)fb;
	case S_U32: return *(const uint32_t *)fa == *(const uint32_t *)fb;
	case S_PORT: return *(const uint16_t *)fa == *(const uint16_t *)fb;
	case S_DUR:
	case S_SIZE: return *(const uint64_t *)fa == *(const uint64_t *)fb;
	case S_RATIO: return *(const double *)fa == *(const double *)fb;
	case S_ENUM: return memcmp(fa, fb, sizeof(int)) == 0;
	default: return true;
	}
}

bool schema_diff(const struct schema_section *s, const void *a, const void *b, unsigned skip,
		 const char *prefix, char *buf, size_t len)
{
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct schema_key *k = &s->keys[i];
		if (k->flags & skip)
			continue;
		const void *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
		char path[256];
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", k->name);
		if (k->type == S_SECTION) {
			if (schema_diff(k->arg, fa, fb, skip, path, buf, len))
				return true;
			continue;
		}
		enum schema_type type = k->type;
		if (type == S_FN) {
			if (!k->arg)
				continue;
			type = *(const enum schema_type *)k->arg;
		}
		if (!field_equal(type, fa, fb)) {
			snprintf(buf, len, "%s", path);
			return true;
		}
	}
	return false;
}

static json_t *field_json(const struct schema_key *k, enum schema_type type, const void *f)
{
	char buf[64];
	switch (type) {
	case S_STR:
	case S_ZPATH: {
		const char *v = *(char *const *)f;
		if (v && (k->flags & S_SECRET))
			return json_string("***");
		return v ? json_string(v) : json_null();
	}
	case S_BOOL: return json_boolean(*(const bool *)f);
	case S_U32: return json_integer(*(const uint32_t *)f);
	case S_PORT: return json_integer(*(const uint16_t *)f);
	case S_DUR:
		duration_format(*(const uint64_t *)f, buf, sizeof(buf));
		return json_string(buf);
	case S_SIZE: return json_integer((json_int_t)*(const uint64_t *)f);
	case S_RATIO: return json_real(*(const double *)f);
	case S_ENUM: {
		int v;
		memcpy(&v, f, sizeof(v));
		return json_string(schema_enum_name(k->arg, v));
	}
	default: return NULL;
	}
}

json_t *schema_dump(const struct schema_section *s, const void *base)
{
	json_t *o = json_object();
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct schema_key *k = &s->keys[i];
		const void *f = (const char *)base + k->off;
		json_t *v;
		if (k->type == S_SECTION) {
			v = schema_dump(k->arg, f);
		} else if (k->type == S_FN) {
			v = k->arg ? field_json(k, *(const enum schema_type *)k->arg, f) : NULL;
		} else {
			v = field_json(k, k->type, f);
		}
		if (v)
			json_object_set_new(o, k->name, v);
	}
	return o;
}
