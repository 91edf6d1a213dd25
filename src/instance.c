/*
 * instance — see instance.h. Decoders are written against what Curator's
 * JsonInstanceSerializer (Jackson with default settings) and Finagle's
 * ServerSet codec accept, so a node a Java client routes to is routed to
 * here, and a node they reject is skipped here with a reason.
 */
#include "instance.h"
#include "util.h"
#include "utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const service_type_names[] = {
	[INSTANCE_DYNAMIC] = "DYNAMIC",
	[INSTANCE_STATIC] = "STATIC",
	[INSTANCE_PERMANENT] = "PERMANENT",
	[INSTANCE_DYNAMIC_SEQUENTIAL] = "DYNAMIC_SEQUENTIAL",
};

const char *instance_service_type_name(enum instance_service_type t)
{
	if ((size_t)t < sizeof(service_type_names) / sizeof(service_type_names[0]))
		return service_type_names[t];
	return "?";
}

const char *instance_verdict_name(enum instance_verdict v)
{
	switch (v) {
	case INSTANCE_APPLY: return "apply";
	case INSTANCE_KEEP: return "keep";
	case INSTANCE_HOLD: return "hold";
	}
	return "?";
}

static void set_reason(char *reason, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_reason(char *reason, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!reason || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, len, fmt, ap);
	va_end(ap);
	/* A value quoted "%.40s" (or the whole, cut to fit) may end inside a character. */
	utf8_scrub(reason);
}

/* Printable ASCII/UTF-8 without control characters: safe in logs and JSON. */
static bool text_clean(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/*
 * Copy an announced address into out, dropping the brackets some writers put
 * around IPv6 literals. Only characters that can appear in a DNS name or an
 * IP literal (with a zone) are accepted: anything else could not be
 * connected to and would only pollute logs.
 */
static bool host_copy(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);

	if (n >= 2 && in[0] == '[' && in[n - 1] == ']') {
		in++;
		n -= 2;
	}
	if (n == 0 || n >= outlen)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
			  c == ':' || c == '%';
		if (!ok)
			return false;
	}
	memcpy(out, in, n);
	out[n] = '\0';
	return true;
}

enum num_result {
	NUM_ABSENT = 0,			/* missing or null */
	NUM_OK,
	NUM_INVALID,			/* wrong type or not an integer */
};

/*
 * An integer as Jackson coerces one by default: a JSON integer, an integral
 * real, or a string of decimal digits.
 */
static enum num_result json_int(const json_t *v, long long *out)
{
	if (!v || json_is_null(v))
		return NUM_ABSENT;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return NUM_OK;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!isfinite(d) || d != floor(d) || d < -9.0e18 || d > 9.0e18)
			return NUM_INVALID;
		*out = (long long)d;
		return NUM_OK;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		long long x = 0;
		if (n == 0 || n > 18)
			return NUM_INVALID;
		for (size_t i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return NUM_INVALID;
			x = x * 10 + (s[i] - '0');
		}
		*out = x;
		return NUM_OK;
	}
	return NUM_INVALID;
}

/* A port field: absent (0), or 1..65535. false with a reason otherwise. */
static bool port_field(const json_t *obj, const char *key, uint16_t *out, char *reason,
		       size_t reason_len)
{
	long long x = 0;

	*out = 0;
	switch (json_int(json_object_get(obj, key), &x)) {
	case NUM_ABSENT:
		return true;
	case NUM_INVALID:
		set_reason(reason, reason_len, "%s is not an integer", key);
		return false;
	case NUM_OK:
		break;
	}
	if (x < 1 || x > 65535) {
		set_reason(reason, reason_len, "%s %lld out of range 1..65535", key, x);
		return false;
	}
	*out = (uint16_t)x;
	return true;
}

/* Jackson's boolean coercion: true/false, "true"/"false" (any case), numbers. */
static enum num_result json_bool(const json_t *v, bool *out)
{
	long long x;

	if (!v || json_is_null(v))
		return NUM_ABSENT;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return NUM_OK;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (strcasecmp(s, "true") == 0) {
			*out = true;
			return NUM_OK;
		}
		if (strcasecmp(s, "false") == 0) {
			*out = false;
			return NUM_OK;
		}
		return NUM_INVALID;
	}
	if (json_is_number(v) && json_int(v, &x) == NUM_OK) {
		*out = x != 0;
		return NUM_OK;
	}
	return NUM_INVALID;
}

