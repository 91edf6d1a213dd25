/*
 * Unit tests for framing: recorded exchanges for HTTP/1.x, RESP and the
 * memcached text protocol, each fed three ways — every step whole, byte by
 * byte, and in random chunks for several seeds — and all three must reach
 * the same verdict. Redis reply fixtures are checked against hiredis's own
 * reader, so the fixtures themselves are known-good RESP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <hiredis/read.h>

#include "framing.h"
#include "util.h"

/* One relayed piece of an exchange, in the order it crossed zklb. */
struct step {
	bool response;		/* backend -> client; else client -> backend */
	const char *bytes;	/* the bytes relayed */
	size_t len;		/* their length */
};

#define REQ(s) { false, (s), sizeof(s) - 1 }
#define RESP(s) { true, (s), sizeof(s) - 1 }

enum feed_mode {
	FEED_WHOLE = 0,		/* one call per step */
	FEED_BYTES,		/* one call per byte */
	FEED_CHUNKS,		/* random chunk sizes */
};

#define CHUNK_SEEDS 16

static void feed(struct framing *f, const struct step *st, enum feed_mode mode, struct rng *rng)
{
	size_t off = 0;
	while (off < st->len) {
		size_t n = st->len - off;
		if (mode == FEED_BYTES)
			n = 1;
		else if (mode == FEED_CHUNKS) {
			/* Mostly tiny pieces, sometimes a large one. */
			size_t want = 1 + (rng_below(rng, 8) == 0 ? rng_below(rng, 4096)
								   : rng_below(rng, 12));
			n = MIN(n, want);
		}
		if (st->response)
			framing_feed_response(f, st->bytes + off, n);
		else
			framing_feed_request(f, st->bytes + off, n);
		off += n;
	}
}

static enum framing_verdict run(enum reuse_kind kind, const struct step *steps, size_t n,
				enum feed_mode mode, uint64_t seed)
{
	struct rng rng;
	rng_seed(&rng, seed);
	struct framing *f = framing_new(kind);
	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		feed(f, &steps[i], mode, &rng);
	enum framing_verdict v = framing_verdict(f);
	assert_int_equal(framing_reusable(f), v == FRAMING_OK);
	assert_string_equal(framing_reason(f), framing_verdict_name(v));
	framing_free(f);
	return v;
}

static void expect_script(enum reuse_kind kind, const struct step *steps, size_t n,
			  enum framing_verdict want, int line)
{
	static const char *const modes[] = { "whole", "bytes", "chunks" };
	for (int mode = FEED_WHOLE; mode <= FEED_CHUNKS; mode++) {
		uint64_t seeds = mode == FEED_CHUNKS ? CHUNK_SEEDS : 1;
		for (uint64_t seed = 1; seed <= seeds; seed++) {
			enum framing_verdict v = run(kind, steps, n, (enum feed_mode)mode, seed);
			if (v != want)
				fail_msg("line %d, fed %s (seed %llu): got %s, want %s", line,
					 modes[mode], (unsigned long long)seed,
					 framing_verdict_name(v), framing_verdict_name(want));
		}
	}
}

#define EXPECT(kind, want, ...)                                                        \
	do {                                                                           \
		const struct step steps_[] = { __VA_ARGS__ };                          \
		expect_script((kind), steps_, ARRAY_SIZE(steps_), (want), __LINE__);   \
	} while (0)

#define HTTP(want, ...) EXPECT(REUSE_HTTP1, want, __VA_ARGS__)
#define REDIS(want, ...) EXPECT(REUSE_REDIS, want, __VA_ARGS__)
#define MC(want, ...) EXPECT(REUSE_MEMCACHED, want, __VA_ARGS__)

/* ---------------------------------------------------------------- API */

static void test_api_none_and_null(void **st)
{
	(void)st;
	assert_null(framing_new(REUSE_NONE));
	assert_null(framing_new((enum reuse_kind)99));
	framing_free(NULL);
	framing_reset(NULL);
	framing_feed_request(NULL, "x", 1);
	framing_feed_response(NULL, "x", 1);
	assert_false(framing_reusable(NULL));
	assert_int_equal(framing_verdict(NULL), FRAMING_UNKNOWN);
	assert_string_equal(framing_reason(NULL), "unknown");
}

static void test_api_names(void **st)
{
	(void)st;
	static const char *const want[] = { "ok", "partial", "close", "upgrade", "pinned",
					    "unframed", "unsolicited", "unknown", "error",
					    "overflow", "ambiguous" };
	assert_int_equal(ARRAY_SIZE(want), FRAMING_VERDICT_COUNT);
	for (int v = 0; v < FRAMING_VERDICT_COUNT; v++)
		assert_string_equal(framing_verdict_name((enum framing_verdict)v), want[v]);
	assert_string_equal(framing_verdict_name(FRAMING_VERDICT_COUNT), "invalid");
	assert_string_equal(framing_verdict_name((enum framing_verdict)-1), "invalid");
}

static void test_api_fresh_is_reusable(void **st)
{
	(void)st;
	for (enum reuse_kind k = REUSE_HTTP1; k <= REUSE_MEMCACHED; k++) {
		struct framing *f = framing_new(k);
		assert_true(framing_reusable(f));
		assert_string_equal(framing_reason(f), "ok");
		framing_feed_request(f, "", 0);
		assert_true(framing_reusable(f));
		framing_free(f);
	}
}

