/*
 * trunk — see trunk.h.
 */
#include "trunk.h"
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static const char *const stream_state_names[TRUNK_STREAM_STATES] = {
	[TRUNK_STREAM_CONNECTING] = "connecting",
	[TRUNK_STREAM_OPEN] = "open",
	[TRUNK_STREAM_HALF_CLOSED_REMOTE] = "half_closed_remote",
	[TRUNK_STREAM_HALF_CLOSED_LOCAL] = "half_closed_local",
	[TRUNK_STREAM_CLOSED] = "closed",
};

static const char *const conn_state_names[TRUNK_CONN_STATES] = {
	[TRUNK_CONN_HANDSHAKE] = "handshake",
	[TRUNK_CONN_OPEN] = "open",
	[TRUNK_CONN_GOAWAY] = "goaway",
	[TRUNK_CONN_CLOSED] = "closed",
};

static const char *const verdict_names[TRUNK_VERDICTS] = {
	[TRUNK_ALLOW] = "allow",
	[TRUNK_BAD_REQUEST] = "bad_request",
	[TRUNK_NOT_ANNOUNCED] = "not_announced",
};

static const char *const open_result_names[TRUNK_OPEN_RESULTS] = {
	[TRUNK_OPEN_OK] = "ok",
	[TRUNK_OPEN_REFUSED] = "refused",
	[TRUNK_OPEN_NOT_ANNOUNCED] = "not_announced",
	[TRUNK_OPEN_BAD_ANSWER] = "bad_answer",
	[TRUNK_OPEN_RESET] = "reset",
	[TRUNK_OPEN_TRUNK_FAILED] = "trunk_failed",
};

const char *trunk_open_result_name(enum trunk_open_result r)
{
	return r < TRUNK_OPEN_RESULTS ? open_result_names[r] : "?";
}

enum trunk_open_result trunk_open_result_from_status(int status)
{
	if (status >= 200 && status < 300)
		return TRUNK_OPEN_OK;
	if (status == 502 || status == 503 || status == 504)
		return TRUNK_OPEN_REFUSED;
	if (status == 403)
		return TRUNK_OPEN_NOT_ANNOUNCED;
	return TRUNK_OPEN_BAD_ANSWER;
}

int trunk_pick_conn(const uint32_t *streams, const bool *usable, size_t n, uint32_t max_conns)
{
	int best = -1;
	size_t live = 0;
	for (size_t i = 0; i < n; i++) {
		if (!usable[i])
			continue;
		live++;
		if (best < 0 || streams[i] < streams[best])
			best = (int)i;
	}
	/* A connection going away does not count: its replacement opens at once. */
	if (best < 0 || (streams[best] > 0 && live < max_conns))
		return -1;
	return best;
}

const char *trunk_stream_state_name(enum trunk_stream_state s)
{
	return s < TRUNK_STREAM_STATES ? stream_state_names[s] : "?";
}

const char *trunk_conn_state_name(enum trunk_conn_state s)
{
	return s < TRUNK_CONN_STATES ? conn_state_names[s] : "?";
}

const char *trunk_verdict_name(enum trunk_verdict v)
{
	return v < TRUNK_VERDICTS ? verdict_names[v] : "?";
}

bool trunk_stream_transition_allowed(enum trunk_stream_state from, enum trunk_stream_state to)
{
	if (from >= TRUNK_STREAM_STATES || to >= TRUNK_STREAM_STATES || from == to)
		return false;
	if (to == TRUNK_STREAM_CLOSED)
		return from != TRUNK_STREAM_CLOSED;
	switch (from) {
	case TRUNK_STREAM_CONNECTING:
		return to == TRUNK_STREAM_OPEN;
	case TRUNK_STREAM_OPEN:
		return to == TRUNK_STREAM_HALF_CLOSED_REMOTE || to == TRUNK_STREAM_HALF_CLOSED_LOCAL;
	default:
		return false;		/* a half-closed stream only closes */
	}
}

bool trunk_conn_transition_allowed(enum trunk_conn_state from, enum trunk_conn_state to)
{
	if (from >= TRUNK_CONN_STATES || to >= TRUNK_CONN_STATES || from == to)
		return false;
	if (to == TRUNK_CONN_CLOSED)
		return from != TRUNK_CONN_CLOSED;
	return (from == TRUNK_CONN_HANDSHAKE && to == TRUNK_CONN_OPEN) ||
	       (from == TRUNK_CONN_OPEN && to == TRUNK_CONN_GOAWAY);
}

static void allow_add(struct trunk_allow *a, size_t *cap, const char *host, uint16_t port)
{
	struct net_addr na;
	if (!net_addr_numeric(host, port, &na))
		return;
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].addr.len == na.len && memcmp(&a->v[i].addr.ss, &na.ss, na.len) == 0)
			return;
	if (a->n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		a->v = xrealloc(a->v, *cap * sizeof(*a->v));
	}
	a->v[a->n++].addr = na;
}

void trunk_allow_build(struct trunk_allow *a, const struct announce_conf *ann, size_t n,
		       const char *const *local, size_t n_local)
{
	size_t cap = 0;
	*a = (struct trunk_allow){ 0 };
	for (size_t i = 0; i < n; i++) {
		if (strcmp(ann[i].address, "auto") != 0) {
			allow_add(a, &cap, ann[i].address, ann[i].port);
			continue;
		}
		for (size_t k = 0; k < n_local; k++)
			allow_add(a, &cap, local[k], ann[i].port);
	}
}

void trunk_allow_free(struct trunk_allow *a)
{
	free(a->v);
	*a = (struct trunk_allow){ 0 };
}

/* "1.2.3.4:80" or "[::1]:80", numeric only, into out; false for anything else. */
static bool authority_parse(const char *s, size_t len, struct net_addr *out)
{
	char buf[80];
	char host[256];
	uint16_t port;
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (memchr(buf, '\0', len))
		return false;		/* a NUL inside the header value */
	if (!net_split_host_port(buf, host, sizeof(host), &port) || port == 0)
		return false;
	return net_addr_numeric(host, port, out);
}

enum trunk_verdict trunk_request_check(const struct trunk_allow *a, const char *method,
				       const char *protocol, const char *authority,
				       size_t authority_len, struct net_addr *out)
{
	/* Extended CONNECT (RFC 8441) may name a protocol; ours is only a byte stream. */
	if (!method || strcmp(method, "CONNECT") != 0 || !authority)
		return TRUNK_BAD_REQUEST;
	if (protocol && strcmp(protocol, "zklb-tcp") != 0)
		return TRUNK_BAD_REQUEST;
	struct net_addr want;
	if (!authority_parse(authority, authority_len, &want))
		return TRUNK_BAD_REQUEST;
	for (size_t i = 0; i < a->n; i++) {
		const struct net_addr *e = &a->v[i].addr;
		if (e->len == want.len && memcmp(&e->ss, &want.ss, want.len) == 0) {
			*out = want;
			return TRUNK_ALLOW;
		}
	}
	return TRUNK_NOT_ANNOUNCED;
}

bool trunk_stream_wants_read(size_t buffered, size_t cap, bool reading)
{
	if (reading)
		return buffered < cap;
	return buffered <= cap / 2;
}

json_t *trunk_payload_advertise(const json_t *payload, const char *payload_class, uint16_t port)
{
	if (payload_class || (payload && !json_is_object(payload)) || port == 0)
		return NULL;
	json_t *o = payload ? json_deep_copy(payload) : json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, TRUNK_PAYLOAD_KEY, json_integer(port));
	return o;
}
