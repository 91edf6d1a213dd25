/*
 * adminreq — what zklb itself reads of an admin API request head: the
 * method, the path and query, and the bearer token. Nothing else of the head
 * matters to it (no body is read, every response closes the connection), so
 * nothing else is parsed.
 *
 * The head is parsed whole once its blank line has arrived; until then the
 * caller keeps reading (within its size limit and deadline). Every byte comes
 * from whoever can reach admin.listen: a malformed head is a 400, never a
 * crash.
 *
 * Pure: no sockets, no clock, no allocation.
 */
#ifndef ZKLB_ADMINREQ_H
#define ZKLB_ADMINREQ_H

#include <stdbool.h>
#include <stddef.h>

/* The longest head the admin API reads; a longer one is refused (431). */
#define ADMINREQ_HEAD_MAX 8192

enum adminreq_method {
	ADMINREQ_GET = 0,
	ADMINREQ_HEAD,
	ADMINREQ_POST,			/* the runtime API; parameters in the query, no body read */
	ADMINREQ_OTHER,			/* a well-formed method the API does not answer (501) */
};

enum adminreq_status {
	ADMINREQ_INCOMPLETE = 0,	/* no blank line yet: read more */
	ADMINREQ_OK,			/* a whole head, parsed */
	ADMINREQ_BAD,			/* malformed (400) */
	ADMINREQ_TOO_LARGE,		/* no blank line within ADMINREQ_HEAD_MAX (431) */
};

/* The parsed head; pointers refer into the caller's buffer. */
struct adminreq {
	enum adminreq_method method;
	const char *path;		/* ref: the target up to '?', starts with '/' */
	size_t path_len;
	const char *query;		/* ref: after '?', or NULL */
	size_t query_len;
	const char *token;		/* ref: the credentials of "Authorization: Bearer X", or NULL */
	size_t token_len;
	size_t head_len;		/* bytes of the head, blank line included */
};

/*
 * Parse the head at the start of buf[0..len). HTTP/1.0 and 1.1 only; lines
 * end in CRLF; no control bytes, no obs-fold; a second Authorization header
 * is malformed. On ADMINREQ_OK, r describes it.
 */
enum adminreq_status adminreq_parse(const char *buf, size_t len, struct adminreq *r);

/* Is r's path exactly `path`? */
bool adminreq_path_is(const struct adminreq *r, const char *path);

/*
 * Does r carry the bearer token want[0..want_len)? Takes the same time for
 * every presented token of a given length, whatever its bytes, so the token
 * cannot be guessed byte by byte from response times.
 */
bool adminreq_token_ok(const struct adminreq *r, const char *want, size_t want_len);

#endif
