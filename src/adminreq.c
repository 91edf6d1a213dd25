/*
 * adminreq — see adminreq.h.
 */
#include "adminreq.h"

#include <string.h>
#include <strings.h>

/* The blank line ending the head: offset just past it, or 0. */
static size_t head_end(const char *buf, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return i + 1;
	return 0;
}

/* RFC 9110 tchar, for method and field names. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Visible ASCII and SP/HT in a field value; obs-text (>= 0x80) tolerated. */
static bool is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The request line: METHOD SP TARGET SP HTTP/1.x */
static bool parse_request_line(const char *s, size_t n, struct adminreq *r)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ' ')
		return false;
	if (i == 3 && memcmp(s, "GET", 3) == 0)
		r->method = ADMINREQ_GET;
	else if (i == 4 && memcmp(s, "HEAD", 4) == 0)
		r->method = ADMINREQ_HEAD;
	else if (i == 4 && memcmp(s, "POST", 4) == 0)
		r->method = ADMINREQ_POST;
	else
		r->method = ADMINREQ_OTHER;
	size_t t = ++i;
	while (i < n && s[i] != ' ') {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
		i++;
	}
	if (i == t || i == n || s[t] != '/')
		return false;
	const char *target = s + t;
	size_t tlen = i - t;
	const char *q = memchr(target, '?', tlen);
	r->path = target;
	r->path_len = q ? (size_t)(q - target) : tlen;
	r->query = q ? q + 1 : NULL;
	r->query_len = q ? tlen - r->path_len - 1 : 0;
	i++;
	return n - i == 8 && memcmp(s + i, "HTTP/1.", 7) == 0 && (s[i + 7] == '0' || s[i + 7] == '1');
}

/* One header line "Name: value"; notes the bearer token. */
static bool parse_header(const char *s, size_t n, struct adminreq *r)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ':')
		return false;
	size_t name_len = i++;
	for (size_t k = i; k < n; k++)
		if (!is_value_char((unsigned char)s[k]))
			return false;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	size_t end = n;
	while (end > i && (s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	if (name_len != 13 || strncasecmp(s, "authorization", 13) != 0)
		return true;
	if (r->token)
		return false;		/* two Authorization headers: which one counts? */
	if (end - i < 7 || strncasecmp(s + i, "bearer ", 7) != 0) {
		r->token = s + i;	/* another scheme: present, never equal */
		r->token_len = 0;
		return true;
	}
	i += 7;
	while (i < end && s[i] == ' ')
		i++;
	r->token = s + i;
	r->token_len = end - i;
	return true;
}

enum adminreq_status adminreq_parse(const char *buf, size_t len, struct adminreq *r)
{
	memset(r, 0, sizeof(*r));
	size_t end = head_end(buf, len);
	if (end == 0)
		return len >= ADMINREQ_HEAD_MAX ? ADMINREQ_TOO_LARGE : ADMINREQ_INCOMPLETE;
	if (end > ADMINREQ_HEAD_MAX)
		return ADMINREQ_TOO_LARGE;
	r->head_len = end;
	size_t pos = 0;
	bool first = true;
	/* Every line, the blank last one excluded, ends in CRLF; a bare CR or LF is malformed. */
	while (pos < end - 2) {
		const char *crlf = NULL;
		for (size_t i = pos; i + 1 < end; i++) {
			if (buf[i] == '\r' || buf[i] == '\n') {
				if (buf[i] != '\r' || buf[i + 1] != '\n')
					return ADMINREQ_BAD;
				crlf = buf + i;
				break;
			}
		}
		if (!crlf)
			return ADMINREQ_BAD;
		size_t n = (size_t)(crlf - (buf + pos));
		bool ok = first ? parse_request_line(buf + pos, n, r) : parse_header(buf + pos, n, r);
		if (!ok)
			return ADMINREQ_BAD;
		first = false;
		pos += n + 2;
	}
	return first ? ADMINREQ_BAD : ADMINREQ_OK;
}

bool adminreq_path_is(const struct adminreq *r, const char *path)
{
	size_t n = strlen(path);
	return r->path && r->path_len == n && memcmp(r->path, path, n) == 0;
}

bool adminreq_token_ok(const struct adminreq *r, const char *want, size_t want_len)
{
	if (!r->token || want_len == 0)
		return false;
	/* Walk the whole secret whatever was presented; fold every difference in. */
	unsigned char diff = r->token_len != want_len;
	for (size_t i = 0; i < want_len; i++) {
		unsigned char got = i < r->token_len ? (unsigned char)r->token[i] : 0;
		diff |= (unsigned char)(got ^ (unsigned char)want[i]);
	}
	return diff == 0;
}
