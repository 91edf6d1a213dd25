/*
 * mysql_probe — log in and read @@global.read_only (see mysql_probe.h).
 *
 * The input is reassembled into whole packets (4-byte header: 3-byte
 * little-endian length, 1-byte sequence id) in `in`, bounded by
 * MYSQL_PROBE_PACKET_MAX; each packet is handed to the phase's handler
 * with a cursor (struct mysql_cur) that never reads past the packet.
 */
#include "mysql_probe.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Capability flags (client/server protocol). */
#define CLIENT_LONG_PASSWORD		0x00000001u
#define CLIENT_PROTOCOL_41		0x00000200u
#define CLIENT_SECURE_CONNECTION	0x00008000u
#define CLIENT_PLUGIN_AUTH		0x00080000u

#define NATIVE_PLUGIN "mysql_native_password"
#define QUERY "SELECT @@global.read_only"
#define CHARSET_UTF8MB4 45

enum mysql_phase {
	MYSQL_PHASE_HANDSHAKE = 0,	/* waiting for the server's greeting */
	MYSQL_PHASE_AUTH,		/* response sent; OK, ERR or an auth switch next */
	MYSQL_PHASE_COLUMN_COUNT,	/* query sent */
	MYSQL_PHASE_COLUMN_DEFS,	/* reading column definitions */
	MYSQL_PHASE_COLUMNS_EOF,	/* the EOF after them */
	MYSQL_PHASE_ROW,		/* the first row decides */
	MYSQL_PHASE_DONE,		/* verdict given */
};

struct mysql_probe {
	char *user;			/* owned */
	char *password;			/* owned; wiped on free; "" = none */
	enum mysql_phase phase;
	uint8_t next_seq;		/* sequence id the next server packet must carry */
	bool switched;			/* an auth switch was answered already */
	uint32_t columns_left;		/* column definitions still to read */
	uint8_t in[MYSQL_PROBE_PACKET_MAX + 4];	/* one partial packet, header included */
	size_t in_len;			/* bytes in `in` */
	uint8_t *out;			/* owned; bytes to send, or NULL */
	size_t out_len;			/* bytes in out */
	enum check_verdict verdict;	/* MORE until decided */
	char reason[96];		/* of the decided verdict */
};

/* A read cursor over one packet's payload. */
struct mysql_cur {
	const uint8_t *p;
	size_t left;
};

static bool cur_take(struct mysql_cur *c, size_t n, const uint8_t **out)
{
	if (c->left < n)
		return false;
	if (out)
		*out = c->p;
	c->p += n;
	c->left -= n;
	return true;
}

/* A NUL-terminated string; false when the packet ends first. */
static bool cur_cstr(struct mysql_cur *c, const char **s, size_t *len)
{
	const uint8_t *nul = memchr(c->p, 0, c->left);
	if (!nul)
		return false;
	*s = (const char *)c->p;
	*len = (size_t)(nul - c->p);
	return cur_take(c, *len + 1, NULL);
}

static uint64_t le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

/* A length-encoded integer; *is_null for 0xfb. False when malformed or cut. */
static bool cur_lenenc(struct mysql_cur *c, uint64_t *v, bool *is_null)
{
	const uint8_t *b;
	*is_null = false;
	if (!cur_take(c, 1, &b))
		return false;
	size_t n;
	switch (b[0]) {
	case 0xfb:
		*is_null = true;
		*v = 0;
		return true;
	case 0xfc:
		n = 2;
		break;
	case 0xfd:
		n = 3;
		break;
	case 0xfe:
		n = 8;
		break;
	case 0xff:
		return false;
	default:
		*v = b[0];
		return true;
	}
	if (!cur_take(c, n, &b))
		return false;
	*v = le(b, n);
	return true;
}

