/*
 * framing_memcached — memcached text-protocol message boundaries for
 * framing.c.
 *
 * Requests are command lines, some followed by a data block of a length the
 * line gives. Replies come back in request order; each request's command
 * decides the shape of its reply, kept in a small FIFO:
 *   values  get gets gat gats       VALUE lines, each with a data block, then END
 *   line    set add replace append prepend cas delete incr decr touch
 *           flush_all verbosity version
 *                                   exactly one line
 *   stats   stats [args]            STAT/ITEM/PREFIX lines then END; or RESET/OK
 *   meta    mg ms md ma me mn       one line (HD EN NS EX NF MN ME), or VA with a block
 * Data blocks are skipped by length in both directions, so a value holding
 * "END\r\n" is just bytes.
 *
 * noreply (storage, cas, delete, incr, decr, touch) means no reply — except
 * that memcached still sends some errors. So a noreply command is only known
 * to be done once a later command's reply arrives, which is why trailing
 * noreply commands leave the connection "partial" and any error line
 * (ERROR, CLIENT_ERROR, SERVER_ERROR) poisons it: after an error, which
 * bytes memcached swallowed and which it read as commands depends on the
 * error. For the same reason the lines of storage commands are validated as
 * memcached does (key length, numeric fields) before they are trusted: a line
 * it rejects makes it read the data block as commands.
 *
 * Poisons: unknown commands, meta commands in quiet mode (flag q: replies
 * then no longer match requests one to one), binary protocol, noreply on
 * flush_all and verbosity, and odd argument counts are "unknown"; quit and
 * shutdown are "close"; more than MC_PIPELINE_MAX replies owed is
 * "overflow"; bad framing is "error". Commands are case-sensitive, as in
 * memcached.
 */
#include "framing_block.h"
#include "framing_ops.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define MC_PIPELINE_MAX 64		/* replies owed that the FIFO tracks */
#define MC_TOKEN_MAX 32			/* token bytes kept; longer ones are keys or junk */
#define MC_REQUEST_LINE_MAX 2048	/* memcached closes on longer lines, multiget aside */
#define MC_MULTIGET_LINE_MAX (1024 * 1024)	/* our own bound on a get line */
#define MC_REPLY_LINE_MAX 65536		/* generous; replies have no hard limit */
#define MC_KEY_MAX 250			/* memcached: KEY_MAX_LENGTH */
#define MC_DATA_MAX (INT32_MAX - 2)	/* memcached refuses larger <bytes> */
#define MC_NOT_NUMBER UINT64_MAX	/* a token that is not all digits */

enum mc_shape {
	MC_SHAPE_LINE = 0,	/* exactly one line */
	MC_SHAPE_VALUES,	/* VALUE lines with data blocks, then END */
	MC_SHAPE_STATS,		/* STAT/ITEM/PREFIX lines, then END; or a lone RESET/OK */
	MC_SHAPE_META,		/* one meta status line, or VA with a data block */
};

enum mc_kind {
	MC_CMD_GET = 0,		/* get gets: <key>+ */
	MC_CMD_GAT,		/* gat gats: <exptime> <key>+ */
	MC_CMD_STORE,		/* set add replace append prepend: <key> <flags> <exptime> <bytes> [noreply] */
	MC_CMD_CAS,		/* cas: <key> <flags> <exptime> <bytes> <cas> [noreply] */
	MC_CMD_DELETE,		/* delete: <key> [0] [noreply] */
	MC_CMD_ARITH,		/* incr decr: <key> <delta> [noreply] */
	MC_CMD_TOUCH,		/* touch: <key> <exptime> [noreply] */
	MC_CMD_FLUSH,		/* flush_all: [<delay>] */
	MC_CMD_VERBOSITY,	/* verbosity: <level> */
	MC_CMD_VERSION,		/* version */
	MC_CMD_STATS,		/* stats [<args>] */
	MC_CMD_META,		/* mg md ma me: <key> <flags>* */
	MC_CMD_META_NOOP,	/* mn */
	MC_CMD_META_SET,	/* ms: <key> <datalen> <flags>* */
	MC_CMD_QUIT,		/* quit shutdown */
};

