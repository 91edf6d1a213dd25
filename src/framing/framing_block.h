/*
 * framing_block — a counted data block followed by "\r\n", the one shape that
 * RESP bulk strings and memcached data blocks share, in both directions.
 *
 * The header line that announced the length has been read by the protocol's
 * own scanner; this reads the payload (skipped a chunk at a time, never a byte
 * at a time) and the two bytes after it, which must be exactly "\r\n".
 * Internal to the framing family. Static inline: it runs per chunk of relayed
 * bytes, and both protocol scanners sit in tight loops around it.
 */
#ifndef ZKLB_FRAMING_BLOCK_H
#define ZKLB_FRAMING_BLOCK_H

#include <stddef.h>
#include <stdint.h>

struct framing_block {
	uint64_t left;			/* payload bytes not yet seen */
	uint8_t crlf;			/* bytes of the closing "\r\n" seen: 0, 1 */
};

enum framing_block_step {
	FRAMING_BLOCK_MORE = 0,		/* the block goes on past this chunk */
	FRAMING_BLOCK_DONE,		/* the "\r\n" after the payload arrived */
	FRAMING_BLOCK_BAD,		/* something else stood where "\r\n" must */
};

static inline void framing_block_start(struct framing_block *b, uint64_t len)
{
	b->left = len;
	b->crlf = 0;
}

/*
 * Consume the block's bytes from [*p, end) and advance *p past them. On
 * return, unless data is NULL, [*data, *data + *data_len) are the payload
 * bytes this call passed over, for a caller that looks at them (the RESP
 * command name); bytes after the block are left for the caller.
 */
static inline enum framing_block_step framing_block_feed(struct framing_block *b, const char **p,
							 const char *end, const char **data,
							 size_t *data_len)
{
	size_t n = (size_t)(end - *p);
	if (n > b->left)
		n = (size_t)b->left;
	if (data) {
		*data = *p;
		*data_len = n;
	}
	b->left -= n;
	*p += n;
	while (b->left == 0 && *p < end) {
		char want = b->crlf == 0 ? '\r' : '\n';
		if (**p != want)
			return FRAMING_BLOCK_BAD;
		(*p)++;
		if (++b->crlf == 2)
			return FRAMING_BLOCK_DONE;
	}
	return FRAMING_BLOCK_MORE;
}

#endif