/* Printable copy of s[0..len) after prefix, for a reason. */
static void printable(char *out, size_t size, const char *prefix, const char *s, size_t len)
{
	size_t at = (size_t)snprintf(out, size, "%s", prefix);
	for (size_t i = 0; i < len && at + 1 < size; i++) {
		unsigned char ch = (unsigned char)s[i];
		out[at++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (at < size)
		out[at] = '\0';
}

static enum check_verdict decide(struct mysql_probe *p, bool passed, const char *reason)
{
	p->phase = MYSQL_PHASE_DONE;
	p->verdict = passed ? CHECK_VERDICT_PASS : CHECK_VERDICT_FAIL;
	if (reason != p->reason)
		snprintf(p->reason, sizeof(p->reason), "%s", reason);
	return p->verdict;
}

/* An ERR packet (0xff, code, ["#" sqlstate], message) as a failure. */
static enum check_verdict fail_err(struct mysql_probe *p, struct mysql_cur *c, const char *prefix)
{
	const uint8_t *code;
	char head[64];
	if (!cur_take(c, 1, NULL) || !cur_take(c, 2, &code))
		return decide(p, false, "protocol error: short error packet");
	if (c->left >= 6 && c->p[0] == '#')
		cur_take(c, 6, NULL);
	snprintf(head, sizeof(head), "%s%u: ", prefix, (unsigned)le(code, 2));
	printable(p->reason, sizeof(p->reason), head, (const char *)c->p, c->left);
	return decide(p, false, p->reason);
}

static void sha1(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[20])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, a, alen) != 1 || (blen && EVP_DigestUpdate(ctx, b, blen) != 1) ||
	    EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != 20)
		memset(out, 0, 20);	/* a wrong answer: the server refuses the login */
	EVP_MD_CTX_free(ctx);
}

void mysql_probe_native_password(const char *password, const uint8_t scramble[20], uint8_t out[20])
{
	uint8_t stage1[20], stage2[20], mix[20];
	sha1(password, strlen(password), NULL, 0, stage1);
	sha1(stage1, 20, NULL, 0, stage2);
	sha1(scramble, 20, stage2, 20, mix);
	for (int i = 0; i < 20; i++)
		out[i] = mix[i] ^ stage1[i];
	explicit_bzero(stage1, sizeof(stage1));
	explicit_bzero(stage2, sizeof(stage2));
	explicit_bzero(mix, sizeof(mix));
}

/* Queue one packet with sequence id seq; payload[0..len). */
static void send_packet(struct mysql_probe *p, uint8_t seq, const uint8_t *payload, size_t len)
{
	p->out = xrealloc(p->out, p->out_len + 4 + len);
	uint8_t *h = p->out + p->out_len;
	h[0] = (uint8_t)len;
	h[1] = (uint8_t)(len >> 8);
	h[2] = (uint8_t)(len >> 16);
	h[3] = seq;
	memcpy(h + 4, payload, len);
	p->out_len += 4 + len;
}

static void put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static enum check_verdict on_handshake(struct mysql_probe *p, struct mysql_cur *c)
{
	const uint8_t *b, *s1, *caps_lo, *caps_hi = NULL, *alen = NULL;
	const char *version;
	size_t vlen;
	uint8_t scramble[20];

	if (c->left && c->p[0] == 0xff)
		return fail_err(p, c, "error ");
	if (!cur_take(c, 1, &b))
		return decide(p, false, "protocol error: empty greeting");
	if (b[0] != 10) {
		snprintf(p->reason, sizeof(p->reason), "protocol version %u", b[0]);
		return decide(p, false, p->reason);
	}
	if (!cur_cstr(c, &version, &vlen) || !cur_take(c, 4, NULL) || !cur_take(c, 8, &s1) ||
	    !cur_take(c, 1, NULL) || !cur_take(c, 2, &caps_lo))
		return decide(p, false, "protocol error: short greeting");
	memcpy(scramble, s1, 8);
	uint32_t caps = (uint32_t)le(caps_lo, 2);
	if (c->left && (!cur_take(c, 1, NULL) || !cur_take(c, 2, NULL) || !cur_take(c, 2, &caps_hi) ||
			!cur_take(c, 1, &alen) || !cur_take(c, 10, NULL)))
		return decide(p, false, "protocol error: short greeting");
	if (caps_hi)
		caps |= (uint32_t)le(caps_hi, 2) << 16;
	if (!(caps & CLIENT_PROTOCOL_41) || !(caps & CLIENT_SECURE_CONNECTION))
		return decide(p, false, "protocol error: server lacks protocol 4.1");
	/* part 2 of the scramble: max(13, auth_len - 8) bytes, the last a NUL */
	size_t part2 = alen && alen[0] > 21 ? (size_t)alen[0] - 8 : 13;
	const uint8_t *s2;
	if (!cur_take(c, part2, &s2))
		return decide(p, false, "protocol error: short scramble");
	memcpy(scramble + 8, s2, 12);
	/* the server's default plugin name may follow: we answer mysql_native_password
	 * whatever it is, and a server that wants another sends an auth switch */

	/* HandshakeResponse41 */
	size_t ulen = strlen(p->user);
	uint8_t resp[4 + 4 + 1 + 23 + 256 + 1 + 20 + sizeof(NATIVE_PLUGIN)];
	size_t n = 0;
	if (ulen > 255)
		return decide(p, false, "user name too long");
	put32(resp, CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION |
	      CLIENT_PLUGIN_AUTH);
	put32(resp + 4, MYSQL_PROBE_PACKET_MAX);
	resp[8] = CHARSET_UTF8MB4;
	memset(resp + 9, 0, 23);
	n = 32;
	memcpy(resp + n, p->user, ulen + 1);
	n += ulen + 1;
	if (p->password[0]) {
		resp[n++] = 20;
		mysql_probe_native_password(p->password, scramble, resp + n);
		n += 20;
	} else {
		resp[n++] = 0;
	}
	memcpy(resp + n, NATIVE_PLUGIN, sizeof(NATIVE_PLUGIN));
	n += sizeof(NATIVE_PLUGIN);
	send_packet(p, 1, resp, n);
	explicit_bzero(resp, sizeof(resp));
	explicit_bzero(scramble, sizeof(scramble));
	p->phase = MYSQL_PHASE_AUTH;
	p->next_seq = 2;
	return CHECK_VERDICT_MORE;
}

