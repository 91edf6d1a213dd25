/*
 * template — see template.h.
 *
 * A template compiles to a flat array of nodes; a section node records the
 * index just past its closing tag, so rendering is a loop with no recursion
 * into the parser and no allocation beyond the output buffer.
 */
#include "template.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define TEMPLATE_MAX_DEPTH 8			/* instances > first|last, and a margin */

enum tnode_kind {
	TNODE_TEXT = 0,
	TNODE_VALUE,				/* {{name}} */
	TNODE_SECTION,				/* {{#name}} */
	TNODE_INVERTED,				/* {{^name}} */
};

enum tname {
	TNAME_SERVICE = 0,
	TNAME_COUNT,
	TNAME_INSTANCES,
	TNAME_ID,
	TNAME_ADDRESS,
	TNAME_PORT,
	TNAME_ENDPOINT,				/* address:port, [v6]:port */
	TNAME_SSL_PORT,
	TNAME_WEIGHT,
	TNAME_PAYLOAD,				/* payload.KEY */
	TNAME_PAYLOAD_LIST,			/* {{#payload}}: each key and value */
	TNAME_KEY,
	TNAME_VALUE,
	TNAME_FIRST,
	TNAME_LAST,
	TNAME_COUNT_OF_NAMES
};

/* How a name may be used. */
enum tuse {
	TUSE_VALUE = 0,				/* {{name}} only */
	TUSE_LIST,				/* {{#name}} repeats, {{^name}} when empty */
	TUSE_FLAG,				/* {{#name}}/{{^name}} only: a condition */
	TUSE_BOTH,				/* a value, and a condition: is it set? */
};

/* Each name: how it is spelled, how it is used, which section gives it meaning. */
static const struct {
	const char *spelling;
	enum tuse use;
	enum tname inside;			/* TNAME_SERVICE: anywhere */
} tnames[TNAME_COUNT_OF_NAMES] = {
	[TNAME_SERVICE] = { "service", TUSE_VALUE, TNAME_SERVICE },
	[TNAME_COUNT] = { "count", TUSE_VALUE, TNAME_SERVICE },
	[TNAME_INSTANCES] = { "instances", TUSE_LIST, TNAME_SERVICE },
	[TNAME_ID] = { "id", TUSE_VALUE, TNAME_INSTANCES },
	[TNAME_ADDRESS] = { "address", TUSE_VALUE, TNAME_INSTANCES },
	[TNAME_PORT] = { "port", TUSE_VALUE, TNAME_INSTANCES },
	[TNAME_ENDPOINT] = { "endpoint", TUSE_VALUE, TNAME_INSTANCES },
	[TNAME_SSL_PORT] = { "ssl_port", TUSE_BOTH, TNAME_INSTANCES },
	[TNAME_WEIGHT] = { "weight", TUSE_VALUE, TNAME_INSTANCES },
	[TNAME_PAYLOAD] = { "payload.", TUSE_BOTH, TNAME_INSTANCES },
	[TNAME_PAYLOAD_LIST] = { "payload", TUSE_LIST, TNAME_INSTANCES },
	[TNAME_KEY] = { "key", TUSE_VALUE, TNAME_PAYLOAD_LIST },
	[TNAME_VALUE] = { "value", TUSE_VALUE, TNAME_PAYLOAD_LIST },
	[TNAME_FIRST] = { "first", TUSE_FLAG, TNAME_INSTANCES },
	[TNAME_LAST] = { "last", TUSE_FLAG, TNAME_INSTANCES },
};

struct tnode {
	enum tnode_kind kind;
	enum tname name;			/* VALUE, SECTION, INVERTED */
	const char *text;			/* TEXT: borrowed from the template's copy */
	size_t len;				/* TEXT: bytes; PAYLOAD: key bytes at `text` */
	size_t end;				/* SECTION, INVERTED: index past the section */
};

struct template {
	char *src;				/* owned copy; nodes point into it */
	struct tnode *node;			/* owned */
	size_t n;
};

struct tparse {
	struct template *t;
	size_t cap;
	const char *text;			/* the whole template, for line:col */
	char *err;
	size_t errlen;
	size_t open[TEMPLATE_MAX_DEPTH];	/* node indexes of open sections */
	size_t depth;
};