static json_t *parse(const char *data, size_t len, char *reason, size_t reason_len)
{
	json_error_t err;
	json_t *root;

	if (len == 0) {
		set_reason(reason, reason_len, "empty data");
		return NULL;
	}
	if (len > INSTANCE_MAX_DATA) {
		set_reason(reason, reason_len, "data is %zu bytes (limit %d)", len,
			   INSTANCE_MAX_DATA);
		return NULL;
	}
	/* Jackson ignores what follows the first document; so do we. */
	root = json_loadb(data, len, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
	if (!root) {
		set_reason(reason, reason_len, "not JSON: %s at byte %d", err.text, err.position);
		return NULL;
	}
	if (!json_is_object(root)) {
		set_reason(reason, reason_len, "not a JSON object");
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Carry obj's top-level scalar fields into i->payload, as far as they fit. */
static void payload_flatten(struct instance *i, const json_t *obj)
{
	const char *key;
	const json_t *val;
	if (!json_is_object(obj))
		return;
	json_object_foreach((json_t *)obj, key, val) {
		char num[32];
		const char *text;
		if (key[0] == '@')
			continue;	/* Jackson's type tag, not data */
		if (json_is_string(val)) {
			text = json_string_value(val);
			if (strlen(text) != json_string_length(val))
				continue;	/* an embedded NUL */
		} else if (json_is_integer(val)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(val));
			text = num;
		} else if (json_is_boolean(val)) {
			text = json_is_true(val) ? "true" : "false";
		} else {
			continue;	/* objects, arrays, null, reals */
		}
		size_t kl = strlen(key) + 1, vl = strlen(text) + 1;
		if (i->payload_len + kl + vl > sizeof(i->payload))
			continue;
		memcpy(i->payload + i->payload_len, key, kl);
		memcpy(i->payload + i->payload_len + kl, text, vl);
		i->payload_len = (uint16_t)(i->payload_len + kl + vl);
	}
}

bool instance_payload_next(const struct instance *i, size_t *off, const char **key,
			   const char **value)
{
	if (*off >= i->payload_len)
		return false;
	*key = i->payload + *off;
	*value = *key + strlen(*key) + 1;
	*off = (size_t)(*value - i->payload) + strlen(*value) + 1;
	return true;
}

enum instance_decode instance_from_curator_json(const char *name, const json_t *root,
						struct instance *out, char *reason,
						size_t reason_len)
{
	const char *id = name;
	const json_t *v;
	bool enabled = true;

	memset(out, 0, sizeof(*out));
	out->weight = 1;
	if (!json_is_object(root)) {
		set_reason(reason, reason_len, "not a JSON object");
		return INSTANCE_BAD;
	}
	v = json_object_get(root, "address");
	if (!v || json_is_null(v)) {
		set_reason(reason, reason_len, "no address");
		return INSTANCE_BAD;
	}
	if (!json_is_string(v) || !host_copy(json_string_value(v), out->host, sizeof(out->host))) {
		set_reason(reason, reason_len, "invalid address");
		return INSTANCE_BAD;
	}
	if (!port_field(root, "port", &out->port, reason, reason_len) ||
	    !port_field(root, "sslPort", &out->ssl_port, reason, reason_len))
		return INSTANCE_BAD;
	if (out->port == 0 && out->ssl_port == 0) {
		set_reason(reason, reason_len, "no port");
		return INSTANCE_BAD;
	}

	v = json_object_get(root, "serviceType");
	out->service_type = INSTANCE_DYNAMIC;
	if (v && !json_is_null(v)) {
		size_t i;
		if (!json_is_string(v)) {
			set_reason(reason, reason_len, "serviceType is not a string");
			return INSTANCE_BAD;
		}
		for (i = 0; i < sizeof(service_type_names) / sizeof(service_type_names[0]); i++) {
			if (strcmp(json_string_value(v), service_type_names[i]) == 0)
				break;
		}
		if (i == sizeof(service_type_names) / sizeof(service_type_names[0])) {
			/* Jackson fails on an unknown enum constant: Curator skips it too. */
			set_reason(reason, reason_len, "unknown serviceType \"%.40s\"",
				   json_string_value(v));
			return INSTANCE_BAD;
		}
		out->service_type = (enum instance_service_type)i;
	}

	/*
	 * The id is the child's name (the node Curator made for the id), except
	 * for DYNAMIC_SEQUENTIAL, whose node name is the id plus ZooKeeper's
	 * counter: Curator's users see the JSON id there.
	 */
	v = json_object_get(root, "id");
	if (!id || !*id ||
	    (out->service_type == INSTANCE_DYNAMIC_SEQUENTIAL && json_is_string(v) &&
	     json_string_length(v) > 0))
		id = json_is_string(v) ? json_string_value(v) : NULL;
	if (!id || !*id) {
		set_reason(reason, reason_len, "no id");
		return INSTANCE_BAD;
	}
	if (strlen(id) >= sizeof(out->id) || !text_clean(id)) {
		set_reason(reason, reason_len, "invalid id (too long or control characters)");
		return INSTANCE_BAD;
	}
	strcpy(out->id, id);

	if (json_bool(json_object_get(root, "enabled"), &enabled) == NUM_INVALID) {
		set_reason(reason, reason_len, "enabled is not a boolean");
		return INSTANCE_BAD;
	}
	out->enabled = enabled;

	{
		long long t = 0;
		/* Informational only: a malformed time does not cost the instance. */
		if (json_int(json_object_get(root, "registrationTimeUTC"), &t) == NUM_OK && t > 0)
			out->registered_at_ms = t;
	}
	payload_flatten(out, json_object_get(root, "payload"));
	/* name, uriSpec and anything unknown: ignored, as Curator does. */

	if (!out->enabled) {
		set_reason(reason, reason_len, "enabled is false");
		return INSTANCE_DISABLED;
	}
	return INSTANCE_OK;
}

enum instance_decode instance_decode_curator(const char *name, const char *data, size_t len,
					     struct instance *out, char *reason, size_t reason_len)
{
	enum instance_decode r;
	json_t *root;

	memset(out, 0, sizeof(*out));
	root = parse(data, len, reason, reason_len);
	if (!root)
		return INSTANCE_BAD;
	r = instance_from_curator_json(name, root, out, reason, reason_len);
	json_decref(root);
	return r;
}

enum instance_decode instance_decode_serverset(const char *data, size_t len,
					       struct instance *out, char *reason,
					       size_t reason_len)
{
	enum instance_decode r = INSTANCE_BAD;
	const json_t *ep, *v;
	json_t *root;

	memset(out, 0, sizeof(*out));
	out->weight = 1;
	out->service_type = INSTANCE_DYNAMIC;
	root = parse(data, len, reason, reason_len);
	if (!root)
		return INSTANCE_BAD;

	ep = json_object_get(root, "serviceEndpoint");
	if (!json_is_object(ep)) {
		set_reason(reason, reason_len, "no serviceEndpoint");
		goto out;
	}
	v = json_object_get(ep, "host");
	if (!json_is_string(v) || !host_copy(json_string_value(v), out->host, sizeof(out->host))) {
		set_reason(reason, reason_len, v ? "invalid serviceEndpoint.host"
						 : "no serviceEndpoint.host");
		goto out;
	}
	if (!port_field(ep, "port", &out->port, reason, reason_len))
		goto out;
	if (out->port == 0) {
		set_reason(reason, reason_len, "no serviceEndpoint.port");
		goto out;
	}
	instance_endpoint(out->host, out->port, out->id, sizeof(out->id));

	v = json_object_get(root, "status");
	if (!json_is_string(v)) {
		set_reason(reason, reason_len, v ? "status is not a string" : "no status");
		goto out;
	}
	if (strcmp(json_string_value(v), "ALIVE") != 0) {
		out->enabled = false;
		set_reason(reason, reason_len, "status %.40s", json_string_value(v));
		r = INSTANCE_DISABLED;
		goto out;
	}
	out->enabled = true;
	/* Finagle writes a metadata map; shard is part of the ServerSet format. */
	v = json_object_get(root, "shard");
	if (json_is_integer(v)) {
		json_t *shard = json_pack("{sO}", "shard", v);
		payload_flatten(out, shard);
		json_decref(shard);
	}
	payload_flatten(out, json_object_get(root, "metadata"));
	r = INSTANCE_OK;
out:
	json_decref(root);
	return r;
}

json_t *instance_to_curator_json(const struct instance *i, const char *name)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(name ? name : ""));
	json_object_set_new(o, "id", json_string(i->id));
	json_object_set_new(o, "address", json_string(i->host));
	json_object_set_new(o, "port", i->port ? json_integer(i->port) : json_null());
	json_object_set_new(o, "sslPort", i->ssl_port ? json_integer(i->ssl_port) : json_null());
	if (i->payload_len) {
		json_t *payload = json_object();
		const char *key, *value;
		for (size_t off = 0; instance_payload_next(i, &off, &key, &value);)
			json_object_set_new(payload, key, json_string(value));
		json_object_set_new(o, "payload", payload);
	} else {
		json_object_set_new(o, "payload", json_null());
	}
	json_object_set_new(o, "registrationTimeUTC", json_integer(i->registered_at_ms));
	json_object_set_new(o, "serviceType",
			    json_string(instance_service_type_name(i->service_type)));
	json_object_set_new(o, "uriSpec", json_null());
	if (!i->enabled)
		json_object_set_new(o, "enabled", json_false());
	return o;
}

