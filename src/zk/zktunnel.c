/*
 * zktunnel — see zktunnel.h. One listener per ensemble member; each accepted
 * loopback connection becomes a struct zktunnel_conn that connects to its
 * member, completes the TLS handshake, then moves bytes both ways through
 * two fixed buffers (a full buffer stops reading its side: bounded memory,
 * and the slow side paces the fast one). Everything below runs on the
 * tunnel's thread except zktunnel_start/stop/stats.
 */
#include "zktunnel.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "tls.h"
#include "util.h"

#define ZKTUNNEL_BUF 16384		/* bytes buffered per direction per connection */
#define ZKTUNNEL_SETUP_MS 5000		/* connect + handshake to a member, at most */
#define ZKTUNNEL_LOG_EVERY_MS 5000	/* one failure line per member per this long */

/* Lifecycle of one tunnelled connection; changed only by conn_set_state. */
enum zktunnel_conn_state {
	ZKT_CONNECTING = 0,		/* TCP connect to the member in progress */
	ZKT_HANDSHAKE,			/* TLS handshake in progress */
	ZKT_RELAY,			/* moving bytes */
	ZKT_CLOSED,			/* both sockets closed; freed after the loop turn */
};

struct zktunnel_listener {
	struct zktunnel *t;		/* ref: the owner */
	struct zktunnel_member member;	/* where accepted connections go */
	int fd;				/* owned; listening on 127.0.0.1 */
	uint16_t local_port;		/* the port libzookeeper is given */
	struct event *ev;		/* owned; accept */
	uint64_t last_log_ms;		/* of the last failure line (ZKTUNNEL_LOG_EVERY_MS) */
	uint32_t suppressed;		/* failure lines not written since */
};

struct zktunnel_conn {
	struct zktunnel_listener *l;	/* ref: its member */
	enum zktunnel_conn_state state;	/* conn_set_state only */
	int cfd;			/* owned; libzookeeper's side */
	int sfd;			/* owned; the member's side, -1 before the connect */
	struct tls_conn *tls;		/* owned; from the handshake on */
	struct event *cev;		/* owned; cfd */
	struct event *sev;		/* owned; sfd */
	struct event *timer;		/* owned; bounds connect + handshake */
	char up[ZKTUNNEL_BUF];		/* from libzookeeper, to be encrypted */
	size_t up_len;			/* bytes in up */
	char down[ZKTUNNEL_BUF];	/* decrypted from the member, for libzookeeper */
	size_t down_len;		/* bytes in down */
	struct zktunnel_conn *next;	/* t->conns, or t->dead */
};

struct zktunnel {
	struct event_base *base;	/* owned; the tunnel thread's */
	struct tls_ctx *ctx;		/* owned ref */
	struct zktunnel_listener *listeners;	/* owned array */
	size_t n_listeners;		/* entries */
	struct zktunnel_conn *conns;	/* owned list: live connections */
	struct zktunnel_conn *dead;	/* owned list: closed, freed by reap_ev */
	struct event *reap_ev;		/* owned */
	int stop_fd;			/* owned eventfd; written by zktunnel_stop */
	struct event *stop_ev;		/* owned */
	pthread_t thread;		/* runs the base */
	bool running;			/* thread started */
	_Atomic uint64_t connections_total;	/* see struct zktunnel_stats */
	_Atomic uint64_t handshakes_total;
	_Atomic uint64_t handshake_failures_total;
	_Atomic uint64_t connect_failures_total;
};

/* ---- pure ---------------------------------------------------------------- */

int zktunnel_parse_hosts(const char *hosts, struct zktunnel_member *out, size_t max)
{
	size_t n = 0, len = strcspn(hosts, "/");
	const char *p = hosts, *end = hosts + len;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		const char *colon = NULL;
		for (const char *q = p; q < e; q++)
			if (*q == ':')
				colon = q;
		if (n == max || !colon || colon == p || colon + 1 == e)
			return -1;
		const char *h = p, *he = colon;
		if (*h == '[' && he[-1] == ']') {
			h++;
			he--;
		}
		if (he <= h || (size_t)(he - h) >= ZKTUNNEL_HOST_MAX)
			return -1;
		unsigned long port = 0;
		for (const char *q = colon + 1; q < e; q++) {
			if (*q < '0' || *q > '9' || port > 65535)
				return -1;
			port = port * 10 + (unsigned long)(*q - '0');
		}
		if (port == 0 || port > 65535)
			return -1;
		memcpy(out[n].host, h, (size_t)(he - h));
		out[n].host[he - h] = '\0';
		out[n].port = (uint16_t)port;
		n++;
		p = comma ? comma + 1 : end;
	}
	return n ? (int)n : -1;
}

