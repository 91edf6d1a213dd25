/*
 * trunk_listener — the accepting side of the zklb-to-zklb trunk: HTTP/2
 * (libnghttp2) over mutual TLS (the tls module's server context), each
 * stream a CONNECT to an address this host announces, relayed to that
 * local backend.
 *
 * It runs on a thread of its own with its own event base, so the workers'
 * per-byte path is untouched. The control thread creates it once (trunk:
 * is not reloadable) and hands it a new allow list on every apply of the
 * announce: entries (trunk_listener_set_allow, under a mutex the stream
 * openings take).
 *
 * Semantics kept across the trunk: bytes verbatim; END_STREAM from the
 * caller shuts the backend's write side and the backend's EOF ends the
 * stream; RST_STREAM from the caller resets the backend connection (TCP
 * RST) and a backend reset resets the stream (CONNECT_ERROR, RFC 9113
 * §8.5); a backend that refuses or does not answer in connect_timeout is
 * answered 502 / 504, which the calling side reports as a connect failure
 * of that instance.
 *
 * Memory is bounded: per stream by the window it advertises (bytes from the
 * caller are acknowledged only once the backend took them) plus one
 * buffer of TRUNK_DOWN_MAX towards the caller (reading the backend stops
 * while it is full: a slow caller never stalls the other streams); per
 * trunk by the connection window and max_streams.
 *
 * A trunk connection whose peer answers no PING within 30 s is closed (its
 * streams reset their backends), so a host that vanished without a FIN
 * frees what it held.
 *
 * Thread: new/set_allow/drain/stats/free on the control thread; the rest on
 * the trunk thread.
 */
#ifndef ZKLB_TRUNK_LISTENER_H
#define ZKLB_TRUNK_LISTENER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct announce_conf;
struct trunk_conf;
struct trunk_listener;

/* Counters of one trunk listener (atomics: written by its thread, read by admin). */
struct trunk_stats {
	_Atomic uint64_t conns_accepted;	/* TCP connections accepted */
	_Atomic uint32_t conns_open;		/* trunk connections open now */
	_Atomic uint64_t handshake_failures;	/* TLS or HTTP/2 preface failed */
	_Atomic uint64_t streams;		/* streams opened (requests seen) */
	_Atomic uint32_t streams_open;		/* streams open now */
	_Atomic uint64_t refused_not_announced;	/* 403: an address not announced here */
	_Atomic uint64_t refused_bad_request;	/* 400: not a CONNECT to host:port */
	_Atomic uint64_t refused_limit;		/* REFUSED_STREAM: over max_streams */
	_Atomic uint64_t connect_failures;	/* 502/504: the local backend refused or timed out */
	_Atomic uint64_t resets_in;		/* RST_STREAM from the caller (backend reset) */
	_Atomic uint64_t resets_out;		/* RST_STREAM sent (backend reset or error) */
	_Atomic uint64_t bytes_in;		/* stream bytes from callers to backends */
	_Atomic uint64_t bytes_out;		/* stream bytes from backends to callers */
	_Atomic uint64_t window_stalls;		/* a stream stopped reading its backend: caller slow */
	_Atomic uint64_t protocol_errors;	/* connections ended by a GOAWAY for the peer's fault */
};

/*
 * Listen on conf->listen (its tls.ctx a server context; both stay the
 * config's, the listener takes its own references) and start the thread.
 * NULL with the reason in err.
 */
struct trunk_listener *trunk_listener_new(const struct trunk_conf *conf, char *err, size_t errlen);

/* Streams from now on may reach only what these n announce entries publish. */
void trunk_listener_set_allow(struct trunk_listener *tl, const struct announce_conf *ann,
			      size_t n);

/*
 * SIGTERM: stop accepting and send GOAWAY on every trunk, so callers open
 * their next streams elsewhere; open streams finish (the drain counts them,
 * stats.streams_open) until trunk_listener_free().
 */
void trunk_listener_drain(struct trunk_listener *tl);

/* Its counters (read with relaxed atomics). */
const struct trunk_stats *trunk_listener_stats(const struct trunk_listener *tl);

/* Stop the thread, close every trunk and free. NULL is a no-op. */
void trunk_listener_free(struct trunk_listener *tl);

#endif