bool instance_java_class_ok(const char *name)
{
	bool start = true;
	size_t n = 0;

	if (!name || !*name)
		return false;
	for (const char *c = name; *c; c++, n++) {
		bool letter = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
			      *c == '$';
		bool digit = *c >= '0' && *c <= '9';
		if (*c == '.' && !start) {
			start = true;
			continue;
		}
		if (!(letter || (digit && !start)))
			return false;
		start = false;
	}
	return !start && n <= 255;
}

/* Jackson's wrapper-array form: [type id, value] (value is copied). */
static json_t *typed_array(const char *java_type, const json_t *value)
{
	json_t *a = json_array();

	json_array_append_new(a, json_string(java_type));
	json_array_append_new(a, json_deep_copy(value));
	return a;
}

json_t *instance_curator_payload(const json_t *payload, const char *payload_class)
{
	if (!payload || json_is_null(payload))
		return json_null();
	if (json_is_object(payload)) {
		const json_t *own = json_object_get(payload, "@class");
		const char *cls = payload_class ? payload_class
				  : json_is_string(own) ? json_string_value(own)
				  : "java.util.LinkedHashMap";
		json_t *o = json_object();
		const char *k;
		json_t *v;

		/* Jackson writes the type id first; jansson keeps insertion order. */
		json_object_set_new(o, "@class", json_string(cls));
		json_object_foreach((json_t *)payload, k, v) {
			if (strcmp(k, "@class") != 0)
				json_object_set_new(o, k, json_deep_copy(v));
		}
		return o;
	}
	if (json_is_array(payload))
		return typed_array("java.util.ArrayList", payload);
	if (json_is_integer(payload) &&
	    (json_integer_value(payload) < INT32_MIN || json_integer_value(payload) > INT32_MAX))
		return typed_array("java.lang.Long", payload);
	return json_deep_copy(payload);
}