static void test_api_poison_sticks_until_reset(void **st)
{
	(void)st;
	struct framing *f = framing_new(REUSE_HTTP1);
	framing_feed_request(f, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 37);
	assert_int_equal(framing_verdict(f), FRAMING_CLOSE);
	/* Nothing parses after a poison, not even a valid exchange. */
	framing_feed_response(f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38);
	framing_feed_request(f, "garbage", 7);
	assert_int_equal(framing_verdict(f), FRAMING_CLOSE);
	framing_reset(f);
	assert_true(framing_reusable(f));
	framing_feed_request(f, "GET / HTTP/1.1\r\n\r\n", 18);
	assert_int_equal(framing_verdict(f), FRAMING_PARTIAL);
	framing_feed_response(f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38);
	assert_true(framing_reusable(f));
	framing_free(f);
}

static void test_api_reset_between_clients(void **st)
{
	(void)st;
	/* The same tracker serves client after client on one connection. */
	for (enum reuse_kind k = REUSE_HTTP1; k <= REUSE_MEMCACHED; k++) {
		static const char *const req[] = { [REUSE_HTTP1] = "GET / HTTP/1.1\r\n\r\n",
						   [REUSE_REDIS] = "PING\r\n",
						   [REUSE_MEMCACHED] = "version\r\n" };
		static const char *const resp[] = {
			[REUSE_HTTP1] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
			[REUSE_REDIS] = "+PONG\r\n",
			[REUSE_MEMCACHED] = "VERSION 1.6.21\r\n"
		};
		struct framing *f = framing_new(k);
		for (int round = 0; round < 3; round++) {
			framing_reset(f);
			framing_feed_request(f, req[k], strlen(req[k]));
			assert_int_equal(framing_verdict(f), FRAMING_PARTIAL);
			framing_feed_response(f, resp[k], strlen(resp[k]));
			assert_true(framing_reusable(f));
		}
		framing_free(f);
	}
}

/* ---------------------------------------------------------------- HTTP/1.x */

