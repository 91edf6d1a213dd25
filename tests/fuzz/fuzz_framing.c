/*
 * libFuzzer target for framing: the input is a script of relayed pieces,
 * each a header byte (bit 0: 1 = backend -> client; bits 1-7: length - 1)
 * followed by that many bytes. The script runs against every protocol, and:
 *   - nothing may crash, leak or read out of bounds (ASan/UBSan);
 *   - the verdict may not depend on how the bytes were split: each piece is
 *     fed whole, then again byte by byte, and both runs must agree;
 *   - for Redis, the reply scanner must agree with hiredis's redisReader on
 *     where replies end: the backend bytes are fed after as many commands as
 *     hiredis counts replies, and the verdict must match hiredis's view.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

#include "framing.h"

typedef void (*feed_fn)(struct framing *, const char *, size_t);

/* Feed the script; byte_by_byte splits every piece into single bytes. */
static enum framing_verdict run_script(enum reuse_kind kind, const uint8_t *data, size_t size,
				       int byte_by_byte)
{
	struct framing *f = framing_new(kind);
	size_t i = 0;
	while (i < size) {
		uint8_t h = data[i++];
		size_t len = (size_t)(h >> 1) + 1;
		if (len > size - i)
			len = size - i;
		feed_fn feed = (h & 1) ? framing_feed_response : framing_feed_request;
		if (byte_by_byte) {
			for (size_t j = 0; j < len; j++)
				feed(f, (const char *)data + i + j, 1);
		} else {
			feed(f, (const char *)data + i, len);
		}
		/* Exercise the queries mid-stream too. */
		(void)framing_reason(f);
		i += len;
	}
	enum framing_verdict v = framing_verdict(f);
	if (framing_reusable(f) != (v == FRAMING_OK))
		abort();
	framing_free(f);
	return v;
}

/* Between replies: all input consumed, and no reply begun (an idle reader
 * may have armed its first task, ridx 0, without reading its type byte). */
static bool hiredis_idle(const redisReader *r)
{
	return r->len == r->pos &&
	       (r->ridx == -1 || (r->ridx == 0 && r->rstack[0].type < 0));
}

/* Replies hiredis finds in buf; *boundary tells whether it ends between replies. -1 on error. */
static long hiredis_replies(const char *buf, size_t len, int *boundary)
{
	redisReader *r = redisReaderCreateWithFunctions(NULL);
	if (!r)
		abort();
	long n = 0;
	*boundary = 0;
	if (redisReaderFeed(r, buf, len) != REDIS_OK) {
		redisReaderFree(r);
		return -1;
	}
	for (;;) {
		void *reply = NULL;
		if (redisReaderGetReply(r, &reply) != REDIS_OK) {
			n = -1;
			break;
		}
		if (!reply) {
			*boundary = hiredis_idle(r);
			break;
		}
		n++;
	}
	redisReaderFree(r);
	return n;
}

static void redis_differential(const uint8_t *data, size_t size)
{
	/* The backend bytes of the script, in order. */
	char *resp = malloc(size + 1);
	if (!resp)
		abort();
	size_t rlen = 0, i = 0;
	while (i < size) {
		uint8_t h = data[i++];
		size_t len = (size_t)(h >> 1) + 1;
		if (len > size - i)
			len = size - i;
		if (h & 1) {
			memcpy(resp + rlen, data + i, len);
			rlen += len;
		}
		i += len;
	}

	int boundary;
	long n = hiredis_replies(resp, rlen, &boundary);
	if (n >= 0) {
		struct framing *f = framing_new(REUSE_REDIS);
		for (long k = 0; k < n; k++)
			framing_feed_request(f, "PING\r\n", 6);
		framing_feed_response(f, resp, rlen);
		enum framing_verdict v = framing_verdict(f);
		/* Stricter than hiredis is fine (ERROR; CLOSE after a protocol
		 * error reply); disagreeing on where replies end is not. */
		if (boundary && v != FRAMING_OK && v != FRAMING_ERROR && v != FRAMING_CLOSE) {
			fprintf(stderr, "hiredis: %ld replies, at a boundary; framing: %s\n", n,
				framing_verdict_name(v));
			abort();
		}
		if (!boundary && v == FRAMING_OK) {
			fprintf(stderr, "hiredis: %ld replies and a partial one; framing: ok\n", n);
			abort();
		}
		framing_free(f);
	}
	free(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum reuse_kind kinds[] = { REUSE_HTTP1, REUSE_REDIS, REUSE_MEMCACHED };
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		enum framing_verdict whole = run_script(kinds[k], data, size, 0);
		enum framing_verdict bytes = run_script(kinds[k], data, size, 1);
		if (whole != bytes) {
			fprintf(stderr, "kind %d: whole %s, byte by byte %s\n", (int)kinds[k],
				framing_verdict_name(whole), framing_verdict_name(bytes));
			abort();
		}
	}
	redis_differential(data, size);
	return 0;
}