static enum check_verdict on_auth(struct mysql_probe *p, struct mysql_cur *c, uint8_t seq)
{
	if (c->left == 0)
		return decide(p, false, "protocol error: empty auth reply");
	switch (c->p[0]) {
	case 0x00: {
		static const uint8_t query[] = "\x03" QUERY;
		send_packet(p, 0, query, sizeof(query) - 1);
		p->phase = MYSQL_PHASE_COLUMN_COUNT;
		p->next_seq = 1;
		return CHECK_VERDICT_MORE;
	}
	case 0xff:
		return fail_err(p, c, "auth refused: ");
	case 0xfe: {
		const char *plugin;
		size_t plen;
		const uint8_t *scramble;
		cur_take(c, 1, NULL);
		if (p->switched)
			return decide(p, false, "protocol error: second auth switch");
		if (!cur_cstr(c, &plugin, &plen))
			return decide(p, false, "protocol error: short auth switch");
		if (plen != strlen(NATIVE_PLUGIN) || memcmp(plugin, NATIVE_PLUGIN, plen) != 0) {
			printable(p->reason, sizeof(p->reason), "auth plugin ", plugin, plen);
			snprintf(p->reason + strlen(p->reason), sizeof(p->reason) - strlen(p->reason),
				 " not supported");
			return decide(p, false, p->reason);
		}
		if (!cur_take(c, 20, &scramble))
			return decide(p, false, "protocol error: short scramble");
		uint8_t resp[20];
		size_t n = 0;
		if (p->password[0]) {
			mysql_probe_native_password(p->password, scramble, resp);
			n = 20;
		}
		send_packet(p, (uint8_t)(seq + 1), resp, n);
		explicit_bzero(resp, sizeof(resp));
		p->switched = true;
		p->next_seq = (uint8_t)(seq + 2);
		return CHECK_VERDICT_MORE;
	}
	default:
		snprintf(p->reason, sizeof(p->reason), "auth plugin not supported (reply 0x%02x)",
			 c->p[0]);
		return decide(p, false, p->reason);
	}
}

/* An EOF packet: 0xfe and shorter than 9 bytes (else it is a length-encoded number). */
static bool is_eof(const struct mysql_cur *c)
{
	return c->left > 0 && c->left < 9 && c->p[0] == 0xfe;
}

static enum check_verdict on_result(struct mysql_probe *p, struct mysql_cur *c)
{
	uint64_t v;
	bool is_null;

