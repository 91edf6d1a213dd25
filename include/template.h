/*
 * template — the small Mustache subset that render: entries are written in.
 *
 *   {{service}} {{count}}                       the service, its instance count
 *   {{#instances}} ... {{/instances}}           once per instance, in order
 *   {{^instances}} ... {{/instances}}           only when there is none
 *   inside instances: {{id}} {{address}} {{port}} {{ssl_port}} {{weight}}
 *                     {{endpoint}}              address:port, or [address]:port for IPv6
 *                     {{payload.KEY}}           ("" when absent; ssl_port "" when none)
 *                     {{#ssl_port}} {{#payload.KEY}} ... and {{^...}}: is it set?
 *                     {{#payload}} {{key}} {{value}} {{/payload}}: each pair, in order
 *                     {{#first}} {{^first}} {{#last}} {{^last}}: position in the
 *                     innermost list (instances, or payload inside it)
 *   {{! a comment }}
 *
 * A section, inverted-section, closing or comment tag alone on its line
 * (spaces aside) takes the whole line with it, as in Mustache, so templates
 * can be laid out one tag per line. Values are inserted as they are: whoever
 * renders checks them first (render.c refuses any that could add a line or a
 * directive). Every mistake is found by template_compile(), never while
 * rendering: an unknown tag, a name outside the section that gives it
 * meaning, an unclosed or mismatched section, an unclosed "{{".
 *
 * Pure: no I/O; the caller reads the file.
 */
#ifndef ZKLB_TEMPLATE_H
#define ZKLB_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct template;

/* One instance as a template sees it; strings are borrowed for the call. */
struct template_instance {
	const char *id;
	const char *address;
	uint16_t port;
	uint16_t ssl_port;			/* 0 = none */
	uint32_t weight;
	const char *const *payload_keys;	/* [n_payload] */
	const char *const *payload_values;	/* [n_payload] */
	size_t n_payload;
};

/*
 * Compile text[0..len). NULL on a mistake, with "LINE:COL: what" in err
 * (1-based, at the tag's "{{"), for the caller to prefix with the file name.
 */
struct template *template_compile(const char *text, size_t len, char *err, size_t errlen);
void template_free(struct template *t);

/* Does t show any payload value (payload.KEY, or a {{#payload}} section)? */
bool template_uses_payload(const struct template *t);

/* Render for n instances; returns a malloc'd buffer of *len bytes (NUL-terminated). */
char *template_render(const struct template *t, const char *service,
		      const struct template_instance *v, size_t n, size_t *len);

#endif
