/*
 * trunk_client — see trunk_client.h; its connections and streams are in
 * trunk_conn.c (trunk_conn.h), shared with the accepting side.
 *
 * Workers queue requests (socket, peer, target) under `lock` and wake the
 * thread with an eventfd; the thread places each on a connection to its
 * peer (trunk_pick_conn) or dials a new one. Peers are created by the
 * thread and freed only with the client, so the admin may walk them under
 * `peers_lock`.
 */
#include "trunk_client.h"
#include "trunk_call.h"
#include "trunk_conn.h"
#include "config.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENT_MAX_CONNS 64		/* a peer's connections considered at once */

/* One peer host: a trunk address and its counters. */
struct trunk_peer {
	struct trunk_peer *next;		/* in c->peers */
	struct net_addr addr;			/* the trunk's address */
	char host[256];				/* the name its certificate must carry */
	char name[64];				/* "ip:port" */
	struct trunk_stats stats;
};

/* A stream a worker asked for, waiting for the thread. */
struct trunk_request {
	struct trunk_request *next;
	int fd;					/* owned: the thread's end of the pair */
	struct trunk_call *call;		/* owned: the thread's reference */
	struct net_addr trunk;
	struct net_addr target;
	char host[256];
};

struct trunk_client {
	struct trunk_loop loop;			/* its thread, settings, connections */
	struct tls_ctx *tls;			/* owned: a client context offering h2 */
	uint32_t conns_per_peer;
	struct net_addr source;			/* trunk.listen's address, port 0; len 0: any */
	pthread_mutex_t lock;			/* guards queue */
	struct trunk_request *queue;		/* owned, newest first */
	pthread_mutex_t peers_lock;		/* guards the peers list's links */
	struct trunk_peer *peers;		/* owned */
};

static struct trunk_peer *peer_find(struct trunk_client *c, const struct net_addr *a,
				    const char *host)
{
	for (struct trunk_peer *p = c->peers; p; p = p->next)
		if (p->addr.len == a->len && memcmp(&p->addr.ss, &a->ss, a->len) == 0 &&
		    strcmp(p->host, host) == 0)
			return p;
	struct trunk_peer *p = xcalloc(1, sizeof(*p));
	p->addr = *a;
	snprintf(p->host, sizeof(p->host), "%s", host);
	net_addr_format(a, p->name, sizeof(p->name));
	pthread_mutex_lock(&c->peers_lock);
	p->next = c->peers;
	c->peers = p;
	pthread_mutex_unlock(&c->peers_lock);
	log_info("trunk: new peer %s", p->name);
	return p;
}