/* ---- connections (tunnel thread) ----------------------------------------- */

static void conn_pump(struct zktunnel_conn *c);

static const char *conn_state_name(enum zktunnel_conn_state s)
{
	switch (s) {
	case ZKT_CONNECTING: return "connecting";
	case ZKT_HANDSHAKE: return "handshake";
	case ZKT_RELAY: return "relay";
	case ZKT_CLOSED: return "closed";
	}
	return "?";
}

/* A failure worth a line: at most one per member per ZKTUNNEL_LOG_EVERY_MS. */
static void listener_log_failure(struct zktunnel_listener *l, const char *what, const char *why)
{
	uint64_t now = now_ms();

	if (l->last_log_ms && now - l->last_log_ms < ZKTUNNEL_LOG_EVERY_MS) {
		l->suppressed++;
		return;
	}
	log_error("zookeeper tls: %s:%u: %s: %s%s", l->member.host, (unsigned)l->member.port, what,
		  why, l->suppressed ? " (and earlier failures not logged)" : "");
	l->last_log_ms = now;
	l->suppressed = 0;
}

/* The one transition function; closing also moves c to the dead list. */
static void conn_set_state(struct zktunnel_conn *c, enum zktunnel_conn_state to, const char *why)
{
	struct zktunnel *t = c->l->t;

	log_debug("zookeeper tls: %s:%u: %s -> %s (%s)", c->l->member.host,
		  (unsigned)c->l->member.port, conn_state_name(c->state), conn_state_name(to), why);
	c->state = to;
	if (to != ZKT_CLOSED)
		return;
	event_del(c->cev);
	event_del(c->sev);
	event_del(c->timer);
	close(c->cfd);
	if (c->sfd >= 0)
		close(c->sfd);
	c->cfd = c->sfd = -1;
	for (struct zktunnel_conn **pp = &t->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	c->next = t->dead;
	t->dead = c;
	event_active(t->reap_ev, EV_TIMEOUT, 0);
}

static void conn_free(struct zktunnel_conn *c)
{
	tls_conn_free(c->tls);
	event_free(c->cev);
	event_free(c->sev);
	event_free(c->timer);
	free(c);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zktunnel *t = arg;

	while (t->dead) {
		struct zktunnel_conn *c = t->dead;
		t->dead = c->next;
		conn_free(c);
	}
}

static void conn_arm(struct event *ev, evutil_socket_t fd, short want, event_callback_fn cb,
		     void *arg)
{
	event_del(ev);
	if (!want)
		return;
	event_assign(ev, event_get_base(ev), fd, want, cb, arg);
	event_add(ev, NULL);
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_pump(arg);
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zktunnel_conn *c = arg;

	if (c->state == ZKT_HANDSHAKE) {
		atomic_fetch_add(&c->l->t->handshake_failures_total, 1);
		listener_log_failure(c->l, "TLS handshake", "timed out");
	} else {
		atomic_fetch_add(&c->l->t->connect_failures_total, 1);
		listener_log_failure(c->l, "connect", "timed out");
	}
	conn_set_state(c, ZKT_CLOSED, "setup timed out");
}

/* A TLS call moved nothing: note what it waits for, or close. false when closed. */
static bool conn_tls_idle(struct zktunnel_conn *c, enum tls_io io, short *swant)
{
	if (io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE) {
		*swant |= io == TLS_IO_WANT_READ ? EV_READ : EV_WRITE;
		return true;
	}
	conn_set_state(c, ZKT_CLOSED, io == TLS_IO_EOF ? "the member closed" : "TLS error");
	return false;
}

/* RELAY: move what can move; arm the events for what waits. */
static void conn_relay(struct zktunnel_conn *c)
{
	short cwant = 0, swant = 0;
	bool progress = true;
	enum tls_io io;

	while (progress) {
		progress = false;
		if (c->up_len < sizeof(c->up)) {
			ssize_t n = read(c->cfd, c->up + c->up_len, sizeof(c->up) - c->up_len);
			if (n > 0) {
				c->up_len += (size_t)n;
				progress = true;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				conn_set_state(c, ZKT_CLOSED, "the client closed");
				return;
			}
		}
		if (c->up_len > 0) {
			size_t n = tls_conn_write(c->tls, c->up, c->up_len, &io);
			if (n > 0) {
				memmove(c->up, c->up + n, c->up_len - n);
				c->up_len -= n;
				progress = true;
			} else if (!conn_tls_idle(c, io, &swant)) {
				return;
			}
		}
		if (c->down_len < sizeof(c->down)) {
			size_t n = tls_conn_read(c->tls, c->down + c->down_len,
						 sizeof(c->down) - c->down_len, &io);
			if (n > 0) {
				c->down_len += n;
				progress = true;
			} else if (!conn_tls_idle(c, io, &swant)) {
				return;
			}
		}
		if (c->down_len > 0) {
			ssize_t n = write(c->cfd, c->down, c->down_len);
			if (n > 0) {
				memmove(c->down, c->down + n, c->down_len - (size_t)n);
				c->down_len -= (size_t)n;
				progress = true;
			} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				cwant |= EV_WRITE;
			} else {
				conn_set_state(c, ZKT_CLOSED, "the client went away");
				return;
			}
		}
	}
	if (c->up_len < sizeof(c->up))
		cwant |= EV_READ;
	conn_arm(c->cev, c->cfd, cwant, conn_cb, c);
	conn_arm(c->sev, c->sfd, swant, conn_cb, c);
}

