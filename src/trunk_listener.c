/*
 * trunk_listener — see trunk_listener.h; its connections and their streams
 * are in trunk_conn.c (trunk_conn.h), shared with the calling side.
 *
 * Objects are never freed inside their own callbacks: closed streams and
 * connections go to dead lists, reaped by an event made active for the
 * next loop turn.
 */
#include "trunk_conn.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct trunk_listener *tl = arg;
	(void)what;
	for (int i = 0; i < 64; i++) {
		struct net_addr peer = { .len = sizeof(peer.ss) };
		int fd = accept4(lfd, (struct sockaddr *)&peer.ss, &peer.len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("trunk %s: accept: %s", tl->listen, strerror(errno));
			return;
		}
		STAT_ADD(&tl->stats, conns_accepted, 1);
		trunk_conn_accept(&tl->loop, fd, &peer);
	}
}

/* Drain: no new trunk, no new stream; the open streams finish. */
static void listener_drain(struct trunk_listener *tl)
{
	tl->drained = true;
	event_del(tl->accept_ev);
	for (struct trunk_conn *tc = tl->loop.live, *next; tc; tc = next) {
		next = tc->next;		/* the GOAWAY may close tc */
		trunk_conn_goaway(tc);
	}
	log_info("trunk %s: draining: GOAWAY sent, %u streams may finish", tl->listen,
		 atomic_load(&tl->stats.streams_open));
}

/* A wake-up that is not a stop: the control thread asked for the drain. */
static void on_wake(struct trunk_loop *loop)
{
	struct trunk_listener *tl = loop->listener;
	if (atomic_load(&tl->draining) && !tl->drained)
		listener_drain(tl);
}

void trunk_listener_drain(struct trunk_listener *tl)
{
	atomic_store(&tl->draining, true);
	trunk_loop_wake(&tl->loop);
}

/* The host's own numeric addresses, for `address: auto` entries. */
static size_t local_addresses(char (*out)[64], size_t max)
{
	struct ifaddrs *ifa = NULL;
	size_t n = 0;
	if (getifaddrs(&ifa) != 0)
		return 0;
	for (struct ifaddrs *i = ifa; i && n < max; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out[n++], 64);
		else if (i->ifa_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, out[n++], 64);
	}
	freeifaddrs(ifa);
	return n;
}

void trunk_listener_set_allow(struct trunk_listener *tl, const struct announce_conf *ann,
			      size_t n)
{
	char addrs[64][64];
	const char *local[64];
	size_t n_local = local_addresses(addrs, ARRAY_SIZE(addrs));
	for (size_t i = 0; i < n_local; i++)
		local[i] = addrs[i];
	struct trunk_allow a, old;
	trunk_allow_build(&a, ann, n, local, n_local);
	pthread_mutex_lock(&tl->allow_lock);
	old = tl->allow;
	tl->allow = a;
	pthread_mutex_unlock(&tl->allow_lock);
	trunk_allow_free(&old);
	log_info("trunk %s: %zu addresses reachable", tl->listen, a.n);
}

const struct trunk_stats *trunk_listener_stats(const struct trunk_listener *tl)
{
	return &tl->stats;
}

struct trunk_listener *trunk_listener_new(const struct trunk_conf *conf, char *err, size_t errlen)
{
	struct trunk_listener *tl = xcalloc(1, sizeof(*tl));
	tl->listen_fd = -1;
	tl->listen = xstrdup(conf->listen);
	tl->tls = tls_ctx_get(conf->tls.ctx);
	tl->loop = (struct trunk_loop){
		.wake_fd = -1,
		.tls = tl->tls,
		.listener = tl,
		.stream_window = (uint32_t)conf->stream_window,
		.connection_window = (uint32_t)conf->connection_window,
		.max_streams = conf->max_streams,
		.connect_timeout_ms = conf->connect_timeout_ms,
		.idle_timeout_ms = conf->idle_timeout_ms,
		.handshake_ms = TRUNK_HANDSHAKE_MS,
	};
	pthread_mutex_init(&tl->allow_lock, NULL);
	if (!tl->tls) {
		snprintf(err, errlen, "trunk: no TLS context");
		goto fail;
	}
	if (!listener_open(conf->listen, 1, &tl->listen_fd, err, errlen))
		goto fail;
	if (!trunk_loop_open(&tl->loop, on_wake, err, errlen))
		goto fail;
	tl->accept_ev = event_new(tl->loop.base, tl->listen_fd, EV_READ | EV_PERSIST, on_accept, tl);
	event_add(tl->accept_ev, NULL);
	if (!trunk_loop_start(&tl->loop, err, errlen))
		goto fail;
	log_info("trunk: listening on %s (stream window %u, connection window %u)", tl->listen,
		 tl->loop.stream_window, tl->loop.connection_window);
	return tl;
fail:
	trunk_listener_free(tl);
	return NULL;
}

void trunk_listener_free(struct trunk_listener *tl)
{
	if (!tl)
		return;
	/* The accept event lives on the loop's base: stop the thread, free it, then the base. */
	trunk_loop_stop(&tl->loop);
	if (tl->accept_ev)
		event_free(tl->accept_ev);
	trunk_loop_close(&tl->loop);
	if (tl->listen_fd >= 0)
		close(tl->listen_fd);
	tls_ctx_put(tl->tls);
	trunk_allow_free(&tl->allow);
	pthread_mutex_destroy(&tl->allow_lock);
	free(tl->listen);
	free(tl);
}