struct mc_command {
	const char *name;	/* as sent, case-sensitive */
	enum mc_kind kind;	/* how to read its line and its reply */
};

static const struct mc_command mc_commands[] = {
	{ "get", MC_CMD_GET },		{ "gets", MC_CMD_GET },
	{ "gat", MC_CMD_GAT },		{ "gats", MC_CMD_GAT },
	{ "set", MC_CMD_STORE },	{ "add", MC_CMD_STORE },
	{ "replace", MC_CMD_STORE },	{ "append", MC_CMD_STORE },
	{ "prepend", MC_CMD_STORE },	{ "cas", MC_CMD_CAS },
	{ "delete", MC_CMD_DELETE },	{ "incr", MC_CMD_ARITH },
	{ "decr", MC_CMD_ARITH },	{ "touch", MC_CMD_TOUCH },
	{ "flush_all", MC_CMD_FLUSH },	{ "verbosity", MC_CMD_VERBOSITY },
	{ "version", MC_CMD_VERSION },	{ "stats", MC_CMD_STATS },
	{ "mg", MC_CMD_META },		{ "md", MC_CMD_META },
	{ "ma", MC_CMD_META },		{ "me", MC_CMD_META },
	{ "mn", MC_CMD_META_NOOP },	{ "ms", MC_CMD_META_SET },
	{ "quit", MC_CMD_QUIT },	{ "shutdown", MC_CMD_QUIT },
};

/* A line split on spaces as memcached does, one byte at a time, nothing buffered but a token's head. */
struct mc_line {
	char tok[MC_TOKEN_MAX];	/* the current token's first bytes */
	uint32_t tok_len;	/* its full length */
	uint32_t ntok;		/* tokens completed on this line */
	uint32_t len;		/* bytes of the line so far, '\n' excluded */
	bool cr;		/* the last byte was '\r', maybe the one before '\n' */
};

#define MC_EV_TOKEN 1u		/* a token ended: tok/tok_len/ntok describe it */
#define MC_EV_LINE 2u		/* the line ended */

enum mc_req_state {
	MC_REQ_LINE = 0,	/* reading a command line */
	MC_REQ_BLOCK,		/* the data block and the "\r\n" after it */
};

enum mc_rep_state {
	MC_REP_LINE = 0,	/* reading a reply line */
	MC_REP_BLOCK,		/* a data block and the "\r\n" after it */
};

struct mc_state {
	/* client -> backend */
	enum mc_req_state req;		/* where the request scanner is */
	struct mc_line req_line;	/* the command line being read */
	enum mc_kind req_kind;		/* its command, once token 0 ended */
	bool req_noreply;		/* its last token so far is "noreply" */
	bool req_delete_zero;		/* delete: token 2 is "0" */
	uint64_t req_data;		/* <bytes>/<datalen> of the line */
	struct framing_block req_block;	/* the data block being read */
	bool noreply_tail;		/* noreply commands sent since the last one with a reply */
	/* backend -> client */
	enum mc_rep_state rep;		/* where the reply scanner is */
	struct mc_line rep_line;	/* the reply line being read */
	char rep_word[MC_TOKEN_MAX];	/* the reply line's first token */
	uint32_t rep_word_len;		/* its length (may exceed MC_TOKEN_MAX) */
	uint64_t rep_data;		/* VALUE/VA block size of the line */
	struct framing_block rep_block;	/* the data block being read */
	bool rep_open;			/* the head reply has begun and not ended */
	/* both */
	uint8_t pending[MC_PIPELINE_MAX];	/* ring of enum mc_shape, oldest at pending_head */
	uint32_t pending_head;		/* index of the oldest owed reply */
	uint32_t pending_count;		/* replies owed */
};

static void mc_line_reset(struct mc_line *l)
{
	memset(l, 0, sizeof(*l));
}

static void mc_line_append(struct mc_line *l, char c)
{
	if (l->tok_len < MC_TOKEN_MAX)
		l->tok[l->tok_len] = c;
	if (l->tok_len < UINT32_MAX)
		l->tok_len++;
}

/*
 * Feed one byte; returns MC_EV_* bits. memcached ends a line at '\n',
 * dropping one '\r' before it, and splits on ' ' only (runs of spaces make
 * no empty tokens). After MC_EV_TOKEN, call mc_line_next_token().
 */