static void conn_pump(struct zktunnel_conn *c)
{
	struct zktunnel_listener *l = c->l;
	enum tls_io io;

	if (c->state == ZKT_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			atomic_fetch_add(&l->t->connect_failures_total, 1);
			listener_log_failure(l, "connect", strerror(err));
			conn_set_state(c, ZKT_CLOSED, "connect failed");
			return;
		}
		char key[ZKTUNNEL_HOST_MAX + 8];
		snprintf(key, sizeof(key), "%s:%u", l->member.host, (unsigned)l->member.port);
		c->tls = tls_conn_new(l->t->ctx, c->sfd, l->member.host, key);
		if (!c->tls) {
			atomic_fetch_add(&l->t->handshake_failures_total, 1);
			listener_log_failure(l, "TLS", "out of memory");
			conn_set_state(c, ZKT_CLOSED, "no TLS state");
			return;
		}
		conn_set_state(c, ZKT_HANDSHAKE, "connected");
	}
	if (c->state == ZKT_HANDSHAKE) {
		io = tls_conn_handshake(c->tls);
		if (io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE) {
			conn_arm(c->sev, c->sfd, io == TLS_IO_WANT_READ ? EV_READ : EV_WRITE, conn_cb,
				 c);
			return;
		}
		if (io != TLS_IO_DONE) {
			atomic_fetch_add(&l->t->handshake_failures_total, 1);
			listener_log_failure(l, "TLS handshake refused",
					     *tls_conn_reason(c->tls) ? tls_conn_reason(c->tls)
								      : "the member closed");
			conn_set_state(c, ZKT_CLOSED, "handshake failed");
			return;
		}
		atomic_fetch_add(&l->t->handshakes_total, 1);
		event_del(c->timer);
		conn_set_state(c, ZKT_RELAY, tls_result_name(tls_conn_outcome(c->tls)));
	}
	if (c->state == ZKT_RELAY)
		conn_relay(c);
}

/* A connected socket to the member, connect in progress; -1 with errno's reason in why. */
static int member_connect(const struct zktunnel_member *m, const char **why)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char port[8];
	int fd = -1, rc;

	snprintf(port, sizeof(port), "%u", (unsigned)m->port);
	rc = getaddrinfo(m->host, port, &hints, &res);
	if (rc != 0) {
		*why = gai_strerror(rc);
		return -1;
	}
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
			*why = strerror(errno);
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0 && !*why)
		*why = strerror(errno);
	freeaddrinfo(res);
	return fd;
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct zktunnel_listener *l = arg;
	struct zktunnel *t = l->t;
	const char *why = NULL;
	int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (cfd < 0)
		return;		/* EAGAIN, or out of descriptors: libzookeeper will retry */
	atomic_fetch_add(&t->connections_total, 1);
	int sfd = member_connect(&l->member, &why);
	if (sfd < 0) {
		atomic_fetch_add(&t->connect_failures_total, 1);
		listener_log_failure(l, "connect", why);
		close(cfd);
		return;
	}
	struct zktunnel_conn *c = xcalloc(1, sizeof(*c));
	struct timeval tv = timeval_from_ms(ZKTUNNEL_SETUP_MS);
	c->l = l;
	c->cfd = cfd;
	c->sfd = sfd;
	c->cev = event_new(t->base, cfd, 0, conn_cb, c);
	c->sev = event_new(t->base, sfd, EV_WRITE, conn_cb, c);
	c->timer = evtimer_new(t->base, conn_timeout_cb, c);
	c->state = ZKT_CONNECTING;
	c->next = t->conns;
	t->conns = c;
	event_add(c->sev, NULL);
	evtimer_add(c->timer, &tv);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zktunnel *t = arg;

	event_base_loopbreak(t->base);
}