	if (c->left && c->p[0] == 0xff)
		return fail_err(p, c, "error ");
	switch (p->phase) {
	case MYSQL_PHASE_COLUMN_COUNT:
		if (c->left && c->p[0] == 0x00)
			return decide(p, false, "protocol error: no resultset");
		if (!cur_lenenc(c, &v, &is_null) || is_null || v == 0 || v > 64 || c->left)
			return decide(p, false, "protocol error: bad column count");
		p->columns_left = (uint32_t)v;
		p->phase = MYSQL_PHASE_COLUMN_DEFS;
		return CHECK_VERDICT_MORE;
	case MYSQL_PHASE_COLUMN_DEFS:
		if (is_eof(c))
			return decide(p, false, "protocol error: missing column definition");
		if (--p->columns_left == 0)
			p->phase = MYSQL_PHASE_COLUMNS_EOF;
		return CHECK_VERDICT_MORE;
	case MYSQL_PHASE_COLUMNS_EOF:
		if (!is_eof(c))
			return decide(p, false, "protocol error: no EOF after the columns");
		p->phase = MYSQL_PHASE_ROW;
		return CHECK_VERDICT_MORE;
	case MYSQL_PHASE_ROW: {
		const uint8_t *s;
		if (is_eof(c))
			return decide(p, false, "no row");
		if (!cur_lenenc(c, &v, &is_null))
			return decide(p, false, "protocol error: bad row");
		if (is_null)
			return decide(p, false, "read_only NULL");
		if (v > c->left || !cur_take(c, (size_t)v, &s))
			return decide(p, false, "protocol error: bad row");
		if (v == 1 && s[0] == '0')
			return decide(p, true, "read_only 0");
		printable(p->reason, sizeof(p->reason), "read_only ", (const char *)s,
			  v > 16 ? 16 : (size_t)v);
		return decide(p, false, p->reason);
	}
	default:
		return decide(p, false, "protocol error: unexpected packet");
	}
}

static enum check_verdict on_packet(struct mysql_probe *p, uint8_t seq, const uint8_t *payload,
				    size_t len)
{
	struct mysql_cur c = { payload, len };
	if (seq != p->next_seq)
		return decide(p, false, "protocol error: packet out of sequence");
	p->next_seq++;
	switch (p->phase) {
	case MYSQL_PHASE_HANDSHAKE:
		return on_handshake(p, &c);
	case MYSQL_PHASE_AUTH:
		return on_auth(p, &c, seq);
	case MYSQL_PHASE_DONE:
		return p->verdict;
	default:
		return on_result(p, &c);
	}
}

struct mysql_probe *mysql_probe_new(const char *user, const char *password)
{
	struct mysql_probe *p = xcalloc(1, sizeof(*p));
	p->user = xstrdup(user ? user : "");
	p->password = xstrdup(password ? password : "");
	p->phase = MYSQL_PHASE_HANDSHAKE;
	p->verdict = CHECK_VERDICT_MORE;
	return p;
}

void mysql_probe_free(struct mysql_probe *p)
{
	if (!p)
		return;
	explicit_bzero(p->password, strlen(p->password));
	free(p->password);
	free(p->user);
	if (p->out)
		explicit_bzero(p->out, p->out_len);
	free(p->out);
	free(p);
}

enum check_verdict mysql_probe_feed(struct mysql_probe *p, const void *buf, size_t len,
				    char *reason, size_t size)
{
	const uint8_t *b = buf;
	while (p->verdict == CHECK_VERDICT_MORE) {
		/* the header first, then exactly the packet it announces */
		size_t want = 4;
		if (p->in_len >= 4) {
			size_t body = (size_t)le(p->in, 3);
			if (body > MYSQL_PROBE_PACKET_MAX) {
				decide(p, false, "packet too long");
				break;
			}
			want += body;
			if (p->in_len == want) {
				p->in_len = 0;
				on_packet(p, p->in[3], p->in + 4, body);
				continue;
			}
		}
		if (len == 0)
			break;
		size_t n = want - p->in_len < len ? want - p->in_len : len;
		memcpy(p->in + p->in_len, b, n);
		p->in_len += n;
		b += n;
		len -= n;
	}
	if (p->verdict != CHECK_VERDICT_MORE)
		snprintf(reason, size, "%s", p->reason);
	return p->verdict;
}

const void *mysql_probe_output(const struct mysql_probe *p, size_t *len)
{
	*len = p->out_len;
	return p->out_len ? p->out : NULL;
}

void mysql_probe_output_sent(struct mysql_probe *p)
{
	if (p->out)
		explicit_bzero(p->out, p->out_len);
	free(p->out);
	p->out = NULL;
	p->out_len = 0;
}