static bool tparse_fail(struct tparse *p, const char *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Report a mistake at `at` as "LINE:COL: what"; always false. */
static bool tparse_fail(struct tparse *p, const char *at, const char *fmt, ...)
{
	unsigned line = 1, col = 1;
	for (const char *c = p->text; c < at; c++) {
		if (*c == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	char msg[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%u:%u: %s", line, col, msg);
	return false;
}

static struct tnode *tparse_push(struct tparse *p, enum tnode_kind kind)
{
	if (p->t->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->t->node = xrealloc(p->t->node, p->cap * sizeof(*p->t->node));
	}
	struct tnode *n = &p->t->node[p->t->n++];
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	return n;
}

static void tparse_text(struct tparse *p, const char *s, size_t len)
{
	if (len == 0)
		return;
	struct tnode *n = tparse_push(p, TNODE_TEXT);
	n->text = s;
	n->len = len;
}

/* Is the parser inside {{#list}} (instances or payload)? TNAME_SERVICE: always. */
static bool tparse_inside(const struct tparse *p, enum tname list)
{
	if (list == TNAME_SERVICE)
		return true;
	for (size_t i = 0; i < p->depth; i++) {
		const struct tnode *n = &p->t->node[p->open[i]];
		if (n->kind == TNODE_SECTION && n->name == list)
			return true;
	}
	return false;
}

/* A payload key: [A-Za-z0-9._-], as JSON keys of Curator payloads are in practice. */
static bool payload_key_ok(const char *s, size_t len)
{
	if (len == 0 || len > 128)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Look a tag's name up; payload.KEY gives its key in *key and *key_len. */
static bool tname_lookup(const char *s, size_t len, enum tname *out, const char **key,
			 size_t *key_len)
{
	for (int i = 0; i < TNAME_COUNT_OF_NAMES; i++) {
		size_t sl = strlen(tnames[i].spelling);
		if (i == TNAME_PAYLOAD) {
			if (len > sl && memcmp(s, tnames[i].spelling, sl) == 0) {
				*out = TNAME_PAYLOAD;
				*key = s + sl;
				*key_len = len - sl;
				return payload_key_ok(*key, *key_len);
			}
		} else if (len == sl && memcmp(s, tnames[i].spelling, sl) == 0) {
			*out = (enum tname)i;
			return true;
		}
	}
	return false;
}

/*
 * A tag that is alone on its line: [line_start, tag) and (tag_end, line_end)
 * hold only spaces and tabs. Returns where the line's text resumes after
 * the tag (past its newline), or NULL when the tag is not alone.
 */
static const char *standalone_end(const char *line_start, const char *tag, const char *tag_end,
				  const char *end)
{
	for (const char *c = line_start; c < tag; c++)
		if (*c != ' ' && *c != '\t')
			return NULL;
	const char *c = tag_end;
	while (c < end && (*c == ' ' || *c == '\t'))
		c++;
	if (c < end && *c == '\r' && c + 1 < end && c[1] == '\n')
		return c + 2;
	if (c < end && *c == '\n')
		return c + 1;
	return c == end ? c : NULL;
}

/* One tag's inside, between "{{" at `at` and "}}". */
static bool tparse_tag(struct tparse *p, const char *at, const char *s, size_t len)
{
	while (len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0)
		return tparse_fail(p, at, "empty tag");
	char sigil = *s;
	if (sigil == '!')
		return true;
	if (sigil == '#' || sigil == '^' || sigil == '/') {
		s++;
		len--;
	}
	char shown[64];
	snprintf(shown, sizeof(shown), "%.*s", (int)(len < 48 ? len : 48), s);

	enum tname name;
	const char *key = NULL;
	size_t key_len = 0;
	if (!tname_lookup(s, len, &name, &key, &key_len))
		return tparse_fail(p, at, "unknown tag '%s'", shown);

	if (sigil == '/') {
		if (p->depth == 0)
			return tparse_fail(p, at, "'{{/%s}}' closes no open section", shown);
		struct tnode *open = &p->t->node[p->open[p->depth - 1]];
		if (open->name != name ||
		    (name == TNAME_PAYLOAD && (open->len != key_len || memcmp(open->text, key, key_len))))
			return tparse_fail(p, at, "'{{/%s}}' does not close the section open here",
					   shown);
		p->depth--;
		open->end = p->t->n;
		return true;
	}
	enum tname inside = tnames[name].inside;
	if (!tparse_inside(p, inside))
		return tparse_fail(p, at, "'%s' has a meaning only inside {{#%s}}", shown,
				   tnames[inside].spelling);
	if (sigil == '#' || sigil == '^') {
		if (tnames[name].use == TUSE_VALUE)
			return tparse_fail(p, at, "'%s' is not a section (sections: instances, payload, "
					   "first, last, ssl_port, payload.KEY)", shown);
		if ((name == TNAME_INSTANCES || name == TNAME_PAYLOAD_LIST) && tparse_inside(p, name))
			return tparse_fail(p, at, "'%s' cannot be nested in itself", shown);
		if (p->depth == TEMPLATE_MAX_DEPTH)
			return tparse_fail(p, at, "sections nested too deep at '%s'", shown);
		struct tnode *n = tparse_push(p, sigil == '#' ? TNODE_SECTION : TNODE_INVERTED);
		n->name = name;
		n->text = key;
		n->len = key_len;
		p->open[p->depth++] = p->t->n - 1;
		return true;
	}
	if (tnames[name].use == TUSE_LIST || tnames[name].use == TUSE_FLAG)
		return tparse_fail(p, at, "'%s' is a section: write {{#%s}}...{{/%s}}", shown, shown, shown);
	struct tnode *n = tparse_push(p, TNODE_VALUE);
	n->name = name;
	n->text = key;
	n->len = key_len;
	return true;
}

struct template *template_compile(const char *text, size_t len, char *err, size_t errlen)
{
	struct template *t = xcalloc(1, sizeof(*t));
	t->src = xmalloc(len + 1);
	memcpy(t->src, text, len);
	t->src[len] = '\0';
	struct tparse p = { .t = t, .text = t->src, .err = err, .errlen = errlen };

	const char *c = t->src, *end = t->src + len, *line = t->src;
	while (c < end) {
		const char *open = memmem(c, (size_t)(end - c), "{{", 2);
		if (!open) {
			tparse_text(&p, c, (size_t)(end - c));
			break;
		}
		const char *close = memmem(open + 2, (size_t)(end - open - 2), "}}", 2);
		if (!close) {
			tparse_fail(&p, open, "'{{' without '}}'");
			goto fail;
		}
		for (const char *q = c; q < open; q++)
			if (*q == '\n')
				line = q + 1;
		char sigil = open[2 + strspn(open + 2, " \t")];
		const char *resume = close + 2;
		const char *text_end = open;
		if (sigil == '#' || sigil == '^' || sigil == '/' || sigil == '!') {
			const char *after = standalone_end(line, open, close + 2, end);
			if (after) {
				text_end = line > c ? line : c;
				resume = after;
			}
		}
		tparse_text(&p, c, (size_t)(text_end - c));
		if (!tparse_tag(&p, open, open + 2, (size_t)(close - open - 2)))
			goto fail;
		c = resume;
		if (resume != close + 2)
			line = resume;
	}
	if (p.depth > 0) {
		const struct tnode *n = &t->node[p.open[p.depth - 1]];
		tparse_fail(&p, end, "section '%s' is never closed", tnames[n->name].spelling);
		goto fail;
	}
	return t;
fail:
	template_free(t);
	return NULL;
}

bool template_uses_payload(const struct template *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->node[i].kind != TNODE_TEXT &&
		    (t->node[i].name == TNAME_PAYLOAD || t->node[i].name == TNAME_PAYLOAD_LIST))
			return true;
	return false;
}

void template_free(struct template *t)
{
	if (!t)
		return;
	free(t->node);
	free(t->src);
	free(t);
}

struct tout {
	char *buf;
	size_t len;
	size_t cap;
};

static void tout_add(struct tout *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		while (o->len + n + 1 > o->cap)
			o->cap = o->cap ? 2 * o->cap : 256;
		o->buf = xrealloc(o->buf, o->cap);
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void tout_str(struct tout *o, const char *s)
{
	if (s)
		tout_add(o, s, strlen(s));
}

static void tout_uint(struct tout *o, unsigned long long v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "%llu", v);
	tout_add(o, b, (size_t)n);
}

static const char *payload_value(const struct template_instance *in, const char *key, size_t len)
{
	for (size_t i = 0; i < in->n_payload; i++)
		if (strlen(in->payload_keys[i]) == len && memcmp(in->payload_keys[i], key, len) == 0)
			return in->payload_values[i];
	return NULL;
}

/* Where rendering is: the instance, the payload pair, the innermost list's position. */
struct tpos {
	size_t inst;				/* SIZE_MAX outside {{#instances}} */
	size_t pair;				/* SIZE_MAX outside {{#payload}} */
	size_t at;				/* position in the innermost list */
	size_t len;				/* that list's length */
};

struct trender {
	const struct template *t;
	const char *service;
	const struct template_instance *v;
	size_t n;
	struct tout out;
};

static void trender_value(struct trender *r, const struct tnode *nd, const struct tpos *pos)
{
	const struct template_instance *in = pos->inst < r->n ? &r->v[pos->inst] : NULL;
	switch (nd->name) {
	case TNAME_SERVICE:
		tout_str(&r->out, r->service);
		return;
	case TNAME_COUNT:
		tout_uint(&r->out, r->n);
		return;
	default:
		break;
	}
	if (!in)
		return;
	switch (nd->name) {
	case TNAME_ID:
		tout_str(&r->out, in->id);
		break;
	case TNAME_ADDRESS:
		tout_str(&r->out, in->address);
		break;
	case TNAME_PORT:
		tout_uint(&r->out, in->port);
		break;
	case TNAME_ENDPOINT: {
		bool v6 = in->address && strchr(in->address, ':');
		tout_str(&r->out, v6 ? "[" : "");
		tout_str(&r->out, in->address);
		tout_str(&r->out, v6 ? "]:" : ":");
		tout_uint(&r->out, in->port);
		break;
	}
	case TNAME_SSL_PORT:
		if (in->ssl_port)
			tout_uint(&r->out, in->ssl_port);
		break;
	case TNAME_WEIGHT:
		tout_uint(&r->out, in->weight);
		break;
	case TNAME_PAYLOAD:
		tout_str(&r->out, payload_value(in, nd->text, nd->len));
		break;
	case TNAME_KEY:
		if (pos->pair < in->n_payload)
			tout_str(&r->out, in->payload_keys[pos->pair]);
		break;
	case TNAME_VALUE:
		if (pos->pair < in->n_payload)
			tout_str(&r->out, in->payload_values[pos->pair]);
		break;
	default:
		break;
	}
}

static void trender_range(struct trender *r, size_t from, size_t to, const struct tpos *pos);

/* A section or inverted section at node i, given where rendering is. */
static void trender_section(struct trender *r, size_t i, const struct tpos *pos)
{
	const struct tnode *nd = &r->t->node[i];
	bool inverted = nd->kind == TNODE_INVERTED;
	size_t len;
	switch (nd->name) {
	case TNAME_INSTANCES:
	case TNAME_PAYLOAD_LIST:
		len = nd->name == TNAME_INSTANCES ? r->n
		      : pos->inst < r->n ? r->v[pos->inst].n_payload : 0;
		if (inverted) {
			if (len == 0)
				trender_range(r, i + 1, nd->end, pos);
			return;
		}
		for (size_t k = 0; k < len; k++) {
			struct tpos in = *pos;
			if (nd->name == TNAME_INSTANCES)
				in.inst = k;
			else
				in.pair = k;
			in.at = k;
			in.len = len;
			trender_range(r, i + 1, nd->end, &in);
		}
		return;
	default:
		break;
	}
	const struct template_instance *in = pos->inst < r->n ? &r->v[pos->inst] : NULL;
	bool on = false;
	if (nd->name == TNAME_FIRST)
		on = pos->at == 0;
	else if (nd->name == TNAME_LAST)
		on = pos->at + 1 == pos->len;
	else if (nd->name == TNAME_SSL_PORT)
		on = in && in->ssl_port != 0;
	else if (nd->name == TNAME_PAYLOAD)
		on = in && payload_value(in, nd->text, nd->len) != NULL;
	if (on != inverted)
		trender_range(r, i + 1, nd->end, pos);
}

static void trender_range(struct trender *r, size_t from, size_t to, const struct tpos *pos)
{
	for (size_t i = from; i < to;) {
		const struct tnode *nd = &r->t->node[i];
		switch (nd->kind) {
		case TNODE_TEXT:
			tout_add(&r->out, nd->text, nd->len);
			i++;
			break;
		case TNODE_VALUE:
			trender_value(r, nd, pos);
			i++;
			break;
		case TNODE_SECTION:
		case TNODE_INVERTED:
			trender_section(r, i, pos);
			i = nd->end;
			break;
		}
	}
}

char *template_render(const struct template *t, const char *service,
		      const struct template_instance *v, size_t n, size_t *len)
{
	struct trender r = { .t = t, .service = service, .v = v, .n = n };
	struct tpos top = { .inst = SIZE_MAX, .pair = SIZE_MAX };
	tout_add(&r.out, "", 0);
	trender_range(&r, 0, t->n, &top);
	*len = r.out.len;
	return r.out.buf;
}
