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
 *   pinned    Authorization or WWW-Authenticate carrying NTLM or Negotiate:
 *             those schemes authenticate the connection, not the request, so
 *             the next client would inherit the first one's identity.
 *   ambiguous a head that another parser could frame differently: a
 *             Transfer-Encoding other than one lone `chunked`, a bare LF line
 *             end, obs-fold (a line starting with SP or HT), a stray CR, or a
 *             control byte. http_parser tolerates some of these; the backend
 *             may read them otherwise, so the bytes are relayed but the
 *             connection is never reused.
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
#include <string.h>
#include <strings.h>

/* Requests that may await their responses at once; more poisons ("overflow"). */
#define HTTP1_PIPELINE_MAX 32

/* Headers whose values the tracker looks at; one bit each in http1_head.field. */
enum http1_field {
	HTTP1_FIELD_OTHER = 0,
	HTTP1_FIELD_AUTH,		/* Authorization, WWW-Authenticate, Proxy-Authenticate/-orization */
	HTTP1_FIELD_TE,			/* Transfer-Encoding */
};

/* Longest header name or value prefix the tracker compares; longer ones are "other". */
#define HTTP1_TOKEN_MAX 24

/*
 * One direction's view of the head being parsed: the byte scanner for line
 * ends and control bytes, and the header name/value being matched. Constant
 * size whatever the head's length.
 */
struct http1_head {
	bool in_head;			/* bytes fed now belong to a head (or lie between messages) */
	uint8_t prev;			/* last head byte scanned; 0 at the start of a head */
	bool after_start_line;		/* the start line has ended: a line may be a header */
	enum http1_field field;		/* the header whose value is being read */
	bool in_value;			/* the last callback was a value piece */
	char name[HTTP1_TOKEN_MAX];	/* lower-cased header name so far, truncated */
	uint8_t name_len;		/* bytes in name; HTTP1_TOKEN_MAX + 1 = too long */
	char value[HTTP1_TOKEN_MAX];	/* the value so far, truncated */
	uint8_t value_len;		/* bytes in value; HTTP1_TOKEN_MAX + 1 = too long */
	uint8_t te_count;		/* Transfer-Encoding headers in this message */
	bool te_lone_chunked;		/* ...and the one there is says exactly "chunked" */
};

struct http1_state {
	http_parser request;		/* client -> backend; .data is this state */
	http_parser response;		/* backend -> client; .data is this state */
	struct http1_head request_head;	/* scanner of the request heads */
	struct http1_head response_head;	/* scanner of the response heads */
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

static struct http1_head *http1_head_of(http_parser *p)
{
	struct http1_state *s = p->data;
	return p == &s->request ? &s->request_head : &s->response_head;
}

static void http1_head_start(struct http1_head *h)
{
	memset(h, 0, sizeof(*h));
	h->in_head = true;
}

/*
 * Scan head bytes for what http_parser tolerates but another parser may read
 * differently. Returns how many bytes from the start are fine: len, or the
 * offset of the first bad byte (h has then seen the bytes before it).
 */
static size_t http1_head_scan(struct http1_head *h, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = (uint8_t)buf[i];
		uint8_t prev = h->prev;
		if (c == '\n' && prev != '\r')
			return i;			/* bare LF */
		if (c != '\n' && prev == '\r')
			return i;			/* CR not followed by LF */
		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return i;			/* control byte */
		if (prev == '\n' && c != '\r') {
			if (h->after_start_line && (c == ' ' || c == '\t'))
				return i;		/* obs-fold */
			h->after_start_line = true;
		}
		h->prev = c;
	}
	return len;
}

