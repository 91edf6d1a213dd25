/*
 * render_formats — the built-in render formats: the templates shipped in
 * conf/templates/, compiled into the binary (src/render_formats.c.in, filled
 * in by meson from those files) so `format: nginx_upstream` needs no file
 * on the host, and a user who wants a variant starts from a copy.
 */
#ifndef ZKLB_RENDER_FORMATS_H
#define ZKLB_RENDER_FORMATS_H

/* The template text of a built-in format, or NULL when there is none of that name. */
const char *render_format_text(const char *name);

/* "nginx_upstream, haproxy_servers, json, lines": for messages. */
const char *render_format_names(void);

#endif