void instance_endpoint(const char *host, uint16_t port, char *buf, size_t len)
{
	if (strchr(host, ':'))
		snprintf(buf, len, "[%s]:%u", host, (unsigned)port);
	else
		snprintf(buf, len, "%s:%u", host, (unsigned)port);
}

int instance_cmp_nodes(const struct instance *a, const char *a_node, const struct instance *b,
		       const char *b_node)
{
	int c = strcmp(a->id, b->id);

	if (c != 0)
		return c;
	if (a->registered_at_ms != b->registered_at_ms)
		return a->registered_at_ms > b->registered_at_ms ? -1 : 1;
	return strcmp(b_node, a_node);	/* the greater name first */
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(((const struct instance *)a)->id, ((const struct instance *)b)->id);
}

void instance_sort(struct instance *v, size_t n)
{
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_id);
}

static int cmp_key_id(const void *key, const void *elem)
{
	return strcmp(key, ((const struct instance *)elem)->id);
}

long instance_find(const struct instance *v, size_t n, const char *id)
{
	const struct instance *x;

	if (n == 0)
		return -1;
	x = bsearch(id, v, n, sizeof(*v), cmp_key_id);
	return x ? (long)(x - v) : -1;
}

bool instance_same(const struct instance *a, const struct instance *b)
{
	return strcmp(a->id, b->id) == 0 && strcmp(a->host, b->host) == 0 &&
	       a->port == b->port && a->ssl_port == b->ssl_port && a->weight == b->weight &&
	       a->enabled == b->enabled && a->payload_len == b->payload_len &&
	       memcmp(a->payload, b->payload, a->payload_len) == 0;
}