static void test_http_simple_get(void **st)
{
	(void)st;
	HTTP(FRAMING_OK, REQ("GET /index.html HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"));
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\nHost: a\r\n"));
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"));
	/* Two exchanges in turn, then a client that leaves mid-response. */
	HTTP(FRAMING_OK, REQ("GET /a HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"), REQ("GET /b HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
}

static void test_http_partial_response_at_close(void **st)
{
	(void)st;
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"));
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\n\r\n"), RESP("HTTP/1.1 200 O"));
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
}

static void test_http_chunked(void **st)
{
	(void)st;
	/* Chunk extensions, a chunk holding CRLFs and a fake last-chunk, trailers. */
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		  "5;name=value;x=\"q\"\r\nhello\r\n"
		  "9\r\n\r\n0\r\n\r\nab\r\n"
		  "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
		  "0;last\r\nExpires: never\r\nX-Checksum: 42\r\n\r\n"));
	/* The trailer section not finished yet. */
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: b\r\n"));
	HTTP(FRAMING_PARTIAL, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"));
	/* A chunked request body. */
	HTTP(FRAMING_OK, REQ("POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			     "3\r\nabc\r\n0\r\n\r\n"),
	     RESP("HTTP/1.1 204 No Content\r\n\r\n"));
	HTTP(FRAMING_ERROR, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
}

static void test_http_pipelined(void **st)
{
	(void)st;
	/* GET, HEAD, GET in one write; the HEAD response announces a body it does not send. */
	HTTP(FRAMING_OK,
	     REQ("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n"
		 "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
		  "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
		  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nthr\r\n0\r\n\r\n"));
	/* Third response still owed. */
	HTTP(FRAMING_PARTIAL,
	     REQ("GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
		  "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"));
	/* Requests and responses interleaved, the last request still being sent. */
	HTTP(FRAMING_PARTIAL, REQ("GET /1 HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), REQ("GET /2 HTTP/1.1\r\nHo"));
}

static void test_http_pipeline_overflow(void **st)
{
	(void)st;
	char req[64 * 24];
	size_t len = 0, fits = 0;
	for (int i = 0; i < 33; i++) {
		fits = len;
		len += (size_t)snprintf(req + len, sizeof(req) - len, "GET /%02d HTTP/1.1\r\n\r\n", i);
	}
	const struct step all[] = { { false, req, len } };
	expect_script(REUSE_HTTP1, all, 1, FRAMING_OVERFLOW, __LINE__);
	/* 32 are fine. */
	const struct step max[] = { { false, req, fits } };
	expect_script(REUSE_HTTP1, max, 1, FRAMING_PARTIAL, __LINE__);
}

static void test_http_head(void **st)
{
	(void)st;
	HTTP(FRAMING_OK, REQ("HEAD /big.iso HTTP/1.1\r\nHost: a\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 4700000000\r\n\r\n"));
	HTTP(FRAMING_OK, REQ("HEAD / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
	/* No length at all is fine for HEAD: there is no body to delimit. */
	HTTP(FRAMING_OK, REQ("HEAD / HTTP/1.1\r\n\r\n"), RESP("HTTP/1.1 200 OK\r\n\r\n"));
}

static void test_http_no_body_statuses(void **st)
{
	(void)st;
	HTTP(FRAMING_OK, REQ("DELETE /x HTTP/1.1\r\n\r\n"), RESP("HTTP/1.1 204 No Content\r\n\r\n"));
	/* 304 carries the representation's Content-Length but no body. */
	HTTP(FRAMING_OK, REQ("GET /x HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\n"),
	     RESP("HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 1234\r\n\r\n"));
	/* Pipelined behind a 204, the next response still parses right. */
	HTTP(FRAMING_OK, REQ("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
}

static void test_http_100_continue(void **st)
{
	(void)st;
	HTTP(FRAMING_OK,
	     REQ("PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
	     RESP("HTTP/1.1 100 Continue\r\n\r\n"), REQ("hello"),
	     RESP("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"));
	/* Only the interim response so far: the final one is still owed. */
	HTTP(FRAMING_PARTIAL,
	     REQ("PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
	     RESP("HTTP/1.1 100 Continue\r\n\r\n"), REQ("hello"));
	/* 103 Early Hints, then the answer. */
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
		  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
	/* The server refuses before the body: whether it reads, discards or
	 * closes is unknown. */
	HTTP(FRAMING_CLOSE,
	     REQ("PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
	     RESP("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"));
}

static void test_http_connection_close(void **st)
{
	(void)st;
	HTTP(FRAMING_CLOSE, REQ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_CLOSE, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_CLOSE, REQ("GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n"));
}

static void test_http_10(void **st)
{
	(void)st;
	HTTP(FRAMING_CLOSE, REQ("GET / HTTP/1.0\r\n\r\n"),
	     RESP("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"));
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
	     RESP("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"));
	/* The client asked, the 1.0 server did not agree. */
	HTTP(FRAMING_CLOSE, REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
	     RESP("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"));
	/* A 1.1 server keeps it unless it says close. */
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
}

static void test_http_upgrade(void **st)
{
	(void)st;
	HTTP(FRAMING_UPGRADE,
	     REQ("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
	     RESP("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		  "Connection: Upgrade\r\n\r\n\x81\x05hello"));
	/* Upgrade without the Connection token still poisons. */
	HTTP(FRAMING_UPGRADE, REQ("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"));
	HTTP(FRAMING_UPGRADE, REQ("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"),
	     RESP("HTTP/1.1 200 Connection established\r\n\r\n"));
	/* A 200 that merely advertises h2 (Apache does) is not a switch. */
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nUpgrade: h2,h2c\r\nConnection: Upgrade\r\n"
		  "Content-Length: 2\r\n\r\nok"));
}

static void test_http_post_body(void **st)
{
	(void)st;
	HTTP(FRAMING_OK,
	     REQ("POST /form HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
		 "Content-Length: 26\r\n\r\nGET / HTTP/1.1\r\n\r\nmore=yes"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
	/* Client gone with part of its body sent. */
	HTTP(FRAMING_PARTIAL, REQ("POST /form HTTP/1.1\r\nContent-Length: 27\r\n\r\nGET / "));
	/* Answered early (413), body finished or not. */
	HTTP(FRAMING_CLOSE, REQ("POST /form HTTP/1.1\r\nContent-Length: 27\r\n\r\nGET / "),
	     RESP("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_CLOSE, REQ("POST /form HTTP/1.1\r\nContent-Length: 6\r\n\r\nGET"),
	     RESP("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"), REQ(" / "));
	/* An early response to an earlier request is not early. */
	HTTP(FRAMING_OK, REQ("GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), REQ("hi"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
}

static void test_http_unframed_and_errors(void **st)
{
	(void)st;
	HTTP(FRAMING_UNFRAMED, REQ("GET / HTTP/1.1\r\n\r\n"), RESP("HTTP/1.1 200 OK\r\n\r\nabc"));
	/* A coding other than chunked: framed by the close, and not a lone chunked either. */
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"));
	HTTP(FRAMING_UNSOLICITED, RESP("HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_UNSOLICITED, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n"));
	HTTP(FRAMING_ERROR, REQ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"));
	HTTP(FRAMING_ERROR, REQ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
	/* Smuggling shape: both lengths. */
	HTTP(FRAMING_ERROR, REQ("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
				"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
	HTTP(FRAMING_ERROR, REQ("GET / HTTP/1.1\r\n\r\n"), RESP("SSH-2.0-OpenSSH_9.2\r\n"));
	HTTP(FRAMING_ERROR, REQ("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"));
}

/* Connection-bound authentication: the next client would inherit the identity. */
static void test_http_ntlm_negotiate_pin(void **st)
{
	(void)st;
	HTTP(FRAMING_PINNED, REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	     RESP("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\n"
		  "Content-Length: 0\r\n\r\n"));
	HTTP(FRAMING_PINNED, REQ("GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAABAAAAB4IIog==\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_PINNED, REQ("GET / HTTP/1.1\r\nauthorization:   negotiate YIIGhgYGKwYBBQUCoIIGejCC\r\n\r\n"));
	HTTP(FRAMING_PINNED, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n"
		  "www-authenticate: Negotiate\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_PINNED, REQ("GET / HTTP/1.1\r\nProxy-Authorization: NTLM abc\r\n\r\n"));
	/* Per-request schemes, and look-alikes, stay reusable. */
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.1\r\nAuthorization: Bearer NTLM\r\n"
			     "X-Auth: NTLM\r\n\r\n"),
	     RESP("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLMish realm=\"a\"\r\n"
		  "Content-Length: 0\r\n\r\n"));
}

/* Heads another parser could frame differently: relayed, never reused. */
static void test_http_ambiguous_heads(void **st)
{
	(void)st;
	/* Transfer-Encoding other than one lone "chunked". */
	HTTP(FRAMING_AMBIGUOUS, REQ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
				    "0\r\n\r\n"));
	HTTP(FRAMING_AMBIGUOUS, REQ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
				    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"));
	/* Case and trailing blanks of a lone chunked are fine. */
	HTTP(FRAMING_OK, REQ("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n0\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
	/* Bare LF line ends, in a request and in a response. */
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\nHost: a\n\n"));
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"));
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"));
	/* obs-fold. */
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n"));
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nX-A: 1\r\n\tmore\r\nContent-Length: 0\r\n\r\n"));
	/* Control bytes in the head: http_parser rejects some itself (error), the
	 * scanner the rest; either way the connection is not reused. */
	HTTP(FRAMING_ERROR, REQ("GET / HTTP/1.1\r\nX-A: a\x01" "b\r\n\r\n"));
	HTTP(FRAMING_ERROR, REQ("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n"));
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n"));
	HTTP(FRAMING_AMBIGUOUS, REQ("GET / HTTP/1.1\r\n\r\n"),
	     RESP("HTTP/1.1 200 O\x7f\r\nContent-Length: 0\r\n\r\n"));
	/* The same bytes in a body are only a body; so is a second head after it. */
	HTTP(FRAMING_OK, REQ("POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\n\x01\n \t\x7f\n"
			     "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n\n\x01\r"
		  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
	/* The second head of a pipeline is scanned as much as the first. */
	HTTP(FRAMING_AMBIGUOUS, REQ("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\nHost: a\n\n"));
	/* A tab inside a value is allowed. */
	HTTP(FRAMING_OK, REQ("GET / HTTP/1.1\r\nX-A: a\tb\r\n\r\n"),
	     RESP("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
}

/* ---------------------------------------------------------------- RESP */

/* Between replies: all input consumed, and no reply begun (an idle reader
 * may have armed its first task, ridx 0, without reading its type byte). */
static bool hiredis_idle(const redisReader *r)
{
	return r->len == r->pos &&
	       (r->ridx == -1 || (r->ridx == 0 && r->rstack[0].type < 0));
}

/* Replies in buf per hiredis; -1 on a protocol error or a partial reply. */
static int hiredis_replies(const char *buf, size_t len)
{
	redisReader *r = redisReaderCreateWithFunctions(NULL);
	assert_non_null(r);
	int n = 0;
	void *reply = NULL;
	assert_int_equal(redisReaderFeed(r, buf, len), REDIS_OK);
	for (;;) {
		if (redisReaderGetReply(r, &reply) != REDIS_OK) {
			n = -1;
			break;
		}
		if (!reply) {
			if (!hiredis_idle(r))
				n = -1;
			break;
		}
		n++;
	}
	redisReaderFree(r);
	return n;
}

#define REDIS_REPLIES(s, n) assert_int_equal(hiredis_replies((s), sizeof(s) - 1), (n))

static void test_redis_arrays(void **st)
{
	(void)st;
	REDIS(FRAMING_OK, REQ("*1\r\n$4\r\nPING\r\n"), RESP("+PONG\r\n"));
	REDIS(FRAMING_OK, REQ("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n"), RESP("+OK\r\n"));
	REDIS_REPLIES("*3\r\n$1\r\na\r\n$0\r\n\r\n:42\r\n", 1);
	REDIS(FRAMING_OK, REQ("*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n"),
	      RESP("*3\r\n$1\r\na\r\n$0\r\n\r\n:42\r\n"));
	REDIS(FRAMING_OK, REQ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), RESP(":-5\r\n"));
	/* Binary argument with CRLF and '*' inside. */
	REDIS(FRAMING_OK, REQ("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\n\r\n*1\r\n\r\n"), RESP("+OK\r\n"));
	REDIS(FRAMING_PARTIAL, REQ("*2\r\n$3\r\nGET\r\n"));
	REDIS(FRAMING_PARTIAL, REQ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
	REDIS(FRAMING_PARTIAL, REQ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), RESP("*2\r\n$1\r\na\r\n"));
	REDIS(FRAMING_PARTIAL, REQ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), RESP("+OK\r"));
}

static void test_redis_inline(void **st)
{
	(void)st;
	REDIS(FRAMING_OK, REQ("PING\r\n"), RESP("+PONG\r\n"));
	REDIS(FRAMING_OK, REQ("get k\n"), RESP("$-1\r\n"));
	/* Blank lines run nothing and get nothing. */
	REDIS(FRAMING_OK, REQ("\r\n  \r\n\t\nEXISTS a b\r\n\n"), RESP(":0\r\n"));
	REDIS(FRAMING_PARTIAL, REQ("PING"));
	REDIS(FRAMING_PARTIAL, REQ(" "));
	/* Mixed with arrays on the same connection. */
	REDIS(FRAMING_OK, REQ("PING\r\n*1\r\n$4\r\nPING\r\nPING x\r\n"),
	      RESP("+PONG\r\n+PONG\r\n$1\r\nx\r\n"));
	/* Quotes would make sdssplitargs read something else than a plain split. */
	REDIS(FRAMING_UNKNOWN, REQ("SET k \"a b\"\r\n"));
	REDIS(FRAMING_UNKNOWN, REQ("\"SELECT\" 1\r\n"));
	REDIS(FRAMING_UNKNOWN, REQ("GET \0k\r\n"));
}

static void test_redis_errors_are_replies(void **st)
{
	(void)st;
	REDIS(FRAMING_OK, REQ("FOO\r\nGET\r\n"),
	      RESP("-ERR unknown command 'FOO', with args beginning with: \r\n"
		   "-ERR wrong number of arguments for 'get' command\r\n"));
	REDIS(FRAMING_OK, REQ("*1\r\n$4\r\nINCR\r\n"),
	      RESP("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"));
	/* After a protocol error Redis closes the connection. */
	REDIS(FRAMING_CLOSE, REQ("PING\r\n"), RESP("-ERR Protocol error: invalid bulk length\r\n"));
	/* A lone CR inside a status line is content. */
	REDIS(FRAMING_OK, REQ("PING\r\n"), RESP("+PO\rNG\r\r\n"));
}

static void test_redis_nested(void **st)
{
	(void)st;
	static const char xrange[] = "*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
				     "*2\r\n$3\r\n2-0\r\n*-1\r\n";
	REDIS_REPLIES(xrange, 1);
	REDIS(FRAMING_OK, REQ("XRANGE s - +\r\n"), RESP(xrange));
	REDIS(FRAMING_PARTIAL, REQ("XRANGE s - +\r\n"),
	      RESP("*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"));
	/* Deeper than hiredis's reader supports (7): still constant memory here. */
	char deep[40 * 4 + 16];
	size_t len = 0;
	for (int i = 0; i < 40; i++)
		len += (size_t)snprintf(deep + len, sizeof(deep) - len, "*1\r\n");
	len += (size_t)snprintf(deep + len, sizeof(deep) - len, ":1\r\n");
	const struct step steps[] = { REQ("EVAL x 0\r\n"), { true, deep, len } };
	expect_script(REUSE_REDIS, steps, ARRAY_SIZE(steps), FRAMING_OK, __LINE__);
	const struct step short_steps[] = { REQ("EVAL x 0\r\n"), { true, deep, len - 4 } };
	expect_script(REUSE_REDIS, short_steps, ARRAY_SIZE(short_steps), FRAMING_PARTIAL, __LINE__);
}

static void test_redis_null_and_empty(void **st)
{
	(void)st;
	REDIS_REPLIES("$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n", 4);
	REDIS(FRAMING_OK, REQ("GET a\r\nBLPOP l 1\r\nKEYS nomatch*\r\nGET e\r\n"),
	      RESP("$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n"));
	REDIS(FRAMING_ERROR, REQ("GET a\r\n"), RESP("$-2\r\n"));
	REDIS(FRAMING_ERROR, REQ("GET a\r\n"), RESP("*-2\r\n"));
	REDIS(FRAMING_ERROR, REQ("GET a\r\n"), RESP("$01\r\nx\r\n"));
	REDIS(FRAMING_ERROR, REQ("GET a\r\n"), RESP("$1\r\nxx\r\n"));
	/* RESP3 only follows HELLO 3, which pins: anything else is a surprise. */
	REDIS(FRAMING_ERROR, REQ("GET a\r\n"), RESP("%1\r\n+a\r\n+b\r\n"));
	REDIS(FRAMING_ERROR, REQ("GET a\r\n"), RESP("_\r\n"));
}

static void test_redis_big_bulk(void **st)
{
	(void)st;
	size_t size = 3u * 1024 * 1024 + 7;
	char *reply = malloc(size + 64);
	assert_non_null(reply);
	int hdr = snprintf(reply, 64, "$%zu\r\n", size);
	/* Payload that looks like RESP. */
	for (size_t i = 0; i < size; i++)
		reply[hdr + i] = "*1\r\n$-1\r\n+OK"[i % 13];
	memcpy(reply + hdr + size, "\r\n", 2);
	size_t len = (size_t)hdr + size + 2;
	assert_int_equal(hiredis_replies(reply, len), 1);

	const struct step steps[] = { REQ("GET big\r\n"), { true, reply, len } };
	expect_script(REUSE_REDIS, steps, ARRAY_SIZE(steps), FRAMING_OK, __LINE__);
	const struct step cut[] = { REQ("GET big\r\n"), { true, reply, len - 1 } };
	expect_script(REUSE_REDIS, cut, ARRAY_SIZE(cut), FRAMING_PARTIAL, __LINE__);

	/* The same bytes as a SET argument. */
	char *req = malloc(len + 64);
	assert_non_null(req);
	int rh = snprintf(req, 64, "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n");
	memcpy(req + rh, reply, len);
	const struct step set[] = { { false, req, (size_t)rh + len }, RESP("+OK\r\n") };
	expect_script(REUSE_REDIS, set, ARRAY_SIZE(set), FRAMING_OK, __LINE__);
	free(req);
	free(reply);
}

static void test_redis_pipelined(void **st)
{
	(void)st;
	static const char replies[] = "+OK\r\n$1\r\nv\r\n:2\r\n*2\r\n$1\r\na\r\n$-1\r\n";
	REDIS_REPLIES(replies, 4);
	REDIS(FRAMING_OK,
	      REQ("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
		  "INCR n\r\n*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n"),
	      RESP(replies));
	REDIS(FRAMING_PARTIAL, REQ("SET k v\r\nGET k\r\nINCR n\r\n"), RESP("+OK\r\n$1\r\nv\r\n"));
	REDIS(FRAMING_UNSOLICITED, REQ("GET k\r\n"), RESP("$1\r\nv\r\n+OK\r\n"));
	REDIS(FRAMING_UNSOLICITED, RESP("+OK\r\n"));
}

static void test_redis_pins(void **st)
{
	(void)st;
	REDIS(FRAMING_PINNED, REQ("*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n"), RESP("+OK\r\n"));
	REDIS(FRAMING_PINNED, REQ("select 2\r\n"), RESP("+OK\r\n"));
	REDIS(FRAMING_PINNED, REQ("*1\r\n$5\r\nmulti\r\n*1\r\n$4\r\nEXEC\r\n"),
	      RESP("+OK\r\n*0\r\n"));
	REDIS(FRAMING_PINNED, REQ("MULTI\r\nINCR a\r\nEXEC\r\n"), RESP("+OK\r\n+QUEUED\r\n*1\r\n:1\r\n"));
	REDIS(FRAMING_PINNED, REQ("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n"),
	      RESP("*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"));
	REDIS(FRAMING_PINNED, REQ("PSUBSCRIBE news.*\r\n"));
	REDIS(FRAMING_PINNED, REQ("SSUBSCRIBE s\r\n"));
	REDIS(FRAMING_PINNED, REQ("UNSUBSCRIBE a b\r\n"));
	REDIS(FRAMING_PINNED, REQ("AUTH user pass\r\n"), RESP("+OK\r\n"));
	REDIS(FRAMING_PINNED, REQ("HELLO 3\r\n"));
	REDIS(FRAMING_PINNED, REQ("CLIENT SETNAME x\r\n"));
	REDIS(FRAMING_PINNED, REQ("client reply off\r\n"));
	REDIS(FRAMING_PINNED, REQ("WATCH k\r\n"));
	REDIS(FRAMING_PINNED, REQ("MONITOR\r\n"));
	REDIS(FRAMING_PINNED, REQ("READONLY\r\n"));
	REDIS(FRAMING_PINNED, REQ("  \vASKING\r\n"));
	REDIS(FRAMING_CLOSE, REQ("QUIT\r\n"), RESP("+OK\r\n"));
	REDIS(FRAMING_CLOSE, REQ("*1\r\n$8\r\nshutdown\r\n"));
	/* Pinned as soon as the name is in, before the command is complete. */
	REDIS(FRAMING_PINNED, REQ("*2\r\n$6\r\nSELECT\r\n"));
	REDIS(FRAMING_PINNED, REQ("SELECT"), REQ(" 1"));
	/* Near misses are ordinary commands. */
	REDIS(FRAMING_OK, REQ("SELECTX 1\r\nGET SELECT\r\nSUBSCRIBERS\r\nCLIENTS\r\n"),
	      RESP("-ERR x\r\n$-1\r\n-ERR y\r\n-ERR z\r\n"));
	REDIS(FRAMING_OK, REQ("*2\r\n$3\r\nGET\r\n$6\r\nSELECT\r\n"), RESP("$-1\r\n"));
	REDIS(FRAMING_OK, REQ("EXEC\r\nDISCARD\r\nUNWATCH\r\nRESET\r\n"),
	      RESP("-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n+RESET\r\n"));
	/* \v does not end a token for Redis. */
	REDIS(FRAMING_OK, REQ("SELECT\v1\r\n"), RESP("-ERR unknown command\r\n"));
}

static void test_redis_bad_requests(void **st)
{
	(void)st;
	REDIS(FRAMING_UNKNOWN, REQ("*0\r\n"));
	REDIS(FRAMING_UNKNOWN, REQ("*-1\r\n"));
	REDIS(FRAMING_ERROR, REQ("*1\r\n:4\r\n"));
	REDIS(FRAMING_ERROR, REQ("*1\r\n$4\r\nPINGxx"));
	REDIS(FRAMING_ERROR, REQ("*x\r\n"));
	REDIS(FRAMING_ERROR, REQ("*01\r\n"));
	REDIS(FRAMING_ERROR, REQ("*1\n"));
	REDIS(FRAMING_ERROR, REQ("*1\r\n$-1\r\n"));
	REDIS(FRAMING_ERROR, REQ("*2000000\r\n"));
	REDIS(FRAMING_ERROR, REQ("*1\r\n$600000000\r\n"));
	REDIS(FRAMING_ERROR, REQ("*1\r\n$99999999999999999999\r\n"));
}

static void test_redis_inline_limit(void **st)
{
	(void)st;
	size_t len = 64 * 1024 + 1;
	char *line = malloc(len);
	assert_non_null(line);
	memset(line, 'a', len);
	const struct step steps[] = { { false, line, len } };
	expect_script(REUSE_REDIS, steps, 1, FRAMING_ERROR, __LINE__);
	const struct step fits[] = { { false, line, len - 1 } };
	expect_script(REUSE_REDIS, fits, 1, FRAMING_PARTIAL, __LINE__);
	free(line);
}

/* ---------------------------------------------------------------- memcached */

static void test_mc_get(void **st)
{
	(void)st;
	MC(FRAMING_OK, REQ("get k\r\n"), RESP("VALUE k 0 5\r\nhello\r\nEND\r\n"));
	MC(FRAMING_OK, REQ("get a b c\r\n"), RESP("END\r\n"));
	MC(FRAMING_OK, REQ("gets a b c\r\n"),
	   RESP("VALUE a 0 1 10\r\nx\r\nVALUE c 3 2 11\r\nyz\r\nEND\r\n"));
	MC(FRAMING_OK, REQ("gat 60 a b\n"), RESP("VALUE b 0 0\r\n\r\nEND\r\n"));
	MC(FRAMING_OK, REQ("gats 60 a\r\n"), RESP("END\r\n"));
	MC(FRAMING_PARTIAL, REQ("get a b\r\n"), RESP("VALUE a 0 1\r\nx\r\n"));
	MC(FRAMING_PARTIAL, REQ("get a b\r\n"), RESP("VALUE a 0 1\r\nx\r\nEN"));
	MC(FRAMING_PARTIAL, REQ("get a b"));
	MC(FRAMING_ERROR, REQ("get a\r\n"), RESP("VALUE a 0 1\r\nxy\r\nEND\r\n"));
	MC(FRAMING_ERROR, REQ("get a\r\n"), RESP("STORED\r\n"));
	/* A long multiget is fine (memcached reads those in pieces); other long lines are not. */
	static const char *const prefixes[] = { "get", "gets", "gat 60" };
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
		char line[4096 + 32];
		size_t len = (size_t)snprintf(line, sizeof(line), "%s", prefixes[i]);
		while (len < 4096)
			len += (size_t)snprintf(line + len, sizeof(line) - len, " key%zu", len);
		len += (size_t)snprintf(line + len, sizeof(line) - len, "\r\n");
		const struct step multi[] = { { false, line, len }, RESP("END\r\n") };
		expect_script(REUSE_MEMCACHED, multi, 2, i < 2 ? FRAMING_OK : FRAMING_ERROR, __LINE__);
	}
}

static void test_mc_set_data_holds_end(void **st)
{
	(void)st;
	/* The data block is "END\r\nEND\r\n": bytes, not lines. */
	MC(FRAMING_OK, REQ("set k 0 0 10\r\nEND\r\nEND\r\n\r\n"), RESP("STORED\r\n"),
	   REQ("get k\r\n"), RESP("VALUE k 0 10\r\nEND\r\nEND\r\n\r\nEND\r\n"));
	MC(FRAMING_PARTIAL, REQ("set k 0 0 10\r\nEND\r\nEND\r\n\r\n"), RESP("STORED\r\n"),
	   REQ("get k\r\n"), RESP("VALUE k 0 10\r\nEND\r\n"));
	MC(FRAMING_PARTIAL, REQ("set k 0 0 10\r\nEND\r\n"));
	MC(FRAMING_OK, REQ("add k 1 -1 3\r\nabc\r\nreplace k 1 0 1\r\nx\r\n"
			   "append k 0 0 1\r\ny\r\nprepend k 0 0 0\r\n\r\n"),
	   RESP("NOT_STORED\r\nSTORED\r\nSTORED\r\nSTORED\r\n"));
	MC(FRAMING_OK, REQ("cas k 0 0 2 12345\r\nhi\r\n"), RESP("EXISTS\r\n"));
	/* A sixth token that is not noreply is ignored by memcached: a reply comes. */
	MC(FRAMING_OK, REQ("set k 0 0 1 junk\r\nx\r\n"), RESP("STORED\r\n"));
	/* Data block of the wrong length: memcached would read the rest as commands. */
	MC(FRAMING_ERROR, REQ("set k 0 0 2\r\nabc\r\n"));
	MC(FRAMING_ERROR, REQ("set k 0 0 2\r\nab\n"));
}

static void test_mc_noreply(void **st)
{
	(void)st;
	/* Nothing will say the set is done: not reusable yet. */
	MC(FRAMING_PARTIAL, REQ("set k 0 0 1 noreply\r\nx\r\n"));
	/* The get's reply proves it: memcached answers in order. */
	MC(FRAMING_OK, REQ("set k 0 0 1 noreply\r\nx\r\nget k\r\n"),
	   RESP("VALUE k 0 1\r\nx\r\nEND\r\n"));
	MC(FRAMING_OK, REQ("delete a noreply\r\ndelete b 0 noreply\r\nincr n 1 noreply\r\n"
			   "touch k 10 noreply\r\ncas k 0 0 1 7 noreply\r\nx\r\nversion\r\n"),
	   RESP("VERSION 1.6.21\r\n"));
	/* The error memcached sends despite noreply. */
	MC(FRAMING_ERROR, REQ("set k 0 0 1 noreply\r\nx\r\n"),
	   RESP("SERVER_ERROR out of memory storing object\r\n"));
	MC(FRAMING_ERROR, REQ("set k 0 0 1 noreply\r\nx\r\nget k\r\n"),
	   RESP("SERVER_ERROR out of memory storing object\r\nEND\r\n"));
	/* Lines memcached would reject (and then answer, or desync on) are not trusted. */
	char key[300];
	memset(key, 'k', sizeof(key));
	char line[400];
	int n = snprintf(line, sizeof(line), "set %.*s 0 0 1 noreply\r\nx\r\n", 251, key);
	const struct step long_key[] = { { false, line, (size_t)n } };
	expect_script(REUSE_MEMCACHED, long_key, 1, FRAMING_UNKNOWN, __LINE__);
	n = snprintf(line, sizeof(line), "set %.*s 0 0 1 noreply\r\nx\r\nmn\r\n", 250, key);
	const struct step max_key[] = { { false, line, (size_t)n }, RESP("MN\r\n") };
	expect_script(REUSE_MEMCACHED, max_key, 2, FRAMING_OK, __LINE__);
	MC(FRAMING_UNKNOWN, REQ("set k x 0 1 noreply\r\n"));
	MC(FRAMING_UNKNOWN, REQ("set k 0 0 -1 noreply\r\n"));
	MC(FRAMING_UNKNOWN, REQ("set k 4294967296 0 1 noreply\r\n"));
	MC(FRAMING_UNKNOWN, REQ("delete k 5 noreply\r\n"));
	MC(FRAMING_UNKNOWN, REQ("delete k 5\r\n"));
	MC(FRAMING_UNKNOWN, REQ("flush_all noreply\r\n"));
	MC(FRAMING_UNKNOWN, REQ("incr k x noreply\r\n"));
	/* "delete noreply" deletes the key named noreply, and answers. */
	MC(FRAMING_OK, REQ("delete noreply\r\n"), RESP("NOT_FOUND\r\n"));
}

static void test_mc_simple_commands(void **st)
{
	(void)st;
	MC(FRAMING_OK, REQ("incr n 5\r\n"), RESP("15\r\n"));
	MC(FRAMING_OK, REQ("decr n 18446744073709551615\r\n"), RESP("NOT_FOUND\r\n"));
	MC(FRAMING_ERROR, REQ("incr s 1\r\n"),
	   RESP("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"));
	MC(FRAMING_OK, REQ("delete k\r\ndelete k 0\r\ntouch k -1\r\n"),
	   RESP("DELETED\r\nNOT_FOUND\r\nTOUCHED\r\n"));
	MC(FRAMING_OK, REQ("version\r\nverbosity 1\r\nflush_all\r\nflush_all 10\r\n"),
	   RESP("VERSION 1.6.21\r\nOK\r\nOK\r\nOK\r\n"));
	MC(FRAMING_OK, REQ("stats\r\n"), RESP("STAT pid 1\r\nSTAT uptime 10\r\nEND\r\n"));
	MC(FRAMING_OK, REQ("stats slabs\r\nstats reset\r\nstats detail on\r\nstats cachedump 1 1\r\n"),
	   RESP("STAT active_slabs 0\r\nEND\r\nRESET\r\nOK\r\nITEM k [1 b; 0 s]\r\nEND\r\n"));
	MC(FRAMING_PARTIAL, REQ("stats\r\n"), RESP("STAT pid 1\r\n"));
	MC(FRAMING_ERROR, REQ("stats nonsense\r\n"), RESP("ERROR\r\n"));
	MC(FRAMING_CLOSE, REQ("quit\r\n"));
	MC(FRAMING_CLOSE, REQ("shutdown\r\n"));
}

static void test_mc_meta(void **st)
{
	(void)st;
	MC(FRAMING_OK, REQ("mg k v t\r\n"), RESP("VA 3 t-1\r\nabc\r\n"));
	MC(FRAMING_OK, REQ("mg k\r\nmg k v\r\n"), RESP("HD\r\nEN\r\n"));
	MC(FRAMING_OK, REQ("ms k 2 T0 F5\r\nhi\r\n"), RESP("HD\r\n"));
	MC(FRAMING_OK, REQ("ms k 5\r\nEND\r\n\r\nmd k\r\nma n v\r\nmn\r\nme k\r\n"),
	   RESP("NS\r\nNF\r\nVA 1\r\n1\r\nMN\r\nME k exp=-1 la=1 cas=2 fetch=no cls=1 size=63\r\n"));
	MC(FRAMING_PARTIAL, REQ("mg k v\r\n"), RESP("VA 3\r\nab"));
	/* Quiet mode drops some replies: not modelled. */
	MC(FRAMING_UNKNOWN, REQ("mg k v q\r\n"));
	MC(FRAMING_UNKNOWN, REQ("ms k 1 q\r\nx\r\n"));
	MC(FRAMING_UNKNOWN, REQ("ms k S1\r\nx\r\n"));
	MC(FRAMING_ERROR, REQ("mg k v\r\n"), RESP("VALUE k 0 1\r\nx\r\nEND\r\n"));
	MC(FRAMING_ERROR, REQ("mg k\r\n"), RESP("CLIENT_ERROR bad command line format\r\n"));
}

static void test_mc_unknown(void **st)
{
	(void)st;
	MC(FRAMING_UNKNOWN, REQ("foo bar\r\n"));
	MC(FRAMING_UNKNOWN, REQ("GET k\r\n"));
	MC(FRAMING_UNKNOWN, REQ("watch\r\n"));
	MC(FRAMING_UNKNOWN, REQ("lru_crawler metadump all\r\n"));
	MC(FRAMING_UNKNOWN, REQ("\r\n"));
	MC(FRAMING_UNKNOWN, REQ("get\r\n"));
	MC(FRAMING_UNKNOWN, REQ("version 1\r\n"));
	MC(FRAMING_UNKNOWN, REQ("\x80\x00\x00\x05"));
	MC(FRAMING_UNSOLICITED, RESP("END\r\n"));
	MC(FRAMING_UNSOLICITED, REQ("version\r\n"), RESP("VERSION 1\r\nVERSION 1\r\n"));
	MC(FRAMING_ERROR, REQ("version\r\n"), RESP("\r\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api_none_and_null),
		cmocka_unit_test(test_api_names),
		cmocka_unit_test(test_api_fresh_is_reusable),
		cmocka_unit_test(test_api_poison_sticks_until_reset),
		cmocka_unit_test(test_api_reset_between_clients),
		cmocka_unit_test(test_http_simple_get),
		cmocka_unit_test(test_http_partial_response_at_close),
		cmocka_unit_test(test_http_chunked),
		cmocka_unit_test(test_http_pipelined),
		cmocka_unit_test(test_http_pipeline_overflow),
		cmocka_unit_test(test_http_head),
		cmocka_unit_test(test_http_no_body_statuses),
		cmocka_unit_test(test_http_100_continue),
		cmocka_unit_test(test_http_connection_close),
		cmocka_unit_test(test_http_10),
		cmocka_unit_test(test_http_upgrade),
		cmocka_unit_test(test_http_post_body),
		cmocka_unit_test(test_http_unframed_and_errors),
		cmocka_unit_test(test_http_ntlm_negotiate_pin),
		cmocka_unit_test(test_http_ambiguous_heads),
		cmocka_unit_test(test_redis_arrays),
		cmocka_unit_test(test_redis_inline),
		cmocka_unit_test(test_redis_errors_are_replies),
		cmocka_unit_test(test_redis_nested),
		cmocka_unit_test(test_redis_null_and_empty),
		cmocka_unit_test(test_redis_big_bulk),
		cmocka_unit_test(test_redis_pipelined),
		cmocka_unit_test(test_redis_pins),
		cmocka_unit_test(test_redis_bad_requests),
		cmocka_unit_test(test_redis_inline_limit),
		cmocka_unit_test(test_mc_get),
		cmocka_unit_test(test_mc_set_data_holds_end),
		cmocka_unit_test(test_mc_noreply),
		cmocka_unit_test(test_mc_simple_commands),
		cmocka_unit_test(test_mc_meta),
		cmocka_unit_test(test_mc_unknown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
