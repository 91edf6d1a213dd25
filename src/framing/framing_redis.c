/*
 * framing_redis — RESP2 message boundaries for framing.c.
 *
 * Requests are what Redis itself accepts: arrays of bulk strings
 * ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") or inline commands ("GET k\r\n").
 * Every command gets exactly one reply, errors included, so the tracker only
 * counts: commands sent minus replies received, plus "is either direction in
 * the middle of something".
 *
 * Replies are scanned by hand rather than with hiredis's redisReader: the
 * reader holds a whole bulk reply in memory before it yields it (an
 * unbounded buffer per connection for a large GET) and refuses arrays nested
 * deeper than 7. A reply here is one counter — values still to read, where
 * an array of n replaces itself by its n elements — so any nesting and any
 * bulk size take constant memory, and a bulk's payload is skipped in O(1)
 * per chunk. (The fuzz target checks this scanner against hiredis.)
 *
 * Commands that poison (matched case-insensitively on the command name):
 *   pinned  they leave state on the connection that the next client would
 *           inherit, or break the one-reply-per-command rule:
 *           AUTH HELLO SELECT                   (identity, protocol, database)
 *           MULTI WATCH                         (transaction state)
 *           SUBSCRIBE PSUBSCRIBE SSUBSCRIBE and their UN- forms
 *                                               (push mode; one reply per channel)
 *           MONITOR                             (push mode)
 *           CLIENT                              (SETNAME, REPLY OFF|SKIP, TRACKING,
 *                                                CACHING, NO-EVICT...; all of it)
 *           READONLY READWRITE ASKING           (cluster per-connection flags)
 *           SYNC PSYNC REPLCONF                 (turns the client into a replica)
 *   close   QUIT SHUTDOWN                       (the connection goes away)
 * EXEC, DISCARD, UNWATCH and RESET are left out on purpose: without an earlier
 * MULTI or WATCH (which already pinned) they answer once and change nothing.
 *
 * Also poisoned: RESP3 or unknown reply types (only HELLO 3 turns RESP3 on,
 * and HELLO pins), any reply with no command waiting ("unsolicited"), an
 * "-ERR Protocol error" reply (Redis closes after it: "close"), empty or
 * negative multibulk counts and inline commands with quotes or NUL bytes (legal
 * but odd; "unknown"), and bytes Redis would reject ("error"). Limits follow
 * Redis's defaults: 1M arguments, 512 MB per argument, 64 KB per inline line.
 */
#include "framing_block.h"
#include "framing_ops.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define REDIS_MAX_ARGS (1024 * 1024)		/* Redis: "invalid multibulk length" beyond */
#define REDIS_MAX_ARG_LEN (512ull * 1024 * 1024)	/* Redis: proto-max-bulk-len default */
#define REDIS_MAX_INLINE (64 * 1024)		/* Redis: PROTO_INLINE_MAX_SIZE */
#define REDIS_MAX_DIGITS 18			/* lengths beyond 10^18 are garbage */
#define REDIS_NAME_MAX 16			/* longer command names are never poisoning ones */
#define REDIS_ERROR_PREFIX "ERR Protocol error"

enum redis_req_state {
	REDIS_REQ_START = 0,	/* between commands */
	REDIS_REQ_COUNT,	/* "*<n>\r\n": number */
	REDIS_REQ_ARG,		/* expecting the '$' of the next argument */
	REDIS_REQ_ARG_LEN,	/* "$<n>\r\n": number */
	REDIS_REQ_ARG_BODY,	/* an argument's bytes and the "\r\n" after them */
	REDIS_REQ_INLINE,	/* inside an inline command line */
};

enum redis_rep_state {
	REDIS_REP_START = 0,	/* expecting a type byte */
	REDIS_REP_LINE,		/* inside a '+', '-' or ':' line */
	REDIS_REP_LINE_CR,	/* saw '\r' inside such a line */
	REDIS_REP_COUNT,	/* "*<n>\r\n": number */
	REDIS_REP_BULK_LEN,	/* "$<n>\r\n": number */
	REDIS_REP_BULK_BODY,	/* a bulk string's bytes and the "\r\n" after them */
};