static void *tunnel_main(void *arg)
{
	struct zktunnel *t = arg;

	event_base_dispatch(t->base);
	return NULL;
}

/* ---- control thread -------------------------------------------------------- */

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

struct zktunnel *zktunnel_start(const char *hosts, struct tls_ctx *ctx, char **local, char *err,
				size_t err_len)
{
	struct zktunnel_member members[ZKTUNNEL_MEMBERS_MAX];
	int n = zktunnel_parse_hosts(hosts, members, ZKTUNNEL_MEMBERS_MAX);
	const char *chroot = strchr(hosts, '/');
	struct zktunnel *t;
	size_t cap, off = 0;

	if (n < 0) {
		snprintf(err, err_len, "'%s' is not host:port[,host:port...][/chroot] (at most %d)",
			 hosts, ZKTUNNEL_MEMBERS_MAX);
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->base = event_base_new();
	t->ctx = tls_ctx_get(ctx);
	t->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	*local = NULL;
	if (!t->base || t->stop_fd < 0) {
		snprintf(err, err_len, "cannot make the tunnel's event base: %s", strerror(errno));
		goto fail;
	}
	t->reap_ev = event_new(t->base, -1, 0, reap_cb, t);
	t->listeners = xcalloc((size_t)n, sizeof(*t->listeners));
	cap = (size_t)n * 24 + (chroot ? strlen(chroot) : 0) + 1;
	*local = xmalloc(cap);
	(*local)[0] = '\0';
	for (int i = 0; i < n; i++) {
		struct zktunnel_listener *l = &t->listeners[i];
		l->t = t;
		l->member = members[i];
		l->fd = listen_loopback(&l->local_port);
		t->n_listeners++;
		if (l->fd < 0) {
			snprintf(err, err_len, "cannot listen on loopback for %s:%u: %s",
				 l->member.host, (unsigned)l->member.port, strerror(errno));
			goto fail;
		}
		l->ev = event_new(t->base, l->fd, EV_READ | EV_PERSIST, accept_cb, l);
		event_add(l->ev, NULL);
		off += (size_t)snprintf(*local + off, cap - off, "%s127.0.0.1:%u", i ? "," : "",
					(unsigned)l->local_port);
	}
	if (chroot)
		snprintf(*local + off, cap - off, "%s", chroot);
	t->stop_ev = event_new(t->base, t->stop_fd, EV_READ, stop_cb, t);
	event_add(t->stop_ev, NULL);
	if (pthread_create(&t->thread, NULL, tunnel_main, t) != 0) {
		snprintf(err, err_len, "cannot start the tunnel thread");
		goto fail;
	}
	t->running = true;
	return t;
fail:
	free(*local);
	*local = NULL;
	zktunnel_stop(t);
	return NULL;
}

void zktunnel_stop(struct zktunnel *t)
{
	uint64_t one = 1;

	if (!t)
		return;
	if (t->running) {
		if (write(t->stop_fd, &one, sizeof(one)) < 0)
			log_warn("zookeeper tls: cannot stop the tunnel thread: %s", strerror(errno));
		pthread_join(t->thread, NULL);
	}
	while (t->conns)
		conn_set_state(t->conns, ZKT_CLOSED, "shutdown");
	if (t->reap_ev)
		reap_cb(-1, 0, t);
	for (size_t i = 0; i < t->n_listeners; i++) {
		if (t->listeners[i].ev)
			event_free(t->listeners[i].ev);
		if (t->listeners[i].fd >= 0)
			close(t->listeners[i].fd);
	}
	free(t->listeners);
	if (t->stop_ev)
		event_free(t->stop_ev);
	if (t->reap_ev)
		event_free(t->reap_ev);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	tls_ctx_put(t->ctx);
	if (t->base)
		event_base_free(t->base);
	free(t);
}

void zktunnel_stats(const struct zktunnel *t, struct zktunnel_stats *out)
{
	out->connections_total = atomic_load(&t->connections_total);
	out->handshakes_total = atomic_load(&t->handshakes_total);
	out->handshake_failures_total = atomic_load(&t->handshake_failures_total);
	out->connect_failures_total = atomic_load(&t->connect_failures_total);
}
