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
	TNAME_SSL_PORT,
	TNAME_WEIGHT,
	TNAME_PAYLOAD,				/* payload.KEY */
	TNAME_FIRST,
	TNAME_LAST,
	TNAME_COUNT_OF_NAMES
};

/* Each name: how it is spelled, whether it is a section, whether it needs an instance. */
static const struct {
	const char *spelling;
	bool section;
	bool per_instance;
} tnames[TNAME_COUNT_OF_NAMES] = {
	[TNAME_SERVICE] = { "service", false, false },
	[TNAME_COUNT] = { "count", false, false },
	[TNAME_INSTANCES] = { "instances", true, false },
	[TNAME_ID] = { "id", false, true },
	[TNAME_ADDRESS] = { "address", false, true },
	[TNAME_PORT] = { "port", false, true },
	[TNAME_SSL_PORT] = { "ssl_port", false, true },
	[TNAME_WEIGHT] = { "weight", false, true },
	[TNAME_PAYLOAD] = { "payload.", false, true },
	[TNAME_FIRST] = { "first", true, true },
	[TNAME_LAST] = { "last", true, true },
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

/* Is a per-instance name usable here: inside {{#instances}}? */
static bool tparse_in_instances(const struct tparse *p)
{
	for (size_t i = 0; i < p->depth; i++) {
		const struct tnode *n = &p->t->node[p->open[i]];
		if (n->kind == TNODE_SECTION && n->name == TNAME_INSTANCES)
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
		if (open->name != name)
			return tparse_fail(p, at, "'{{/%s}}' does not close the section open here",
					   shown);
		p->depth--;
		open->end = p->t->n;
		return true;
	}
	if (tnames[name].per_instance && !tparse_in_instances(p))
		return tparse_fail(p, at, "'%s' has a meaning only inside {{#instances}}", shown);
	if (sigil == '#' || sigil == '^') {
		if (!tnames[name].section)
			return tparse_fail(p, at, "'%s' is not a section (sections: instances, first, last)",
					   shown);
		if (name == TNAME_INSTANCES && tparse_in_instances(p))
			return tparse_fail(p, at, "'%s' cannot be nested in itself", shown);
		if (p->depth == TEMPLATE_MAX_DEPTH)
			return tparse_fail(p, at, "sections nested too deep at '%s'", shown);
		struct tnode *n = tparse_push(p, sigil == '#' ? TNODE_SECTION : TNODE_INVERTED);
		n->name = name;
		p->open[p->depth++] = p->t->n - 1;
		return true;
	}
	if (tnames[name].section)
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

struct trender {
	const struct template *t;
	const char *service;
	const struct template_instance *v;
	size_t n;
	struct tout out;
};

static void trender_value(struct trender *r, const struct tnode *nd, size_t idx)
{
	const struct template_instance *in = idx < r->n ? &r->v[idx] : NULL;
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
	default:
		break;
	}
}

/* Nodes [from, to) for instance idx (SIZE_MAX outside {{#instances}}). */
static void trender_range(struct trender *r, size_t from, size_t to, size_t idx)
{
	for (size_t i = from; i < to;) {
		const struct tnode *nd = &r->t->node[i];
		switch (nd->kind) {
		case TNODE_TEXT:
			tout_add(&r->out, nd->text, nd->len);
			i++;
			continue;
		case TNODE_VALUE:
			trender_value(r, nd, idx);
			i++;
			continue;
		case TNODE_SECTION:
		case TNODE_INVERTED:
			break;
		}
		bool inverted = nd->kind == TNODE_INVERTED;
		if (nd->name == TNAME_INSTANCES) {
			if (!inverted)
				for (size_t k = 0; k < r->n; k++)
					trender_range(r, i + 1, nd->end, k);
			else if (r->n == 0)
				trender_range(r, i + 1, nd->end, idx);
		} else {
			bool on = nd->name == TNAME_FIRST ? idx == 0 : idx + 1 == r->n;
			if (on != inverted)
				trender_range(r, i + 1, nd->end, idx);
		}
		i = nd->end;
	}
}

char *template_render(const struct template *t, const char *service,
		      const struct template_instance *v, size_t n, size_t *len)
{
	struct trender r = { .t = t, .service = service, .v = v, .n = n };
	tout_add(&r.out, "", 0);
	trender_range(&r, 0, t->n, SIZE_MAX);
	*len = r.out.len;
	return r.out.buf;
}
