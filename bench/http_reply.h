/*
 * http_reply — an incremental reader of one HTTP/1.x response, enough for a
 * load generator: status line, Content-Length and Connection headers, then a
 * body of Content-Length bytes. Chunked bodies and responses without a length
 * (other than 1xx/204/304 and HEAD-less bodies) are reported as errors: the
 * benchmark backends (nginx static files, `return 200 "..."`) always send a
 * length.
 *
 * Pure code: bytes in, state out; no sockets, no clock.
 */
#ifndef ZKLB_BENCH_HTTP_REPLY_H
#define ZKLB_BENCH_HTTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_REPLY_HEAD_MAX 8192	/* a longer status line + headers is an error */

enum http_reply_state {
	HTTP_REPLY_HEAD = 0,		/* reading the status line and headers */
	HTTP_REPLY_BODY,		/* reading body_left more bytes */
	HTTP_REPLY_DONE,		/* a complete response has been read */
	HTTP_REPLY_ERROR,		/* malformed or unsupported; see error */
};

struct http_reply {
	enum http_reply_state state;	/* where the reader is */
	int status;			/* status code, valid from BODY on */
	bool close;			/* the server said Connection: close (or HTTP/1.0 without keep-alive) */
	uint64_t content_length;	/* body size announced by the server */
	uint64_t body_left;		/* body bytes still expected (BODY) */
	const char *error;		/* static reason, valid in ERROR */
	size_t head_len;		/* bytes held in head */
	char head[HTTP_REPLY_HEAD_MAX];	/* the head collected so far (HEAD) */
};

/* Ready for the next response. */
void http_reply_reset(struct http_reply *r);

/*
 * Feed bytes. Returns how many were consumed: less than len only when the
 * response completed (DONE) before the end of data, or on ERROR. Feeding a
 * DONE or ERROR reader consumes nothing.
 */
size_t http_reply_feed(struct http_reply *r, const char *data, size_t len);

#endif
