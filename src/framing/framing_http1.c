/*
 * framing_http1 — HTTP/1.x message boundaries for framing.c.
 *
 * Two http_parser instances, one per direction, find where each request and
 * each response ends (Content-Length, chunked with extensions and trailers).
 * Responses are matched to requests in order through a small FIFO of request
 * methods, which is what tells a HEAD response (no body, whatever its
 * headers say) from a GET one.
 *
 * What poisons the connection (see framing.h):
 *   close     Connection: close on either side, or HTTP/1.0 without
 *             keep-alive: the backend is about to close it. Also a final
 *             response that ends before its request's body is all sent.
 *   upgrade   an Upgrade request, CONNECT, or a 101 response: the bytes that
 *             follow are not HTTP any more. An Upgrade request poisons even if
 *             the server might decline it: that is rare and not worth a model.
 *   unframed  a response without Content-Length or chunked coding, whose end
 *             is the connection's close.
 *   unsolicited  a response with no request waiting for it (408, say).
 *   overflow  more than HTTP1_PIPELINE_MAX requests awaiting responses.
 *   error     anything http_parser rejects (including Content-Length with
 *             chunked coding, which is how requests get smuggled).
 *
 * Interim 1xx responses (100 Continue, 103 Early Hints) complete as messages
 * of their own but do not answer the request. 204 and 304 have no body.
 * A request is pushed on the FIFO once its headers are complete, because a
 * server may answer before the body is in (413, or 100 Continue itself).
 */
#include "framing_ops.h"

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>

/* Requests that may await their responses at once; more poisons ("overflow"). */
#define HTTP1_PIPELINE_MAX 32

struct http1_state {
	http_parser request;		/* client -> backend; .data is this state */
	http_parser response;		/* backend -> client; .data is this state */
	bool request_open;		/* a request has begun and not ended */
	bool request_body;		/* ...and its headers are in: it is on the FIFO */
	bool response_open;		/* a response has begun and not ended */
	enum framing_verdict poison;	/* set by a callback to stop the parser */
	uint8_t pending[HTTP1_PIPELINE_MAX];	/* ring of enum http_method, oldest at pending_head */
	uint32_t pending_head;		/* index of the oldest request awaiting its response */
	uint32_t pending_count;		/* requests whose final response has not ended */
};

/* Would the sender of this message keep the connection open after it? */
static bool http1_keep_alive(const http_parser *p)
{
	if (p->flags & F_CONNECTION_CLOSE)
		return false;
	if (p->http_major != 1)
		return false;
	if (p->http_minor >= 1)
		return true;
	return (p->flags & F_CONNECTION_KEEP_ALIVE) != 0;
}

/* Record a poison from inside a callback; the nonzero return stops the parser. */
static int http1_stop(struct http1_state *s, enum framing_verdict v)
{
	s->poison = v;
	return -1;
}

static int http1_request_begin(http_parser *p)
{
	struct http1_state *s = p->data;
	s->request_open = true;
	return 0;
}

static int http1_request_headers(http_parser *p)
{
	struct http1_state *s = p->data;
	/* p->upgrade covers CONNECT and "Upgrade" with "Connection: upgrade";
	 * F_UPGRADE alone (no Connection token) may still be honoured by a lax
	 * server, so it poisons too. */
	if (p->upgrade || (p->flags & F_UPGRADE) || p->method == HTTP_CONNECT)
		return http1_stop(s, FRAMING_UPGRADE);
	if (!http1_keep_alive(p))
		return http1_stop(s, FRAMING_CLOSE);
	if (s->pending_count == HTTP1_PIPELINE_MAX)
		return http1_stop(s, FRAMING_OVERFLOW);
	s->pending[(s->pending_head + s->pending_count) % HTTP1_PIPELINE_MAX] = (uint8_t)p->method;
	s->pending_count++;
	s->request_body = true;
	return 0;
}

