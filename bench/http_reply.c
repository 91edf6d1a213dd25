/*
 * http_reply — see http_reply.h. The head is collected whole (it is small)
 * and parsed once its blank line has arrived; the body is only counted.
 */
#include "http_reply.h"

#include <string.h>
#include <strings.h>

void http_reply_reset(struct http_reply *r)
{
	r->state = HTTP_REPLY_HEAD;
	r->status = 0;
	r->close = false;
	r->content_length = 0;
	r->body_left = 0;
	r->error = NULL;
	r->head_len = 0;
}

static void fail(struct http_reply *r, const char *why)
{
	r->state = HTTP_REPLY_ERROR;
	r->error = why;
}

/* Case-insensitive: does the comma-separated header value contain token? */
static bool value_has_token(const char *v, size_t len, const char *token)
{
	size_t tl = strlen(token);
	size_t i = 0;
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t start = i;
		while (i < len && v[i] != ',')
			i++;
		size_t end = i;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (end - start == tl && strncasecmp(v + start, token, tl) == 0)
			return true;
	}
	return false;
}

/* Parse head[0..len) which ends with CRLFCRLF (or LFLF). */
static void parse_head(struct http_reply *r, size_t len)
{
	const char *p = r->head;
	const char *end = r->head + len;
	int minor;

	if (len < 12 || strncmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') {
		fail(r, "bad status line");
		return;
	}
	minor = p[7] - '0';
	if (p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') {
		fail(r, "bad status code");
		return;
	}
	r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

	bool have_length = false;
	bool keep_alive = false;
	bool close = false;
	const char *line = memchr(p, '\n', (size_t)(end - p));
	while (line && ++line < end) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		size_t ll = (size_t)(eol - line);
		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		if (ll == 0)
			break;	/* the blank line */
		const char *colon = memchr(line, ':', ll);
		if (!colon) {
			fail(r, "header without colon");
			return;
		}
		size_t nl = (size_t)(colon - line);
		const char *v = colon + 1;
		size_t vl = ll - nl - 1;
		while (vl > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		if (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
			uint64_t n = 0;
			size_t i = 0;
			for (; i < vl && v[i] >= '0' && v[i] <= '9'; i++) {
				if (n > (UINT64_MAX - 9) / 10) {
					fail(r, "Content-Length overflow");
					return;
				}
				n = n * 10 + (uint64_t)(v[i] - '0');
			}
			while (i < vl && (v[i] == ' ' || v[i] == '\t'))
				i++;
			if (i == 0 || i != vl) {
				fail(r, "bad Content-Length");
				return;
			}
			if (have_length && n != r->content_length) {
				fail(r, "conflicting Content-Length");
				return;
			}
			r->content_length = n;
			have_length = true;
		} else if (nl == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
			if (!value_has_token(v, vl, "identity")) {
				fail(r, "Transfer-Encoding not supported");
				return;
			}
		} else if (nl == 10 && strncasecmp(line, "Connection", 10) == 0) {
			if (value_has_token(v, vl, "close"))
				close = true;
			if (value_has_token(v, vl, "keep-alive"))
				keep_alive = true;
		}
		line = eol;
	}

	r->close = close || (minor == 0 && !keep_alive);
	bool bodyless = (r->status >= 100 && r->status < 200) || r->status == 204 || r->status == 304;
	if (bodyless) {
		r->content_length = 0;
	} else if (!have_length) {
		fail(r, "response without Content-Length");
		return;
	}
	r->body_left = r->content_length;
	r->state = r->body_left ? HTTP_REPLY_BODY : HTTP_REPLY_DONE;
}

size_t http_reply_feed(struct http_reply *r, const char *data, size_t len)
{
	size_t used = 0;

	if (r->state == HTTP_REPLY_HEAD) {
		/* Copy byte-wise up to the end of the head so that body bytes are
		 * never copied; heads are small and this runs once per response. */
		while (used < len) {
			if (r->head_len == sizeof(r->head)) {
				fail(r, "response head too long");
				return used;
			}
			char c = data[used++];
			r->head[r->head_len++] = c;
			if (c != '\n')
				continue;
			size_t n = r->head_len;
			if ((n >= 4 && memcmp(r->head + n - 4, "\r\n\r\n", 4) == 0) ||
			    (n >= 2 && memcmp(r->head + n - 2, "\n\n", 2) == 0)) {
				parse_head(r, n);
				break;
			}
		}
	}
	if (r->state == HTTP_REPLY_BODY && used < len) {
		size_t avail = len - used;
		size_t take = r->body_left < avail ? (size_t)r->body_left : avail;
		r->body_left -= take;
		used += take;
		if (r->body_left == 0)
			r->state = HTTP_REPLY_DONE;
	}
	return used;
}