/* A "-?digits\r\n" header being read, one byte at a time. */
struct redis_number {
	uint64_t value;		/* magnitude so far */
	uint8_t digits;		/* digits so far */
	bool negative;		/* saw a leading '-' */
	bool cr;		/* saw the '\r'; only '\n' may follow */
};

enum redis_number_step {
	REDIS_NUMBER_MORE = 0,	/* keep feeding */
	REDIS_NUMBER_DONE,	/* the '\n' arrived; the number is complete */
	REDIS_NUMBER_BAD,	/* not a number Redis would write or accept */
};

struct redis_state {
	/* client -> backend */
	enum redis_req_state req;	/* where the request scanner is */
	struct redis_number req_num;	/* count or length being read */
	uint32_t args_left;		/* arguments of this command not yet started */
	struct framing_block arg;	/* the argument being read */
	bool first_arg;			/* the argument being read is the command name */
	char name[REDIS_NAME_MAX];	/* the command name's first bytes */
	uint32_t name_len;		/* its full length (may exceed REDIS_NAME_MAX) */
	uint32_t inline_len;		/* bytes of the inline line so far */
	bool inline_token_done;		/* the inline command name has ended */
	/* backend -> client */
	enum redis_rep_state rep;	/* where the reply scanner is */
	struct redis_number rep_num;	/* count or length being read */
	uint64_t values_left;		/* values the current reply still needs; 0 between replies */
	struct framing_block bulk;	/* the bulk string being read */
	char error[sizeof(REDIS_ERROR_PREFIX) - 1];	/* first bytes of a '-' line */
	uint32_t error_len;		/* bytes of error[] filled; UINT32_MAX when not a '-' line */
	/* both */
	uint64_t pending;		/* commands sent and not yet answered in full */
};

static enum redis_number_step redis_number_byte(struct redis_number *n, unsigned char c)
{
	if (n->cr)
		return c == '\n' ? REDIS_NUMBER_DONE : REDIS_NUMBER_BAD;
	if (c >= '0' && c <= '9') {
		/* Redis's string2ll refuses leading zeros; so do we. */
		if (n->digits == REDIS_MAX_DIGITS || (n->digits == 1 && n->value == 0))
			return REDIS_NUMBER_BAD;
		n->value = n->value * 10 + (uint64_t)(c - '0');
		n->digits++;
		return REDIS_NUMBER_MORE;
	}
	if (c == '-' && n->digits == 0 && !n->negative) {
		n->negative = true;
		return REDIS_NUMBER_MORE;
	}
	if (c == '\r' && n->digits > 0 && !(n->negative && n->value == 0)) {
		n->cr = true;
		return REDIS_NUMBER_MORE;
	}
	return REDIS_NUMBER_BAD;
}

static void redis_number_start(struct redis_number *n)
{
	memset(n, 0, sizeof(*n));
}

static bool redis_name_is(const struct redis_state *s, const char *name)
{
	size_t len = strlen(name);
	if (s->name_len != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s->name[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != name[i])
			return false;
	}
	return true;
}

/* What the command name alone says about the connection. */
static enum framing_verdict redis_command_verdict(const struct redis_state *s)
{
	static const char *const pinning[] = {
		"AUTH", "HELLO", "SELECT", "MULTI", "WATCH",
		"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
		"UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
		"MONITOR", "CLIENT", "READONLY", "READWRITE", "ASKING",
		"SYNC", "PSYNC", "REPLCONF",
	};
	static const char *const closing[] = { "QUIT", "SHUTDOWN" };

	if (s->name_len > REDIS_NAME_MAX)
		return FRAMING_OK;
	for (size_t i = 0; i < sizeof(pinning) / sizeof(pinning[0]); i++)
		if (redis_name_is(s, pinning[i]))
			return FRAMING_PINNED;
	for (size_t i = 0; i < sizeof(closing) / sizeof(closing[0]); i++)
		if (redis_name_is(s, closing[i]))
			return FRAMING_CLOSE;
	return FRAMING_OK;
}