static unsigned mc_line_byte(struct mc_line *l, unsigned char c)
{
	if (c == '\n')
		return (l->tok_len ? MC_EV_TOKEN : 0) | MC_EV_LINE;
	l->len++;
	if (l->cr) {
		l->cr = false;
		mc_line_append(l, '\r');
	}
	if (c == '\r') {
		l->cr = true;
		return 0;
	}
	if (c == ' ')
		return l->tok_len ? MC_EV_TOKEN : 0;
	mc_line_append(l, (char)c);
	return 0;
}

static void mc_line_next_token(struct mc_line *l)
{
	l->ntok++;
	l->tok_len = 0;
}

static bool mc_token_is(const struct mc_line *l, const char *word)
{
	size_t n = strlen(word);
	return l->tok_len == n && memcmp(l->tok, word, n) == 0;
}

/* The token as an unsigned decimal (memcached reads these with strtoul). */
static uint64_t mc_token_number(const struct mc_line *l)
{
	if (l->tok_len == 0 || l->tok_len > 19)
		return MC_NOT_NUMBER;
	uint64_t v = 0;
	for (uint32_t i = 0; i < l->tok_len; i++) {
		if (l->tok[i] < '0' || l->tok[i] > '9')
			return MC_NOT_NUMBER;
		v = v * 10 + (uint64_t)(l->tok[i] - '0');
	}
	return v;
}

/* All digits, as a 64-bit <delta> may be (memcached: strtoull). */
static bool mc_token_digits(const struct mc_line *l)
{
	if (l->tok_len == 0 || l->tok_len > 20)
		return false;
	for (uint32_t i = 0; i < l->tok_len; i++)
		if (l->tok[i] < '0' || l->tok[i] > '9')
			return false;
	return true;
}

/* A signed 32-bit decimal, as memcached reads an exptime. */
static bool mc_token_exptime(const struct mc_line *l)
{
	struct mc_line abs = *l;
	if (abs.tok_len > 1 && abs.tok[0] == '-') {
		memmove(abs.tok, abs.tok + 1, MC_TOKEN_MAX - 1);
		abs.tok_len--;
	}
	return mc_token_number(&abs) <= INT32_MAX;
}

static enum framing_verdict mc_push(struct mc_state *s, enum mc_shape shape)
{
	if (s->pending_count == MC_PIPELINE_MAX)
		return FRAMING_OVERFLOW;
	s->pending[(s->pending_head + s->pending_count) % MC_PIPELINE_MAX] = (uint8_t)shape;
	s->pending_count++;
	s->noreply_tail = false;
	return FRAMING_OK;
}

/* Token 0 of a request line: the command. */
static enum framing_verdict mc_request_command(struct mc_state *s)
{
	const struct mc_line *l = &s->req_line;
	for (size_t i = 0; i < sizeof(mc_commands) / sizeof(mc_commands[0]); i++) {
		if (mc_token_is(l, mc_commands[i].name)) {
			s->req_kind = mc_commands[i].kind;
			return s->req_kind == MC_CMD_QUIT ? FRAMING_CLOSE : FRAMING_OK;
		}
	}
	return FRAMING_UNKNOWN;
}

/* Token i >= 1 of a request line; checks what memcached would reject. */
static enum framing_verdict mc_request_token(struct mc_state *s)
{
	const struct mc_line *l = &s->req_line;
	uint32_t i = l->ntok;
	bool ok = true;

