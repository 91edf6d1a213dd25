/*
 * zktunnel — TLS to the ZooKeeper ensemble for a client library that only
 * speaks plain TCP (Debian's libzookeeper_mt is built without OpenSSL).
 *
 * For each ensemble member of a connect string ("h1:p1,h2:p2/chroot") the
 * tunnel listens on an ephemeral loopback port; the connect string handed to
 * libzookeeper names those ports in the ensemble's order (chroot kept), so
 * its own failover still picks the next member when one is down. Each
 * accepted connection is carried to its member over TLS through the tls
 * module (tls.h: the same contexts, verification and SNI as upstream TLS).
 * A member that cannot be reached, or whose handshake fails, closes the
 * loopback connection: libzookeeper sees a connection loss and moves on.
 *
 * Thread: the tunnel runs on a small thread of its own with its own event
 * base, not on the control thread. libzookeeper's I/O thread talks to it
 * over loopback TCP, and the control thread may block inside libzookeeper
 * (zookeeper_close flushes the session's close through the tunnel), look up
 * names, or write files: the tunnel must keep moving bytes meanwhile, and
 * member names are looked up (getaddrinfo) on this thread at each connect,
 * so a member's address may change. Counters are atomics any thread reads.
 */
#ifndef ZKLB_ZKTUNNEL_H
#define ZKLB_ZKTUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_ctx;
struct zktunnel;

#define ZKTUNNEL_MEMBERS_MAX 32	/* members of one connect string */
#define ZKTUNNEL_HOST_MAX 256		/* bytes of a member's host, NUL included */

/* One ensemble member of a connect string. */
struct zktunnel_member {
	char host[ZKTUNNEL_HOST_MAX];	/* name or address, brackets of [v6] removed */
	uint16_t port;			/* 1..65535 */
};

struct zktunnel_stats {
	uint64_t connections_total;	/* loopback connections accepted */
	uint64_t handshakes_total;	/* TLS handshakes completed with a member */
	uint64_t handshake_failures_total;	/* refused: verify, protocol, or stalled */
	uint64_t connect_failures_total;	/* the member could not be looked up or reached */
};

/*
 * Pure: the members of connect string `hosts` (up to the chroot) into
 * out[0..max). Returns how many, or -1 when an entry is not host:port
 * (port 1..65535) or there are more than max.
 */
int zktunnel_parse_hosts(const char *hosts, struct zktunnel_member *out, size_t max);

/*
 * Start tunnelling every member of `hosts` over TLS with ctx (a reference is
 * taken). *local (owned by the caller) gets the connect string for
 * libzookeeper: "127.0.0.1:P1,127.0.0.1:P2[/chroot]". NULL, with the reason
 * in err, when hosts does not parse or a listener or the thread cannot start.
 */
struct zktunnel *zktunnel_start(const char *hosts, struct tls_ctx *ctx, char **local, char *err,
				size_t err_len);

/* Stop the thread, close every connection and free. NULL is a no-op. Any thread but the tunnel's. */
void zktunnel_stop(struct zktunnel *t);

/* The counters so far. Any thread. */
void zktunnel_stats(const struct zktunnel *t, struct zktunnel_stats *out);

#endif