/* Append command-name bytes; name_len keeps counting past what is kept. */
static void redis_name_add(struct redis_state *s, const char *p, size_t n)
{
	if (s->name_len < REDIS_NAME_MAX) {
		size_t take = REDIS_NAME_MAX - s->name_len;
		if (take > n)
			take = n;
		memcpy(s->name + s->name_len, p, take);
	}
	/* Saturate just past the limit: that already rules out every name we match. */
	s->name_len = n > REDIS_NAME_MAX + 1 - s->name_len ? REDIS_NAME_MAX + 1
							    : s->name_len + (uint32_t)n;
}

/* What Redis's inline splitter (sdssplitargs) skips before a token. */
static bool redis_inline_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* What ends a token for it (NUL aside); \v and \f do not. */
static bool redis_inline_separator(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* A command just arrived in full. */
static void redis_command_done(struct redis_state *s)
{
	s->pending++;
	s->req = REDIS_REQ_START;
}

/*
 * One byte of an inline line ('\n' excluded). Tracks the command name (the
 * first token) and refuses what sdssplitargs would read differently from a
 * plain split: quotes and NUL.
 */
static enum framing_verdict redis_inline_byte(struct redis_state *s, unsigned char c)
{
	if (++s->inline_len > REDIS_MAX_INLINE)
		return FRAMING_ERROR;
	if (c == '"' || c == '\'' || c == '\0')
		return FRAMING_UNKNOWN;
	if (s->inline_token_done)
		return FRAMING_OK;
	if (s->name_len == 0 && redis_inline_space(c))
		return FRAMING_OK;
	if (s->name_len > 0 && redis_inline_separator(c)) {
		s->inline_token_done = true;
		return redis_command_verdict(s);
	}
	char ch = (char)c;
	redis_name_add(s, &ch, 1);
	return FRAMING_OK;
}

/* The '\n' ending an inline line. */
static enum framing_verdict redis_inline_end(struct redis_state *s)
{
	if (s->name_len == 0) {
		/* Blank line: Redis runs nothing and sends nothing. */
		s->req = REDIS_REQ_START;
		return FRAMING_OK;
	}
	if (!s->inline_token_done) {
		enum framing_verdict v = redis_command_verdict(s);
		if (v != FRAMING_OK)
			return v;
	}
	redis_command_done(s);
	return FRAMING_OK;
}

/* "*<n>\r\n" of a multibulk command arrived. */
static enum framing_verdict redis_req_count_done(struct redis_state *s)
{
	/* Redis sends nothing back for "*0" or "*-1". */
	if (s->req_num.negative || s->req_num.value == 0)
		return FRAMING_UNKNOWN;
	if (s->req_num.value > REDIS_MAX_ARGS)
		return FRAMING_ERROR;
	s->args_left = (uint32_t)s->req_num.value;
	s->first_arg = true;
	s->req = REDIS_REQ_ARG;
	return FRAMING_OK;
}

/* "$<n>\r\n" of an argument arrived. */
static enum framing_verdict redis_req_arg_len_done(struct redis_state *s)
{
	if (s->req_num.negative || s->req_num.value > REDIS_MAX_ARG_LEN)
		return FRAMING_ERROR;
	framing_block_start(&s->arg, s->req_num.value);
	s->args_left--;
	s->req = REDIS_REQ_ARG_BODY;
	return FRAMING_OK;
}

/* An argument and its "\r\n" arrived. */
static enum framing_verdict redis_req_arg_done(struct redis_state *s)
{
	if (s->first_arg) {
		enum framing_verdict v = redis_command_verdict(s);
		if (v != FRAMING_OK)
			return v;
		s->first_arg = false;
	}
	if (s->args_left == 0)
		redis_command_done(s);
	else
		s->req = REDIS_REQ_ARG;
	return FRAMING_OK;
}

/*
 * One byte of a "-?digits\r\n" header: FRAMING_OK while it goes on or once
 * `done` accepted the complete number, else the verdict that poisons.
 */
static enum framing_verdict redis_number_feed(struct redis_state *s, struct redis_number *n,
					      unsigned char c,
					      enum framing_verdict (*done)(struct redis_state *))
{
	switch (redis_number_byte(n, c)) {
	case REDIS_NUMBER_MORE:
		return FRAMING_OK;
	case REDIS_NUMBER_DONE:
		return done(s);
	case REDIS_NUMBER_BAD:
		break;
	}
	return FRAMING_ERROR;
}

/* A bulk string or argument body: consume it, then call `done` after its "\r\n". */
static enum framing_verdict redis_block_feed(struct redis_state *s, struct framing_block *b,
					     const char **p, const char *end, bool name,
					     enum framing_verdict (*done)(struct redis_state *))
{
	const char *data;
	size_t data_len;
	enum framing_block_step step = framing_block_feed(b, p, end, &data, &data_len);
	if (name && data_len > 0)
		redis_name_add(s, data, data_len);
	switch (step) {
	case FRAMING_BLOCK_MORE:
		return FRAMING_OK;
	case FRAMING_BLOCK_DONE:
		return done(s);
	case FRAMING_BLOCK_BAD:
		break;
	}
	return FRAMING_ERROR;
}

static enum framing_verdict redis_feed_request(void *state, const char *buf, size_t len)
{
	struct redis_state *s = state;
	const char *p = buf, *end = buf + len;

	while (p < end) {
		unsigned char c = (unsigned char)*p;
		enum framing_verdict v = FRAMING_OK;
		switch (s->req) {
		case REDIS_REQ_START:
			s->name_len = 0;
			if (c == '*') {
				s->req = REDIS_REQ_COUNT;
				redis_number_start(&s->req_num);
			} else {
				s->req = REDIS_REQ_INLINE;
				s->inline_len = 0;
				s->inline_token_done = false;
				continue;	/* this byte is part of the line */
			}
			break;
		case REDIS_REQ_COUNT:
			v = redis_number_feed(s, &s->req_num, c, redis_req_count_done);
			break;
		case REDIS_REQ_ARG:
			if (c != '$')
				return FRAMING_ERROR;
			redis_number_start(&s->req_num);
			s->req = REDIS_REQ_ARG_LEN;
			break;
		case REDIS_REQ_ARG_LEN:
			v = redis_number_feed(s, &s->req_num, c, redis_req_arg_len_done);
			break;
		case REDIS_REQ_ARG_BODY:
			v = redis_block_feed(s, &s->arg, &p, end, s->first_arg, redis_req_arg_done);
			if (v != FRAMING_OK)
				return v;
			continue;	/* p has moved past what the block took */
		case REDIS_REQ_INLINE:
			v = c == '\n' ? redis_inline_end(s) : redis_inline_byte(s, c);
			break;
		}
		if (v != FRAMING_OK)
			return v;
		p++;
	}
	return FRAMING_OK;
}

/* One value of the current reply is complete. */
static enum framing_verdict redis_value_done(struct redis_state *s)
{
	s->rep = REDIS_REP_START;
	s->values_left--;
	if (s->values_left == 0)
		s->pending--;
	return FRAMING_OK;
}

/* "*<n>\r\n" of a reply arrived: null, empty, or replaced by its n elements. */
static enum framing_verdict redis_rep_count_done(struct redis_state *s)
{
	if (s->rep_num.negative)
		return s->rep_num.value == 1 ? redis_value_done(s) : FRAMING_ERROR;
	if (s->rep_num.value == 0)
		return redis_value_done(s);
	if (s->rep_num.value - 1 > UINT64_MAX - s->values_left)
		return FRAMING_ERROR;
	s->values_left += s->rep_num.value - 1;
	s->rep = REDIS_REP_START;
	return FRAMING_OK;
}

/* "$<n>\r\n" of a reply arrived: null bulk ("$-1") or a body to skip. */
static enum framing_verdict redis_rep_bulk_len_done(struct redis_state *s)
{
	if (s->rep_num.negative)
		return s->rep_num.value == 1 ? redis_value_done(s) : FRAMING_ERROR;
	framing_block_start(&s->bulk, s->rep_num.value);
	s->rep = REDIS_REP_BULK_BODY;
	return FRAMING_OK;
}

/* The type byte that starts a reply value. */
static enum framing_verdict redis_rep_type(struct redis_state *s, unsigned char c)
{
	if (s->values_left == 0) {
		if (s->pending == 0)
			return FRAMING_UNSOLICITED;
		s->values_left = 1;
	}
	s->error_len = UINT32_MAX;
	switch (c) {
	case '-':
		s->error_len = 0;
		/* fall through */
	case '+':
	case ':':
		s->rep = REDIS_REP_LINE;
		return FRAMING_OK;
	case '*':
		s->rep = REDIS_REP_COUNT;
		redis_number_start(&s->rep_num);
		return FRAMING_OK;
	case '$':
		s->rep = REDIS_REP_BULK_LEN;
		redis_number_start(&s->rep_num);
		return FRAMING_OK;
	}
	return FRAMING_ERROR;
}

/* The byte after a '\r' inside a '+', '-' or ':' line. */
static enum framing_verdict redis_rep_line_cr(struct redis_state *s, unsigned char c)
{
	if (c == '\n') {
		if (s->error_len == sizeof(s->error) &&
		    memcmp(s->error, REDIS_ERROR_PREFIX, sizeof(s->error)) == 0)
			return FRAMING_CLOSE;
		return redis_value_done(s);
	}
	/* A lone '\r' is part of the line, as for hiredis; the prefix we look
	 * for has none. */
	if (s->error_len < sizeof(s->error))
		s->error_len = UINT32_MAX;
	if (c != '\r')
		s->rep = REDIS_REP_LINE;
	return FRAMING_OK;
}

static enum framing_verdict redis_feed_response(void *state, const char *buf, size_t len)
{
	struct redis_state *s = state;
	const char *p = buf, *end = buf + len;

	while (p < end) {
		unsigned char c = (unsigned char)*p;
		enum framing_verdict v = FRAMING_OK;
		switch (s->rep) {
		case REDIS_REP_START:
			v = redis_rep_type(s, c);
			break;
		case REDIS_REP_LINE:
			if (c == '\r')
				s->rep = REDIS_REP_LINE_CR;
			else if (s->error_len < sizeof(s->error))
				s->error[s->error_len++] = (char)c;
			break;
		case REDIS_REP_LINE_CR:
			v = redis_rep_line_cr(s, c);
			break;
		case REDIS_REP_COUNT:
			v = redis_number_feed(s, &s->rep_num, c, redis_rep_count_done);
			break;
		case REDIS_REP_BULK_LEN:
			v = redis_number_feed(s, &s->rep_num, c, redis_rep_bulk_len_done);
			break;
		case REDIS_REP_BULK_BODY:
			v = redis_block_feed(s, &s->bulk, &p, end, false, redis_value_done);
			if (v != FRAMING_OK)
				return v;
			continue;	/* p has moved past what the block took */
		}
		if (v != FRAMING_OK)
			return v;
		p++;
	}
	return FRAMING_OK;
}

static void redis_init(void *state)
{
	(void)state;	/* all-zero is the start state */
}

static enum framing_verdict redis_at_boundary(const void *state)
{
	const struct redis_state *s = state;
	if (s->req != REDIS_REQ_START || s->rep != REDIS_REP_START ||
	    s->values_left > 0 || s->pending > 0)
		return FRAMING_PARTIAL;
	return FRAMING_OK;
}

const struct framing_ops framing_redis_ops = {
	.name = "redis",
	.state_size = sizeof(struct redis_state),
	.init = redis_init,
	.feed_request = redis_feed_request,
	.feed_response = redis_feed_response,
	.at_boundary = redis_at_boundary,
};