	s->req_noreply = mc_token_is(l, "noreply");
	switch (s->req_kind) {
	case MC_CMD_GET:
		ok = l->tok_len <= MC_KEY_MAX;
		break;
	case MC_CMD_GAT:
		ok = i == 1 ? mc_token_exptime(l) : l->tok_len <= MC_KEY_MAX;
		break;
	case MC_CMD_STORE:
	case MC_CMD_CAS:
		if (i == 1)
			ok = l->tok_len <= MC_KEY_MAX;
		else if (i == 2)
			ok = mc_token_number(l) <= UINT32_MAX;
		else if (i == 3)
			ok = mc_token_exptime(l);
		else if (i == 4)
			ok = (s->req_data = mc_token_number(l)) <= MC_DATA_MAX;
		else if (i == 5 && s->req_kind == MC_CMD_CAS)
			ok = mc_token_digits(l);
		break;
	case MC_CMD_DELETE:
		if (i == 1)
			ok = l->tok_len <= MC_KEY_MAX;
		else if (i == 2)
			s->req_delete_zero = mc_token_is(l, "0");
		break;
	case MC_CMD_ARITH:
		ok = i == 1 ? l->tok_len <= MC_KEY_MAX : i == 2 ? mc_token_digits(l) : true;
		break;
	case MC_CMD_TOUCH:
		ok = i == 1 ? l->tok_len <= MC_KEY_MAX : i == 2 ? mc_token_exptime(l) : true;
		break;
	case MC_CMD_FLUSH:
	case MC_CMD_VERBOSITY:
		ok = mc_token_number(l) <= UINT32_MAX;
		break;
	case MC_CMD_META:
	case MC_CMD_META_NOOP:
	case MC_CMD_META_SET:
		if (i == 1)
			ok = l->tok_len <= MC_KEY_MAX;
		else if (i == 2 && s->req_kind == MC_CMD_META_SET)
			ok = (s->req_data = mc_token_number(l)) <= MC_DATA_MAX;
		else if (l->tok[0] == 'q')
			return FRAMING_UNKNOWN;
		break;
	case MC_CMD_VERSION:
	case MC_CMD_STATS:
	case MC_CMD_QUIT:
		break;
	}
	return ok ? FRAMING_OK : FRAMING_UNKNOWN;
}

/* A request line ended: check its token count, then owe its reply. */
static enum framing_verdict mc_request_line(struct mc_state *s)
{
	uint32_t n = s->req_line.ntok;
	bool noreply = false, data = false;
	enum mc_shape shape = MC_SHAPE_LINE;

	if (n == 0)
		return FRAMING_UNKNOWN;
	switch (s->req_kind) {
	case MC_CMD_GET:
		if (n < 2)
			return FRAMING_UNKNOWN;
		shape = MC_SHAPE_VALUES;
		break;
	case MC_CMD_GAT:
		if (n < 3)
			return FRAMING_UNKNOWN;
		shape = MC_SHAPE_VALUES;
		break;
	case MC_CMD_STORE:
	case MC_CMD_CAS: {
		uint32_t base = s->req_kind == MC_CMD_CAS ? 6 : 5;
		if (n != base && n != base + 1)
			return FRAMING_UNKNOWN;
		noreply = n == base + 1 && s->req_noreply;
		data = true;
		break;
	}
	case MC_CMD_DELETE:
		if (n == 3 && !s->req_delete_zero && !s->req_noreply)
			return FRAMING_UNKNOWN;
		if (n == 4 && !(s->req_delete_zero && s->req_noreply))
			return FRAMING_UNKNOWN;
		if (n < 2 || n > 4)
			return FRAMING_UNKNOWN;
		noreply = n > 2 && s->req_noreply;
		break;
	case MC_CMD_ARITH:
	case MC_CMD_TOUCH:
		if (n != 3 && n != 4)
			return FRAMING_UNKNOWN;
		noreply = n == 4 && s->req_noreply;
		break;
	case MC_CMD_FLUSH:
		if (n > 2)
			return FRAMING_UNKNOWN;
		break;
	case MC_CMD_VERBOSITY:
		if (n != 2)
			return FRAMING_UNKNOWN;
		break;
	case MC_CMD_VERSION:
	case MC_CMD_META_NOOP:
		if (n != 1)
			return FRAMING_UNKNOWN;
		shape = s->req_kind == MC_CMD_VERSION ? MC_SHAPE_LINE : MC_SHAPE_META;
		break;
	case MC_CMD_STATS:
		shape = MC_SHAPE_STATS;
		break;
	case MC_CMD_META:
		if (n < 2)
			return FRAMING_UNKNOWN;
		shape = MC_SHAPE_META;
		break;
	case MC_CMD_META_SET:
		if (n < 3)
			return FRAMING_UNKNOWN;
		shape = MC_SHAPE_META;
		data = true;
		break;
	case MC_CMD_QUIT:
		return FRAMING_CLOSE;
	}