void instance_diff(const struct instance *old_v, size_t n_old,
		   const struct instance *new_v, size_t n_new, struct instance_diff *out,
		   void (*each)(void *arg, enum instance_change ch, const struct instance *old_i,
				const struct instance *new_i),
		   void *arg)
{
	size_t i = 0, j = 0;

	memset(out, 0, sizeof(*out));
	while (i < n_old || j < n_new) {
		int c;
		if (i == n_old)
			c = 1;
		else if (j == n_new)
			c = -1;
		else
			c = strcmp(old_v[i].id, new_v[j].id);
		if (c < 0) {
			out->removed++;
			if (each)
				each(arg, INSTANCE_REMOVED, &old_v[i], NULL);
			i++;
		} else if (c > 0) {
			out->added++;
			if (each)
				each(arg, INSTANCE_ADDED, NULL, &new_v[j]);
			j++;
		} else {
			bool same = instance_same(&old_v[i], &new_v[j]);
			if (same)
				out->kept++;
			else
				out->changed++;
			if (each)
				each(arg, same ? INSTANCE_KEPT : INSTANCE_CHANGED, &old_v[i], &new_v[j]);
			i++;
			j++;
		}
	}
}

enum instance_verdict instance_guard_verdict(const struct instance_guard_params *p,
					     size_t n_ref, size_t n_new)
{
	if (n_ref == 0)
		return INSTANCE_APPLY;
	if (n_new == 0 && p->keep_last_known)
		return INSTANCE_KEEP;
	if (p->collapse_guard < 1.0 && n_new < n_ref) {
		double lost = (double)(n_ref - n_new);
		double limit = (p->collapse_guard > 0 ? p->collapse_guard : 0) * (double)n_ref;
		if (lost > limit)
			return INSTANCE_HOLD;
	}
	return INSTANCE_APPLY;
}

/* The reference size: the served view, or a larger one served within the window. */
static size_t guard_reference(const struct instance_guard *g,
			      const struct instance_guard_params *p, size_t n_applied, uint64_t now)
{
	bool recent = now >= g->peak_until_ms ? now - g->peak_until_ms <= p->collapse_hold_ms
					      : true;

	return recent && g->peak > n_applied ? g->peak : n_applied;
}

/* Remember the peak as a candidate of n_new replaces the served n_applied. */
static void guard_applied(struct instance_guard *g, size_t ref, size_t n_applied, size_t n_new,
			  bool collapse_accepted, uint64_t now)
{
	if (collapse_accepted || n_new >= ref) {
		g->peak = n_new;
		g->peak_until_ms = now;
	} else if (n_applied == ref) {
		/* The served view was the peak: it stays the reference for a window. */
		g->peak = n_applied;
		g->peak_until_ms = now;
	}
}

enum instance_verdict instance_guard_step(struct instance_guard *g,
					  const struct instance_guard_params *p,
					  size_t n_applied, size_t n_new, uint64_t now)
{
	size_t ref = guard_reference(g, p, n_applied, now);
	enum instance_verdict v = instance_guard_verdict(p, ref, n_new);

	if (v != INSTANCE_HOLD || p->collapse_hold_ms == 0) {
		g->state = INSTANCE_HOLD_IDLE;
		if (v == INSTANCE_KEEP)
			return v;
		guard_applied(g, ref, n_applied, n_new, v == INSTANCE_HOLD, now);
		return INSTANCE_APPLY;
	}
	if (g->state == INSTANCE_HOLD_IDLE) {
		g->state = INSTANCE_HOLD_HOLDING;
		g->hold_until_ms = now > UINT64_MAX - p->collapse_hold_ms
					   ? UINT64_MAX
					   : now + p->collapse_hold_ms;
		g->holds_total++;
		return INSTANCE_HOLD;
	}
	if (now >= g->hold_until_ms) {
		g->state = INSTANCE_HOLD_IDLE;
		guard_applied(g, ref, n_applied, n_new, true, now);
		return INSTANCE_APPLY;
	}
	return INSTANCE_HOLD;
}
