/*
 * trunk — the pure decisions of the zklb-to-zklb trunk: which CONNECT
 * requests a trunk listener serves, and the lifecycles of a trunk
 * connection and of one stream. No sockets, no clock: trunk_listener.c
 * does the I/O and asks here.
 *
 * A stream is an HTTP/2 CONNECT (RFC 9113 §8.5: :method CONNECT and
 * :authority host:port, nothing else) to an address:port this host
 * announces. The allow list is built from the announce: entries: an entry
 * with an address allows exactly address:port; `address: auto` allows the
 * port on each of this host's own addresses (loopback included), which is
 * what `auto` may publish. Anything else is refused with 403: the listener
 * is never an open relay.
 *
 * Stream lifecycle (trunk_stream_transition_allowed()):
 *   CONNECTING --backend connected--> OPEN
 *   OPEN --END_STREAM from the caller--> HALF_CLOSED_REMOTE (backend SHUT_WR)
 *   OPEN --backend EOF--> HALF_CLOSED_LOCAL (END_STREAM sent)
 *   either half-closed --the other half--> CLOSED
 *   any --reset, error, connect failure--> CLOSED
 *
 * Thread: any (pure); a struct trunk_allow is immutable once built.
 */
#ifndef ZKLB_TRUNK_H
#define ZKLB_TRUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util.h"

struct announce_conf;

enum trunk_stream_state {
	TRUNK_STREAM_CONNECTING = 0,	/* connect to the local backend in flight */
	TRUNK_STREAM_OPEN,		/* bytes both ways */
	TRUNK_STREAM_HALF_CLOSED_REMOTE,	/* the caller sent END_STREAM; we still send */
	TRUNK_STREAM_HALF_CLOSED_LOCAL,	/* the backend closed; we still receive */
	TRUNK_STREAM_CLOSED,		/* both done, reset or failed; freed after the loop turn */
	TRUNK_STREAM_STATES
};

enum trunk_conn_state {
	TRUNK_CONN_HANDSHAKE = 0,	/* TLS handshake (and the HTTP/2 preface) */
	TRUNK_CONN_OPEN,		/* streams come and go */
	TRUNK_CONN_GOAWAY,		/* GOAWAY sent: open streams finish, no new one */
	TRUNK_CONN_CLOSED,		/* socket closed; freed after the loop turn */
	TRUNK_CONN_STATES
};

/* What a stream's request gets. */
enum trunk_verdict {
	TRUNK_ALLOW = 0,		/* relay to the address */
	TRUNK_BAD_REQUEST,		/* 400: not a CONNECT, or its authority is not numeric host:port */
	TRUNK_NOT_ANNOUNCED,		/* 403: an address this host does not announce */
	TRUNK_VERDICTS
};

/*
 * Calling side: how the opening of a stream ended, the one byte the trunk
 * thread writes on the relay's socket before any stream byte. Anything but
 * TRUNK_OPEN_OK is a failed connect of that instance (retried elsewhere,
 * counted against it); the socket is then closed.
 */
enum trunk_open_result {
	TRUNK_OPEN_OK = 0,		/* 2xx: the remote connected to the instance */
	TRUNK_OPEN_REFUSED,		/* 502/503/504: the instance refused or did not answer */
	TRUNK_OPEN_NOT_ANNOUNCED,	/* 403: the remote does not announce that address */
	TRUNK_OPEN_BAD_ANSWER,		/* any other status */
	TRUNK_OPEN_RESET,		/* RST_STREAM (REFUSED_STREAM after a GOAWAY, a limit) */
	TRUNK_OPEN_TRUNK_FAILED,	/* the trunk connection could not open, or closed */
	TRUNK_OPEN_RESULTS
};

/* One allowed backend address: numeric, as it must appear in :authority. */
struct trunk_endpoint {
	struct net_addr addr;		/* the address and port connected to */
};

/* The addresses streams may reach (immutable once built). */
struct trunk_allow {
	struct trunk_endpoint *v;	/* owned, n entries */
	size_t n;
};

const char *trunk_stream_state_name(enum trunk_stream_state s);
const char *trunk_conn_state_name(enum trunk_conn_state s);
const char *trunk_verdict_name(enum trunk_verdict v);
const char *trunk_open_result_name(enum trunk_open_result r);

/* Pure: what the :status of a CONNECT's answer means for the calling side. */
enum trunk_open_result trunk_open_result_from_status(int status);

/*
 * Pure: which of a peer's n connections takes a new stream, given the
 * streams each carries (streams[i]; usable[i] false for one closing or
 * told to go away) and at most max_conns connections per peer: the usable
 * one with the fewest streams, or -1 to open a new connection (none is
 * usable, or every usable one already carries a stream and the peer may
 * have more connections: spreading streams bounds head-of-line blocking).
 */
int trunk_pick_conn(const uint32_t *streams, const bool *usable, size_t n, uint32_t max_conns);

/* Pure: is from -> to a move of the stream lifecycle? */
bool trunk_stream_transition_allowed(enum trunk_stream_state from, enum trunk_stream_state to);

/* Pure: is from -> to a move of the connection lifecycle? */
bool trunk_conn_transition_allowed(enum trunk_conn_state from, enum trunk_conn_state to);

/*
 * Build the allow list from n announce entries and the host's own numeric
 * addresses (local[0..n_local), used for `address: auto`; entries that are
 * not numeric are skipped). The caller frees it with trunk_allow_free().
 */
void trunk_allow_build(struct trunk_allow *a, const struct announce_conf *ann, size_t n,
		       const char *const *local, size_t n_local);
void trunk_allow_free(struct trunk_allow *a);

/*
 * Judge a request: method (":method"), protocol (":protocol" of an extended
 * CONNECT, or NULL) and authority (":authority", not NUL-terminated:
 * authority_len bytes). TRUNK_ALLOW fills *out with the address to connect.
 */
enum trunk_verdict trunk_request_check(const struct trunk_allow *a, const char *method,
				       const char *protocol, const char *authority,
				       size_t authority_len, struct net_addr *out);

/* The Curator payload key that advertises a host's trunk port (an integer). */
#define TRUNK_PAYLOAD_KEY "zklb.trunk"

/*
 * Pure: the payload an announce entry publishes when this host runs a trunk
 * listener on `port`: payload (NULL = none) with TRUNK_PAYLOAD_KEY set, as a
 * new reference. NULL when it must stay as it is: a payload that is not a
 * mapping, or a typed one (payload_class set: Jackson would refuse the
 * unknown property, and a Curator consumer must never break).
 */
json_t *trunk_payload_advertise(const json_t *payload, const char *payload_class, uint16_t port);

/*
 * Pure: should a stream read more from its backend, with `buffered` bytes
 * waiting for the trunk and a cap of `cap`? Reading stops at the cap and
 * resumes once half has drained (the watermark dance of the relay).
 */
bool trunk_stream_wants_read(size_t buffered, size_t cap, bool reading);

#endif