	if (noreply) {
		s->noreply_tail = true;
	} else {
		enum framing_verdict v = mc_push(s, shape);
		if (v != FRAMING_OK)
			return v;
	}
	s->req = MC_REQ_LINE;
	if (data) {
		framing_block_start(&s->req_block, s->req_data);
		s->req = MC_REQ_BLOCK;
	}
	return FRAMING_OK;
}

static enum framing_verdict mc_feed_request(void *state, const char *buf, size_t len)
{
	struct mc_state *s = state;
	const char *p = buf, *end = buf + len;

	while (p < end) {
		unsigned char c = (unsigned char)*p;
		switch (s->req) {
		case MC_REQ_LINE: {
			struct mc_line *l = &s->req_line;
			/* 0x80 opens a binary-protocol request. */
			if (l->len == 0 && c == 0x80)
				return FRAMING_UNKNOWN;
			unsigned ev = mc_line_byte(l, c);
			/* Only a multiget may exceed memcached's line limit. */
			if (l->len > MC_REQUEST_LINE_MAX &&
			    (l->len > MC_MULTIGET_LINE_MAX || l->ntok == 0 || s->req_kind != MC_CMD_GET))
				return FRAMING_ERROR;
			if (ev & MC_EV_TOKEN) {
				enum framing_verdict v = l->ntok == 0 ? mc_request_command(s)
								      : mc_request_token(s);
				if (v != FRAMING_OK)
					return v;
				mc_line_next_token(l);
			}
			if (ev & MC_EV_LINE) {
				enum framing_verdict v = mc_request_line(s);
				if (v != FRAMING_OK)
					return v;
				mc_line_reset(l);
				s->req_noreply = false;
				s->req_delete_zero = false;
			}
			break;
		}
		case MC_REQ_BLOCK: {
			enum framing_block_step step = framing_block_feed(&s->req_block, &p, end,
									  NULL, NULL);
			if (step == FRAMING_BLOCK_BAD)
				return FRAMING_ERROR;
			if (step == FRAMING_BLOCK_DONE)
				s->req = MC_REQ_LINE;
			continue;	/* p has moved past what the block took */
		}
		}
		p++;
	}
	return FRAMING_OK;
}

static bool mc_word_is(const struct mc_state *s, const char *word)
{
	size_t n = strlen(word);
	return s->rep_word_len == n && memcmp(s->rep_word, word, n) == 0;
}

/* The head reply ended. */
static void mc_pop(struct mc_state *s)
{
	s->pending_head = (s->pending_head + 1) % MC_PIPELINE_MAX;
	s->pending_count--;
	s->rep_open = false;
}

/* A VALUE or VA line announced a data block of rep_data bytes. */
static void mc_reply_block(struct mc_state *s)
{
	framing_block_start(&s->rep_block, s->rep_data);
	s->rep = MC_REP_BLOCK;
}

/* The "\r\n" after a VALUE or VA block arrived. */
static void mc_reply_block_done(struct mc_state *s)
{
	s->rep = MC_REP_LINE;
	s->rep_data = MC_NOT_NUMBER;
	/* A VA block is the whole meta reply; a VALUE block is not. */
	if ((enum mc_shape)s->pending[s->pending_head] == MC_SHAPE_META)
		mc_pop(s);
}

/* A reply line ended: does it end the head reply, open a data block, or poison? */
static enum framing_verdict mc_reply_line(struct mc_state *s)
{
	enum mc_shape shape = (enum mc_shape)s->pending[s->pending_head];
	uint32_t n = s->rep_line.ntok;

