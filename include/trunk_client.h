/*
 * trunk_client — the calling side of the zklb-to-zklb trunk: relays of
 * services with `via: trunk` (or `auto`, for instances whose Curator
 * payload advertises zklb.trunk) open each upstream connection as one
 * HTTP/2 CONNECT stream on a trunk connection to the instance's host,
 * instead of a TCP connection of its own.
 *
 * Design (why the relay stays simple and one-way): the calling side runs on
 * a thread of its own with its own event base, like the trunk listener.
 * trunk_client_open() hands the relay one end of a fresh socketpair at
 * once; the relay treats it as an upstream socket still connecting. The
 * trunk thread opens (or reuses) a trunk connection to the peer host,
 * submits the CONNECT, and writes one byte on the socket when the answer
 * comes — TRUNK_OPEN_OK, or why not (trunk.h: trunk_open_result) — before
 * any byte of the stream. The relay reads that byte in CONNECTING, so a
 * refused stream, a reset or a trunk that cannot connect is a failed
 * connect of that instance: retried on another, counted for passive
 * ejection, under the service's connect_timeout. From then on the relay
 * copies bytes as with TCP (half-close is shutdown(SHUT_WR) on the pair,
 * END_STREAM on the trunk). relay -> trunk_client only; the trunk thread
 * never calls into the relay or the workers.
 *
 * Per peer host (its address and trunk port) at most
 * trunk.connections_per_peer connections, opened on demand, kept alive
 * with PINGs (a peer that answers none in 30 s is closed), replaced when
 * they fail or the peer sends GOAWAY (drain); an idle one closes after
 * trunk.idle_timeout. Windows are trunk.stream_window and
 * trunk.connection_window, as on the accepting side.
 *
 * Resets: a unix socket has no RST, so each stream comes with a
 * trunk_call (trunk_call.h) the relay and the trunk thread share. A stream
 * the peer resets (or whose trunk dies) is marked before the trunk thread
 * closes its end, and the relay takes that EOF as ECONNRESET (the client
 * gets a TCP RST; before the first byte it is a failure of the instance).
 * A relay that closes on a reset or an error marks it before closing its
 * end, and the trunk thread answers that EOF with RST_STREAM, not
 * END_STREAM. Known limit: once the relay's end sent its FIN the trunk
 * thread no longer reads it, so a later close of the relay is seen only
 * when the stream next writes to it.
 *
 * Thread: new/free on the control thread; open from any worker (a mutex
 * on the queue, per connection opened, never per byte); each_peer from
 * the admin (the control thread).
 */
#ifndef ZKLB_TRUNK_CLIENT_H
#define ZKLB_TRUNK_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct trunk_call;
struct trunk_client;
struct trunk_conf;
struct trunk_stats;

/*
 * Start the calling side with conf's TLS (the same certificate, key and
 * CA as the listener, as a client offering h2) and windows. NULL with the
 * reason in err.
 */
struct trunk_client *trunk_client_new(const struct trunk_conf *conf, char *err, size_t errlen);

/*
 * A stream to `target` (an instance's address) through the trunk of its
 * host at `trunk` (the same address, the advertised trunk port), whose
 * certificate must name `host`. Returns the relay's end of the stream
 * (non-blocking; the first byte read from it is a trunk_open_result), or
 * -1 with errno (out of descriptors or memory). *call receives the
 * caller's reference to the stream's shared end state (trunk_call.h: how
 * a reset crosses the socketpair); the caller drops it with
 * trunk_call_put once it closed the socket. Any thread.
 */
int trunk_client_open(struct trunk_client *c, const struct net_addr *trunk, const char *host,
		      const struct net_addr *target, struct trunk_call **call);

/*
 * Call fn for each peer host the client has met: its "ip:port" (the trunk)
 * and its counters (relaxed atomics). Any thread.
 */
void trunk_client_each_peer(struct trunk_client *c,
			    void (*fn)(const char *peer, const struct trunk_stats *st, void *arg),
			    void *arg);

/* Stop the thread, close every trunk connection (their streams fail) and free. NULL: no-op. */
void trunk_client_free(struct trunk_client *c);

#endif