/* Append [at, at+len) to a truncated token; lower-case it when fold. */
static void http1_token_add(char *tok, uint8_t *tok_len, const char *at, size_t len, bool fold)
{
	for (size_t i = 0; i < len && *tok_len <= HTTP1_TOKEN_MAX; i++) {
		if (*tok_len == HTTP1_TOKEN_MAX) {
			*tok_len = HTTP1_TOKEN_MAX + 1;
			break;
		}
		char c = at[i];
		if (fold && c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		tok[(*tok_len)++] = c;
	}
}

static bool http1_token_is(const char *tok, uint8_t tok_len, const char *want)
{
	size_t n = strlen(want);
	return tok_len == n && memcmp(tok, want, n) == 0;
}

/* A whole header value is in: act on the fields the tracker watches. */
static int http1_value_done(struct http1_state *s, struct http1_head *h)
{
	/* Trim the optional whitespace http_parser may leave at the end. */
	while (h->value_len > 0 && h->value_len <= HTTP1_TOKEN_MAX &&
	       (h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t'))
		h->value_len--;
	if (h->field == HTTP1_FIELD_AUTH) {
		/* The scheme is the first token: "NTLM TlRMTVNT...", "Negotiate YII...". */
		static const char *const schemes[] = { "ntlm", "negotiate" };
		for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
			size_t n = strlen(schemes[i]);
			if (h->value_len >= n && strncasecmp(h->value, schemes[i], n) == 0 &&
			    (h->value_len == n || h->value[n] == ' ' || h->value[n] == ','))
				return http1_stop(s, FRAMING_PINNED);
		}
	} else if (h->field == HTTP1_FIELD_TE) {
		h->te_count++;
		h->te_lone_chunked = h->te_count == 1 && h->value_len == 7 &&
				     strncasecmp(h->value, "chunked", 7) == 0;
	}
	return 0;
}

/* The value being read is complete (its line ended, or another field began). */
static int http1_value_end(struct http1_state *s, struct http1_head *h)
{
	if (!h->in_value)
		return 0;
	h->in_value = false;
	h->name_len = 0;
	return http1_value_done(s, h);
}

static int http1_header_field(http_parser *p, const char *at, size_t len)
{
	struct http1_state *s = p->data;
	struct http1_head *h = http1_head_of(p);
	if (http1_value_end(s, h) != 0)
		return -1;
	http1_token_add(h->name, &h->name_len, at, len, true);
	return 0;
}

static int http1_header_value(http_parser *p, const char *at, size_t len)
{
	struct http1_head *h = http1_head_of(p);
	if (!h->in_value) {
		h->in_value = true;
		h->value_len = 0;
		if (http1_token_is(h->name, h->name_len, "authorization") ||
		    http1_token_is(h->name, h->name_len, "www-authenticate") ||
		    http1_token_is(h->name, h->name_len, "proxy-authorization") ||
		    http1_token_is(h->name, h->name_len, "proxy-authenticate"))
			h->field = HTTP1_FIELD_AUTH;
		else if (http1_token_is(h->name, h->name_len, "transfer-encoding"))
			h->field = HTTP1_FIELD_TE;
		else
			h->field = HTTP1_FIELD_OTHER;
	}
	if (h->field != HTTP1_FIELD_OTHER)
		http1_token_add(h->value, &h->value_len, at, len, false);
	return 0;
}

/*
 * The head is complete: finish its last header, judge Transfer-Encoding, and
 * pause the parser so that http1_feed knows where the head ended (the bytes
 * after it are a body, not to be scanned as a head). Nonzero: poisoned.
 */
static int http1_head_done(http_parser *p)
{
	struct http1_state *s = p->data;
	struct http1_head *h = http1_head_of(p);
	if (http1_value_end(s, h) != 0)
		return -1;
	if (h->te_count > 0 && !h->te_lone_chunked)
		return http1_stop(s, FRAMING_AMBIGUOUS);
	h->in_head = false;
	http_parser_pause(p, 1);
	return 0;
}

/* The message is complete: what follows is the next head. Pauses, as above. */
static void http1_message_done(http_parser *p)
{
	http1_head_start(http1_head_of(p));
	http_parser_pause(p, 1);
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
	if (http1_head_done(p) != 0)
		return -1;
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
	http1_message_done(p);
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

	if (http1_head_done(p) != 0)
		return -1;
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
	http1_message_done(p);
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
	.on_header_field = http1_header_field,
	.on_header_value = http1_header_value,
	.on_headers_complete = http1_request_headers,
	.on_message_complete = http1_request_complete,
};

static const http_parser_settings http1_response_settings = {
	.on_message_begin = http1_response_begin,
	.on_header_field = http1_header_field,
	.on_header_value = http1_header_value,
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
	http1_head_start(&s->request_head);
	http1_head_start(&s->response_head);
}

/*
 * Run the parser over buf. The head and message callbacks pause it, so each
 * turn of the loop ends at the latest where a head or a message ends; within
 * a head, at the end of a line. Within a head the scanner looks ahead first, and the parser is run only up to and
 * including the first byte the scanner objects to: a parser error or poison
 * at or before that byte decides, else the byte does (if the head had not
 * ended before it). So the first problem in the bytes decides the verdict,
 * however the bytes were split into reads.
 */
static enum framing_verdict http1_feed(struct http1_state *s, http_parser *p,
				       const http_parser_settings *settings,
				       const char *buf, size_t len)
{
	struct http1_head *h = http1_head_of(p);
	while (len > 0) {
		bool in_head = h->in_head;
		size_t limit = len, bad_at = SIZE_MAX;
		if (in_head) {
			/* One head line per turn: a value is judged when its line ends,
			 * before anything after it can stop the parser. */
			const char *lf = memchr(buf, '\n', len);
			if (lf)
				limit = (size_t)(lf - buf) + 1;
			struct http1_head probe = *h;
			size_t k = http1_head_scan(&probe, buf, limit);
			if (k < limit) {
				bad_at = k;
				limit = k + 1;
			}
		}
		size_t n = http_parser_execute(p, settings, buf, limit);
		if (s->poison != FRAMING_OK)
			return s->poison;
		bool paused = HTTP_PARSER_ERRNO(p) == HPE_PAUSED;
		if (!paused && HTTP_PARSER_ERRNO(p) != HPE_OK)
			return FRAMING_ERROR;
		/* The parser went through the bad byte without the head ending first. */
		if (n >= bad_at && bad_at != SIZE_MAX)
			return FRAMING_AMBIGUOUS;
		/* Still inside the head: remember what the scanner saw of it. */
		if (in_head && h->in_head) {
			http1_head_scan(h, buf, n);
			if (n == limit && buf[n - 1] == '\n' && http1_value_end(s, h) != 0)
				return s->poison;
		}
		if (paused)
			http_parser_pause(p, 0);
		else if (n != limit)
			break;
		buf += n;
		len -= n;
	}
	if (p->upgrade)
		return FRAMING_UPGRADE;
	if (len != 0)
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