	if (n == 0 || mc_word_is(s, "ERROR") || mc_word_is(s, "CLIENT_ERROR") ||
	    mc_word_is(s, "SERVER_ERROR"))
		return FRAMING_ERROR;
	switch (shape) {
	case MC_SHAPE_LINE:
		mc_pop(s);
		return FRAMING_OK;
	case MC_SHAPE_VALUES:
		if (mc_word_is(s, "END") && n == 1) {
			mc_pop(s);
			return FRAMING_OK;
		}
		if (mc_word_is(s, "VALUE") && (n == 4 || n == 5) && s->rep_data <= MC_DATA_MAX) {
			mc_reply_block(s);
			return FRAMING_OK;
		}
		return FRAMING_ERROR;
	case MC_SHAPE_STATS:
		if (n == 1 && (mc_word_is(s, "END") || mc_word_is(s, "RESET") || mc_word_is(s, "OK"))) {
			mc_pop(s);
			return FRAMING_OK;
		}
		if (mc_word_is(s, "STAT") || mc_word_is(s, "ITEM") || mc_word_is(s, "PREFIX"))
			return FRAMING_OK;
		return FRAMING_ERROR;
	case MC_SHAPE_META:
		if (mc_word_is(s, "VA") && n >= 2 && s->rep_data <= MC_DATA_MAX) {
			mc_reply_block(s);
			return FRAMING_OK;
		}
		if (mc_word_is(s, "HD") || mc_word_is(s, "EN") || mc_word_is(s, "NS") ||
		    mc_word_is(s, "EX") || mc_word_is(s, "NF") || mc_word_is(s, "MN") ||
		    mc_word_is(s, "ME")) {
			mc_pop(s);
			return FRAMING_OK;
		}
		return FRAMING_ERROR;
	}
	return FRAMING_ERROR;
}

/* Token i of a reply line: keep the word and the block size where there is one. */
static void mc_reply_token(struct mc_state *s)
{
	const struct mc_line *l = &s->rep_line;
	if (l->ntok == 0) {
		s->rep_word_len = l->tok_len;
		memcpy(s->rep_word, l->tok, l->tok_len < MC_TOKEN_MAX ? l->tok_len : MC_TOKEN_MAX);
	} else if ((l->ntok == 3 && mc_word_is(s, "VALUE")) ||
		   (l->ntok == 1 && mc_word_is(s, "VA"))) {
		s->rep_data = mc_token_number(l);
	}
}

static enum framing_verdict mc_feed_response(void *state, const char *buf, size_t len)
{
	struct mc_state *s = state;
	const char *p = buf, *end = buf + len;

	while (p < end) {
		unsigned char c = (unsigned char)*p;
		switch (s->rep) {
		case MC_REP_LINE: {
			struct mc_line *l = &s->rep_line;
			if (!s->rep_open) {
				/* An error owed to a noreply command, or nobody's. */
				if (s->pending_count == 0)
					return s->noreply_tail ? FRAMING_ERROR : FRAMING_UNSOLICITED;
				s->rep_open = true;
			}
			unsigned ev = mc_line_byte(l, c);
			if (l->len > MC_REPLY_LINE_MAX)
				return FRAMING_ERROR;
			if (ev & MC_EV_TOKEN) {
				mc_reply_token(s);
				mc_line_next_token(l);
			}
			if (ev & MC_EV_LINE) {
				enum framing_verdict v = mc_reply_line(s);
				if (v != FRAMING_OK)
					return v;
				mc_line_reset(l);
				s->rep_word_len = 0;
				if (s->rep == MC_REP_LINE)
					s->rep_data = MC_NOT_NUMBER;
			}
			break;
		}
		case MC_REP_BLOCK: {
			enum framing_block_step step = framing_block_feed(&s->rep_block, &p, end,
									  NULL, NULL);
			if (step == FRAMING_BLOCK_BAD)
				return FRAMING_ERROR;
			if (step == FRAMING_BLOCK_DONE)
				mc_reply_block_done(s);
			continue;	/* p has moved past what the block took */
		}
		}
		p++;
	}
	return FRAMING_OK;
}

static void mc_init(void *state)
{
	struct mc_state *s = state;
	s->rep_data = MC_NOT_NUMBER;
}

static enum framing_verdict mc_at_boundary(const void *state)
{
	const struct mc_state *s = state;
	if (s->req != MC_REQ_LINE || s->req_line.len > 0 || s->rep_open ||
	    s->pending_count > 0 || s->noreply_tail)
		return FRAMING_PARTIAL;
	return FRAMING_OK;
}

const struct framing_ops framing_memcached_ops = {
	.name = "memcached",
	.state_size = sizeof(struct mc_state),
	.init = mc_init,
	.feed_request = mc_feed_request,
	.feed_response = mc_feed_response,
	.at_boundary = mc_at_boundary,
};