/* The stream never got a connection: tell the relay (a failed connect) and let go. */
static void request_fail(struct trunk_peer *p, struct trunk_request *rq, const char *why)
{
	uint8_t b = TRUNK_OPEN_TRUNK_FAILED;
	(void)!send(rq->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(rq->fd);
	trunk_call_put(rq->call);
	STAT_ADD(&p->stats, connect_failures, 1);
	log_info("trunk peer=%s: no connection: %s", p->name, why);
}

/* Place one request on a connection to its peer. */
static void request_place(struct trunk_client *c, struct trunk_request *rq)
{
	struct trunk_peer *p = peer_find(c, &rq->trunk, rq->host);
	struct trunk_conn *conns[CLIENT_MAX_CONNS];
	uint32_t streams[CLIENT_MAX_CONNS];
	bool usable[CLIENT_MAX_CONNS];
	size_t n = 0;
	for (struct trunk_conn *tc = c->loop.live; tc && n < CLIENT_MAX_CONNS; tc = tc->next) {
		if (tc->peer_key != p)
			continue;
		conns[n] = tc;
		streams[n] = tc->n_streams;
		usable[n] = trunk_conn_usable(tc);
		n++;
	}
	int k = trunk_pick_conn(streams, usable, n, c->conns_per_peer);
	struct trunk_conn *tc = k >= 0 ? conns[k] : NULL;
	if (!tc) {
		char err[128];
		tc = trunk_conn_dial(&c->loop, &p->addr, c->source.len ? &c->source : NULL, p->host,
				     &p->stats, p, err, sizeof(err));
		if (!tc) {
			request_fail(p, rq, err);
			return;
		}
	}
	trunk_stream_open(tc, rq->fd, &rq->target, rq->call);
}

/* Place what the workers queued, oldest first. */
static void on_wake(struct trunk_loop *loop)
{
	struct trunk_client *c = loop->client;
	pthread_mutex_lock(&c->lock);
	struct trunk_request *list = c->queue;
	c->queue = NULL;
	pthread_mutex_unlock(&c->lock);
	/* Oldest first: the queue is newest first. */
	struct trunk_request *rev = NULL;
	while (list) {
		struct trunk_request *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	while (rev) {
		struct trunk_request *rq = rev;
		rev = rq->next;
		request_place(c, rq);
		free(rq);
	}
}

int trunk_client_open(struct trunk_client *c, const struct net_addr *trunk, const char *host,
		      const struct net_addr *target, struct trunk_call **call)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	struct trunk_request *rq = calloc(1, sizeof(*rq));
	if (!rq) {
		close(sv[0]);
		close(sv[1]);
		errno = ENOMEM;
		return -1;
	}
	rq->fd = sv[1];
	rq->call = trunk_call_new();
	*call = rq->call;
	rq->trunk = *trunk;
	rq->target = *target;
	snprintf(rq->host, sizeof(rq->host), "%s", host);
	pthread_mutex_lock(&c->lock);
	bool first = c->queue == NULL;
	rq->next = c->queue;
	c->queue = rq;
	pthread_mutex_unlock(&c->lock);
	/* One wake per batch; a failed one leaves the relay's connect timeout to say so. */
	if (first)
		trunk_loop_wake(&c->loop);
	return sv[0];
}

void trunk_client_each_peer(struct trunk_client *c,
			    void (*fn)(const char *peer, const struct trunk_stats *st, void *arg),
			    void *arg)
{
	pthread_mutex_lock(&c->peers_lock);
	for (struct trunk_peer *p = c->peers; p; p = p->next)
		fn(p->name, &p->stats, arg);
	pthread_mutex_unlock(&c->peers_lock);
}

/*
 * The calling side connects from the address the trunk listens on, when that
 * is one address of this host (not a wildcard): a host's trunks then run
 * between the same two addresses both ways, as firewalls and ss see them.
 */
static struct net_addr trunk_client_source(const char *listen)
{
	struct net_addr a = { 0 };
	char host[256];
	uint16_t port;
	if (!listen || !net_split_host_port(listen, host, sizeof(host), &port) ||
	    strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
	    !net_addr_numeric(host, 0, &a))
		a.len = 0;
	return a;
}

struct trunk_client *trunk_client_new(const struct trunk_conf *conf, char *err, size_t errlen)
{
	struct trunk_client *c = xcalloc(1, sizeof(*c));
	c->conns_per_peer = conf->connections_per_peer ? conf->connections_per_peer : 1;
	c->source = trunk_client_source(conf->listen);
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->peers_lock, NULL);
	const char *bad = NULL;
	char terr[400];
	c->tls = tls_ctx_new_client(&conf->tls, "h2", &bad, terr, sizeof(terr));
	c->loop = (struct trunk_loop){
		.wake_fd = -1,
		.tls = c->tls,
		.client = c,
		.stream_window = (uint32_t)conf->stream_window,
		.connection_window = (uint32_t)conf->connection_window,
		.max_streams = conf->max_streams,
		.connect_timeout_ms = conf->connect_timeout_ms,
		.idle_timeout_ms = conf->idle_timeout_ms,
		.handshake_ms = conf->connect_timeout_ms,
	};
	if (!c->tls) {
		snprintf(err, errlen, "trunk: calling side TLS: %s", terr);
		goto fail;
	}
	if (!trunk_loop_open(&c->loop, on_wake, err, errlen) ||
	    !trunk_loop_start(&c->loop, err, errlen))
		goto fail;
	log_info("trunk: calling side ready (%u connections per peer)", c->conns_per_peer);
	return c;
fail:
	trunk_client_free(c);
	return NULL;
}

void trunk_client_free(struct trunk_client *c)
{
	if (!c)
		return;
	trunk_loop_close(&c->loop);
	while (c->queue) {
		struct trunk_request *rq = c->queue;
		c->queue = rq->next;
		close(rq->fd);
		trunk_call_put(rq->call);
		free(rq);
	}
	while (c->peers) {
		struct trunk_peer *p = c->peers;
		c->peers = p->next;
		free(p);
	}
	tls_ctx_put(c->tls);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->peers_lock);
	free(c);
}
