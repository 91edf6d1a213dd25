/*
 * render — see render.h.
 */
#include "render.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

void render_wait_change(struct render_wait *w, uint64_t now_ms)
{
	if (w->first_ms == 0)
		w->first_ms = now_ms;
	w->last_ms = now_ms;
}

uint64_t render_wait_due(const struct render_wait *w, uint64_t min_ms, uint64_t max_ms)
{
	if (w->first_ms == 0)
		return UINT64_MAX;
	uint64_t quiet = w->last_ms + min_ms, cap = w->first_ms + max_ms;
	return quiet < cap ? quiet : cap;
}

void render_wait_done(struct render_wait *w)
{
	w->first_ms = 0;
	w->last_ms = 0;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool render_host_ok(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
		return true;
	size_t len = strlen(s);
	if (len == 0 || len > 253)
		return false;
	size_t label = 0;
	for (size_t i = 0; i <= len; i++) {
		char c = s[i];
		if (c == '.' || c == '\0') {
			/* No empty label, none starting or ending with '-'. */
			if (label == 0 || label > 63 || s[i - label] == '-' || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (is_alnum(c) || c == '-') {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

bool render_token_ok(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > RENDER_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != ':' && s[i] != '-')
			return false;
	return true;
}