static int http1_request_complete(http_parser *p)
{
	struct http1_state *s = p->data;
	s->request_open = false;
	s->request_body = false;
	return 0;
}

static int http1_response_begin(http_parser *p)
{
	struct http1_state *s = p->data;
	if (s->pending_count == 0)
		return http1_stop(s, FRAMING_UNSOLICITED);
	s->response_open = true;
	return 0;
}

/* Returns 1 for "this response has no body", as http_parser expects. */
static int http1_response_headers(http_parser *p)
{
	struct http1_state *s = p->data;
	unsigned status = p->status_code;

	if (status == 101 || p->upgrade)
		return http1_stop(s, FRAMING_UPGRADE);
	if (status / 100 == 1)
		return 1;
	if (!http1_keep_alive(p))
		return http1_stop(s, FRAMING_CLOSE);
	if (s->pending[s->pending_head] == HTTP_HEAD || status == 204 || status == 304)
		return 1;
	if (!(p->flags & (F_CHUNKED | F_CONTENTLENGTH)))
		return http1_stop(s, FRAMING_UNFRAMED);
	return 0;
}

static int http1_response_complete(http_parser *p)
{
	struct http1_state *s = p->data;
	s->response_open = false;
	if (p->status_code / 100 == 1)
		return 0;
	/* Answered before its body is in (413, 417, a 401 to Expect:
	 * 100-continue): the server may read the rest, discard it, or close;
	 * which one is not on the wire. */
	if (s->pending_count == 1 && s->request_body)
		return http1_stop(s, FRAMING_CLOSE);
	s->pending_head = (s->pending_head + 1) % HTTP1_PIPELINE_MAX;
	s->pending_count--;
	return 0;
}

static const http_parser_settings http1_request_settings = {
	.on_message_begin = http1_request_begin,
	.on_headers_complete = http1_request_headers,
	.on_message_complete = http1_request_complete,
};

static const http_parser_settings http1_response_settings = {
	.on_message_begin = http1_response_begin,
	.on_headers_complete = http1_response_headers,
	.on_message_complete = http1_response_complete,
};

static void http1_init(void *state)
{
	struct http1_state *s = state;
	http_parser_init(&s->request, HTTP_REQUEST);
	http_parser_init(&s->response, HTTP_RESPONSE);
	s->request.data = s;
	s->response.data = s;
}

static enum framing_verdict http1_feed(struct http1_state *s, http_parser *p,
				       const http_parser_settings *settings,
				       const char *buf, size_t len)
{
	size_t n = http_parser_execute(p, settings, buf, len);
	if (s->poison != FRAMING_OK)
		return s->poison;
	if (HTTP_PARSER_ERRNO(p) != HPE_OK)
		return FRAMING_ERROR;
	/* Set without a callback veto only when a callback was skipped; belt
	 * and braces, since the bytes after it belong to another protocol. */
	if (p->upgrade)
		return FRAMING_UPGRADE;
	if (n != len)
		return FRAMING_ERROR;
	return FRAMING_OK;
}

static enum framing_verdict http1_feed_request(void *state, const char *buf, size_t len)
{
	struct http1_state *s = state;
	return http1_feed(s, &s->request, &http1_request_settings, buf, len);
}

static enum framing_verdict http1_feed_response(void *state, const char *buf, size_t len)
{
	struct http1_state *s = state;
	return http1_feed(s, &s->response, &http1_response_settings, buf, len);
}

static enum framing_verdict http1_at_boundary(const void *state)
{
	const struct http1_state *s = state;
	if (s->request_open || s->response_open || s->pending_count > 0)
		return FRAMING_PARTIAL;
	return FRAMING_OK;
}

const struct framing_ops framing_http1_ops = {
	.name = "http1",
	.state_size = sizeof(struct http1_state),
	.init = http1_init,
	.feed_request = http1_feed_request,
	.feed_response = http1_feed_response,
	.at_boundary = http1_at_boundary,
};
