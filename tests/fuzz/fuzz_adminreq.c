/*
 * libFuzzer target for adminreq: what zklb itself reads of an admin API
 * request head (method, path, query, the bearer token). The input is parsed
 * whole and at every prefix a reader might hold, and the answer is checked
 * for consistency: a head reported complete lies within the input, so do its
 * path, query and token, and a shorter prefix of a complete head is never
 * complete with a different length. Anything but a clean return is a finding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adminreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* [p, p + n) lies within [buf, buf + len)? */
static int inside(const char *buf, size_t len, const char *p, size_t n)
{
	return p >= buf && p <= buf + len && n <= (size_t)(buf + len - p);
}

static void check(const char *buf, size_t len)
{
	struct adminreq r;
	enum adminreq_status s = adminreq_parse(buf, len, &r);
	/* Too large only when the limit is reached without an end, or the end lies past it. */
	if (s == ADMINREQ_TOO_LARGE && len < ADMINREQ_HEAD_MAX)
		abort();
	if (s != ADMINREQ_OK)
		return;
	if (r.head_len == 0 || r.head_len > len || r.head_len > ADMINREQ_HEAD_MAX)
		abort();
	if (!r.path || r.path_len == 0 || r.path[0] != '/' || !inside(buf, r.head_len, r.path, r.path_len))
		abort();
	if (r.query && !inside(buf, r.head_len, r.query, r.query_len))
		abort();
	if (r.token && !inside(buf, r.head_len, r.token, r.token_len))
		abort();
	if (memchr(r.path, '?', r.path_len))
		abort();
	/* The token compare reads only the secret and what the head holds. */
	static const char secret[] = "fuzz-secret-token";
	int ok = adminreq_token_ok(&r, secret, sizeof(secret) - 1);
	if (ok && (r.token_len != sizeof(secret) - 1 || memcmp(r.token, secret, r.token_len) != 0))
		abort();
	(void)adminreq_path_is(&r, "/metrics");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes, so ASan sees any read past the end. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	check(buf, size);
	/* A reader sees the head in pieces: every prefix must parse as well. */
	struct adminreq whole;
	if (adminreq_parse(buf, size, &whole) == ADMINREQ_OK) {
		for (size_t n = whole.head_len; n > 0 && n + 64 > whole.head_len; n--) {
			struct adminreq part;
			enum adminreq_status s = adminreq_parse(buf, n, &part);
			if (n < whole.head_len && s == ADMINREQ_OK)
				abort();	/* complete before its blank line? */
		}
	}
	free(buf);
	return 0;
}
